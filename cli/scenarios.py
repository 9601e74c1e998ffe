"""``smartbrum demo [SCENARIO]`` and ``smartbrum scenario run FILE``: a neighbourhood's day on the
whole platform, with a progress bar, a printed summary and a report folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cli.options import fail

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"
DEFAULT_SCENARIO = "birmingham-street"

scenario_app = typer.Typer(
    help="Scenario files: simulated neighbourhoods on the whole platform.", no_args_is_help=True
)


def scenario_path(name_or_path: str) -> Path:
    """A scenario named in ``scenarios/`` (``birmingham-street``), or a path to a TOML file."""
    path = Path(name_or_path)
    if path.suffix != ".toml":
        path = SCENARIOS / f"{name_or_path}.toml"
    if not path.is_file():
        shipped = ", ".join(sorted(p.stem for p in SCENARIOS.glob("*.toml") if p.stem != "sample-network"))
        raise fail(f"no scenario {name_or_path!r}: not a file (shipped: {shipped})")
    return path


def demo(
    scenario: Annotated[
        str, typer.Argument(help="A shipped scenario's name or a scenario file.")
    ] = DEFAULT_SCENARIO,
    day_seconds: Annotated[float, typer.Option(help="Real seconds per simulated day.", min=1.0)] = 30.0,
    report: Annotated[Path | None, typer.Option(help="Report folder (default var/reports/NAME).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as a JSON object.")] = False,
) -> None:
    """Run a simulated Birmingham neighbourhood's day on the whole platform and report on it."""
    run_command(scenario_path(scenario), day_seconds=day_seconds, report=report, as_json=as_json)


def scenario_run(
    file: Annotated[Path, typer.Argument(help="Scenario TOML file.")],
    day_seconds: Annotated[float, typer.Option(help="Real seconds per simulated day.", min=1.0)] = 30.0,
    days: Annotated[int | None, typer.Option(help="Run only this many days.", min=1)] = None,
    households: Annotated[int | None, typer.Option(help="Keep only the first N households.", min=1)] = None,
    poll_minutes: Annotated[float, typer.Option(help="Market minutes between meter polls.", min=0.5)] = 10.0,
    bid_ahead: Annotated[
        int | None,
        typer.Option(help="Agents bid this many periods ahead, rolling (--day-ahead instead).", min=1),
    ] = 6,
    day_ahead: Annotated[
        bool, typer.Option("--day-ahead", help="Agents bid the whole day at the start.")
    ] = False,
    database: Annotated[Path | None, typer.Option(help="SQLite file (replaced).")] = None,
    report: Annotated[Path | None, typer.Option(help="Report folder (default var/reports/NAME).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as a JSON object.")] = False,
) -> None:
    """Run a scenario file on the whole platform in accelerated time and report on it."""
    run_command(
        scenario_path(str(file)),
        day_seconds=day_seconds,
        days=days,
        households=households,
        poll_minutes=poll_minutes,
        bid_ahead=None if day_ahead else bid_ahead,
        database=database,
        report=report,
        as_json=as_json,
    )


scenario_app.command("run")(scenario_run)


def run_command(
    path: Path,
    *,
    day_seconds: float,
    days: int | None = None,
    households: int | None = None,
    poll_minutes: float = 10.0,
    bid_ahead: int | None = 6,
    database: Path | None = None,
    report: Path | None = None,
    as_json: bool = False,
) -> None:
    """Run ``path``, show progress, print the summary and write the report.

    Stdout carries the summary table alone; the title, progress, timings, warnings and where the
    report went are for the person watching and go to stderr.
    """
    from demo.report import summarise, write_report
    from demo.scenario_run import RunOptions, run_scenario
    from simulation import ScenarioError, load_scenario

    console = Console()
    status = Console(stderr=True)
    try:
        scenario = load_scenario(path)
    except ScenarioError as error:
        raise fail(str(error)) from None
    options = RunOptions(
        day_seconds=day_seconds,
        days=days,
        households=households,
        poll_minutes=poll_minutes,
        bid_ahead_periods=bid_ahead,
        database=database,
    )
    status.print(
        f"[bold]smartbrum[/] running [cyan]{scenario.name}[/]: {getattr(scenario, 'description', '')}"
    )
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=status, transient=False) as progress:
        cleared = progress.add_task("intervals cleared", total=None)
        placed = progress.add_task("orders placed", total=None)

        def hook(kind: str, count: int) -> None:
            if kind == "cleared":
                progress.advance(cleared, count)
            elif kind == "bid":
                progress.advance(placed, count)

        def on_periods(total_periods: int, total_orders: int) -> None:
            progress.update(cleared, total=total_periods)
            progress.update(placed, total=total_orders)

        result = run_scenario(path, options, progress=hook, on_start=on_periods)
    summary = summarise(result)
    if as_json:  # the summary's rows, each label to its value as the table shows it
        print(json.dumps({"scenario": scenario.name, **dict(summary.lines())}, indent=1))
    else:
        table = Table.grid(padding=(0, 2))
        for label, value in summary.lines():
            table.add_row(f"[bold]{label}[/]", value)
        console.print(table)
    times = result.times
    status.print(
        f"[dim]{times.total_s:.1f} s in all: simulating {times.simulate_s:.1f} s, "
        f"set-up {times.setup_s:.1f} s, trading day {times.day_s:.1f} s "
        f"(busy: polling {times.polling_s:.1f} s, orders {times.placement_s:.1f} s, "
        f"clearing {times.clearing_s:.1f} s, settlement {times.settlement_s:.1f} s)[/]"
    )
    for warning in result.errors[:3]:
        status.print(f"[yellow]warning:[/] {warning[:160]}")
    if len(result.errors) > 3:
        status.print(f"[yellow]... and {len(result.errors) - 3} more warnings[/]")
    folder = report or Path("var") / "reports" / scenario.name
    page = write_report(result, summary, folder)
    status.print(f"report written to [cyan]{page}[/]")
    if result.service_log is not None and result.service_log.is_file():
        status.print(f"the platform's log of the day (JSON lines): [cyan]{result.service_log}[/]")
    if not (summary.all_cleared_once and summary.money_balance_cp == 0 and summary.pool_balance_cp == 0):
        raise fail("the run's checks failed (see the summary)")
