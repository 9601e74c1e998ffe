"""Settlement runs and the ledger (statements and exports: :mod:`market.statements`).

An interval is settled by :func:`settle` in runs, as on the GB settlement timetable:

- the **initial** run, once, when the interval's meter data is due;
- **reconciliation** runs afterwards, whenever the inputs have changed (a late or corrected
  reading, an estimate replaced by an actual, a re-clear). A reconciliation never edits what is
  posted: it settles the interval afresh (:mod:`market.charges`) and posts only the
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

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from market.charges import (
    POOL,
    EdgeInput,
    IntervalInputs,
    Line,
    SettledInterval,
    SettlementTerms,
    TradeInput,
    settle_interval,
)
from market.clearing import current_run
from market.database import bulk_insert, chunks, lock_for_transaction, transaction
from market.errors import MarketError, NotFoundError
from market.intervals import SettlementPeriod, settlement_period
from market.network import network_version, tariff_version
from market.participants import HOUSEHOLD
from market.tables import (
    ClearingRunRow,
    IntervalEnergyRow,
    LedgerLineRow,
    MeterRow,
    NodePriceRow,
    ParticipantRow,
    SettlementRunRow,
    SettlementStandingRow,
    TradeRow,
)

INITIAL, RECONCILE = "initial", "reconcile"
#: How a household stands in a run it could not settle on metered energy (settlement_standing).
AWAITING_METER_DATA = "awaiting_meter_data"  # trades settled; the imbalance waits for meter data
ESTIMATED = "estimated"  # settled, but some of its meter energy was estimated
#: Why a ``pending`` run settled nobody.
NOT_CLEARED = "the interval has no clearing run yet"
#: Line kinds posted per network edge: their memo (less its carried remainder) tells them apart.
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
    """The money terms that are not the interval's tariff (VAT and the platform fee), and how long
    after an interval ends its meter data is due (no run settles it before then)."""

    vat_rate: Decimal = Decimal("0.05")
    platform_fee_p_per_kwh: Decimal = Decimal(0)
    meter_data_delay: timedelta = timedelta(0)


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
        For an unknown run type, an interval whose meter data is not due yet by ``now`` (the
        platform's clock: nothing is settled ahead of it), or a reconciliation before the initial
        run.
    """
    if run_type not in (INITIAL, RECONCILE):
        raise MarketError("run", f"must be initial or reconcile, not {run_type!r}")
    due = period.end_utc + config.meter_data_delay
    if now < due:
        raise MarketError(
            "interval",
            f"{period.key} cannot be settled before its meter data is due at {_iso(due)} "
            f"(the platform's clock says {_iso(now)})",
        )
    with transaction(engine) as session:
        lock_for_transaction(session, "settlement", period.start_utc.isoformat(), period.length_minutes)
        runs = _runs(session, period)
        initial = next((run for run in runs if run.run_type == INITIAL), None)
        if run_type == INITIAL and initial is not None:
            return SettlementOutcome(_stored_run(session, initial), created=False)
        if run_type == RECONCILE and initial is None:
            raise MarketError("run", f"{period.key} has no initial settlement run to reconcile")
        gathered = _gather(session, period, config)
        if run_type == RECONCILE and gathered.digest == runs[-1].inputs_digest:
            return SettlementOutcome(_stored_run(session, runs[-1]), created=False)
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
            lines=len(lines),
            created_at=now,
            triggered_by=triggered_by,
        )
        session.add(row)
        session.flush()
        assert row.id is not None
        _post(session, row, lines, corrects)
        standing = _standing_rows(settled) if settled is not None else []
        bulk_insert(
            session,
            SettlementStandingRow.__table__,  # type: ignore[attr-defined]
            ("participant_id", "standing", "reason"),
            standing,
            constants={"run_id": row.id},
        )
        return SettlementOutcome(_run(row, standing), created=True)


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
        grid_import_wh=clearing.grid_import_wh,
        grid_export_wh=clearing.grid_export_wh,
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
    rows = _runs(session, period)
    standing = standing_in_runs(session, [row.id for row in rows if row.id is not None])
    return [_run(row, standing.get(row.id or 0, [])) for row in rows]


def get_settlement_run(session: Session, run_id: int) -> SettlementRun:
    """One stored settlement run, with the households it could not settle on metered energy.

    Raises
    ------
    NotFoundError
        No such run.
    """
    row = session.get(SettlementRunRow, run_id)
    if row is None:
        raise NotFoundError("run_id", f"{run_id} is not a settlement run")
    return _stored_run(session, row)


def _stored_run(session: Session, row: SettlementRunRow) -> SettlementRun:
    assert row.id is not None
    return _run(row, standing_in_runs(session, [row.id]).get(row.id, []))


def standing_in_runs(
    session: Session, run_ids: Sequence[int], *, participant_id: str | None = None
) -> dict[int, list[tuple[str, str, str]]]:
    """The households each run could not settle on metered energy, as (participant, standing,
    reason) by run id (only ``participant_id``'s, when given: one seek a run by its index)."""
    table = SettlementStandingRow.__table__.c  # type: ignore[attr-defined]
    found: dict[int, list[tuple[str, str, str]]] = defaultdict(list)
    if participant_id is not None and run_ids:
        # One range seek on the household's index, whatever the number of runs (a month's 1,500
        # ids would be three IN lists); the runs between that are not asked for are left out.
        wanted = set(run_ids)
        query = sa.select(table.run_id, table.standing, table.reason).where(
            table.participant_id == participant_id,
            table.run_id >= min(wanted),
            table.run_id <= max(wanted),
        )
        for run_id, standing, reason in session.execute(query):
            if run_id in wanted:
                found[run_id].append((participant_id, standing, reason))
        return found
    for ids in chunks(sorted(run_ids)):
        query = sa.select(table.run_id, table.participant_id, table.standing, table.reason).where(
            table.run_id.in_(ids)
        )
        if participant_id is not None:
            query = query.where(table.participant_id == participant_id)
        for run_id, participant, standing, reason in session.execute(query):
            found[run_id].append((participant, standing, reason))
    return found


def _standing_rows(settled: SettledInterval) -> list[tuple[str, str, str]]:
    awaiting = [(who, AWAITING_METER_DATA, why[:500]) for who, why in sorted(settled.pending.items())]
    return awaiting + [(who, ESTIMATED, "") for who in sorted(settled.estimated)]


def _run(row: SettlementRunRow, standing: Sequence[tuple[str, str, str]]) -> SettlementRun:
    assert row.id is not None
    pending = {who: why for who, kind, why in standing if kind == AWAITING_METER_DATA}
    return SettlementRun(
        id=row.id,
        period=settlement_period(row.settlement_date, row.period, length_minutes=row.length_minutes),
        run_type=row.run_type,
        sequence=row.sequence,
        status=row.status,
        clearing_run_id=row.clearing_run_id,
        pending={"*": NOT_CLEARED} if row.status == "pending" else dict(sorted(pending.items())),
        estimated=tuple(sorted(who for who, kind, _ in standing if kind == ESTIMATED)),
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


def pool_balance_cp(session: Session, *, run_id: int) -> int:
    """What one run's lines leave in the pool (paid in minus paid out), hundredths of a penny:
    0 when the run balances (every penny a buyer pays reaches a seller, the network or the
    rounding line)."""
    amount = col(LedgerLineRow.amount_cp)
    paid_in = sa.func.coalesce(sa.func.sum(sa.case((col(LedgerLineRow.credit) == POOL, amount), else_=0)), 0)
    paid_out = sa.func.coalesce(sa.func.sum(sa.case((col(LedgerLineRow.debit) == POOL, amount), else_=0)), 0)
    balance = session.exec(select(paid_in - paid_out).where(LedgerLineRow.run_id == run_id)).one()
    return int(balance)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
