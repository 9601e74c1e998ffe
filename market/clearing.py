"""Clearing runs: each interval's frozen book cleared exactly once, stored in one transaction.

:func:`clear_interval` is safe to call from any number of workers at once and after any crash:

- the whole run (its record, node prices and trades) is written in one transaction, so a run
  interrupted before commit leaves nothing behind and the next trigger clears the interval;
- the transaction first takes a lock on the interval (a PostgreSQL advisory lock; on SQLite the
  database write lock, taken at ``BEGIN IMMEDIATE``), so racing workers queue and the later ones
  find the run already made;
- and a partial unique index allows one *current* run per interval, so even a writer that
  skipped the lock could not store a second one.

An operator may re-clear an interval, but only with a reason: the new run supersedes the old one,
which stays stored for audit. Every run records a digest of its inputs (the frozen orders, the
network and tariff versions) so it can be re-run and compared (:func:`verify_run`).

May import :mod:`market`, :mod:`optimiser` and SQLModel.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, func, select

from market.database import lock_for_transaction, transaction
from market.errors import MarketError, NotFoundError
from market.intervals import SettlementPeriod, period_at, settlement_period
from market.network import (
    NetworkVersion,
    TariffVersion,
    network_in_force,
    network_version,
    tariff_in_force,
    tariff_version,
)
from market.orders import BUY, OPEN, book_lock
from market.rules import MarketRules
from market.tables import ClearingRunRow, NodePriceRow, OrderRow, TradeRow
from market.units import WH_PER_KWH
from optimiser import ClearingOptions, ClearingResult, OrderBook, clear_market
from optimiser.book import timestamp_us


@dataclass(frozen=True)
class NodePrice:
    node_id: str
    price_p_per_kwh: Decimal
    lowest_p_per_kwh: Decimal | None
    highest_p_per_kwh: Decimal | None
    net_import_wh: int | None

    @property
    def net_import_kwh(self) -> Decimal | None:
        """The same energy in kWh, for display and the API."""
        return None if self.net_import_wh is None else Decimal(self.net_import_wh) / WH_PER_KWH


@dataclass(frozen=True)
class ClearingRun:
    """A stored clearing run."""

    id: int
    period: SettlementPeriod
    sequence: int
    is_current: bool
    reason: str | None
    supersedes_id: int | None
    inputs_digest: str
    network_version_id: int
    tariff_id: int
    status: str
    welfare_p: Decimal
    grid_import_wh: int
    grid_export_wh: int
    orders: int
    excluded_orders: int
    price_levels: int
    rounds: int
    solve_seconds: float
    total_seconds: float
    started_at: datetime
    finished_at: datetime
    triggered_by: str

    @property
    def grid_import_kwh(self) -> Decimal:
        """The same energy in kWh, for display and the API."""
        return Decimal(self.grid_import_wh) / WH_PER_KWH

    @property
    def grid_export_kwh(self) -> Decimal:
        """The same energy in kWh, for display and the API."""
        return Decimal(self.grid_export_wh) / WH_PER_KWH


@dataclass(frozen=True)
class Trade:
    """An order's accepted energy in a run, at its node's price."""

    run_id: int
    order_id: str
    participant_id: str
    node_id: str
    side: str
    accepted_wh: int
    price_p_per_kwh: Decimal

    @property
    def accepted_kwh(self) -> Decimal:
        """The same energy in kWh, for display and the API."""
        return Decimal(self.accepted_wh) / WH_PER_KWH


@dataclass(frozen=True)
class ClearingOutcome:
    """What a clearing call did: made ``run``, or found it already made."""

    run: ClearingRun
    created: bool


@dataclass(frozen=True)
class _Inputs:
    book: OrderBook
    excluded: int
    network: NetworkVersion
    tariff: TariffVersion
    digest: str


def clear_interval(
    engine: Engine,
    *,
    period: SettlementPeriod,
    rules: MarketRules,
    now: datetime,
    triggered_by: str,
    reason: str | None = None,
    options: ClearingOptions | None = None,
) -> ClearingOutcome:
    """Clear ``period`` once its gate has closed; see the module docstring for the guarantees.

    Without ``reason``, an interval that already has a run is left as it is (``created`` is
    ``False``). With one, a new run supersedes the current one.

    Raises
    ------
    MarketError
        If the gate has not closed, the period has the wrong length, the reason is blank, or no
        network or tariff is in force for it.
    """
    if period.length_minutes != rules.interval_minutes:
        raise MarketError("interval", f"the market clears {rules.interval_minutes}-minute periods")
    if reason is not None and not reason.strip():
        raise MarketError("reason", "a re-clear needs a reason")
    gate = rules.gate_closure_utc(period)
    if now < gate:
        raise MarketError("interval", f"gate closure for {period.key} is at {gate.isoformat()}; not yet")
    try:
        with transaction(engine) as session:
            lock_for_transaction(session, *book_lock(period))
            current = _current_row(session, period)
            if current is not None and reason is None:
                return ClearingOutcome(_run(current), created=False)
            started = time.perf_counter()
            inputs = _frozen_inputs(session, period)
            result = clear_market(inputs.book, inputs.network.network, inputs.tariff.tariff, options)
            row = _store_run(
                session,
                period=period,
                inputs=inputs,
                result=result,
                superseding=current,
                reason=reason,
                now=now,
                triggered_by=triggered_by,
                seconds=0.0,
            )
            row.total_seconds = time.perf_counter() - started  # read, clear and write, before commit
            session.add(row)
            return ClearingOutcome(_run(row), created=True)
    except sa.exc.IntegrityError:
        # Another writer stored this interval's run between our check and our commit.
        with Session(engine) as session:
            current = _current_row(session, period)
            if current is None:
                raise
            return ClearingOutcome(_run(current), created=False)


def due_periods(session: Session, *, rules: MarketRules, now: datetime) -> list[SettlementPeriod]:
    """Periods whose gate has closed and that have no current run, oldest first.

    They run from the earliest period that has orders but no run, or the period after the
    latest run, whichever is earlier: once the market has traded, every period gets a run,
    empty ones included, so settlement never finds a gap.
    """
    length = rules.interval_minutes
    latest = session.exec(
        select(func.max(ClearingRunRow.interval_start_utc)).where(
            ClearingRunRow.length_minutes == length, col(ClearingRunRow.is_current)
        )
    ).one()
    has_run = (
        select(ClearingRunRow.id)
        .where(
            ClearingRunRow.interval_start_utc == OrderRow.interval_start_utc,
            ClearingRunRow.length_minutes == OrderRow.length_minutes,
            col(ClearingRunRow.is_current),
        )
        .exists()
    )
    first_uncleared = session.exec(
        select(col(OrderRow.settlement_date), col(OrderRow.period))
        .where(OrderRow.length_minutes == length, ~has_run)
        .order_by(col(OrderRow.interval_start_utc))
        .limit(1)
    ).first()
    starts = []
    if latest is not None:
        starts.append(period_at(latest, length_minutes=length).next())
    if first_uncleared is not None:
        starts.append(settlement_period(first_uncleared[0], first_uncleared[1], length_minutes=length))
    if not starts:
        return []
    cleared = set(
        session.exec(
            select(ClearingRunRow.interval_start_utc).where(
                ClearingRunRow.length_minutes == length,
                col(ClearingRunRow.is_current),
                ClearingRunRow.interval_start_utc >= min(p.start_utc for p in starts),
            )
        )
    )
    due = []
    period = min(starts, key=lambda p: p.start_utc)
    while rules.gate_closure_utc(period) <= now:
        if period.start_utc not in cleared:
            due.append(period)
        period = period.next()
    return due


def clear_due(
    engine: Engine,
    *,
    rules: MarketRules,
    now: datetime,
    triggered_by: str,
    options: ClearingOptions | None = None,
) -> list[ClearingOutcome]:
    """Clear every due period in order (the catch-up after downtime, and the regular tick)."""
    with Session(engine) as session:
        due = due_periods(session, rules=rules, now=now)
    return [
        clear_interval(
            engine, period=period, rules=rules, now=now, triggered_by=triggered_by, options=options
        )
        for period in due
    ]


def current_run(session: Session, period: SettlementPeriod) -> ClearingRun | None:
    """The interval's current run, if it has been cleared."""
    row = _current_row(session, period)
    return None if row is None else _run(row)


def runs_of(session: Session, period: SettlementPeriod) -> list[ClearingRun]:
    """Every run of an interval, superseded ones included, oldest first."""
    rows = session.exec(
        select(ClearingRunRow)
        .where(
            ClearingRunRow.interval_start_utc == period.start_utc,
            ClearingRunRow.length_minutes == period.length_minutes,
        )
        .order_by(col(ClearingRunRow.sequence))
    )
    return [_run(row) for row in rows]


def get_run(session: Session, run_id: int) -> ClearingRun:
    row = session.get(ClearingRunRow, run_id)
    if row is None:
        raise NotFoundError("run_id", f"{run_id} is not a clearing run")
    return _run(row)


def node_prices(session: Session, run_id: int) -> list[NodePrice]:
    rows = session.exec(
        select(NodePriceRow).where(NodePriceRow.run_id == run_id).order_by(col(NodePriceRow.node_id))
    )
    return [
        NodePrice(
            node_id=row.node_id,
            price_p_per_kwh=row.price_p_per_kwh,
            lowest_p_per_kwh=row.lowest_p_per_kwh,
            highest_p_per_kwh=row.highest_p_per_kwh,
            net_import_wh=row.net_import_wh,
        )
        for row in rows
    ]


def trades_of(
    session: Session,
    run_id: int,
    *,
    participant_id: str | None = None,
    offset: int = 0,
    limit: int | None = None,
) -> list[Trade]:
    """A run's trades (one household's, with ``participant_id``) by order id; ``offset`` and
    ``limit`` page them in the database."""
    query = select(TradeRow).where(TradeRow.run_id == run_id)
    if participant_id is not None:
        query = query.where(TradeRow.participant_id == participant_id)
    query = query.order_by(col(TradeRow.order_id)).offset(offset).limit(limit)
    return [
        Trade(
            run_id=row.run_id,
            order_id=row.order_id,
            participant_id=row.participant_id,
            node_id=row.node_id,
            side=row.side,
            accepted_wh=row.accepted_wh,
            price_p_per_kwh=row.price_p_per_kwh,
        )
        for row in session.exec(query)
    ]


def count_trades(session: Session, run_id: int) -> int:
    """How many trades a run made."""
    return session.exec(select(sa.func.count()).select_from(TradeRow).where(TradeRow.run_id == run_id)).one()


def verify_run(engine: Engine, run_id: int, *, options: ClearingOptions | None = None) -> list[str]:
    """Re-run a stored clearing from its stored inputs and list every difference (none: it holds).

    The inputs are read again (the orders are frozen after gate closure; the network and tariff
    versions the run names), their digest compared, the book cleared again and the prices,
    trades and backstop energy compared with what is stored.
    """
    with Session(engine) as session:
        run = get_run(session, run_id)
        inputs = _frozen_inputs(
            session,
            run.period,
            network=network_version(session, run.network_version_id),
            tariff=tariff_version(session, run.tariff_id),
        )
        stored_prices = {price.node_id: price.price_p_per_kwh for price in node_prices(session, run_id)}
        stored_trades = {(t.order_id, t.accepted_kwh) for t in trades_of(session, run_id)}
    differences = []
    if inputs.digest != run.inputs_digest:
        differences.append(f"inputs digest {inputs.digest} differs from the stored {run.inputs_digest}")
    result = clear_market(inputs.book, inputs.network.network, inputs.tariff.tariff, options)
    if result.node_prices_p_per_kwh != stored_prices:
        differences.append(
            f"node prices {result.node_prices_p_per_kwh} differ from the stored {stored_prices}"
        )
    trades = {(order_id, kwh) for order_id, kwh in result.fills() if kwh}  # Decimals compare by value
    if trades != stored_trades:
        differences.append(f"{len(trades ^ stored_trades)} trades differ from the stored ones")
    if (result.grid_import_wh, result.grid_export_wh) != (run.grid_import_wh, run.grid_export_wh):
        differences.append("backstop energy differs from the stored run")
    return differences


def _current_row(session: Session, period: SettlementPeriod) -> ClearingRunRow | None:
    return session.exec(
        select(ClearingRunRow).where(
            ClearingRunRow.interval_start_utc == period.start_utc,
            ClearingRunRow.length_minutes == period.length_minutes,
            col(ClearingRunRow.is_current),
        )
    ).first()


def _frozen_inputs(
    session: Session,
    period: SettlementPeriod,
    *,
    network: NetworkVersion | None = None,
    tariff: TariffVersion | None = None,
) -> _Inputs:
    """The interval's open orders as an order book, with the network and tariff in force."""
    network = network or network_in_force(session, period.start_utc)
    tariff = tariff or tariff_in_force(session, period.start_utc)
    rows = session.exec(
        select(OrderRow)
        .where(
            OrderRow.interval_start_utc == period.start_utc,
            OrderRow.length_minutes == period.length_minutes,
            OrderRow.status == OPEN,
        )
        .order_by(col(OrderRow.id))
    ).all()
    nodes = set(network.network.node_ids)
    kept = [row for row in rows if row.node_id in nodes]
    book = OrderBook(
        order_ids=tuple(row.id for row in kept),
        participant_ids=tuple(row.participant_id for row in kept),
        nodes=tuple(row.node_id for row in kept),
        is_buy=np.array([row.side == BUY for row in kept], bool),
        quantity_wh=np.array([row.quantity_wh for row in kept], np.int64),
        price_ticks=np.array([row.price_ticks for row in kept], np.int64),
        submitted_at_us=np.array([timestamp_us(row.priority_at) for row in kept], np.int64),
    )
    digest = hashlib.sha256()
    digest.update(f"{period.key}|{period.length_minutes}|{network.id}|{tariff.id}\n".encode())
    for row in kept:
        digest.update(
            f"{row.id}|{row.participant_id}|{row.node_id}|{row.side}|{row.quantity_wh}|"
            f"{row.price_ticks}|{timestamp_us(row.priority_at)}\n".encode()
        )
    return _Inputs(book, len(rows) - len(kept), network, tariff, digest.hexdigest())


def _store_run(
    session: Session,
    *,
    period: SettlementPeriod,
    inputs: _Inputs,
    result: ClearingResult,
    superseding: ClearingRunRow | None,
    reason: str | None,
    now: datetime,
    triggered_by: str,
    seconds: float,
) -> ClearingRunRow:
    if superseding is not None:
        superseding.is_current = False
        superseding.superseded_at = now
        session.add(superseding)
        session.flush()  # the partial unique index must see the old run retired first
    last_sequence = session.exec(
        select(func.max(ClearingRunRow.sequence)).where(
            ClearingRunRow.interval_start_utc == period.start_utc,
            ClearingRunRow.length_minutes == period.length_minutes,
        )
    ).one()
    engine_seconds = result.stats.seconds
    row = ClearingRunRow(
        interval_start_utc=period.start_utc,
        length_minutes=period.length_minutes,
        settlement_date=period.settlement_date,
        period=period.period,
        sequence=(last_sequence or 0) + 1,
        is_current=True,
        reason=reason,
        supersedes_id=None if superseding is None else superseding.id,
        inputs_digest=inputs.digest,
        network_version_id=inputs.network.id,
        tariff_id=inputs.tariff.id,
        status=result.status,
        welfare_p=result.welfare_p,
        grid_import_wh=result.grid_import_wh,
        grid_export_wh=result.grid_export_wh,
        orders=len(inputs.book),
        excluded_orders=inputs.excluded,
        price_levels=result.stats.price_levels,
        rounds=result.stats.rounds,
        solve_seconds=engine_seconds.get("solve", 0.0),
        total_seconds=seconds,
        started_at=now,
        finished_at=now,
        triggered_by=triggered_by,
    )
    session.add(row)
    session.flush()
    assert row.id is not None
    prices = result.node_prices_p_per_kwh
    session.add_all(
        NodePriceRow(
            run_id=row.id,
            node_id=node,
            price_p_per_kwh=prices[node],
            lowest_p_per_kwh=low if low.is_finite() else None,
            highest_p_per_kwh=high if high.is_finite() else None,
            net_import_wh=result.flows_wh.get(node),
        )
        for node, (low, high) in result.price_ranges_p_per_kwh.items()
    )
    book = inputs.book
    session.add_all(
        TradeRow(
            run_id=row.id,
            order_id=order_id,
            participant_id=book.participant_ids[i],
            node_id=book.nodes[i],
            side="buy" if book.is_buy[i] else "sell",
            accepted_wh=accepted,
            price_p_per_kwh=prices[book.nodes[i]],
        )
        for i, (order_id, accepted) in enumerate(zip(book.order_ids, result.accepted_wh.tolist()))
        if accepted
    )
    session.flush()
    return row


def _run(row: ClearingRunRow) -> ClearingRun:
    assert row.id is not None
    return ClearingRun(
        id=row.id,
        period=settlement_period(row.settlement_date, row.period, length_minutes=row.length_minutes),
        sequence=row.sequence,
        is_current=row.is_current,
        reason=row.reason,
        supersedes_id=row.supersedes_id,
        inputs_digest=row.inputs_digest,
        network_version_id=row.network_version_id,
        tariff_id=row.tariff_id,
        status=row.status,
        welfare_p=row.welfare_p,
        grid_import_wh=row.grid_import_wh,
        grid_export_wh=row.grid_export_wh,
        orders=row.orders,
        excluded_orders=row.excluded_orders,
        price_levels=row.price_levels,
        rounds=row.rounds,
        solve_seconds=row.solve_seconds,
        total_seconds=row.total_seconds,
        started_at=row.started_at,
        finished_at=row.finished_at,
        triggered_by=row.triggered_by,
    )


@dataclass(frozen=True)
class ParticipantTrade(Trade):
    """A trade in an interval's current clearing, with its interval."""

    period: SettlementPeriod


def list_trades(
    session: Session,
    *,
    participant_id: str | None = None,
    settlement_date: date | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[ParticipantTrade]:
    """Trades of current clearing runs, oldest interval first; optionally one household's or day's."""
    query = select(TradeRow, ClearingRunRow).where(
        TradeRow.run_id == ClearingRunRow.id, col(ClearingRunRow.is_current)
    )
    if participant_id is not None:
        query = query.where(TradeRow.participant_id == participant_id)
    if settlement_date is not None:
        query = query.where(ClearingRunRow.settlement_date == settlement_date)
    query = (
        query.order_by(col(ClearingRunRow.interval_start_utc), col(TradeRow.order_id))
        .offset(offset)
        .limit(limit)
    )
    return [
        ParticipantTrade(
            period=settlement_period(run.settlement_date, run.period, length_minutes=run.length_minutes),
            run_id=trade.run_id,
            order_id=trade.order_id,
            participant_id=trade.participant_id,
            node_id=trade.node_id,
            side=trade.side,
            accepted_wh=trade.accepted_wh,
            price_p_per_kwh=trade.price_p_per_kwh,
        )
        for trade, run in session.exec(query)
    ]


def latest_cleared_period(session: Session, *, length_minutes: int) -> SettlementPeriod | None:
    """The latest interval with a current run (the last cleared), or None before any clearing."""
    latest = session.exec(
        select(func.max(ClearingRunRow.interval_start_utc)).where(
            ClearingRunRow.length_minutes == length_minutes, col(ClearingRunRow.is_current)
        )
    ).one()
    return None if latest is None else period_at(latest, length_minutes=length_minutes)
