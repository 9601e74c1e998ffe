"""Households' strategies, stored in versions, and the orders the platform places for them.

A household states its :class:`planning.strategy.Strategy` once (the API, the web app's Settings,
or the operator's ``smartbrum strategy set``); the platform plans for it and turns each plan into
orders with :func:`apply_strategy_orders`. Every change is a new
:class:`~market.tables.StrategyVersionRow`, never an update, so the versions are the strategy's
audit trail (who, when, what): setting, pausing, resuming and removing each add one.

Removing is a version too, whose document is JSON ``null``: the history stays whole (what was in
force when, and who removed it), and a later :func:`set_strategy` simply starts again at the next
version. :func:`strategy_of` answers None for a household without a strategy or whose newest
version removed it.

A strategy trades only while its household is active, the strategy is not paused and not
removed (:func:`households_with_strategies`). Pausing or removing cancels at once the household's
open orders that its strategy placed, before their gates; a paused or removed strategy's plan is
treated as empty. Manual orders for a period take precedence over the strategy's: the platform
places nothing in a period where the household has an open order of its own.

May import :mod:`market`, :mod:`planning`, SQLModel and SQLAlchemy.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from pydantic import ValidationError
from sqlmodel import Session, col, select

from market.database import chunks, lock_all_for_transaction
from market.errors import ConflictError, MarketError, NotFoundError
from market.intervals import SettlementPeriod
from market.orders import (
    BUY,
    OPEN,
    SELL,
    STRATEGY,
    OrderBatch,
    OrderRequest,
    amend_order,
    book_lock,
    cancel_order,
    order_period,
    place_orders,
)
from market.participants import HOUSEHOLD
from market.rules import MarketRules
from market.tables import OrderRow, ParticipantRow, StrategyVersionRow
from market.units import TICKS_PER_P, WH_PER_KWH
from planning.strategy import Strategy

#: The document of a version that removed the strategy.
REMOVED_DOCUMENT = "null"
#: Who the order history names for what the platform does for a strategy.
STRATEGY_ACTOR = "strategy"
#: The fields whose prices the market's rules bound, as the strategy names them.
_PRICE_FIELDS = ("sell_floor_p_per_kwh", "buy_ceiling_p_per_kwh")


class StrategyInvalidError(MarketError):
    """A strategy that cannot be right, whatever the market's rules: every problem, each naming its
    field by its path (``battery.max_soc_percent``). ``field`` and ``reason`` are the first's."""

    def __init__(self, problems: Sequence[tuple[str, str]]) -> None:
        self.problems = list(problems)
        super().__init__(*self.problems[0])


@dataclass(frozen=True)
class StoredStrategy:
    """One version of a household's strategy.

    Attributes
    ----------
    strategy:
        What the household stated (its ``paused`` is the version's); None on a version that
        removed the strategy.
    created_by:
        Who made the change: the household, the operator's id, ``cli``.
    """

    participant_id: str
    version: int
    strategy: Strategy | None
    paused: bool
    created_at: datetime
    created_by: str

    @property
    def removed(self) -> bool:
        """Whether this version removed the strategy."""
        return self.strategy is None

    @property
    def trading(self) -> bool:
        """Whether the platform trades on this version: neither paused nor removed."""
        return self.strategy is not None and not self.paused


@dataclass(frozen=True)
class StrategyOrder:
    """One order a plan wants for a period: side, energy (whole Wh) and limit price (p/kWh)."""

    side: str
    quantity_wh: int
    price_p_per_kwh: Decimal


@dataclass(frozen=True)
class StrategyOrdersApplied:
    """What :func:`apply_strategy_orders` did to one household's book."""

    participant_id: str
    placed: tuple[str, ...] = ()
    amended: tuple[str, ...] = ()
    cancelled: tuple[str, ...] = ()
    #: Orders already as the plan wants them, left alone.
    unchanged: int = 0
    #: Periods left to the household's own (manual) open orders.
    manual_periods: tuple[str, ...] = ()
    #: Periods of the plan whose gate had closed: nothing there is touched.
    closed_periods: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        """Whether any order was placed, amended or cancelled."""
        return bool(self.placed or self.amended or self.cancelled)


@dataclass(frozen=True)
class StrategyBooks:
    """What :func:`apply_strategy_orders` reads of each household before changing its book, read
    for many households at once by :func:`read_strategy_books` in the transaction that applies
    their plans (a planning run's batch), so that each household costs its writes only.

    Attributes
    ----------
    periods:
        The periods read, whose books' locks the transaction holds.
    trading:
        Each household locked and read: whether its newest strategy version trades. A household
        absent (unknown, not a household, inactive) is read and refused by
        :func:`apply_strategy_orders` itself.
    open_orders:
        Each household's open orders in ``periods``, by the period's start.
    nodes:
        Each household locked: its node.
    """

    periods: frozenset[SettlementPeriod]
    trading: Mapping[str, bool]
    open_orders: Mapping[str, Mapping[datetime, list[OrderRow]]]
    nodes: Mapping[str, str]


# --- the strategy --------------------------------------------------------------------------------


def parse_strategy(document: Mapping[str, Any]) -> Strategy:
    """A strategy from its fields (a JSON or TOML document, an API body, a form).

    Raises
    ------
    StrategyInvalidError
        Every field at fault, each named by its path (``battery.max_soc_percent``) with why.
    """
    try:
        return Strategy.model_validate(dict(document))
    except ValidationError as error:
        raise StrategyInvalidError(
            [
                (".".join(str(part) for part in problem["loc"]) or "strategy", _words(problem["msg"]))
                for problem in error.errors()
            ]
        ) from None


def _words(message: str) -> str:
    """pydantic's message in the market's voice: no ``Value error,`` prefix, a lower-case start."""
    message = message.removeprefix("Value error, ")
    return message[:1].lower() + message[1:]


def check_strategy_rules(strategy: Strategy, rules: MarketRules) -> None:
    """Refuse prices no order could carry under the market's rules: outside its price range or
    finer than its tick. A strategy's prices become its orders' limit prices, so a price the market
    would refuse on every order is refused when the strategy is stated, not at each plan.

    Raises
    ------
    MarketError
        Naming the field (``sell_floor_p_per_kwh``, ``buy_ceiling_p_per_kwh``).
    """
    for name in _PRICE_FIELDS:
        price: Decimal = getattr(strategy, name)
        if not rules.min_price_p_per_kwh <= price <= rules.max_price_p_per_kwh:
            raise MarketError(
                name,
                f"{price} is outside the market's {rules.min_price_p_per_kwh} to "
                f"{rules.max_price_p_per_kwh} p/kWh",
            )
        ticks = price * TICKS_PER_P
        if ticks != ticks.to_integral_value():
            raise MarketError(name, f"{price} is finer than the 0.01 p/kWh tick")


def set_strategy(
    session: Session,
    *,
    participant_id: str,
    strategy: Strategy | Mapping[str, Any],
    rules: MarketRules,
    now: datetime,
    actor: str,
    paused: bool | None = None,
) -> StoredStrategy:
    """State a household's strategy: a new version, in force from now.

    Parameters
    ----------
    strategy:
        The strategy, or its fields (checked by :func:`parse_strategy`).
    actor:
        Who makes the change, kept on the version: the household, or the operator.
    paused:
        Whether the new version is paused; None keeps the current version's pause (a paused
        household changing its prices stays paused), and a first strategy trades at once.

    Raises
    ------
    StrategyInvalidError
        A field that cannot be right, each named.
    MarketError
        A price the market's rules refuse (naming the field); an inactive household or not a
        household (``participant_id``).
    NotFoundError
        No such participant.
    """
    stated = strategy if isinstance(strategy, Strategy) else parse_strategy(strategy)
    check_strategy_rules(stated, rules)
    _lock_household(session, participant_id, active=True)
    current = _newest(session, participant_id)
    if paused is None:
        paused = current is not None and current.strategy is not None and current.paused
    return _add_version(
        session, participant_id, current, stated.model_copy(update={"paused": paused}), now, actor
    )


def strategy_of(session: Session, participant_id: str) -> StoredStrategy | None:
    """The household's strategy in force (paused or not), or None: none stated, or removed."""
    current = _newest(session, participant_id)
    return None if current is None or current.removed else current


def pause_strategy(
    session: Session, *, participant_id: str, rules: MarketRules, now: datetime, actor: str
) -> StoredStrategy:
    """Pause the household's strategy: a new version, and its strategy's open orders whose gate has
    not closed cancelled at once. Pausing a paused strategy adds nothing and returns it.

    Raises
    ------
    NotFoundError
        No such participant, or no strategy (``strategy``).
    """
    return _pause(session, participant_id, rules, now, actor, paused=True)


def resume_strategy(
    session: Session, *, participant_id: str, rules: MarketRules, now: datetime, actor: str
) -> StoredStrategy:
    """Resume a paused strategy: a new version; the platform trades for it from its next plan.
    Resuming one that is not paused adds nothing and returns it.

    Raises
    ------
    NotFoundError
        No such participant, or no strategy (``strategy``).
    MarketError
        An inactive household (``participant_id``): deactivated households never trade.
    """
    return _pause(session, participant_id, rules, now, actor, paused=False)


def remove_strategy(
    session: Session, *, participant_id: str, rules: MarketRules, now: datetime, actor: str
) -> StoredStrategy:
    """Remove the household's strategy: a version without one (its document JSON ``null``), and
    its strategy's open orders before their gates cancelled. The earlier versions stay.

    Returns
    -------
    The version that removed it.

    Raises
    ------
    NotFoundError
        No such participant, or no strategy to remove (``strategy``).
    """
    _lock_household(session, participant_id, active=False)
    current = _newest(session, participant_id)
    if current is None or current.removed:
        raise NotFoundError("strategy", f"household {participant_id!r} has no strategy")
    cancel_strategy_orders(session, participant_id=participant_id, rules=rules, now=now, actor=actor)
    return _add_version(session, participant_id, current, None, now, actor)


def strategy_history(
    session: Session, participant_id: str, *, limit: int = 100, offset: int = 0
) -> list[StoredStrategy]:
    """Every version of the household's strategy, oldest first (removals included)."""
    rows = session.exec(
        select(StrategyVersionRow)
        .where(StrategyVersionRow.participant_id == participant_id)
        .order_by(col(StrategyVersionRow.version))
        .offset(offset)
        .limit(limit)
    )
    return [_stored(row) for row in rows]


def households_with_strategies(session: Session) -> list[StoredStrategy]:
    """The strategies the platform trades on: each active household's newest version, where it is
    neither paused nor removed, by household id.

    One query however many households: the newest version of each (a grouped subquery on the
    ``(participant_id, version)`` unique index) joined to the active households.
    """
    newest = (
        sa.select(
            col(StrategyVersionRow.participant_id).label("participant_id"),
            sa.func.max(col(StrategyVersionRow.version)).label("version"),
        )
        .group_by(col(StrategyVersionRow.participant_id))
        .subquery()
    )
    rows = session.exec(
        select(StrategyVersionRow)
        .join(
            newest,
            sa.and_(
                col(StrategyVersionRow.participant_id) == newest.c.participant_id,
                col(StrategyVersionRow.version) == newest.c.version,
            ),
        )
        .join(ParticipantRow, col(ParticipantRow.id) == col(StrategyVersionRow.participant_id))
        .where(
            col(ParticipantRow.active).is_(True),
            col(ParticipantRow.kind) == HOUSEHOLD,
            col(StrategyVersionRow.paused).is_(False),
            col(StrategyVersionRow.document) != REMOVED_DOCUMENT,
        )
        .order_by(col(StrategyVersionRow.participant_id))
    )
    return [_stored(row) for row in rows]


# --- the strategy's orders ------------------------------------------------------------------------


def apply_strategy_orders(
    session: Session,
    *,
    rules: MarketRules,
    participant_id: str,
    desired: Mapping[SettlementPeriod, Sequence[StrategyOrder]],
    now: datetime,
    actor: str = STRATEGY_ACTOR,
    books: StrategyBooks | None = None,
    batch: OrderBatch | None = None,
) -> StrategyOrdersApplied:
    """Make the household's strategy orders in the book what its plan wants, without duplicates.

    For each period of ``desired`` whose gate has not closed (the others are not touched):

    - if the household has an open manual order there, the period is its own: nothing is placed
      and the strategy's open orders there are cancelled (manual orders take precedence);
    - otherwise the strategy's open orders there become the wanted ones: those already as wanted
      are left alone, the others of the same side are amended to a wanted one (nearest price
      first), those left over are cancelled, and what is still missing is placed (one batch,
      ``source`` :data:`~market.orders.STRATEGY`).

    So a second run with the same plan changes nothing (no order gets a new version). Periods not
    in ``desired`` are not touched. A household whose strategy is paused or removed (or that has
    none) has an empty plan: its strategy's orders in those periods are cancelled. Run it in one
    transaction per household (:func:`market.database.transaction`): a refusal leaves that
    household's book as it was and the others' unaffected.

    Parameters
    ----------
    desired:
        Per period, the orders the plan wants (an empty list: none).
    actor:
        Who the orders' history names for these changes.
    books:
        What :func:`read_strategy_books` read of this household and others earlier in this
        transaction (its lock held, its strategy and its open orders): used instead of reading
        them again when it holds the household and every open period of ``desired``.
    batch:
        Many households' new orders kept to be written together (:class:`~market.orders.OrderBatch`).

    Raises
    ------
    MarketError
        A wanted order the market refuses, named ``desired[2026-12-06/27][1].price_p_per_kwh``;
        an unknown or inactive household (``participant_id``).
    """
    read = books is not None and participant_id in books.trading
    if books is not None and read:
        trading = books.trading[participant_id]
    else:
        _lock_household(session, participant_id, active=True)
        current = _newest(session, participant_id)
        trading = current is not None and current.trading
    for period in desired:
        if period.length_minutes != rules.interval_minutes:
            raise MarketError(
                f"desired[{period.key}]",
                f"the market trades {rules.interval_minutes}-minute periods, not {period.length_minutes}",
            )
    closed = [p for p in desired if rules.gate_closure_utc(p) <= now]
    open_periods = sorted((p for p in desired if p not in closed), key=lambda p: p.start_utc)
    wanted = {p: list(desired[p]) if trading else [] for p in open_periods}
    for period, orders in wanted.items():
        _check_wanted(rules, period, orders)
    from_books = books is not None and read and books.periods.issuperset(open_periods)
    if books is not None and from_books:
        own_books = books.open_orders.get(participant_id, {})
    else:
        lock_all_for_transaction(session, [book_lock(p) for p in open_periods], shared=True)
        own_books = _open_orders(session, participant_id, open_periods)
    placed_requests: list[OrderRequest] = []
    amended: list[str] = []
    cancelled: list[str] = []
    manual: list[str] = []
    unchanged = 0
    still_open: dict[datetime, int] = {}  # the household's open orders per period once changed
    for period in open_periods:
        own = own_books.get(period.start_utc, [])
        mine = [row for row in own if row.source == STRATEGY]
        if len(mine) < len(own):
            manual.append(period.key)
            for row in mine:
                _cancel(session, rules, row, participant_id, now, actor)
                cancelled.append(row.id)
            continue
        plan = _match(mine, wanted[period])
        unchanged += plan.unchanged
        for row, order in plan.amend:
            amend_order(
                session,
                rules=rules,
                order_id=row.id,
                participant_id=participant_id,
                now=now,
                quantity_kwh=Decimal(order.quantity_wh) / WH_PER_KWH,
                price_p_per_kwh=order.price_p_per_kwh,
                actor=actor,
                source=STRATEGY,
            )
            amended.append(row.id)
        for row in plan.cancel:
            _cancel(session, rules, row, participant_id, now, actor)
            cancelled.append(row.id)
        still_open[period.start_utc] = len(own) - len(plan.cancel)
        placed_requests += [
            OrderRequest(period, order.side, Decimal(order.quantity_wh) / WH_PER_KWH, order.price_p_per_kwh)
            for order in plan.place
        ]
    placed: list[str] = []
    if placed_requests:
        if batch is not None and books is not None and from_books:
            # The transaction holds the household's lock and its books' (read_strategy_books),
            # and knows its open orders: placing them need read none of it again.
            batch.hold(
                participant_id,
                node_id=books.nodes[participant_id],
                open_orders=still_open,
                books=open_periods,
            )
        new_orders, _ = place_orders(
            session,
            rules=rules,
            participant_id=participant_id,
            requests=placed_requests,
            now=now,
            actor=actor,
            source=STRATEGY,
            batch=batch,
        )
        placed = [order.id for order in new_orders]
    return StrategyOrdersApplied(
        participant_id=participant_id,
        placed=tuple(placed),
        amended=tuple(amended),
        cancelled=tuple(cancelled),
        unchanged=unchanged,
        manual_periods=tuple(manual),
        closed_periods=tuple(p.key for p in sorted(closed, key=lambda p: p.start_utc)),
    )


def read_strategy_books(
    session: Session,
    *,
    rules: MarketRules,
    participant_ids: Collection[str],
    periods: Collection[SettlementPeriod],
    now: datetime,
) -> StrategyBooks:
    """Lock many households and read what :func:`apply_strategy_orders` needs of each, in a few
    queries however many they are: their rows locked (in id order, as one household at a time
    would take them), the books of ``periods`` whose gate is open locked (shared, in time order,
    in one statement), their newest strategy versions and their open orders in those periods.

    Run it in the transaction that then applies their plans: the locks hold until it ends, so
    what it read stays true but for the household's own changes in that transaction.
    """
    open_periods = sorted((p for p in periods if rules.gate_closure_utc(p) > now), key=lambda p: p.start_utc)
    ids = sorted(set(participant_ids))
    trading: dict[str, bool] = {}
    open_orders: dict[str, dict[datetime, list[OrderRow]]] = {}
    nodes: dict[str, str] = {}
    for chunk in chunks(ids):
        locked = session.exec(
            select(ParticipantRow.id, ParticipantRow.node_id)
            .where(
                col(ParticipantRow.id).in_(chunk),
                ParticipantRow.kind == HOUSEHOLD,
                col(ParticipantRow.active).is_(True),
            )
            .order_by(col(ParticipantRow.id))
            .with_for_update()
        ).all()
        for household, node_id in locked:
            trading[household] = False
            if node_id is not None:
                nodes[household] = node_id
    lock_all_for_transaction(session, [book_lock(p) for p in open_periods], shared=True)
    starts = [p.start_utc for p in open_periods]
    wanted_starts = set(starts)
    for chunk in chunks(list(trading)):
        newest = (
            sa.select(
                col(StrategyVersionRow.participant_id).label("participant_id"),
                sa.func.max(col(StrategyVersionRow.version)).label("version"),
            )
            .where(col(StrategyVersionRow.participant_id).in_(chunk))
            .group_by(col(StrategyVersionRow.participant_id))
            .subquery()
        )
        for row in session.exec(
            select(StrategyVersionRow).join(
                newest,
                sa.and_(
                    col(StrategyVersionRow.participant_id) == newest.c.participant_id,
                    col(StrategyVersionRow.version) == newest.c.version,
                ),
            )
        ):
            trading[row.participant_id] = not row.paused and row.document != REMOVED_DOCUMENT
        if not starts:
            continue
        for order in _open_orders_between(session, chunk, starts[0], starts[-1]):
            if order.length_minutes == rules.interval_minutes and order.interval_start_utc in wanted_starts:
                open_orders.setdefault(order.participant_id, {}).setdefault(
                    order.interval_start_utc, []
                ).append(order)
    return StrategyBooks(frozenset(open_periods), trading, open_orders, nodes)


def _open_orders_between(
    session: Session, participant_ids: Sequence[str], first: datetime, last: datetime
) -> Sequence[OrderRow]:
    """The households' open orders starting from ``first`` to ``last``, one ``UNION ALL`` branch a
    household.

    One branch each, each with its household's equality: the database reads the households'
    index for every branch, whatever its statistics say. With ``participant_id IN (...)`` and the
    span, PostgreSQL's estimate for the list (half the table without statistics) lost to the
    interval index, and it read every household's orders of the coming periods (127,000 after a
    planning run) for each batch of a hundred: 52 s of a 73 s run (``bench/autotrading.py``).
    """
    orders = OrderRow.__table__  # type: ignore[attr-defined]
    branches = [
        sa.select(orders).where(
            orders.c.participant_id == household,
            orders.c.interval_start_utc >= first,
            orders.c.interval_start_utc <= last,
            orders.c.status == OPEN,
        )
        for household in participant_ids
    ]
    if not branches:
        return []
    return list(session.scalars(select(OrderRow).from_statement(sa.union_all(*branches))))


def cancel_strategy_orders(
    session: Session, *, participant_id: str, rules: MarketRules, now: datetime, actor: str
) -> list[str]:
    """Cancel the household's open orders placed for its strategy whose gate has not closed (those
    past it are the book's); their ids. For pausing and removing a strategy."""
    rows = session.exec(
        select(OrderRow)
        .where(
            OrderRow.participant_id == participant_id,
            OrderRow.status == OPEN,
            OrderRow.source == STRATEGY,
            col(OrderRow.interval_start_utc) > now,
        )
        .order_by(col(OrderRow.interval_start_utc), col(OrderRow.id))
    ).all()
    cancelled = []
    for row in rows:
        if rules.gate_closure_utc(order_period(row)) > now:
            _cancel(session, rules, row, participant_id, now, actor)
            cancelled.append(row.id)
    return cancelled


@dataclass
class _Matching:
    """How a period's strategy orders become the wanted ones."""

    unchanged: int = 0
    amend: list[tuple[OrderRow, StrategyOrder]] = field(default_factory=list)
    cancel: list[OrderRow] = field(default_factory=list)
    place: list[StrategyOrder] = field(default_factory=list)


def _match(rows: list[OrderRow], wanted: list[StrategyOrder]) -> _Matching:
    """Pair a period's open strategy orders with the wanted ones, fewest changes first: exact
    matches stay, then each side's remaining orders are amended in price order, and the rest are
    cancelled or placed. Deterministic (rows by id, wanted orders as given, prices sorted)."""
    matching = _Matching()
    left = sorted(rows, key=lambda row: row.id)
    missing: list[StrategyOrder] = []
    for order in wanted:
        ticks = _ticks(order.price_p_per_kwh)
        same = next(
            (
                row
                for row in left
                if (row.side, row.quantity_wh, row.price_ticks) == (order.side, order.quantity_wh, ticks)
            ),
            None,
        )
        if same is None:
            missing.append(order)
        else:
            left.remove(same)
            matching.unchanged += 1
    for side in (BUY, SELL):
        rows_of_side = sorted(
            (row for row in left if row.side == side), key=lambda row: (row.price_ticks, row.id)
        )
        orders_of_side = sorted(
            (order for order in missing if order.side == side), key=lambda order: order.price_p_per_kwh
        )
        pairs = min(len(rows_of_side), len(orders_of_side))
        matching.amend += list(zip(rows_of_side[:pairs], orders_of_side[:pairs], strict=True))
        matching.cancel += rows_of_side[pairs:]
        matching.place += orders_of_side[pairs:]
    return matching


def _check_wanted(rules: MarketRules, period: SettlementPeriod, orders: Sequence[StrategyOrder]) -> None:
    """Refuse a plan's order the market would refuse, named by its period and place in the plan,
    before anything is changed."""
    for i, order in enumerate(orders):
        where = f"desired[{period.key}][{i}]"
        if order.side not in (BUY, SELL):
            raise MarketError(f"{where}.side", f"must be buy or sell, not {order.side!r}")
        quantity_kwh = Decimal(order.quantity_wh) / WH_PER_KWH
        if not rules.min_quantity_kwh <= quantity_kwh <= rules.max_quantity_kwh:
            raise MarketError(
                f"{where}.quantity_wh",
                f"{order.quantity_wh} Wh is outside {rules.min_quantity_kwh} to {rules.max_quantity_kwh} kWh",
            )
        price = order.price_p_per_kwh
        ticks = price * TICKS_PER_P
        if (
            not rules.min_price_p_per_kwh <= price <= rules.max_price_p_per_kwh
            or ticks != ticks.to_integral_value()
        ):
            raise MarketError(
                f"{where}.price_p_per_kwh",
                f"{price} is not a price the market takes ({rules.min_price_p_per_kwh} to "
                f"{rules.max_price_p_per_kwh} p/kWh, in 0.01 p ticks)",
            )
    if len(orders) > rules.max_open_orders:
        raise MarketError(
            f"desired[{period.key}]",
            f"{len(orders)} orders for one period: at most {rules.max_open_orders} may be open",
        )


def _ticks(price_p_per_kwh: Decimal) -> int:
    return int(price_p_per_kwh * TICKS_PER_P)


def _open_orders(
    session: Session, participant_id: str, periods: Sequence[SettlementPeriod]
) -> dict[datetime, list[OrderRow]]:
    """The household's open orders of every period, in one query, by the period's start."""
    if not periods:
        return {}
    rows = session.exec(
        select(OrderRow).where(
            OrderRow.participant_id == participant_id,
            col(OrderRow.interval_start_utc).in_([p.start_utc for p in periods]),
            OrderRow.length_minutes == periods[0].length_minutes,
            OrderRow.status == OPEN,
        )
    ).all()
    books: dict[datetime, list[OrderRow]] = {}
    for row in rows:
        books.setdefault(row.interval_start_utc, []).append(row)
    return books


def _cancel(
    session: Session, rules: MarketRules, row: OrderRow, participant_id: str, now: datetime, actor: str
) -> None:
    with contextlib.suppress(ConflictError):  # its interval cleared meanwhile: the book has it
        cancel_order(
            session, rules=rules, order_id=row.id, participant_id=participant_id, now=now, actor=actor
        )


# --- versions ------------------------------------------------------------------------------------


def _pause(
    session: Session, participant_id: str, rules: MarketRules, now: datetime, actor: str, *, paused: bool
) -> StoredStrategy:
    _lock_household(session, participant_id, active=not paused)
    current = _newest(session, participant_id)
    if current is None or current.strategy is None:
        raise NotFoundError("strategy", f"household {participant_id!r} has no strategy")
    if current.paused == paused:
        return current
    if paused:
        cancel_strategy_orders(session, participant_id=participant_id, rules=rules, now=now, actor=actor)
    return _add_version(
        session, participant_id, current, current.strategy.model_copy(update={"paused": paused}), now, actor
    )


def _lock_household(session: Session, participant_id: str, *, active: bool) -> None:
    """Lock the household's row, so that its changes take turns (and number versions in turn)."""
    row = session.get(ParticipantRow, participant_id, with_for_update=True)
    if row is None:
        raise NotFoundError("participant_id", f"{participant_id!r} is not a participant")
    if row.kind != HOUSEHOLD:
        raise MarketError("participant_id", f"{participant_id!r} is not a household")
    if active and not row.active:
        raise MarketError("participant_id", f"household {participant_id!r} is not active: it cannot trade")


def _newest(session: Session, participant_id: str) -> StoredStrategy | None:
    row = session.exec(
        select(StrategyVersionRow)
        .where(StrategyVersionRow.participant_id == participant_id)
        .order_by(col(StrategyVersionRow.version).desc())
        .limit(1)
    ).first()
    return None if row is None else _stored(row)


def _add_version(
    session: Session,
    participant_id: str,
    current: StoredStrategy | None,
    strategy: Strategy | None,
    now: datetime,
    actor: str,
) -> StoredStrategy:
    row = StrategyVersionRow(
        participant_id=participant_id,
        version=1 if current is None else current.version + 1,
        document=REMOVED_DOCUMENT if strategy is None else strategy.model_dump_json(),
        paused=True if strategy is None else strategy.paused,
        created_at=now,
        created_by=actor[:64],
    )
    session.add(row)
    session.flush()
    return _stored(row)


def _stored(row: StrategyVersionRow) -> StoredStrategy:
    document = json.loads(row.document)
    strategy = None if document is None else Strategy.model_validate(document)
    return StoredStrategy(
        participant_id=row.participant_id,
        version=row.version,
        strategy=strategy,
        paused=row.paused,
        created_at=row.created_at,
        created_by=row.created_by,
    )
