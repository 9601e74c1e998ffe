"""The ``smartbrum settle`` and ``smartbrum statement`` commands.

The database stack is imported inside the commands, so that ``smartbrum clear`` starts without it.
"""

from __future__ import annotations

import sys
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from cli.options import fail

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from market.settlement import SettlementOutcome
    from market.statements import IntervalFigures, Statement, StatementFigures
from market.intervals import LONDON, InvalidPeriodError, parse_period_key, periods_of_day
from market.units import CP_PER_PENNY


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
    as_json: Annotated[bool, typer.Option("--json", help="Print the runs as JSON.")] = False,
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
        _summarise(engine, outcomes, as_json=as_json)
        if csv_file is not None:
            from sqlmodel import Session

            with Session(engine) as session:
                text = export_runs_csv(session, [outcome.run.id for outcome in outcomes])
            try:
                csv_file.write_text(text)
            except OSError as error:
                raise fail(f"{csv_file}: cannot write ({error.strerror or error})") from None
            print(f"export written to {csv_file}", file=sys.stderr)


def _summarise(engine: Engine, outcomes: list[SettlementOutcome], *, as_json: bool) -> None:
    import json

    from sqlmodel import Session

    from market.settlement import account_balances

    counts = {"complete": 0, "partial": 0, "pending": 0}
    runs = []
    with Session(engine) as session:
        for outcome in outcomes:
            settled = outcome.run
            counts[settled.status] += 1
            balance = sum(account_balances(session, run_id=settled.id).values())
            runs.append(
                {
                    "interval": settled.period.key,
                    "run_id": settled.id,
                    "run_type": settled.run_type,
                    "sequence": settled.sequence,
                    "created": outcome.created,
                    "status": settled.status,
                    "lines": settled.lines,
                    "balance_p": str(Decimal(balance) / CP_PER_PENNY),
                    "pending": dict(sorted(settled.pending.items())),
                    "estimated": sorted(settled.estimated),
                }
            )
            if as_json:
                continue
            verb = "settled" if outcome.created else "unchanged"
            line = (
                f"{settled.period.key} {settled.run_type} #{settled.sequence} {verb}: {settled.status}, "
                f"{settled.lines} lines, balance {balance}"
            )
            if settled.pending:
                line += f"; pending: {', '.join(f'{k} ({v})' for k, v in sorted(settled.pending.items()))}"
            if settled.estimated:
                line += f"; estimated: {', '.join(settled.estimated)}"
            print(line)
    if as_json:
        print(json.dumps({"runs": runs, **counts}, indent=2))
        return
    print(
        f"{len(outcomes)} intervals: {counts['complete']} complete, {counts['partial']} partial, "
        f"{counts['pending']} pending"
    )


def statement_command(
    participant: Annotated[str, typer.Argument(help="The household.")],
    month: Annotated[str | None, typer.Option(help="A month, YYYY-MM: a line per day.")] = None,
    day: Annotated[
        str | None, typer.Option(help="A settlement date, YYYY-MM-DD: a line per interval.")
    ] = None,
    csv_file: Annotated[Path | None, typer.Option("--csv", help="Write the statement as CSV here.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the statement as the API's JSON.")] = False,
) -> None:
    """A household's statement: a month a line per day, or a day a line per interval.

    Pence are the household's: + it pays, - it is paid. No saving is claimed for a day until
    every interval of it is settled on metered energy.
    """
    from sqlmodel import Session

    from cli.options import market_engine, settings_or_fail
    from market.errors import MarketError
    from market.statements import day_statement, day_statement_csv, statement, statement_csv

    if (month is None) == (day is None):
        raise typer.BadParameter("give --month or --day (one of them)", param_hint="--month")
    if csv_file is not None and as_json:
        raise typer.BadParameter("give --csv or --json, not both", param_hint="--json")
    settings = settings_or_fail()
    length = settings.interval_minutes
    with market_engine(settings) as engine, Session(engine) as session:
        try:
            if month is not None:
                first = _month(month)
                last = (first.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)
                found = statement(session, participant, first_day=first, last_day=last, length_minutes=length)
            else:
                on = _date(day or "", "--day")
                rows = day_statement(session, participant, on, length_minutes=length)
        except MarketError as error:
            raise fail(str(error)) from None
    if as_json:
        from api.schemas import DayStatementPublic, StatementPublic

        shown = (
            StatementPublic.of(month, found)
            if month is not None
            else DayStatementPublic.of(participant, on, rows, settings.market_rules())
        )
        print(shown.model_dump_json(indent=2))
    elif csv_file is not None:
        text = statement_csv(found) if month is not None else day_statement_csv(rows)
        try:
            csv_file.write_text(text)
        except OSError as error:
            raise fail(f"{csv_file}: cannot write ({error.strerror or error})") from None
        print(f"statement written to {csv_file}", file=sys.stderr)
    elif month is not None:
        _print_month(participant, month, found)
    else:
        _print_day(participant, on, rows)


#: The tables' columns (narrow enough for an 80-column terminal; --json and --csv have them all).
_MONEY_HEADERS = ("market", "grid", "fees+VAT", "total", "saving")
_STANDING = {
    "settled": "settled",
    "estimated": "estimated",
    "awaiting_meter_data": "no meter data",
    "not_settled": "not settled",
}


def _money(figures: StatementFigures) -> list[str]:
    """Market (bought + sold), grid (imported + exported), fees and VAT, total, saving."""
    pence = lambda cp: "-" if cp is None else f"{Decimal(cp) / CP_PER_PENNY:.2f}"  # noqa: E731
    return [
        pence(figures.bought_cp + figures.sold_cp),
        pence(figures.imported_cp + figures.exported_cp),
        pence(figures.fees_cp + figures.vat_cp),
        pence(figures.total_cp),
        pence(figures.saving_cp),
    ]


def _settled(figures: StatementFigures) -> str:
    """Intervals settled on metered energy, of all."""
    return f"{figures.intervals['settled']}/{sum(figures.intervals.values())}"


def _table(*headers: str, title: str) -> Table:
    """A statement table: money right-aligned, narrow enough for 80 columns."""
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1))
    for header in headers:
        table.add_column(header, justify="right" if header in _MONEY_HEADERS else "left", no_wrap=True)
    return table


def _notes(figures: StatementFigures, saving: str) -> str:
    pence = lambda cp: f"{Decimal(cp) / CP_PER_PENNY:.2f}"  # noqa: E731
    notes = [
        "Pence: + the household pays, - it is paid. market = bought + sold;",
        "grid = imported + exported; total = market + grid + fees + VAT.",
        saving,
    ]
    if figures.corrections_cp:
        notes.append(f"The figures include {pence(figures.corrections_cp)} p of reconciliation corrections.")
    return "\n".join(notes)


def _print_month(participant: str, month: str, found: Statement) -> None:
    table = _table("date", *_MONEY_HEADERS, "settled", title=f"{participant}: {month}")
    for on, figures in found.days.items():
        table.add_row(str(on), *_money(figures), _settled(figures))
    table.add_row("total", *_money(found.total), _settled(found.total), style="bold")
    days = len(found.days)
    if found.settled_days:
        saving = (
            f"Saving against the tariffs alone: {Decimal(found.settled.saving_cp or 0) / CP_PER_PENNY:.2f} p "
            f"over the {found.settled_days} of {days} days settled on metered energy."
        )
    else:
        saving = "No saving is claimed yet: no day is settled on metered energy."
    console = Console()
    console.print(table)
    console.print(_notes(found.total, saving))


def _print_day(participant: str, on: date, rows: list[IntervalFigures]) -> None:
    from market.statements import StatementFigures

    table = _table("period", "local", *_MONEY_HEADERS, "status", title=f"{participant}: {on}")
    total = StatementFigures()
    for row in rows:
        total.add(row.figures)
        local = row.period.start_local
        table.add_row(
            str(row.period.period), f"{local:%H:%M %Z}", *_money(row.figures), _STANDING[row.status]
        )
    table.add_row("total", "", *_money(total), f"{_settled(total)} settled", style="bold")
    waiting = sorted({row.reason for row in rows if row.reason})
    saving = (
        "Saving claimed: every interval is settled on metered energy."
        if total.final
        else "No saving is claimed for the day: " + "; ".join(waiting) + "."
    )
    console = Console()
    console.print(table)
    console.print(_notes(total, saving))


def _month(text: str) -> date:
    try:
        return date.fromisoformat(f"{text}-01")
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not YYYY-MM", param_hint="--month") from None


def _date(text: str, option: str = "--date") -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a date (YYYY-MM-DD)", param_hint=option) from None
