"""Nodal prices from a cleared result, exact, with the documented rule for ties.

A price vector *supports* a cleared result when, at every node, each buy filled in full
has a limit at or above the node's price, each buy left unfilled a limit at or below it,
each sell the other way round, each partly filled order a limit equal to it; when every
edge's flow is what a trader paying the fee would choose between the two prices; and
when the root's price equals the import tariff if the backstop imports, the export
tariff if it exports, and lies between them otherwise. By LP duality the result is
welfare-maximising exactly when such a vector exists, and the supporting vectors are
exactly the optimal balance duals. So this module is both the engine's optimality
certificate (checked in exact Decimal arithmetic, not solver tolerances) and the source
of the prices it reports.

Where the balance alone does not fix a price (supply and demand cross on a vertical
step), the supporting prices form an interval at each node. The rule, in full:

1. Each node's *supporting range* is the interval of its prices over all supporting
   vectors. On a tree these ranges are found exactly by tightening every node's own
   bounds through the edge conditions, once from the leaves up and once from the root
   down.
2. The root's price is the midpoint of its range (the range is always bounded: the
   backstop keeps it within the tariffs).
3. Going down the tree, each node's price is the midpoint of the prices that support
   the result at that node *given its parent's price*; where that interval is open on
   one side (a node cut off by a full or zero-capacity edge, with orders on one side
   only), its finite end; where it is open on both sides (a node nothing can price),
   its parent's price.

On a single node this is the midpoint of the interval of supporting prices, and wherever
a price is determined (a partly filled order, an edge carrying energy below its
capacity, the backstop trading) it is that price.

May import only the standard library, NumPy and :mod:`optimiser`.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import numpy as np
import numpy.typing as npt

from optimiser.book import TICKS_PER_P, Network, Tariff
from optimiser.levels import PriceLevels

INFINITY = Decimal("Infinity")


class NotOptimalError(ArithmeticError):
    """No price vector supports the result: it is not welfare-maximising."""


@dataclass(frozen=True)
class PriceSupport:
    """The supporting range of every node and the prices chosen by the rule.

    Ranges use ``Decimal('-Infinity')`` and ``Decimal('Infinity')`` for open ends.
    """

    lowest: tuple[Decimal, ...]
    highest: tuple[Decimal, ...]
    prices: tuple[Decimal, ...]


def support_prices(
    *,
    network: Network,
    tariff: Tariff,
    levels: PriceLevels,
    accepted_wh: npt.NDArray[np.int64],
    flow_in_wh: npt.NDArray[np.int64],
    flow_out_wh: npt.NDArray[np.int64],
    grid_import_wh: int,
    grid_export_wh: int,
) -> PriceSupport:
    """Supporting ranges and rule prices of a cleared result; see the module docstring.

    Raises
    ------
    NotOptimalError
        If no price vector supports the result.
    """
    count = len(network.node_ids)
    lowest, highest = _order_bounds(levels, accepted_wh, count)
    if grid_import_wh > 0:
        lowest[0] = max(lowest[0], tariff.import_p_per_kwh)
    highest[0] = min(highest[0], tariff.import_p_per_kwh)
    if grid_export_wh > 0:
        highest[0] = min(highest[0], tariff.export_p_per_kwh)
    lowest[0] = max(lowest[0], tariff.export_p_per_kwh)

    parent = network.parent_index.tolist()
    step_low, step_high = _edge_steps(network, flow_in_wh, flow_out_wh)

    # Leaves up: a parent's price is its child's minus the step over the edge.
    for child in range(count - 1, 0, -1):
        up = parent[child]
        lowest[up] = max(lowest[up], lowest[child] - step_high[child])
        highest[up] = min(highest[up], highest[child] - step_low[child])
    below_only = (list(lowest), list(highest))
    # Root down: the ranges become exact projections of the supporting set.
    for child in range(1, count):
        up = parent[child]
        lowest[child] = max(lowest[child], lowest[up] + step_low[child])
        highest[child] = min(highest[child], highest[up] + step_high[child])
    for n in range(count):
        if lowest[n] > highest[n]:
            raise NotOptimalError(
                f"no price supports the result at node {network.node_ids[n]!r} "
                f"(needs at least {lowest[n]} and at most {highest[n]} p/kWh)"
            )

    prices = [_midpoint(lowest[0], highest[0], fallback=Decimal(0))]
    for child in range(1, count):
        above = prices[parent[child]]
        low = max(below_only[0][child], above + step_low[child])
        high = min(below_only[1][child], above + step_high[child])
        prices.append(_midpoint(low, high, fallback=above))
    return PriceSupport(tuple(lowest), tuple(highest), tuple(prices))


def _order_bounds(
    levels: PriceLevels, accepted_wh: npt.NDArray[np.int64], count: int
) -> tuple[list[Decimal], list[Decimal]]:
    """Each node's price bounds from its own price levels, exactly."""
    full = accepted_wh == levels.quantity_wh
    none = accepted_wh == 0
    partial = ~full & ~none
    floor_mask = (levels.is_buy & none) | (~levels.is_buy & full) | partial
    ceiling_mask = (levels.is_buy & full) | (~levels.is_buy & none) | partial
    bottom = np.iinfo(np.int64).min
    top = np.iinfo(np.int64).max
    floor = np.full(count, bottom, np.int64)
    ceiling = np.full(count, top, np.int64)
    np.maximum.at(floor, levels.node[floor_mask], levels.price_ticks[floor_mask])
    np.minimum.at(ceiling, levels.node[ceiling_mask], levels.price_ticks[ceiling_mask])
    lowest = [-INFINITY if t == bottom else Decimal(t) / TICKS_PER_P for t in floor.tolist()]
    highest = [INFINITY if t == top else Decimal(t) / TICKS_PER_P for t in ceiling.tolist()]
    return lowest, highest


def _edge_steps(
    network: Network, flow_in_wh: npt.NDArray[np.int64], flow_out_wh: npt.NDArray[np.int64]
) -> tuple[list[Decimal], list[Decimal]]:
    """Bounds on (child price - parent price) that each edge's flows allow.

    Energy flows in below capacity only if the step is exactly the fee, not at all only if
    the step is at most the fee, at capacity only if it is at least the fee; outward the
    same with the step's sign turned round. A zero-capacity direction says nothing.
    """
    step_low = [-INFINITY] * len(network.node_ids)
    step_high = [INFINITY] * len(network.node_ids)
    edges = zip(
        network.fees_p_per_kwh,
        flow_in_wh.tolist(),
        flow_out_wh.tolist(),
        network.import_capacity_wh.tolist(),
        network.export_capacity_wh.tolist(),
    )
    for n, (fee, inflow, outflow, import_cap, export_cap) in enumerate(edges):
        if n == 0:
            continue
        if import_cap > 0:
            if inflow < import_cap:
                step_high[n] = min(step_high[n], fee)
            if inflow > 0:
                step_low[n] = max(step_low[n], fee)
        if export_cap > 0:
            if outflow < export_cap:
                step_low[n] = max(step_low[n], -fee)
            if outflow > 0:
                step_high[n] = min(step_high[n], -fee)
    return step_low, step_high


def _midpoint(low: Decimal, high: Decimal, *, fallback: Decimal) -> Decimal:
    if low.is_finite() and high.is_finite():
        return (low + high) / 2
    if low.is_finite():
        return low
    if high.is_finite():
        return high
    return fallback
