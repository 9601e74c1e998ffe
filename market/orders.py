"""Orders up to gate closure: place, amend, cancel, and every change kept as an event.

A household's orders are for one settlement period each. Until the period's gate closes they may
be amended or cancelled; after it they are frozen and only clearing reads them. Nothing is
overwritten without a record: each change bumps the order's version and adds an
:class:`~market.tables.OrderEventRow`.

Time priority (who fills first among equal prices) is ``priority_at``: set when the order is
placed, kept when an amendment only lowers the quantity, reset when it raises the quantity or
changes the price, as on an exchange.

May import :mod:`market` and SQLModel.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation

from sqlmodel import Session, col, func, select

from market.database import lock_for_transaction
from market.errors import ConflictError, MarketError, NotFoundError
from market.intervals import SettlementPeriod, settlement_period
from market.network import node_in_force
from market.participants import HOUSEHOLD
from market.rules import MarketRules
from market.tables import ClearingRunRow, OrderEventRow, OrderRow, ParticipantRow

BUY, SELL = "buy", "sell"
OPEN, CANCELLED = "open", "cancelled"
WH_PER_KWH = 1000
TICKS_PER_P = 100


@dataclass(frozen=True)
class MarketOrder:
    """An order as it stands now."""

    id: str
    participant_id: str
    node_id: str
    period: SettlementPeriod
    side: str
    quantity_kwh: Decimal
    price_p_per_kwh: Decimal
    status: str
    version: int
    priority_at: datetime
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class OrderEvent:
    """One change to an order."""

    version: int
    kind: str
    quantity_kwh: Decimal
    price_p_per_kwh: Decimal
    status: str
    at: datetime
    actor: str


def place_order(
    session: Session,
    *,
    rules: MarketRules,
    participant_id: str,
    period: SettlementPeriod,
    side: str,
    quantity_kwh: Decimal,
    price_p_per_kwh: Decimal,
    now: datetime,
    node_id: str | None = None,
    idempotency_key: str | None = None,
) -> tuple[MarketOrder, bool]:
    """Place an order for ``period``, or return the one already placed with ``idempotency_key``.

    Returns
    -------
    The order and whether it was created now (``False`` for a replayed idempotency key).

    Raises
    ------
    MarketError
        Naming the field: a period past gate closure or of the wrong length, a quantity or price
        out of bounds or finer than 1 Wh / 0.01 p, an unknown or inactive household, a node that
        is not the household's or not in the network, too many open orders.
    ConflictError
        If ``idempotency_key`` was used for a different order.
    """
    participant = _lock_household(session, participant_id)
    _lock_open_book(session, period)
    if idempotency_key is not None:
        if not 1 <= len(idempotency_key) <= 128:
            raise MarketError("Idempotency-Key", "must be 1 to 128 characters")
        earlier = session.exec(
            select(OrderRow).where(
                OrderRow.participant_id == participant_id, OrderRow.idempotency_key == idempotency_key
            )
        ).first()
        if earlier is not None:
            return _replay(earlier, period, side, quantity_kwh, price_p_per_kwh), False
    _check_period(rules, period, now)
    if side not in (BUY, SELL):
        raise MarketError("side", f"must be buy or sell, not {side!r}")
    quantity_wh = _quantity_wh(rules, quantity_kwh)
    price_ticks = _price_ticks(rules, price_p_per_kwh)
    assert participant.node_id is not None
    if node_id is not None and node_id != participant.node_id:
        raise MarketError(
            "node", f"household {participant_id!r} sits on {participant.node_id!r}, not {node_id!r}"
        )
    if not node_in_force(session, participant.node_id, period.start_utc):
        raise MarketError(
            "node", f"{participant.node_id!r} is not a node of the network in force for {period.key}"
        )
    open_orders = session.exec(
        select(func.count())
        .select_from(OrderRow)
        .where(
            OrderRow.participant_id == participant_id,
            OrderRow.interval_start_utc == period.start_utc,
            OrderRow.length_minutes == period.length_minutes,
            OrderRow.status == OPEN,
        )
    ).one()
    if open_orders >= rules.max_open_orders:
        raise MarketError(
            "interval", f"household {participant_id!r} already has {open_orders} open orders for {period.key}"
        )
    row = OrderRow(
        id=str(uuid.uuid4()),
        participant_id=participant_id,
        node_id=participant.node_id,
        interval_start_utc=period.start_utc,
        length_minutes=period.length_minutes,
        settlement_date=period.settlement_date,
        period=period.period,
        side=side,
        quantity_wh=quantity_wh,
        price_ticks=price_ticks,
        status=OPEN,
        version=1,
        priority_at=now,
        created_at=now,
        updated_at=now,
        idempotency_key=idempotency_key,
    )
    session.add(row)
    session.flush()
    _record(session, row, "placed", now, participant_id)
    return _order(row), True


def amend_order(
    session: Session,
    *,
    rules: MarketRules,
    order_id: str,
    participant_id: str,
    now: datetime,
    quantity_kwh: Decimal | None = None,
    price_p_per_kwh: Decimal | None = None,
) -> MarketOrder:
    """Change an open order's quantity or price before its gate closes."""
    row = _own_open_order(session, rules, order_id, participant_id, now)
    quantity_wh = row.quantity_wh if quantity_kwh is None else _quantity_wh(rules, quantity_kwh)
    price_ticks = row.price_ticks if price_p_per_kwh is None else _price_ticks(rules, price_p_per_kwh)
    if (quantity_wh, price_ticks) == (row.quantity_wh, row.price_ticks):
        return _order(row)
    keeps_priority = price_ticks == row.price_ticks and quantity_wh < row.quantity_wh
    row.quantity_wh, row.price_ticks = quantity_wh, price_ticks
    row.version += 1
    row.updated_at = now
    if not keeps_priority:
        row.priority_at = now
    session.add(row)
    session.flush()
    _record(session, row, "amended", now, participant_id)
    return _order(row)


def cancel_order(
    session: Session, *, rules: MarketRules, order_id: str, participant_id: str, now: datetime
) -> MarketOrder:
    """Withdraw an open order before its gate closes."""
    row = _own_open_order(session, rules, order_id, participant_id, now)
    row.status = CANCELLED
    row.version += 1
    row.updated_at = now
    session.add(row)
    session.flush()
    _record(session, row, "cancelled", now, participant_id)
    return _order(row)


def get_order(session: Session, order_id: str, *, participant_id: str | None = None) -> MarketOrder:
    """An order by id; with ``participant_id``, only that household's (others are not found)."""
    row = session.get(OrderRow, order_id)
    if row is None or (participant_id is not None and row.participant_id != participant_id):
        raise NotFoundError("order_id", f"{order_id!r} is not an order")
    return _order(row)


def list_orders(
    session: Session,
    *,
    participant_id: str | None = None,
    period: SettlementPeriod | None = None,
    settlement_date: date | None = None,
    status: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[MarketOrder]:
    """Orders, oldest first, optionally one household's, one period's or date's, one status."""
    query = select(OrderRow)
    if participant_id is not None:
        query = query.where(OrderRow.participant_id == participant_id)
    if period is not None:
        query = query.where(
            OrderRow.interval_start_utc == period.start_utc, OrderRow.length_minutes == period.length_minutes
        )
    if settlement_date is not None:
        query = query.where(OrderRow.settlement_date == settlement_date)
    if status is not None:
        query = query.where(OrderRow.status == status)
    query = query.order_by(col(OrderRow.created_at), col(OrderRow.id)).offset(offset).limit(limit)
    return [_order(row) for row in session.exec(query)]


def order_history(session: Session, order_id: str, *, participant_id: str | None = None) -> list[OrderEvent]:
    """Every change to an order, oldest first."""
    get_order(session, order_id, participant_id=participant_id)
    rows = session.exec(
        select(OrderEventRow).where(OrderEventRow.order_id == order_id).order_by(col(OrderEventRow.version))
    )
    return [
        OrderEvent(
            version=row.version,
            kind=row.kind,
            quantity_kwh=Decimal(row.quantity_wh) / WH_PER_KWH,
            price_p_per_kwh=Decimal(row.price_ticks) / TICKS_PER_P,
            status=row.status,
            at=row.at,
            actor=row.actor,
        )
        for row in rows
    ]


def order_period(row: OrderRow) -> SettlementPeriod:
    """The settlement period a stored order is for."""
    return settlement_period(row.settlement_date, row.period, length_minutes=row.length_minutes)


def _lock_household(session: Session, participant_id: str) -> ParticipantRow:
    """The household, locked so that its concurrent requests take turns."""
    row = session.exec(
        select(ParticipantRow).where(ParticipantRow.id == participant_id).with_for_update()
    ).first()
    if row is None:
        raise NotFoundError("participant_id", f"{participant_id!r} is not a participant")
    if row.kind != HOUSEHOLD:
        raise MarketError("participant_id", f"{participant_id!r} is not a household")
    if not row.active:
        raise MarketError("participant_id", f"household {participant_id!r} is not active")
    return row


def _check_period(rules: MarketRules, period: SettlementPeriod, now: datetime) -> None:
    if period.length_minutes != rules.interval_minutes:
        raise MarketError(
            "interval",
            f"the market trades {rules.interval_minutes}-minute periods, not {period.length_minutes}",
        )
    gate = rules.gate_closure_utc(period)
    if now >= gate:
        raise MarketError("interval", f"gate closure for {period.key} was at {gate.isoformat()}")


def _own_open_order(
    session: Session, rules: MarketRules, order_id: str, participant_id: str, now: datetime
) -> OrderRow:
    _lock_household(session, participant_id)
    row = session.get(OrderRow, order_id)
    if row is None or row.participant_id != participant_id:
        raise NotFoundError("order_id", f"{order_id!r} is not an order")
    if row.status != OPEN:
        raise ConflictError("order_id", f"order {order_id!r} is {row.status}")
    period = order_period(row)
    gate = rules.gate_closure_utc(period)
    if now >= gate:
        raise ConflictError(
            "order_id", f"order {order_id!r} is frozen: gate closure for {period.key} was at {gate}"
        )
    _lock_open_book(session, period, conflict=True)
    return row


def book_lock(period: SettlementPeriod) -> tuple[str, str, int]:
    """The lock on an interval's book: clearing holds it exclusively, order changes shared, so
    no order change can commit after the clearing has read the book."""
    return ("book", period.start_utc.isoformat(), period.length_minutes)


def _lock_open_book(session: Session, period: SettlementPeriod, *, conflict: bool = False) -> None:
    """Share the interval's book lock with other order changes, and refuse a book already cleared.

    The caller's ``now`` was read before this transaction could wait for a clearing in progress;
    checking for the clearing run under the lock closes that window: an order change either
    commits before the clearing reads the book, or is refused.
    """
    lock_for_transaction(session, *book_lock(period), shared=True)
    cleared = session.exec(
        select(ClearingRunRow.id).where(
            ClearingRunRow.interval_start_utc == period.start_utc,
            ClearingRunRow.length_minutes == period.length_minutes,
        )
    ).first()
    if cleared is not None:
        reason = f"{period.key} has been cleared: its gate has closed"
        raise ConflictError("order_id", reason) if conflict else MarketError("interval", reason)


def _decimal(value: object, field: str) -> Decimal:
    try:
        number = value if isinstance(value, Decimal) else Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise MarketError(field, f"must be a number, not {value!r}") from None
    if isinstance(value, bool) or not number.is_finite():
        raise MarketError(field, f"must be a finite number, not {value!r}")
    return number


def _quantity_wh(rules: MarketRules, quantity_kwh: object) -> int:
    quantity = _decimal(quantity_kwh, "quantity_kwh")
    if not rules.min_quantity_kwh <= quantity <= rules.max_quantity_kwh:
        raise MarketError(
            "quantity_kwh", f"{quantity} is outside {rules.min_quantity_kwh} to {rules.max_quantity_kwh} kWh"
        )
    wh = quantity * WH_PER_KWH
    if wh != wh.to_integral_value():
        raise MarketError("quantity_kwh", f"{quantity} is finer than 0.001 kWh (1 Wh)")
    return int(wh)


def _price_ticks(rules: MarketRules, price_p_per_kwh: object) -> int:
    price = _decimal(price_p_per_kwh, "price_p_per_kwh")
    if not rules.min_price_p_per_kwh <= price <= rules.max_price_p_per_kwh:
        raise MarketError(
            "price_p_per_kwh",
            f"{price} is outside {rules.min_price_p_per_kwh} to {rules.max_price_p_per_kwh} p/kWh",
        )
    ticks = price * TICKS_PER_P
    if ticks != ticks.to_integral_value():
        raise MarketError("price_p_per_kwh", f"{price} is finer than the 0.01 p/kWh tick")
    return int(ticks)


def _replay(
    row: OrderRow, period: SettlementPeriod, side: str, quantity_kwh: object, price_p_per_kwh: object
) -> MarketOrder:
    """The order an idempotency key already placed, if the retried request is the same one."""
    same = (
        row.interval_start_utc == period.start_utc
        and row.side == side
        and Decimal(row.quantity_wh) == _decimal(quantity_kwh, "quantity_kwh") * WH_PER_KWH
        and Decimal(row.price_ticks) == _decimal(price_p_per_kwh, "price_p_per_kwh") * TICKS_PER_P
    )
    if not same:
        raise ConflictError("Idempotency-Key", "was already used for a different order")
    return _order(row)


def _record(session: Session, row: OrderRow, kind: str, now: datetime, actor: str) -> None:
    session.add(
        OrderEventRow(
            order_id=row.id,
            version=row.version,
            kind=kind,
            quantity_wh=row.quantity_wh,
            price_ticks=row.price_ticks,
            status=row.status,
            at=now,
            actor=actor,
        )
    )
    session.flush()


def _order(row: OrderRow) -> MarketOrder:
    return MarketOrder(
        id=row.id,
        participant_id=row.participant_id,
        node_id=row.node_id,
        period=order_period(row),
        side=row.side,
        quantity_kwh=Decimal(row.quantity_wh) / WH_PER_KWH,
        price_p_per_kwh=Decimal(row.price_ticks) / TICKS_PER_P,
        status=row.status,
        version=row.version,
        priority_at=row.priority_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )
