"""The clearing problem's inputs: orders, the network tree and the backstop tariff.

Everything here is validated on construction, before any model is built, and a
bad value raises :class:`ClearingInputError` naming the order or node and the
field. The order book is columnar (NumPy arrays in exact integer units) because
a city-wide interval holds hundreds of thousands of orders.

Units, exact by construction:

- energy in whole watt-hours (``quantity_wh``); a kWh input must be a multiple of 0.001;
- order limit prices in ticks of 0.01 p/kWh (``price_ticks``);
- fees and tariffs as :class:`~decimal.Decimal` p/kWh;
- ``submitted_at`` in integer microseconds since the Unix epoch, UTC.

May import only the standard library and NumPy.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum

import numpy as np
import numpy.typing as npt

WH_PER_KWH = 1000
TICKS_PER_P = 100
#: Largest accepted |limit price|, fee or tariff, p/kWh (GBP 10,000 per kWh): far beyond any
#: real price, small enough that every value is exact in a float64 LP.
MAX_PRICE_P_PER_KWH = 1_000_000
#: Largest accepted order quantity or edge capacity, kWh (1 GWh in one interval).
MAX_QUANTITY_KWH = 1_000_000

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class ClearingInputError(ValueError):
    """An order, node or tariff that cannot be cleared, found before any solve.

    Attributes
    ----------
    subject:
        What is wrong, as it is named in the input: ``"order 'o-17'"``, ``"node 'F-3'"``,
        ``"tariff"``.
    field:
        The offending field, for example ``"quantity_kwh"``; empty when the subject as a
        whole is wrong (a duplicate or a cycle).
    reason:
        Why, in words.
    index:
        For an order, its row position in the book (0-based), so that a file reader can
        name the line; ``None`` otherwise.
    """

    def __init__(self, subject: str, field: str, reason: str, *, index: int | None = None) -> None:
        self.subject = subject
        self.field = field
        self.reason = reason
        self.index = index
        where = f"{subject}: {field}" if field else subject
        super().__init__(f"{where} {reason}")


class Side(StrEnum):
    """Which way an order trades."""

    BUY = "buy"
    SELL = "sell"


@dataclass(frozen=True, slots=True)
class Order:
    """One limit order for one interval, as a household places it."""

    order_id: str
    participant_id: str
    node: str
    side: Side
    quantity_kwh: Decimal
    price_p_per_kwh: Decimal
    submitted_at: datetime


@dataclass(frozen=True, slots=True)
class Node:
    """A node of the network tree below the root and the edge that joins it to its parent.

    ``import_capacity_kwh`` bounds the energy flowing from the parent into the node in one
    interval, ``export_capacity_kwh`` the energy flowing back up; ``fee_p_per_kwh`` is
    charged on energy crossing the edge in either direction.
    """

    id: str
    parent: str
    import_capacity_kwh: Decimal
    export_capacity_kwh: Decimal
    fee_p_per_kwh: Decimal = Decimal(0)


@dataclass(frozen=True, slots=True)
class Tariff:
    """The energy company's backstop at the root: it sells at import and buys at export."""

    import_p_per_kwh: Decimal
    export_p_per_kwh: Decimal

    def __post_init__(self) -> None:
        for name in ("import_p_per_kwh", "export_p_per_kwh"):
            object.__setattr__(self, name, _check_price(getattr(self, name), "tariff", name))
        if self.import_p_per_kwh < self.export_p_per_kwh:
            raise ClearingInputError(
                "tariff",
                "import_p_per_kwh",
                f"({self.import_p_per_kwh}) is below export_p_per_kwh ({self.export_p_per_kwh}); "
                "the backstop would be a money pump",
            )


@dataclass(frozen=True)
class Network:
    """The network tree, validated and put in a canonical order.

    ``node_ids[0]`` is the root; every node comes after its parent, and siblings are in
    order of their ids, so the same tree in any input order gives the same arrays.
    """

    root: str
    nodes: tuple[Node, ...] = ()
    node_ids: tuple[str, ...] = field(init=False)
    parent_index: npt.NDArray[np.int64] = field(init=False, repr=False)
    import_capacity_wh: npt.NDArray[np.int64] = field(init=False, repr=False)
    export_capacity_wh: npt.NDArray[np.int64] = field(init=False, repr=False)
    fees_p_per_kwh: tuple[Decimal, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        _check_id(self.root, "network", "root")
        by_id: dict[str, Node] = {}
        for node in self.nodes:
            subject = f"node {node.id!r}"
            _check_id(node.id, subject, "id")
            if node.id == self.root or node.id in by_id:
                raise ClearingInputError(subject, "id", "appears more than once in the network")
            _check_id(node.parent, subject, "parent")
            for name in ("import_capacity_kwh", "export_capacity_kwh"):
                _kwh_to_wh(getattr(node, name), subject, name)
            if _check_price(node.fee_p_per_kwh, subject, "fee_p_per_kwh") < 0:
                raise ClearingInputError(subject, "fee_p_per_kwh", "must not be negative")
            by_id[node.id] = node

        children: dict[str, list[str]] = {}
        for node in by_id.values():
            if node.parent != self.root and node.parent not in by_id:
                raise ClearingInputError(
                    f"node {node.id!r}", "parent", f"{node.parent!r} is not a node of the network"
                )
            children.setdefault(node.parent, []).append(node.id)
        ordered = [self.root]
        for current in ordered:  # breadth first; the list grows as it is walked
            ordered.extend(sorted(children.get(current, ())))
        if len(ordered) != len(by_id) + 1:
            stuck = sorted(set(by_id) - set(ordered))
            raise ClearingInputError(
                f"node {stuck[0]!r}", "parent", "is part of a cycle that never reaches the root"
            )

        position = {node_id: i for i, node_id in enumerate(ordered)}
        tree = [by_id[node_id] for node_id in ordered[1:]]
        set_ = object.__setattr__
        set_(self, "node_ids", tuple(ordered))
        set_(self, "parent_index", np.array([-1] + [position[n.parent] for n in tree], np.int64))
        set_(
            self,
            "import_capacity_wh",
            np.array([0] + [_kwh_to_wh(n.import_capacity_kwh, "", "") for n in tree], np.int64),
        )
        set_(
            self,
            "export_capacity_wh",
            np.array([0] + [_kwh_to_wh(n.export_capacity_kwh, "", "") for n in tree], np.int64),
        )
        set_(self, "fees_p_per_kwh", (Decimal(0), *(Decimal(n.fee_p_per_kwh) for n in tree)))

    @classmethod
    def single_node(cls, root: str = "GSP") -> Network:
        """A network of one node, the root: every order trades there."""
        return cls(root=root)

    def index_of(self) -> dict[str, int]:
        """Node id to its position in :attr:`node_ids`."""
        return {node_id: i for i, node_id in enumerate(self.node_ids)}


@dataclass(frozen=True, eq=False)
class OrderBook:
    """One interval's orders, columnar and in exact units; see the module docstring.

    Build it with :meth:`from_orders` or :meth:`from_columns`; both validate every order.
    Row order carries no meaning: clearing sorts into a canonical order first.
    """

    order_ids: tuple[str, ...]
    participant_ids: tuple[str, ...]
    nodes: tuple[str, ...]
    is_buy: npt.NDArray[np.bool_]
    quantity_wh: npt.NDArray[np.int64]
    price_ticks: npt.NDArray[np.int64]
    submitted_at_us: npt.NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.order_ids)

    @classmethod
    def empty(cls) -> OrderBook:
        """A book with no orders."""
        return cls.from_columns(
            order_ids=[],
            participant_ids=[],
            nodes=[],
            is_buy=np.zeros(0, bool),
            quantity_kwh=np.zeros(0),
            price_p_per_kwh=np.zeros(0),
            submitted_at_us=np.zeros(0, np.int64),
        )

    @classmethod
    def from_orders(cls, orders: Iterable[Order]) -> OrderBook:
        """Validate and collect orders given one by one, with exact Decimal values."""
        orders = list(orders)
        quantity_wh = []
        price_ticks = []
        submitted = []
        for i, order in enumerate(orders):
            subject = f"order {order.order_id!r}"
            try:
                if order.side not in (Side.BUY, Side.SELL):
                    raise ClearingInputError(subject, "side", f"must be buy or sell, not {order.side!r}")
                quantity_wh.append(_kwh_to_wh(order.quantity_kwh, subject, "quantity_kwh"))
                price_ticks.append(_price_to_ticks(order.price_p_per_kwh, subject, "price_p_per_kwh"))
                submitted.append(timestamp_us(order.submitted_at, subject))
            except ClearingInputError as error:
                error.index = i
                raise
        book = cls(
            order_ids=tuple(o.order_id for o in orders),
            participant_ids=tuple(o.participant_id for o in orders),
            nodes=tuple(o.node for o in orders),
            is_buy=np.array([o.side == Side.BUY for o in orders], bool),
            quantity_wh=np.array(quantity_wh, np.int64),
            price_ticks=np.array(price_ticks, np.int64),
            submitted_at_us=np.array(submitted, np.int64),
        )
        book._check_columns()
        return book

    @classmethod
    def from_columns(
        cls,
        *,
        order_ids: Sequence[str],
        participant_ids: Sequence[str],
        nodes: Sequence[str],
        is_buy: npt.ArrayLike,
        quantity_kwh: npt.ArrayLike,
        price_p_per_kwh: npt.ArrayLike,
        submitted_at_us: npt.ArrayLike,
    ) -> OrderBook:
        """Validate and collect columns of values as float64 (parsed from text, say).

        A float column is accepted only where every value is, to within float rounding,
        a whole number of Wh or of 0.01 p ticks, so no precision is silently lost.
        """
        ids = tuple(order_ids)
        quantity = np.asarray(quantity_kwh, np.float64)
        price = np.asarray(price_p_per_kwh, np.float64)
        book = cls(
            order_ids=ids,
            participant_ids=tuple(participant_ids),
            nodes=tuple(nodes),
            is_buy=np.asarray(is_buy, bool),
            quantity_wh=_floats_to_units(
                quantity, WH_PER_KWH, ids, "quantity_kwh", MAX_QUANTITY_KWH, "0.001 kWh (1 Wh)"
            ),
            price_ticks=_floats_to_units(
                price, TICKS_PER_P, ids, "price_p_per_kwh", MAX_PRICE_P_PER_KWH, "the 0.01 p/kWh tick"
            ),
            submitted_at_us=np.asarray(submitted_at_us, np.int64),
        )
        book._check_columns()
        return book

    def _check_columns(self) -> None:
        n = len(self.order_ids)
        columns = (
            self.participant_ids,
            self.nodes,
            self.is_buy,
            self.quantity_wh,
            self.price_ticks,
            self.submitted_at_us,
        )
        if any(len(column) != n for column in columns):
            raise ClearingInputError("order book", "", "has columns of different lengths")
        for label, column in (
            ("order_id", self.order_ids),
            ("participant_id", self.participant_ids),
            ("node", self.nodes),
        ):
            # One pass at C speed; the row walk only runs to name a bad value.
            if set(map(type, column)) - {str} or not all(column):
                i = next(i for i, value in enumerate(column) if not isinstance(value, str) or not value)
                subject = f"order #{i + 1}" if label == "order_id" else f"order {self.order_ids[i]!r}"
                raise ClearingInputError(subject, label, "must be a non-empty string", index=i)
        if len(set(self.order_ids)) != n:
            seen: set[str] = set()
            for i, order_id in enumerate(self.order_ids):
                if order_id in seen:
                    raise _order_error(self.order_ids, i, "order_id", "appears more than once")
                seen.add(order_id)
        bad = np.flatnonzero(self.quantity_wh <= 0)
        if bad.size:
            raise _order_error(self.order_ids, int(bad[0]), "quantity_kwh", "must be greater than zero")


def timestamp_us(moment: datetime, subject: str = "order") -> int:
    """Microseconds since the Unix epoch of an aware datetime; naive times are refused."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ClearingInputError(subject, "submitted_at", "must carry a UTC offset (for example 'Z')")
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _check_id(value: object, subject: str, name: str) -> None:
    if not isinstance(value, str) or not value:
        raise ClearingInputError(subject, name, "must be a non-empty string")


def _as_decimal(value: object, subject: str, name: str) -> Decimal:
    if isinstance(value, float) and not math.isfinite(value):
        raise ClearingInputError(subject, name, f"must be a finite number, not {value}")
    try:
        number = value if isinstance(value, Decimal) else Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise ClearingInputError(subject, name, f"must be a number, not {value!r}") from None
    if isinstance(value, bool) or not number.is_finite():
        raise ClearingInputError(subject, name, f"must be a finite number, not {value}")
    return number


def _check_price(value: object, subject: str, name: str) -> Decimal:
    number = _as_decimal(value, subject, name)
    if abs(number) > MAX_PRICE_P_PER_KWH:
        raise ClearingInputError(subject, name, f"is beyond +/-{MAX_PRICE_P_PER_KWH} p/kWh")
    return number


def _kwh_to_wh(value: object, subject: str, name: str) -> int:
    number = _as_decimal(value, subject, name)
    if number < 0:
        raise ClearingInputError(subject, name, "must not be negative")
    if number > MAX_QUANTITY_KWH:
        raise ClearingInputError(subject, name, f"is beyond {MAX_QUANTITY_KWH} kWh")
    wh = number * WH_PER_KWH
    if wh != wh.to_integral_value():
        raise ClearingInputError(subject, name, f"({number}) is finer than 0.001 kWh (1 Wh)")
    return int(wh)


def _price_to_ticks(value: object, subject: str, name: str) -> int:
    number = _check_price(value, subject, name)
    ticks = number * TICKS_PER_P
    if ticks != ticks.to_integral_value():
        raise ClearingInputError(subject, name, f"({number}) is finer than the 0.01 p/kWh tick")
    return int(ticks)


def _floats_to_units(
    values: npt.NDArray[np.float64],
    scale: int,
    ids: Sequence[str],
    name: str,
    limit: int,
    resolution: str,
) -> npt.NDArray[np.int64]:
    """Exact conversion of decimal text parsed to float64 into integer units.

    Every value below ``limit`` with at most log10(scale) decimals is within a few ulps of
    a whole number of units, so rounding recovers it exactly; anything else is refused.
    """
    if len(values) != len(ids):
        raise ClearingInputError("order book", "", "has columns of different lengths")
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        i = int(bad[0])
        raise _order_error(ids, i, name, f"must be a finite number, not {float(values[i])}")
    bad = np.flatnonzero(np.abs(values) > limit)
    if bad.size:
        i = int(bad[0])
        raise _order_error(ids, i, name, f"({float(values[i])}) is beyond +/-{limit}")
    scaled = values * scale
    units = np.rint(scaled)
    bad = np.flatnonzero(np.abs(scaled - units) > 1e-6)
    if bad.size:
        i = int(bad[0])
        raise _order_error(ids, i, name, f"({float(values[i])}) is finer than {resolution}")
    return units.astype(np.int64)


def _order_error(ids: Sequence[str], i: int, name: str, reason: str) -> ClearingInputError:
    return ClearingInputError(f"order {ids[i]!r}", name, reason, index=i)
