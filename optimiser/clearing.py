"""Clear one interval's order book: validate, aggregate, solve, certify, price, allocate.

:func:`clear_market` is the engine's one entry point. Its default strategy,
``"generate"``, is column generation over price levels: a city-wide book has hundreds
of thousands of levels but only a few thousand balance rows, and at the optimum nearly
every level is either filled completely or not at all. So the model starts with only
the levels priced near where the market is likely to clear; the others are held at the
state a trader would choose at that price (in the money: filled; out of it: not) and
enter the balances as constants. After each solve the balance duals price every held
level; any held at the wrong state joins the model, and the model is solved again. When
none is wrong, the result is optimal for the whole book, and :mod:`optimiser.prices`
proves it in exact arithmetic before anything is returned. Should that proof ever fail
the engine solves the whole book as one model (strategy ``"full"``), which is also
available directly.

May import only the standard library, NumPy and :mod:`optimiser` (and through it Pyomo
and highspy).
"""

from __future__ import annotations

import gc
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

import numpy as np
import numpy.typing as npt

from optimiser.book import TICKS_PER_P, WH_PER_KWH, ClearingInputError, Network, OrderBook, Tariff
from optimiser.levels import PriceLevels, aggregate_price_levels, split_by_time_priority
from optimiser.model import ClearingLP, build_clearing_model
from optimiser.prices import NotOptimalError, PriceSupport, support_prices
from optimiser.solve import AT_LOWER, AT_UPPER, Basis, SolverError, solve_clearing_model

Strategy = Literal["generate", "full"]

#: A held level is priced wrong only if it is further than this from its node's dual
#: (p/kWh): well above HiGHS's dual tolerance, far below the 0.01 p tick.
_PRICING_TOLERANCE = 1e-6


@dataclass(frozen=True)
class ClearingOptions:
    """How to clear. The defaults suit every book; the others are for tests and benchmarks.

    Attributes
    ----------
    strategy:
        ``"generate"`` (column generation, the default) or ``"full"`` (one variable per
        price level from the start).
    window_p_per_kwh:
        Half-width of the first model's price window around the expected price, widened at
        each node by the fees on its path to the root.
    max_rounds:
        Column-generation rounds before the engine falls back to the full model.
    time_limit_s:
        HiGHS's time limit for each solve; ``None`` for none.
    """

    strategy: Strategy = "generate"
    window_p_per_kwh: Decimal = Decimal("0.1")
    max_rounds: int = 25
    time_limit_s: float | None = None


@dataclass(frozen=True)
class ClearingStats:
    """How the clearing went: model sizes, rounds and seconds per stage."""

    strategy: str
    orders: int
    price_levels: int
    variables: int
    constraints: int
    rounds: int
    simplex_iterations: int
    seconds: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ClearingResult:
    """The cleared interval, exact.

    ``accepted_wh`` is aligned with ``order_ids`` (the book's row order); node arrays
    follow ``node_ids`` (the network's canonical order, root first).
    """

    status: str
    order_ids: tuple[str, ...]
    accepted_wh: npt.NDArray[np.int64]
    node_ids: tuple[str, ...]
    node_prices_p_per_kwh: dict[str, Decimal]
    price_ranges_p_per_kwh: dict[str, tuple[Decimal, Decimal]]
    solver_prices_p_per_kwh: dict[str, float]
    flows_wh: dict[str, int]
    grid_import_wh: int
    grid_export_wh: int
    welfare_p: Decimal
    stats: ClearingStats

    def fills(self) -> Iterator[tuple[str, Decimal]]:
        """Each order's id and accepted kWh, in the book's row order."""
        for order_id, wh in zip(self.order_ids, self.accepted_wh.tolist()):
            yield order_id, Decimal(wh).scaleb(-3)

    @property
    def grid_import_kwh(self) -> Decimal:
        return Decimal(self.grid_import_wh).scaleb(-3)

    @property
    def grid_export_kwh(self) -> Decimal:
        return Decimal(self.grid_export_wh).scaleb(-3)


@dataclass
class _Solved:
    """One column-generation state mapped back to the whole set of levels."""

    accepted_wh: npt.NDArray[np.int64]
    flow_in_wh: npt.NDArray[np.int64]
    flow_out_wh: npt.NDArray[np.int64]
    grid_import_wh: int
    grid_export_wh: int
    slack_wh: npt.NDArray[np.int64]
    duals: npt.NDArray[np.float64]


def clear_market(
    book: OrderBook,
    network: Network,
    tariff: Tariff,
    options: ClearingOptions | None = None,
) -> ClearingResult:
    """Clear an interval's book by maximising welfare over the network tree.

    Parameters
    ----------
    book:
        The interval's validated orders.
    network:
        The tree the orders sit on; the backstop is at its root.
    tariff:
        The backstop's import and export prices.
    options:
        Strategy and limits; the defaults suit every book.

    Raises
    ------
    ClearingInputError
        If an order names a node the network does not have.
    SolverError
        If HiGHS fails, or no answer can be proved optimal.
    """
    options = options or ClearingOptions()
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    index = defaultdict(lambda: -1, network.index_of())
    order_node = np.fromiter(map(index.__getitem__, book.nodes), np.int64, len(book))
    unknown = np.flatnonzero(order_node < 0)
    if unknown.size:
        first = int(unknown[0])
        raise ClearingInputError(
            f"order {book.order_ids[first]!r}",
            "node",
            f"{book.nodes[first]!r} is not a node of the network",
            index=first,
        )
    levels = aggregate_price_levels(book, order_node)
    seconds["aggregate"] = time.perf_counter() - started

    gc_was_enabled = gc.isenabled()
    gc.disable()  # the model is millions of small objects that live until the solve is done
    try:
        engine = _ColumnGeneration(network, tariff, levels, options, seconds)
        strategy = options.strategy
        try:
            solved, support = engine.run(strategy)
        except NotOptimalError:
            if strategy == "full":
                raise SolverError("HiGHS's answer could not be proved optimal") from None
            strategy = "full"
            solved, support = engine.run(strategy)
    except NotOptimalError:
        raise SolverError("HiGHS's answer could not be proved optimal") from None
    finally:
        if gc_was_enabled:
            gc.enable()

    tic = time.perf_counter()
    accepted = split_by_time_priority(book, levels, solved.accepted_wh)
    welfare = _welfare_p(network, tariff, levels, solved)
    ids = network.node_ids
    result = ClearingResult(
        status="optimal",
        order_ids=book.order_ids,
        accepted_wh=accepted,
        node_ids=ids,
        node_prices_p_per_kwh=dict(zip(ids, support.prices)),
        price_ranges_p_per_kwh={n: (lo, hi) for n, lo, hi in zip(ids, support.lowest, support.highest)},
        solver_prices_p_per_kwh=dict(zip(ids, solved.duals.tolist())),
        flows_wh={ids[n]: int(solved.flow_in_wh[n] - solved.flow_out_wh[n]) for n in range(1, len(ids))},
        grid_import_wh=solved.grid_import_wh,
        grid_export_wh=solved.grid_export_wh,
        welfare_p=welfare,
        stats=ClearingStats(
            strategy=strategy,
            orders=len(book),
            price_levels=len(levels),
            variables=engine.variables,
            constraints=engine.constraints,
            rounds=engine.rounds,
            simplex_iterations=engine.iterations,
            seconds=seconds,
        ),
    )
    seconds["allocate"] = time.perf_counter() - tic
    seconds["total"] = time.perf_counter() - started
    return result


class _ColumnGeneration:
    """The solve loop; see the module docstring."""

    def __init__(
        self,
        network: Network,
        tariff: Tariff,
        levels: PriceLevels,
        options: ClearingOptions,
        seconds: dict[str, float],
    ) -> None:
        self.network = network
        self.tariff = tariff
        self.levels = levels
        self.options = options
        self.seconds = seconds
        self.level_price = levels.price_ticks / TICKS_PER_P
        self.fees = np.array([float(f) for f in network.fees_p_per_kwh])
        self.variables = 0
        self.constraints = 0
        self.rounds = 0
        self.iterations = 0
        self.previous: tuple[npt.NDArray[np.bool_], Basis] | None = None

    def run(self, strategy: Strategy) -> tuple[_Solved, PriceSupport]:
        levels = self.levels
        self.previous = None
        if strategy == "full":
            open_ = np.ones(len(levels), bool)
            held_full = np.zeros(len(levels), bool)
        else:
            guess = self._expected_prices()
            open_ = self._window(guess)
            held_full = self._in_the_money(guess)
        while True:
            self.rounds += 1
            solved = self._solve(open_, held_full, with_slack=strategy != "full")
            if strategy == "full":
                break
            wrong = self._priced_wrong(open_, held_full, solved)
            if not wrong.any() and not solved.slack_wh.any():
                break
            if self.rounds >= self.options.max_rounds:
                raise NotOptimalError("column generation did not settle")
            stressed = np.zeros(len(self.network.node_ids), bool)
            stressed[levels.node[wrong]] = True
            stressed |= solved.slack_wh > 0
            open_ |= wrong | (self._window(solved.duals) & stressed[levels.node])
        tic = time.perf_counter()
        _net_opposite_flows(solved)
        _check_balance(self.network, levels, solved)
        support = self._support(solved)
        if _match_at_the_money(levels, solved, support):
            support = self._support(solved)
        self.seconds["certify"] = self.seconds.get("certify", 0.0) + time.perf_counter() - tic
        return solved, support

    def _support(self, solved: _Solved) -> PriceSupport:
        return support_prices(
            network=self.network,
            tariff=self.tariff,
            levels=self.levels,
            accepted_wh=solved.accepted_wh,
            flow_in_wh=solved.flow_in_wh,
            flow_out_wh=solved.flow_out_wh,
            grid_import_wh=solved.grid_import_wh,
            grid_export_wh=solved.grid_export_wh,
        )

    def _solve(
        self, open_: npt.NDArray[np.bool_], held_full: npt.NDArray[np.bool_], *, with_slack: bool
    ) -> _Solved:
        levels, network = self.levels, self.network
        count = len(network.node_ids)
        held = ~open_ & held_full
        signed = np.where(levels.is_buy, levels.quantity_wh, -levels.quantity_wh)
        fixed_demand = np.bincount(levels.node[held], weights=signed[held], minlength=count)
        lp = ClearingLP(
            parent=network.parent_index,
            import_capacity_wh=network.import_capacity_wh,
            export_capacity_wh=network.export_capacity_wh,
            fee_p_per_kwh=self.fees,
            import_tariff_p_per_kwh=float(self.tariff.import_p_per_kwh),
            export_tariff_p_per_kwh=float(self.tariff.export_p_per_kwh),
            level_node=levels.node[open_],
            level_is_buy=levels.is_buy[open_],
            level_price_p_per_kwh=self.level_price[open_],
            level_quantity_wh=levels.quantity_wh[open_],
            fixed_demand_wh=np.rint(fixed_demand).astype(np.int64),
            penalty_p_per_kwh=self._penalty() if with_slack else None,
        )
        tic = time.perf_counter()
        model = build_clearing_model(lp)
        self._add_seconds("build", time.perf_counter() - tic)
        answer = solve_clearing_model(
            model, time_limit_s=self.options.time_limit_s, warm_start=self._warm_start(open_, held_full)
        )
        self.previous = (open_.copy(), answer.basis)
        self._add_seconds("compile", answer.compile_s)
        self._add_seconds("solve", answer.solve_s)
        self.variables = len(answer.values)
        self.constraints = count
        self.iterations += answer.iterations

        values = np.rint(answer.values).astype(np.int64)
        opened = int(open_.sum())
        edges = count - 1
        accepted = np.where(held, levels.quantity_wh, 0)
        accepted[open_] = values[:opened]
        at = opened
        flow_in = np.zeros(count, np.int64)
        flow_out = np.zeros(count, np.int64)
        flow_in[1:] = values[at : at + edges]
        flow_out[1:] = values[at + edges : at + 2 * edges]
        at += 2 * edges
        slack = np.zeros(count, np.int64)
        if with_slack:
            slack = values[at + 2 : at + 2 + count] + values[at + 2 + count : at + 2 + 2 * count]
        return _Solved(
            accepted_wh=accepted,
            flow_in_wh=flow_in,
            flow_out_wh=flow_out,
            grid_import_wh=int(values[at]),
            grid_export_wh=int(values[at + 1]),
            slack_wh=slack,
            duals=answer.node_prices_p_per_kwh,
        )

    def _warm_start(self, open_: npt.NDArray[np.bool_], held_full: npt.NDArray[np.bool_]) -> Basis | None:
        """The last round's basis for this round's columns.

        A level that joins the model enters at the bound it was held at, so the last
        round's answer is still a basic feasible solution and the solve resumes from it.
        """
        if self.previous is None:
            return None
        was_open, basis = self.previous
        opened = int(was_open.sum())
        status = np.where(held_full, AT_UPPER, AT_LOWER).astype(np.int8)
        status[was_open] = basis.columns[:opened]
        return Basis(np.concatenate([status[open_], basis.columns[opened:]]), basis.rows)

    def _add_seconds(self, stage: str, value: float) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + value

    def _penalty(self) -> float:
        """A slack price no order, tariff or path of fees can come near."""
        prices = np.abs(self.level_price).max() if len(self.level_price) else 0.0
        tariffs = abs(float(self.tariff.import_p_per_kwh)) + abs(float(self.tariff.export_p_per_kwh))
        return 2.0 * (float(prices) + tariffs + float(self.fees.sum())) + 100.0

    def _expected_prices(self) -> npt.NDArray[np.float64]:
        """Where the whole book would clear on one copper plate, at every node.

        The crossing of all buys against all sells, clamped to the tariffs; a start for
        the column generation, not part of the answer.
        """
        levels = self.levels
        count = len(self.network.node_ids)
        low = float(self.tariff.export_p_per_kwh)
        high = float(self.tariff.import_p_per_kwh)
        if not len(levels):
            return np.full(count, (low + high) / 2)
        buy_order = np.argsort(levels.price_ticks[levels.is_buy], kind="stable")
        buys = levels.price_ticks[levels.is_buy][buy_order]
        buy_cum = np.concatenate(([0], np.cumsum(levels.quantity_wh[levels.is_buy][buy_order])))
        sell_order = np.argsort(levels.price_ticks[~levels.is_buy], kind="stable")
        sells = levels.price_ticks[~levels.is_buy][sell_order]
        sell_cum = np.concatenate(([0], np.cumsum(levels.quantity_wh[~levels.is_buy][sell_order])))
        candidates = np.unique(levels.price_ticks)
        # Buys bidding at least the candidate price, against sells asking at most it.
        demand = buy_cum[-1] - buy_cum[np.searchsorted(buys, candidates, side="left")]
        supply = sell_cum[np.searchsorted(sells, candidates, side="right")]
        crossed = np.flatnonzero(demand <= supply)
        price = candidates[crossed[0]] / TICKS_PER_P if crossed.size else candidates[-1] / TICKS_PER_P
        return np.full(count, min(max(float(price), low), high))

    def _path_fees(self) -> npt.NDArray[np.float64]:
        parent = self.network.parent_index
        path = np.zeros(len(parent))
        for n in range(1, len(parent)):  # parents come before children
            path[n] = path[parent[n]] + self.fees[n]
        return path

    def _window(self, prices: npt.NDArray[np.float64]) -> npt.NDArray[np.bool_]:
        """Levels priced within the window of their node's price (widened by path fees)."""
        width = float(self.options.window_p_per_kwh) + self._path_fees()
        node = self.levels.node
        return np.abs(self.level_price - prices[node]) <= width[node]

    def _in_the_money(self, prices: npt.NDArray[np.float64]) -> npt.NDArray[np.bool_]:
        node_price = prices[self.levels.node]
        return np.where(self.levels.is_buy, self.level_price > node_price, self.level_price < node_price)

    def _priced_wrong(
        self, open_: npt.NDArray[np.bool_], held_full: npt.NDArray[np.bool_], solved: _Solved
    ) -> npt.NDArray[np.bool_]:
        """Held levels whose held state no trader would choose at the node's dual price."""
        price = solved.duals[self.levels.node]
        above = self.level_price > price + _PRICING_TOLERANCE
        below = self.level_price < price - _PRICING_TOLERANCE
        is_buy = self.levels.is_buy
        should_fill = np.where(is_buy, above, below)
        should_not = np.where(is_buy, below, above)
        return ~open_ & ((held_full & should_not) | (~held_full & should_fill))


def _net_opposite_flows(solved: _Solved) -> None:
    """Cancel energy sent both ways over one edge (possible only where it is free)."""
    both = np.minimum(solved.flow_in_wh, solved.flow_out_wh)
    solved.flow_in_wh -= both
    solved.flow_out_wh -= both
    both_grid = min(solved.grid_import_wh, solved.grid_export_wh)
    solved.grid_import_wh -= both_grid
    solved.grid_export_wh -= both_grid


def _check_balance(network: Network, levels: PriceLevels, solved: _Solved) -> None:
    """Exact integer check that the rounded answer is feasible for the whole book."""
    count = len(network.node_ids)
    if solved.slack_wh.any():
        raise NotOptimalError("the answer still needs slack energy")
    if (solved.accepted_wh < 0).any() or (solved.accepted_wh > levels.quantity_wh).any():
        raise NotOptimalError("an accepted quantity is outside its order's bounds")
    if (solved.flow_in_wh > network.import_capacity_wh).any() or (
        solved.flow_out_wh > network.export_capacity_wh
    ).any():
        raise NotOptimalError("a flow exceeds its edge's capacity")
    signed = np.where(levels.is_buy, -solved.accepted_wh, solved.accepted_wh)
    surplus = np.bincount(levels.node, weights=signed, minlength=count).astype(np.int64)
    surplus += solved.flow_in_wh - solved.flow_out_wh
    parent = network.parent_index[1:]
    np.add.at(surplus, parent, solved.flow_out_wh[1:] - solved.flow_in_wh[1:])
    surplus[0] += solved.grid_import_wh - solved.grid_export_wh
    if surplus.any():
        node = network.node_ids[int(np.flatnonzero(surplus)[0])]
        raise NotOptimalError(f"energy does not balance at node {node!r}")


def _match_at_the_money(levels: PriceLevels, solved: _Solved, support: PriceSupport) -> bool:
    """Trade as much as possible between a node's buy and sell levels at its own price.

    Such trades are welfare-neutral, so the LP may take or leave them; the engine takes
    them (local trade first). At-the-money volume that could instead go to the backstop or
    over an edge is left as the solve found it: that split depends on the solve path.
    """
    # Each node's price in ticks, or a value no level has where the price is between ticks.
    between = np.iinfo(np.int64).min
    exact = np.array(
        [int(p * TICKS_PER_P) if (p * TICKS_PER_P) % 1 == 0 else between for p in support.prices], np.int64
    )
    at_money = levels.price_ticks == exact[levels.node]
    changed = False
    for node in np.unique(levels.node[at_money]).tolist():
        at_node = np.flatnonzero(at_money & (levels.node == node))
        buys = at_node[levels.is_buy[at_node]]
        sells = at_node[~levels.is_buy[at_node]]
        if not (len(buys) and len(sells)):
            continue
        buy, sell = int(buys[0]), int(sells[0])
        more = min(
            levels.quantity_wh[buy] - solved.accepted_wh[buy],
            levels.quantity_wh[sell] - solved.accepted_wh[sell],
        )
        if more > 0:
            solved.accepted_wh[buy] += more
            solved.accepted_wh[sell] += more
            changed = True
    return changed


def _welfare_p(network: Network, tariff: Tariff, levels: PriceLevels, solved: _Solved) -> Decimal:
    """The cleared result's welfare in pence, exactly."""
    signed = np.where(levels.is_buy, levels.price_ticks, -levels.price_ticks)
    # Python integers: price ticks times Wh can pass int64 on a large book.
    products = sum(p * q for p, q in zip(signed.tolist(), solved.accepted_wh.tolist()) if q)
    trades = Decimal(products) / (TICKS_PER_P * WH_PER_KWH)
    fees = (
        sum(
            (
                fee * (inflow + outflow)
                for fee, inflow, outflow in zip(
                    network.fees_p_per_kwh, solved.flow_in_wh.tolist(), solved.flow_out_wh.tolist()
                )
            ),
            Decimal(0),
        )
        / WH_PER_KWH
    )
    backstop = (
        tariff.export_p_per_kwh * solved.grid_export_wh - tariff.import_p_per_kwh * solved.grid_import_wh
    ) / WH_PER_KWH
    return trades - fees + backstop
