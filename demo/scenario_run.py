"""Scenario runs: a simulated neighbourhood trading on the whole platform, in accelerated time.

:func:`run_scenario` takes a scenario file (:mod:`simulation`) and runs what production runs, on a
fresh SQLite database in ``var/``:

1. **Simulate** the households (:func:`simulation.simulate`): each one's realised net power, which
   its emulated meter will measure, and its orders for every period, from imperfect forecasts.
2. **Set up** the market as the energy company would: the operator, the network and the backstop
   tariff from the scenario, every household with an MPAN on its feeder, a token of its own, and
   its meter (model and Modbus address) registered.
3. **Run the day**, in four processes as in production: the emulated meters answer on loopback
   Modbus TCP (gateways of up to 25 unit ids each, on pymodbus); the platform serves the HTTP API
   under uvicorn on a free loopback port and runs the clearing and settlement jobs; a metering
   process polls the meters and derives interval energy (as a ``smartbrum meter poll`` shard runs
   beside the service); this process runs the households' agents. The jobs run on a market
   clock that runs ``day_seconds`` real seconds per simulated day: meter polling every
   ``poll_minutes``, interval energy after each period, clearing at every gate closure,
   settlement when each period's meter data is due. The households' agents place their orders
   through the API, each with its own token, in one request per household per bidding round
   (``POST /v1/orders/batch``): every ``bid_every_periods`` periods, for the next that many,
   ``bid_ahead_periods`` periods before the first one's gate closes (rolling), or all at the
   start (day-ahead) when ``bid_ahead_periods`` is ``None``.
4. **Finish**, as the energy company closes a day. When the clock has passed the last period's
   settlement time, the runner waits (with a deadline) until every period has its initial
   settlement run; the metering process waits (polling on, with a deadline) until every meter has
   a reading after the day's last boundary, stops its jobs and derives the energy of every period
   of the run afresh from every reading in; then the market process stops its jobs and runs the
   settlement's catch-up once more, which reconciles every period whose meter energy changed after
   its latest run. The results are gathered for the summary and the report (:mod:`demo.report`).

   Why the whole day: in accelerated time a reading after a boundary often arrives after the
   settlement job has read the period (a market hour is about a second of real time), so the
   initial run settles an estimate; the energy job re-derives only each period and the one before
   it, so an estimate older than that would stay one, and the day would never be settled on
   metered energy (its statement then claims no saving: :mod:`market.statements`). A boundary
   whose nearest readings are more than an hour of market time apart (a polling cycle that stalled
   for over a second on a busy machine) stays an estimate, as it would in production; the summary
   says how many periods that left.

The market clock is held at its start while the set-up and the first bids happen, then released,
and only then are the jobs started: a slow set-up never makes the first gates close early.

Times per stage are busy times (the jobs run concurrently): the seconds the polling job spent
polling and storing, the agents' requests took, the clearing job spent clearing, the settlement
job spent settling.
"""

from __future__ import annotations

import asyncio
import logging
import math
import multiprocessing
import threading
import time
from array import array
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx2
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from api.app import build_jobs, create_app
from api.clock import AcceleratedClock
from api.deps import Platform
from api.logs import JsonFormatter
from api.settings import Settings
from demo.comparison import PlatformDevices, strategy_for
from market.access import issue_tokens
from market.autotrading import latest_plan, planned_periods, untraded_strategy_orders
from market.clearing import clear_interval
from market.database import create_database_engine, transaction, upgrade_database
from market.intervals import SettlementPeriod, period_at
from market.meter_data import DerivedEnergy, derive_energy_of_meters, store_energy_of_meters
from market.network import publish_network, set_tariff
from market.orders import MAX_BATCH_ORDERS, OrderRequest, place_orders
from market.participants import (
    NewHousehold,
    NewMeter,
    list_meters,
    mpan_with_check_digit,
    register_households,
    register_meters,
    register_operator,
)
from market.rules import MarketRules
from market.settlement import INITIAL, runs_of, settle_periods
from market.tables import ClearingRunRow, MeterReadingRow, MeterRow, StrategyPlanRow
from metering.emulator import GatewaySpec, MeterFleet, MeterSpec, SeriesProfile, serve_fleet
from metering.energy import IntervalEnergy
from planning.dispatch import battery_dispatch_wh, battery_grid_wh, stored_change_wh
from planning.strategy import Strategy
from simulation import (
    PlannedOrder,
    Simulation,
    build_network,
    load_scenario,
    metered_period_wh,
    simulate,
    simulate_history,
)

log = logging.getLogger("smartbrum.scenario")

OPERATOR_ID = "OPS"
FOLLOW_EVERY_S = 0.02
"""Real seconds between looks at the platform's plans and clearings (at a day in 30 s a period is
0.625 s, and a gate closes 0.1 s before its period begins)."""
#: Steps of the series between the step the clock is in and the first a late dispatch may change.
STEP_MARGIN = 3
METERS_PER_GATEWAY = 25
"""Meters behind one emulated gateway: one RS485 segment's worth, polled one request at a time."""
_MP = multiprocessing.get_context("spawn")


@dataclass(frozen=True)
class RunOptions:
    """How to run a scenario.

    Attributes
    ----------
    day_seconds : float
        Real seconds per simulated day (the clock's speed is 86,400 / this).
    days : int, optional
        Simulate only this many days (default: the scenario's).
    households : int, optional
        Keep only the first this many households (shortened runs for tests).
    poll_minutes : float
        Market minutes between meter polling cycles.
    bid_ahead_periods : int or None
        Agents bid each group of periods this many periods before the first one's gate closes;
        ``None``: the whole day at the start (day-ahead).
    bid_every_periods : int
        How many periods each rolling bidding round covers (one request per household).
    lead_minutes : int
        The market clock starts this long before the first period.
    agent_threads : int
        Concurrent HTTP requests the agents make.
    database : Path, optional
        SQLite file (replaced); default ``var/scenario-<name>.db``.
    report_dir : Path, optional
        Where the report goes; default ``var/reports/<name>``. ``None`` in :func:`run_scenario`'s
        ``write_report`` skips it.
    deadline_s : float
        Longest real wait for the last settlement runs after the clock has passed them, and for
        every meter's reading after the day's last boundary.
    """

    day_seconds: float = 30.0
    days: int | None = None
    households: int | None = None
    poll_minutes: float = 10.0
    bid_ahead_periods: int | None = 6
    bid_every_periods: int = 4
    lead_minutes: int = 30
    agent_threads: int = 8
    database: Path | None = None
    report_dir: Path | None = None
    deadline_s: float = 120.0


@dataclass
class StageTimes:
    """Wall and busy seconds of a run, by stage."""

    simulate_s: float = 0.0
    setup_s: float = 0.0
    day_s: float = 0.0
    polling_s: float = 0.0
    energy_s: float = 0.0
    placement_s: float = 0.0
    clearing_s: float = 0.0
    settlement_s: float = 0.0
    total_s: float = 0.0


@dataclass
class RunResult:
    """What a run produced: where its database is, and what happened."""

    simulation: Simulation
    database_url: str
    periods: list[SettlementPeriod]
    household_ids: list[str]
    orders_placed: int = 0
    orders_missed: int = 0
    requests: int = 0
    slowest_round_s: float = 0.0
    polls: int = 0
    readings: int = 0
    times: StageTimes = field(default_factory=StageTimes)
    errors: list[str] = field(default_factory=list)
    #: The platform's log of the day, one JSON event a line (as ``smartbrum serve --log-format
    #: json`` writes it): every clearing run, polling cycle, energy derivation and settlement run.
    service_log: Path | None = None
    #: The strategy each home trading through the platform stated (by id).
    strategies: dict[str, Strategy] = field(default_factory=dict)
    #: What each such home's battery and EV did, driven by the platform's plans.
    platform_devices: dict[str, PlatformDevices] = field(default_factory=dict)
    #: Home-periods whose plan reached the meter after the period began (it ran idle), and those
    #: the platform never planned (idle too).
    late_periods: int = 0
    unplanned_periods: int = 0
    #: Home-periods whose battery ran as planned, the period's clearing not seen in time.
    undispatched_periods: int = 0
    #: Interval energy rows stored as the homes' meter history before the day (``history_days``).
    history_rows: int = 0
    #: Intervals the market cleared and settled before the day (``market_history_days``).
    history_intervals: int = 0


ProgressHook = Callable[[str, int], None]
"""Called with ("cleared" | "settled" | "bid", count) as the run goes on."""


def run_scenario(
    path: Path,
    options: RunOptions = RunOptions(),
    *,
    progress: ProgressHook | None = None,
    on_start: Callable[[int, int], None] | None = None,
    var_dir: Path = Path("var"),
) -> RunResult:
    """Run the scenario in ``path`` end to end; see the module docstring.

    ``progress`` hears of each clearing and bidding round; ``on_start`` is told how many periods
    and orders the run will have, once the households are simulated.
    """
    started = time.perf_counter()
    scenario = load_scenario(path)
    simulation = simulate(scenario, days=options.days)
    history = simulate_history(scenario)
    simulated = time.perf_counter()
    keep = len(simulation.households) if options.households is None else options.households
    households = simulation.households[:keep]
    periods = [
        period_at(start, length_minutes=simulation.scenario.interval_minutes)
        for _, _, start, _ in simulation.periods
    ]

    database = options.database or var_dir / f"scenario-{scenario.name}.db"
    database.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{database}{suffix}").unlink(missing_ok=True)
    url = f"sqlite:///{database}"
    result = RunResult(simulation, url, periods, [h.id for h in households])
    result.service_log = database.with_name(f"{database.stem}.service.jsonl")
    result.service_log.unlink(missing_ok=True)
    result.times.simulate_s = simulated - started
    if on_start is not None:
        kept = set(result.household_ids)
        on_start(len(periods), sum(1 for order in simulation.orders if order.household_id in kept))

    engine = create_database_engine(url)
    try:
        upgrade_database(engine)
        clock_start = simulation.start_utc - timedelta(minutes=options.lead_minutes)
        clock = AcceleratedClock(clock_start, speed=86_400.0 / options.day_seconds, held=True)
        settings = _settings(url, scenario, options.poll_minutes)
        fleet = _fleet(simulation, keep)
        updates: Any = _MP.Queue()
        follower = _PlanFollower(engine, result, clock, updates, settings.market_rules())
        with _meters(fleet, clock, updates) as ports:
            traded_days = scenario.market_history_days if history is not None else 0
            # A market with a history was set up before its first traded day.
            set_up_at = clock_start - timedelta(days=traded_days)
            tokens = _set_up(engine, simulation, fleet, ports, now=set_up_at)
            if history is not None:
                result.history_rows = _store_history(engine, simulation, history, keep, now=clock_start)
                result.history_intervals = _trade_history(
                    engine, simulation, history, keep, days=traded_days, settings=settings, now=clock_start
                )
            result.times.setup_s = time.perf_counter() - simulated
            specs = [
                _PlatformSpec(
                    role, settings.model_dump(), clock, tuple(periods), options.deadline_s, result.service_log
                )
                for role in ("market", "metering")
            ]
            market, metering = _Platform(specs[0]), _Platform(specs[1])
            with market as base_url, metering, follower:
                _run_day(
                    result, engine, (market, metering), base_url, clock, settings, tokens, options, progress
                )
        result.platform_devices = follower.devices()
        result.late_periods = follower.late
        result.unplanned_periods = follower.unplanned
        result.undispatched_periods = follower.undispatched
    finally:
        engine.dispose()
    result.times.total_s = time.perf_counter() - started
    return result


# --- set-up --------------------------------------------------------------------------------------


def _settings(url: str, scenario: Any, poll_minutes: float) -> Settings:
    """The platform's settings for a run: the scenario's terms; meter data is due one polling
    cycle (plus a margin) after each period, so that a reading after every boundary is in."""
    data_delay = math.ceil(poll_minutes) + 3
    return Settings(
        database_url=url,
        interval_minutes=scenario.interval_minutes,
        platform_fee_p_per_kwh=scenario.fees.platform_p_per_kwh,
        meter_timeout_s=2.0,
        meter_retries=1,
        poll_seconds=poll_minutes * 60,
        meter_data_delay_minutes=data_delay,
        settlement_delay_minutes=data_delay + 5,
        max_open_orders=20,
    )


def _set_up(
    engine: Engine, simulation: Simulation, fleet: MeterFleet, ports: Sequence[int], *, now: datetime
) -> dict[str, str]:
    """The operator, network, tariff, households, tokens and meters; returns each home's token."""
    scenario = simulation.scenario
    tokens: dict[str, str] = {}
    with transaction(engine) as session:
        register_operator(session, participant_id=OPERATOR_ID, display_name="Brum Local Energy", now=now)
        publish_network(session, network=build_network(scenario), effective_from_utc=now, now=now)
        set_tariff(
            session,
            import_p_per_kwh=Decimal(scenario.tariff.import_p_per_kwh),
            export_p_per_kwh=Decimal(scenario.tariff.export_p_per_kwh),
            effective_from_utc=now,
            now=now,
        )
        meters = [(meter, port) for gateway, port in zip(fleet.gateways, ports) for meter in gateway.meters]
        households = simulation.households[: fleet.meter_count]
        register_households(
            session,
            [
                NewHousehold(
                    household.id,
                    household.name,
                    mpan_with_check_digit(f"14{index + 1:010d}"),
                    household.feeder,
                )
                for index, household in enumerate(households)
            ],
            now=now,
        )
        issued = issue_tokens(session, [household.id for household in households], now=now, label="agent")
        tokens.update((token.participant_id, token.secret) for token in issued)
        register_meters(
            session,
            [
                NewMeter(meter.meter_id, household.id, "127.0.0.1", port, meter.unit_id, "tcp", meter.model)
                for household, (meter, port) in zip(households, meters)
            ],
            now=now,
        )
    return tokens


def _store_history(
    engine: Engine, simulation: Simulation, history: Simulation, keep: int, *, now: datetime
) -> int:
    """Each kept home's meter history: the interval energy of the days before the run
    (:func:`simulation.simulate_history`), stored as metered (not estimated) through the market's
    own store, in one transaction; returns the rows stored.

    A twin ``<id>-agents`` has the history of the home it copies. A home trading through the
    platform has its own demand, heat pump and PV in its history, not its battery and EV: the
    platform drove those devices and knows what it told them, so the history it forecasts from is
    the household's own use (the platform's forecast models demand and PV only,
    :mod:`planning.forecast`); an agents' home has its devices as its agent ran them.
    """
    rows = {home.id: index for index, home in enumerate(history.households)}
    periods = tuple(
        period_at(p.start_utc, length_minutes=history.scenario.interval_minutes) for p in history.periods
    )
    derived = []
    for home in simulation.households[:keep]:
        imported, exported = metered_period_wh(
            history, rows[home.twin_of or home.id], with_devices=home.trading != "platform"
        )
        energy = tuple(
            IntervalEnergy(p.start_utc, p.end_utc, int(i), int(e), False)
            for p, i, e in zip(periods, imported, exported, strict=True)
        )
        derived.append(DerivedEnergy(f"M-{home.id}", periods, energy, ()))
    with transaction(engine) as session:
        stored = store_energy_of_meters(session, derived, now=now)
    return sum(len(rows) for rows in stored.values())


def _trade_history(
    engine: Engine,
    simulation: Simulation,
    history: Simulation,
    keep: int,
    *,
    days: int,
    settings: Settings,
    now: datetime,
) -> int:
    """The market on the last ``days`` days of the homes' history, as the platform ran it then;
    returns the intervals cleared.

    Each home's agent placed its history day's orders (:func:`simulation.simulate_history`'s, the
    agents' on that day's forecasts) the day ahead, an hour before the day's first gate; each
    period was cleared at its gate closure, and settled on the history's metered energy (stored
    by :func:`_store_history`) if it was due by ``now``, as the platform's jobs would have (the
    last few, due during the run, are the settlement job's). A twin
    ``<id>-agents`` places the orders of the home it copies; a home trading through the platform
    places none (its past plans are not simulated: the market's past is the agents'). This gives
    the platform's automatic trading the price history a market that has run for a while has.
    """
    if days < 1:
        return 0
    rules = settings.market_rules()
    interval = history.scenario.interval_minutes
    first_day = history.periods[-1].settlement_date - timedelta(days=days - 1)
    traded = [
        period_at(p.start_utc, length_minutes=interval)
        for p in history.periods
        if p.settlement_date >= first_day
    ]
    period_of = {period.start_utc: period for period in traded}
    trader_of = {
        home.twin_of or home.id: home.id
        for home in simulation.households[:keep]
        if home.trading != "platform"
    }
    by_day: dict[tuple[str, date], list[OrderRequest]] = defaultdict(list)
    for order in history.orders:
        period = period_of.get(order.period_start_utc)
        trader = trader_of.get(order.household_id)
        if period is None or trader is None:
            continue
        request = OrderRequest(period, order.side, order.quantity_kwh, order.price_p_per_kwh)
        by_day[(trader, period.settlement_date)].append(request)
    day_starts = {period.settlement_date: period for period in reversed(traded)}  # each day's first
    with transaction(engine) as session:
        for (trader, day), requests in sorted(by_day.items()):
            placed_at = rules.gate_closure_utc(day_starts[day]) - timedelta(hours=1)
            for first in range(0, len(requests), MAX_BATCH_ORDERS):
                place_orders(
                    session,
                    rules=rules,
                    participant_id=trader,
                    requests=requests[first : first + MAX_BATCH_ORDERS],
                    now=placed_at,
                )
    for period in traded:
        clear_interval(
            engine, period=period, rules=rules, now=rules.gate_closure_utc(period), triggered_by="scheduler"
        )
    config = settings.settlement_config()
    due = [period for period in traded if period.end_utc + config.meter_data_delay <= now]
    # The last periods' meter data is not due yet: the platform's settlement job settles them.
    settle_periods(engine, due, run_type=INITIAL, config=config, now=now, triggered_by="scheduler")
    return len(traded)


def _fleet(simulation: Simulation, keep: int) -> MeterFleet:
    """Every kept household's emulated meter, up to :data:`METERS_PER_GATEWAY` per gateway."""
    gateways = []
    for first in range(0, keep, METERS_PER_GATEWAY):
        meters = []
        for index in range(first, min(first + METERS_PER_GATEWAY, keep)):
            household = simulation.households[index]
            profile = SeriesProfile(
                start=simulation.start_utc,
                step_s=simulation.step_s,
                net_power_w=array("d", simulation.net_power_w[index].tolist()),
                seed=index,
                phases=1,
                import_kwh_at_start=float(1000 + (index * 7919) % 9000),
            )
            meters.append(MeterSpec(f"M-{household.id}", index - first + 1, household.meter_model, profile))
        gateways.append(GatewaySpec("127.0.0.1", 0, "socket", tuple(meters)))
    return MeterFleet(tuple(gateways))


@contextmanager
def _meters(fleet: MeterFleet, clock: AcceleratedClock, updates: Any) -> Iterator[list[int]]:
    """The fleet served on loopback by a process of its own, as meters are devices of their own
    (and so that answering them does not take the platform's CPU); yields the gateways' ports.

    ``updates`` carries ``(meter index, first step, net power values)``: a platform home's new
    series from a step on, once its battery and EV have their plan (:class:`_PlanFollower`)."""
    ports: Any = _MP.Queue()
    stop = _MP.Event()
    process = _MP.Process(
        target=_serve_meters, args=(fleet, clock, ports, stop, updates), name="scenario-meters"
    )
    process.start()
    try:
        answer = ports.get(timeout=120)
        if isinstance(answer, str):
            raise RuntimeError(f"the emulated meters did not start: {answer}")
        yield answer
    finally:
        stop.set()
        process.join(timeout=30)
        if process.is_alive():
            process.kill()
            process.join()


def _serve_meters(fleet: MeterFleet, clock: AcceleratedClock, ports: Any, stop: Any, updates: Any) -> None:
    """The meters' process: serve every gateway until ``stop`` is set, applying ``updates`` to the
    meters' series in the gateways' event loop (where they are read)."""

    async def serve() -> None:
        done = asyncio.Event()
        loop = asyncio.get_running_loop()
        gateways = fleet.build_gateways(clock=clock.now)
        profiles = [meter.profile for gateway in gateways for meter in gateway.meters]

        def apply_updates() -> None:
            while not stop.is_set():
                try:
                    index, first_step, values = updates.get(timeout=0.2)
                except Exception:  # queue.Empty: look at stop again
                    continue
                profile = profiles[index]
                if isinstance(profile, SeriesProfile):
                    loop.call_soon_threadsafe(profile.set_power_w, first_step, values)

        threading.Thread(
            target=lambda: (stop.wait(), loop.call_soon_threadsafe(done.set)), daemon=True
        ).start()
        threading.Thread(target=apply_updates, daemon=True).start()
        await serve_fleet(
            gateways,
            ready=lambda live: ports.put([g.port for g in live]),
            stop=done,
        )

    try:
        asyncio.run(serve())
    except Exception as error:  # tell the parent rather than leave it waiting
        ports.put(f"{type(error).__name__}: {error}")


@dataclass(frozen=True)
class _PlatformSpec:
    """What one of the platform's processes needs: its role, ``"market"`` (the HTTP API, clearing
    and settlement) or ``"metering"`` (meter polling and interval energy, as a ``smartbrum meter
    poll`` shard would run beside the service)."""

    role: str
    settings: dict[str, Any]
    clock: AcceleratedClock
    periods: tuple[SettlementPeriod, ...]
    deadline_s: float
    #: Where the process appends its log events as JSON lines (both processes, one file).
    log_path: Path | None = None


class _Platform:
    """Part of the platform in a process of its own: for the ``"market"`` role, as ``smartbrum
    serve`` runs it, the HTTP API under uvicorn on a free loopback port and the clearing and
    settlement jobs; for ``"metering"``, the polling and interval-energy jobs. Jobs start on
    :meth:`start_jobs`."""

    def __init__(self, spec: _PlatformSpec) -> None:
        self._inbox: Any = _MP.Queue()
        self._outbox: Any = _MP.Queue()
        self._process = _MP.Process(
            target=_serve_platform, args=(spec, self._inbox, self._outbox), name="scenario-platform"
        )

    def __enter__(self) -> str:
        self._process.start()
        port = self._receive("port")
        return f"http://127.0.0.1:{port}"

    def start_jobs(self) -> None:
        self._inbox.put("start")
        self._receive("started")

    def finish(self) -> dict[str, float]:
        """Stop the jobs, derive the last energy, settle what is left; returns the jobs' figures."""
        self._inbox.put("finish")
        figures: dict[str, float] = self._receive("figures")
        return figures

    def _receive(self, kind: str) -> Any:
        while True:
            try:
                message, value = self._outbox.get(timeout=1.0)
            except Exception:
                if not self._process.is_alive():
                    raise RuntimeError("the platform's process ended unexpectedly") from None
                continue
            if message == "error":
                raise RuntimeError(f"the platform failed: {value}")
            if message == kind:
                return value

    def __exit__(self, *exc: object) -> None:
        self._inbox.put("stop")
        self._process.join(timeout=60)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()


def _log_to(path: Path) -> None:
    """The platform's events (clearing, polling, energy, settlement, the job leader) appended to
    ``path`` as JSON lines, as ``smartbrum serve --log-format json`` writes them to stderr; one
    write a line, so the two processes' lines never interleave."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(JsonFormatter())
    platform_log = logging.getLogger("smartbrum")
    platform_log.addHandler(handler)
    platform_log.setLevel(logging.INFO)
    platform_log.propagate = False


def _serve_platform(spec: _PlatformSpec, inbox: Any, outbox: Any) -> None:
    """A platform process: the API at once (market role), the jobs when told, the day's end when told."""
    import uvicorn

    try:
        if spec.log_path is not None:
            _log_to(spec.log_path)
        settings = Settings(**spec.settings)
        engine = create_database_engine(settings.database_url)
        counts = {"polls": 0, "readings": 0}

        def on_polled(results: list[Any], stored: int) -> None:
            counts["polls"] += 1
            counts["readings"] += stored

        server = thread = None
        platform = Platform(engine=engine, settings=settings, clock=spec.clock)
        # The jobs `smartbrum serve` runs, split between the two roles.
        market, polling, settlement, planning = build_jobs(platform, on_polled=on_polled)
        if spec.role == "metering":
            jobs = [polling]
            outbox.put(("port", None))
        else:
            jobs = [market, settlement, planning]
            config = uvicorn.Config(create_app(platform), host="127.0.0.1", port=0, log_level="warning")
            server = uvicorn.Server(config)
            thread = threading.Thread(target=server.run, name="api", daemon=True)
            thread.start()
            deadline = time.monotonic() + 60
            while not server.started:
                if not thread.is_alive() or time.monotonic() > deadline:
                    raise RuntimeError("the API server did not start")
                time.sleep(0.01)
            outbox.put(("port", server.servers[0].sockets[0].getsockname()[1]))
        while (command := inbox.get()) != "stop":
            if command == "start":
                for job in jobs:
                    job.start()
                outbox.put(("started", None))
            elif command == "finish":
                # The day is over (see the module docstring, "Finish"). Metering: every meter's
                # final reading in, then every period's energy from every reading. Market: the
                # settlement's catch-up, which reconciles every period whose energy changed.
                if spec.role == "metering":
                    _wait_for_final_readings(engine, spec.periods[-1], spec.deadline_s)
                for job in reversed(jobs):
                    job.shutdown()
                if spec.role == "metering":
                    started = time.perf_counter()
                    _derive_every_period(engine, spec.periods, now=spec.clock.now())
                    polling.energy_busy_s += time.perf_counter() - started
                    figures = {"polling_s": polling.poll_busy_s, "energy_s": polling.energy_busy_s, **counts}
                else:
                    settlement.settle_due()
                    figures = {"clearing_s": market.busy_s, "settlement_s": settlement.busy_s}
                outbox.put(("figures", figures))
        if server is not None and thread is not None:
            server.should_exit = True
            thread.join(timeout=30)
        engine.dispose()
    except Exception as error:  # tell the parent rather than leave it waiting
        log.exception("the platform failed")
        outbox.put(("error", f"{type(error).__name__}: {error}"))


def _wait_for_final_readings(engine: Engine, last: SettlementPeriod, deadline_s: float) -> None:
    """Until every active meter has a reading after ``last`` ends, or the deadline passes (the
    polling job runs on meanwhile); a meter still without one leaves its last period estimated."""
    deadline = time.monotonic() + deadline_s
    latest = sa.func.max(MeterReadingRow.polled_at)
    query = (
        select(MeterRow.id)
        .outerjoin(MeterReadingRow, col(MeterReadingRow.meter_id) == MeterRow.id)
        .where(col(MeterRow.active))
        .group_by(col(MeterRow.id))
        .having(sa.or_(latest.is_(None), latest <= last.end_utc))
    )
    while True:
        with Session(engine) as session:
            waiting = session.exec(query).all()
        if not waiting:
            return
        if time.monotonic() > deadline:
            log.warning("%d meter(s) have no reading after %s ends", len(waiting), last.key)
            return
        time.sleep(0.1)


def _derive_every_period(
    engine: Engine, periods: Sequence[SettlementPeriod], *, now: datetime, chunk: int = 8
) -> None:
    """Every active meter's energy for every one of ``periods``, from every reading in, stored as
    new revisions where it changed (a few periods at a time: a district's day of readings is
    large)."""
    with Session(engine) as session:
        meters = [meter.id for meter in list_meters(session, active=True)]
    for first in range(0, len(periods), chunk):
        with Session(engine) as session:
            derived = derive_energy_of_meters(session, meters, periods[first : first + chunk])
        with transaction(engine) as session:
            store_energy_of_meters(session, derived, now=now)


# --- the day -------------------------------------------------------------------------------------


def _run_day(
    result: RunResult,
    engine: Engine,
    platform: tuple[_Platform, _Platform],
    base_url: str,
    clock: AcceleratedClock,
    settings: Settings,
    tokens: dict[str, str],
    options: RunOptions,
    progress: ProgressHook | None,
) -> None:
    rules = settings.market_rules()
    rounds = _bidding_rounds(
        result, rules.gate_closure_utc, options.bid_ahead_periods, options.bid_every_periods, clock.start
    )
    keep = set(result.household_ids)
    counter = _ClearedCounter(engine, result.periods, progress)
    day_started = time.perf_counter()
    with httpx2.Client(
        base_url=base_url, timeout=120.0, limits=httpx2.Limits(max_connections=options.agent_threads)
    ) as client:
        agents = _Agents(client, tokens, result, options.agent_threads, progress)
        _state_strategies(client, tokens, result, settings.platform_fee_p_per_kwh, settings.vat_rate)
        _, first_orders = rounds[0]
        agents.bid([o for o in first_orders if o.household_id in keep])
        clock.release()
        market, metering = platform
        metering.start_jobs()
        market.start_jobs()
        for moment, orders in rounds[1:]:
            _wait_until(clock, moment, counter.tick)
            agents.bid([o for o in orders if o.household_id in keep])
        last = result.periods[-1]
        _wait_until(
            clock, last.end_utc + timedelta(minutes=settings.settlement_delay_minutes + 1), counter.tick
        )
        _wait_for_settlement(engine, result.periods, options.deadline_s)
        figures = {**metering.finish(), **market.finish()}
        counter.tick()
    result.times.day_s = time.perf_counter() - day_started
    result.times.polling_s = figures["polling_s"]
    result.times.energy_s = figures["energy_s"]
    result.times.clearing_s = figures["clearing_s"]
    result.times.settlement_s = figures["settlement_s"]
    result.polls = int(figures["polls"])
    result.readings = int(figures["readings"])
    missing = len(result.periods) - counter.cleared
    if missing:
        result.errors.append(f"{missing} period(s) not cleared by the scheduler")


class _ClearedCounter:
    """Counts the run's periods cleared so far (from the database), for the progress bar."""

    def __init__(
        self, engine: Engine, periods: Sequence[SettlementPeriod], progress: ProgressHook | None
    ) -> None:
        self.engine = engine
        self.starts = {period.start_utc for period in periods}
        self.first, self.last = periods[0].start_utc, periods[-1].start_utc
        self.progress = progress
        self.cleared = 0
        self._checked = 0.0

    def tick(self) -> None:
        if time.monotonic() - self._checked < 0.25:
            return
        self._checked = time.monotonic()
        with Session(self.engine) as session:
            rows = session.exec(
                select(ClearingRunRow.interval_start_utc).where(
                    col(ClearingRunRow.is_current),
                    ClearingRunRow.interval_start_utc >= self.first,
                    ClearingRunRow.interval_start_utc <= self.last,
                )
            ).all()
        cleared = len(set(rows) & self.starts)
        if cleared > self.cleared and self.progress is not None:
            self.progress("cleared", cleared - self.cleared)
        self.cleared = max(self.cleared, cleared)


def _bidding_rounds(
    result: RunResult,
    gate_of: Callable[[SettlementPeriod], datetime],
    ahead: int | None,
    every: int,
    start: datetime,
) -> list[tuple[datetime, list[PlannedOrder]]]:
    """When the agents bid and what: one round per moment, orders grouped in period order.

    Rolling: every ``every`` periods, each agent bids the next ``every`` periods, the first of
    them ``ahead`` periods before its gate closes. Day-ahead (``ahead`` None): one round at the
    start.
    """
    by_period: dict[datetime, list[PlannedOrder]] = defaultdict(list)
    for order in result.simulation.orders:
        by_period[order.period_start_utc].append(order)
    rounds: dict[datetime, list[PlannedOrder]] = defaultdict(list)
    rounds[start] = []
    for index, period in enumerate(result.periods):
        if ahead is None:
            moment = start
        else:
            first = result.periods[index - index % every]
            length = timedelta(minutes=first.length_minutes)
            moment = max(start, gate_of(first) - ahead * length)
        rounds[moment].extend(by_period.get(period.start_utc, []))
    return sorted(rounds.items())


class _Agents:
    """The households' agents: each round, one request per household with its orders."""

    def __init__(
        self,
        client: httpx2.Client,
        tokens: dict[str, str],
        result: RunResult,
        threads: int,
        progress: ProgressHook | None,
    ) -> None:
        self.client = client
        self.tokens = tokens
        self.result = result
        self.threads = threads
        self.progress = progress
        self.lengths = {p.start_utc: p for p in result.periods}

    def bid(self, orders: list[PlannedOrder]) -> None:
        if not orders:
            return
        by_home: dict[str, list[PlannedOrder]] = defaultdict(list)
        for order in orders:
            by_home[order.household_id].append(order)
        requests = [
            (home, chunk)
            for home, planned in by_home.items()
            for chunk in (planned[i : i + MAX_BATCH_ORDERS] for i in range(0, len(planned), MAX_BATCH_ORDERS))
        ]
        started = time.perf_counter()
        with ThreadPoolExecutor(self.threads) as pool:
            outcomes = list(pool.map(lambda job: self._post(*job), requests))
        took = time.perf_counter() - started
        self.result.times.placement_s += took
        self.result.slowest_round_s = max(self.result.slowest_round_s, took)
        placed = sum(count for count, _ in outcomes)
        self.result.orders_placed += placed
        self.result.orders_missed += sum(len(chunk) for _, chunk in requests) - placed
        self.result.requests += len(requests)
        for _, error in outcomes:
            if error and len(self.result.errors) < 20:
                self.result.errors.append(error)
        if self.progress is not None:
            self.progress("bid", placed)

    def _post(self, home: str, orders: list[PlannedOrder]) -> tuple[int, str | None]:
        body = {
            "orders": [
                {
                    "interval": self.lengths[order.period_start_utc].key,
                    "side": order.side,
                    "quantity_kwh": str(order.quantity_kwh),
                    "price_p_per_kwh": str(order.price_p_per_kwh),
                }
                for order in orders
            ]
        }
        response = self.client.post(
            "/v1/orders/batch", json=body, headers={"Authorization": f"Bearer {self.tokens[home]}"}
        )
        if response.status_code == 201:
            return len(orders), None
        return 0, f"{home}: HTTP {response.status_code}: {response.text[:200]}"


def _state_strategies(
    client: httpx2.Client,
    tokens: dict[str, str],
    result: RunResult,
    platform_fee_p_per_kwh: Decimal,
    vat_rate: Decimal,
) -> None:
    """Each home trading through the platform states its strategy, with its own token, as a
    household would (``PUT /v1/strategy``): what it has and the band it trades in
    (:func:`demo.comparison.strategy_for`)."""
    kept = set(result.household_ids)
    for home in result.simulation.households:
        if home.id not in kept or home.trading != "platform":
            continue
        strategy = strategy_for(
            home,
            result.simulation,
            platform_fee_p_per_kwh=Decimal(platform_fee_p_per_kwh),
            vat_rate=Decimal(vat_rate),
        )
        response = client.put(
            "/v1/strategy",
            json=strategy_body(strategy),
            headers={"Authorization": f"Bearer {tokens[home.id]}"},
        )
        if response.status_code not in (200, 201):
            raise RuntimeError(
                f"{home.id} could not state its strategy: HTTP {response.status_code}: {response.text[:300]}"
            )
        result.strategies[home.id] = strategy


def strategy_body(strategy: Strategy) -> dict[str, Any]:
    """The body of ``PUT /v1/strategy`` stating ``strategy`` (:class:`api.schemas.StrategyUpdate`):
    what the household wants, its EV's times as HH:MM; whether it is paused is left out (pause and
    resume are requests of their own)."""
    body: dict[str, Any] = strategy.model_dump(mode="json", exclude_none=True, exclude={"paused"})
    ev = strategy.ev
    if ev is not None:
        body["ev"]["plugged_in_from"] = ev.plugged_in_from.strftime("%H:%M")
        body["ev"]["departure"] = ev.departure.strftime("%H:%M")
    return body


class _PlanFollower:
    """The platform homes' batteries and EVs, following the platform's plans.

    The platform cannot see a battery or an EV; it assumes they follow its plan (a home's own
    controller would carry it out) and keeps each home's latest plan (``strategy_plan``,
    :func:`market.autotrading.planned_periods`). A thread of this process reads the plans every
    :data:`FOLLOW_EVERY_S` real seconds; for each new plan, every period of it not yet begun gets
    the plan's battery charge or discharge (from its state of charge, with the losses as the plan
    counts them: :func:`planning.dispatch.battery_grid_wh`) and EV charging, and the home's meter
    its new series from that period on. A later plan for a period not yet begun replaces an
    earlier one, so each period runs on the last plan made before it, the one whose orders were
    in the market at its gate closure. A period no plan reached before it began runs idle.

    Once a period has cleared its battery energy becomes what the household's controller carries
    out: the plan less what its strategy orders did not trade
    (:func:`planning.dispatch.battery_dispatch_wh`, the rule the platform tracks the battery by),
    and the meter's series follows, for the whole period when the clearing is seen before it
    begins, else for the steps still to come. A period whose clearing it did not see in time runs
    as planned (counted in ``undispatched``).
    """

    def __init__(
        self, engine: Engine, result: RunResult, clock: AcceleratedClock, updates: Any, rules: MarketRules
    ) -> None:
        self.engine = engine
        self.result = result
        self.clock = clock
        self.updates = updates
        self.rules = rules
        interval_minutes = rules.interval_minutes
        self.length = timedelta(minutes=interval_minutes)
        simulation = result.simulation
        self.steps_per_period = interval_minutes * 60 // simulation.step_s
        kept = set(result.household_ids)
        self.rows = {
            home.id: index
            for index, home in enumerate(simulation.households)
            if home.id in kept and home.trading == "platform"
        }
        self.efficiency = {home.id: home.battery_round_trip_efficiency for home in simulation.households}
        self.index = {period.start_utc: i for i, period in enumerate(result.periods)}
        #: (home, period index) -> (battery Wh, EV Wh, state of charge at its end in Wh or None)
        self.driven: dict[tuple[str, int], tuple[int, int, int | None]] = {}
        #: Each home's battery at the start of its first plan, Wh.
        self.first_soc: dict[str, int] = {}
        #: (home, period index) whose battery energy its clearing has fixed.
        self.dispatched: set[tuple[str, int]] = set()
        self.seen: dict[str, datetime] = {}
        self.late = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="plan-follower", daemon=True)

    def __enter__(self) -> _PlanFollower:
        if self.rows:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    @property
    def undispatched(self) -> int:
        """Home-periods driven by a plan whose clearing the follower did not see in time (before
        the last steps of the period)."""
        return sum(1 for key in self.driven if key not in self.dispatched)

    @property
    def unplanned(self) -> int:
        return len(self.rows) * len(self.result.periods) - len(self.driven)

    def devices(self) -> dict[str, PlatformDevices]:
        """What each platform home's battery and EV did, period by period: the state of charge
        integrated from the battery's energy from where its first plan started it."""
        count = len(self.result.periods)
        found = {}
        for home in self.rows:
            cells = [self.driven.get((home, t), (0, 0, None)) for t in range(count)]
            soc = self.first_soc.get(home)
            ends: list[int | None] = []
            for battery_wh, _, planned_end in cells:
                if soc is not None and planned_end is not None:
                    soc += stored_change_wh(battery_wh, self.efficiency[home])
                ends.append(soc if planned_end is not None else None)
            found[home] = PlatformDevices(tuple(c[0] for c in cells), tuple(c[1] for c in cells), tuple(ends))
        return found

    def _follow(self) -> None:
        while not self._stop.wait(FOLLOW_EVERY_S):
            try:
                self.follow_once()
            except Exception:  # a locked database now and then: the next look tries again
                log.exception("following the platform's plans failed once")

    def follow_once(self) -> None:
        """Read the plans once and drive what is new, then carry out each newly cleared period."""
        with Session(self.engine) as session:
            plans = [latest_plan(session, home) for home in self.rows]
        for plan in plans:
            if plan is None or self.seen.get(plan.participant_id) == plan.planned_at:
                continue
            self.seen[plan.participant_id] = plan.planned_at
            if plan.battery_soc_wh is not None:
                self.first_soc.setdefault(plan.participant_id, plan.battery_soc_wh)
            self._drive(plan)
        self._dispatch_cleared()

    def _dispatch_cleared(self) -> None:
        """Each period whose gate has closed and that has not ended: once cleared, its battery
        does the plan less what did not trade, from the first step the meter has not begun (a
        clearing seen late changes only the rest of the period)."""
        now = self.clock.now()
        waiting = [
            t
            for t, period in enumerate(self.result.periods)
            if self.rules.gate_closure_utc(period) <= now < period.end_utc
            and any((home, t) in self.driven and (home, t) not in self.dispatched for home in self.rows)
        ]
        if not waiting:
            return
        with Session(self.engine) as session:
            starts = [self.result.periods[t].start_utc for t in waiting]
            cleared = set(
                session.exec(
                    select(ClearingRunRow.interval_start_utc).where(
                        col(ClearingRunRow.is_current), col(ClearingRunRow.interval_start_utc).in_(starts)
                    )
                )
            )
            untraded = untraded_strategy_orders(
                session, list(self.rows), since=min(starts), until=max(starts) + self.length
            )
        simulation = self.result.simulation
        # The first step surely not begun when the meters apply an update (a few steps of margin:
        # at a day in 30 s a step of a minute is 21 ms). The clock is read again: the reads above
        # took market time, and a step begun meanwhile must not be rewritten.
        elapsed = int((self.clock.now() - simulation.start_utc).total_seconds()) // simulation.step_s
        first_free = elapsed + STEP_MARGIN
        for t in waiting:
            start = self.result.periods[t].start_utc
            if start not in cleared:
                continue
            first = max(t * self.steps_per_period, first_free)
            remaining = (t + 1) * self.steps_per_period - first
            if remaining <= 0:
                continue  # too late: the period runs as planned
            for home in self.rows:
                if (home, t) not in self.driven or (home, t) in self.dispatched:
                    continue
                self.dispatched.add((home, t))
                planned, ev_wh, soc_end = self.driven[(home, t)]
                short = untraded.get((home, start))
                if short is None:
                    continue
                done = battery_dispatch_wh(planned, short.unsold_wh, short.unbought_wh)
                if done == planned:
                    continue
                share = remaining / self.steps_per_period  # of the period still to run
                self.driven[(home, t)] = (round(planned * (1 - share) + done * share), ev_wh, soc_end)
                self._send_steps(home, first, (t + 1) * self.steps_per_period, done + ev_wh)

    def _send_steps(self, home: str, first_step: int, end_step: int, device_wh: int) -> None:
        """The home's meter series from ``first_step`` to before ``end_step``, its devices at the
        power that makes ``device_wh`` over a whole period."""
        self.updates.put((self.rows[home], first_step, self._series(home, first_step, end_step, device_wh)))

    def _send(self, home: str, first: int, last: int) -> None:
        """The home's meter series for periods ``first`` to before ``last``, from what it drove
        (one update for them all)."""
        values: list[float] = []
        for t in range(first, last):
            battery_wh, ev_wh, _ = self.driven.get((home, t), (0, 0, None))
            step = t * self.steps_per_period
            values.extend(self._series(home, step, step + self.steps_per_period, battery_wh + ev_wh))
        self.updates.put((self.rows[home], first * self.steps_per_period, values))

    def _series(self, home: str, first_step: int, end_step: int, device_wh: int) -> list[float]:
        """The home's power in W at each step from ``first_step`` to before ``end_step``: its
        simulated own use and PV, and its devices at the power that makes ``device_wh`` over a
        whole period."""
        base = self.result.simulation.net_power_w[self.rows[home]]
        device_w = device_wh * 3_600.0 / self.length.total_seconds()
        return [float(w) + device_w for w in base[first_step:end_step]]

    def _drive(self, plan: StrategyPlanRow) -> None:
        home = plan.participant_id
        now = self.clock.now()
        soc = plan.battery_soc_wh
        changed_from: int | None = None
        for start, soc_after, ev_wh in planned_periods(plan):
            t = self.index.get(start)
            battery_wh = 0
            if soc is not None and soc_after is not None:
                battery_wh = battery_grid_wh(soc, soc_after, self.efficiency[home])
            soc = soc_after
            if t is None:
                continue
            if start <= now:
                if (home, t) not in self.driven:
                    self.late += 1
                continue
            self.driven[(home, t)] = (battery_wh, ev_wh, soc_after)
            changed_from = t if changed_from is None else min(changed_from, t)
        if changed_from is None:
            return
        self._send(home, changed_from, len(self.result.periods))


def _wait_until(clock: AcceleratedClock, moment: datetime, tick: Callable[[], None]) -> None:
    """Sleep until the market clock shows ``moment`` (real sleeps: this is the run's pacing),
    calling ``tick`` now and then."""
    while (remaining := clock.real_seconds_until(moment)) > 0:
        tick()
        time.sleep(min(remaining, 0.25))


def _wait_for_settlement(engine: Engine, periods: Sequence[SettlementPeriod], deadline_s: float) -> None:
    """Until every period has its initial settlement run, or the deadline passes."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        with Session(engine) as session:
            if all(any(run.run_type == INITIAL for run in runs_of(session, p)) for p in periods):
                return
        time.sleep(0.2)
