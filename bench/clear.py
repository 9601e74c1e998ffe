"""Benchmark of ``smartbrum clear``: generated city-wide order books, cleared in fresh processes.

What it measures
----------------
For each generated book the benchmark runs, in a fresh process each time:

- the real command, ``smartbrum clear ORDERS.csv --network NETWORK.toml > out.json``: its wall
  time (interpreter start-up and imports included) and its peak resident memory (``ru_maxrss``
  from ``os.wait4``); the engine's stage timings are read from the JSON's ``audit.seconds``;
- ``python bench/clear.py --run-case engine``: the same code path in process,
  :func:`cli.clearing_files.clear_files`, timed around the call (CSV read, clearing, JSON
  rendering), then timed again in the same process ("warm": modules and Pyomo's deferred
  imports already loaded, as in a long-running service);
- a reference, on the same book:

  * tree books: a direct vectorised HiGHS model without Pyomo and without price levels (one
    column per order, flow in and out columns per edge, the backstop at the root, one balance
    row per node; CSC matrix built with NumPy and handed to ``highspy.Highs.passModel``; dual
    simplex, presolve off, one thread, as the engine runs HiGHS). Its welfare must equal the
    engine's to 1e-6 relative: a correctness cross-check that fails the benchmark loudly;
  * the single-node book: a merit-order clearing with NumPy (sort buys by price descending and
    sells ascending, time priority within a price, the backstop as an unlimited buyer at the
    export tariff and seller at the import tariff, cut where the curves cross). Its time is the
    clearing only, from arrays already in memory: the floor for any clearing method. Its
    welfare and price must equal the engine's.

Each figure is the median of ``--repeats`` runs. The three targets are checked at the end:
420k orders on 3,000 feeders end to end under 5 s in under 1.5 GB; the engine's model work
(build, compile, solve, certify) within 3x of the direct HiGHS model's build and solve; and
the engine's single-node clearing within 10x of the merit order.

The generated books
-------------------
Seeded (``--seed``) and reproducible; each book depends only on the seed, its size and its
kind. The tree is the grid supply point ``GSP``, 60 primaries ``PRI-01`` ... ``PRI-60`` and
``min(3000, max(60, orders // 30))`` feeders (rounded down to a multiple of 60: 60 for 1k
orders, 300 for 10k, 3,000 for 100k and 420k), spread evenly over the primaries in contiguous
blocks. Every order sits at a feeder, which is drawn uniformly.

- Orders: one per household. Quantities log-uniform from 0.1 to 5 kWh at 1 Wh. Limit prices
  uniform on the 0.01 p tick: buys 4.10 to 26.00 p/kWh (the export tariff to a little above
  the import tariff), sells 1.00 to 20.00 p/kWh. ``submitted_at`` uniform over the half hour
  before gate closure (2026-06-21 12:00Z) to the millisecond, written as ISO 8601 with ``Z``.
- Feeders: about 5% are sunny streets (a quarter of their orders buy) with an export capacity
  of 10% of their sell volume, about 5% evening streets (three quarters buy) with an import
  capacity of 10% of their buy volume; so roughly a tenth of the feeders is congested, each in
  one direction. Every other capacity is at least the volume that could ever cross the edge.
  Fees 0.20 to 0.50 p/kWh on every primary and feeder. Tariff 24.5 p/kWh import, 4.1 export.
- The single-node book: orders drawn the same way, half of them buys, all at ``GSP``, cleared
  without a network file.

Books are written to a temporary directory (or ``--keep-files DIR``); generating them is not
timed.

Usage
-----
::

    .venv/bin/python bench/clear.py                      # everything, 3 repeats (make bench)
    .venv/bin/python bench/clear.py --quick              # 1k and 10k books only (seconds)
    .venv/bin/python bench/clear.py --sizes 100k --single 0 --repeats 5

Exit status 1 if a cross-check finds a different welfare or price, or a run fails.
"""

# ruff: noqa: E402 (the project's imports must come after the sys.path fix below)

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from rich.console import Console
from rich.table import Table

_BENCH = Path(__file__).resolve().parent  # run by path, bench/ heads sys.path: see bench/harness.py
sys.path[:] = [str(_BENCH.parent), *(entry for entry in sys.path if Path(entry or ".").resolve() != _BENCH)]

from bench import harness

ROOT = "GSP"
PRIMARIES = 60
MAX_FEEDERS = 3000
ORDERS_PER_FEEDER = 30
IMPORT_TICKS = 2450  # 24.5 p/kWh, in 0.01 p ticks
EXPORT_TICKS = 410  # 4.1 p/kWh
BUY_TICKS = (410, 2600)
SELL_TICKS = (100, 2000)
QUANTITY_WH = (100, 5000)
FEE_TICKS = (20, 50)
SUNNY_SHARE = 0.05  # feeders that export and are congested on the way up
EVENING_SHARE = 0.05  # feeders that import and are congested on the way down
TIGHT_FRACTION = 0.10  # a congested feeder's capacity: this share of its one-sided volume
HALF_HOUR_MS = 30 * 60 * 1000
DEFAULT_SIZES = (1_000, 10_000, 100_000, 420_000)
QUICK_SIZES = (1_000, 10_000)
LARGE = 420_000
TARGET_E2E_S = 5.0
TARGET_PEAK_MB = 1500.0
TARGET_MODEL_RATIO = 3.0
TARGET_FLOOR_RATIO = 10.0
WELFARE_RTOL = 1e-6
log = harness.progress_logger()


# --------------------------------------------------------------------------------------------
# Generating books
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One benchmark case: a book size and whether it sits on the tree or at one node."""

    orders: int
    tree: bool

    @property
    def name(self) -> str:
        return f"{'tree' if self.tree else 'single'} {_size_label(self.orders)}"

    @property
    def feeders(self) -> int:
        return feeder_count(self.orders) if self.tree else 0


@dataclass(frozen=True)
class BookFiles:
    """A generated book on disk and the feeder capacities needed to count congestion."""

    orders_csv: Path
    network_toml: Path | None
    feeder_ids: tuple[str, ...] = ()
    feeder_import_wh: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    feeder_export_wh: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))


def feeder_count(orders: int) -> int:
    """Feeders for a tree book: about 30 orders each, a multiple of 60, between 60 and 3,000."""
    return min(MAX_FEEDERS, max(PRIMARIES, orders // ORDERS_PER_FEEDER // PRIMARIES * PRIMARIES))


def generate_book(case: Case, seed: int, directory: Path) -> BookFiles:
    """Write the case's order book CSV (and network TOML for a tree book) to ``directory``.

    Parameters
    ----------
    case:
        Size and kind of the book.
    seed:
        The benchmark's seed; the book depends only on it, the size and the kind.
    directory:
        Where to write ``<name>.csv`` and ``<name>.toml``.

    Returns
    -------
    BookFiles
        The paths, and each feeder's capacities for counting congested feeders afterwards.
    """
    rng = np.random.default_rng([seed, case.orders, int(case.tree)])
    n = case.orders
    stem = directory / case.name.replace(" ", "-")
    log_wh = rng.uniform(math.log(QUANTITY_WH[0]), math.log(QUANTITY_WH[1]), size=n)
    quantity_wh = np.clip(np.rint(np.exp(log_wh)), *QUANTITY_WH).astype(np.int64)
    buy_ticks = rng.integers(BUY_TICKS[0], BUY_TICKS[1] + 1, size=n)
    sell_ticks = rng.integers(SELL_TICKS[0], SELL_TICKS[1] + 1, size=n)
    offset_ms = rng.integers(0, HALF_HOUR_MS, size=n)  # after 11:30:00Z, before 12:00:00Z
    draw = rng.random(n)

    if not case.tree:
        is_buy = draw < 0.5
        nodes = [ROOT] * n
        files = BookFiles(orders_csv=stem.with_suffix(".csv"), network_toml=None)
    else:
        feeders = case.feeders
        kind = rng.random(feeders)
        sunny = kind < SUNNY_SHARE
        evening = (kind >= SUNNY_SHARE) & (kind < SUNNY_SHARE + EVENING_SHARE)
        buy_share = np.where(sunny, 0.25, np.where(evening, 0.75, 0.5))
        feeder = rng.integers(0, feeders, size=n)
        is_buy = draw < buy_share[feeder]
        feeder_ids = tuple(f"FDR-{f + 1:04d}" for f in range(feeders))
        nodes = [feeder_ids[f] for f in feeder.tolist()]
        files = _write_network(case, rng, stem, feeder, is_buy, quantity_wh, sunny, evening, feeder_ids)

    price_ticks = np.where(is_buy, buy_ticks, sell_ticks)
    lines = ["order_id,participant_id,node,side,quantity_kwh,price_p_per_kwh,submitted_at"]
    rows = zip(nodes, is_buy.tolist(), quantity_wh.tolist(), price_ticks.tolist(), offset_ms.tolist())
    for i, (node, buy, wh, ticks, ms) in enumerate(rows, start=1):
        at = f"2026-06-21T11:{30 + ms // 60_000:02d}:{ms // 1000 % 60:02d}.{ms % 1000:03d}Z"
        side = "buy" if buy else "sell"
        lines.append(f"O-{i:07d},HH-{i:07d},{node},{side},{wh / 1000:.3f},{ticks / 100:.2f},{at}")
    files.orders_csv.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return files


def _write_network(
    case: Case,
    rng: np.random.Generator,
    stem: Path,
    feeder: npt.NDArray[np.int64],
    is_buy: npt.NDArray[np.bool_],
    quantity_wh: npt.NDArray[np.int64],
    sunny: npt.NDArray[np.bool_],
    evening: npt.NDArray[np.bool_],
    feeder_ids: tuple[str, ...],
) -> BookFiles:
    """Capacities and fees for the tree (see the module docstring) and the network TOML."""
    feeders = case.feeders
    buy_wh = np.bincount(feeder, weights=np.where(is_buy, quantity_wh, 0), minlength=feeders)
    sell_wh = np.bincount(feeder, weights=np.where(is_buy, 0, quantity_wh), minlength=feeders)
    # Energy into a feeder never exceeds its buys, out of it never its sells: round those up
    # to 10 kWh for the capacities nothing binds, and cut the congested direction to 10%.
    roomy_import = (np.ceil(buy_wh / 10_000) + 1).astype(np.int64) * 10_000
    roomy_export = (np.ceil(sell_wh / 10_000) + 1).astype(np.int64) * 10_000
    tight_import = np.maximum(1_000, np.floor(TIGHT_FRACTION * buy_wh / 1000) * 1000).astype(np.int64)
    tight_export = np.maximum(1_000, np.floor(TIGHT_FRACTION * sell_wh / 1000) * 1000).astype(np.int64)
    import_wh = np.where(evening, tight_import, roomy_import)
    export_wh = np.where(sunny, tight_export, roomy_export)
    primary = np.arange(feeders) * PRIMARIES // feeders
    primary_import = np.bincount(primary, weights=roomy_import, minlength=PRIMARIES).astype(np.int64)
    primary_export = np.bincount(primary, weights=roomy_export, minlength=PRIMARIES).astype(np.int64)
    fees = rng.integers(FEE_TICKS[0], FEE_TICKS[1] + 1, size=PRIMARIES + feeders)

    parts = [
        f"# Generated by bench/clear.py: {case.orders} orders, {PRIMARIES} primaries, {feeders} feeders.",
        f'root = "{ROOT}"',
        "",
        "[tariff]",
        f"import_p_per_kwh = {IMPORT_TICKS / 100}",
        f"export_p_per_kwh = {EXPORT_TICKS / 100}",
    ]
    edges = [(f"PRI-{p + 1:02d}", ROOT, primary_import[p], primary_export[p]) for p in range(PRIMARIES)]
    edges += [
        (feeder_ids[f], f"PRI-{primary[f] + 1:02d}", import_wh[f], export_wh[f]) for f in range(feeders)
    ]
    for (node, parent, imports, exports), fee in zip(edges, fees.tolist()):
        parts += [
            "",
            "[[nodes]]",
            f'id = "{node}"',
            f'parent = "{parent}"',
            f"import_capacity_kwh = {imports / 1000:.3f}",
            f"export_capacity_kwh = {exports / 1000:.3f}",
            f"fee_p_per_kwh = {fee / 100:.2f}",
        ]
    network_toml = stem.with_suffix(".toml")
    network_toml.write_text("\n".join(parts) + "\n", encoding="utf-8")
    return BookFiles(
        orders_csv=stem.with_suffix(".csv"),
        network_toml=network_toml,
        feeder_ids=feeder_ids,
        feeder_import_wh=import_wh,
        feeder_export_wh=export_wh,
    )


def count_congested(files: BookFiles, document: dict[str, Any]) -> int:
    """Feeders whose net flow in the cleared result is at one of their capacities."""
    flows = document["flows"]
    congested = 0
    for node, imports, exports in zip(
        files.feeder_ids, files.feeder_import_wh.tolist(), files.feeder_export_wh.tolist()
    ):
        flow_wh = round(flows[node] * 1000)
        congested += (flow_wh > 0 and flow_wh == imports) or (flow_wh < 0 and -flow_wh == exports)
    return congested


# --------------------------------------------------------------------------------------------
# The references, run inside a child process
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MeritOrder:
    """A single-node clearing by sorting: accepted Wh per order, backstop, price and welfare."""

    accepted_wh: npt.NDArray[np.int64]
    grid_import_wh: int
    grid_export_wh: int
    price_p_per_kwh: Decimal
    welfare_p: Decimal


def merit_order_clear(
    is_buy: npt.NDArray[np.bool_],
    quantity_wh: npt.NDArray[np.int64],
    price_ticks: npt.NDArray[np.int64],
    submitted_at_us: npt.NDArray[np.int64],
    *,
    import_ticks: int = IMPORT_TICKS,
    export_ticks: int = EXPORT_TICKS,
) -> MeritOrder:
    """Clear a single-node book by the merit order, with the backstop at the tariffs.

    Buys are sorted by price descending and sells ascending, earlier orders first within a
    price. The backstop joins as one unlimited buy at the export tariff and one unlimited sell
    at the import tariff, so the two curves always cross. Every unit is traded for which the
    buy price is at least the sell price (units at equal prices trade: local trade first, as
    the engine does). The price is the midpoint of the prices that support the result, the
    engine's rule on a single node.

    Parameters
    ----------
    is_buy, quantity_wh, price_ticks, submitted_at_us:
        The book's columns in exact units (Wh, 0.01 p ticks, microseconds).
    import_ticks, export_ticks:
        The backstop tariffs in ticks.

    Returns
    -------
    MeritOrder
        Exact accepted energy per order (book row order), backstop energy, price and welfare.
    """
    unlimited = int(quantity_wh.sum()) + 1
    buy_rows = np.flatnonzero(is_buy)
    sell_rows = np.flatnonzero(~is_buy)
    # The backstop sorts behind every order at its price (time +inf); its row index is -1.
    late = np.iinfo(np.int64).max
    buy_rows = np.append(buy_rows, -1)
    buy_price = np.append(price_ticks[is_buy], export_ticks)
    buy_time = np.append(submitted_at_us[is_buy], late)
    buy_qty = np.append(quantity_wh[is_buy], unlimited)
    sell_rows = np.append(sell_rows, -1)
    sell_price = np.append(price_ticks[~is_buy], import_ticks)
    sell_time = np.append(submitted_at_us[~is_buy], late)
    sell_qty = np.append(quantity_wh[~is_buy], unlimited)

    buy_sort = np.lexsort((buy_time, -buy_price))
    sell_sort = np.lexsort((sell_time, sell_price))
    buy_rows, buy_price, buy_qty = buy_rows[buy_sort], buy_price[buy_sort], buy_qty[buy_sort]
    sell_rows, sell_price, sell_qty = sell_rows[sell_sort], sell_price[sell_sort], sell_qty[sell_sort]
    buy_end = np.cumsum(buy_qty)
    sell_end = np.cumsum(sell_qty)
    buy_start = buy_end - buy_qty
    sell_start = sell_end - sell_qty

    # A buy trades (at least in part) if its price is at least that of the sell unit that
    # would meet its first unit; the trading buys are a prefix of the curve, and so are the
    # sells. The quantity traded is where the shorter of the two prefixes ends.
    meets = sell_price[np.minimum(np.searchsorted(sell_end, buy_start, side="right"), len(sell_end) - 1)]
    buys_trading = int(np.count_nonzero(buy_price >= meets))
    meets = buy_price[np.minimum(np.searchsorted(buy_end, sell_start, side="right"), len(buy_end) - 1)]
    sells_trading = int(np.count_nonzero(sell_price <= meets))
    traded = 0
    if buys_trading and sells_trading:
        traded = int(min(buy_end[buys_trading - 1], sell_end[sells_trading - 1]))
    buy_accepted = np.clip(traded - buy_start, 0, buy_qty)
    sell_accepted = np.clip(traded - sell_start, 0, sell_qty)

    accepted = np.zeros(len(is_buy), np.int64)
    accepted[buy_rows[buy_rows >= 0]] = buy_accepted[buy_rows >= 0]
    accepted[sell_rows[sell_rows >= 0]] = sell_accepted[sell_rows >= 0]
    grid_export = int(buy_accepted[buy_rows < 0][0])
    grid_import = int(sell_accepted[sell_rows < 0][0])

    # Supporting prices: at least every unfilled buy and filled sell, at most every filled
    # buy and unfilled sell; a part-filled order (or backstop) fixes the price.
    floor = max(
        _max_or(buy_price[buy_accepted < buy_qty], export_ticks),
        _max_or(sell_price[sell_accepted > 0], export_ticks),
    )
    ceiling = min(
        _min_or(buy_price[buy_accepted > 0], import_ticks),
        _min_or(sell_price[sell_accepted < sell_qty], import_ticks),
    )
    value = int(np.dot(buy_price, buy_accepted)) - int(np.dot(sell_price, sell_accepted))
    return MeritOrder(
        accepted_wh=accepted,
        grid_import_wh=grid_import,
        grid_export_wh=grid_export,
        price_p_per_kwh=Decimal(floor + ceiling) / 200,
        welfare_p=Decimal(value) / 100_000,  # ticks x Wh: 0.01 p/kWh x 0.001 kWh
    )


def _max_or(values: npt.NDArray[np.int64], default: int) -> int:
    return int(values.max()) if len(values) else default


def _min_or(values: npt.NDArray[np.int64], default: int) -> int:
    return int(values.min()) if len(values) else default


@dataclass(frozen=True)
class DirectModel:
    """The direct HiGHS model's answer and timings."""

    columns: int
    rows: int
    welfare_p: float
    iterations: int
    build_s: float
    solve_s: float


def solve_direct_model(
    order_node: npt.NDArray[np.int64],
    is_buy: npt.NDArray[np.bool_],
    quantity_wh: npt.NDArray[np.int64],
    price_ticks: npt.NDArray[np.int64],
    parent: npt.NDArray[np.int64],
    import_capacity_wh: npt.NDArray[np.int64],
    export_capacity_wh: npt.NDArray[np.int64],
    fee_p_per_kwh: npt.NDArray[np.float64],
    *,
    import_p_per_kwh: float = IMPORT_TICKS / 100,
    export_p_per_kwh: float = EXPORT_TICKS / 100,
) -> DirectModel:
    """Build the clearing LP with one column per order in NumPy, and solve it with HiGHS.

    Columns: every order (bounded by its quantity), every edge's flow in and flow out (bounded
    by its capacities), the backstop's import and export at the root. Rows: one balance per
    node, supply minus demand equal to zero. Energy in Wh and prices in p/kWh, so the objective
    is in millipence. ``build_s`` covers the arrays and the ``HighsLp``; ``solve_s`` covers
    ``passModel``, the dual simplex run and reading the solution, as in the engine.

    Parameters
    ----------
    order_node:
        Each order's node as a position in the network's node order (root first).
    is_buy, quantity_wh, price_ticks:
        The book's columns in exact units.
    parent, import_capacity_wh, export_capacity_wh, fee_p_per_kwh:
        The tree: each node's parent position (-1 at the root, parents before children), the
        capacities of the edge from its parent and the fee on it.
    import_p_per_kwh, export_p_per_kwh:
        The backstop tariffs.
    """
    import highspy  # here, not at the top: each child loads only what its case measures

    from optimiser.solve import QuietHighs

    started = time.perf_counter()
    orders = len(is_buy)
    nodes = len(parent)
    child = np.arange(1, nodes, dtype=np.int64)
    up = parent[1:]
    edges = nodes - 1
    fees = fee_p_per_kwh[1:]
    cost = np.concatenate(
        [
            np.where(is_buy, price_ticks, -price_ticks) / 100.0,
            -fees,
            -fees,
            [-import_p_per_kwh, export_p_per_kwh],
        ]
    )
    upper = np.concatenate(
        [quantity_wh, import_capacity_wh[1:], export_capacity_wh[1:], [highspy.kHighsInf] * 2]
    ).astype(np.float64)
    # One entry per order column, two per flow column (parent row first: parents come before
    # children, so row indices are ascending), one per backstop column.
    entries = np.concatenate([np.ones(orders, np.int64), np.full(2 * edges, 2), [1, 1]])
    start = np.concatenate([[0], np.cumsum(entries)])
    pairs = np.column_stack([up, child]).ravel()
    index = np.concatenate([order_node, pairs, pairs, [0, 0]])
    value = np.concatenate(
        [np.where(is_buy, -1.0, 1.0), np.tile([-1.0, 1.0], edges), np.tile([1.0, -1.0], edges), [1.0, -1.0]]
    )
    lp = highspy.HighsLp()
    lp.num_col_ = len(cost)
    lp.num_row_ = nodes
    lp.sense_ = highspy.ObjSense.kMaximize
    lp.col_cost_ = cost
    lp.col_lower_ = np.zeros(len(cost))
    lp.col_upper_ = upper
    lp.row_lower_ = np.zeros(nodes)
    lp.row_upper_ = np.zeros(nodes)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = start.astype(np.int32)
    lp.a_matrix_.index_ = index.astype(np.int32)
    lp.a_matrix_.value_ = value
    built = time.perf_counter()

    highs = QuietHighs()
    highs.setOptionValue("presolve", "off")
    highs.setOptionValue("solver", "simplex")
    highs.setOptionValue("threads", 1)
    highs.passModel(lp)
    highs.run()
    status = highs.getModelStatus()
    if status != highspy.HighsModelStatus.kOptimal:
        raise RuntimeError(f"HiGHS stopped with status {highs.modelStatusToString(status)}")
    highs.getSolution()
    info = highs.getInfo()
    solved = time.perf_counter()
    return DirectModel(
        columns=len(cost),
        rows=nodes,
        welfare_p=float(info.objective_function_value) / 1000,
        iterations=int(info.simplex_iteration_count),
        build_s=built - started,
        solve_s=solved - built,
    )


def run_case(kind: str, orders_csv: Path, network_toml: Path | None) -> dict[str, Any]:
    """The child process's work for one run; returns the figures it prints as JSON.

    ``engine`` times :func:`cli.clearing_files.clear_files` (CSV read, clearing, JSON text),
    first in the fresh process and then again in the same process (``warm_e2e_s``: modules
    and Pyomo's deferred imports loaded, as in a long-running service);
    ``merit`` and ``highs`` read the book with the same reader, untimed, then time only their
    clearing.
    """
    # Imported here so that each child loads only what its case measures.
    from cli.clearing_files import clear_files, read_network_toml, read_order_book_csv

    if kind == "engine":
        started = time.perf_counter()
        result, text = clear_files(orders_csv, network=network_toml)
        cold = time.perf_counter() - started
        del result, text
        started = time.perf_counter()
        clear_files(orders_csv, network=network_toml)
        warm = time.perf_counter() - started
        return {"e2e_s": cold, "warm_e2e_s": warm}
    book = read_order_book_csv(orders_csv)
    if kind == "merit":
        started = time.perf_counter()
        merit = merit_order_clear(book.is_buy, book.quantity_wh, book.price_ticks, book.submitted_at_us)
        elapsed = time.perf_counter() - started
        return {
            "clear_s": elapsed,
            "price_p_per_kwh": str(merit.price_p_per_kwh),
            "welfare_p": str(merit.welfare_p),
            "grid_import_wh": merit.grid_import_wh,
            "grid_export_wh": merit.grid_export_wh,
        }
    if kind == "highs":
        if network_toml is None:
            raise ValueError("the direct HiGHS model needs a network file")
        network = read_network_toml(network_toml).network
        index = network.index_of()
        order_node = np.fromiter((index[node] for node in book.nodes), np.int64, len(book))
        direct = solve_direct_model(
            order_node,
            book.is_buy,
            book.quantity_wh,
            book.price_ticks,
            network.parent_index,
            network.import_capacity_wh,
            network.export_capacity_wh,
            np.array([float(fee) for fee in network.fees_p_per_kwh]),
        )
        return {
            "build_s": direct.build_s,
            "solve_s": direct.solve_s,
            "columns": direct.columns,
            "rows": direct.rows,
            "iterations": direct.iterations,
            "welfare_p": direct.welfare_p,
        }
    raise ValueError(f"unknown case kind {kind!r}")


# --------------------------------------------------------------------------------------------
# Running children and collecting figures
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChildRun:
    """A finished child process: wall seconds, peak resident memory, what it wrote."""

    wall_s: float
    peak_mb: float
    stdout: str


class BenchmarkError(RuntimeError):
    """A child process failed; the message has its command and stderr."""


def run_child(command: Sequence[str], stdout_path: Path | None = None) -> ChildRun:
    """Run ``command`` in a fresh process and return its wall time and peak memory.

    Peak memory is the child's own ``ru_maxrss`` from ``os.wait4`` (kB on Linux), reported in
    MB of 10^6 bytes. With ``stdout_path`` the child's output goes to that file, as a shell's
    ``> out.json`` would send it.
    """
    with tempfile.TemporaryFile() as stderr, tempfile.TemporaryFile() as captured:
        out = stdout_path.open("wb") if stdout_path else captured
        try:
            started = time.perf_counter()
            process = subprocess.Popen(command, stdout=out, stderr=stderr)
            try:
                _, status, usage = os.wait4(process.pid, 0)
            except BaseException:
                process.kill()
                process.wait()
                raise
            wall = time.perf_counter() - started
            process.returncode = os.waitstatus_to_exitcode(status)
        finally:
            if stdout_path:
                out.close()
        if process.returncode != 0:
            stderr.seek(0)
            message = stderr.read().decode(errors="replace").strip()
            raise BenchmarkError(f"{' '.join(map(str, command))} exited {process.returncode}: {message}")
        captured.seek(0)
        text = captured.read().decode()
    return ChildRun(wall_s=wall, peak_mb=usage.ru_maxrss * 1024 / 1e6, stdout=text)


def _child_command(kind: str, files: BookFiles) -> list[str]:
    command = [sys.executable, str(Path(__file__).resolve()), "--run-case", kind, str(files.orders_csv)]
    if files.network_toml is not None:
        command += ["--network", str(files.network_toml)]
    return command


def _cli_command(files: BookFiles) -> list[str]:
    smartbrum = Path(sys.executable).with_name("smartbrum")
    executable = str(smartbrum) if smartbrum.exists() else shutil.which("smartbrum")
    if executable is None:
        raise BenchmarkError("the smartbrum command is not installed (pip install -e .)")
    command = [executable, "clear", str(files.orders_csv)]
    if files.network_toml is not None:
        command += ["--network", str(files.network_toml)]
    return command


@dataclass
class Repeated:
    """Figures taken once per repeat, by name; the report shows their medians."""

    samples: dict[str, list[float]] = field(default_factory=dict, kw_only=True)

    def add(self, name: str, value: float) -> None:
        self.samples.setdefault(name, []).append(value)

    def median(self, name: str) -> float:
        return statistics.median(self.samples[name])


@dataclass
class EngineFigures(Repeated):
    """One case's engine figures: model sizes from the first run, timings per repeat."""

    case: Case
    levels: int = 0
    variables: int = 0
    rounds: int = 0
    congested: int | None = None
    welfare_p: float = 0.0
    root_price: float = 0.0


@dataclass
class ReferenceFigures(Repeated):
    """One case's reference figures (direct HiGHS or merit order) per repeat."""

    case: Case
    kind: str
    columns: int = 0
    welfare_p: float = 0.0
    price_p_per_kwh: float | None = None


def measure_case(
    case: Case, files: BookFiles, repeats: int, work: Path
) -> tuple[EngineFigures, ReferenceFigures]:
    """Run the command, the in-process child and the reference ``repeats`` times each."""
    engine = EngineFigures(case)
    reference = ReferenceFigures(case, "highs" if case.tree else "merit")
    for repeat in range(repeats):
        out_json = work / "out.json"
        cli = run_child(_cli_command(files), stdout_path=out_json)
        document = json.loads(out_json.read_text(encoding="utf-8"))
        audit = document["audit"]
        seconds = audit["seconds"]
        if repeat == 0:
            engine.levels = audit["price_levels"]
            engine.variables = audit["variables"]
            engine.rounds = audit["rounds"]
            engine.welfare_p = document["welfare_p"]
            engine.root_price = document["node_prices"][ROOT]
            engine.congested = count_congested(files, document) if case.tree else None
        del document, audit
        out_json.unlink()
        engine.add("wall", cli.wall_s)
        engine.add("peak", cli.peak_mb)
        engine.add("read", seconds.get("read", 0.0))
        engine.add("build", seconds.get("build", 0.0) + seconds.get("compile", 0.0))
        engine.add("solve", seconds.get("solve", 0.0))
        engine.add("certify", seconds.get("certify", 0.0))
        engine.add("total", seconds["total"])
        engine.add("model", sum(seconds.get(s, 0.0) for s in ("build", "compile", "solve", "certify")))

        inproc = json.loads(run_child(_child_command("engine", files)).stdout)
        engine.add("e2e", inproc["e2e_s"])
        engine.add("warm", inproc["warm_e2e_s"])

        ref_run = run_child(_child_command(reference.kind, files))
        figures = json.loads(ref_run.stdout)
        reference.add("peak", ref_run.peak_mb)
        if reference.kind == "highs":
            reference.columns = figures["columns"]
            reference.welfare_p = figures["welfare_p"]
            reference.add("build", figures["build_s"])
            reference.add("solve", figures["solve_s"])
            reference.add("total", figures["build_s"] + figures["solve_s"])
        else:
            reference.columns = 0
            reference.welfare_p = float(Decimal(figures["welfare_p"]))
            reference.price_p_per_kwh = float(Decimal(figures["price_p_per_kwh"]))
            reference.add("total", figures["clear_s"])
    return engine, reference


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def _size_label(orders: int) -> str:
    return f"{orders // 1000}k" if orders % 1000 == 0 and orders >= 1000 else str(orders)


def _parse_size(text: str) -> int:
    text = text.strip().lower().replace("_", "")
    scale = 1000 if text.endswith("k") else 1
    try:
        value = int(text.removesuffix("k")) * scale
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size such as 10k or 420000") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must not be negative")
    return value


def _parse_sizes(text: str) -> tuple[int, ...]:
    sizes = tuple(_parse_size(part) for part in text.split(",") if part.strip())
    if any(size < 2 for size in sizes):
        raise argparse.ArgumentTypeError("every book needs at least 2 orders")
    return sizes


def _s(value: float) -> str:
    return f"{value:.3f}" if value < 100 else f"{value:.1f}"


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else math.inf


@dataclass
class Checks:
    """What :func:`report` concludes: the targets (reported, not failing the run) and any
    cross-check mismatch (which does)."""

    targets: harness.TargetChecks = field(default_factory=harness.TargetChecks)
    mismatches: list[str] = field(default_factory=list)


ENGINE_COLUMNS = (
    "case",
    "orders",
    "feeders",
    "congested",
    "price levels",
    "variables",
    "rounds",
    "read s",
    "build s",
    "solve s",
    "certify s",
    "engine s",
    "end-to-end s",
    "warm e2e s",
    "process wall s",
    "peak MB",
)
REFERENCE_COLUMNS = (
    "reference",
    "case",
    "columns",
    "build s",
    "solve s",
    "total s",
    "peak MB",
    "engine s (compared)",
    "engine / ref",
    "welfare p",
)


def _engine_row(e: EngineFigures) -> tuple[str, ...]:
    congested = "-"
    if e.congested is not None:
        congested = f"{e.congested} ({100 * e.congested / e.case.feeders:.0f}%)"
    return (
        e.case.name,
        f"{e.case.orders:,}",
        f"{e.case.feeders:,}" if e.case.tree else "-",
        congested,
        f"{e.levels:,}",
        f"{e.variables:,}",
        str(e.rounds),
        _s(e.median("read")),
        _s(e.median("build")),
        _s(e.median("solve")),
        _s(e.median("certify")),
        _s(e.median("total")),
        _s(e.median("e2e")),
        _s(e.median("warm")),
        _s(e.median("wall")),
        f"{e.median('peak'):.0f}",
    )


def _engine_seconds_compared(e: EngineFigures, r: ReferenceFigures) -> float:
    """The engine's figure that a reference is compared with (see the module docstring)."""
    return e.median("model") if r.kind == "highs" else e.median("total")


def _reference_row(r: ReferenceFigures, e: EngineFigures) -> tuple[str, ...]:
    ours = _engine_seconds_compared(e, r)
    direct = r.kind == "highs"
    return (
        "direct highspy" if direct else "merit order",
        r.case.name,
        f"{r.columns:,}" if direct else "-",
        _s(r.median("build")) if direct else "-",
        _s(r.median("solve")) if direct else "-",
        _s(r.median("total")),
        f"{r.median('peak'):.0f}",
        _s(ours),
        f"{_ratio(ours, r.median('total')):.2f}x",
        f"{r.welfare_p:,.3f}",
    )


def _plain(prefix: str, headers: Sequence[str], row: Sequence[str]) -> str:
    """``name=value`` pairs, with no spaces or thousands separators inside a value."""
    pairs = (
        f"{re.sub(r'[^a-z0-9]+', '_', h.lower()).strip('_')}={v.replace(',', '').replace(' ', '_')}"
        for h, v in zip(headers, row)
    )
    return prefix + " ".join(pairs)


def report(
    engines: list[EngineFigures], references: list[ReferenceFigures], repeats: str, console: Console
) -> Checks:
    """Print the tables and the same figures as plain lines; cross-check welfare and prices."""
    by_case = {e.case: e for e in engines}
    table = Table(title=f"smartbrum clear: the engine (median of {repeats})")
    for header in ENGINE_COLUMNS:
        table.add_column(header, justify="left" if header == "case" else "right")
    ref_table = Table(title=f"References, each in a fresh process (median of {repeats})")
    for header in REFERENCE_COLUMNS:
        ref_table.add_column(header, justify="left" if header in ("reference", "case") else "right")
    plain = []
    for e in engines:
        row = _engine_row(e)
        table.add_row(*row)
        plain.append(_plain("engine ", ENGINE_COLUMNS, row))
    checks = Checks()
    for r in references:
        e = by_case[r.case]
        row = _reference_row(r, e)
        ref_table.add_row(*row)
        plain.append(_plain("reference ", REFERENCE_COLUMNS, row))
        if not math.isclose(r.welfare_p, e.welfare_p, rel_tol=WELFARE_RTOL, abs_tol=WELFARE_RTOL):
            checks.mismatches.append(
                f"{r.case.name}: {row[0]} welfare {r.welfare_p!r} p, the engine's {e.welfare_p!r} p"
            )
        if r.price_p_per_kwh is not None and not math.isclose(r.price_p_per_kwh, e.root_price, abs_tol=1e-9):
            checks.mismatches.append(
                f"{r.case.name}: merit-order price {r.price_p_per_kwh} p/kWh, the engine's {e.root_price}"
            )
    console.print(table)
    console.print(ref_table)
    console.print(
        "read s, build s (build + compile), solve s, certify s, engine s (total): the command's "
        "audit.seconds; end-to-end s = clear_files in a "
        "fresh process (CSV read + clearing + JSON); warm e2e s = a second clear_files in that process; "
        "process wall s and peak MB = the smartbrum clear command. Engine s against direct highspy: "
        "build + compile + solve + certify; against the merit order: audit.seconds.total. "
        "The merit order is timed from arrays in memory, clearing only.",
        soft_wrap=True,
        style="dim",
    )
    print()
    print("\n".join(plain))
    checks.targets = _target_checks(engines, references)
    return checks


def _target_checks(engines: list[EngineFigures], references: list[ReferenceFigures]) -> harness.TargetChecks:
    """One line per target: PASS, FAIL or NOT RUN, with the figures behind it. The verdicts are
    reported, not binding: the exit status speaks for the cross-checks."""
    by_case = {e.case: e for e in engines}
    checks = harness.TargetChecks()
    large = by_case.get(Case(LARGE, tree=True))
    name = "420k on 3,000 feeders end to end < 5 s and peak < 1.5 GB"
    if large is None:
        checks.not_run(name, "needs --sizes 420k")
    else:
        e2e, wall, peak = large.median("e2e"), large.median("wall"), large.median("peak")
        checks.target(
            name,
            e2e < TARGET_E2E_S and peak < TARGET_PEAK_MB,
            f"end to end {e2e:.2f} s in process, {wall:.2f} s for the whole command; peak {peak:.0f} MB",
            binding=False,
        )

    name = f"build+solve within {TARGET_MODEL_RATIO:g}x of direct highspy"
    trees = sorted((r for r in references if r.kind == "highs"), key=lambda r: r.case.orders)
    if not trees:
        checks.not_run(name, "needs a tree size")
    else:
        ratios = [
            (r.case.name, _ratio(_engine_seconds_compared(by_case[r.case], r), r.median("total")))
            for r in trees
        ]
        largest, ratio = ratios[-1]
        others = ", ".join(f"{case} {value:.2f}x" for case, value in ratios[:-1])
        figures = f"{ratio:.2f}x on {largest}" + (f"; smaller books {others}" if others else "")
        checks.target(name, ratio <= TARGET_MODEL_RATIO, figures, binding=False)

    name = f"single node within {TARGET_FLOOR_RATIO:g}x of merit order"
    singles = [r for r in references if r.kind == "merit"]
    if not singles:
        checks.not_run(name, "--single 0")
    else:
        r = singles[0]
        e = by_case[r.case]
        ratio = _ratio(_engine_seconds_compared(e, r), r.median("total"))
        checks.target(
            name,
            ratio <= TARGET_FLOOR_RATIO,
            f"{ratio:.2f}x on {r.case.name}: {e.median('total'):.3f} s against {r.median('total'):.3f} s",
            binding=False,
        )
    return checks


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/clear.py",
        description="Generate order books and clear them with smartbrum, each run in a fresh process.",
    )
    parser.add_argument(
        "--sizes",
        type=_parse_sizes,
        default=None,
        help="tree book sizes, comma-separated (default 1k,10k,100k,420k)",
    )
    parser.add_argument(
        "--single",
        type=_parse_size,
        default=None,
        help="single-node book size, 0 for none (default 420k; 10k with --quick)",
    )
    parser.add_argument("--quick", action="store_true", help="small books only: 1k and 10k, single node 10k")
    parser.add_argument("--repeats", type=int, default=3, help="runs per case; medians are reported (3)")
    parser.add_argument(
        "--large-repeats",
        type=int,
        default=None,
        help="runs per case for books of 420k orders or more (default: --repeats)",
    )
    parser.add_argument("--seed", type=int, default=20260621, help="generator seed (20260621)")
    parser.add_argument(
        "--keep-files",
        type=Path,
        default=None,
        help="write the books here and keep them (default: temporary)",
    )
    parser.add_argument("--run-case", choices=("engine", "merit", "highs"), help=argparse.SUPPRESS)
    parser.add_argument("orders_csv", nargs="?", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--network", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.repeats < 1 or (args.large_repeats is not None and args.large_repeats < 1):
        parser.error("repeats must be at least 1")
    if args.run_case and args.orders_csv is None:
        parser.error("--run-case needs an order book CSV")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark (or, with ``--run-case``, one measured run in this process)."""
    args = _arguments(argv)
    if args.run_case:
        print(json.dumps(run_case(args.run_case, args.orders_csv, args.network)))
        return 0

    sizes = args.sizes if args.sizes is not None else QUICK_SIZES if args.quick else DEFAULT_SIZES
    single = args.single if args.single is not None else QUICK_SIZES[-1] if args.quick else LARGE
    cases = [Case(size, tree=True) for size in sizes] + ([Case(single, tree=False)] if single else [])
    large_repeats = args.large_repeats or args.repeats
    console = harness.figures_console()
    console.print(harness.machine_notes(packages=("numpy", "scipy", "pyomo", "highspy")), soft_wrap=True)
    engines: list[EngineFigures] = []
    references: list[ReferenceFigures] = []
    with tempfile.TemporaryDirectory(prefix="smartbrum-bench-") as scratch:
        work = Path(scratch)
        books = args.keep_files or work
        books.mkdir(parents=True, exist_ok=True)
        for case in cases:
            repeats = large_repeats if case.orders >= LARGE else args.repeats
            tic = time.perf_counter()
            files = generate_book(case, args.seed, books)
            log.info(f"{case.name}: generated in {time.perf_counter() - tic:.1f} s; clearing x{repeats}")
            tic = time.perf_counter()
            try:
                engine, reference = measure_case(case, files, repeats, work)
            except BenchmarkError as error:
                log.error(f"bench: {error}")
                return 1
            log.info(f"{case.name}: cleared x{repeats} in {time.perf_counter() - tic:.1f} s")
            engines.append(engine)
            references.append(reference)
            if args.keep_files is None:
                files.orders_csv.unlink()
                if files.network_toml is not None:
                    files.network_toml.unlink()

    repeats_note = str(args.repeats)
    if large_repeats != args.repeats and any(c.orders >= LARGE for c in cases):
        repeats_note += f"; {large_repeats} for 420k"
    checks = report(engines, references, repeats_note, console)
    print()
    print(f"(load average {harness.load_average():.2f} at the end)")
    checks.targets.print(console)
    if checks.mismatches:
        print(file=sys.stderr)
        for mismatch in checks.mismatches:
            print(f"!!! CROSS-CHECK MISMATCH: {mismatch}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
