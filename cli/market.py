"""The ``smartbrum db``, ``intervals`` and ``smartbrum market`` commands.

The database stack (SQLAlchemy, Alembic, the market) is imported inside the commands that use
it, so that ``smartbrum clear`` starts without it.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from cli.options import fail, iso_utc, market_engine, platform_now, settings_or_fail, utc_option
from market.intervals import ALLOWED_LENGTHS_MINUTES, InvalidPeriodError, parse_period_key, periods_of_day

if TYPE_CHECKING:
    from market.clearing import ClearingOutcome

db_app = typer.Typer(help="The market database.", no_args_is_help=True)
market_app = typer.Typer(help="Run and inspect the market.", no_args_is_help=True)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or update the database schema (Alembic migrations)."""
    from market.database import create_database_engine, schema_revision, upgrade_database

    settings = settings_or_fail()
    engine = create_database_engine(settings.database_url)
    try:
        upgrade_database(engine)
        print(f"database {engine.url!r} is at revision {schema_revision(engine)}")
    except Exception as error:
        raise fail(f"database: cannot upgrade {engine.url!r}: {type(error).__name__}: {error}") from None
    finally:
        engine.dispose()


def intervals(
    on: Annotated[str, typer.Option("--date", help="Settlement date (Europe/London), YYYY-MM-DD.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list.")] = False,
    length: Annotated[
        int | None, typer.Option(help="Period length in minutes (default: the setting).")
    ] = None,
) -> None:
    """List a settlement date's periods with their exact UTC times and gate closures.

    An order for a period may be placed, changed or cancelled strictly before its gate closure
    (SMARTBRUM_GATE_CLOSURE_MINUTES before the period starts).
    """
    try:
        day = date.fromisoformat(on)
    except ValueError:
        raise typer.BadParameter(f"{on!r} is not a date (YYYY-MM-DD)", param_hint="--date") from None
    settings = settings_or_fail()
    minutes = length if length is not None else settings.interval_minutes
    if minutes not in ALLOWED_LENGTHS_MINUTES:
        raise typer.BadParameter(f"must be one of {ALLOWED_LENGTHS_MINUTES}", param_hint="--length")
    try:
        periods = periods_of_day(day, length_minutes=minutes)
    except InvalidPeriodError as error:
        raise fail(str(error)) from None
    gate_minutes = settings.gate_closure_minutes
    if as_json:
        rows = [
            {
                "settlement_date": p.settlement_date.isoformat(),
                "period": p.period,
                "start_utc": iso_utc(p.start_utc),
                "end_utc": iso_utc(p.end_utc),
                "gate_closure_utc": iso_utc(p.start_utc - timedelta(minutes=gate_minutes)),
                "start_local": p.start_local.isoformat(),
                "end_local": p.end_local.isoformat(),
            }
            for p in periods
        ]
        sys.stdout.write(json.dumps(rows, indent=1) + "\n")
        return
    from rich import box

    table = Table(
        "period",
        "start (UTC)",
        "end",
        "gate closes",
        "local time",
        title=f"{day}: {len(periods)} periods",
        caption=f"orders close {gate_minutes} min before their period (--json: full ISO times)",
        box=box.SIMPLE_HEAD,
    )
    for p in periods:
        local = f"{p.start_local:%H:%M %Z} - {p.end_local:%H:%M %Z}"
        gate = p.start_utc - timedelta(minutes=gate_minutes)
        table.add_row(
            str(p.period), f"{p.start_utc:%Y-%m-%d %H:%M}", f"{p.end_utc:%H:%M}", f"{gate:%H:%M}", local
        )
    Console().print(table)


def _report(outcomes: list[ClearingOutcome]) -> None:
    """One plain line per interval (plain, not rich: scripts read these lines)."""
    for outcome in outcomes:
        run = outcome.run
        verb = "cleared" if outcome.created else "already cleared"
        print(
            f"{verb} {run.period.key} ({iso_utc(run.period.start_utc)}): {run.orders} orders, "
            f"welfare {run.welfare_p:.2f} p, backstop +{run.grid_import_kwh}/-{run.grid_export_kwh} kWh, "
            f"run {run.id}"
        )


@market_app.command("clear-due")
def market_clear_due(
    now: Annotated[str | None, typer.Option(help="Market time, ISO 8601 with offset (default: now).")] = None,
) -> None:
    """Clear every interval whose gate has closed and that is not yet cleared, oldest first."""
    from market.clearing import clear_due
    from market.errors import MarketError
    from optimiser import SolverError

    settings = settings_or_fail()
    moment = platform_now(now, "--now", settings)
    with market_engine(settings) as engine:
        try:
            outcomes = clear_due(engine, rules=settings.market_rules(), now=moment, triggered_by="cli")
        except (MarketError, SolverError) as error:
            raise fail(str(error)) from None
    if not outcomes:
        print(f"nothing due at {iso_utc(moment)}")
    _report(outcomes)


@market_app.command("reclear")
def market_reclear(
    interval: Annotated[str, typer.Argument(help="The interval, DATE/PERIOD (for example 2026-11-21/27).")],
    reason: Annotated[str, typer.Option(help="Why: kept with the run for audit.")],
    now: Annotated[str | None, typer.Option(help="Market time, ISO 8601 with offset (default: now).")] = None,
) -> None:
    """Clear an interval again, superseding its current run (which is kept for audit)."""
    from market.clearing import clear_interval
    from market.errors import MarketError
    from optimiser import SolverError

    settings = settings_or_fail()
    try:
        period = parse_period_key(interval, length_minutes=settings.interval_minutes)
    except InvalidPeriodError as error:
        raise typer.BadParameter(str(error), param_hint="INTERVAL") from None
    moment = platform_now(now, "--now", settings)
    with market_engine(settings) as engine:
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
            raise fail(str(error)) from None
    _report([outcome])
    if outcome.run.supersedes_id is not None:
        print(f"run {outcome.run.id} supersedes run {outcome.run.supersedes_id}: {reason}")


@market_app.command("verify")
def market_verify(run_id: Annotated[int, typer.Argument(help="Clearing run id.")]) -> None:
    """Re-run a stored clearing from its stored inputs and compare (exit 1 on any difference)."""
    from market.clearing import verify_run
    from market.errors import MarketError

    with market_engine(settings_or_fail()) as engine:
        try:
            differences = verify_run(engine, run_id)
        except MarketError as error:
            raise fail(str(error)) from None
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
    from api.clock import AcceleratedClock, Clock, SystemClock
    from api.scheduler import MarketScheduler
    from market.errors import MarketError
    from optimiser import SolverError

    settings = settings_or_fail()
    if not speed > 0:
        raise typer.BadParameter("must be positive", param_hint="--speed")
    clock: Clock = SystemClock()
    if speed != 1.0 or start is not None:
        clock = AcceleratedClock(utc_option(start, "--start") or datetime.now(UTC), speed)
    with market_engine(settings) as engine:
        scheduler = MarketScheduler(engine, settings.market_rules(), clock, on_cleared=_report)
        stop = threading.Event()
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            scheduler.start()
        except (MarketError, SolverError) as error:
            raise fail(str(error)) from None
        period, gate = scheduler.next_gate_closure(clock.now())
        print(f"market clock running; next gate closure {iso_utc(gate)} for {period.key}", file=sys.stderr)
        stop.wait()
        scheduler.shutdown()
