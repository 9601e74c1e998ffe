"""The platform's automatic trading against the simulation's agents and a perfect-foresight oracle
(issue 17, "prove it").

A scenario group with ``trading = "both"`` (:mod:`simulation.scenario`) puts each of its homes on
the street twice: once trading through the platform (it states a strategy, the platform bids for
it and its battery and EV follow the platform's plans) and once as an identical twin trading
through the simulation's hand-written agents (:mod:`simulation.strategies`). Both trade in the
same market on the same day, so they meet the same prices. The oracle is the platform's own
optimisation (:func:`planning.plan.plan_households`) over the whole day, given the true demand,
generation and the realised local prices at the home's node.

The strategy a home states
--------------------------
:func:`strategy_for`: its PV array as simulated (kWp, the scenario's tilt, azimuth and location),
its battery (capacity, the same power both ways, the whole capacity usable, its round-trip
efficiency), its EV (charger power, plugged in from its arrival to its departure, the day's
energy), and the band it trades in (:func:`trading_band`): a buy ceiling and a sell floor at
which a local trade, after every charge the household pays on it, is exactly as good as the
energy company's tariff, so that any fill inside the band beats the tariff.

What a local trade costs the household (:mod:`market.charges`): it pays, or is paid, its own
node's clearing price; the network fees between nodes are inside the node prices (the pool pays
the network the price steps across edges), so a limit price, which is a price at the household's
node, already includes them; the platform fee ``f`` per kWh traded, on either side; VAT at ``v``
on what it is charged (purchases, the platform fee, imports from the backstop), none on what it
is paid. So a kWh bought locally at ``p`` costs ``(p + f)(1 + v)`` against ``i (1 + v)`` from the
backstop, and a kWh sold at ``p`` earns ``p - f (1 + v)`` against the export tariff ``e``:

``ceiling = i - f`` (rounded down to the 0.01 p tick), ``floor = e + f (1 + v)`` (rounded up).

How each is priced
------------------
- **platform** and **agents**: what they paid, from their statements (:mod:`market.statements`,
  the settlement of their metered energy, VAT included).
- **oracle**: its plan's net import or export in each period priced by the settlement's own rules
  (:func:`market.charges.settle_interval`: trades at the node price, the platform fee, imbalance at
  the tariffs, VAT): each of its orders trades at the realised node price when its limit would
  have cleared there (a buy limit at or above the price, a sell limit at or below), as a price
  taker (its orders would not have moved the price); what does not trade is imbalance at the
  tariffs. Its metered energy is its plan's, so it has no imbalance of forecast error.

The saving, comparable across the three
---------------------------------------
A statement's saving compares a bill with the same metered energy on the tariffs, so a battery
that cycles for the local market would be credited against a no-market world in which it cycled
just the same. Here every way of trading a home is measured against one **reference**: the home
without the market, on the tariffs alone (VAT on imports, as the statements' baseline), its
battery idle and its EV charged at full power from the moment it is plugged in (an uncontrolled
charger). The three differ also in what they leave for tomorrow, so each bill is **adjusted**
by what it carries over, valued at the day's mean local price at the home's node ``v`` (the
price the plans value the future at):

``adjusted bill = bill + v x (EV energy the reference charged on the day - EV energy charged on
the day) - v x (battery energy at the day's end - at its start)``

and ``saving = reference - adjusted bill``. The platform's **share of the oracle** is its total
saving over the oracle's total saving, over the homes compared.

The forecast error
------------------
The platform plans from forecasts of each home's demand and generation (:mod:`planning.forecast`
on its metered energy, :mod:`market.forecasts`). After the day, for each period's planning run,
the same forecast is made again from the meter data as it stands (final, where the run saw the
last periods' energy perhaps still estimated) for the run's twelve periods, and compared with the
simulated truth: the error per period ahead (:func:`planning.forecast.forecast_error`).

Money is integer hundredths of a penny (:mod:`market.units`), energy integer Wh.

May import :mod:`market`, :mod:`planning`, :mod:`simulation` and numpy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal

import numpy as np
import numpy.typing as npt
from sqlmodel import Session, col, select

from market.charges import IntervalInputs, SettlementTerms, TradeInput, household_account, settle_interval
from market.forecasts import read_forecast_histories
from market.intervals import LONDON, SettlementPeriod
from market.tables import SettlementRunRow
from market.units import money_cp, scale_cp
from planning.forecast import ForecastError, forecast_error, forecast_households
from planning.plan import HouseholdPlan, PlanFailure, PlanPeriods, PlanRequest, PriceOutlook, plan_households
from planning.strategy import ElectricVehicle, HomeBattery, PvArray, Strategy
from simulation import Household, Simulation

__all__ = [
    "CarriedOver",
    "Comparison",
    "HomeComparison",
    "PlatformDevices",
    "adjusted_bill_cp",
    "compare",
    "oracle_bill_cp",
    "oracle_requests",
    "platform_forecast_errors",
    "read_comparison",
    "reference_cp",
    "strategy_for",
    "tariff_bill_cp",
    "trading_band",
]

WH_PER_KWH = 1000
_TICK = Decimal("0.01")
FloatArray = npt.NDArray[np.float64]
#: The fraction of the oracle's saving the platform aims for (issue 17).
TARGET_SHARE = 0.8


def _decimal(value: float, places: int = 3) -> Decimal:
    return Decimal(str(round(value, places)))


def _wall_clock(hour: float) -> time:
    minutes = round(hour * 60) % (24 * 60)
    return time(minutes // 60, minutes % 60)


def trading_band(
    import_p_per_kwh: Decimal, export_p_per_kwh: Decimal, platform_fee_p_per_kwh: Decimal, vat_rate: Decimal
) -> tuple[Decimal, Decimal]:
    """The (buy ceiling, sell floor) at which a local trade is as good as the tariffs after the
    platform fee and VAT (module docstring), on the 0.01 p tick: the ceiling rounded down, the
    floor up, so a fill at either never loses to the tariff."""
    ceiling = (import_p_per_kwh - platform_fee_p_per_kwh).quantize(_TICK, rounding=ROUND_FLOOR)
    floor = (export_p_per_kwh + platform_fee_p_per_kwh * (1 + vat_rate)).quantize(
        _TICK, rounding=ROUND_CEILING
    )
    return ceiling, floor


def strategy_for(
    home: Household,
    simulation: Simulation,
    *,
    platform_fee_p_per_kwh: Decimal = Decimal(0),
    vat_rate: Decimal = Decimal(0),
) -> Strategy:
    """The strategy ``home`` states: its simulated assets and the band of :func:`trading_band`
    (module docstring)."""
    scenario = simulation.scenario
    tariff = scenario.tariff
    pv = battery = ev = None
    if home.pv_kwp > 0:
        pv = PvArray(
            kwp=_decimal(home.pv_kwp),
            tilt_deg=_decimal(scenario.solar.tilt_deg, 2),
            azimuth_deg=_decimal(scenario.solar.azimuth_deg, 2),
            latitude=_decimal(scenario.location.latitude, 6),
            longitude=_decimal(scenario.location.longitude, 6),
        )
    if home.battery_kwh > 0:
        battery = HomeBattery(
            capacity_kwh=_decimal(home.battery_kwh),
            charge_kw=_decimal(home.battery_kw),
            discharge_kw=_decimal(home.battery_kw),
            min_soc_percent=Decimal(0),
            max_soc_percent=Decimal(100),
            round_trip_efficiency_percent=_decimal(home.battery_round_trip_efficiency * 100, 2),
        )
    if home.has_ev:
        ev = ElectricVehicle(
            charge_kw=_decimal(home.ev_charger_kw),
            plugged_in_from=_wall_clock(home.ev_arrival_hour),
            departure=_wall_clock(home.ev_departure_hour),
            energy_needed_kwh=_decimal(home.ev_kwh_per_day),
        )
    ceiling, floor = trading_band(
        Decimal(tariff.import_p_per_kwh), Decimal(tariff.export_p_per_kwh), platform_fee_p_per_kwh, vat_rate
    )
    return Strategy(
        sell_floor_p_per_kwh=floor,
        buy_ceiling_p_per_kwh=ceiling,
        pv=pv,
        battery=battery,
        ev=ev,
    )


# --- pricing ---------------------------------------------------------------------------------------


def tariff_bill_cp(net_wh: Sequence[int], terms: SettlementTerms) -> int:
    """A home's bill on the tariffs alone, period by period: its net import at the import tariff
    with VAT, its net export at the export tariff (the statements' baseline rule)."""
    total = 0
    for wh in net_wh:
        if wh > 0:
            charge = money_cp(wh, terms.import_p_per_kwh)
            total += charge + scale_cp(charge, terms.vat_rate)
        elif wh < 0:
            total -= money_cp(-wh, terms.export_p_per_kwh)
    return total


def oracle_bill_cp(
    home_id: str,
    node_id: str,
    plan: HouseholdPlan,
    prices_p_per_kwh: Sequence[Decimal],
    terms: SettlementTerms,
) -> int:
    """What the oracle's plan pays, period by period, by the settlement's rules (module docstring):
    each order trades at the realised price where its limit would have cleared, the rest of its
    net energy is imbalance at the tariffs."""
    account = household_account(home_id)
    total = 0
    for planned, price in zip(plan.periods, prices_p_per_kwh, strict=True):
        trades = [
            TradeInput(home_id, node_id, str(order.side), order.energy_wh, price)
            for order in planned.orders
            if (
                order.limit_p_per_kwh >= price if str(order.side) == "buy" else order.limit_p_per_kwh <= price
            )
        ]
        metered = {home_id: planned.buy_wh - planned.sell_wh}
        settled = settle_interval(IntervalInputs(trades, (), 0, 0, metered, frozenset(), terms))
        for line in settled.lines:
            if line.debit == account:
                total += line.amount_cp
            elif line.credit == account:
                total -= line.amount_cp
    return total


@dataclass(frozen=True)
class CarriedOver:
    """What a way of trading a home leaves for tomorrow, beside the reference: EV energy it did
    not charge on the day that the reference did (Wh), and the battery's energy at the day's end
    less at its start (Wh)."""

    ev_short_wh: int = 0
    battery_gain_wh: int = 0


def adjusted_bill_cp(bill_cp: int, carried: CarriedOver, later_price_p_per_kwh: Decimal) -> int:
    """``bill + v x EV energy still owed - v x battery energy gained`` (module docstring), cp."""
    owed = carried.ev_short_wh - carried.battery_gain_wh
    value = money_cp(abs(owed), later_price_p_per_kwh)
    return bill_cp + (value if owed >= 0 else -value)


def reference_cp(
    inflexible_wh: Sequence[int], ev_uncontrolled_wh: Sequence[int], terms: SettlementTerms
) -> int:
    """The reference bill: the home's demand less its PV, with its EV charged uncontrolled and its
    battery idle, on the tariffs alone."""
    return tariff_bill_cp([a + b for a, b in zip(inflexible_wh, ev_uncontrolled_wh, strict=True)], terms)


# --- the oracle's plan -----------------------------------------------------------------------------


def oracle_requests(
    strategies: Mapping[str, Strategy],
    demand_wh: Mapping[str, Sequence[int]],
    generation_wh: Mapping[str, Sequence[int]],
    prices_p_per_kwh: Mapping[str, Sequence[Decimal]],
    terms: SettlementTerms,
    starts_utc: Sequence[datetime],
    length_hours: Decimal,
) -> dict[str, PlanRequest]:
    """Each home's perfect-foresight request: the whole day at once, the true demand and
    generation, the realised price at its node as the expected price, its battery starting where
    the platform's did (its floor: the platform cannot see it), its EV needing its day's energy."""
    periods = PlanPeriods(tuple(starts_utc), length_hours)
    count = len(starts_utc)
    requests = {}
    for home, strategy in strategies.items():
        battery = strategy.battery
        requests[home] = PlanRequest(
            periods=periods,
            prices=PriceOutlook(
                tuple(prices_p_per_kwh[home]),
                (terms.import_p_per_kwh,) * count,
                (terms.export_p_per_kwh,) * count,
            ),
            strategy=strategy,
            demand_kwh=tuple(Decimal(wh) / WH_PER_KWH for wh in demand_wh[home]),
            generation_kwh=tuple(Decimal(wh) / WH_PER_KWH for wh in generation_wh[home]),
            battery_soc_kwh=None if battery is None else battery.floor_kwh,
        )
    return requests


# --- the comparison --------------------------------------------------------------------------------


@dataclass(frozen=True)
class HomeComparison:
    """One home's three ways of trading: bills, what each carries over, savings (cp)."""

    home_id: str
    twin_id: str
    name: str
    assets: str
    reference_cp: int
    platform_bill_cp: int
    agents_bill_cp: int
    oracle_bill_cp: int
    platform_carried: CarriedOver
    agents_carried: CarriedOver
    oracle_carried: CarriedOver
    later_price_p_per_kwh: Decimal

    def saving_cp(self, way: str) -> int:
        """``reference - adjusted bill`` for ``way``: ``platform``, ``agents`` or ``oracle``."""
        bill = getattr(self, f"{way}_bill_cp")
        carried = getattr(self, f"{way}_carried")
        return self.reference_cp - adjusted_bill_cp(bill, carried, self.later_price_p_per_kwh)


@dataclass
class Comparison:
    """The homes compared and the platform's forecast error per period ahead."""

    homes: list[HomeComparison] = field(default_factory=list)
    demand_error: list[ForecastError] = field(default_factory=list)
    generation_error: list[ForecastError] = field(default_factory=list)
    net_error: list[ForecastError] = field(default_factory=list)
    #: Periods whose devices a platform home ran on a plan that reached the meters late (after the
    #: period had begun: the part before ran idle), and periods with no plan at all (idle).
    late_periods: int = 0
    unplanned_periods: int = 0
    #: Periods a platform home's battery ran as planned because its clearing was not seen in time
    #: (otherwise it runs the plan less what did not trade, from when the clearing is seen).
    undispatched_periods: int = 0
    oracle_failures: dict[str, str] = field(default_factory=dict)

    def total_cp(self, way: str) -> int:
        """Total saving of ``way`` over the homes compared."""
        return sum(home.saving_cp(way) for home in self.homes)

    @property
    def platform_share(self) -> float | None:
        """The platform's total saving over the oracle's (None when the oracle saves nothing)."""
        oracle = self.total_cp("oracle")
        return None if oracle <= 0 else self.total_cp("platform") / oracle


@dataclass(frozen=True)
class PlatformDevices:
    """What a platform home's battery and EV did on the day, period by period, as the runner drove
    them from the platform's plans (Wh; the battery's state at each period's end, or None
    without a plan for the period)."""

    battery_wh: tuple[int, ...]
    ev_wh: tuple[int, ...]
    soc_end_wh: tuple[int | None, ...]


def compare(
    homes: Sequence[tuple[Household, Household]],
    *,
    strategies: Mapping[str, Strategy],
    simulation_rows: Mapping[str, int],
    simulation: Simulation,
    node_prices: Mapping[str, Sequence[Decimal]],
    bills_cp: Mapping[str, int],
    devices: Mapping[str, PlatformDevices],
    terms: SettlementTerms,
    starts_utc: Sequence[datetime],
    length_hours: Decimal,
) -> Comparison:
    """Compare each (platform home, agents' twin) pair (module docstring).

    Parameters
    ----------
    homes : sequence of (Household, Household)
        Each platform home and its twin.
    strategies : mapping
        The strategy each platform home stated.
    simulation_rows : mapping
        Each home's row in the simulation's arrays.
    node_prices : mapping
        The realised price at each home's node per period (p/kWh), by platform home.
    bills_cp : mapping
        What each home (platform and twin) paid over the day, from its statement.
    devices : mapping
        What each platform home's battery and EV did (:class:`PlatformDevices`).
    terms : SettlementTerms
        The day's tariffs, VAT and platform fee.
    """
    count = len(starts_utc)
    period_s = float(length_hours) * 3600
    comparison = Comparison()
    truth: dict[str, tuple[list[int], list[int], list[int]]] = {}
    for home, _ in homes:
        row = simulation_rows[home.id]
        demand = _period_wh(simulation, "demand", row, period_s)
        heat = _period_wh(simulation, "heat_pump", row, period_s)
        pv = _period_wh(simulation, "pv", row, period_s)
        truth[home.id] = (
            [d + h for d, h in zip(demand, heat)],
            pv,
            [d + h - g for d, h, g in zip(demand, heat, pv)],
        )
    requests = oracle_requests(
        strategies,
        {h: t[0] for h, t in truth.items()},
        {h: t[1] for h, t in truth.items()},
        node_prices,
        terms,
        starts_utc,
        length_hours,
    )
    order = list(requests)
    plans = dict(zip(order, plan_households([requests[h] for h in order]), strict=True))
    for home, twin in homes:
        plan = plans[home.id]
        if isinstance(plan, PlanFailure):
            comparison.oracle_failures[home.id] = plan.reason
            continue
        prices = list(node_prices[home.id])
        later = (sum(prices, Decimal(0)) / len(prices)).quantize(_TICK, rounding=ROUND_HALF_EVEN)
        uncontrolled = _uncontrolled_ev_wh(home, starts_utc, length_hours)
        strategy = strategies[home.id]
        floor_wh = 0 if strategy.battery is None else int(strategy.battery.floor_kwh * WH_PER_KWH)
        twin_row = simulation_rows[twin.id]
        twin_ev = _period_wh(simulation, "ev", twin_row, period_s)
        twin_soc = simulation.battery_soc_kwh[twin_row]
        driven = devices[home.id]
        platform_soc_end = next((soc for soc in reversed(driven.soc_end_wh) if soc is not None), floor_wh)
        oracle_ev = [p.ev_charge_wh for p in plan.periods]
        oracle_soc_end = plan.periods[-1].battery_soc_wh if strategy.battery is not None else 0
        comparison.homes.append(
            HomeComparison(
                home_id=home.id,
                twin_id=twin.id,
                name=home.name,
                assets=_assets(home),
                reference_cp=reference_cp(truth[home.id][2], uncontrolled, terms),
                platform_bill_cp=bills_cp[home.id],
                agents_bill_cp=bills_cp[twin.id],
                oracle_bill_cp=oracle_bill_cp(home.id, home.feeder, plan, prices, terms),
                platform_carried=CarriedOver(
                    sum(uncontrolled) - sum(driven.ev_wh),
                    platform_soc_end - floor_wh if strategy.battery else 0,
                ),
                agents_carried=CarriedOver(
                    sum(uncontrolled) - sum(twin_ev),
                    round((float(twin_soc[count]) - float(twin_soc[0])) * WH_PER_KWH),
                ),
                oracle_carried=CarriedOver(
                    sum(uncontrolled) - sum(oracle_ev), oracle_soc_end - floor_wh if strategy.battery else 0
                ),
                later_price_p_per_kwh=later,
            )
        )
    return comparison


def _assets(home: Household) -> str:
    parts = []
    if home.pv_kwp:
        parts.append(f"PV {home.pv_kwp:g} kWp")
    if home.battery_kwh:
        parts.append(f"battery {home.battery_kwh:g} kWh")
    if home.has_ev:
        parts.append(f"EV {home.ev_kwh_per_day:g} kWh/day")
    if home.has_heat_pump:
        parts.append("heat pump")
    return ", ".join(parts) or "none"


def _period_wh(simulation: Simulation, component: str, row: int, period_s: float) -> list[int]:
    """A home's component's energy per period, whole Wh (half to even)."""
    series = np.asarray(simulation.components_w[component][row], dtype=np.float64)
    steps = round(period_s / simulation.step_s)
    wh = series.reshape(-1, steps).sum(axis=1) * simulation.step_s / 3600.0
    return [int(x) for x in np.rint(wh)]


def _uncontrolled_ev_wh(home: Household, starts_utc: Sequence[datetime], length_hours: Decimal) -> list[int]:
    """An EV charged at full power from the moment it is plugged in until it has its day's energy
    (the reference): from the day's start (the car is plugged in, as the simulation starts it) and
    again from its arrival in the evening."""
    count = len(starts_utc)
    charged = [0] * count
    if not home.has_ev:
        return charged
    per_period = round(home.ev_charger_kw * float(length_hours) * WH_PER_KWH)
    need = round(home.ev_kwh_per_day * WH_PER_KWH)
    length = timedelta(hours=float(length_hours))
    arrival = _wall_clock(home.ev_arrival_hour)
    first_day = starts_utc[0].astimezone(LONDON).date()
    sessions = [starts_utc[0]]
    evening = datetime.combine(first_day, arrival, LONDON)
    if evening > starts_utc[0]:
        sessions.append(evening)
    for session_start in sessions:
        left = need
        for t, start in enumerate(starts_utc):
            if left <= 0:
                break
            if start + length <= session_start:
                continue
            take = min(per_period, left)
            charged[t] += take
            left -= take
    return charged


def platform_forecast_errors(
    session: Session,
    homes: Sequence[Household],
    *,
    strategies: Mapping[str, Strategy],
    simulation: Simulation,
    simulation_rows: Mapping[str, int],
    starts_utc: Sequence[datetime],
    length_hours: Decimal,
    horizon: int = 12,
) -> tuple[list[ForecastError], list[ForecastError], list[ForecastError]]:
    """The platform's forecast error per period ahead, demand, generation and net (module
    docstring): a forecast for each period's planning run, its ``horizon`` periods (those within
    the day), against the simulated truth."""
    period_s = float(length_hours) * 3600
    truth = {
        home.id: (
            np.add(
                _period_wh(simulation, "demand", simulation_rows[home.id], period_s),
                _period_wh(simulation, "heat_pump", simulation_rows[home.id], period_s),
            ),
            np.asarray(_period_wh(simulation, "pv", simulation_rows[home.id], period_s)),
        )
        for home in homes
    }
    ids = [home.id for home in homes]
    pv = {home: strategies[home].pv for home in ids}
    rows = len(starts_utc) * len(ids)
    shape = (rows, horizon)
    forecast = {name: np.full(shape, np.nan) for name in ("demand", "generation")}
    actual = {name: np.full(shape, np.nan) for name in ("demand", "generation")}
    row = 0
    for first in range(len(starts_utc)):
        targets = list(starts_utc[first : first + horizon])
        histories = read_forecast_histories(
            session, period_starts_utc=targets, pv_by_household=pv, household_ids=ids
        )
        for made in forecast_households(histories, targets):
            demand, generation = truth[made.household_id]
            width = len(targets)
            forecast["demand"][row, :width] = made.demand_wh
            forecast["generation"][row, :width] = made.generation_wh
            actual["demand"][row, :width] = demand[first : first + width]
            actual["generation"][row, :width] = generation[first : first + width]
            row += 1
    net_forecast = forecast["demand"] - forecast["generation"]
    net_actual = actual["demand"] - actual["generation"]
    filled = ~np.isnan(net_forecast)
    return (
        forecast_error(np.where(filled, forecast["demand"], 0.0), actual["demand"]),
        forecast_error(np.where(filled, forecast["generation"], 0.0), actual["generation"]),
        forecast_error(np.where(filled, net_forecast, 0.0), net_actual),
    )


def read_comparison(
    session: Session,
    simulation: Simulation,
    *,
    household_ids: Sequence[str],
    periods: Sequence[SettlementPeriod],
    strategies: Mapping[str, Strategy],
    devices: Mapping[str, PlatformDevices],
    bills_cp: Mapping[str, int],
    node_prices: Sequence[Mapping[str, Decimal]],
    late_periods: int = 0,
    unplanned_periods: int = 0,
    undispatched_periods: int = 0,
) -> Comparison | None:
    """A run's comparison, from its database: every platform home whose twin ran too (None when
    the run had none). ``node_prices`` is each period's realised price per node."""
    kept = set(household_ids)
    rows = {home.id: index for index, home in enumerate(simulation.households)}
    twins = {home.twin_of: home for home in simulation.households if home.twin_of and home.id in kept}
    pairs = [
        (home, twins[home.id])
        for home in simulation.households
        if home.id in kept and home.id in twins and home.id in devices and home.id in strategies
    ]
    if not pairs or not periods:
        return None
    vat = session.exec(
        select(col(SettlementRunRow.vat_rate)).where(
            col(SettlementRunRow.interval_start_utc) == periods[0].start_utc
        )
    ).first()
    scenario = simulation.scenario
    terms = SettlementTerms(
        Decimal(scenario.tariff.import_p_per_kwh),
        Decimal(scenario.tariff.export_p_per_kwh),
        Decimal("0.05") if vat is None else Decimal(vat),
        Decimal(scenario.fees.platform_p_per_kwh),
    )
    middle = (terms.import_p_per_kwh + terms.export_p_per_kwh) / 2
    prices = {
        home.id: [Decimal(prices.get(home.feeder, middle)) for prices in node_prices] for home, _ in pairs
    }
    starts = [period.start_utc for period in periods]
    length = Decimal(periods[0].length_minutes) / 60
    comparison = compare(
        pairs,
        strategies=strategies,
        simulation_rows=rows,
        simulation=simulation,
        node_prices=prices,
        bills_cp=bills_cp,
        devices=devices,
        terms=terms,
        starts_utc=starts,
        length_hours=length,
    )
    comparison.late_periods = late_periods
    comparison.undispatched_periods = undispatched_periods
    comparison.unplanned_periods = unplanned_periods
    comparison.demand_error, comparison.generation_error, comparison.net_error = platform_forecast_errors(
        session,
        [home for home, _ in pairs],
        strategies=strategies,
        simulation=simulation,
        simulation_rows=rows,
        starts_utc=starts,
        length_hours=length,
    )
    return comparison
