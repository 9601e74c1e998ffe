"""The ``smartbrum`` command line.

Every command turns bad input into a one-line message on stderr and exit status 2,
never a traceback.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.engine import Engine

from api.clearing_files import FileFormatError, clear_files
from api.clock import AcceleratedClock, Clock, SystemClock
from api.scheduler import MarketScheduler
from api.settings import Settings, get_settings
from market.clearing import ClearingOutcome, clear_due, clear_interval, verify_run
from market.database import create_database_engine, head_revision, schema_revision, upgrade_database
from market.errors import MarketError
from market.intervals import ALLOWED_LENGTHS_MINUTES, InvalidPeriodError, parse_period_key, periods_of_day
from optimiser import ClearingResult, SolverError

app = typer.Typer(
    name="smartbrum",
    help="Smart-energy trading and metering for a city's neighbourhoods.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="The market database.", no_args_is_help=True)
market_app = typer.Typer(help="Run and inspect the market.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(market_app, name="market")
SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"


def _price(value: str | None, name: str) -> Decimal | None:
    if value is None:
        return None
    try:
        price = Decimal(value)
    except InvalidOperation:
        raise typer.BadParameter(f"{value!r} is not a number", param_hint=name) from None
    if not price.is_finite():
        raise typer.BadParameter(f"{value!r} is not a finite number", param_hint=name)
    return price


def _fail(message: str) -> typer.Exit:
    print(f"smartbrum: {message}", file=sys.stderr)
    return typer.Exit(code=2)


def _utc(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not an ISO 8601 time", param_hint=name) from None
    if moment.tzinfo is None:
        raise typer.BadParameter(f"{value!r} needs a UTC offset (for example 'Z')", param_hint=name)
    return moment.astimezone(UTC)


def _settings() -> Settings:
    try:
        return get_settings()
    except ValueError as error:  # pydantic's ValidationError is a ValueError
        raise _fail(f"settings: {' '.join(str(error).split())}") from None


@contextmanager
def _market_engine(settings: Settings) -> Iterator[Engine]:
    """The database engine, refusing a database whose schema is not up to date; closed after use."""
    engine = create_database_engine(settings.database_url)
    try:
        try:
            current, head = schema_revision(engine), head_revision(engine)
        except Exception as error:
            raise _fail(f"database: cannot connect to {engine.url!r} ({type(error).__name__})") from None
        if current != head:
            raise _fail(
                f"database: schema is at {current or 'nothing'}, not {head}; run 'smartbrum db upgrade'"
            )
        yield engine
    finally:
        engine.dispose()


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or update the database schema (Alembic migrations)."""
    settings = _settings()
    engine = create_database_engine(settings.database_url)
    try:
        upgrade_database(engine)
        print(f"database {engine.url!r} is at revision {schema_revision(engine)}")
    except Exception as error:
        raise _fail(f"database: cannot upgrade {engine.url!r}: {type(error).__name__}: {error}") from None
    finally:
        engine.dispose()


@app.command()
def intervals(
    on: Annotated[str, typer.Option("--date", help="Settlement date (Europe/London), YYYY-MM-DD.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list.")] = False,
    length: Annotated[
        int | None, typer.Option(help="Period length in minutes (default: the setting).")
    ] = None,
) -> None:
    """List a settlement date's periods with their exact UTC times."""
    try:
        day = date.fromisoformat(on)
    except ValueError:
        raise typer.BadParameter(f"{on!r} is not a date (YYYY-MM-DD)", param_hint="--date") from None
    minutes = length if length is not None else _settings().interval_minutes
    if minutes not in ALLOWED_LENGTHS_MINUTES:
        raise typer.BadParameter(f"must be one of {ALLOWED_LENGTHS_MINUTES}", param_hint="--length")
    try:
        periods = periods_of_day(day, length_minutes=minutes)
    except InvalidPeriodError as error:
        raise _fail(str(error)) from None
    if as_json:
        rows = [
            {
                "settlement_date": p.settlement_date.isoformat(),
                "period": p.period,
                "start_utc": _iso(p.start_utc),
                "end_utc": _iso(p.end_utc),
                "start_local": p.start_local.isoformat(),
                "end_local": p.end_local.isoformat(),
            }
            for p in periods
        ]
        sys.stdout.write(json.dumps(rows, indent=1) + "\n")
        return
    table = Table("period", "start (UTC)", "end (UTC)", "local time", title=f"{day}: {len(periods)} periods")
    for p in periods:
        local = f"{p.start_local:%H:%M %Z} - {p.end_local:%H:%M %Z}"
        table.add_row(str(p.period), _iso(p.start_utc), _iso(p.end_utc), local)
    Console().print(table)


def _report(outcomes: list[ClearingOutcome]) -> None:
    """One plain line per interval (plain, not rich: scripts read these lines)."""
    for outcome in outcomes:
        run = outcome.run
        verb = "cleared" if outcome.created else "already cleared"
        print(
            f"{verb} {run.period.key} ({_iso(run.period.start_utc)}): {run.orders} orders, "
            f"welfare {run.welfare_p:.2f} p, backstop +{run.grid_import_kwh}/-{run.grid_export_kwh} kWh, "
            f"run {run.id}"
        )


@market_app.command("clear-due")
def market_clear_due(
    now: Annotated[str | None, typer.Option(help="Market time, ISO 8601 with offset (default: now).")] = None,
) -> None:
    """Clear every interval whose gate has closed and that is not yet cleared, oldest first."""
    settings = _settings()
    moment = _utc(now, "--now") or datetime.now(UTC)
    with _market_engine(settings) as engine:
        try:
            outcomes = clear_due(engine, rules=settings.market_rules(), now=moment, triggered_by="cli")
        except (MarketError, SolverError) as error:
            raise _fail(str(error)) from None
    if not outcomes:
        print(f"nothing due at {_iso(moment)}")
    _report(outcomes)


@market_app.command("reclear")
def market_reclear(
    interval: Annotated[str, typer.Argument(help="The interval, DATE/PERIOD (for example 2026-11-21/27).")],
    reason: Annotated[str, typer.Option(help="Why: kept with the run for audit.")],
    now: Annotated[str | None, typer.Option(help="Market time, ISO 8601 with offset (default: now).")] = None,
) -> None:
    """Clear an interval again, superseding its current run (which is kept for audit)."""
    settings = _settings()
    try:
        period = parse_period_key(interval, length_minutes=settings.interval_minutes)
    except InvalidPeriodError as error:
        raise typer.BadParameter(str(error), param_hint="INTERVAL") from None
    moment = _utc(now, "--now") or datetime.now(UTC)
    with _market_engine(settings) as engine:
        try:
            outcome = clear_interval(
                engine,
                period=period,
                rules=settings.market_rules(),
                now=moment,
                triggered_by="cli:reclear",
                reason=reason,
            )
        except (MarketError, SolverError) as error:
            raise _fail(str(error)) from None
    _report([outcome])
    if outcome.run.supersedes_id is not None:
        print(f"run {outcome.run.id} supersedes run {outcome.run.supersedes_id}: {reason}")


@market_app.command("verify")
def market_verify(run_id: Annotated[int, typer.Argument(help="Clearing run id.")]) -> None:
    """Re-run a stored clearing from its stored inputs and compare (exit 1 on any difference)."""
    with _market_engine(_settings()) as engine:
        try:
            differences = verify_run(engine, run_id)
        except MarketError as error:
            raise _fail(str(error)) from None
    if differences:
        for difference in differences:
            print(f"run {run_id}: {difference}")
        raise typer.Exit(code=1)
    print(f"run {run_id}: re-cleared from its stored inputs, identical")


@market_app.command("run")
def market_run(
    speed: Annotated[float, typer.Option(help="Market seconds per real second (1 = real time).")] = 1.0,
    start: Annotated[str | None, typer.Option(help="Market start time with --speed (default: now).")] = None,
) -> None:
    """Run the market's clock in the foreground: catch up, then clear at every gate closure."""
    settings = _settings()
    if not speed > 0:
        raise typer.BadParameter("must be positive", param_hint="--speed")
    clock: Clock = SystemClock()
    if speed != 1.0 or start is not None:
        clock = AcceleratedClock(_utc(start, "--start") or datetime.now(UTC), speed)
    with _market_engine(settings) as engine:
        scheduler = MarketScheduler(engine, settings.market_rules(), clock, on_cleared=_report)
        stop = threading.Event()
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            scheduler.start()
        except (MarketError, SolverError) as error:
            raise _fail(str(error)) from None
        period, gate = scheduler.next_gate_closure(clock.now())
        print(f"market clock running; next gate closure {_iso(gate)} for {period.key}", flush=True)
        stop.wait()
        scheduler.shutdown()


@app.command()
def clear(
    orders: Annotated[Path, typer.Argument(help="Order book CSV for one interval.")],
    network: Annotated[
        Path | None, typer.Option(help="Network tree TOML; without it every order trades at one node.")
    ] = None,
    import_price: Annotated[
        str | None, typer.Option(help="Backstop import tariff, p/kWh (default: the network file's, or 24.5).")
    ] = None,
    export_price: Annotated[
        str | None, typer.Option(help="Backstop export tariff, p/kWh (default: the network file's, or 4.1).")
    ] = None,
) -> None:
    """Clear one interval's order book and print the result as JSON."""
    try:
        _, text = clear_files(
            orders,
            network=network,
            import_price=_price(import_price, "--import-price"),
            export_price=_price(export_price, "--export-price"),
        )
    except (FileFormatError, SolverError) as error:
        raise _fail(str(error)) from None
    sys.stdout.write(text + "\n")


@app.command()
def demo(
    book: Annotated[Path, typer.Option(help="Order book CSV.")] = SCENARIOS / "sample-book.csv",
    network: Annotated[Path, typer.Option(help="Network TOML.")] = SCENARIOS / "sample-network.toml",
) -> None:
    """Clear the sample order book in scenarios/ and show the result."""
    try:
        result, _ = clear_files(book, network=network)
    except (FileFormatError, SolverError) as error:
        raise _fail(str(error)) from None
    _show(result, book, network)


def _show(result: ClearingResult, book: Path, network: Path) -> None:
    console = Console()
    console.print(f"[bold]smartbrum[/] cleared [cyan]{book.name}[/] on [cyan]{network.name}[/]")
    prices = Table("node", "price p/kWh", "supporting range", "net flow in kWh", title="Nodes")
    for node, price in result.node_prices_p_per_kwh.items():
        low, high = result.price_ranges_p_per_kwh[node]
        flow = result.flows_wh.get(node)
        prices.add_row(
            node,
            f"{price:.4f}",
            f"{low} .. {high}" if low != high else "unique",
            "-" if flow is None else f"{flow / 1000:.3f}",
        )
    console.print(prices)
    bought = int(result.accepted_wh[result.accepted_wh > 0].sum())
    filled = int((result.accepted_wh > 0).sum())
    summary = Table.grid(padding=(0, 2))
    summary.add_row("orders", f"{len(result.order_ids)} ({filled} filled in whole or part)")
    summary.add_row("energy accepted", f"{bought / 1000:.3f} kWh (both sides)")
    summary.add_row("backstop import", f"{result.grid_import_kwh} kWh")
    summary.add_row("backstop export", f"{result.grid_export_kwh} kWh")
    summary.add_row("welfare", f"{result.welfare_p:.2f} p")
    stats = result.stats
    summary.add_row(
        "model",
        f"{stats.price_levels} price levels, {stats.variables} variables, {stats.constraints} balances, "
        f"{stats.rounds} round(s), {stats.seconds.get('total', 0.0) * 1000:.0f} ms",
    )
    console.print(summary)


def main() -> None:
    """Entry point of the ``smartbrum`` command."""
    app()
