"""Benchmark of settlement: a day of 48 half-hours settled for 10,000 households, then reconciled.

What it measures
----------------
On each backend (a fresh SQLite file in a temporary directory, and a fresh schema in the local
PostgreSQL database, dropped afterwards), built by the Alembic migrations:

1. Setup, not timed (its seconds are reported). The operator, a network of the grid supply point
   ``GSP``, one primary ``P1`` and 20 feeders ``F01`` ... ``F20`` (fees 0.4 p/kWh on the primary,
   0.2 on each feeder; ``F01`` and ``F02`` are sunny streets whose export capacity is well below
   their midday surplus, so they congest) and the backstop tariff (24.5 p/kWh import, 4.1 export);
   ``--households`` households round-robin over the feeders, each with a valid MPAN and one
   meter (30% have solar panels, 70% on the sunny feeders), through the market's bulk
   registration (:func:`bench.harness.seed_market`); then, bulk-inserted with SQLAlchemy Core
   ``insert(...)`` executemany straight into the tables (the domain functions would take minutes
   for this many rows):

   - a day (settlement date 2026-06-21, 48 periods) of interval energy per meter, as
     :func:`market.meter_data.store_meter_energy` stores it (revision 1, current): import and
     export Wh from a seeded household load profile (night, morning and evening peaks) less solar
     generation, 2% of the rows estimated;
   - orders, one or two per household per period (35% of the households split their position
     into two price steps), each a forecast of its metered position (+-15%): buys limited at 8 to
     30 p/kWh, PV homes selling at 1 to 15 p/kWh when their forecast is an export. Only the
     order rows (no order events: settlement never reads them), open, placed the day before.

   Then every period is cleared with the real :func:`market.clearing.clear_interval` at its gate
   closure, so the trades, node prices and backstop energy settlement reads are real.

2. **Initial settlement, timed**: :func:`market.settlement.settle_periods` with
   ``run_type="initial"`` for the day's 48 periods (VAT 5%, platform fee ``--platform-fee``
   p/kWh), one call, wall time.
   The seconds of each interval come from a thin timing wrapper the benchmark puts around the
   name ``market.settlement.settle`` for the call (``settle_periods`` looks it up per period), and
   where each interval's time goes from wrappers around the module's ``_gather`` (the clearing
   run's trades, node prices, network, tariff and every household's metered energy), within it
   ``_metered`` (the meters, households and interval energy rows), ``settle_interval`` (the pure
   rules), ``_post`` (the insert of the ledger lines), and on a reconciliation ``_posted`` (the
   lines posted so far) and ``reconciling_lines``; the rest of the interval is beginning, the
   lock, the run's row and the commit. The wrappers cost well under a millisecond per interval.

   Checked afterwards, not timed: the ledger rows are counted (``SELECT count(*)``) and compared
   with the runs' own line counts, and every run balances: per run,
   :func:`market.settlement.account_balances` sums to zero over the accounts and leaves the pool
   at zero.

3. **Reconciliation, timed**: ``--changed`` (5%) of the interval energy rows get a new revision as
   a late reading would (every estimated row is replaced by an actual, the rest of the share are
   corrected readings), retiring revision 1, written in bulk outside the timing; then
   ``settle_periods`` with ``run_type="reconcile"``, timed the same way, and its correction rows
   counted. Checked afterwards: every reconciliation run balances, and on ``--verify`` periods
   spread over the day the lines posted (initial plus corrections) equal a fresh settlement on
   the final data (:func:`market.settlement.reconciling_lines` of a fresh settlement against what
   is posted is empty; this uses the module's private ``_gather`` and ``_posted``).

The target (issue text): 48 intervals x 10,000 households settled in under 30 s, on SQLite and on
PostgreSQL, checked on the initial ``settle_periods``; the reconciliation's time is shown beside it.

Usage
-----
::

    .venv/bin/python bench/settlement.py                       # both backends, 10,000 households
    .venv/bin/python bench/settlement.py --quick               # 500 households
    .venv/bin/python bench/settlement.py --backend sqlite --households 2000
    .venv/bin/python bench/settlement.py --profile var/profiles   # cProfile one interval's settle

With ``--profile DIR`` the settlement of period ``--profile-period`` (default 26, the middle of
the day: most trades) is run under cProfile in both runs and its stats written to
``DIR/<backend>-<run type>-p<period>.prof``; that interval's figures then include the profiler's
overhead, so take the timed figures from a run without it.

PostgreSQL is reached at ``--postgres-url`` (default ``SMARTBRUM_TEST_POSTGRES_URL`` or the
test database, ``postgresql+psycopg://postgres@127.0.0.1:5432/test``). Exit status 1 if
a run does not balance, a count or the verification disagrees, or (at 10,000 households or more)
the target is missed.
"""

# ruff: noqa: E402 (the project's imports must come after the sys.path fix below)

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, func, select

_BENCH = Path(__file__).resolve().parent  # run by path, bench/ heads sys.path: see bench/harness.py
sys.path[:] = [str(_BENCH.parent), *(entry for entry in sys.path if Path(entry or ".").resolve() != _BENCH)]

from bench import harness
from market import settlement as market_settlement
from market.charges import POOL, settle_interval
from market.clearing import clear_interval
from market.intervals import SettlementPeriod, periods_of_day
from market.participants import NewMeter
from market.rules import MarketRules
from market.settlement import (
    INITIAL,
    RECONCILE,
    SettlementConfig,
    SettlementOutcome,
    account_balances,
    reconciling_lines,
    settle_periods,
)
from market.tables import IntervalEnergyRow, LedgerLineRow, OrderRow, TradeRow
from optimiser import Network

DAY = date(2026, 6, 21)
LENGTH_MINUTES = 30
FEEDERS = tuple(f"F{i:02d}" for i in range(1, 21))
SUNNY_FEEDERS = ("F01", "F02")
TARGET_SECONDS = 30.0
TARGET_HOUSEHOLDS = 10_000
TARGET_INTERVALS = 48
#: When things happen (all computed, never the wall clock).
SETUP_AT = datetime(2026, 5, 1, tzinfo=UTC)
ORDERS_FROM = datetime.combine(DAY - timedelta(days=1), datetime.min.time(), UTC)
SETTLED_AT = datetime.combine(DAY + timedelta(days=2), datetime.min.time(), UTC) + timedelta(hours=6)
CHANGED_AT = SETTLED_AT + timedelta(days=8)
RECONCILED_AT = SETTLED_AT + timedelta(days=12)
#: The functions of :mod:`market.settlement` whose time per interval is reported.
PHASES = ("_gather", "_metered", "settle_interval", "_posted", "reconciling_lines", "_post")
log = harness.progress_logger()


# --- the generated day ---------------------------------------------------------------------------


def bench_network(households: int) -> Network:
    """The grid supply point, a primary and 20 feeders; the two sunny feeders' export is
    tight (0.3 kWh per household of the feeder, a fraction of their midday surplus)."""
    return harness.sunny_street_network(
        FEEDERS, households, sunny_feeders=SUNNY_FEEDERS, export_kwh_per_household=0.3
    )


@dataclass
class Homes:
    """The households, as arrays indexed by household (0-based)."""

    ids: list[str]
    meter_ids: list[str]
    feeders: list[str]
    solar: np.ndarray  # bool
    load_factor: np.ndarray  # float, scales the load profile
    kwp: np.ndarray  # float, solar peak power (0 without panels)
    splits: np.ndarray  # bool, places two orders per period

    def __len__(self) -> int:
        return len(self.ids)


def generate_homes(households: int, rng: np.random.Generator) -> Homes:
    """Households round-robin over the feeders, with their load, solar panels and order habits.

    Parameters
    ----------
    households : int
        How many.
    rng : numpy.random.Generator
        The seeded generator.

    Returns
    -------
    Homes
        The households ``H00001`` ... with meters ``M00001`` ...
    """
    feeders = [FEEDERS[i % len(FEEDERS)] for i in range(households)]
    sunny = np.array([feeder in SUNNY_FEEDERS for feeder in feeders])
    solar = rng.random(households) < np.where(sunny, 0.7, 0.25)
    return Homes(
        ids=[f"H{i + 1:05d}" for i in range(households)],
        meter_ids=[f"M{i + 1:05d}" for i in range(households)],
        feeders=feeders,
        solar=solar,
        load_factor=rng.uniform(0.5, 1.8, households),
        kwp=np.where(solar, rng.uniform(2.5, 5.0, households), 0.0),
        splits=rng.random(households) < 0.35,
    )


def load_profile_wh(period: int) -> float:
    """A typical household's consumption in a half-hour of the day (local time), Wh.

    Parameters
    ----------
    period : int
        The settlement period, 1 at local midnight.

    Returns
    -------
    float
        About 10 kWh over the day: a low night, a morning peak, the day and an evening peak.
    """
    hour = (period - 1) / 2
    if hour < 6:
        return 110.0
    if hour < 9:
        return 260.0
    if hour < 16:
        return 170.0
    if hour < 22:
        return 330.0
    return 180.0


def sun(period: int) -> float:
    """The sun's strength in a period of 21 June, 0 at night and 1 at solar noon (local time)."""
    hour = (period - 1) / 2 + 0.25
    if not 5 <= hour <= 21:
        return 0.0
    return float(np.sin(np.pi * (hour - 5) / 16)) ** 1.3


@dataclass
class PeriodEnergy:
    """One period's metered energy per household (arrays indexed by household)."""

    import_wh: np.ndarray
    export_wh: np.ndarray
    estimated: np.ndarray


def generate_energy(homes: Homes, period: int, rng: np.random.Generator) -> PeriodEnergy:
    """Each meter's import and export in a period: load less solar generation, 2% estimated.

    Parameters
    ----------
    homes : Homes
        The households.
    period : int
        The settlement period number.
    rng : numpy.random.Generator
        The seeded generator.

    Returns
    -------
    PeriodEnergy
        Whole Wh; a home with panels both imports and exports a little in a sunny half-hour.
    """
    count = len(homes)
    load = load_profile_wh(period) * homes.load_factor * rng.uniform(0.75, 1.25, count)
    cloud = rng.uniform(0.7, 1.0)  # the same sky over the city, a little different per roof
    generation = homes.kwp * 1000 * 0.5 * 0.8 * sun(period) * cloud * rng.uniform(0.9, 1.1, count)
    both = np.where(generation > 0, 0.05 * load * rng.random(count), 0.0)
    import_wh = np.rint(np.maximum(load - generation, 0) + both).astype(np.int64)
    export_wh = np.rint(np.maximum(generation - load, 0) + both).astype(np.int64)
    return PeriodEnergy(import_wh, export_wh, rng.random(count) < 0.02)


def energy_rows(homes: Homes, period: SettlementPeriod, energy: PeriodEnergy) -> list[dict[str, Any]]:
    """A period's ``interval_energy`` rows as :func:`~market.meter_data.store_meter_energy` stores them.

    Parameters
    ----------
    homes : Homes
        The households (one meter each).
    period : SettlementPeriod
        The period.
    energy : PeriodEnergy
        Its energy per household.

    Returns
    -------
    list of dict
        Revision 1, current, computed five minutes after the period's end.
    """
    computed_at = period.end_utc + timedelta(minutes=5)
    return [
        energy_row(meter_id, period, imported, exported, estimated, revision=1, computed_at=computed_at)
        for meter_id, imported, exported, estimated in zip(
            homes.meter_ids,
            energy.import_wh.tolist(),
            energy.export_wh.tolist(),
            energy.estimated.tolist(),
        )
    ]


def energy_row(
    meter_id: str,
    period: SettlementPeriod,
    import_wh: int,
    export_wh: int,
    estimated: bool,
    *,
    revision: int,
    computed_at: datetime,
) -> dict[str, Any]:
    """One meter's ``interval_energy`` row for ``period``, the current revision."""
    return {
        "meter_id": meter_id,
        "interval_start_utc": period.start_utc,
        "length_minutes": period.length_minutes,
        "settlement_date": period.settlement_date,
        "period": period.period,
        "import_wh": import_wh,
        "export_wh": export_wh,
        "estimated": estimated,
        "revision": revision,
        "is_current": True,
        "computed_at": computed_at,
    }


def order_rows(
    homes: Homes, period: SettlementPeriod, energy: PeriodEnergy, rng: np.random.Generator
) -> list[dict[str, Any]]:
    """A period's orders: each household's forecast of its metered position, bought or sold.

    Parameters
    ----------
    homes : Homes
        The households.
    period : SettlementPeriod
        The period.
    energy : PeriodEnergy
        The period's metered energy (the forecast is it, +-15%).
    rng : numpy.random.Generator
        The seeded generator.

    Returns
    -------
    list of dict
        ``market_order`` rows, open, version 1, placed at random moments of the day before. A
        household that splits places 60% of its quantity at its limit and 40% one step (0.5 to
        5 p) less keen: a lower limit to buy, a higher one to sell.
    """
    count = len(homes)
    forecast = (energy.import_wh - energy.export_wh) * rng.uniform(0.85, 1.15, count)
    buys = forecast >= 0
    quantity = np.maximum(50, np.rint(np.abs(forecast))).astype(np.int64)
    ticks = np.where(buys, rng.integers(800, 3001, count), rng.integers(100, 1501, count))
    step = rng.integers(50, 501, count)
    second_ticks = np.where(buys, np.maximum(100, ticks - step), ticks + step)
    first_quantity = np.where(homes.splits, np.rint(quantity * 0.6).astype(np.int64), quantity)
    placed_ms = rng.integers(0, 20 * 3600 * 1000, (count, 2))
    random_bits = rng.integers(0, 2**63, (count, 2))
    rows = []
    for i, (home, feeder) in enumerate(zip(homes.ids, homes.feeders)):
        side = "buy" if buys[i] else "sell"
        parts = [(int(first_quantity[i]), int(ticks[i]))]
        if homes.splits[i]:
            parts.append((int(quantity[i] - first_quantity[i]), int(second_ticks[i])))
        for k, (quantity_wh, price_ticks) in enumerate(parts):
            at = ORDERS_FROM + timedelta(milliseconds=int(placed_ms[i, k]))
            rows.append(
                {
                    "id": str(uuid.UUID(int=int(random_bits[i, k]) << 64 | i << 8 | k, version=4)),
                    "participant_id": home,
                    "node_id": feeder,
                    "interval_start_utc": period.start_utc,
                    "length_minutes": period.length_minutes,
                    "settlement_date": period.settlement_date,
                    "period": period.period,
                    "side": side,
                    "quantity_wh": quantity_wh,
                    "price_ticks": price_ticks,
                    "status": "open",
                    "version": 1,
                    "priority_at": at,
                    "created_at": at,
                    "updated_at": at,
                    "idempotency_key": None,
                }
            )
    return rows


# --- the setup ----------------------------------------------------------------------------------


def table(row_class: Any) -> sa.Table:
    """The Core table of a SQLModel row class."""
    return row_class.__table__


@dataclass
class Setup:
    """What the setup made, and its seconds."""

    energy_rows: int = 0
    estimated_rows: int = 0
    orders: int = 0
    trades: int = 0
    insert_seconds: float = 0.0
    clearing_seconds: list[float] = field(default_factory=list)
    #: Per period (index 0 = period 1), the energy generated, kept for the reconciliation.
    energy: list[PeriodEnergy] = field(default_factory=list)


def set_up(engine: Engine, homes: Homes, periods: Sequence[SettlementPeriod], seed: int, label: str) -> Setup:
    """Build the market, the day's energy and orders, and clear every period (not timed).

    Parameters
    ----------
    engine : Engine
        A migrated, empty database.
    homes : Homes
        The households.
    periods : sequence of SettlementPeriod
        The day's periods.
    seed : int
        The seed of the day's energy and orders (the same on every backend).
    label : str
        The backend's name, for the progress lines.

    Returns
    -------
    Setup
        Counts and seconds; the generated energy per period.
    """
    setup = Setup()
    rng = np.random.default_rng(seed)
    started = time.perf_counter()
    harness.seed_market(
        engine,
        dict(zip(homes.ids, homes.feeders)),
        now=SETUP_AT,
        network=bench_network(len(homes)),
        meters=[
            NewMeter(meter, home, f"gw{i // 200:03d}.meters.brum", 502, i % 200 + 1, "tcp", "sdm630")
            for i, (meter, home) in enumerate(zip(homes.meter_ids, homes.ids))
        ],
    )
    for period in periods:
        energy = generate_energy(homes, period.period, rng)
        orders = order_rows(homes, period, energy, rng)
        with engine.begin() as connection:
            connection.execute(sa.insert(table(IntervalEnergyRow)), energy_rows(homes, period, energy))
            connection.execute(sa.insert(table(OrderRow)), orders)
        setup.energy.append(energy)
        setup.energy_rows += len(homes)
        setup.estimated_rows += int(energy.estimated.sum())
        setup.orders += len(orders)
    setup.insert_seconds = time.perf_counter() - started
    log.info(
        f"{label}: inserted {len(homes):,} households and meters, {setup.energy_rows:,} energy rows and "
        f"{setup.orders:,} orders in {setup.insert_seconds:.1f} s; clearing {len(periods)} periods"
    )
    rules = MarketRules()
    for period in periods:
        clock = time.perf_counter()
        outcome = clear_interval(
            engine, period=period, rules=rules, now=rules.gate_closure_utc(period), triggered_by="bench"
        )
        setup.clearing_seconds.append(time.perf_counter() - clock)
        if not outcome.created:
            raise RuntimeError(f"{period.key} was already cleared")
    with Session(engine) as session:
        setup.trades = session.exec(select(func.count()).select_from(TradeRow)).one()
    log.info(
        f"{label}: cleared in {sum(setup.clearing_seconds):.1f} s "
        f"({statistics.median(setup.clearing_seconds):.2f} s per period), {setup.trades:,} trades"
    )
    return setup


def change_energy(
    engine: Engine,
    homes: Homes,
    periods: Sequence[SettlementPeriod],
    setup: Setup,
    share: float,
    seed: int,
) -> int:
    """Give ``share`` of the interval energy rows a new revision, as late or corrected readings would.

    Every estimated row is replaced by an actual (its energy moved by up to 20%, ``estimated``
    false); the rest of the share are rows chosen at random whose import moves by 1 to 300 Wh (a
    corrected reading). Revision 1 is retired first (the partial unique index allows one current
    revision), then revision 2 inserted, in one transaction, in bulk (not timed).

    Parameters
    ----------
    engine : Engine
        The database after the initial settlement.
    homes : Homes
        The households.
    periods : sequence of SettlementPeriod
        The day's periods.
    setup : Setup
        The generated energy (revision 1).
    share : float
        The share of all rows to change.
    seed : int
        The seed choosing the rows and the changes.

    Returns
    -------
    int
        The rows changed.
    """
    rng = np.random.default_rng(seed)
    estimated = [(p, h) for p, energy in enumerate(setup.energy) for h in np.flatnonzero(energy.estimated)]
    wanted = max(len(estimated), int(share * len(homes) * len(periods)))
    taken = set(estimated)
    while len(taken) < wanted:
        taken.add((int(rng.integers(len(periods))), int(rng.integers(len(homes)))))
    retire, insert = [], []
    for p, h in sorted(taken):
        energy, period = setup.energy[p], periods[p]
        imported, exported = int(energy.import_wh[h]), int(energy.export_wh[h])
        if energy.estimated[h]:
            imported, exported = (round(wh * rng.uniform(0.8, 1.2)) for wh in (imported, exported))
        else:
            imported = max(0, imported + int(rng.choice((-1, 1)) * rng.integers(1, 301)))
        retire.append({"meter": homes.meter_ids[h], "start": period.start_utc})
        insert.append(
            energy_row(
                homes.meter_ids[h], period, imported, exported, False, revision=2, computed_at=CHANGED_AT
            )
        )
    energy_table = table(IntervalEnergyRow)
    retire_statement = (
        sa.update(energy_table)
        .where(
            energy_table.c.meter_id == sa.bindparam("meter"),
            energy_table.c.interval_start_utc == sa.bindparam("start"),
            energy_table.c.length_minutes == LENGTH_MINUTES,
            energy_table.c.is_current,
        )
        .values(is_current=False)
    )
    with engine.begin() as connection:
        connection.execute(retire_statement, retire)
        connection.execute(sa.insert(energy_table), insert)
    return len(insert)


# --- the timed settlement ------------------------------------------------------------------------


@dataclass
class Settled:
    """One ``settle_periods`` call: its wall time, and per interval the seconds and phase seconds."""

    run_type: str
    seconds: float = 0.0
    interval_seconds: list[float] = field(default_factory=list)
    phases: list[dict[str, float]] = field(default_factory=list)
    outcomes: list[SettlementOutcome] = field(default_factory=list)
    rows: int = 0
    balanced: int = 0
    problems: list[str] = field(default_factory=list)

    def phase(self, name: str) -> list[float]:
        """The seconds of one phase per interval (0 where it did not run)."""
        return [phases.get(name, 0.0) for phases in self.phases]

    def rest(self) -> list[float]:
        """Per interval, the time outside the phases: begin, lock, the run's row, commit."""
        outside = ("_gather", "settle_interval", "_posted", "reconciling_lines", "_post")
        return [
            total - sum(phases.get(name, 0.0) for name in outside)
            for total, phases in zip(self.interval_seconds, self.phases)
        ]


@contextmanager
def instrumented(settled: Settled, profile: tuple[Path, int] | None) -> Iterator[None]:
    """Time :mod:`market.settlement`'s ``settle`` and its phases per interval, for the block.

    The names ``settle`` and :data:`PHASES` in :mod:`market.settlement` are replaced by thin timing
    wrappers and restored afterwards; nothing else changes.

    Parameters
    ----------
    settled : Settled
        Receives one entry per ``settle`` call in ``interval_seconds`` and ``phases``.
    profile : tuple of (Path, int) or None
        A file and a period number: that period's ``settle`` runs under cProfile, stats written
        to the file.
    """
    originals = {name: getattr(market_settlement, name) for name in ("settle", *PHASES)}
    local = threading.local()  # settle_periods may settle two intervals at a time, in threads
    lock = threading.Lock()

    def timed_phase(name: str) -> Callable[..., Any]:
        function = originals[name]

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                local.current[name] = local.current.get(name, 0.0) + time.perf_counter() - started

        return wrapper

    def timed_settle(*args: Any, **kwargs: Any) -> SettlementOutcome:
        local.current = {}
        chosen = profile is not None and kwargs["period"].period == profile[1]
        with harness.profiled(profile[0] if chosen and profile is not None else None):
            started = time.perf_counter()
            try:
                return originals["settle"](*args, **kwargs)
            finally:
                with lock:
                    settled.interval_seconds.append(time.perf_counter() - started)
                    settled.phases.append(local.current)

    for name in PHASES:
        setattr(market_settlement, name, timed_phase(name))
    market_settlement.settle = timed_settle
    try:
        yield
    finally:
        for name, function in originals.items():
            setattr(market_settlement, name, function)


def settle_timed(
    engine: Engine, run_type: str, config: SettlementConfig, now: datetime, profile: tuple[Path, int] | None
) -> Settled:
    """Run ``settle_periods`` for :data:`DAY` once, timed, with the per-interval figures.

    Parameters
    ----------
    engine : Engine
        The database.
    run_type : str
        ``"initial"`` or ``"reconcile"``.
    config : SettlementConfig
        VAT and platform fee.
    now : datetime
        The runs' ``created_at``.
    profile : tuple of (Path, int) or None
        Where to write the cProfile stats of which period's ``settle``, if anywhere.

    Returns
    -------
    Settled
        The wall time of the call, per interval seconds and phases, and the outcomes.
    """
    settled = Settled(run_type)
    with instrumented(settled, profile):
        started = time.perf_counter()
        settled.outcomes = settle_periods(
            engine,
            periods_of_day(DAY, length_minutes=LENGTH_MINUTES),
            run_type=run_type,
            config=config,
            now=now,
            triggered_by="bench",
        )
        settled.seconds = time.perf_counter() - started
    return settled


def check_runs(engine: Engine, settled: Settled) -> None:
    """Count the runs' ledger rows and check that every run balances (not timed).

    Fills ``settled.rows`` (rows counted in ``ledger_line``), ``settled.balanced`` (runs whose
    accounts sum to zero with the pool at zero) and ``settled.problems``.

    Parameters
    ----------
    engine : Engine
        The database.
    settled : Settled
        The ``settle_periods`` call to check.
    """
    runs = [outcome.run for outcome in settled.outcomes if outcome.created]
    if len(runs) != len(settled.outcomes):
        settled.problems.append(f"{len(settled.outcomes) - len(runs)} periods made no new run")
    ledger = table(LedgerLineRow)
    with Session(engine) as session:
        settled.rows = session.execute(
            sa.select(sa.func.count())
            .select_from(ledger)
            .where(ledger.c.run_id.in_([run.id for run in runs]))
        ).scalar_one()
        for run in runs:
            balances = account_balances(session, run_id=run.id)
            if sum(balances.values()) == 0 and balances.get(POOL, 0) == 0:
                settled.balanced += 1
            else:
                settled.problems.append(
                    f"run {run.id} ({run.period.key}) does not balance: sum {sum(balances.values())} cp, "
                    f"pool {balances.get(POOL, 0)} cp"
                )
    if settled.rows != sum(run.lines for run in runs):
        settled.problems.append(
            f"{settled.rows:,} ledger rows counted, the runs say {sum(run.lines for run in runs):,}"
        )


def verify_final(
    engine: Engine, periods: Sequence[SettlementPeriod], config: SettlementConfig
) -> tuple[int, list[str]]:
    """Check that what is posted for ``periods`` equals a fresh settlement on the final data.

    Uses :mod:`market.settlement`'s private ``_gather`` and ``_posted`` (the same inputs a run
    reads, and the posted totals by line identity); the public
    :func:`~market.settlement.reconciling_lines` must then have nothing to correct.

    Parameters
    ----------
    engine : Engine
        The database after the reconciliation.
    periods : sequence of SettlementPeriod
        The periods to check.
    config : SettlementConfig
        The settlement's terms.

    Returns
    -------
    tuple of (int, list of str)
        The periods that agree, and a problem per period that does not.
    """
    agree, problems = 0, []
    with Session(engine) as session:
        for period in periods:
            gathered = market_settlement._gather(session, period, config)
            if gathered.inputs is None:
                problems.append(f"{period.key} has no clearing run")
                continue
            fresh = settle_interval(gathered.inputs).lines
            left = reconciling_lines(market_settlement._posted(session, period), fresh)
            if left:
                problems.append(f"{period.key}: {len(left)} lines differ from a fresh settlement")
            else:
                agree += 1
    return agree, problems


# --- one backend ---------------------------------------------------------------------------------


@dataclass(kw_only=True)
class SettlementRun(harness.BackendRun):
    """Everything measured on one backend."""

    setup: Setup
    initial: Settled
    changed_rows: int
    change_seconds: float
    reconcile: Settled
    verified: int
    verify_periods: int


def run_backend(
    backend: str, homes: Homes, args: argparse.Namespace, config: SettlementConfig
) -> SettlementRun:
    """Set up the day, settle it, change 5% of the energy and reconcile it, on one backend.

    Parameters
    ----------
    backend : str
        ``"sqlite"`` or ``"postgresql"``.
    homes : Homes
        The households.
    args : argparse.Namespace
        The command line.
    config : SettlementConfig
        VAT and platform fee.

    Returns
    -------
    SettlementRun
        The figures and any inconsistency found.
    """
    periods = periods_of_day(DAY, length_minutes=LENGTH_MINUTES)

    def profile(run_type: str) -> tuple[Path, int] | None:
        if args.profile is None:
            return None
        return Path(args.profile) / f"{backend}-{run_type}-p{args.profile_period}.prof", args.profile_period

    with harness.fresh_database(backend, args.postgres_url) as database:
        engine = database.engine
        setup = set_up(engine, homes, periods, args.seed, backend)
        log.info(f"{backend}: settling {len(periods)} periods (initial)")
        initial = settle_timed(engine, INITIAL, config, SETTLED_AT, profile(INITIAL))
        log.info(f"{backend}: initial run {initial.seconds:.1f} s; checking the runs")
        check_runs(engine, initial)
        started = time.perf_counter()
        changed = change_energy(engine, homes, periods, setup, args.changed, args.seed + 1)
        change_seconds = time.perf_counter() - started
        log.info(f"{backend}: {changed:,} energy rows revised; reconciling")
        reconcile = settle_timed(engine, RECONCILE, config, RECONCILED_AT, profile(RECONCILE))
        log.info(f"{backend}: reconciliation {reconcile.seconds:.1f} s; checking the runs")
        check_runs(engine, reconcile)
        sample = [
            periods[round(k * (len(periods) - 1) / max(1, args.verify - 1))] for k in range(args.verify)
        ]
        verified, problems = verify_final(engine, sorted(set(sample)), config)
    return SettlementRun(
        backend=backend,
        households=len(homes),
        setup=setup,
        initial=initial,
        changed_rows=changed,
        change_seconds=change_seconds,
        reconcile=reconcile,
        verified=verified,
        verify_periods=len(set(sample)),
        problems=initial.problems + reconcile.problems + problems,
    )


# --- the report ----------------------------------------------------------------------------------


def report(runs: Sequence[SettlementRun], args: argparse.Namespace) -> bool:
    """Print the table and the target check per backend; whether everything passed.

    Parameters
    ----------
    runs : sequence of SettlementRun
        One per backend.
    args : argparse.Namespace
        The command line.

    Returns
    -------
    bool
        ``True`` if every check passed and (at the target's size) the target was met.
    """
    table = harness.BackendTable(f"Settlement of {DAY} (48 periods) for {args.households:,} households", runs)
    row = table.row

    def median(values: Sequence[float]) -> str:
        return f"{statistics.median(values):.3f}"

    def statuses(settled: Settled) -> str:
        counts = Counter(outcome.run.status for outcome in settled.outcomes)
        return ", ".join(f"{count} {status}" for status, count in sorted(counts.items()))

    row("interval energy rows (estimated)", lambda r: f"{r.setup.energy_rows:,} ({r.setup.estimated_rows:,})")
    row("orders / trades (day)", lambda r: f"{r.setup.orders:,} / {r.setup.trades:,}")
    row("setup: bulk inserts s", lambda r: f"{r.setup.insert_seconds:.1f}")
    row(
        "setup: clear_interval x 48 s (median)",
        lambda r: f"{sum(r.setup.clearing_seconds):.1f} ({statistics.median(r.setup.clearing_seconds):.2f})",
    )
    for settled_of, name in ((lambda r: r.initial, "initial"), (lambda r: r.reconcile, "reconcile")):
        row(
            f"[bold]{name}: settle_periods s[/bold]",
            lambda r, s=settled_of: f"[bold]{s(r).seconds:.2f}[/bold]",
        )
        row(
            f"{name}: s per interval, median / max",
            lambda r, s=settled_of: f"{median(s(r).interval_seconds)} / {max(s(r).interval_seconds):.3f}",
        )
        row(f"{name}: s, first interval", lambda r, s=settled_of: f"{s(r).interval_seconds[0]:.3f}")
        row("  median: read inputs (_gather)", lambda r, s=settled_of: median(s(r).phase("_gather")))
        row("    of which meter energy (_metered)", lambda r, s=settled_of: median(s(r).phase("_metered")))
        row(
            "  median: rules (settle_interval)",
            lambda r, s=settled_of: median(s(r).phase("settle_interval")),
        )
        if name == "reconcile":
            row(
                "  median: read posted lines (_posted)",
                lambda r, s=settled_of: median(s(r).phase("_posted")),
            )
            row(
                "  median: corrections (reconciling_lines)",
                lambda r, s=settled_of: median(s(r).phase("reconciling_lines")),
            )
        row("  median: insert ledger rows (_post)", lambda r, s=settled_of: median(s(r).phase("_post")))
        row("  median: begin, lock, run row, commit", lambda r, s=settled_of: median(s(r).rest()))
        row(f"{name}: runs", lambda r, s=settled_of: statuses(s(r)))
        row(
            f"{name}: ledger rows written (per interval)",
            lambda r, s=settled_of: f"{s(r).rows:,} ({s(r).rows / max(1, len(s(r).outcomes)):,.0f})",
        )
        row(
            f"{name}: runs balancing to zero",
            lambda r, s=settled_of: f"{s(r).balanced} of {len(s(r).outcomes)}",
        )
        if name == "initial":
            row(
                "energy rows revised (s to write)",
                lambda r: f"{r.changed_rows:,} ({r.change_seconds:.1f})",
            )
    row("posted = fresh settlement (sample)", lambda r: f"{r.verified} of {r.verify_periods} periods")
    console = harness.figures_console()
    console.print(table)

    checks = harness.TargetChecks()
    scale = "" if args.households == TARGET_HOUSEHOLDS else f"; run with {args.households:,} households"
    for run in runs:
        checks.target(
            f"{run.backend}: {TARGET_INTERVALS} intervals x {TARGET_HOUSEHOLDS:,} households "
            f"< {TARGET_SECONDS:.0f} s",
            run.initial.seconds < TARGET_SECONDS,
            f"initial {run.initial.seconds:.1f} s; reconciliation {run.reconcile.seconds:.1f} s{scale}",
            binding=args.households >= TARGET_HOUSEHOLDS,
        )
        for problem in run.problems:
            checks.problem(f"{run.backend}: problem: {problem}")
    checks.print(console)
    console.print(f"load average at the end: {harness.load_average():.2f}")
    return checks.passed


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line; ``--quick`` sets 500 households unless ``--households`` is given."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    harness.add_database_arguments(parser)
    parser.add_argument("--households", type=int, default=None, help="default 10,000 (500 with --quick)")
    parser.add_argument("--quick", action="store_true", help="500 households")
    parser.add_argument("--changed", type=float, default=0.05, help="share of energy rows revised (0.05)")
    parser.add_argument("--platform-fee", type=Decimal, default=Decimal("0.1"), help="p/kWh (0.1)")
    parser.add_argument("--vat", type=Decimal, default=Decimal("0.05"), help="VAT rate (0.05)")
    parser.add_argument("--verify", type=int, default=4, help="periods checked against a fresh settlement")
    parser.add_argument("--seed", type=int, default=20260621)
    parser.add_argument("--profile", metavar="DIR", help="write cProfile stats of one interval's settle here")
    parser.add_argument("--profile-period", type=int, default=26, help="the period profiled (26)")
    args = parser.parse_args(argv)
    harness.fill_sizes(args, {"households": (TARGET_HOUSEHOLDS, 500)})
    if args.households < 1 or not 0 <= args.changed <= 1 or not 1 <= args.verify <= 48:
        parser.error("--households must be positive, --changed 0 to 1, --verify 1 to 48")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; the exit status is 1 if a check fails or the target is missed at scale."""
    args = parse_args(argv)
    backends = harness.chosen_backends(args.backend)
    harness.figures_console().print(
        harness.machine_notes(packages=("SQLAlchemy",), backends=backends, postgres_url=args.postgres_url),
        soft_wrap=True,
    )
    config = SettlementConfig(vat_rate=args.vat, platform_fee_p_per_kwh=args.platform_fee)
    homes = generate_homes(args.households, np.random.default_rng(args.seed))
    log.info(f"{len(homes):,} households ({int(homes.solar.sum()):,} with solar) on {len(FEEDERS)} feeders")
    runs = [run_backend(backend, homes, args, config) for backend in backends]
    return 0 if report(runs, args) else 1


if __name__ == "__main__":
    sys.exit(main())
