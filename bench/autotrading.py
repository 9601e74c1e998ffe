"""Benchmark of automatic trading's planning run (issue 17): 10,000 households planned end to end.

What it measures
----------------
On each backend (a fresh SQLite file, or a fresh schema in the local PostgreSQL, dropped
afterwards), built by the Alembic migrations:

1. Setup, not timed (its seconds are reported). The operator, a feeder tree (``GSP``, ``P1``,
   100 feeders, two of them sunny streets), the backstop tariff (24.5 / 4.1 p/kWh) and
   ``--households`` households round-robin over the feeders, each with a meter, through the
   market's bulk registration (:func:`bench.harness.seed_market`). Each household gets a strategy
   drawn as bench/plan.py draws them (independently 40% with PV, 25% a home battery, 25% an EV;
   floors 3 to 8 p/kWh, ceilings 18 to 30), checked by :func:`market.strategies.parse_strategy`
   and :func:`~market.strategies.check_strategy_rules` and bulk-inserted as version 1 in the
   ``strategy_version`` table with the very document :func:`~market.strategies.set_strategy`
   stores (``Strategy.model_dump_json()``): calling it per household would take a lock, a read
   and a flush each, which a district joining does not do either. Then ``--days`` days of
   half-hourly metered interval energy for every meter up to the platform clock, bulk-inserted
   per period as :func:`market.meter_data.store_meter_energy` stores it (revision 1, current):
   a parametric demand profile by local half-hour (a night trough, a morning rise, an evening
   peak; weekends later and higher) scaled per household (0.5 to 1.8) with 25% noise per period;
   for the homes with PV, a mid-April clear-sky curve for Birmingham times the declared kWp, the
   day's city-wide cloudiness (0.3 to 1) and a little per roof; for the homes with an EV, its
   charging at full power from plug-in on 60% of evenings (they charged dumbly before joining);
   1% of periods estimated. Last, seven days of cleared prices at every node (the outlook's
   history): one current clearing run per period with a node price each, a day curve between
   the tariffs, lower at midday on the sunny streets, a little noise per node. On PostgreSQL the
   tables are then analysed, as autovacuum would have done after such inserts.

2. **The planning run, timed**: :func:`market.autotrading.plan_strategies` at a platform clock
   5 seconds after a gate closure (12:25:05 UTC, 13:25 BST, on Wednesday 15 April 2026; the
   first period planned starts at 14:00 BST, the last at 19:30 BST), the clock then running in
   real time (so the run would stop at the next gate like the scheduler's). It is split into its
   stages by thin wrappers around the functions it calls, in :mod:`market.autotrading`'s
   namespace (the code measured is the platform's own, unchanged): reading the strategies,
   the households' nodes and previous plans, the histories, the forecasts, the price outlook,
   building the plan requests (the gap before planning), planning (the LP), and the orders and
   plans (a transaction per batch of households, a savepoint each): reading each batch's
   households (:func:`market.strategies.read_strategy_books` and their stored plans), applying the
   orders, storing the plans, beginning and committing the transactions, and the rest (the
   savepoints, the clock). Then a **second run** right after, with nothing changed: every order is
   already as its plan wants, the idempotent path.

The runs are checked afterwards: every household planned, none failed or left unreached, the open
strategy orders as many as the first run placed, and the second run placing, amending and
cancelling nothing.

The target (issue 17): plans for 10,000 households for the next 12 periods in under 60 s, taken
as the first run's whole time (every planning run's, the second included), binding at 10,000
households or more.

Usage
-----
::

    .venv/bin/python bench/autotrading.py                  # both backends, 10,000 households, 14 days
    .venv/bin/python bench/autotrading.py --quick          # 500 households, 3 days
    .venv/bin/python bench/autotrading.py --backend postgresql --profile var/profiles

With ``--profile DIR`` each timed run is under cProfile, stats written to
``DIR/<backend>-run<n>.prof``; the figures then include the profiler's overhead.
"""

# ruff: noqa: E402 (the project's imports must come after the sys.path fix below)

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, func, select

_BENCH = Path(__file__).resolve().parent  # run by path, bench/ heads sys.path: see bench/harness.py
sys.path[:] = [str(_BENCH.parent), *(entry for entry in sys.path if Path(entry or ".").resolve() != _BENCH)]

import market.autotrading as autotrading
from bench import harness
from market.autotrading import HORIZON, OUTLOOK_DAYS, PlanningReport, plan_strategies
from market.database import bulk_insert, transaction
from market.intervals import SettlementPeriod, period_at
from market.orders import OPEN, STRATEGY
from market.participants import NewMeter
from market.rules import MarketRules
from market.strategies import check_strategy_rules, parse_strategy
from market.tables import (
    ClearingRunRow,
    IntervalEnergyRow,
    NetworkVersionRow,
    NodePriceRow,
    OrderRow,
    StrategyPlanRow,
    StrategyVersionRow,
    TariffRow,
)

#: The platform clock when the first run starts: 5 s after the gate of the 12:30 UTC period closed.
NOW = datetime(2026, 4, 15, 12, 25, 5, tzinfo=UTC)
FEEDERS = tuple(f"F{i:03d}" for i in range(1, 101))
SUNNY_FEEDERS = ("F001", "F002")
TARGET_S = 60.0
TARGET_HOUSEHOLDS = 10_000
RULES = MarketRules()
_LONDON = ZoneInfo("Europe/London")
log = harness.progress_logger()


# --- the seeded city -----------------------------------------------------------------------------


def dec(value: float, places: int) -> Decimal:
    """A float drawn by NumPy as an exact Decimal with ``places`` decimals."""
    return Decimal(f"{value:.{places}f}")


@dataclass
class City:
    """The households, their strategies' documents and what drives their meters."""

    ids: list[str]
    meter_ids: list[str]
    feeders: list[str]
    documents: list[dict[str, Any]]
    load_factor: np.ndarray  # float per household
    kwp: np.ndarray  # float, 0 without PV
    ev_kw: np.ndarray  # float, 0 without an EV
    ev_kwh: np.ndarray  # float, the EV's evening charge
    ev_from_hour: np.ndarray  # int, local plug-in hour

    def __len__(self) -> int:
        return len(self.ids)

    def kinds(self) -> dict[str, int]:
        """How many strategies have PV, a battery, an EV."""
        return {part: sum(1 for d in self.documents if part in d) for part in ("pv", "battery", "ev")}


def generate_city(households: int, rng: np.random.Generator) -> City:
    """Households ``H00001`` ... round-robin over the feeders, with meters ``M00001`` ... and a
    strategy each (module docstring)."""
    documents: list[dict[str, Any]] = []
    kwp = np.zeros(households)
    ev_kw = np.zeros(households)
    ev_kwh = np.zeros(households)
    ev_from = np.zeros(households, dtype=np.int64)
    for i in range(households):
        document: dict[str, Any] = {
            "sell_floor_p_per_kwh": str(dec(rng.uniform(3, 8), 2)),
            "buy_ceiling_p_per_kwh": str(dec(rng.uniform(18, 30), 2)),
        }
        if rng.random() < 0.4:
            kwp[i] = float(dec(rng.uniform(2, 6), 2))
            document["pv"] = {
                "kwp": str(dec(kwp[i], 2)),
                "tilt_deg": str(int(rng.integers(20, 46))),
                "azimuth_deg": str(int(rng.integers(120, 241))),
            }
        if rng.random() < 0.25:
            capacity = rng.uniform(5, 13.5)
            power = rng.uniform(2.5, 5)
            document["battery"] = {
                "capacity_kwh": str(dec(capacity, 1)),
                "charge_kw": str(dec(power, 1)),
                "discharge_kw": str(dec(power, 1)),
                "round_trip_efficiency_percent": str(dec(rng.uniform(85, 95), 1)),
                "reserve_kwh": str(dec(capacity * 0.2 if rng.random() < 1 / 3 else 0.0, 1)),
            }
        if rng.random() < 0.25:
            ev_kw[i] = float(rng.choice([3.6, 7.4, 11.0]))
            ev_kwh[i] = float(dec(rng.uniform(5, 30), 1))
            ev_from[i] = int(rng.integers(17, 21))
            document["ev"] = {
                "charge_kw": str(ev_kw[i]),
                "plugged_in_from": f"{ev_from[i]:02d}:00",
                "departure": f"{int(rng.integers(6, 9)):02d}:30",
                "energy_needed_kwh": str(dec(ev_kwh[i], 1)),
            }
        documents.append(document)
    return City(
        ids=[f"H{i + 1:05d}" for i in range(households)],
        meter_ids=[f"M{i + 1:05d}" for i in range(households)],
        feeders=[FEEDERS[i % len(FEEDERS)] for i in range(households)],
        documents=documents,
        load_factor=rng.uniform(0.5, 1.8, households),
        kwp=kwp,
        ev_kw=ev_kw,
        ev_kwh=ev_kwh,
        ev_from_hour=ev_from,
    )


def demand_kwh(local: datetime) -> float:
    """A typical home's demand in the half-hour starting at ``local`` (Europe/London), kWh."""
    hour = local.hour + local.minute / 60 + 0.25
    weekend = local.weekday() >= 5
    morning = 7.5 + (1.5 if weekend else 0.0)
    shape = (
        0.11
        + 0.10 * np.exp(-(((hour - morning) / 1.2) ** 2))
        + 0.05 * (9 <= hour < 17) * (1.5 if weekend else 1.0)
        + 0.22 * np.exp(-(((hour - 18.5) / 2.0) ** 2))
        + 0.04 * (hour >= 22)
    )
    return float(shape)


def sun(local: datetime) -> float:
    """Mid-April clear-sky output per kWp in the half-hour starting at ``local``, kWh (a sine from
    06:15 to 20:00 BST peaking at 13:10, about 0.38 kWh per kWp at noon)."""
    hour = local.hour + local.minute / 60 + 0.25
    if not 6.25 <= hour <= 20.0:
        return 0.0
    return 0.38 * float(np.sin(np.pi * (hour - 6.25) / 13.75)) ** 1.4


def metered_periods(days: int) -> list[SettlementPeriod]:
    """The periods of the last ``days`` days whose energy is known at :data:`NOW` (ended, and
    computed five minutes after)."""
    last = period_at(NOW - timedelta(minutes=5) - timedelta(minutes=30))
    periods = [last]
    for _ in range(days * 48 - 1):
        periods.append(period_at(periods[-1].start_utc - timedelta(minutes=1)))
    return periods[::-1]


def generate_energy(
    city: City, period: SettlementPeriod, cloud: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each meter's import, export (whole Wh) and estimated flag in ``period``."""
    local = period.start_utc.astimezone(_LONDON)
    count = len(city)
    load = demand_kwh(local) * city.load_factor * rng.lognormal(0.0, 0.25, count)
    hour = local.hour
    charging = (city.ev_kw > 0) & (hour >= city.ev_from_hour)
    hours_in = (local.hour - city.ev_from_hour) + local.minute / 60
    tonight = rng.random(count) < 0.6
    ev = np.where(
        charging & tonight & (hours_in * city.ev_kw < city.ev_kwh),
        np.minimum(city.ev_kw / 2, np.maximum(city.ev_kwh - hours_in * city.ev_kw, 0)),
        0.0,
    )
    generation = city.kwp * sun(local) * cloud * rng.uniform(0.85, 1.1, count)
    net = load + ev - generation
    import_wh = np.rint(np.maximum(net, 0) * 1000).astype(np.int64)
    export_wh = np.rint(np.maximum(-net, 0) * 1000).astype(np.int64)
    return import_wh, export_wh, rng.random(count) < 0.01


def outlook_price(period: SettlementPeriod, feeder: str, rng: np.random.Generator) -> Decimal:
    """A cleared local price: a day curve between the tariffs, low at midday on a sunny street."""
    local = period.start_utc.astimezone(_LONDON)
    hour = local.hour + local.minute / 60
    position = 0.75 if 16 <= hour < 20 else 0.3 if hour >= 23 or hour < 6 else 0.5
    if feeder in SUNNY_FEEDERS and 10 <= hour < 16:
        position = 0.05
    low, high = float(harness.EXPORT_P_PER_KWH), float(harness.IMPORT_P_PER_KWH)
    return dec(low + (high - low) * position + rng.normal(0, 0.3), 2)


@dataclass
class Seeded:
    """What the setup made: counts and seconds."""

    households: int = 0
    kinds: dict[str, int] = field(default_factory=dict)
    energy_rows: int = 0
    clearing_runs: int = 0
    node_prices: int = 0
    seconds: dict[str, float] = field(default_factory=dict)


def seed(engine: Engine, city: City, args: argparse.Namespace, label: str) -> Seeded:
    """Build the city, its strategies, its meters' history and the cleared prices (not timed)."""
    seeded = Seeded(households=len(city), kinds=city.kinds())
    rng = np.random.default_rng(args.seed + 1)
    setup_at = NOW - timedelta(days=args.days + 2)
    started = time.perf_counter()
    harness.seed_market(
        engine,
        dict(zip(city.ids, city.feeders)),
        now=setup_at,
        network=harness.sunny_street_network(
            FEEDERS, len(city), sunny_feeders=SUNNY_FEEDERS, export_kwh_per_household=0.3
        ),
        meters=[
            NewMeter(meter, home, f"gw{i // 200:03d}.meters.brum", 502, i % 200 + 1, "tcp", "sdm630")
            for i, (meter, home) in enumerate(zip(city.meter_ids, city.ids))
        ],
    )
    seeded.seconds["households and meters"] = time.perf_counter() - started

    started = time.perf_counter()
    rows = []
    for household, document in zip(city.ids, city.documents):
        strategy = parse_strategy(document)
        check_strategy_rules(strategy, RULES)
        rows.append((household, strategy.model_dump_json()))
    with transaction(engine) as session:
        bulk_insert(
            session,
            table(StrategyVersionRow),
            ("participant_id", "document"),
            rows,
            constants={"version": 1, "paused": False, "created_at": setup_at, "created_by": "bench"},
        )
    seeded.seconds["strategies"] = time.perf_counter() - started
    log.info(f"{label}: {len(city):,} households and strategies ({seeded.kinds})")

    started = time.perf_counter()
    periods = metered_periods(args.days)
    clouds: dict[object, float] = {}
    for day_start in range(0, len(periods), 48):
        with transaction(engine) as session:
            for period in periods[day_start : day_start + 48]:
                local_day = period.start_utc.astimezone(_LONDON).date()
                cloud = clouds.setdefault(local_day, float(rng.uniform(0.3, 1.0)))
                import_wh, export_wh, estimated = generate_energy(city, period, cloud, rng)
                seeded.energy_rows += bulk_insert(
                    session,
                    table(IntervalEnergyRow),
                    ("meter_id", "import_wh", "export_wh", "estimated"),
                    zip(city.meter_ids, import_wh.tolist(), export_wh.tolist(), estimated.tolist()),
                    constants={
                        "interval_start_utc": period.start_utc,
                        "length_minutes": period.length_minutes,
                        "settlement_date": period.settlement_date,
                        "period": period.period,
                        "revision": 1,
                        "is_current": True,
                        "computed_at": period.end_utc + timedelta(minutes=5),
                    },
                )
        log.info(
            f"{label}: {seeded.energy_rows:,} interval energy rows ({time.perf_counter() - started:.0f} s)"
        )
    seeded.seconds["interval energy"] = time.perf_counter() - started

    started = time.perf_counter()
    cleared = [
        p for p in metered_periods(OUTLOOK_DAYS + 1) if p.start_utc >= NOW - timedelta(days=OUTLOOK_DAYS)
    ]
    nodes = ("P1", *FEEDERS)
    with transaction(engine) as session:
        network_id = session.exec(select(func.max(NetworkVersionRow.id))).one()
        tariff_id = session.exec(select(func.max(TariffRow.id))).one()
        assert network_id is not None
        assert tariff_id is not None
        for period in cleared:
            at = RULES.gate_closure_utc(period) + timedelta(seconds=2)
            run = ClearingRunRow(
                interval_start_utc=period.start_utc,
                length_minutes=period.length_minutes,
                settlement_date=period.settlement_date,
                period=period.period,
                sequence=1,
                is_current=True,
                inputs_digest="0" * 64,
                network_version_id=network_id,
                tariff_id=tariff_id,
                status="optimal",
                welfare_p=Decimal(0),
                grid_import_wh=0,
                grid_export_wh=0,
                orders=0,
                excluded_orders=0,
                price_levels=0,
                rounds=1,
                solve_seconds=0.1,
                total_seconds=0.5,
                started_at=at,
                finished_at=at,
                triggered_by="bench",
            )
            session.add(run)
            session.flush()
            seeded.node_prices += bulk_insert(
                session,
                table(NodePriceRow),
                ("node_id", "price_p_per_kwh"),
                [(node, outlook_price(period, node, rng)) for node in nodes],
                constants={"run_id": run.id},
            )
        seeded.clearing_runs = len(cleared)
    seeded.seconds["cleared prices"] = time.perf_counter() - started
    if engine.dialect.name == "postgresql":
        started = time.perf_counter()
        with engine.connect() as connection:
            connection.execute(sa.text("ANALYZE"))
            connection.commit()
        seeded.seconds["ANALYZE"] = time.perf_counter() - started
    log.info(f"{label}: {seeded.clearing_runs} cleared periods of prices; seeded")
    return seeded


def table(row_class: Any) -> sa.Table:
    """The Core table of a SQLModel row class."""
    return row_class.__table__  # type: ignore[no-any-return]


# --- the timed run -------------------------------------------------------------------------------

#: The functions :func:`plan_strategies` calls, wrapped in its module's namespace, by stage.
STAGES = {
    "households_with_strategies": "reading strategies",
    "_nodes_of": "reading nodes and previous plans",
    "_stored_plans": "reading nodes and previous plans",  # in the loop: "  reading each batch"
    "read_strategy_books": "  reading each batch",
    "read_forecast_histories": "reading histories",
    "forecast_households": "forecasting",
    "_household_nodes": "price outlook",
    "network_in_force": "price outlook",
    "forecast_positions": "price outlook",
    "price_outlook": "price outlook",
    "plan_households": "planning (LP)",
    "apply_strategy_orders": "  applying orders",
    "_store_plan": "  storing plans",
}
ROWS = (
    "reading strategies",
    "reading histories",
    "forecasting",
    "price outlook",
    "reading nodes and previous plans",
    "building plan requests",
    "planning (LP)",
    "orders and plans, in all",
    "  reading each batch",
    "  applying orders",
    "  storing plans",
    "  begin and commit",
    "  the rest of the loop",
    "the rest",
)


@dataclass
class Timings:
    """Seconds per stage of one run, and when the LP ended (the per-household loop began)."""

    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    ended: dict[str, float] = field(default_factory=dict)
    started: dict[str, float] = field(default_factory=dict)
    households: int = 0


@contextmanager
def instrumented(timings: Timings, label: str) -> Iterator[None]:
    """Time the stages of :func:`plan_strategies` by wrapping what it calls (module docstring)."""
    originals = {name: getattr(autotrading, name) for name in [*STAGES, "transaction"]}

    def timed(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            began = time.perf_counter()
            timings.started.setdefault(name, began)
            stage = STAGES[name]
            if name == "_stored_plans" and "plan_households" in timings.ended:
                stage = "  reading each batch"
            try:
                return function(*args, **kwargs)
            finally:
                ended = time.perf_counter()
                timings.seconds[stage] += ended - began
                timings.ended[name] = ended
                if name == "apply_strategy_orders":
                    timings.households += 1
                    if timings.households % 2000 == 0:
                        log.info(f"{label}: {timings.households:,} households' orders applied")

        return wrapper

    real_transaction = originals["transaction"]

    @contextmanager
    def timed_transaction(engine: Engine) -> Iterator[Session]:
        began = time.perf_counter()
        manager = real_transaction(engine)
        session = manager.__enter__()
        timings.seconds["  begin and commit"] += time.perf_counter() - began
        try:
            yield session
        except BaseException:
            if not manager.__exit__(*sys.exc_info()):
                raise
        else:
            began = time.perf_counter()
            manager.__exit__(None, None, None)
            timings.seconds["  begin and commit"] += time.perf_counter() - began

    for name in STAGES:
        setattr(autotrading, name, timed(name, originals[name]))
    autotrading.transaction = timed_transaction  # type: ignore[assignment]
    try:
        yield
    finally:
        for name, original in originals.items():
            setattr(autotrading, name, original)


@dataclass
class TimedRun:
    """One planning run: its report, its whole time and its stages."""

    report: PlanningReport
    total_s: float
    stages: dict[str, float]


def timed_run(engine: Engine, started_clock: float, label: str, profile: Path | None) -> TimedRun:
    """One :func:`plan_strategies` at the platform clock (``NOW`` plus the seconds since
    ``started_clock``), timed and split into stages."""

    def clock() -> datetime:
        return NOW + timedelta(seconds=time.perf_counter() - started_clock)

    timings = Timings()
    with instrumented(timings, label), harness.profiled(profile):
        began = time.perf_counter()
        report = plan_strategies(engine, rules=RULES, now=clock(), clock=clock)
        total = time.perf_counter() - began
    stages = {name: timings.seconds.get(name, 0.0) for name in ROWS}
    loop_began = timings.ended.get("plan_households", began + total)
    loop = began + total - loop_began
    stages["orders and plans, in all"] = loop
    stages["  the rest of the loop"] = loop - sum(
        stages[name]
        for name in ("  reading each batch", "  applying orders", "  storing plans", "  begin and commit")
    )
    lp_began = timings.started.get("plan_households", loop_began)
    forecast_ended = timings.ended.get("forecast_households", began)
    stages["building plan requests"] = max(0.0, lp_began - forecast_ended)
    stages["the rest"] = total - sum(stages[name] for name in ROWS[:8])
    return TimedRun(report, total, stages)


# --- one backend ---------------------------------------------------------------------------------


@dataclass(kw_only=True)
class AutotradingRun(harness.BackendRun):
    """Everything measured on one backend."""

    seeded: Seeded
    runs: list[TimedRun]
    open_strategy_orders: int = 0
    plans_stored: int = 0


def check(engine: Engine, result: AutotradingRun) -> None:
    """The runs did what a planning run must (module docstring); problems go on ``result``."""
    first, second = (run.report for run in result.runs)
    with Session(engine) as session:
        result.open_strategy_orders = session.exec(
            select(func.count())
            .select_from(OrderRow)
            .where(OrderRow.status == OPEN, OrderRow.source == STRATEGY)
        ).one()
        result.plans_stored = session.exec(select(func.count()).select_from(StrategyPlanRow)).one()
        touched = session.exec(
            select(func.count()).select_from(OrderRow).where(col(OrderRow.version) > 1)
        ).one()
    for n, report in enumerate((first, second), start=1):
        if report.failed:
            some = "; ".join(f"{k}: {v}" for k, v in list(report.failed.items())[:3])
            result.problems.append(f"run {n}: {len(report.failed)} households failed ({some})")
        if report.not_reached:
            result.problems.append(f"run {n}: {report.not_reached} households not reached before the gate")
        if report.planned != result.households:
            result.problems.append(f"run {n}: {report.planned:,} of {result.households:,} households planned")
    if (second.placed, second.amended, second.cancelled) != (0, 0, 0) or touched:
        result.problems.append(
            f"run 2 changed orders: {second.placed} placed, {second.amended} amended, "
            f"{second.cancelled} cancelled, {touched} with a new version"
        )
    if result.open_strategy_orders != first.placed:
        result.problems.append(
            f"{result.open_strategy_orders:,} open strategy orders, but run 1 placed {first.placed:,}"
        )
    if result.plans_stored != result.households:
        result.problems.append(f"{result.plans_stored:,} plans stored for {result.households:,} households")


def run_backend(backend: str, city: City, args: argparse.Namespace) -> AutotradingRun:
    """Seed the city on one backend and time two planning runs."""
    with harness.fresh_database(backend, args.postgres_url) as database:
        seeded = seed(database.engine, city, args, backend)
        runs = []
        started_clock = time.perf_counter()
        for n in (1, 2):
            log.info(f"{backend}: planning run {n}")
            profile = Path(args.profile) / f"{backend}-run{n}.prof" if args.profile else None
            run = timed_run(database.engine, started_clock, backend, profile)
            log.info(
                f"{backend}: run {n}: {run.total_s:.1f} s, {run.report.planned:,} planned, "
                f"{run.report.placed:,} placed, {run.report.amended:,} amended, "
                f"{run.report.cancelled:,} cancelled"
            )
            runs.append(run)
        result = AutotradingRun(backend=backend, households=len(city), seeded=seeded, runs=runs)
        check(database.engine, result)
    return result


# --- the report ----------------------------------------------------------------------------------


@dataclass(kw_only=True)
class Column(harness.BackendRun):
    """One column of the stages table: a backend's run."""

    run: TimedRun


def report(results: Sequence[AutotradingRun], args: argparse.Namespace) -> bool:
    """Print the seeding table, the stages table and the target checks; whether all passed."""
    console = harness.figures_console()
    setup = harness.BackendTable(
        f"The city seeded: {args.households:,} households with a strategy, {args.days} days of "
        f"half-hourly meter data, {OUTLOOK_DAYS} days of cleared prices",
        results,
    )
    setup.row(
        "strategies with PV / battery / EV",
        lambda r: " / ".join(f"{r.seeded.kinds[k]:,}" for k in ("pv", "battery", "ev")),
    )
    setup.row("interval energy rows", lambda r: f"{r.seeded.energy_rows:,}")
    setup.row(
        "cleared periods / node prices", lambda r: f"{r.seeded.clearing_runs} / {r.seeded.node_prices:,}"
    )
    for name in results[0].seeded.seconds if results else ():
        setup.row(f"setup: {name} s", lambda r, name=name: f"{r.seeded.seconds.get(name, 0.0):.1f}")
    console.print(setup)

    columns = [
        Column(backend=f"{r.backend}, run {n}", households=r.households, run=run)
        for r in results
        for n, run in enumerate(r.runs, start=1)
    ]
    periods = results[0].runs[0].report.periods if results else ()
    span = f"{periods[0].key} to {periods[-1].key}" if periods else "no periods"
    stages = harness.BackendTable(
        f"Planning runs, seconds: {args.households:,} households x {HORIZON} periods ({span}); "
        "run 2 right after run 1, nothing changed",
        columns,
    )
    for name in ROWS:
        stages.row(name, lambda c, name=name: f"{c.run.stages[name]:.2f}")
    stages.row("total (plan_strategies)", lambda c: f"{c.run.total_s:.2f}")
    stages.row("households planned", lambda c: f"{c.run.report.planned:,}")
    stages.row(
        "orders placed / amended / cancelled",
        lambda c: f"{c.run.report.placed:,} / {c.run.report.amended:,} / {c.run.report.cancelled:,}",
    )
    stages.row(
        "ms per household (loop)",
        lambda c: f"{c.run.stages[ROWS[7]] * 1000 / max(1, c.run.report.planned):.2f}",
    )
    console.print(stages)

    checks = harness.TargetChecks()
    at_scale = args.households >= TARGET_HOUSEHOLDS
    scale = "" if at_scale else f"; run with {TARGET_HOUSEHOLDS:,} households to judge"
    for r in results:
        for n, run in enumerate(r.runs, start=1):
            checks.target(
                f"{r.backend}: planning run {n} < {TARGET_S:.0f} s",
                run.total_s < TARGET_S,
                f"{run.total_s:.1f} s for {r.households:,} households x {HORIZON} periods{scale}",
                binding=at_scale,
            )
        checks.note(
            f"{r.backend}: {r.open_strategy_orders:,} open strategy orders, {r.plans_stored:,} plans stored"
        )
        for problem in r.problems:
            checks.problem(f"{r.backend}: problem: {problem}")
    checks.print(console)
    console.print(f"load average at the end: {harness.load_average():.2f}")
    return checks.passed


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line; ``--quick`` sets the small sizes of the options not given."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    harness.add_database_arguments(parser)
    parser.add_argument("--households", type=int, default=None, help="default 10,000 (500 with --quick)")
    parser.add_argument(
        "--days", type=int, default=None, help="days of meter data, default 14 (3 with --quick)"
    )
    parser.add_argument("--quick", action="store_true", help="500 households, 3 days")
    parser.add_argument("--seed", type=int, default=20260415)
    parser.add_argument("--profile", metavar="DIR", help="write cProfile stats of each timed run here")
    args = parser.parse_args(argv)
    harness.fill_sizes(args, {"households": (TARGET_HOUSEHOLDS, 500), "days": (14, 3)})
    if args.households < 1 or args.days < 1:
        parser.error("--households and --days must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; the exit status is 1 if a check fails or the target is missed at scale."""
    args = parse_args(argv)
    backends = harness.chosen_backends(args.backend, postgresql_first=True)
    harness.figures_console().print(
        harness.machine_notes(
            packages=("highspy", "numpy", "pvlib", "SQLAlchemy"),
            backends=backends,
            postgres_url=args.postgres_url,
        ),
        soft_wrap=True,
    )
    city = generate_city(args.households, np.random.default_rng(args.seed))
    log.info(f"{len(city):,} households on {len(FEEDERS)} feeders, {args.days} days")
    results = [run_backend(backend, city, args) for backend in backends]
    return 0 if report(results, args) else 1


if __name__ == "__main__":
    sys.exit(main())
