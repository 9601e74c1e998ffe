"""Benchmark of the market's database path: a day of orders for 1,000 households placed and cleared.

What it measures
----------------
On each backend (a fresh SQLite file in a temporary directory, and a fresh schema in the local
PostgreSQL database, dropped afterwards), built by the Alembic migrations:

1. Setup, not timed: the operator, a network of a grid supply point ``GSP``, one primary ``P1``
   and ten feeders ``F01`` ... ``F10``, the backstop tariff (24.5 p/kWh import, 4.1 export), and
   ``--households`` households spread round-robin over the feeders, each with a valid MPAN.
2. Placing, timed: seeded orders for the settlement date 2026-06-21 (48 half-hours), and for
   samples of periods on the two days after it. Every household places 1 to 3 orders per period;
   homes with solar panels sell in the sunny periods (08:00 to 17:00 local) and buy otherwise,
   the others always buy. Quantities 0.1 to 3 kWh at 1 Wh, limit prices on the 0.01 p tick
   (sells 3 to 15 p/kWh, buys 5 to 30 p/kWh). ``now`` is injected (computed, never the wall
   clock) and before every gate closure. Three ways of placing, each its own orders/s figure:

   a. *one order per transaction*: :func:`market.orders.place_order`, each order in its own
      :func:`market.database.transaction` (as ``POST /v1/orders`` does per request), for the
      first ``--single-periods`` periods of 2026-06-22 (a sample);
   b. *a household's period per transaction*: :func:`market.orders.place_orders` with one
      household's 1 to 3 orders for one period (``POST /v1/orders/batch`` for a period), for the
      first ``--period-batch-periods`` periods of 2026-06-23 (a sample);
   c. *a household's day per transaction* (the day-ahead submission): one
      :func:`market.orders.place_orders` per household with its orders for all 48 periods of
      2026-06-21, about 96 orders (``POST /v1/orders/batch`` with the day). This is the day
      that is then amended and cleared.

   Each figure is its orders divided by its wall time (building the requests, the calls, the
   commits). Every order goes through the market's whole placement path: validation, the
   household's row lock, the interval's book lock, the cleared-book check, the network in force,
   the open-order count, the order row and its history event.

   Then *amend and cancel*: ``--amend-share`` of the day's orders get a new price and
   ``--cancel-share`` are cancelled, one per transaction (reported, no target).

3. Clearing, timed: every period in turn, with ``now`` at its gate closure,
   :func:`market.clearing.clear_interval` end to end (the lock, reading the frozen book, the
   network and the tariff, clearing with HiGHS, writing the run, its node prices and its trades
   in one transaction, the commit). Reported: median, 95th percentile and maximum seconds per
   interval, the total for the day, orders per interval, trades for the day, and where the median
   interval's time goes: reading the book, network and tariff (the run's stored
   ``total_seconds``, which ends when the engine returns, less the engine's time); the engine,
   :func:`optimiser.clear_market`, timed by a thin wrapper the benchmark puts around the name
   ``market.clearing.clear_market`` while it clears, and within it the HiGHS solve (the run's
   ``solve_seconds``); and the rest of the call: writing the run, node prices and trades,
   beginning, locking and committing (the wall time less ``total_seconds``).
   The first interval is shown on its own (it also pays SQLAlchemy's first compile of the
   clearing's statements on that engine).

Before anything is timed the engine clears a two-order book once, and the seconds are reported on
their own: a fresh process's first clearing pays one-time costs (mostly Pyomo importing SciPy on its
first model compile, over half a second) that the first interval of a newly started service or of a
one-shot command would pay on top of the per-interval figures.

The targets (issue text): at least 2,000 orders/s placed, and under 1 s per 1,000-household interval
end to end (checked on the slowest interval). The placement aim is checked on (c), the day-ahead
batch: a household's energy management system submits its day's orders in one request, so that is
the rate the market must sustain when a neighbourhood submits for tomorrow. (a) and (b) are printed
beside it: (a) is what a client placing orders one at a time gets, bounded on PostgreSQL by a
transaction's round trips and its commit's WAL flush per order.

The network congests on purpose: ``F01`` and ``F02`` are sunny streets (70% solar homes) whose
export capacity is far below their midday surplus, so their nodal price falls below the others'
in the middle of the day; the table reports in how many periods a sunny feeder's export edge was
full.

Usage
-----
::

    .venv/bin/python bench/market.py                          # both backends, 1,000 households
    .venv/bin/python bench/market.py --backend sqlite --quick # 100 households, small sample
    .venv/bin/python bench/market.py --profile var/profiles   # also write cProfile stats per phase

PostgreSQL is reached at ``--postgres-url`` (default ``SMARTBRUM_TEST_POSTGRES_URL`` or the test
database, ``postgresql+psycopg://postgres@127.0.0.1:5432/test``). Exit status 1 if a target is
missed or the day does not add up (the orders cleared or stored, or the order events stored,
differ from what was placed, amended and cancelled).
"""

# ruff: noqa: E402 (the project's imports must come after the sys.path fix below)

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, func, select

_BENCH = Path(__file__).resolve().parent  # run by path, bench/ heads sys.path: see bench/harness.py
sys.path[:] = [str(_BENCH.parent), *(entry for entry in sys.path if Path(entry or ".").resolve() != _BENCH)]

from bench import harness
from market import clearing as market_clearing
from market.clearing import clear_interval, node_prices
from market.database import transaction
from market.intervals import SettlementPeriod, periods_of_day
from market.orders import BUY, SELL, OrderRequest, amend_order, cancel_order, place_order, place_orders
from market.rules import MarketRules
from market.tables import OrderEventRow, OrderRow, TradeRow
from optimiser import ClearingResult, Network, Node, Order, OrderBook, Side, Tariff, clear_market

DAY = date(2026, 6, 21)
FEEDERS = tuple(f"F{i:02d}" for i in range(1, 11))
SUNNY_FEEDERS = ("F01", "F02")
SUNNY_PERIODS = range(17, 35)  # 08:00 to 17:00 local time
TARGET_ORDERS_PER_SECOND = 2_000
TARGET_CLEARING_SECONDS = 1.0
TARGET_HOUSEHOLDS = 1_000
log = harness.progress_logger()


# --- the generated market ------------------------------------------------------------------------


@dataclass(frozen=True)
class Home:
    """A household: its id, its feeder and whether it has solar panels."""

    id: str
    node_id: str
    solar: bool


@dataclass(frozen=True)
class OrderSpec:
    """One order to place: everything :func:`market.orders.place_order` takes but the session."""

    participant_id: str
    period: SettlementPeriod
    side: str
    quantity_kwh: Decimal
    price_p_per_kwh: Decimal
    now: datetime


@dataclass(frozen=True)
class BatchSpec:
    """One household's orders placed together by :func:`market.orders.place_orders` at ``now``."""

    participant_id: str
    orders: tuple[OrderSpec, ...]
    now: datetime


@dataclass(frozen=True)
class Workload:
    """What is placed: the day (as day batches) and the two samples of the days after it."""

    day: Day
    single: tuple[OrderSpec, ...]
    period_batches: tuple[BatchSpec, ...]
    day_batches: tuple[BatchSpec, ...]


@dataclass(frozen=True)
class Day:
    """The generated day: households, periods, orders in placing order and the time window."""

    homes: tuple[Home, ...]
    periods: tuple[SettlementPeriod, ...]
    orders: tuple[OrderSpec, ...]
    setup_at: datetime
    changes_from: datetime


def bench_network(households: int) -> Network:
    """The grid supply point, a primary and ten feeders; the two sunny feeders' export is
    tight (0.15 kWh per household of the feeder, a fraction of their midday surplus)."""
    return harness.sunny_street_network(
        FEEDERS, households, sunny_feeders=SUNNY_FEEDERS, export_kwh_per_household=0.15
    )


def generate_day(households: int, seed: int) -> Day:
    """Households and a day of orders, seeded and reproducible.

    Parameters
    ----------
    households : int
        How many households.
    seed : int
        The random seed; the day depends only on it and ``households``.

    Returns
    -------
    Day
        Orders sorted by period; within a period the households come in a shuffled order. The
        ``now`` of the k-th order is spread evenly over 00:00 to 20:00 UTC on the day before, so
        it rises monotonically and is before every gate closure (the first is 22:55 UTC).
    """
    rng = random.Random(seed)
    homes = []
    for i in range(households):
        feeder = FEEDERS[i % len(FEEDERS)]
        solar = rng.random() < (0.7 if feeder in SUNNY_FEEDERS else 0.25)
        homes.append(Home(f"H{i + 1:05d}", feeder, solar))
    periods = tuple(periods_of_day(DAY))
    orders = generate_orders(homes, periods, rng)
    window_start = datetime.combine(DAY - timedelta(days=1), datetime.min.time(), UTC)
    return Day(
        homes=tuple(homes),
        periods=periods,
        orders=orders,
        setup_at=window_start - timedelta(days=1),
        changes_from=window_start + timedelta(hours=20),
    )


def generate_orders(
    homes: Sequence[Home], periods: Sequence[SettlementPeriod], rng: random.Random
) -> tuple[OrderSpec, ...]:
    """Every household's orders for ``periods`` (of one settlement date), drawn from ``rng``.

    Parameters
    ----------
    homes : sequence of Home
        The households.
    periods : sequence of SettlementPeriod
        Periods of one settlement date, in order.
    rng : random.Random
        The seeded generator.

    Returns
    -------
    tuple of OrderSpec
        Sorted by period; within a period the households come in a shuffled order, each with its
        1 to 3 orders together. The ``now`` of the k-th order is spread evenly over 00:00 to
        20:00 UTC on the day before the settlement date, before every gate closure.
    """
    drafts: list[tuple[str, SettlementPeriod, str, Decimal, Decimal]] = []
    for period in periods:
        sunny = period.period in SUNNY_PERIODS
        # The sun's strength, 0 at the edges of the sunny window and 1 at its middle.
        sun = 1 - abs(period.period - 25.5) / 9.5 if sunny else 0.0
        for home in rng.sample(list(homes), len(homes)):
            for _ in range(rng.randint(1, 3)):
                if home.solar and sunny:
                    side = SELL
                    quantity_wh = rng.randint(100, 100 + int(2_900 * sun))
                    price_ticks = rng.randint(300, 1_500)
                else:
                    side = BUY
                    quantity_wh = rng.randint(100, 3_000)
                    price_ticks = rng.randint(500, 3_000)
                drafts.append(
                    (
                        home.id,
                        period,
                        side,
                        Decimal(quantity_wh).scaleb(-3),
                        Decimal(price_ticks).scaleb(-2),
                    )
                )
    first_date = periods[0].settlement_date if periods else DAY
    window_start = datetime.combine(first_date - timedelta(days=1), datetime.min.time(), UTC)
    step = timedelta(hours=20) / max(1, len(drafts))
    return tuple(
        OrderSpec(home_id, period, side, quantity, price, window_start + k * step)
        for k, (home_id, period, side, quantity, price) in enumerate(drafts)
    )


def generate_workload(day: Day, args: argparse.Namespace) -> Workload:
    """The day as one batch per household, and the samples for (a) and (b) on the next two days.

    Parameters
    ----------
    day : Day
        The generated day.
    args : argparse.Namespace
        The command line (``--single-periods``, ``--period-batch-periods``, ``--seed``).

    Returns
    -------
    Workload
        (a)'s orders for the first ``--single-periods`` periods of the day after, (b)'s batches
        (a household's orders for one period) for the first ``--period-batch-periods`` periods of
        the day after that, both with their own seeds, and (c)'s batches (a household's orders for
        the whole day) of the day itself.
    """
    single_periods = periods_of_day(DAY + timedelta(days=1))[: args.single_periods]
    single = generate_orders(day.homes, single_periods, random.Random(args.seed + 2))
    batch_periods = periods_of_day(DAY + timedelta(days=2))[: args.period_batch_periods]
    by_period = generate_orders(day.homes, batch_periods, random.Random(args.seed + 3))
    return Workload(
        day=day,
        single=single,
        period_batches=batches_of(by_period, lambda spec: (spec.participant_id, spec.period.start_utc)),
        day_batches=batches_of(day.orders, lambda spec: spec.participant_id),
    )


def batches_of(orders: Sequence[OrderSpec], key: Callable[[OrderSpec], object]) -> tuple[BatchSpec, ...]:
    """The orders grouped by ``key`` (keeping their order), one batch each.

    Parameters
    ----------
    orders : sequence of OrderSpec
        The orders, in placing order.
    key : callable
        What a batch has in common: the household, or the household and the period.

    Returns
    -------
    tuple of BatchSpec
        In the order of each group's first order; a batch's ``now`` is its first order's.
    """
    groups: dict[object, list[OrderSpec]] = {}
    for spec in orders:
        groups.setdefault(key(spec), []).append(spec)
    return tuple(BatchSpec(specs[0].participant_id, tuple(specs), specs[0].now) for specs in groups.values())


def warm_up_engine() -> float:
    """Clear a two-order book once, so the process's one-time costs fall outside the timed phases.

    Returns
    -------
    float
        The seconds the first :func:`optimiser.clear_market` call took in this process.
    """
    network = Network("GSP", (Node("F01", "GSP", Decimal(10), Decimal(10)),))
    at = datetime.combine(DAY, datetime.min.time(), UTC)
    book = OrderBook.from_orders(
        [
            Order("warm-buy", "H1", "F01", Side.BUY, Decimal(1), Decimal(20), at),
            Order("warm-sell", "H2", "F01", Side.SELL, Decimal(1), Decimal(5), at),
        ]
    )
    started = time.perf_counter()
    clear_market(book, network, Tariff(Decimal("24.5"), Decimal("4.1")))
    return time.perf_counter() - started


def seed(engine: Engine, day: Day) -> None:
    """The operator, the network, the tariff (in force a month before) and the households (not timed).

    Parameters
    ----------
    engine : Engine
        A migrated, empty database.
    day : Day
        The generated day.
    """
    harness.seed_market(
        engine,
        {home.id: home.node_id for home in day.homes},
        now=day.setup_at,
        network=bench_network(len(day.homes)),
        effective_from_utc=day.setup_at - timedelta(days=30),
    )


# --- the timed phases ----------------------------------------------------------------------------


@dataclass
class Placed:
    """Orders placed and the seconds they took."""

    orders: int = 0
    seconds: float = 0.0
    transactions: int = 0
    #: (order id, participant id, limit price) of each order placed.
    order_ids: list[tuple[str, str, Decimal]] = field(default_factory=list)

    @property
    def per_second(self) -> float:
        """Orders (or changes) per wall second; NaN if none were timed."""
        return self.orders / self.seconds if self.seconds else float("nan")


@dataclass
class Cleared:
    """Per-interval clearing figures, in period order."""

    seconds: list[float] = field(default_factory=list)
    in_transaction_seconds: list[float] = field(default_factory=list)
    engine_seconds: list[float] = field(default_factory=list)
    solve_seconds: list[float] = field(default_factory=list)
    orders: list[int] = field(default_factory=list)
    run_ids: list[int] = field(default_factory=list)

    def read_seconds(self) -> list[float]:
        """Per interval, reading the frozen book, network and tariff: ``total_seconds`` less the engine."""
        return [inside - engine for inside, engine in zip(self.in_transaction_seconds, self.engine_seconds)]

    def write_seconds(self) -> list[float]:
        """Per interval, the wall time after the engine: writes, begin, lock and commit."""
        return [wall - inside for wall, inside in zip(self.seconds, self.in_transaction_seconds)]


def _place(session: Session, rules: MarketRules, spec: OrderSpec) -> str:
    """Place one order through :func:`market.orders.place_order` in ``session``; its id."""
    order, created = place_order(
        session,
        rules=rules,
        participant_id=spec.participant_id,
        period=spec.period,
        side=spec.side,
        quantity_kwh=spec.quantity_kwh,
        price_p_per_kwh=spec.price_p_per_kwh,
        now=spec.now,
    )
    assert created
    return order.id


def place_one_per_transaction(engine: Engine, rules: MarketRules, specs: Sequence[OrderSpec]) -> Placed:
    """Place each order in a transaction of its own, as the API does per request.

    Parameters
    ----------
    engine : Engine
        The seeded database.
    rules : MarketRules
        The market's rules.
    specs : sequence of OrderSpec
        The orders, in placing order.

    Returns
    -------
    Placed
        The count, the wall seconds and the placed orders' ids.
    """
    placed = Placed()
    started = time.perf_counter()
    for spec in specs:
        with transaction(engine) as session:
            placed.order_ids.append((_place(session, rules, spec), spec.participant_id, spec.price_p_per_kwh))
    placed.seconds = time.perf_counter() - started
    placed.orders = placed.transactions = len(specs)
    return placed


def place_batches(engine: Engine, rules: MarketRules, batches: Sequence[BatchSpec]) -> Placed:
    """Place each batch with :func:`market.orders.place_orders` in a transaction of its own, as
    ``POST /v1/orders/batch`` does per request.

    Parameters
    ----------
    engine : Engine
        The seeded database.
    rules : MarketRules
        The market's rules.
    batches : sequence of BatchSpec
        The batches, in placing order.

    Returns
    -------
    Placed
        The count of orders and transactions, the wall seconds (building the requests, placing,
        committing) and the placed orders' ids.
    """
    placed = Placed()
    started = time.perf_counter()
    for batch in batches:
        requests = [
            OrderRequest(spec.period, spec.side, spec.quantity_kwh, spec.price_p_per_kwh)
            for spec in batch.orders
        ]
        with transaction(engine) as session:
            orders, created = place_orders(
                session, rules=rules, participant_id=batch.participant_id, requests=requests, now=batch.now
            )
        assert created
        placed.order_ids.extend((order.id, order.participant_id, order.price_p_per_kwh) for order in orders)
    placed.seconds = time.perf_counter() - started
    placed.orders = sum(len(batch.orders) for batch in batches)
    placed.transactions = len(batches)
    return placed


def amend_and_cancel(
    engine: Engine,
    rules: MarketRules,
    order_ids: Sequence[tuple[str, str, Decimal]],
    *,
    amend_share: float,
    cancel_share: float,
    changes_from: datetime,
    seed_value: int,
) -> Placed:
    """Amend the price of some orders and cancel others, one change per transaction.

    Parameters
    ----------
    engine : Engine
        The database holding the placed orders.
    rules : MarketRules
        The market's rules.
    order_ids : sequence of (order id, participant id, limit price)
        The placed orders.
    amend_share, cancel_share : float
        The shares of the orders to amend and to cancel (disjoint).
    changes_from : datetime
        ``now`` of the first change; the rest follow a millisecond apart, all before every gate.
    seed_value : int
        The random seed choosing the orders and their new prices.

    Returns
    -------
    Placed
        The number of changes and their wall seconds.
    """
    rng = random.Random(seed_value)
    amends, cancels = int(amend_share * len(order_ids)), int(cancel_share * len(order_ids))
    chosen = rng.sample(list(order_ids), amends + cancels)
    # A new price 0.01 to 1 p away from the old one (an unchanged price would record no event).
    moves = [Decimal(rng.choice((-1, 1)) * rng.randint(1, 100)).scaleb(-2) for _ in range(amends)]
    changes = Placed()
    started = time.perf_counter()
    for k, (order_id, participant_id, price) in enumerate(chosen):
        now = changes_from + timedelta(milliseconds=k)
        with transaction(engine) as session:
            if k < amends:
                amend_order(
                    session,
                    rules=rules,
                    order_id=order_id,
                    participant_id=participant_id,
                    now=now,
                    price_p_per_kwh=price + moves[k],
                )
            else:
                cancel_order(session, rules=rules, order_id=order_id, participant_id=participant_id, now=now)
    changes.seconds = time.perf_counter() - started
    changes.orders = len(chosen)
    return changes


def clear_day(engine: Engine, rules: MarketRules, periods: Sequence[SettlementPeriod]) -> Cleared:
    """Clear every period at its gate closure, timing each :func:`clear_interval` call end to end.

    Parameters
    ----------
    engine : Engine
        The database holding the day's orders.
    rules : MarketRules
        The market's rules.
    periods : sequence of SettlementPeriod
        The day's periods, in order.

    Returns
    -------
    Cleared
        Wall seconds, the run's own in-transaction and solve seconds, and orders, per interval.
    """
    cleared = Cleared()
    with timing_the_engine(cleared.engine_seconds):
        for period in periods:
            started = time.perf_counter()
            outcome = clear_interval(
                engine, period=period, rules=rules, now=rules.gate_closure_utc(period), triggered_by="bench"
            )
            cleared.seconds.append(time.perf_counter() - started)
            assert outcome.created
            record_run(cleared, outcome.run)
    return cleared


def record_run(cleared: Cleared, run: market_clearing.ClearingRun) -> None:
    """Add a run's stored figures to ``cleared``."""
    cleared.in_transaction_seconds.append(run.total_seconds)
    cleared.solve_seconds.append(run.solve_seconds)
    cleared.orders.append(run.orders)
    cleared.run_ids.append(run.id)


@contextmanager
def timing_the_engine(into: list[float]) -> Iterator[None]:
    """Time each call :mod:`market.clearing` makes to the engine, appending the seconds to ``into``.

    The name ``market.clearing.clear_market`` is replaced by a thin timing wrapper for the block and
    restored afterwards; the engine itself is untouched.
    """
    engine = market_clearing.clear_market

    def timed(*args: Any, **kwargs: Any) -> ClearingResult:
        started = time.perf_counter()
        try:
            return engine(*args, **kwargs)
        finally:
            into.append(time.perf_counter() - started)

    market_clearing.clear_market = timed
    try:
        yield
    finally:
        market_clearing.clear_market = engine


# --- one backend ---------------------------------------------------------------------------------


@dataclass(kw_only=True)
class MarketRun(harness.BackendRun):
    """Everything measured on one backend."""

    single: Placed
    period_batches: Placed
    day_batches: Placed
    changes: Placed
    cleared: Cleared
    trades: int
    events: int
    congested_periods: int


def run_backend(backend: str, work: Workload, args: argparse.Namespace) -> MarketRun:
    """Set up, place (a), (b) and (c), change and clear the day on one backend.

    Parameters
    ----------
    backend : str
        ``"sqlite"`` or ``"postgresql"``.
    work : Workload
        The generated day and samples.
    args : argparse.Namespace
        The command line.

    Returns
    -------
    MarketRun
        The figures, and any inconsistency found when checking the day afterwards.
    """
    rules = MarketRules()
    day = work.day

    def profile(phase: str) -> Path | None:
        return None if args.profile is None else Path(args.profile) / f"{backend}-{phase}.prof"

    with harness.fresh_database(backend, args.postgres_url) as database:
        engine = database.engine
        seed(engine, day)
        log.info(f"{backend}: (a) placing {len(work.single):,} orders one per transaction")
        with harness.profiled(profile("place-single")):
            single = place_one_per_transaction(engine, rules, work.single)
        by_period = sum(len(batch.orders) for batch in work.period_batches)
        log.info(
            f"{backend}: (b) placing {by_period:,} orders, a household's period per transaction "
            f"({len(work.period_batches):,} transactions)"
        )
        with harness.profiled(profile("place-period")):
            period_batches = place_batches(engine, rules, work.period_batches)
        log.info(
            f"{backend}: (c) placing {len(day.orders):,} orders, a household's day per transaction "
            f"({len(work.day_batches):,} transactions)"
        )
        with harness.profiled(profile("place-day")):
            day_batches = place_batches(engine, rules, work.day_batches)
        log.info(f"{backend}: amending and cancelling")
        with harness.profiled(profile("amend-cancel")):
            changes = amend_and_cancel(
                engine,
                rules,
                day_batches.order_ids,
                amend_share=args.amend_share,
                cancel_share=args.cancel_share,
                changes_from=day.changes_from,
                seed_value=args.seed + 1,
            )
        log.info(f"{backend}: clearing {len(day.periods)} periods")
        with harness.profiled(profile("clear")):
            cleared = clear_day(engine, rules, day.periods)
        trades, events, congested, problems = check_day(engine, work, changes, cleared, args)
    return MarketRun(
        backend=backend,
        households=len(day.homes),
        single=single,
        period_batches=period_batches,
        day_batches=day_batches,
        changes=changes,
        cleared=cleared,
        trades=trades,
        events=events,
        congested_periods=congested,
        problems=problems,
    )


def check_day(
    engine: Engine, work: Workload, changes: Placed, cleared: Cleared, args: argparse.Namespace
) -> tuple[int, int, int, list[str]]:
    """Count trades and events and check that the day and the samples add up (not timed).

    Parameters
    ----------
    engine : Engine
        The database after clearing.
    work : Workload
        The generated day and samples.
    changes : Placed
        The amendments and cancellations made.
    cleared : Cleared
        The clearing figures.
    args : argparse.Namespace
        The command line (for the cancel share).

    Returns
    -------
    tuple of (int, int, int, list of str)
        Trades stored, order events stored, periods in which a sunny feeder exported its full
        export capacity (congestion), and the problems found.
    """
    problems = []
    day = work.day
    cancelled = int(args.cancel_share * len(day.orders))
    samples = len(work.single) + sum(len(batch.orders) for batch in work.period_batches)
    with transaction(engine) as session:
        open_orders = session.exec(
            select(func.count())
            .select_from(OrderRow)
            .where(OrderRow.status == "open", OrderRow.settlement_date == DAY)
        ).one()
        sample_orders = session.exec(
            select(func.count()).select_from(OrderRow).where(OrderRow.settlement_date != DAY)
        ).one()
        trades = session.exec(select(func.count()).select_from(TradeRow)).one()
        events = session.exec(select(func.count()).select_from(OrderEventRow)).one()
        network = bench_network(len(day.homes))
        export_kwh = {node.id: node.export_capacity_kwh for node in network.nodes}
        congested = 0
        for run_id in cleared.run_ids:
            flows = {price.node_id: price.net_import_kwh for price in node_prices(session, run_id)}
            if any(-(flows[sunny] or 0) >= export_kwh[sunny] for sunny in SUNNY_FEEDERS):
                congested += 1
    if sum(cleared.orders) != open_orders or open_orders != len(day.orders) - cancelled:
        problems.append(
            f"{sum(cleared.orders):,} orders cleared, {open_orders:,} open, "
            f"{len(day.orders) - cancelled:,} expected"
        )
    if sample_orders != samples:
        problems.append(f"{sample_orders:,} orders stored for the samples (a) and (b), {samples:,} expected")
    expected_events = len(day.orders) + samples + changes.orders
    if events != expected_events:
        problems.append(f"{events:,} order events, {expected_events:,} expected")
    return trades, events, congested, problems


# --- the report ----------------------------------------------------------------------------------


def report(runs: Sequence[MarketRun], day: Day, args: argparse.Namespace, warm_up: float) -> bool:
    """Print the table and the target checks; whether every target was met and the day added up.

    Parameters
    ----------
    runs : sequence of MarketRun
        One per backend.
    day : Day
        The generated day.
    args : argparse.Namespace
        The command line.
    warm_up : float
        Seconds of the process's first clearing (:func:`warm_up_engine`).

    Returns
    -------
    bool
        ``True`` if every check passed.
    """
    table = harness.BackendTable(
        f"Market: placing and clearing {DAY} for {len(day.homes):,} households", runs
    )
    row = table.row

    def seconds(values: Sequence[float], pick: Callable[[Sequence[float]], float]) -> str:
        return f"{pick(values):.3f}"

    def placed(result: Placed) -> str:
        rate = f"{result.per_second:,.0f}"
        return f"{rate}  ({result.orders:,} in {result.transactions:,} tx, {result.seconds:.1f} s)"

    row("orders placed (the day, cleared below)", lambda r: f"{r.day_batches.orders:,}")
    row(f"(a) orders/s, 1 order per tx ({args.single_periods} periods)", lambda r: placed(r.single))
    row(
        f"(b) orders/s, a household's period per tx ({args.period_batch_periods} periods)",
        lambda r: placed(r.period_batches),
    )
    row("(c) orders/s, a household's day per tx (target)", lambda r: placed(r.day_batches))
    row(
        "amend/cancel per s, 1 per transaction",
        lambda r: f"{r.changes.per_second:,.0f}  ({r.changes.orders:,} in {r.changes.seconds:.1f} s)",
    )
    row(
        "orders per interval, median / max",
        lambda r: f"{statistics.median(r.cleared.orders):,.0f} / {max(r.cleared.orders):,}",
    )
    row("clearing s per interval, median", lambda r: seconds(r.cleared.seconds, statistics.median))
    row(
        "clearing s per interval, p95",
        lambda r: seconds(r.cleared.seconds, lambda v: harness.percentile(v, 0.95)),
    )
    row("clearing s per interval, max", lambda r: seconds(r.cleared.seconds, max))
    row("clearing s, first interval", lambda r: f"{r.cleared.seconds[0]:.3f}")
    row("clearing s, whole day", lambda r: f"{sum(r.cleared.seconds):.2f}")
    row(
        "  median: read book, network, tariff", lambda r: seconds(r.cleared.read_seconds(), statistics.median)
    )
    row("  median: engine (clear_market)", lambda r: seconds(r.cleared.engine_seconds, statistics.median))
    row("    of which HiGHS solve", lambda r: seconds(r.cleared.solve_seconds, statistics.median))
    row(
        "  median: write run, prices, trades; commit",
        lambda r: seconds(r.cleared.write_seconds(), statistics.median),
    )
    row("trades stored (day)", lambda r: f"{r.trades:,}")
    row(
        "periods with a sunny feeder's export full",
        lambda r: f"{r.congested_periods} of {len(r.cleared.seconds)}",
    )
    console = harness.figures_console()
    console.print(table)
    console.print(
        f"One-time engine start-up, paid by a fresh process's first clearing and not in the figures "
        f"above: {warm_up:.3f} s.",
        soft_wrap=True,
    )

    checks = harness.TargetChecks()
    scale = "" if len(day.homes) == TARGET_HOUSEHOLDS else f"; run with {len(day.homes):,} households"
    for run in runs:
        slowest = max(run.cleared.seconds)
        checks.target(
            f"{run.backend}: orders/s >= {TARGET_ORDERS_PER_SECOND:,}, a household's day per transaction",
            run.day_batches.per_second >= TARGET_ORDERS_PER_SECOND,
            f"{run.day_batches.per_second:,.0f}/s; alongside, one order per transaction "
            f"{run.single.per_second:,.0f}/s, a household's period per transaction "
            f"{run.period_batches.per_second:,.0f}/s",
        )
        checks.target(
            f"{run.backend}: clearing per 1,000-household interval < {TARGET_CLEARING_SECONDS:.0f} s",
            slowest < TARGET_CLEARING_SECONDS,
            f"slowest {slowest:.3f} s{scale}",
        )
        for problem in run.problems:
            checks.problem(f"{run.backend}: the day does not add up: {problem}")
    checks.print(console)
    return checks.passed


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line; ``--quick`` shrinks the defaults that were not given explicitly."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    harness.add_database_arguments(parser)
    parser.add_argument("--households", type=int, default=None, help="default 1,000 (100 with --quick)")
    parser.add_argument(
        "--single-periods",
        type=int,
        default=None,
        help="(a): periods of the day after placed one order per transaction (default 8; 4 with --quick)",
    )
    parser.add_argument(
        "--period-batch-periods",
        type=int,
        default=None,
        help="(b): periods of the second day after placed a household's period per transaction "
        "(default 8; 4 with --quick)",
    )
    parser.add_argument("--amend-share", type=float, default=0.03)
    parser.add_argument("--cancel-share", type=float, default=0.02)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--profile", metavar="DIR", help="write cProfile stats per backend and phase here")
    parser.add_argument("--quick", action="store_true", help="100 households, 4-period samples")
    args = parser.parse_args(argv)
    harness.fill_sizes(
        args,
        {"households": (TARGET_HOUSEHOLDS, 100), "single_periods": (8, 4), "period_batch_periods": (8, 4)},
    )
    if args.households < 1 or not 1 <= args.single_periods <= 48 or not 1 <= args.period_batch_periods <= 48:
        parser.error("--households must be positive, --single-periods and --period-batch-periods 1 to 48")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; the exit status is 1 if a target is missed or the day does not add up."""
    args = parse_args(argv)
    backends = harness.chosen_backends(args.backend)
    harness.figures_console().print(
        harness.machine_notes(
            packages=("SQLAlchemy", "highspy"), backends=backends, postgres_url=args.postgres_url
        ),
        soft_wrap=True,
    )
    day = generate_day(args.households, args.seed)
    work = generate_workload(day, args)
    warm_up = warm_up_engine()
    log.info(f"{len(day.homes):,} households, {len(day.orders):,} orders over {len(day.periods)} periods")
    runs = [run_backend(backend, work, args) for backend in backends]
    return 0 if report(runs, day, args, warm_up) else 1


if __name__ == "__main__":
    sys.exit(main())
