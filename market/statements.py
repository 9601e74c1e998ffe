"""Statements and exports: what the ledger says a household owes or is owed, per day and in total,
and settlement runs' lines as CSV.

Read-only over the ledger that :mod:`market.settlement` posts.

May import :mod:`market` and SQLModel.
"""

from __future__ import annotations

import csv
import io
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, select

from market.charges import HOUSEHOLD_ACCOUNT_PREFIX
from market.errors import NotFoundError
from market.intervals import SettlementPeriod, periods_in_day, periods_of_day
from market.participants import HOUSEHOLD
from market.settlement import AWAITING_METER_DATA, ESTIMATED, NOT_CLEARED, standing_in_runs
from market.tables import LedgerLineRow, ParticipantRow, SettlementRunRow
from market.units import CP_PER_PENNY, money_cp, scale_cp

#: How an interval stands for a household, by its latest settlement run.
SETTLED = "settled"  # settled on the household's metered energy
# ESTIMATED and AWAITING_METER_DATA: as the run recorded them (market.settlement)
NOT_SETTLED = "not_settled"  # no settlement run yet (or nothing cleared to settle)
INTERVAL_STATUSES = (SETTLED, ESTIMATED, AWAITING_METER_DATA, NOT_SETTLED)


@dataclass
class StatementFigures:
    """One household's figures over some intervals; energy in Wh, money in hundredths of a penny.

    One sign convention throughout, the household's: money positive it pays, negative it is paid
    (``sold_cp`` and ``exported_cp`` are negative or zero). Energy is a quantity, never negative
    but for a correction that moved energy back. ``total_cp`` is the sum of the six money
    columns. ``corrections_cp`` is not a seventh: it says how much of those columns came from
    reconciliation runs.

    ``intervals`` counts the intervals by :data:`INTERVAL_STATUSES`. The figures are final only
    when every interval is settled on metered energy; only then is there a saving to claim.
    """

    bought_wh: int = 0
    bought_cp: int = 0
    sold_wh: int = 0
    sold_cp: int = 0
    imported_wh: int = 0
    imported_cp: int = 0
    exported_wh: int = 0
    exported_cp: int = 0
    fees_cp: int = 0
    vat_cp: int = 0
    baseline_cp: int = 0
    corrections_cp: int = 0
    intervals: Counter[str] = field(default_factory=Counter)

    @property
    def total_cp(self) -> int:
        """What the household pays in all (negative: is paid)."""
        return (
            self.bought_cp + self.sold_cp + self.imported_cp + self.exported_cp + self.fees_cp + self.vat_cp
        )

    @property
    def final(self) -> bool:
        """Every interval settled on metered energy (none estimated, waiting or unsettled)."""
        return sum(self.intervals.values()) > 0 and self.intervals[SETTLED] == sum(self.intervals.values())

    @property
    def saving_cp(self) -> int | None:
        """The baseline (the same metered energy on the tariffs alone) less what the household
        pays; None until the figures are final."""
        return self.baseline_cp - self.total_cp if self.final else None

    def add(self, other: StatementFigures) -> None:
        self.bought_wh += other.bought_wh
        self.bought_cp += other.bought_cp
        self.sold_wh += other.sold_wh
        self.sold_cp += other.sold_cp
        self.imported_wh += other.imported_wh
        self.imported_cp += other.imported_cp
        self.exported_wh += other.exported_wh
        self.exported_cp += other.exported_cp
        self.fees_cp += other.fees_cp
        self.vat_cp += other.vat_cp
        self.baseline_cp += other.baseline_cp
        self.corrections_cp += other.corrections_cp
        self.intervals.update(other.intervals)


#: Ledger kind: the energy column and the money column it adds to, and the energy's direction.
_COLUMNS = {
    "trade_buy": ("bought_wh", "bought_cp", 1),
    "trade_sell": ("sold_wh", "sold_cp", -1),
    "imbalance_import": ("imported_wh", "imported_cp", 1),
    "imbalance_export": ("exported_wh", "exported_cp", -1),
}


@dataclass(frozen=True)
class IntervalFigures:
    """One interval of a household's statement: its period, how it stands, and its figures."""

    period: SettlementPeriod
    status: str
    #: Why the interval is not settled on metered energy ("" when it is).
    reason: str
    figures: StatementFigures


@dataclass(frozen=True)
class Statement:
    """A household's statement for a month: a row per day, the month's total, and the saving
    over the days settled on metered energy (``settled``, ``settled_days`` of them)."""

    participant_id: str
    month: str
    days: dict[date, StatementFigures]
    total: StatementFigures
    settled: StatementFigures
    settled_days: int


def statement(
    session: Session, participant_id: str, *, first_day: date, last_day: date, length_minutes: int = 30
) -> Statement:
    """A household's figures per settlement date between two dates (inclusive), and their total.

    Built from every posted line, reconciliations included. A day appears once any of its
    intervals has a settlement run; its intervals without one count as not settled. The baseline
    prices each interval's metered energy on that interval's tariffs (import charged with VAT,
    export paid), rounded per interval as a bill would be.
    """
    _household(session, participant_id)
    runs = _runs_between(session, first_day, last_day)
    lines = LedgerLineRow.__table__.c  # type: ignore[attr-defined]
    sums = _interval_sums(session, first_day, last_day, lines.participant_id == participant_id)
    standing = _household_standing(session, participant_id, runs)
    return _statement(participant_id, sums, runs, standing, first_day, length_minutes)


def statements(
    session: Session, *, first_day: date, last_day: date, length_minutes: int = 30
) -> dict[str, Statement]:
    """Every household's statement between two dates, as :func:`statement` makes them, from one
    read of the range's sums (for reports over a whole district, not one household's view)."""
    runs = _runs_between(session, first_day, last_day)
    lines = LedgerLineRow.__table__.c  # type: ignore[attr-defined]
    by_household: dict[str, list[sa.Row[Any]]] = {
        household: []
        for household in session.exec(select(ParticipantRow.id).where(ParticipantRow.kind == HOUSEHOLD))
    }
    for row in _interval_sums(session, first_day, last_day, lines.participant_id.is_not(None)):
        if row.participant_id in by_household:
            by_household[row.participant_id].append(row)
    standing: dict[str, dict[int, tuple[str, str]]] = defaultdict(dict)
    for run_id, households in standing_in_runs(session, list(runs)).items():
        for household, kind, reason in households:
            standing[household][run_id] = (kind, reason)
    return {
        household: _statement(household, sums, runs, standing[household], first_day, length_minutes)
        for household, sums in by_household.items()
    }


def day_statement(
    session: Session, participant_id: str, day: date, *, length_minutes: int = 30
) -> list[IntervalFigures]:
    """A household's statement for one settlement date, a row per interval (46, 48 or 50 of
    half an hour), each with how it stands and why it is not final."""
    _household(session, participant_id)
    runs = _runs_between(session, day, day)
    lines = LedgerLineRow.__table__.c  # type: ignore[attr-defined]
    figures = _interval_figures(
        _interval_sums(session, day, day, lines.participant_id == participant_id), runs
    )
    latest = _latest_runs(runs)
    standing = _household_standing(session, participant_id, runs)
    replaced = _estimates_replaced(runs, standing)
    intervals = []
    for period in periods_of_day(day, length_minutes=length_minutes):
        status, reason = _standing(latest.get((day, period.period)), standing)
        if status == SETTLED and (day, period.period) in replaced:
            reason = ESTIMATE_REPLACED.format(sequence=replaced[(day, period.period)])
        interval = figures.get((day, period.period), StatementFigures())
        interval.intervals[status] += 1
        intervals.append(IntervalFigures(period, status, reason, interval))
    return intervals


def _household(session: Session, participant_id: str) -> None:
    participant = session.get(ParticipantRow, participant_id)
    if participant is None or participant.kind != HOUSEHOLD:
        raise NotFoundError("participant_id", f"{participant_id!r} is not a household")


#: The figures that :func:`_line_sums` sums, in :class:`StatementFigures`' order (all of its
#: fields but the baseline, which is priced per interval, and the interval counts).
_SUMMED = (
    "bought_wh",
    "bought_cp",
    "sold_wh",
    "sold_cp",
    "imported_wh",
    "imported_cp",
    "exported_wh",
    "exported_cp",
    "fees_cp",
    "vat_cp",
    "corrections_cp",
)


def _line_sums(account: sa.ColumnElement[str]) -> tuple[sa.ColumnElement[Any], ...]:
    """The figures of :data:`_SUMMED` as sums over ledger lines, each from the side of the
    household whose account is ``account`` (+ when it pays), labelled with the field's name;
    then ``net_wh``, the metered energy the lines account for (bought - sold + imported -
    exported: each of the four kinds adds its energy from the household's side)."""
    lines = LedgerLineRow.__table__.c  # type: ignore[attr-defined]
    side = sa.case((lines.debit == account, 1), else_=-1)
    summands: dict[str, tuple[sa.ColumnElement[Any], sa.ColumnElement[bool]]] = {
        "fees_cp": (side * lines.amount_cp, lines.kind == "platform_fee"),
        "vat_cp": (side * lines.amount_cp, lines.kind == "vat"),
        "corrections_cp": (side * lines.amount_cp, lines.corrects_run_id.is_not(None)),
    }
    for kind, (energy, money, direction) in _COLUMNS.items():
        summands[energy] = (side * direction * lines.energy_wh, lines.kind == kind)
        summands[money] = (side * lines.amount_cp, lines.kind == kind)
    summands["net_wh"] = (side * lines.energy_wh, lines.kind.in_(_COLUMNS))

    def total(name: str) -> sa.ColumnElement[Any]:
        value, when = summands[name]
        # SUM of a BIGINT is NUMERIC on PostgreSQL: cast back so the figures stay Python ints.
        summed = sa.func.coalesce(sa.func.sum(sa.case((when, value), else_=0)), 0)
        return sa.cast(summed, sa.BigInteger).label(name)

    return tuple(total(name) for name in (*_SUMMED, "net_wh"))


def _summed_figures(values: Sequence[int]) -> StatementFigures:
    """Figures from the values of :data:`_SUMMED`, in its order."""
    bought_wh, bought_cp, sold_wh, sold_cp, imported_wh, imported_cp, *rest = values
    exported_wh, exported_cp, fees_cp, vat_cp, corrections_cp = rest
    return StatementFigures(
        bought_wh=bought_wh,
        bought_cp=bought_cp,
        sold_wh=sold_wh,
        sold_cp=sold_cp,
        imported_wh=imported_wh,
        imported_cp=imported_cp,
        exported_wh=exported_wh,
        exported_cp=exported_cp,
        fees_cp=fees_cp,
        vat_cp=vat_cp,
        corrections_cp=corrections_cp,
    )


def _interval_sums(
    session: Session, first_day: date, last_day: date, whose: sa.ColumnElement[bool]
) -> list[sa.Row[Any]]:
    """The figures of the households that ``whose`` selects in each settled interval of the dates
    from ``first_day`` to ``last_day``, summed by the database: a row per household and interval
    (``participant_id``, ``settlement_date``, ``period``, then :data:`_SUMMED` in its order, then
    ``net_wh``), over every run's lines, reconciliations included. The ledger's household index
    leads with the interval: the database seeks the household in each interval that a run of
    the range names (a month is about 1,500), the intervals coming from a subquery rather than
    a list of 1,500 parameters."""
    lines = LedgerLineRow.__table__.c  # type: ignore[attr-defined]
    runs = SettlementRunRow.__table__.c  # type: ignore[attr-defined]
    account = sa.literal(HOUSEHOLD_ACCOUNT_PREFIX) + lines.participant_id
    keys = (lines.participant_id, lines.settlement_date, lines.period)
    settled = sa.select(runs.interval_start_utc).where(*_runs_of_dates(first_day, last_day))
    query = sa.select(*keys, *_line_sums(account)).where(lines.interval_start_utc.in_(settled), whose)
    return list(session.execute(query.group_by(*keys)))


#: The columns of a settlement run that statements read (rows, not ORM objects: a month is
#: about 1,500 runs).
_RUN_COLUMNS = tuple(
    SettlementRunRow.__table__.c[name]  # type: ignore[attr-defined]
    for name in (
        "id",
        "interval_start_utc",
        "settlement_date",
        "period",
        "run_type",
        "sequence",
        "status",
        "import_p_per_kwh",
        "export_p_per_kwh",
        "vat_rate",
    )
)


def _runs_of_dates(first_day: date, last_day: date) -> tuple[sa.ColumnElement[bool], ...]:
    """The conditions on a settlement run of the dates from ``first_day`` to ``last_day``."""
    # A settlement date's intervals start within a day of its UTC midnight: that coarse range
    # lets the interval index find the runs.
    earliest = datetime.combine(first_day - timedelta(days=1), datetime.min.time(), UTC)
    latest = datetime.combine(last_day + timedelta(days=2), datetime.min.time(), UTC)
    runs = SettlementRunRow.__table__.c  # type: ignore[attr-defined]
    return (
        runs.interval_start_utc >= earliest,
        runs.interval_start_utc < latest,
        runs.settlement_date >= first_day,
        runs.settlement_date <= last_day,
    )


def _runs_between(session: Session, first_day: date, last_day: date) -> dict[int, Any]:
    """The settlement runs of the dates from ``first_day`` to ``last_day``, by id, as rows of
    :data:`_RUN_COLUMNS` (their attributes named as :class:`SettlementRunRow`'s)."""
    in_range = sa.select(*_RUN_COLUMNS).where(*_runs_of_dates(first_day, last_day))
    return {row.id: row for row in session.execute(in_range)}


def _latest_runs(runs: dict[int, SettlementRunRow]) -> dict[tuple[date, int], SettlementRunRow]:
    """Each interval's newest run: what it says of the interval now."""
    latest: dict[tuple[date, int], SettlementRunRow] = {}
    for run in runs.values():
        key = (run.settlement_date, run.period)
        if key not in latest or run.sequence > latest[key].sequence:
            latest[key] = run
    return latest


def _household_standing(
    session: Session, participant_id: str, runs: dict[int, SettlementRunRow]
) -> dict[int, tuple[str, str]]:
    """How the household stands in each of ``runs`` that did not settle it on metered energy."""
    return {
        run_id: (kind, reason)
        for run_id, found in standing_in_runs(session, list(runs), participant_id=participant_id).items()
        for _, kind, reason in found
    }


#: A day statement's reason for an interval settled on metered energy whose earlier run settled
#: the household on an estimate: the estimate was replaced by an actual (a late reading, or an
#: actual in a half-hourly data file) and reconciled.
ESTIMATE_REPLACED = "estimated meter energy replaced by actual (reconciled in run {sequence})"


def _estimates_replaced(
    runs: dict[int, SettlementRunRow], standing: dict[int, tuple[str, str]]
) -> dict[tuple[date, int], int]:
    """The intervals whose newest run settled the household on metered energy after an earlier
    run settled it on an estimate: each with the sequence of the first run that did so."""
    by_interval: dict[tuple[date, int], list[SettlementRunRow]] = defaultdict(list)
    for run in runs.values():
        by_interval[(run.settlement_date, run.period)].append(run)
    replaced: dict[tuple[date, int], int] = {}
    for key, interval_runs in by_interval.items():
        interval_runs.sort(key=lambda run: run.sequence)
        estimated = [standing.get(run.id or 0, ("", ""))[0] == ESTIMATED for run in interval_runs]
        if not any(estimated) or estimated[-1] or interval_runs[-1].status == "pending":
            continue
        last_estimate = max(index for index, flag in enumerate(estimated) if flag)
        replaced[key] = interval_runs[last_estimate + 1].sequence
    return replaced


def _standing(run: SettlementRunRow | None, standing: dict[int, tuple[str, str]]) -> tuple[str, str]:
    """How an interval stands for a household by its newest run, and why if it is not settled
    (``standing``: the household's, by run, from :func:`_household_standing`)."""
    if run is None:
        return NOT_SETTLED, "no settlement run yet"
    if run.status == "pending":
        return NOT_SETTLED, NOT_CLEARED
    assert run.id is not None
    kind, reason = standing.get(run.id, (SETTLED, ""))
    if kind == ESTIMATED:
        return ESTIMATED, "settled on estimated meter energy"
    return kind, reason


def _statement(
    participant_id: str,
    sums: Sequence[sa.Row[Any]],
    runs: dict[int, SettlementRunRow],
    standing: dict[int, tuple[str, str]],
    first_day: date,
    length_minutes: int,
) -> Statement:
    by_interval = _interval_figures(sums, runs)
    latest = _latest_runs(runs)
    days: dict[date, StatementFigures] = {}
    for day in sorted({day for day, _ in latest}):
        figures = days[day] = StatementFigures()
        for number in range(1, periods_in_day(day, length_minutes=length_minutes) + 1):
            key = (day, number)
            status = _standing(latest.get(key), standing)[0]
            interval = by_interval.get(key)
            if interval is None:  # nothing posted for the household: only how it stands
                figures.intervals[status] += 1
            else:
                interval.intervals[status] += 1
                figures.add(interval)
    total, settled = StatementFigures(), StatementFigures()
    for figures in days.values():
        total.add(figures)
        if figures.final:
            settled.add(figures)
    settled_days = sum(figures.final for figures in days.values())
    return Statement(participant_id, f"{first_day:%Y-%m}", days, total, settled, settled_days)


def _interval_figures(
    sums: Iterable[sa.Row[Any]], runs: dict[int, SettlementRunRow]
) -> dict[tuple[date, int], StatementFigures]:
    """Each interval's figures from its sums (:func:`_interval_sums`, one household's), with its
    baseline: the no-local-market bill, the interval's net metered energy on the tariffs of its
    newest run that has them (import charged with VAT, export paid, rounded per interval).
    The intervals' statuses are counted elsewhere."""
    terms: dict[tuple[date, int], Any] = {}
    for run in runs.values():
        if run.import_p_per_kwh is None or run.export_p_per_kwh is None:
            continue
        key = (run.settlement_date, run.period)
        if key not in terms or run.sequence > terms[key].sequence:
            terms[key] = run
    figures: dict[tuple[date, int], StatementFigures] = {}
    for row in sums:
        key = (row.settlement_date, row.period)
        interval = figures[key] = _summed_figures(row[3 : 3 + len(_SUMMED)])
        tariffs = terms.get(key)
        if tariffs is None:
            continue
        if row.net_wh > 0:
            charge = money_cp(row.net_wh, tariffs.import_p_per_kwh)
            interval.baseline_cp = charge + scale_cp(charge, tariffs.vat_rate)
        elif row.net_wh < 0:
            interval.baseline_cp = -money_cp(-row.net_wh, tariffs.export_p_per_kwh)
    return figures


EXPORT_COLUMNS = (
    "run_id",
    "run_type",
    "sequence",
    "settlement_date",
    "period",
    "start_utc",
    "participant_id",
    "bought_kwh",
    "bought_p",
    "sold_kwh",
    "sold_p",
    "imported_kwh",
    "imported_p",
    "exported_kwh",
    "exported_p",
    "fees_p",
    "vat_p",
    "total_p",
)


def export_runs_csv(session: Session, run_ids: Sequence[int]) -> str:
    """The energy company's export: one row per household per interval per run (corrections as
    posted by a reconciliation, not restated totals)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(EXPORT_COLUMNS)
    lines = LedgerLineRow.__table__.c  # type: ignore[attr-defined]
    account = sa.literal(HOUSEHOLD_ACCOUNT_PREFIX) + lines.participant_id
    for run_id in run_ids:
        run = session.get(SettlementRunRow, run_id)
        if run is None:
            raise NotFoundError("run_id", f"{run_id} is not a settlement run")
        summed = sa.select(lines.participant_id, *_line_sums(account)).where(
            lines.run_id == run_id, lines.participant_id.is_not(None)
        )
        figures = {
            row.participant_id: _summed_figures(row[1 : 1 + len(_SUMMED)])
            for row in session.execute(summed.group_by(lines.participant_id))
        }
        start = run.interval_start_utc.isoformat().replace("+00:00", "Z")
        for participant, values in sorted(figures.items()):
            columns = statement_row(values)
            writer.writerow(
                [
                    run_id,
                    run.run_type,
                    run.sequence,
                    run.settlement_date,
                    run.period,
                    start,
                    participant,
                    *columns[:10],
                    columns[10],
                ]
            )
    return out.getvalue()


STATEMENT_COLUMNS = (
    "bought_kwh",
    "bought_p",
    "sold_kwh",
    "sold_p",
    "imported_kwh",
    "imported_p",
    "exported_kwh",
    "exported_p",
    "fees_p",
    "vat_p",
    "total_p",
    "baseline_p",
    "saving_p",
    "corrections_p",
    *INTERVAL_STATUSES,
)


def statement_csv(statement: Statement) -> str:
    """A statement as CSV: a row per day, the month's total, and the total over the days settled
    on metered energy (the saving's row). Pence to the hundredth, signed as the household sees
    them (+ it pays, - it is paid); baseline and saving blank where the figures are not final."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["date", *STATEMENT_COLUMNS])
    for day, figures in statement.days.items():
        writer.writerow([str(day), *statement_row(figures)])
    writer.writerow(["total", *statement_row(statement.total)])
    writer.writerow(["settled", *statement_row(statement.settled)])
    return out.getvalue()


def day_statement_csv(rows: Sequence[IntervalFigures]) -> str:
    """A day's statement as CSV: a row per interval, with how it stands and why."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["interval", "start_utc", "status", "reason", *STATEMENT_COLUMNS[:14]])
    for row in rows:
        start = row.period.start_utc.isoformat().replace("+00:00", "Z")
        writer.writerow([row.period.key, start, row.status, row.reason, *statement_row(row.figures)[:14]])
    return out.getvalue()


def statement_row(figures: StatementFigures) -> list[str]:
    """A statement's figures as text in :data:`STATEMENT_COLUMNS`' order: kWh to the Wh, pence to
    the hundredth, the baseline and saving blank unless final, then the interval counts."""
    kwh = lambda wh: f"{Decimal(wh) / 1000:.3f}"  # noqa: E731
    pence = lambda cp: "" if cp is None else f"{Decimal(cp) / CP_PER_PENNY:.2f}"  # noqa: E731
    return [
        kwh(figures.bought_wh),
        pence(figures.bought_cp),
        kwh(figures.sold_wh),
        pence(figures.sold_cp),
        kwh(figures.imported_wh),
        pence(figures.imported_cp),
        kwh(figures.exported_wh),
        pence(figures.exported_cp),
        pence(figures.fees_cp),
        pence(figures.vat_cp),
        pence(figures.total_cp),
        pence(figures.baseline_cp if figures.final else None),
        pence(figures.saving_cp),
        pence(figures.corrections_cp),
        *(str(figures.intervals[status]) for status in INTERVAL_STATUSES),
    ]
