"""The ``smartbrum settle`` and ``smartbrum statement`` commands.

The database stack is imported inside the commands, so that ``smartbrum clear`` starts without it.
"""

from __future__ import annotations

import sys
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from cli.options import fail

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from market.settlement import SettlementOutcome
from market.intervals import LONDON, InvalidPeriodError, parse_period_key, periods_of_day


def settle_command(
    on: Annotated[
        str | None, typer.Option("--date", help="Settlement date, YYYY-MM-DD (default: yesterday).")
    ] = None,
    interval: Annotated[
        str | None, typer.Option(help="One interval, DATE/PERIOD (e.g. 2026-11-21/27).")
    ] = None,
    run: Annotated[str, typer.Option(help="initial or reconcile.")] = "initial",
    csv_file: Annotated[Path | None, typer.Option("--csv", help="Write the runs' export (CSV) here.")] = None,
    now: Annotated[str | None, typer.Option(help="Time of the run, ISO 8601 (default: now).")] = None,
) -> None:
    """Settle a day's intervals (or one interval) and print a summary per run."""
    from cli.options import market_engine, platform_now, settings_or_fail
    from market.errors import MarketError
    from market.settlement import settle_periods
    from market.statements import export_runs_csv

    settings = settings_or_fail()
    if on is not None and interval is not None:
        raise typer.BadParameter("give --date or --interval, not both", param_hint="--date")
    if run not in ("initial", "reconcile"):
        raise typer.BadParameter(f"{run!r} is not initial or reconcile", param_hint="--run")
    length = settings.interval_minutes
    if interval is not None:
        try:
            periods = [parse_period_key(interval, length_minutes=length)]
        except InvalidPeriodError as error:
            raise typer.BadParameter(str(error), param_hint="--interval") from None
    else:
        day = _date(on) if on is not None else datetime.now(LONDON).date() - timedelta(days=1)
        periods = periods_of_day(day, length_minutes=length)
    moment = platform_now(now, "--now", settings)
    if on is not None or interval is None:
        # A day's intervals whose meter data is not due yet are left for later, not refused.
        config = settings.settlement_config()
        due = [p for p in periods if moment >= p.end_utc + config.meter_data_delay]
        if len(due) < len(periods) and due:
            print(f"{len(periods) - len(due)} intervals not due yet; settling {len(due)}", file=sys.stderr)
            periods = due
    with market_engine(settings) as engine:
        try:
            outcomes = settle_periods(
                engine,
                periods,
                run_type=run,
                config=settings.settlement_config(),
                now=moment,
                triggered_by="cli",
            )
        except MarketError as error:
            raise fail(str(error)) from None
        _summarise(engine, outcomes)
        if csv_file is not None:
            from sqlmodel import Session

            with Session(engine) as session:
                text = export_runs_csv(session, [outcome.run.id for outcome in outcomes])
            try:
                csv_file.write_text(text)
            except OSError as error:
                raise fail(f"{csv_file}: cannot write ({error.strerror or error})") from None
            print(f"export written to {csv_file}", file=sys.stderr)


def _summarise(engine: Engine, outcomes: list[SettlementOutcome]) -> None:
    from sqlmodel import Session

    from market.settlement import account_balances

    counts = {"complete": 0, "partial": 0, "pending": 0}
    with Session(engine) as session:
        for outcome in outcomes:
            settled = outcome.run
            counts[settled.status] += 1
            balances = account_balances(session, run_id=settled.id)
            verb = "settled" if outcome.created else "unchanged"
            line = (
                f"{settled.period.key} {settled.run_type} #{settled.sequence} {verb}: {settled.status}, "
                f"{settled.lines} lines, balance {sum(balances.values())}"
            )
            if settled.pending:
                line += f"; pending: {', '.join(f'{k} ({v})' for k, v in sorted(settled.pending.items()))}"
            if settled.estimated:
                line += f"; estimated: {', '.join(settled.estimated)}"
            print(line)
    print(
        f"{len(outcomes)} intervals: {counts['complete']} complete, {counts['partial']} partial, "
        f"{counts['pending']} pending"
    )


def statement_command(
    participant: Annotated[str, typer.Argument(help="The household.")],
    month: Annotated[str, typer.Option(help="The month, YYYY-MM.")],
    csv_file: Annotated[Path | None, typer.Option("--csv", help="Write the statement as CSV here.")] = None,
) -> None:
    """A household's statement for a month: a row per day and the total, with the saving."""
    from sqlmodel import Session

    from cli.options import market_engine, settings_or_fail
    from market.errors import MarketError
    from market.statements import statement, statement_csv, statement_row

    try:
        first = date.fromisoformat(f"{month}-01")
    except ValueError:
        raise typer.BadParameter(f"{month!r} is not YYYY-MM", param_hint="--month") from None
    last = (first.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)
    with market_engine(settings_or_fail()) as engine, Session(engine) as session:
        try:
            result = statement(session, participant, first_day=first, last_day=last)
        except MarketError as error:
            raise fail(str(error)) from None
    if csv_file is not None:
        try:
            csv_file.write_text(statement_csv(result))
        except OSError as error:
            raise fail(f"{csv_file}: cannot write ({error.strerror or error})") from None
        print(f"statement written to {csv_file}", file=sys.stderr)
        return
    headers = (
        "date",
        "bought kWh",
        "p",
        "sold kWh",
        "p",
        "imported kWh",
        "p",
        "exported kWh",
        "p",
        "fees p",
        "VAT p",
        "total p",
        "baseline p",
        "saving p",
        "corrections p",
    )
    table = Table(*headers, title=f"{participant}: {month} (pence; + pays, - is paid)")
    for day, figures in result.days.items():
        table.add_row(str(day), *statement_row(figures))
    table.add_row("total", *statement_row(result.total), style="bold")
    Console(width=200).print(table)


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a date (YYYY-MM-DD)", param_hint="--date") from None
