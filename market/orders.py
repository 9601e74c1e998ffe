"""Orders up to gate closure: place, amend, cancel, and every change kept as an event.

A household's orders are for one settlement period each. Until the period's gate closes they may
be amended or cancelled; after it they are frozen and only clearing reads them. Nothing is
overwritten without a record: each change bumps the order's version and adds an
:class:`~market.tables.OrderEventRow`.

An order's ``status`` tells how it stands: ``open`` in the book, ``cancelled`` withdrawn, and
once its interval has been cleared ``filled``, ``partly_filled`` or ``unfilled``, with the energy
filled and its price. The outcome is read from the interval's current clearing run, never stored
on the order: a re-clear that supersedes the run changes what the order reports, as it changes
the trades.

Time priority (who fills first among equal prices) is ``priority_at``: set when the order is
placed, kept when an amendment only lowers the quantity, reset when it raises the quantity or
changes the price, as on an exchange.

Placing is the market's busiest write, so it runs on SQLAlchemy Core statements built once here
(their compiled forms are cached per engine), not ORM objects: one order takes the household's row
lock, the interval's book lock (PostgreSQL), one query for everything it checks, and the two
inserts. :func:`place_orders` places a household's batch (its day, or one period) in one
transaction: every order is checked before anything is written, each affected interval's book lock
is taken once, and the rows go in with one bulk insert each.

May import :mod:`market`, SQLModel and SQLAlchemy.
"""

from __future__ import annotations

import hashlib
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from market.database import (
    ADVISORY_LOCK_KEY,
    bulk_insert,
    lock_all_for_transaction,
    lock_for_transaction,
)
from market.errors import ConflictError, MarketError, NotFoundError
from market.intervals import SettlementPeriod, settlement_period
from market.participants import HOUSEHOLD
from market.rules import MarketRules
from market.tables import (
    ClearingRunRow,
    NetworkNodeRow,
    NetworkVersionRow,
    OrderEventRow,
    OrderRow,
    ParticipantRow,
    TradeRow,
)
from market.units import TICKS_PER_P, WH_PER_KWH

BUY, SELL = "buy", "sell"
#: Who placed an order (:attr:`MarketOrder.source`): the household itself (by the API, the web app
#: or a program with its token), or the platform for the household's strategy (:mod:`market.strategies`).
MANUAL, STRATEGY = "manual", "strategy"
ORDER_SOURCES = (MANUAL, STRATEGY)
#: What a stored order row holds: in the book, or withdrawn before its gate closed.
OPEN, CANCELLED = "open", "cancelled"
#: How an order in the book ended, once its interval has been cleared.
FILLED, PARTLY_FILLED, UNFILLED = "filled", "partly_filled", "unfilled"
ORDER_STATUSES = (OPEN, CANCELLED, FILLED, PARTLY_FILLED, UNFILLED)
#: The statuses of orders that are, or were when their interval cleared, in the book.
IN_BOOK = (OPEN, FILLED, PARTLY_FILLED, UNFILLED)
#: Most orders one :func:`place_orders` batch may hold: a day of half-hours at ten orders each fits.
MAX_BATCH_ORDERS = 500
#: Longest ``Idempotency-Key`` (the column's width).
MAX_IDEMPOTENCY_KEY = 128


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
    #: Energy traded once the interval has been cleared (0 when unfilled); None before.
    filled_kwh: Decimal | None = None
    #: The node's price the filled energy traded at; None unless some energy was filled.
    fill_price_p_per_kwh: Decimal | None = None
    #: Who placed it: :data:`MANUAL` or :data:`STRATEGY`.
    source: str = MANUAL


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


@dataclass(frozen=True)
class OrderRequest:
    """One order of a batch for :func:`place_orders`: what :func:`place_order` takes for one order."""

    period: SettlementPeriod
    side: str
    quantity_kwh: Decimal
    price_p_per_kwh: Decimal
    node_id: str | None = None


# --- the statements placing runs, built once (SQLAlchemy caches their compiled forms per engine) --

_ORDERS: sa.Table = OrderRow.__table__  # type: ignore[attr-defined]
_EVENTS: sa.Table = OrderEventRow.__table__  # type: ignore[attr-defined]
_PARTICIPANTS: sa.Table = ParticipantRow.__table__  # type: ignore[attr-defined]
_RUNS: sa.Table = ClearingRunRow.__table__  # type: ignore[attr-defined]
_VERSIONS: sa.Table = NetworkVersionRow.__table__  # type: ignore[attr-defined]
_NODES: sa.Table = NetworkNodeRow.__table__  # type: ignore[attr-defined]

_INSERT_ORDERS = _ORDERS.insert()
#: The columns of a batch's orders that differ between them (the rest are the batch's).
_BATCH_ORDER_COLUMNS = (
    "id",
    "node_id",
    "interval_start_utc",
    "length_minutes",
    "settlement_date",
    "period",
    "side",
    "quantity_wh",
    "price_ticks",
    "idempotency_key",
)
_INSERT_EVENTS = _EVENTS.insert()

#: The household, locked so that its concurrent requests take turns.
_HOUSEHOLD = (
    sa.select(_PARTICIPANTS.c.kind, _PARTICIPANTS.c.active, _PARTICIPANTS.c.node_id)
    .where(_PARTICIPANTS.c.id == sa.bindparam("participant_id"))
    .with_for_update()
)

#: On PostgreSQL, the household's row lock and then the book's shared lock in one round trip. The
#: household's row is locked in a materialised CTE first, so the locks are taken in the order the
#: two statements took them (the household, then the book); ``:name`` is the book lock's name.
_HOUSEHOLD_THEN_BOOK = sa.text(
    f"WITH household AS MATERIALIZED (SELECT kind, active, node_id FROM {_PARTICIPANTS.name} "
    "WHERE id = :participant_id FOR UPDATE) "
    f"SELECT kind, active, node_id, pg_advisory_xact_lock_shared({ADVISORY_LOCK_KEY}) IS NULL AS book_locked "
    "FROM household"
)

#: On PostgreSQL, a new order and its ``placed`` event in one round trip: the event is made from
#: the row the order's insert returns (what :func:`_placed_event` makes from it elsewhere).
_PLACED = (
    _ORDERS.insert()
    .values(
        {
            column.name: sa.bindparam(column.name, type_=column.type)
            for column in _ORDERS.c
            if column.name
            in (
                "id",
                "participant_id",
                "node_id",
                "interval_start_utc",
                "length_minutes",
                "settlement_date",
                "period",
                "side",
                "quantity_wh",
                "price_ticks",
                "status",
                "version",
                "priority_at",
                "created_at",
                "updated_at",
                "idempotency_key",
                "source",
            )
        }
    )
    .returning(
        _ORDERS.c.id, _ORDERS.c.quantity_wh, _ORDERS.c.price_ticks, _ORDERS.c.status, _ORDERS.c.created_at
    )
    .cte("placed")
)
_INSERT_ORDER_AND_EVENT = _EVENTS.insert().from_select(
    ["order_id", "version", "kind", "quantity_wh", "price_ticks", "status", "at", "actor"],
    sa.select(
        _PLACED.c.id,
        sa.literal(1, sa.Integer),
        sa.literal("placed", sa.String),
        _PLACED.c.quantity_wh,
        _PLACED.c.price_ticks,
        _PLACED.c.status,
        _PLACED.c.created_at,
        sa.bindparam("actor", type_=sa.String),
    ),
)


def _in_force(column: sa.ColumnElement[Any]) -> sa.ScalarSelect[Any]:
    """``column`` of the network version in force at ``:start``."""
    return (
        sa.select(column)
        .where(_VERSIONS.c.effective_from_utc <= sa.bindparam("start"))
        .order_by(_VERSIONS.c.effective_from_utc.desc())
        .limit(1)
        .scalar_subquery()
    )


_EARLIER_KEY_FILTER = (
    _ORDERS.c.participant_id == sa.bindparam("participant_id"),
    _ORDERS.c.idempotency_key.in_([sa.bindparam("key"), sa.bindparam("batch_key")]),
)
#: Everything one placement checks in the database, in one round trip, read under the book lock:
#: whether the interval has been cleared, the order an idempotency key already placed, the network
#: version in force with its root and whether the household's node is in it, and the household's
#: open orders for the interval (counted through ``ix_order_participant_open``).
_PLACING = sa.select(
    sa.exists()
    .where(
        _RUNS.c.interval_start_utc == sa.bindparam("start"),
        _RUNS.c.length_minutes == sa.bindparam("length"),
    )
    .label("cleared"),
    sa.select(_ORDERS.c.id).where(*_EARLIER_KEY_FILTER).limit(1).scalar_subquery().label("earlier"),
    _in_force(_VERSIONS.c.id).label("version_id"),
    _in_force(_VERSIONS.c.root).label("root"),
    sa.exists()
    .where(_NODES.c.version_id == _in_force(_VERSIONS.c.id), _NODES.c.node_id == sa.bindparam("node"))
    .label("node_known"),
    sa.select(sa.func.count())
    .select_from(_ORDERS)
    .where(
        _ORDERS.c.participant_id == sa.bindparam("participant_id"),
        _ORDERS.c.interval_start_utc == sa.bindparam("start"),
        _ORDERS.c.length_minutes == sa.bindparam("length"),
        _ORDERS.c.status == OPEN,
    )
    .scalar_subquery()
    .label("open_orders"),
)
_ORDER_BY_ID = sa.select(_ORDERS).where(_ORDERS.c.id == sa.bindparam("order_id"))

#: Orders with their outcome: the interval's current clearing run, if any, and the order's trade in it.
_CURRENT_RUN = sa.and_(
    col(ClearingRunRow.interval_start_utc) == col(OrderRow.interval_start_utc),
    col(ClearingRunRow.length_minutes) == col(OrderRow.length_minutes),
    col(ClearingRunRow.is_current).is_(True),
)
_OWN_TRADE = sa.and_(
    col(TradeRow.run_id) == col(ClearingRunRow.id), col(TradeRow.order_id) == col(OrderRow.id)
)
_STATUS = sa.case(
    (col(OrderRow.status) == CANCELLED, CANCELLED),
    (col(ClearingRunRow.id).is_(None), OPEN),
    (col(TradeRow.accepted_wh).is_(None), UNFILLED),
    (col(TradeRow.accepted_wh) >= col(OrderRow.quantity_wh), FILLED),
    else_=PARTLY_FILLED,
)
_WITH_OUTCOME = (
    select(OrderRow, _STATUS, col(TradeRow.accepted_wh), col(TradeRow.price_p_per_kwh))
    .outerjoin(ClearingRunRow, _CURRENT_RUN)
    .outerjoin(TradeRow, _OWN_TRADE)
)

# A batch's checks, each over all the batch's intervals at once.
_EARLIER = sa.select(_ORDERS.c.id).where(*_EARLIER_KEY_FILTER).limit(1)
_BATCH_ORDERS = sa.select(_ORDERS).where(
    _ORDERS.c.participant_id == sa.bindparam("participant_id"),
    _ORDERS.c.idempotency_key.like(sa.bindparam("prefix")),
)
_CLEARED = (
    sa.select(_RUNS.c.interval_start_utc, _RUNS.c.length_minutes)
    .where(_RUNS.c.interval_start_utc.in_(sa.bindparam("starts", expanding=True)))
    .distinct()
)
#: The network versions in force at some instant from ``:earliest`` to ``:latest``, newest first.
_VERSIONS_SPANNING = (
    sa.select(_VERSIONS.c.id, _VERSIONS.c.root, _VERSIONS.c.effective_from_utc)
    .where(
        _VERSIONS.c.effective_from_utc <= sa.bindparam("latest"),
        sa.or_(
            _VERSIONS.c.effective_from_utc > sa.bindparam("earliest"),
            _VERSIONS.c.effective_from_utc
            == sa.select(sa.func.max(_VERSIONS.c.effective_from_utc))
            .where(_VERSIONS.c.effective_from_utc <= sa.bindparam("earliest"))
            .scalar_subquery(),
        ),
    )
    .order_by(_VERSIONS.c.effective_from_utc.desc())
)
_NODE_VERSIONS = sa.select(_NODES.c.version_id).where(
    _NODES.c.node_id == sa.bindparam("node"),
    _NODES.c.version_id.in_(sa.bindparam("version_ids", expanding=True)),
)
_VERSIONS_NODES = sa.select(_NODES.c.node_id, _NODES.c.version_id).where(
    _NODES.c.version_id.in_(sa.bindparam("version_ids", expanding=True))
)
_OPEN_COUNTS = (
    sa.select(_ORDERS.c.interval_start_utc, sa.func.count())
    .where(
        _ORDERS.c.participant_id == sa.bindparam("participant_id"),
        # The span as well as the list: PostgreSQL then reads the household's index. With only
        # the list, while its statistics did not know the coming periods' orders, it read them
        # all from the interval index, so placing got slower with every household placed.
        _ORDERS.c.interval_start_utc >= sa.bindparam("first"),
        _ORDERS.c.interval_start_utc <= sa.bindparam("last"),
        _ORDERS.c.interval_start_utc.in_(sa.bindparam("starts", expanding=True)),
        _ORDERS.c.length_minutes == sa.bindparam("length"),
        _ORDERS.c.status == OPEN,
    )
    .group_by(_ORDERS.c.interval_start_utc)
)


@dataclass
class OrderBatch:
    """Orders of many households placed in one transaction and written together at its end.

    :func:`place_orders` given a batch checks each household's orders as it always does, but
    remembers what the transaction already knows (the households it has locked and their nodes,
    the book locks it holds, which periods are cleared, the networks in force) and keeps the new
    orders and their ``placed`` events here instead of writing them; :meth:`write` writes them
    all, one bulk insert each, and must run in the same transaction before it commits. The
    platform's planning run places a hundred households' orders a batch this way: two inserts
    and a few reads for them all rather than eight round trips a household.

    A household placed in a savepoint that then rolls back takes its orders out again with
    :meth:`mark` and :meth:`discard_since`.
    """

    home_nodes: dict[str, str] = field(default_factory=dict)
    locked_books: set[tuple[datetime, int]] = field(default_factory=set)
    cleared: dict[tuple[datetime, int], bool] = field(default_factory=dict)
    #: The network versions in force over a span of starts, and each version's nodes.
    versions: dict[tuple[datetime, datetime], list[Any]] = field(default_factory=dict)
    version_nodes: dict[int, set[str]] = field(default_factory=dict)
    #: Open orders a household has stored per interval start, as :meth:`hold` was told.
    known_open: dict[tuple[str, datetime], int] = field(default_factory=dict)
    orders: list[tuple[Any, ...]] = field(default_factory=list)
    events: list[tuple[Any, ...]] = field(default_factory=list)
    pending: Counter[tuple[str, datetime]] = field(default_factory=Counter)

    def hold(
        self,
        participant_id: str,
        *,
        node_id: str,
        open_orders: Mapping[datetime, int],
        books: Iterable[SettlementPeriod],
    ) -> None:
        """Tell the batch what its transaction already holds for a household, so that placing
        its orders reads none of it again: the household's row locked (it is at ``node_id``), its
        open orders stored per interval start in ``open_orders`` (every start it will place in;
        exact: read under that lock, less those cancelled since), and the ``books``' locks."""
        self.home_nodes[participant_id] = node_id
        for start, count in open_orders.items():
            self.known_open[(participant_id, start)] = count
        self.locked_books.update((period.start_utc, period.length_minutes) for period in books)

    def mark(self) -> tuple[int, int]:
        """Where the batch stands now, for :meth:`discard_since`."""
        return len(self.orders), len(self.events)

    def discard_since(self, mark: tuple[int, int]) -> None:
        """Take out the orders kept since ``mark`` (their household's savepoint rolled back)."""
        orders, events = mark
        for row in self.orders[orders:]:
            self.pending[(row[_PENDING_PARTICIPANT], row[_PENDING_START])] -= 1
        del self.orders[orders:]
        del self.events[events:]

    def write(self, session: Session) -> int:
        """Write the kept orders and events (one bulk insert each); returns how many orders."""
        bulk_insert(
            session, _ORDERS, _DEFERRED_ORDER_COLUMNS, self.orders, constants={"status": OPEN, "version": 1}
        )
        bulk_insert(
            session,
            _EVENTS,
            _DEFERRED_EVENT_COLUMNS,
            self.events,
            constants={"version": 1, "kind": "placed", "status": OPEN},
        )
        written = len(self.orders)
        self.orders.clear()
        self.events.clear()
        self.pending.clear()
        self.known_open.clear()  # the counts told now leave out what was just written
        return written


#: The columns of an order kept in an :class:`OrderBatch`.
_DEFERRED_ORDER_COLUMNS = (
    *_BATCH_ORDER_COLUMNS,
    "participant_id",
    "priority_at",
    "created_at",
    "updated_at",
    "source",
)
_PENDING_PARTICIPANT = _DEFERRED_ORDER_COLUMNS.index("participant_id")
_PENDING_START = _DEFERRED_ORDER_COLUMNS.index("interval_start_utc")
_DEFERRED_EVENT_COLUMNS = ("order_id", "quantity_wh", "price_ticks", "at", "actor")


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
        If ``idempotency_key`` was used for a different order (or for a batch).
    """
    connection = _connection(session)
    postgresql = connection.dialect.name == "postgresql"
    if postgresql:
        home_node = _lock_household(connection, participant_id, then_book=period)
    else:
        home_node = _lock_household(connection, participant_id)
        lock_for_transaction(session, *book_lock(period), shared=True)
    facts = connection.execute(
        _PLACING,
        {
            "participant_id": participant_id,
            "start": period.start_utc,
            "length": period.length_minutes,
            "node": home_node,
            "key": idempotency_key,
            "batch_key": None if idempotency_key is None else _batch_key(idempotency_key, 0),
        },
    ).one()
    if facts.cleared:
        raise MarketError("interval", _cleared_reason(period))
    if idempotency_key is not None:
        _check_idempotency_key(idempotency_key)
        if facts.earlier is not None:
            earlier = connection.execute(_ORDER_BY_ID, {"order_id": facts.earlier}).one()
            if earlier.idempotency_key != idempotency_key:
                raise ConflictError("Idempotency-Key", "was already used for a batch of orders")
            return _replay(earlier, period, side, quantity_kwh, price_p_per_kwh), False
    _check_period(rules, period, now)
    quantity_wh, price_ticks = _check_order(
        rules, participant_id, home_node, side, quantity_kwh, price_p_per_kwh, node_id
    )
    if facts.version_id is None:
        raise NotFoundError("network", f"no network version is in force at {period.start_utc.isoformat()}")
    if home_node != facts.root and not facts.node_known:
        raise MarketError("node", _not_in_network(home_node, period))
    if facts.open_orders >= rules.max_open_orders:
        raise MarketError(
            "interval",
            f"household {participant_id!r} already has {facts.open_orders} open orders for {period.key}",
        )
    row = _new_order(participant_id, home_node, period, side, quantity_wh, price_ticks, now, idempotency_key)
    if postgresql:
        connection.execute(_INSERT_ORDER_AND_EVENT, {**row, "actor": participant_id})
    else:
        connection.execute(_INSERT_ORDERS, [row])
        connection.execute(_INSERT_EVENTS, [_placed_event(row, participant_id)])
    return _stored_order(row, period), True


def place_orders(
    session: Session,
    *,
    rules: MarketRules,
    participant_id: str,
    requests: Sequence[OrderRequest],
    now: datetime,
    actor: str | None = None,
    idempotency_key: str | None = None,
    source: str = MANUAL,
    batch: OrderBatch | None = None,
) -> tuple[list[MarketOrder], bool]:
    """Place a household's batch of orders (its day, or one period) all together, or none of them.

    Every order is checked as :func:`place_order` checks one, and all are checked before any is
    written; then the orders and their ``placed`` events go in with one bulk insert each. Each
    interval's book lock is taken once (in time order), and the open-order limit counts, per
    interval, the orders stored and the batch's. The orders share ``now`` as their time priority.

    Parameters
    ----------
    requests:
        The orders, 1 to :data:`MAX_BATCH_ORDERS`, for any intervals.
    actor:
        Who is recorded on the orders' events; the household by default.
    source:
        Who placed the orders: :data:`MANUAL` (the household) or :data:`STRATEGY` (the platform,
        for the household's strategy).
    idempotency_key:
        Names the batch: a retry with the same key and the same orders returns the orders
        already placed (``created`` is ``False``) and stores nothing.
    batch:
        Many households' orders in this transaction: the orders are checked now and kept in
        ``batch`` to be written by :meth:`OrderBatch.write` (not with ``idempotency_key``).

    Returns
    -------
    The orders, in request order, and whether they were created now.

    Raises
    ------
    MarketError
        The first refusal, its field naming the order: ``orders[3].price_p_per_kwh``,
        ``orders[0].interval`` (past gate closure, cleared, or one order too many for the
        household's open-order limit); ``orders`` for an empty or oversized batch;
        ``participant_id`` for an unknown or inactive household.
    ConflictError
        If ``idempotency_key`` was used for a different batch or for a single order.
    """
    if source not in ORDER_SOURCES:
        raise ValueError(f"an order's source is one of {ORDER_SOURCES}, not {source!r}")
    if not requests:
        raise MarketError("orders", "a batch needs at least one order")
    if len(requests) > MAX_BATCH_ORDERS:
        raise MarketError("orders", f"a batch holds at most {MAX_BATCH_ORDERS} orders, not {len(requests)}")
    if batch is not None and idempotency_key is not None:
        raise ValueError("an idempotency key names one household's request, not a batch's orders")
    connection = _connection(session)
    if batch is None or participant_id not in batch.home_nodes:
        home_node = _lock_household(connection, participant_id)
        if batch is not None:
            batch.home_nodes[participant_id] = home_node
    else:
        home_node = batch.home_nodes[participant_id]
    periods = sorted({request.period for request in requests}, key=lambda p: (p.start_utc, p.length_minutes))
    starts = [period.start_utc for period in periods]
    cleared = _lock_books_and_find_cleared(session, connection, periods, batch)
    for i, request in enumerate(requests):
        if (request.period.start_utc, request.period.length_minutes) in cleared:
            raise MarketError(_item(i, "interval"), _cleared_reason(request.period))
    if idempotency_key is not None:
        _check_idempotency_key(idempotency_key)
        earlier = _earlier_batch(connection, participant_id, idempotency_key)
        if earlier is not None:
            return _replay_batch(earlier, requests), False
    checked: list[tuple[int, int]] = []
    for i, request in enumerate(requests):
        try:
            _check_period(rules, request.period, now)
            checked.append(
                _check_order(
                    rules,
                    participant_id,
                    home_node,
                    request.side,
                    request.quantity_kwh,
                    request.price_p_per_kwh,
                    request.node_id,
                )
            )
        except MarketError as error:
            raise type(error)(_item(i, error.field), error.reason) from None
    _check_network(connection, home_node, requests, batch)
    _check_open_orders(connection, rules, participant_id, requests, starts, batch)
    rows = [
        _new_order(
            participant_id,
            home_node,
            request.period,
            request.side,
            quantity_wh,
            price_ticks,
            now,
            None if idempotency_key is None else _batch_key(idempotency_key, i),
        )
        for i, (request, (quantity_wh, price_ticks)) in enumerate(zip(requests, checked, strict=True))
    ]
    recorded_by = participant_id if actor is None else actor
    if batch is not None:
        for row in rows:
            batch.orders.append(
                (*(row[name] for name in _BATCH_ORDER_COLUMNS), participant_id, now, now, now, source)
            )
            batch.events.append((row["id"], row["quantity_wh"], row["price_ticks"], now, recorded_by))
            batch.pending[(participant_id, row["interval_start_utc"])] += 1
        return [
            _stored_order({**row, "source": source}, request.period)
            for row, request in zip(rows, requests, strict=True)
        ], True
    # The batch's common values are bound once (bulk_insert): a city's day-ahead submissions are
    # tens of orders per request.
    bulk_insert(
        session,
        _ORDERS,
        _BATCH_ORDER_COLUMNS,
        [tuple(row[name] for name in _BATCH_ORDER_COLUMNS) for row in rows],
        constants={
            "participant_id": participant_id,
            "status": OPEN,
            "version": 1,
            "priority_at": now,
            "created_at": now,
            "updated_at": now,
            "source": source,
        },
    )
    bulk_insert(
        session,
        _EVENTS,
        ("order_id", "quantity_wh", "price_ticks"),
        [(row["id"], row["quantity_wh"], row["price_ticks"]) for row in rows],
        constants={"version": 1, "kind": "placed", "status": OPEN, "at": now, "actor": recorded_by},
    )
    return [
        _stored_order({**row, "source": source}, request.period)
        for row, request in zip(rows, requests, strict=True)
    ], True


def amend_order(
    session: Session,
    *,
    rules: MarketRules,
    order_id: str,
    participant_id: str,
    now: datetime,
    quantity_kwh: Decimal | None = None,
    price_p_per_kwh: Decimal | None = None,
    actor: str | None = None,
    source: str = MANUAL,
) -> MarketOrder:
    """Change an open order's quantity or price before its gate closes.

    ``actor`` (default: the household) is who the order's history says amended it, and ``source``
    who the order belongs to afterwards: an order of the household's strategy that the household
    amends by hand becomes its own (:data:`MANUAL`), so that the strategy, which gives way to
    manual orders, leaves that period alone rather than undoing the change.
    """
    if source not in ORDER_SOURCES:
        raise ValueError(f"an order's source is one of {ORDER_SOURCES}, not {source!r}")
    row = _own_open_order(session, rules, order_id, participant_id, now)
    quantity_wh = row.quantity_wh if quantity_kwh is None else _quantity_wh(rules, quantity_kwh)
    price_ticks = row.price_ticks if price_p_per_kwh is None else _price_ticks(rules, price_p_per_kwh)
    if (quantity_wh, price_ticks) == (row.quantity_wh, row.price_ticks):
        return _order(row)
    keeps_priority = price_ticks == row.price_ticks and quantity_wh < row.quantity_wh
    row.quantity_wh, row.price_ticks = quantity_wh, price_ticks
    row.source = source
    row.version += 1
    row.updated_at = now
    if not keeps_priority:
        row.priority_at = now
    session.add(row)
    session.flush()
    _record(session, row, "amended", now, actor or participant_id)
    return _order(row)


def cancel_order(
    session: Session,
    *,
    rules: MarketRules,
    order_id: str,
    participant_id: str,
    now: datetime,
    actor: str | None = None,
) -> MarketOrder:
    """Withdraw an open order before its gate closes; ``actor`` (default: the household) is who
    the order's history says cancelled it."""
    row = _own_open_order(session, rules, order_id, participant_id, now)
    row.status = CANCELLED
    row.version += 1
    row.updated_at = now
    session.add(row)
    session.flush()
    _record(session, row, "cancelled", now, actor or participant_id)
    return _order(row)


def get_order(session: Session, order_id: str, *, participant_id: str | None = None) -> MarketOrder:
    """An order by id; with ``participant_id``, only that household's (others are not found)."""
    found = session.exec(_WITH_OUTCOME.where(col(OrderRow.id) == order_id)).first()
    if found is None or (participant_id is not None and found[0].participant_id != participant_id):
        raise NotFoundError("order_id", f"{order_id!r} is not an order")
    return _order_with_outcome(*found)


def list_orders(
    session: Session,
    *,
    participant_id: str | None = None,
    period: SettlementPeriod | None = None,
    settlement_date: date | None = None,
    status: str | Sequence[str] | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[MarketOrder]:
    """Orders, oldest first, optionally one household's, one period's or date's, with one status
    (or any of several) of :data:`ORDER_STATUSES`."""
    query = _WITH_OUTCOME
    if participant_id is not None:
        query = query.where(OrderRow.participant_id == participant_id)
    if period is not None:
        query = query.where(
            OrderRow.interval_start_utc == period.start_utc, OrderRow.length_minutes == period.length_minutes
        )
    if settlement_date is not None:
        query = query.where(OrderRow.settlement_date == settlement_date)
    if status is not None:
        query = query.where(_STATUS.in_([status] if isinstance(status, str) else list(status)))
    query = query.order_by(col(OrderRow.created_at), col(OrderRow.id)).offset(offset).limit(limit)
    return [_order_with_outcome(*found) for found in session.exec(query)]


@dataclass(frozen=True)
class BookLevel:
    """The orders of one side of an interval's book at one limit price, added together (in the
    book's own integer units: price ticks and Wh)."""

    side: str
    price_ticks: int
    quantity_wh: int
    orders: int

    @property
    def price_p_per_kwh(self) -> Decimal:
        return Decimal(self.price_ticks) / TICKS_PER_P

    @property
    def quantity_kwh(self) -> Decimal:
        return Decimal(self.quantity_wh) / WH_PER_KWH


def book_levels(session: Session, period: SettlementPeriod) -> list[BookLevel]:
    """An interval's book (every order that is, or was when it cleared, in it) by side and limit
    price, added up in the database: what the supply and demand curves are drawn from, in one
    query whose answer grows with the prices bid, not with the households."""
    query = (
        sa.select(_ORDERS.c.side, _ORDERS.c.price_ticks, sa.func.sum(_ORDERS.c.quantity_wh), sa.func.count())
        .where(
            _ORDERS.c.interval_start_utc == period.start_utc,
            _ORDERS.c.length_minutes == period.length_minutes,
            _ORDERS.c.status != CANCELLED,
        )
        .group_by(_ORDERS.c.side, _ORDERS.c.price_ticks)
        .order_by(_ORDERS.c.side, _ORDERS.c.price_ticks)
    )
    return [
        BookLevel(side, ticks, int(energy_wh), count)
        for side, ticks, energy_wh, count in session.connection().execute(query)
    ]


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


def book_lock(period: SettlementPeriod) -> tuple[str, str, int]:
    """The lock on an interval's book: clearing holds it exclusively, order changes shared, so
    no order change can commit after the clearing has read the book."""
    return ("book", period.start_utc.isoformat(), period.length_minutes)


# --- checks --------------------------------------------------------------------------------------


def _connection(session: Session) -> sa.Connection:
    """The session's connection, after writing any ORM changes pending in the session (the Core
    statements here do not flush the session as its ORM queries would)."""
    session.flush()
    return session.connection()


def _lock_books_and_find_cleared(
    session: Session, connection: sa.Connection, periods: Sequence[SettlementPeriod], batch: OrderBatch | None
) -> set[tuple[datetime, int]]:
    """Take the periods' book locks (shared, in time order; those ``batch`` holds already are
    not taken again) and say which of the periods are cleared."""
    keys = [(period.start_utc, period.length_minutes) for period in periods]
    if batch is None:
        lock_all_for_transaction(session, [book_lock(period) for period in periods], shared=True)
        stored = connection.execute(_CLEARED, {"starts": [start for start, _ in keys]})
        return {(start, length) for start, length in stored}
    new = [
        period for period in periods if (period.start_utc, period.length_minutes) not in batch.locked_books
    ]
    lock_all_for_transaction(session, [book_lock(period) for period in new], shared=True)
    batch.locked_books.update((period.start_utc, period.length_minutes) for period in new)
    unknown = [key for key in keys if key not in batch.cleared]
    if unknown:
        starts = [start for start, _ in unknown]
        found = {(start, length) for start, length in connection.execute(_CLEARED, {"starts": starts})}
        for key in unknown:
            batch.cleared[key] = key in found
    return {key for key in keys if batch.cleared[key]}


def _lock_household(
    connection: sa.Connection, participant_id: str, *, then_book: SettlementPeriod | None = None
) -> str:
    """Lock the household's row, so that its concurrent requests take turns; its node.

    ``then_book`` (PostgreSQL only): then share that period's book lock, in the same round trip
    (it is not taken when the household is unknown; any other refusal ends the transaction).
    """
    if then_book is None:
        row = connection.execute(_HOUSEHOLD, {"participant_id": participant_id}).first()
    else:
        name = "\x1f".join(str(part) for part in book_lock(then_book))
        row = connection.execute(
            _HOUSEHOLD_THEN_BOOK, {"participant_id": participant_id, "name": name}
        ).first()
    if row is None:
        raise NotFoundError("participant_id", f"{participant_id!r} is not a participant")
    if row.kind != HOUSEHOLD:
        raise MarketError("participant_id", f"{participant_id!r} is not a household")
    if not row.active:
        raise MarketError("participant_id", f"household {participant_id!r} is not active")
    node_id: str | None = row.node_id
    assert node_id is not None
    return node_id


def _check_period(rules: MarketRules, period: SettlementPeriod, now: datetime) -> None:
    if period.length_minutes != rules.interval_minutes:
        raise MarketError(
            "interval",
            f"the market trades {rules.interval_minutes}-minute periods, not {period.length_minutes}",
        )
    gate = rules.gate_closure_utc(period)
    if now >= gate:
        raise MarketError("interval", f"gate closure for {period.key} was at {gate.isoformat()}")


def _check_order(
    rules: MarketRules,
    participant_id: str,
    home_node: str,
    side: str,
    quantity_kwh: object,
    price_p_per_kwh: object,
    node_id: str | None,
) -> tuple[int, int]:
    """The checks of one order that need no database; its quantity in Wh and price in ticks."""
    if side not in (BUY, SELL):
        raise MarketError("side", f"must be buy or sell, not {side!r}")
    quantity_wh = _quantity_wh(rules, quantity_kwh)
    price_ticks = _price_ticks(rules, price_p_per_kwh)
    if node_id is not None and node_id != home_node:
        raise MarketError("node", f"household {participant_id!r} sits on {home_node!r}, not {node_id!r}")
    return quantity_wh, price_ticks


def _check_idempotency_key(key: str) -> None:
    if not 1 <= len(key) <= MAX_IDEMPOTENCY_KEY:
        raise MarketError("Idempotency-Key", f"must be 1 to {MAX_IDEMPOTENCY_KEY} characters")


def _check_network(
    connection: sa.Connection,
    home_node: str,
    requests: Sequence[OrderRequest],
    batch: OrderBatch | None = None,
) -> None:
    """Refuse the first order whose interval has no network in force or one without the household's node."""
    starts = [request.period.start_utc for request in requests]
    span = (min(starts), max(starts))
    if batch is not None and span in batch.versions:
        versions = batch.versions[span]
    else:
        versions = list(connection.execute(_VERSIONS_SPANNING, {"earliest": span[0], "latest": span[1]}))
    with_node: set[int] = set()
    if batch is not None:
        batch.versions[span] = versions
        unread = [v.id for v in versions if v.id not in batch.version_nodes]
        if unread:  # every node of the versions, once a batch: a city's feeders share them
            for version_id in unread:
                batch.version_nodes[version_id] = set()
            for node_id, version_id in connection.execute(_VERSIONS_NODES, {"version_ids": unread}):
                batch.version_nodes[version_id].add(node_id)
        with_node = {v.id for v in versions if home_node in batch.version_nodes[v.id]}
    elif any(version.root != home_node for version in versions):
        found = connection.execute(
            _NODE_VERSIONS, {"node": home_node, "version_ids": [v.id for v in versions]}
        )
        with_node = set(found.scalars())
    for i, request in enumerate(requests):
        start = request.period.start_utc
        version = next((v for v in versions if v.effective_from_utc <= start), None)
        if version is None:
            raise NotFoundError(_item(i, "network"), f"no network version is in force at {start.isoformat()}")
        if home_node != version.root and version.id not in with_node:
            raise MarketError(_item(i, "node"), _not_in_network(home_node, request.period))


def _check_open_orders(
    connection: sa.Connection,
    rules: MarketRules,
    participant_id: str,
    requests: Sequence[OrderRequest],
    starts: list[datetime],
    batch: OrderBatch | None = None,
) -> None:
    """Refuse the first order that would take the household past its open orders for an interval
    (those stored, and those ``batch`` keeps for it)."""
    if batch is not None and all((participant_id, start) in batch.known_open for start in starts):
        stored = Counter({start: batch.known_open[(participant_id, start)] for start in starts})
    else:
        stored = _stored_open_counts(connection, rules, participant_id, starts)
    if batch is not None:
        for start in starts:
            stored[start] += batch.pending[(participant_id, start)]
    requested = Counter(request.period.start_utc for request in requests)
    adding: Counter[datetime] = Counter()
    for i, request in enumerate(requests):
        start = request.period.start_utc
        adding[start] += 1
        already = stored.get(start, 0)
        if already + adding[start] > rules.max_open_orders:
            raise MarketError(
                _item(i, "interval"),
                f"household {participant_id!r} would have {already + requested[start]} open orders for "
                f"{request.period.key} ({already} open already, {requested[start]} in this batch): at most "
                f"{rules.max_open_orders} may be open",
            )


def _stored_open_counts(
    connection: sa.Connection, rules: MarketRules, participant_id: str, starts: list[datetime]
) -> Counter[datetime]:
    """The household's open orders stored per interval start."""
    counted = connection.execute(
        _OPEN_COUNTS,
        {
            "participant_id": participant_id,
            "first": min(starts),
            "last": max(starts),
            "starts": starts,
            "length": rules.interval_minutes,
        },
    )
    return Counter(dict(counted.all()))


def _own_open_order(
    session: Session, rules: MarketRules, order_id: str, participant_id: str, now: datetime
) -> OrderRow:
    _lock_household(_connection(session), participant_id)
    row = session.get(OrderRow, order_id)
    if row is None or row.participant_id != participant_id:
        raise NotFoundError("order_id", f"{order_id!r} is not an order")
    if row.status != OPEN:
        raise ConflictError("order_id", f"order {order_id!r} is {row.status}")
    period = order_period(row)
    gate = rules.gate_closure_utc(period)
    if now >= gate:
        outcome = get_order(session, order_id).status
        if outcome != OPEN:
            raise ConflictError("order_id", f"order {order_id!r} is {outcome}: {_cleared_reason(period)}")
        raise ConflictError(
            "order_id", f"order {order_id!r} is frozen: gate closure for {period.key} was at {gate}"
        )
    _lock_open_book(session, period, conflict=True)
    return row


def _lock_open_book(session: Session, period: SettlementPeriod, *, conflict: bool = False) -> None:
    """Share the interval's book lock with other order changes, and refuse a book already cleared.

    The caller's ``now`` was read before this transaction could wait for a clearing in progress;
    checking for the clearing run under the lock closes that window: an order change either
    commits before the clearing reads the book, or is refused. (Placing does the same, its check
    for the clearing run being part of its one query after the lock.)
    """
    lock_for_transaction(session, *book_lock(period), shared=True)
    cleared = session.connection().execute(_CLEARED, {"starts": [period.start_utc]})
    if any(length == period.length_minutes for _, length in cleared):
        reason = _cleared_reason(period)
        raise ConflictError("order_id", reason) if conflict else MarketError("interval", reason)


def _cleared_reason(period: SettlementPeriod) -> str:
    return f"{period.key} has been cleared: its gate has closed"


def _not_in_network(node_id: str, period: SettlementPeriod) -> str:
    return f"{node_id!r} is not a node of the network in force for {period.key}"


def _item(index: int, field: str) -> str:
    """The field of a batch's order, as a caller names it: ``orders[3].price_p_per_kwh``."""
    return f"orders[{index}].{field}"


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


# --- idempotency ---------------------------------------------------------------------------------


def _batch_prefix(key: str) -> str:
    """What every order of the batch placed with ``key`` stores as its idempotency key, before its
    position: a digest, so that any key up to 128 characters fits the column with the position."""
    return f"batch:{hashlib.sha256(key.encode()).hexdigest()}:"


def _batch_key(key: str, index: int) -> str:
    """The stored idempotency key of the ``index``-th order of the batch placed with ``key``."""
    return f"{_batch_prefix(key)}{index:03d}"


def _earlier_batch(connection: sa.Connection, participant_id: str, key: str) -> list[sa.Row[Any]] | None:
    """The orders of the batch the household already placed with ``key``, in request order."""
    first = connection.execute(
        _EARLIER, {"participant_id": participant_id, "key": key, "batch_key": _batch_key(key, 0)}
    ).first()
    if first is None:
        return None
    prefix = _batch_prefix(key)
    rows = connection.execute(_BATCH_ORDERS, {"participant_id": participant_id, "prefix": f"{prefix}%"})
    placed = [row for row in rows if row.idempotency_key.startswith(prefix)]
    if not placed:
        raise ConflictError("Idempotency-Key", "was already used for a single order")
    return sorted(placed, key=lambda row: int(row.idempotency_key[len(prefix) :]))


def _replay(
    row: OrderRow | sa.Row[Any],
    period: SettlementPeriod,
    side: str,
    quantity_kwh: object,
    price_p_per_kwh: object,
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


def _replay_batch(rows: list[sa.Row[Any]], requests: Sequence[OrderRequest]) -> list[MarketOrder]:
    """The orders a batch's idempotency key already placed, if the retried batch is the same one."""
    different = ConflictError("Idempotency-Key", "was already used for a different batch of orders")
    if len(rows) != len(requests):
        raise different
    orders = []
    for i, (row, request) in enumerate(zip(rows, requests, strict=True)):
        try:
            orders.append(
                _replay(row, request.period, request.side, request.quantity_kwh, request.price_p_per_kwh)
            )
        except ConflictError:
            raise different from None
        except MarketError as error:
            raise type(error)(_item(i, error.field), error.reason) from None
    return orders


# --- rows ----------------------------------------------------------------------------------------


def _new_order(
    participant_id: str,
    node_id: str,
    period: SettlementPeriod,
    side: str,
    quantity_wh: int,
    price_ticks: int,
    now: datetime,
    idempotency_key: str | None,
) -> dict[str, Any]:
    """A new open order's row, as the insert takes it."""
    return {
        "id": str(uuid.uuid4()),
        "participant_id": participant_id,
        "node_id": node_id,
        "interval_start_utc": period.start_utc,
        "length_minutes": period.length_minutes,
        "settlement_date": period.settlement_date,
        "period": period.period,
        "side": side,
        "quantity_wh": quantity_wh,
        "price_ticks": price_ticks,
        "status": OPEN,
        "version": 1,
        "priority_at": now,
        "created_at": now,
        "updated_at": now,
        "idempotency_key": idempotency_key,
        "source": MANUAL,
    }


def _placed_event(row: dict[str, Any], actor: str) -> dict[str, Any]:
    """The ``placed`` event of a new order's row."""
    return {
        "order_id": row["id"],
        "version": 1,
        "kind": "placed",
        "quantity_wh": row["quantity_wh"],
        "price_ticks": row["price_ticks"],
        "status": OPEN,
        "at": row["created_at"],
        "actor": actor,
    }


def _stored_order(row: dict[str, Any], period: SettlementPeriod) -> MarketOrder:
    """The order a new row stores (for ``period``, the period it was built from)."""
    return MarketOrder(
        id=row["id"],
        participant_id=row["participant_id"],
        node_id=row["node_id"],
        period=period,
        side=row["side"],
        quantity_kwh=Decimal(row["quantity_wh"]) / WH_PER_KWH,
        price_p_per_kwh=Decimal(row["price_ticks"]) / TICKS_PER_P,
        status=OPEN,
        version=1,
        priority_at=row["priority_at"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        source=row["source"],
    )


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


def _order_with_outcome(
    row: OrderRow, status: str, accepted_wh: int | None, price: Decimal | None
) -> MarketOrder:
    """An order with how it ended, from :data:`_WITH_OUTCOME`'s columns."""
    order = _order(row)
    if status in (OPEN, CANCELLED):
        return order
    return replace(
        order,
        status=status,
        filled_kwh=Decimal(accepted_wh or 0) / WH_PER_KWH,
        fill_price_p_per_kwh=price if accepted_wh else None,
    )


def _order(row: OrderRow | sa.Row[Any]) -> MarketOrder:
    return MarketOrder(
        id=row.id,
        participant_id=row.participant_id,
        node_id=row.node_id,
        period=settlement_period(row.settlement_date, row.period, length_minutes=row.length_minutes),
        side=row.side,
        quantity_kwh=Decimal(row.quantity_wh) / WH_PER_KWH,
        price_p_per_kwh=Decimal(row.price_ticks) / TICKS_PER_P,
        status=row.status,
        version=row.version,
        priority_at=row.priority_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
        source=row.source,
    )
