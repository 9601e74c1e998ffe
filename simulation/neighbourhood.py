"""Simulate a scenario: every household's realised power over the days, and its orders per period.

:func:`simulate` turns a :class:`~simulation.scenario.Scenario` into a :class:`Simulation`:

1. **households** are drawn group by group (``h0001``, ``h0002``, ...): annual demand, occupants,
   which homes have PV, a battery, an EV or a heat pump (a seeded choice of the configured share),
   their sizes, meter model and strategy;
2. **realised power** per home at ``step_s`` resolution in UTC: CREST demand from the profile pool
   (:mod:`simulation.demand`), PV from pvlib and the cloud process (:mod:`simulation.weather`), the
   heat pump's temperature-shaped demand, the EV's charging plan and the battery's committed
   dispatch (:mod:`simulation.strategies`). Net power is import positive, export negative;
3. **orders**: each home forecasts its own demand and PV for each period (the realised energy times
   seeded noise of relative std ``forecast_error``, so settlement sees real imbalances), adds its
   battery and EV plans (known exactly: they are committed) and bids per its strategy.

The same scenario gives the same arrays and orders, bit for bit: every draw comes from NumPy
generators seeded by ``[scenario seed, purpose, ...]``, and richardsonpy's global random state is
seeded per pool profile.

Heat pumps: the day's electricity (``kwh_per_day``) is spread over the local day in proportion to
:func:`~simulation.weather.heating_weights` (heating degrees below 18 C plus a floor, with a night
set-back), shifted by a seeded +-30 minutes per home.

EVs: a car is plugged in from its arrival (local hour) one evening to its departure the next
morning and needs its ``kwh_per_day`` by then. The simulation starts with every car plugged in,
needing its day's energy by the first morning's departure; the last evening's session runs past the
end, and is planned over its whole window, of which the simulated part is realised.

Trading through the platform: a group's ``trading`` (:mod:`simulation.scenario`) makes its homes
state a strategy and let the platform bid for them (issue 17's automatic trading). Such a home
has no orders here and its series holds no battery or EV power: the scenario runner drives those
from the platform's plan during the day (:mod:`demo.scenario_run`). A ``both`` group also has,
right after each of its homes, an identical twin ``<id>-agents`` that trades through the agents,
so that the report compares the two ways of trading for the same home on the same day.

May import numpy, pandas and :mod:`simulation`, :mod:`market.intervals`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
import pandas as pd

from market.intervals import LONDON, periods_of_day
from simulation.demand import MINUTES_PER_DAY, WEEKEND_DAYS, crest_pool, seasonal_factor
from simulation.scenario import Scenario
from simulation.strategies import (
    Strategy,
    forecast_positions,
    make_strategy,
    net_legs,
    plan_battery,
    plan_ev,
)
from simulation.weather import (
    clear_sky_at,
    clear_sky_index_minutes,
    clear_sky_minutes,
    heating_weights,
    home_deviation,
    plane_of_array_minutes,
)

__all__ = [
    "COMPONENTS",
    "Household",
    "Period",
    "PlannedOrder",
    "Simulation",
    "metered_period_wh",
    "simulate",
    "simulate_history",
]

FloatArray = npt.NDArray[np.float64]
COMPONENTS = ("demand", "pv", "battery", "ev", "heat_pump")
"""The names of :attr:`Simulation.components_w`; net = demand + heat_pump + ev + battery - pv."""
W_S_PER_KWH = 3_600_000.0
HEAT_PUMP_MAX_SHIFT_MINUTES = 30
_CHUNK_HOMES = 1000


@dataclass(frozen=True, slots=True)
class Household:
    """One simulated home.

    Attributes
    ----------
    id : str
        Stable id, ``h0001`` upwards (zero-padded to the width of the largest).
    name : str
        ``"<group name_prefix> <n>"``.
    feeder : str
        The network node the home is on.
    meter_model : str
        One of :data:`metering.emulator.SIMULATED_MODELS`.
    occupants : int
        Household size, 1 to 5.
    annual_kwh : float
        Annual demand (appliances and lighting; heat pump and EV on top).
    pv_kwp, battery_kwh, battery_kw : float
        0 without the asset.
    has_ev, has_heat_pump : bool
        Whether the home has them.
    strategy : str
        ``consumer``, ``pv``, ``battery`` or ``ev`` (``auto`` resolved).
    group : int
        Index of its ``[[households]]`` group.
    ev_kwh_per_day, heat_pump_kwh_per_day : float
        0 without the asset.
    forecast_error : float
        Relative std of its demand and PV forecast error.
    trading : str
        ``agents`` (its orders come from the simulation's agents, :mod:`simulation.strategies`)
        or ``platform`` (it states a strategy and the platform bids for it: it has no orders
        here, and its battery and EV follow the platform's plan, so its series holds neither).
    twin_of : str or None
        For the agents' twin of a ``both`` group's home: the id of the home it copies.
    battery_round_trip_efficiency, battery_initial_soc : float
        The battery's energy out over in, and its stored share at the start (0 without one).
    ev_arrival_hour, ev_departure_hour, ev_charger_kw : float
        When the EV is plugged in and leaves (local hours) and its charger's power (0 without).
    """

    id: str
    name: str
    feeder: str
    meter_model: str
    occupants: int
    annual_kwh: float
    pv_kwp: float
    battery_kwh: float
    battery_kw: float
    has_ev: bool
    has_heat_pump: bool
    strategy: str
    group: int = 0
    ev_kwh_per_day: float = 0.0
    heat_pump_kwh_per_day: float = 0.0
    forecast_error: float = 0.0
    trading: str = "agents"
    twin_of: str | None = None
    battery_round_trip_efficiency: float = 0.0
    battery_initial_soc: float = 0.0
    ev_arrival_hour: float = 0.0
    ev_departure_hour: float = 0.0
    ev_charger_kw: float = 0.0


class Period(NamedTuple):
    """A settlement period: ``(settlement_date, period, start_utc, end_utc)``."""

    settlement_date: date
    period: int
    start_utc: datetime
    end_utc: datetime


@dataclass(frozen=True, slots=True)
class PlannedOrder:
    """An order a household places for one settlement period.

    ``side`` is ``"buy"`` or ``"sell"``; ``quantity_kwh`` has 3 decimal places (whole Wh, > 0);
    ``price_p_per_kwh`` has 2 (whole 0.01 p ticks), within the tariffs.
    """

    household_id: str
    period_start_utc: datetime
    side: str
    quantity_kwh: Decimal
    price_p_per_kwh: Decimal


@dataclass(frozen=True, eq=False)
class Simulation:
    """The result of :func:`simulate`; see the module docstring.

    Attributes
    ----------
    scenario : Scenario
        What was simulated.
    start_utc, end_utc : datetime
        The first settlement day's local midnight and the last day's end, aware UTC.
    step_s : int
        Seconds per step of the series.
    households : tuple of Household
        In id order; row ``i`` of every array is ``households[i]``.
    net_power_w : ndarray
        Shape (households, steps): realised net power, import positive, W, constant over each step.
    components_w : dict
        ``demand``, ``pv`` (generation, positive), ``battery`` (positive charging), ``ev``,
        ``heat_pump``, each shaped like ``net_power_w``.
    orders : tuple of PlannedOrder
        Sorted by period, then household, side and price.
    periods : tuple of Period
        The settlement periods covered, in order.
    battery_soc_kwh : ndarray
        Shape (households, periods + 1): stored energy at each period boundary (0 without battery).
    """

    scenario: Scenario
    start_utc: datetime
    end_utc: datetime
    step_s: int
    households: tuple[Household, ...]
    net_power_w: FloatArray
    components_w: dict[str, FloatArray]
    orders: tuple[PlannedOrder, ...]
    periods: tuple[Period, ...]
    battery_soc_kwh: FloatArray = field(repr=False)

    def metered_kwh(
        self, household_index: int, start_utc: datetime, end_utc: datetime
    ) -> tuple[float, float]:
        """What the household's meter counts between two instants: (import kWh, export kWh).

        The exact integral of the series' positive and negative parts; instants outside the
        simulated span are clipped to it.
        """
        series = self.net_power_w[household_index]
        total_s = series.size * self.step_s

        def integral(moment: datetime) -> tuple[float, float]:
            seconds = min(max((moment - self.start_utc).total_seconds(), 0.0), float(total_s))
            whole = int(seconds // self.step_s)
            head = series[:whole]
            imported = float(np.clip(head, 0.0, None).sum()) * self.step_s
            exported = float(np.clip(-head, 0.0, None).sum()) * self.step_s
            if whole < series.size:
                part = float(series[whole]) * (seconds - whole * self.step_s)
                imported += max(part, 0.0)
                exported += max(-part, 0.0)
            return imported, exported

        start_import, start_export = integral(start_utc)
        end_import, end_export = integral(end_utc)
        return (end_import - start_import) / W_S_PER_KWH, (end_export - start_export) / W_S_PER_KWH


def metered_period_wh(
    simulation: Simulation, row: int, *, with_devices: bool = True
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """A home's import and export per settlement period as its meter counts them, whole Wh (half
    to even): the positive and the negative parts of its net power summed step by step.

    ``with_devices=False`` leaves its battery and EV out (its own demand, heat pump and PV).
    """
    parts = simulation.components_w
    net = parts["demand"][row] + parts["heat_pump"][row] - parts["pv"][row]
    if with_devices:
        net = net + parts["battery"][row] + parts["ev"][row]
    steps = len(net) // len(simulation.periods)
    by_period = net.reshape(len(simulation.periods), steps)
    to_wh = simulation.step_s / 3600.0
    imported = np.rint(np.clip(by_period, 0.0, None).sum(axis=1) * to_wh).astype(np.int64)
    exported = np.rint(np.clip(-by_period, 0.0, None).sum(axis=1) * to_wh).astype(np.int64)
    return imported, exported


@dataclass
class _Homes:
    """The drawn households as columns, for vectorised work."""

    households: list[Household]
    strategies: list[Strategy]
    battery_efficiency: FloatArray
    battery_initial_soc: FloatArray
    arrival_h: FloatArray
    departure_h: FloatArray
    charger_kw: FloatArray


def _draw_households(scenario: Scenario) -> _Homes:
    total = scenario.household_count
    width = max(4, len(str(total)))
    households: list[Household] = []
    strategies: list[Strategy] = []
    columns: dict[str, list[float]] = {k: [] for k in ("eff", "soc", "arr", "dep", "kw")}
    for g, group in enumerate(scenario.households):
        rng = np.random.default_rng([scenario.seed, 11, g])
        n = group.count
        has = {}
        for asset in ("pv", "battery", "ev", "heat_pump"):
            chosen = np.zeros(n, dtype=bool)
            chosen[rng.permutation(n)[: group.asset_count(asset)]] = True
            has[asset] = chosen
        annual = np.round(rng.uniform(*group.annual_kwh, n), -1)
        occupants = rng.integers(group.occupants[0], group.occupants[1] + 1, n)

        def draw(
            spec: object, name: str, decimals: int = 1, rng: np.random.Generator = rng, n: int = n
        ) -> FloatArray:
            if spec is None:
                return np.zeros(n)
            low, high = getattr(spec, name)
            return np.round(rng.uniform(low, high, n), decimals)

        kwp = draw(group.pv, "kwp")
        battery_kwh = draw(group.battery, "kwh")
        battery_kw = draw(group.battery, "kw")
        ev_kwh = draw(group.ev, "kwh_per_day")
        arrival = draw(group.ev, "arrival_hour", 2)
        departure = draw(group.ev, "departure_hour", 2)
        hp_kwh = draw(group.heat_pump, "kwh_per_day")
        for i in range(n):
            number = len(households) + 1
            assets = {name: bool(flags[i]) for name, flags in has.items()}
            name: str = group.strategy
            if name == "auto":
                by_asset = (("battery", "battery"), ("ev", "ev"), ("pv", "pv"))
                name = next((s for s, a in by_asset if assets[a]), "consumer")
            strategies.append(make_strategy(name, group.strategy_params))
            households.append(
                Household(
                    id=f"h{number:0{width}d}",
                    name=f"{group.name_prefix} {i + 1}",
                    feeder=group.feeder,
                    meter_model=group.meter_model[i % len(group.meter_model)],
                    occupants=int(occupants[i]),
                    annual_kwh=float(annual[i]),
                    pv_kwp=float(kwp[i]) if assets["pv"] else 0.0,
                    battery_kwh=float(battery_kwh[i]) if assets["battery"] else 0.0,
                    battery_kw=float(battery_kw[i]) if assets["battery"] else 0.0,
                    has_ev=assets["ev"],
                    has_heat_pump=assets["heat_pump"],
                    strategy=name,
                    group=g,
                    ev_kwh_per_day=float(ev_kwh[i]) if assets["ev"] else 0.0,
                    heat_pump_kwh_per_day=float(hp_kwh[i]) if assets["heat_pump"] else 0.0,
                    forecast_error=group.forecast_error,
                    trading="agents" if group.trading == "agents" else "platform",
                    battery_round_trip_efficiency=(
                        group.battery.round_trip_efficiency if group.battery and assets["battery"] else 0.0
                    ),
                    battery_initial_soc=group.battery.initial_soc
                    if group.battery and assets["battery"]
                    else 0.0,
                    ev_arrival_hour=float(arrival[i]) if assets["ev"] else 0.0,
                    ev_departure_hour=float(departure[i]) if assets["ev"] else 0.0,
                    ev_charger_kw=group.ev.charger_kw if group.ev and assets["ev"] else 0.0,
                )
            )
            columns["eff"].append(group.battery.round_trip_efficiency if group.battery else 1.0)
            columns["soc"].append(group.battery.initial_soc if group.battery else 0.0)
            columns["arr"].append(float(arrival[i]))
            columns["dep"].append(float(departure[i]))
            columns["kw"].append(group.ev.charger_kw if group.ev else 0.0)
    return _Homes(
        households,
        strategies,
        np.array(columns["eff"]),
        np.array(columns["soc"]),
        np.array(columns["arr"]),
        np.array(columns["dep"]),
        np.array(columns["kw"]),
    )


def _to_steps(per_minute: FloatArray, minutes_per_step: int) -> FloatArray:
    """Average a (..., minutes) array over blocks of ``minutes_per_step``."""
    if minutes_per_step == 1:
        return per_minute
    shape = (*per_minute.shape[:-1], per_minute.shape[-1] // minutes_per_step, minutes_per_step)
    return per_minute.reshape(shape).mean(axis=-1)


def _local_clock(start_utc: datetime, minutes: int) -> tuple[npt.NDArray[np.int64], FloatArray]:
    """Each UTC minute's local wall-clock minute of the day, and its local hour (midpoint)."""
    times = pd.date_range(start_utc, periods=minutes, freq="1min", tz=UTC).tz_convert(LONDON)
    wall = (times.hour.to_numpy() * 60 + times.minute.to_numpy()).astype(np.int64)
    return wall, (wall + 0.5) / 60.0


def _at_local(day: date, hour: float) -> datetime:
    minutes = round(hour * 60)
    moment = datetime.combine(day, time(minutes // 60, minutes % 60), tzinfo=LONDON)
    return moment.astimezone(UTC)


def simulate(scenario: Scenario, days: int | None = None) -> Simulation:
    """Simulate a scenario: realised power of every household and its orders for every period.

    Parameters
    ----------
    scenario : Scenario
        A validated scenario (:func:`~simulation.scenario.load_scenario`).
    days : int, optional
        Simulate this many settlement days instead of the scenario's ``days`` (to shorten tests).

    Returns
    -------
    Simulation
        Deterministic for the scenario (and ``days``): the same input gives the same arrays and
        orders, bit for bit.
    """
    day_count = scenario.days if days is None else days
    if day_count < 1:
        raise ValueError(f"days must be at least 1, got {day_count}")
    return _simulate(scenario, day_count)


def simulate_history(scenario: Scenario, days: int | None = None) -> Simulation | None:
    """The ``days`` days before the scenario's date (default its ``history_days``) for the same
    homes: the meter history a platform would hold for them (None for no days).

    The homes are drawn as :func:`simulate` draws them (the same ids, sizes and assets), every
    home run as the agents run it (batteries and EVs on their plans; :attr:`Simulation.components_w`
    keeps each part apart), with weather of its own: the cloud process and each roof's deviation
    are seeded apart from the scenario day's, so the history never repeats the day it precedes.
    CREST demand comes from two pools of profiles, those of the history's last weekday and its last
    weekend day (each day a home draws one of the pool of its kind), rather than a pool per day:
    the same model at an eighth of the cost over a fortnight; the scenario day's own pool is not
    among them, so the history never holds the day's own profiles.
    """
    count = scenario.history_days if days is None else days
    if count < 1:
        return None
    earlier = scenario.model_copy(
        update={
            "date": scenario.date - timedelta(days=count),
            "days": count,
            "households": [group.model_copy(update={"trading": "agents"}) for group in scenario.households],
        }
    )
    history_dates = [earlier.date + timedelta(days=d) for d in range(count)]
    pool_of: dict[date, date] = {}
    for kind in (False, True):
        same = [day for day in history_dates if (day.weekday() in WEEKEND_DAYS) is kind]
        for day in same:
            pool_of[day] = same[-1]
    weather_seed = int(np.random.SeedSequence([scenario.seed, 301]).generate_state(1)[0])
    return _simulate(earlier, count, weather_seed=weather_seed, pool_of=pool_of)


def _simulate(
    scenario: Scenario,
    day_count: int,
    *,
    weather_seed: int | None = None,
    pool_of: dict[date, date] | None = None,
) -> Simulation:
    """:func:`simulate`, with the cloud and roof draws seeded by ``weather_seed`` (default the
    scenario's seed) and each day's CREST profiles from the pool of ``pool_of[day]`` (default its
    own)."""
    seed = scenario.seed
    weather_seed = seed if weather_seed is None else weather_seed
    pool_of = pool_of or {}
    interval = scenario.interval_minutes
    step_s = scenario.step_seconds
    minutes_per_step = step_s // 60
    dates = [scenario.date + timedelta(days=d) for d in range(day_count)]
    day_periods = [periods_of_day(day, length_minutes=interval) for day in dates]
    periods = tuple(
        Period(p.settlement_date, p.period, p.start_utc, p.end_utc) for day in day_periods for p in day
    )
    start_utc, end_utc = periods[0].start_utc, periods[-1].end_utc
    minutes = int((end_utc - start_utc).total_seconds()) // 60
    steps = minutes // minutes_per_step
    steps_per_period = interval // minutes_per_step
    period_count = len(periods)
    period_h = interval / 60.0

    homes = _draw_households(scenario)
    households = homes.households
    count = len(households)
    wall, local_hours = _local_clock(start_utc, minutes)
    day_minutes = [len(day) * interval for day in day_periods]
    day_bounds = np.concatenate(([0], np.cumsum(day_minutes)))

    # --- demand: CREST pool profiles, scaled and shifted -----------------------------------------
    weather = scenario.weather
    ghi = clear_sky_minutes(start_utc, minutes, scenario.location, weather)
    demand_w = np.empty((count, steps))
    occupants = np.array([h.occupants for h in households])
    annual = np.array([h.annual_kwh for h in households])
    demand_rng = np.random.default_rng([seed, 12])
    picks = demand_rng.integers(0, scenario.demand.pool_size, (count, day_count))
    max_shift = scenario.demand.max_shift_minutes
    shifts = demand_rng.integers(-max_shift, max_shift + 1, (count, day_count))
    light_keys: dict[date, tuple[float, ...]] = {}
    for d, day in enumerate(dates):
        a, b = int(day_bounds[d]), int(day_bounds[d + 1])
        lighting = np.zeros(MINUTES_PER_DAY)
        lighting[wall[a:b]] = ghi[a:b] * weather.clear_sky_index_mean
        light_keys[day] = tuple(float(x) for x in np.round(lighting, 3))
    for d, day in enumerate(dates):
        a, b = int(day_bounds[d]), int(day_bounds[d + 1])
        day_wall = wall[a:b]
        pool_day = pool_of.get(day, day)
        for size in np.unique(occupants):
            pool = crest_pool(seed, int(size), pool_day, scenario.demand.pool_size, light_keys[pool_day])
            pool_mean_kwh = float(pool.sum(axis=1).mean()) / 60_000.0
            members = np.flatnonzero(occupants == size)
            for chunk in np.array_split(members, max(1, math.ceil(members.size / _CHUNK_HOMES))):
                index = (day_wall[None, :] - shifts[chunk, d][:, None]) % MINUTES_PER_DAY
                profiles = np.take_along_axis(pool[picks[chunk, d]], index, axis=1)
                scale = annual[chunk] / 365.0 * seasonal_factor(day) / pool_mean_kwh
                demand_w[chunk, a // minutes_per_step : b // minutes_per_step] = _to_steps(
                    profiles * scale[:, None], minutes_per_step
                )

    # --- PV --------------------------------------------------------------------------------------
    kwp = np.array([h.pv_kwp for h in households])
    pv_w = np.zeros((count, steps))
    with_pv = np.flatnonzero(kwp > 0)
    if with_pv.size:
        poa = plane_of_array_minutes(start_utc, minutes, scenario.location, weather, scenario.solar)
        street = _to_steps(poa * clear_sky_index_minutes(minutes, weather, weather_seed), minutes_per_step)
        deviation = home_deviation(with_pv.size, steps, step_s, weather, weather_seed)
        pv_w[with_pv] = (
            kwp[with_pv, None] * scenario.solar.performance_ratio * street[None, :] * (1.0 + deviation)
        )
    pv_w = np.clip(pv_w, 0.0, None)

    # --- heat pumps ------------------------------------------------------------------------------
    heat_w = np.zeros((count, steps))
    with_hp = [i for i, h in enumerate(households) if h.has_heat_pump]
    if with_hp:
        weights = heating_weights(local_hours, weather)
        hp_rng = np.random.default_rng([seed, 14])
        hp_shifts = hp_rng.integers(
            -HEAT_PUMP_MAX_SHIFT_MINUTES, HEAT_PUMP_MAX_SHIFT_MINUTES + 1, len(with_hp)
        )
        for i, shift in zip(with_hp, hp_shifts):
            shifted = np.roll(weights, int(shift))
            per_minute = np.empty(minutes)
            for d in range(day_count):
                a, b = int(day_bounds[d]), int(day_bounds[d + 1])
                part = shifted[a:b]
                per_minute[a:b] = households[i].heat_pump_kwh_per_day * 60_000.0 * part / part.sum()
            heat_w[i] = _to_steps(per_minute, minutes_per_step)

    # --- price forecast, over the simulated days and one more (for the last EV session) ----------
    extra_day = dates[-1] + timedelta(days=1)
    extended = list(periods) + [
        Period(p.settlement_date, p.period, p.start_utc, p.end_utc)
        for p in periods_of_day(extra_day, length_minutes=interval)
    ]
    mids = [p.start_utc + (p.end_utc - p.start_utc) / 2 for p in extended]
    mid_local = [m.astimezone(LONDON) for m in mids]
    spec = scenario.price_forecast
    forecast = forecast_positions(
        np.array([m.hour + m.minute / 60.0 for m in mid_local]),
        clear_sky_at(mids, scenario.location, weather),
        clear_sky_index_mean=weather.clear_sky_index_mean,
        night_level=spec.night_level,
        day_level=spec.day_level,
        peak_level=spec.peak_level,
        solar_depth=spec.solar_depth,
    )
    starts = np.array([p.start_utc.timestamp() for p in extended])
    ends = np.array([p.end_utc.timestamp() for p in extended])

    # --- EVs ---------------------------------------------------------------------------------------
    ev_kwh = np.zeros((count, period_count))
    ev_urgent = np.zeros((count, period_count))
    ev_rng = np.random.default_rng([seed, 15])
    for i, home in enumerate(households):
        if not home.has_ev:
            continue
        tie = ev_rng.random(len(extended))
        per_period = homes.charger_kw[i] * period_h
        for d in range(day_count + 1):
            arrival = start_utc if d == 0 else _at_local(dates[d - 1], homes.arrival_h[i])
            departure = _at_local(scenario.date + timedelta(days=d), homes.departure_h[i])
            window = np.flatnonzero((starts >= arrival.timestamp()) & (ends <= departure.timestamp()))
            if window.size == 0:
                continue
            plan, urgent = plan_ev(
                forecast[window], tie[window], need_kwh=home.ev_kwh_per_day, max_kwh_per_period=per_period
            )
            inside = window < period_count
            ev_kwh[i, window[inside]] += plan[inside]
            ev_urgent[i, window[inside]] += urgent[inside]

    # --- batteries ---------------------------------------------------------------------------------
    battery_kwh = np.zeros((count, period_count))
    soc_kwh = np.zeros((count, period_count + 1))
    day_of_period = np.repeat(np.arange(day_count), [len(day) for day in day_periods])
    battery_rng = np.random.default_rng([seed, 16])
    sim_forecast = forecast[:period_count]
    for i, home in enumerate(households):
        if home.battery_kwh <= 0:
            continue
        battery_kwh[i], soc_kwh[i] = plan_battery(
            sim_forecast,
            day_of_period,
            battery_rng.random(period_count),
            capacity_kwh=home.battery_kwh,
            power_kw=home.battery_kw,
            period_h=period_h,
            round_trip_efficiency=float(homes.battery_efficiency[i]),
            initial_soc_kwh=float(homes.battery_initial_soc[i]) * home.battery_kwh,
        )

    to_power = 1000.0 / period_h
    battery_w = np.repeat(battery_kwh * to_power, steps_per_period, axis=1)
    ev_w = np.repeat(ev_kwh * to_power, steps_per_period, axis=1)
    components = {"demand": demand_w, "pv": pv_w, "battery": battery_w, "ev": ev_w, "heat_pump": heat_w}

    orders = _plan_orders(
        scenario,
        homes,
        periods,
        forecast=sim_forecast,
        demand_kwh=_period_kwh(demand_w + heat_w, steps_per_period, step_s),
        pv_kwh=_period_kwh(pv_w, steps_per_period, step_s),
        battery_kwh=battery_kwh,
        ev_urgent_kwh=ev_urgent,
        ev_flexible_kwh=np.clip(ev_kwh - ev_urgent, 0.0, None),
    )
    households, components, soc_kwh, orders = _platform_trading(
        scenario, households, components, soc_kwh, orders
    )
    net_w = (
        components["demand"]
        + components["heat_pump"]
        + components["ev"]
        + components["battery"]
        - components["pv"]
    )
    for array in (net_w, soc_kwh, *components.values()):
        array.setflags(write=False)
    return Simulation(
        scenario=scenario,
        start_utc=start_utc,
        end_utc=end_utc,
        step_s=step_s,
        households=tuple(households),
        net_power_w=net_w,
        components_w=components,
        orders=orders,
        periods=periods,
        battery_soc_kwh=soc_kwh,
    )


def _platform_trading(
    scenario: Scenario,
    households: Sequence[Household],
    components: dict[str, FloatArray],
    soc_kwh: FloatArray,
    orders: tuple[PlannedOrder, ...],
) -> tuple[list[Household], dict[str, FloatArray], FloatArray, tuple[PlannedOrder, ...]]:
    """The homes that trade through the platform, and the agents' twins of a ``both`` group's.

    Every home was simulated as the agents run it. A platform home keeps its demand, PV and heat
    pump but loses its agent's orders and its battery and EV series (the platform's plan drives
    those during the run); in a ``both`` group a twin follows it, ``<id>-agents``, the same home
    with the agent's orders and devices.
    """
    rows: list[int] = []
    kept: list[Household] = []
    twin_of: dict[str, str] = {}
    for index, home in enumerate(households):
        rows.append(index)
        kept.append(home)
        if home.trading == "platform" and scenario.households[home.group].trading == "both":
            twin = replace(
                home, id=f"{home.id}-agents", name=f"{home.name} (agents)", trading="agents", twin_of=home.id
            )
            rows.append(index)
            kept.append(twin)
            twin_of[home.id] = twin.id
    if len(rows) == len(households) and not any(home.trading == "platform" for home in households):
        return list(households), components, soc_kwh, orders
    platform = np.array([home.trading == "platform" for home in kept])
    taken = {name: array[rows] for name, array in components.items()}
    taken["battery"][platform] = 0.0
    taken["ev"][platform] = 0.0
    soc = soc_kwh[rows]
    soc[platform] = 0.0
    trading = {home.id: home.trading for home in households}
    moved = tuple(
        order
        if trading[order.household_id] == "agents"
        else replace(order, household_id=twin_of[order.household_id])
        for order in orders
        if trading[order.household_id] == "agents" or order.household_id in twin_of
    )
    return kept, taken, soc, moved


def _period_kwh(power_w: FloatArray, steps_per_period: int, step_s: int) -> FloatArray:
    count, steps = power_w.shape
    return (
        power_w.reshape(count, steps // steps_per_period, steps_per_period).sum(axis=2) * step_s / W_S_PER_KWH
    )


def _plan_orders(
    scenario: Scenario,
    homes: _Homes,
    periods: Sequence[Period],
    *,
    forecast: FloatArray,
    demand_kwh: FloatArray,
    pv_kwh: FloatArray,
    battery_kwh: FloatArray,
    ev_urgent_kwh: FloatArray,
    ev_flexible_kwh: FloatArray,
) -> tuple[PlannedOrder, ...]:
    households = homes.households
    count, period_count = demand_kwh.shape
    rng = np.random.default_rng([scenario.seed, 13])
    errors = np.array([h.forecast_error for h in households])[:, None, None]
    noise = np.clip(1.0 + errors * rng.standard_normal((count, period_count, 2)), 0.0, None)
    base = demand_kwh * noise[..., 0] - pv_kwh * noise[..., 1]

    spreads = np.array([s.spread for s in homes.strategies])
    offset = rng.uniform(-1.0, 1.0, count) * spreads
    buy = np.array([s.buy_position for s in homes.strategies])[:, None]
    sell = np.array([s.sell_position for s in homes.strategies])[:, None]
    charge = np.repeat(buy, period_count, axis=1)
    discharge = np.repeat(sell, period_count, axis=1)
    for i, strategy in enumerate(homes.strategies):
        if households[i].battery_kwh > 0:
            charge[i], discharge[i] = strategy.battery_positions(forecast)
    urgent_flexible = np.array([s.ev_positions() for s in homes.strategies])

    legs = np.stack([base, battery_kwh, ev_urgent_kwh, ev_flexible_kwh], axis=-1)
    position = np.stack(
        [
            np.where(base > 0, buy, sell),
            np.where(battery_kwh > 0, charge, discharge),
            np.repeat(urgent_flexible[:, :1], period_count, axis=1),
            np.repeat(urgent_flexible[:, 1:], period_count, axis=1),
        ],
        axis=-1,
    )
    position = np.clip(position + offset[:, None, None], 0.0, 1.0)
    bid = net_legs(legs, position)

    export_ticks = int((scenario.tariff.export_p_per_kwh * 100).to_integral_value(rounding="ROUND_CEILING"))
    import_ticks = int((scenario.tariff.import_p_per_kwh * 100).to_integral_value(rounding="ROUND_FLOOR"))
    export_p = float(scenario.tariff.export_p_per_kwh) * 100
    span = float(scenario.tariff.import_p_per_kwh - scenario.tariff.export_p_per_kwh) * 100
    ticks = np.clip(np.rint(export_p + position * span), export_ticks, import_ticks).astype(np.int64)
    wh = np.rint(np.abs(bid) * 1000.0).astype(np.int64)
    h_idx, p_idx, leg_idx = np.nonzero(wh)
    if h_idx.size == 0:
        return ()
    sells = bid[h_idx, p_idx, leg_idx] < 0
    leg_ticks = ticks[h_idx, p_idx, leg_idx]
    leg_wh = wh[h_idx, p_idx, leg_idx]
    order = np.lexsort((leg_ticks, sells, h_idx, p_idx))
    h_idx, p_idx, sells, leg_ticks, leg_wh = (
        h_idx[order],
        p_idx[order],
        sells[order],
        leg_ticks[order],
        leg_wh[order],
    )
    # Merge legs of one household, period, side and price into one order.
    key = np.stack([p_idx, h_idx, sells.astype(np.int64), leg_ticks], axis=1)
    first = np.ones(len(key), dtype=bool)
    first[1:] = np.any(key[1:] != key[:-1], axis=1)
    starts = np.flatnonzero(first)
    merged_wh = np.add.reduceat(leg_wh, starts)
    prices: dict[int, Decimal] = {}
    orders = []
    for position_in, total_wh in zip(starts.tolist(), merged_wh.tolist()):
        tick = int(leg_ticks[position_in])
        price = prices.get(tick)
        if price is None:
            price = prices[tick] = Decimal(tick).scaleb(-2)
        orders.append(
            PlannedOrder(
                household_id=households[int(h_idx[position_in])].id,
                period_start_utc=periods[int(p_idx[position_in])].start_utc,
                side="sell" if sells[position_in] else "buy",
                quantity_kwh=Decimal(int(total_wh)).scaleb(-3),
                price_p_per_kwh=price,
            )
        )
    return tuple(orders)
