"""Settlement runs, the ledger, statements and exports.

An interval is settled by :func:`settle` in runs, as on the GB settlement timetable:

- the **initial** run, once, when the interval's meter data is due;
- **reconciliation** runs afterwards, whenever the inputs have changed (a late or corrected
  reading, an estimate replaced by an actual, a re-clear). A reconciliation never edits what is
  posted: it settles the interval afresh (:mod:`market.settlement_rules`) and posts only the
  difference from everything posted so far, as correcting lines that name the run they correct.
  So the initial run plus every reconciliation equals a fresh settlement on the final data.

Runs are exactly once per interval and run type (a lock on the interval, and a partial unique
index allowing one initial run); a reconciliation with nothing new to settle adds nothing. A run
settles what it can and says what it could not: an interval not yet cleared is ``pending`` (no
lines: its trades are unknown, never taken as zero); a household without meter data is pending
in a ``partial`` run (its trades are settled, its imbalance waits); an estimated energy is settled
and named, to be reconciled when the actual arrives.

May import :mod:`market`, :mod:`metering` and SQLModel.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from market.clearing import current_run
from market.database import bulk_insert, chunks, lock_for_transaction, transaction
from market.errors import MarketError, NotFoundError
from market.intervals import SettlementPeriod, periods_of_day, settlement_period
from market.network import network_version, tariff_version
from market.participants import HOUSEHOLD
from market.settlement_rules import (
    CP_PER_PENNY,
    EdgeInput,
    IntervalInputs,
    Line,
    SettlementTerms,
    TradeInput,
    household_account,
    money_cp,
    scale_cp,
    settle_interval,
)
from market.tables import (
    ClearingRunRow,
    IntervalEnergyRow,
    LedgerLineRow,
    MeterRow,
    NodePriceRow,
    ParticipantRow,
    SettlementRunRow,
    TradeRow,
)

INITIAL, RECONCILE = "initial", "reconcile"
#: Line kinds whose energy goes into the statement's columns, and which way.
_NETWORK_KINDS = {"network_fee", "congestion_rent", "rounding"}


@dataclass(frozen=True)
class SettlementRun:
    """A stored settlement run."""

    id: int
    period: SettlementPeriod
    run_type: str
    sequence: int
    status: str
    clearing_run_id: int | None
    pending: dict[str, str]
    estimated: tuple[str, ...]
    lines: int
    created_at: datetime


@dataclass(frozen=True)
class SettlementOutcome:
    """What a call did: made ``run`` (``created``), or found the run already made / nothing new."""

    run: SettlementRun
    created: bool


@dataclass(frozen=True)
class SettlementConfig:
    """The money terms that are not the interval's tariff: VAT and the platform fee."""

    vat_rate: Decimal = Decimal("0.05")
    platform_fee_p_per_kwh: Decimal = Decimal(0)


@dataclass(frozen=True)
class _Gathered:
    inputs: IntervalInputs | None  # None: the interval is not cleared
    clearing_run_id: int | None
    digest: str


def settle(
    engine: Engine,
    *,
    period: SettlementPeriod,
    run_type: str,
    config: SettlementConfig,
    now: datetime,
    triggered_by: str,
) -> SettlementOutcome:
    """Settle one interval: its initial run, or a reconciliation (see the module docstring).

    Raises
    ------
    MarketError
        For an unknown run type, or a reconciliation before the initial run.
    """
    if run_type not in (INITIAL, RECONCILE):
        raise MarketError("run", f"must be initial or reconcile, not {run_type!r}")
    with transaction(engine) as session:
        lock_for_transaction(session, "settlement", period.start_utc.isoformat(), period.length_minutes)
        runs = _runs(session, period)
        initial = next((run for run in runs if run.run_type == INITIAL), None)
        if run_type == INITIAL and initial is not None:
            return SettlementOutcome(_run(initial), created=False)
        if run_type == RECONCILE and initial is None:
            raise MarketError("run", f"{period.key} has no initial settlement run to reconcile")
        gathered = _gather(session, period, config)
        if run_type == RECONCILE and gathered.digest == runs[-1].inputs_digest:
            return SettlementOutcome(_run(runs[-1]), created=False)
        settled = settle_interval(gathered.inputs) if gathered.inputs is not None else None
        lines = list(settled.lines) if settled is not None else []
        corrects = None
        if run_type == RECONCILE:
            lines = reconciling_lines(_posted(session, period), lines)
            corrects = runs[-1].id
        status = "pending" if settled is None else ("partial" if settled.pending else "complete")
        terms = gathered.inputs.terms if gathered.inputs is not None else None
        row = SettlementRunRow(
            interval_start_utc=period.start_utc,
            length_minutes=period.length_minutes,
            settlement_date=period.settlement_date,
            period=period.period,
            run_type=run_type,
            sequence=len(runs) + 1,
            clearing_run_id=gathered.clearing_run_id,
            status=status,
            inputs_digest=gathered.digest,
            import_p_per_kwh=None if terms is None else terms.import_p_per_kwh,
            export_p_per_kwh=None if terms is None else terms.export_p_per_kwh,
            vat_rate=config.vat_rate,
            platform_fee_p_per_kwh=config.platform_fee_p_per_kwh,
            pending_json=json.dumps(
                {"*": "the interval has no clearing run yet"} if settled is None else dict(settled.pending),
                sort_keys=True,
            ),
            estimated=",".join(sorted(settled.estimated)) if settled is not None else "",
            lines=len(lines),
            created_at=now,
            triggered_by=triggered_by,
        )
        session.add(row)
        session.flush()
        assert row.id is not None
        _post(session, row, lines, corrects)
        return SettlementOutcome(_run(row), created=True)


def settle_periods(
    engine: Engine,
    periods: Sequence[SettlementPeriod],
    *,
    run_type: str,
    config: SettlementConfig,
    now: datetime,
    triggered_by: str,
    workers: int | None = None,
) -> list[SettlementOutcome]:
    """Settle several intervals, each in its own transaction as :func:`settle` does; outcomes in
    the order of ``periods``.

    ``workers`` intervals are settled at a time: by default two on PostgreSQL, where one
    interval's database work (the ledger's ``COPY``, its indexes and foreign keys) overlaps the
    next one's reads and rules, and one on SQLite, which serialises writers anyway. Each interval
    takes its own lock, so the runs are exactly once whatever runs beside them. The first error
    stops the intervals not yet started and is raised; those settled stay settled (a re-run skips
    them).
    """
    if workers is None:
        workers = 2 if engine.dialect.name == "postgresql" else 1

    def one(period: SettlementPeriod) -> SettlementOutcome:
        return settle(
            engine, period=period, run_type=run_type, config=config, now=now, triggered_by=triggered_by
        )

    if workers <= 1 or len(periods) <= 1:
        return [one(period) for period in periods]
    with ThreadPoolExecutor(workers, thread_name_prefix="settle") as pool:
        futures = [pool.submit(one, period) for period in periods]
        try:
            return [future.result() for future in futures]
        except BaseException:
            for future in futures:
                future.cancel()
            raise


def settle_day(
    engine: Engine,
    *,
    settlement_date: date,
    length_minutes: int,
    run_type: str,
    config: SettlementConfig,
    now: datetime,
    triggered_by: str,
    workers: int | None = None,
) -> list[SettlementOutcome]:
    """Settle every period of a settlement date (46, 48 or 50 of them at 30 minutes)."""
    return settle_periods(
        engine,
        periods_of_day(settlement_date, length_minutes=length_minutes),
        run_type=run_type,
        config=config,
        now=now,
        triggered_by=triggered_by,
        workers=workers,
    )


def periods_due_for_settlement(
    session: Session, *, length_minutes: int, now: datetime, delay: timedelta
) -> list[SettlementPeriod]:
    """Cleared intervals with no initial settlement run whose meter data is due, oldest first."""
    runs = SettlementRunRow.__table__.c  # type: ignore[attr-defined]
    clearing_rows = ClearingRunRow.__table__.c  # type: ignore[attr-defined]
    settled = (
        sa.select(runs.id)
        .where(
            runs.interval_start_utc == clearing_rows.interval_start_utc,
            runs.length_minutes == clearing_rows.length_minutes,
            runs.run_type == INITIAL,
        )
        .exists()
    )
    query = (
        sa.select(clearing_rows.settlement_date, clearing_rows.period)
        .where(
            clearing_rows.length_minutes == length_minutes,
            clearing_rows.is_current,
            clearing_rows.interval_start_utc <= now - delay - timedelta(minutes=length_minutes),
            ~settled,
        )
        .order_by(clearing_rows.interval_start_utc)
    )
    return [
        settlement_period(day, number, length_minutes=length_minutes)
        for day, number in session.execute(query)
    ]


def periods_to_reconcile(session: Session, *, length_minutes: int) -> list[SettlementPeriod]:
    """Settled intervals whose inputs changed after their latest run, oldest first.

    A meter's interval energy recomputed (a late or corrected reading, an estimate replaced by an
    actual) or a new clearing run (a re-clear) after the interval's latest settlement run.
    """
    runs = SettlementRunRow.__table__.c  # type: ignore[attr-defined]
    energy_rows = IntervalEnergyRow.__table__.c  # type: ignore[attr-defined]
    clearing_rows = ClearingRunRow.__table__.c  # type: ignore[attr-defined]
    latest = (
        sa.select(
            runs.interval_start_utc,
            sa.func.max(runs.created_at).label("settled_at"),
        )
        .where(runs.length_minutes == length_minutes)
        .group_by(runs.interval_start_utc)
        .subquery()
    )
    energy = (
        sa.select(energy_rows.settlement_date, energy_rows.period)
        .join(latest, latest.c.interval_start_utc == energy_rows.interval_start_utc)
        .where(
            energy_rows.length_minutes == length_minutes,
            energy_rows.is_current,
            energy_rows.computed_at > latest.c.settled_at,
        )
    )
    cleared = (
        sa.select(clearing_rows.settlement_date, clearing_rows.period)
        .join(latest, latest.c.interval_start_utc == clearing_rows.interval_start_utc)
        .where(
            clearing_rows.length_minutes == length_minutes,
            clearing_rows.is_current,
            clearing_rows.started_at > latest.c.settled_at,
        )
    )
    found = {(row[0], row[1]) for query in (energy, cleared) for row in session.execute(query)}
    periods = [settlement_period(day, number, length_minutes=length_minutes) for day, number in found]
    return sorted(periods, key=lambda period: period.start_utc)


def _gather(session: Session, period: SettlementPeriod, config: SettlementConfig) -> _Gathered:
    """The interval's cleared trades, network rent, tariffs and every household's metered energy."""
    clearing = current_run(session, period)
    metered, estimated = _metered(session, period)
    if clearing is None:
        digest = _digest("uncleared", sorted(metered.items()))
        return _Gathered(None, None, digest)
    trade_columns = TradeRow.__table__.c  # type: ignore[attr-defined]
    trades = [
        TradeInput(row.participant_id, row.node_id, row.side, row.accepted_wh, row.price_p_per_kwh)
        for row in session.execute(
            sa.select(
                trade_columns.participant_id,
                trade_columns.node_id,
                trade_columns.side,
                trade_columns.accepted_wh,
                trade_columns.price_p_per_kwh,
            )
            .where(trade_columns.run_id == clearing.id)
            .order_by(trade_columns.order_id)
        )
    ]
    for trade in trades:
        metered.setdefault(trade.participant_id, None)  # traded but no meter: pending, never zero
    network = network_version(session, clearing.network_version_id).network
    prices = {
        row.node_id: row
        for row in session.exec(select(NodePriceRow).where(NodePriceRow.run_id == clearing.id))
    }
    edges = []
    for position, node_id in enumerate(network.node_ids[1:], start=1):
        parent = network.node_ids[int(network.parent_index[position])]
        flow = prices[node_id].net_import_wh or 0
        edges.append(
            EdgeInput(
                node_id,
                parent,
                flow,
                prices[node_id].price_p_per_kwh,
                prices[parent].price_p_per_kwh,
                network.fees_p_per_kwh[position],
            )
        )
    tariff = tariff_version(session, clearing.tariff_id).tariff
    terms = SettlementTerms(
        tariff.import_p_per_kwh, tariff.export_p_per_kwh, config.vat_rate, config.platform_fee_p_per_kwh
    )
    inputs = IntervalInputs(
        trades=trades,
        edges=edges,
        grid_import_wh=int(clearing.grid_import_kwh * 1000),
        grid_export_wh=int(clearing.grid_export_kwh * 1000),
        metered_wh=metered,
        estimated=frozenset(estimated),
        terms=terms,
    )
    digest = _digest(clearing.id, sorted(metered.items()), sorted(estimated), terms)
    return _Gathered(inputs, clearing.id, digest)


def _metered(session: Session, period: SettlementPeriod) -> tuple[dict[str, int | None], set[str]]:
    """Each household's net metered Wh (``None``: a meter's energy is missing), and who is estimated."""
    meters: dict[str, list[str]] = defaultdict(list)
    for meter_id, participant_id in session.exec(
        select(MeterRow.id, MeterRow.participant_id).where(col(MeterRow.active))
    ):
        meters[participant_id].append(meter_id)
    households = session.exec(
        select(ParticipantRow.id).where(ParticipantRow.kind == HOUSEHOLD, col(ParticipantRow.active))
    ).all()
    columns = IntervalEnergyRow.__table__.c  # type: ignore[attr-defined]
    energy = {
        row.meter_id: row
        for row in session.execute(
            sa.select(columns.meter_id, columns.import_wh, columns.export_wh, columns.estimated).where(
                columns.interval_start_utc == period.start_utc,
                columns.length_minutes == period.length_minutes,
                columns.is_current,
            )
        )
    }
    metered: dict[str, int | None] = {}
    estimated: set[str] = set()
    for household in households:
        rows = [energy.get(meter_id) for meter_id in meters.get(household, [])]
        if not rows or any(row is None for row in rows):
            if rows:  # a household with no meter at all is not settled until it has one
                metered[household] = None
            continue
        metered[household] = sum(row.import_wh - row.export_wh for row in rows if row is not None)
        if any(row.estimated for row in rows if row is not None):
            estimated.add(household)
    return metered, estimated


def _digest(*parts: object) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()


def line_key(line: Line | LedgerLineRow) -> tuple[tuple[str, str | None, str, str, str], int]:
    """A line's identity for reconciliation, and the sign that puts it in canonical direction."""
    debit, credit = line.debit, line.credit
    memo = line.memo.split(" (carries")[0] if line.kind in _NETWORK_KINDS else ""
    if debit <= credit:
        return (line.kind, line.participant_id, debit, credit, memo), 1
    return (line.kind, line.participant_id, credit, debit, memo), -1


def line_totals(
    lines: Iterable[Line | LedgerLineRow], memos: dict[tuple, str] | None = None
) -> dict[tuple, tuple[int, int, Decimal | None]]:
    """Lines summed by identity (kind, household, accounts, edge): signed money, signed energy, a price.

    With ``memos``, each identity's last memo is put there too.
    """
    totals: dict[tuple, tuple[int, int, Decimal | None]] = {}
    for line in lines:
        key, sign = line_key(line)
        if memos is not None:
            memos[key] = line.memo
        known = totals.get(key)
        if known is None:
            totals[key] = (sign * line.amount_cp, sign * line.energy_wh, line.price_p_per_kwh)
        else:
            money, energy, price = known
            totals[key] = (
                money + sign * line.amount_cp,
                energy + sign * line.energy_wh,
                line.price_p_per_kwh or price,
            )
    return totals


def _posted(session: Session, period: SettlementPeriod) -> dict[tuple, tuple[int, int, Decimal | None]]:
    """Everything posted for an interval, summed by line identity (rows, not ORM objects: an
    interval of a city has tens of thousands of lines)."""
    lines = LedgerLineRow.__table__.c  # type: ignore[attr-defined]
    query = sa.select(
        lines.kind,
        lines.participant_id,
        lines.debit,
        lines.credit,
        lines.amount_cp,
        lines.energy_wh,
        lines.price_p_per_kwh,
        lines.memo,
    ).where(lines.interval_start_utc == period.start_utc, lines.length_minutes == period.length_minutes)
    return line_totals(session.execute(query))  # type: ignore[arg-type]


def _sort_key(key: tuple) -> tuple:
    kind, participant, first, second, edge = key
    return kind, participant or "", first, second, edge


def reconciling_lines(
    posted: dict[tuple, tuple[int, int, Decimal | None]], fresh: Sequence[Line]
) -> list[Line]:
    """The correcting lines that take what is posted (:func:`line_totals`) to a fresh settlement."""
    memos: dict[tuple, str] = {}
    wanted = line_totals(fresh, memos)
    corrections = []
    nothing = (0, 0, None)
    for key in sorted(posted.keys() | wanted.keys(), key=_sort_key):
        want_money, want_energy, want_price = wanted.get(key, nothing)
        had_money, had_energy, had_price = posted.get(key, nothing)
        money, energy = want_money - had_money, want_energy - had_energy
        if not money and not energy:
            continue
        kind, participant, first, second, edge = key
        forward = money > 0 or (money == 0 and energy > 0)
        debit, credit = (first, second) if forward else (second, first)
        memo = memos.get(key) or edge or "correction"
        corrections.append(
            Line(
                kind,
                debit,
                credit,
                abs(money),
                participant,
                energy if forward else -energy,
                want_price or had_price,
                memo,
            )
        )
    return corrections


#: A Line's fields are ledger columns of the same names; the run's columns are constants.
_LINE_COLUMNS = Line._fields


def _post(session: Session, run: SettlementRunRow, lines: Sequence[Line], corrects: int | None) -> None:
    if not lines:
        return
    bulk_insert(
        session,
        LedgerLineRow.__table__,  # type: ignore[attr-defined]
        _LINE_COLUMNS,
        (line if len(line.memo) <= 200 else line._replace(memo=line.memo[:200]) for line in lines),
        constants={
            "run_id": run.id,
            "interval_start_utc": run.interval_start_utc,
            "length_minutes": run.length_minutes,
            "settlement_date": run.settlement_date,
            "period": run.period,
            "corrects_run_id": corrects,
        },
    )


def _runs(session: Session, period: SettlementPeriod) -> list[SettlementRunRow]:
    return list(
        session.exec(
            select(SettlementRunRow)
            .where(
                SettlementRunRow.interval_start_utc == period.start_utc,
                SettlementRunRow.length_minutes == period.length_minutes,
            )
            .order_by(col(SettlementRunRow.sequence))
        )
    )


def runs_of(session: Session, period: SettlementPeriod) -> list[SettlementRun]:
    """Every settlement run of an interval, oldest first."""
    return [_run(row) for row in _runs(session, period)]


def _run(row: SettlementRunRow) -> SettlementRun:
    assert row.id is not None
    return SettlementRun(
        id=row.id,
        period=settlement_period(row.settlement_date, row.period, length_minutes=row.length_minutes),
        run_type=row.run_type,
        sequence=row.sequence,
        status=row.status,
        clearing_run_id=row.clearing_run_id,
        pending=json.loads(row.pending_json),
        estimated=tuple(name for name in row.estimated.split(",") if name),
        lines=row.lines,
        created_at=row.created_at,
    )


def account_balances(
    session: Session, *, run_id: int | None = None, period: SettlementPeriod | None = None
) -> dict[str, int]:
    """Each account's balance (what it is paid minus what it pays), hundredths of a penny."""
    query = select(LedgerLineRow.debit, LedgerLineRow.credit, LedgerLineRow.amount_cp)
    if run_id is not None:
        query = query.where(LedgerLineRow.run_id == run_id)
    if period is not None:
        query = query.where(
            LedgerLineRow.interval_start_utc == period.start_utc,
            LedgerLineRow.length_minutes == period.length_minutes,
        )
    balances: dict[str, int] = defaultdict(int)
    for debit, credit, amount in session.exec(query):
        balances[debit] -= amount
        balances[credit] += amount
    return dict(balances)


# --- statements ----------------------------------------------------------------------------------


@dataclass
class StatementFigures:
    """One household's figures over some intervals; energy in Wh, money in hundredths of a penny.

    Money signs are the household's: positive it pays, negative it is paid.
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

    @property
    def total_cp(self) -> int:
        """What the household pays in all (negative: is paid)."""
        return (
            self.bought_cp - self.sold_cp + self.imported_cp - self.exported_cp + self.fees_cp + self.vat_cp
        )

    @property
    def saving_cp(self) -> int:
        """The baseline (the same meter data on the tariffs alone) less what it pays."""
        return self.baseline_cp - self.total_cp

    def add(self, other: StatementFigures) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


_ADDS_TO_METERED = {"trade_buy", "imbalance_import"}
_COLUMNS = {
    "trade_buy": ("bought_wh", "bought_cp", 1),
    "trade_sell": ("sold_wh", "sold_cp", -1),
    "imbalance_import": ("imported_wh", "imported_cp", 1),
    "imbalance_export": ("exported_wh", "exported_cp", -1),
}


@dataclass(frozen=True)
class Statement:
    """A household's statement for a month: a row per day and the month's total."""

    participant_id: str
    month: str
    days: dict[date, StatementFigures]
    total: StatementFigures


def statement(session: Session, participant_id: str, *, first_day: date, last_day: date) -> Statement:
    """A household's figures per settlement date between two dates (inclusive), and their total.

    Built from every posted line, reconciliations included. The baseline prices each interval's
    metered energy on that interval's tariffs (import charged with VAT, export paid), rounded per
    interval as a bill would be.
    """
    participant = session.get(ParticipantRow, participant_id)
    if participant is None or participant.kind != HOUSEHOLD:
        raise NotFoundError("participant_id", f"{participant_id!r} is not a household")
    runs = _runs_between(session, first_day, last_day)
    lines = LedgerLineRow.__table__.c  # type: ignore[attr-defined]
    rows = list(_statement_lines(session, runs, lines.participant_id == participant_id))
    return _statement(participant_id, rows, runs, first_day)


def statements(session: Session, *, first_day: date, last_day: date) -> dict[str, Statement]:
    """Every household's statement between two dates, as :func:`statement` makes them, from one
    read of the range's lines (for reports over a whole district, not one household's view)."""
    runs = _runs_between(session, first_day, last_day)
    lines = LedgerLineRow.__table__.c  # type: ignore[attr-defined]
    by_household: dict[str, list[sa.Row[Any]]] = {
        household: []
        for household in session.exec(select(ParticipantRow.id).where(ParticipantRow.kind == HOUSEHOLD))
    }
    for row in _statement_lines(session, runs, lines.participant_id.is_not(None)):
        if row.participant_id in by_household:
            by_household[row.participant_id].append(row)
    return {
        household: _statement(household, rows, runs, first_day) for household, rows in by_household.items()
    }


_STATEMENT_COLUMNS = tuple(
    LedgerLineRow.__table__.c[name]  # type: ignore[attr-defined]
    for name in (
        "participant_id",
        "run_id",
        "settlement_date",
        "period",
        "kind",
        "debit",
        "amount_cp",
        "energy_wh",
        "corrects_run_id",
    )
)


def _statement_lines(
    session: Session, runs: dict[int, SettlementRunRow], whose: sa.ColumnElement[bool]
) -> Iterator[sa.Row[Any]]:
    """The statement columns of the lines of ``runs``' intervals that ``whose`` selects. The
    ledger's household index leads with the interval, so a household is found by a seek in each
    settled interval of the range (a month is about 1,500)."""
    lines = LedgerLineRow.__table__.c  # type: ignore[attr-defined]
    for starts in chunks(sorted({run.interval_start_utc for run in runs.values()})):
        yield from session.execute(
            sa.select(*_STATEMENT_COLUMNS).where(lines.interval_start_utc.in_(starts), whose)
        )


def _runs_between(session: Session, first_day: date, last_day: date) -> dict[int, SettlementRunRow]:
    # A settlement date's intervals start within a day of its UTC midnight: that coarse range
    # lets the interval index find the runs.
    earliest = datetime.combine(first_day - timedelta(days=1), datetime.min.time(), UTC)
    latest = datetime.combine(last_day + timedelta(days=2), datetime.min.time(), UTC)
    in_range = select(SettlementRunRow).where(
        SettlementRunRow.interval_start_utc >= earliest,
        SettlementRunRow.interval_start_utc < latest,
        SettlementRunRow.settlement_date >= first_day,
        SettlementRunRow.settlement_date <= last_day,
    )
    return {row.id: row for row in session.exec(in_range) if row.id is not None}


def _statement(
    participant_id: str, rows: Sequence[sa.Row[Any]], runs: dict[int, SettlementRunRow], first_day: date
) -> Statement:
    account = household_account(participant_id)
    days: dict[date, StatementFigures] = defaultdict(StatementFigures)
    for row in rows:
        _accumulate(days[row.settlement_date], row, account)
    _add_baseline(days, rows, runs, account)
    total = StatementFigures()
    for figures in days.values():
        total.add(figures)
    return Statement(participant_id, f"{first_day:%Y-%m}", dict(sorted(days.items())), total)


def _accumulate(figures: StatementFigures, row: LedgerLineRow | sa.Row[Any], account: str) -> None:
    """Add one line to a household's figures, from the household's side (+ when it pays)."""
    side = 1 if row.debit == account else -1
    if row.corrects_run_id is not None:
        figures.corrections_cp += side * row.amount_cp
    if row.kind in _COLUMNS:
        energy_name, money_name, direction = _COLUMNS[row.kind]
        setattr(figures, energy_name, getattr(figures, energy_name) + side * direction * row.energy_wh)
        setattr(figures, money_name, getattr(figures, money_name) + side * direction * row.amount_cp)
    elif row.kind == "platform_fee":
        figures.fees_cp += side * row.amount_cp
    elif row.kind == "vat":
        figures.vat_cp += side * row.amount_cp


def _add_baseline(
    days: dict[date, StatementFigures],
    rows: Iterable[sa.Row[Any]],
    runs: dict[int, SettlementRunRow],
    account: str,
) -> None:
    """The no-local-market bill: each interval's net metered energy on that interval's tariffs.

    Net metered energy is bought - sold + imported - exported, from the same lines as the columns.
    """
    net: dict[tuple[date, int], int] = defaultdict(int)
    terms: dict[tuple[date, int], SettlementRunRow] = {}
    for row in rows:
        if row.kind not in _COLUMNS:
            continue
        side = 1 if row.debit == account else -1
        column_wh = side * _COLUMNS[row.kind][2] * row.energy_wh
        net[(row.settlement_date, row.period)] += column_wh if row.kind in _ADDS_TO_METERED else -column_wh
        run = runs.get(row.run_id)
        if run is not None and run.import_p_per_kwh is not None:
            terms[(row.settlement_date, row.period)] = run
    for (day, period), wh in net.items():
        run = terms.get((day, period))
        if run is None or run.import_p_per_kwh is None or run.export_p_per_kwh is None:
            continue
        if wh > 0:
            charge = money_cp(wh, run.import_p_per_kwh)
            days[day].baseline_cp += charge + scale_cp(charge, run.vat_rate)
        elif wh < 0:
            days[day].baseline_cp -= money_cp(-wh, run.export_p_per_kwh)


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
    for run_id in run_ids:
        run = session.get(SettlementRunRow, run_id)
        if run is None:
            raise NotFoundError("run_id", f"{run_id} is not a settlement run")
        figures: dict[str, StatementFigures] = defaultdict(StatementFigures)
        for row in session.exec(select(LedgerLineRow).where(LedgerLineRow.run_id == run_id)):
            if row.participant_id is not None:
                _accumulate(figures[row.participant_id], row, household_account(row.participant_id))
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


def statement_csv(statement: Statement) -> str:
    """A statement as CSV: a row per day and a total row, pence with two decimals."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        [
            "date",
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
        ]
    )
    for day, figures in [*statement.days.items(), ("total", statement.total)]:
        writer.writerow([str(day), *statement_row(figures)])
    return out.getvalue()


def statement_row(figures: StatementFigures) -> list[str]:
    """A statement's figures as text: kWh to the Wh, pence to the hundredth."""
    kwh = lambda wh: f"{Decimal(wh) / 1000:.3f}"  # noqa: E731
    pence = lambda cp: f"{Decimal(cp) / CP_PER_PENNY:.2f}"  # noqa: E731
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
        pence(figures.baseline_cp),
        pence(figures.saving_cp),
        pence(figures.corrections_cp),
    ]
