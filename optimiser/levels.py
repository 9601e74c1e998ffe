"""Price levels: orders that share node, side and limit price, cleared as one.

Orders at the same node, side and price are interchangeable to the welfare problem, so
the model gets one variable per level rather than one per order. That shrinks every
model (a node has at most a few thousand 0.01 p levels) and removes the single-node
trap where a simplex solver meets hundreds of thousands of columns on one balance row.
It also makes ties fair and auditable: a level's accepted energy goes back to its orders
in time priority (earlier ``submitted_at`` first, then ``order_id``), never as the solver
happens to split it.

May import only the standard library, NumPy and :mod:`optimiser`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from optimiser.book import OrderBook


@dataclass(frozen=True)
class PriceLevels:
    """The book aggregated by (node, side, price), in canonical order.

    Levels are sorted by node position, then sells before buys, then price; ``order_level``
    maps each order of the book to its level.
    """

    node: npt.NDArray[np.int64]
    is_buy: npt.NDArray[np.bool_]
    price_ticks: npt.NDArray[np.int64]
    quantity_wh: npt.NDArray[np.int64]
    order_level: npt.NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.node)


def aggregate_price_levels(book: OrderBook, order_node: npt.NDArray[np.int64]) -> PriceLevels:
    """Group the book's orders into price levels.

    Parameters
    ----------
    book:
        The validated order book.
    order_node:
        Each order's node as a position in the network's canonical order.
    """
    if len(book) == 0:
        empty = np.zeros(0, np.int64)
        return PriceLevels(empty, np.zeros(0, bool), empty, empty, empty)
    # One int64 key per order whose sort order is (node, side, price): prices are offset to
    # be non-negative, and the span leaves room for every tick between min and max.
    low = int(book.price_ticks.min())
    span = int(book.price_ticks.max()) - low + 1
    key = (order_node * 2 + book.is_buy.astype(np.int64)) * span + (book.price_ticks - low)
    keys, order_level = np.unique(key, return_inverse=True)
    quantity = np.bincount(order_level, weights=book.quantity_wh, minlength=len(keys))
    node_side, price = np.divmod(keys, span)
    return PriceLevels(
        node=node_side // 2,
        is_buy=(node_side % 2).astype(bool),
        price_ticks=price + low,
        quantity_wh=np.rint(quantity).astype(np.int64),
        order_level=order_level.astype(np.int64),
    )


def split_by_time_priority(
    book: OrderBook, levels: PriceLevels, accepted_wh: npt.NDArray[np.int64]
) -> npt.NDArray[np.int64]:
    """Share each level's accepted energy among its orders, earliest first.

    Within a level the orders are filled completely in order of ``submitted_at`` (ties by
    ``order_id``) until the level's accepted energy runs out; at most one order per level
    is filled in part.

    Returns
    -------
    Each order's accepted Wh, in the book's row order.
    """
    if len(book) == 0:
        return np.zeros(0, np.int64)
    queue = np.lexsort((book.submitted_at_us, levels.order_level))
    level_sorted, time_sorted = levels.order_level[queue], book.submitted_at_us[queue]
    if np.any((level_sorted[1:] == level_sorted[:-1]) & (time_sorted[1:] == time_sorted[:-1])):
        # Orders submitted at the same instant at one level: order id decides between them.
        queue = np.lexsort((np.array(book.order_ids), book.submitted_at_us, levels.order_level))
    level_of = levels.order_level[queue]
    quantity = book.quantity_wh[queue]
    # Energy queued ahead of each order within its level.
    ahead = np.cumsum(quantity) - quantity
    first = np.searchsorted(level_of, np.arange(len(levels)))
    ahead -= ahead[first][level_of]
    filled = np.clip(accepted_wh[level_of] - ahead, 0, quantity)
    accepted = np.empty(len(book), np.int64)
    accepted[queue] = filled
    return accepted
