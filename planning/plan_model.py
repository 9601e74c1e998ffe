r"""One household's plan as a linear programme: its numbers (:class:`HouseholdLP`) and its Pyomo model.

:func:`describe_household` turns a :class:`~planning.plan_inputs.PlanRequest` into the LP's
numbers once, in whole Wh and float p/kWh; both ways of solving read the same numbers, so they
solve the same LP: the Pyomo model here (:func:`build_plan_model`, the reference, readable
constraint by constraint) and the matrices built with NumPy for many households at once
(:mod:`planning.plan_matrix`, the path for scale). The column and row orders below are the
contract between the two (:func:`model_columns`, :func:`model_rows`).

Columns, per household, in this order: ``buy[t]`` and ``sell[t]`` for every period (the net
import and export, Wh), then with a battery ``charge[t]``, ``discharge[t]`` and ``soc[t]`` (the
state of charge at the end of period ``t``), then with an EV one ``ev[s]`` per *slot* (a period
in which a plugged-in window is open, with the energy its charger can deliver in it) and one
``delivered[k]`` per window. Rows: the energy balance of every period, then the battery's
dynamics, then each window's delivery. Every row is an equation, so the compiled Pyomo model
and the NumPy matrices agree row for row.

Energy is in Wh and prices in p/kWh, so the objective is in millipence.

May import the standard library, NumPy, Pyomo and :mod:`planning`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal
from functools import lru_cache
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt
import pyomo.environ as pyo
from pyomo.core.expr import LinearExpression

from planning.plan_inputs import PlanPeriods, PlanRequest
from planning.strategy import ElectricVehicle

WH_PER_KWH = 1000
TICK_P_PER_KWH = Decimal("0.01")

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class EvWindows:
    """The EV's plugged-in windows that open before the horizon ends, as the LP needs them.

    A *slot* is one period of one window: ``slot_period[s]`` is its period, ``slot_window[s]`` its
    window, ``slot_capacity_wh[s]`` the energy the charger delivers in the part of the period the
    EV is plugged in. Window ``k`` must receive between ``lower_wh[k]`` and ``upper_wh[k]`` within
    the horizon, and ``needed_wh[k]`` by its departure; ``later_capacity_wh[k]`` is what the
    charger can still deliver after the horizon and before departure. Slots are in period order.
    """

    slot_period: IntArray
    slot_window: IntArray
    slot_capacity_wh: IntArray
    needed_wh: IntArray
    lower_wh: IntArray
    upper_wh: IntArray
    later_capacity_wh: IntArray
    departures_utc: tuple[datetime, ...]

    @property
    def window_count(self) -> int:
        return len(self.lower_wh)


@dataclass(frozen=True)
class HouseholdLP:
    """The numbers of one household's plan, exactly as the LP uses them.

    ``import_cost_p_per_kwh[t]`` is what a Wh imported in period ``t`` is expected to cost and
    ``export_value_p_per_kwh[t]`` what a Wh exported earns (:func:`expected_unit_prices`);
    ``net_demand_wh`` is demand less generation. Battery fields are meaningful only with
    ``has_battery``; ``ev`` is ``None`` without an EV.
    """

    periods: int
    net_demand_wh: IntArray
    demand_wh: IntArray
    generation_wh: IntArray
    import_cost: tuple[Decimal, ...]
    export_value: tuple[Decimal, ...]
    import_cost_p_per_kwh: FloatArray
    export_value_p_per_kwh: FloatArray
    later_price: Decimal
    stored_price: Decimal
    has_battery: bool
    charge_max_wh: int
    discharge_max_wh: int
    soc_initial_wh: int
    soc_min_wh: int
    soc_max_wh: int
    charge_efficiency: float
    discharge_efficiency: float
    ev: EvWindows | None

    @property
    def later_price_p_per_kwh(self) -> float:
        return float(self.later_price)

    @property
    def stored_value_p_per_kwh(self) -> float:
        """What a kWh left in the battery at the end is worth: discharged later, at the stored
        price (the later price unless the request gives one)."""
        return self.discharge_efficiency * float(self.stored_price)

    @property
    def column_count(self) -> int:
        ev = 0 if self.ev is None else len(self.ev.slot_period) + self.ev.window_count
        return 2 * self.periods + (3 * self.periods if self.has_battery else 0) + ev

    @property
    def row_count(self) -> int:
        ev = 0 if self.ev is None else self.ev.window_count
        return self.periods * (2 if self.has_battery else 1) + ev


def expected_unit_prices(
    expected: Decimal, import_tariff: Decimal, export_tariff: Decimal, *, floor: Decimal, ceiling: Decimal
) -> tuple[Decimal, Decimal]:
    """What one kWh imported costs and one exported earns in a period, as the plan expects them.

    The expected price is first held within the tariffs (the backstop is always there at those
    prices). Energy is bought locally at it when it is at most the ceiling, else it comes from
    the backstop at the import tariff; sold locally when it is at least the floor, else to the
    backstop at the export tariff. So the import cost is never below the export value, the cost
    of the net import is convex and the LP never wants to import and export in one period.

    Returns
    -------
    (Decimal, Decimal)
        The import cost and the export value, p/kWh.
    """
    held = min(max(expected, export_tariff), import_tariff)
    import_cost = held if expected <= ceiling else import_tariff
    export_value = held if expected >= floor else export_tariff
    return import_cost, export_value


def to_wh(kwh: Decimal) -> int:
    """Whole Wh, half to even: a forecast's sub-Wh digits are noise."""
    return int((kwh * WH_PER_KWH).to_integral_value(ROUND_HALF_EVEN))


def describe_household(request: PlanRequest) -> HouseholdLP:
    """The LP's numbers for one request, every bound a whole number of Wh.

    Power limits and the charger's energy per slot are rounded down to whole Wh, the battery's
    least state of charge up and its most down, so that any plan within the rounded bounds is
    within the real ones. A battery that starts outside its limits (a reserve just raised, a
    maximum just lowered) may stay where it is: the bounds widen to include its start.
    """
    periods = request.periods
    count = periods.count
    strategy = request.strategy
    prices = request.prices
    units = [
        expected_unit_prices(
            prices.expected_p_per_kwh[t],
            prices.import_tariff_p_per_kwh[t],
            prices.export_tariff_p_per_kwh[t],
            floor=strategy.sell_floor_p_per_kwh,
            ceiling=strategy.buy_ceiling_p_per_kwh,
        )
        for t in range(count)
    ]
    import_cost = tuple(unit[0] for unit in units)
    export_value = tuple(unit[1] for unit in units)
    demand_wh = np.array([to_wh(v) for v in request.demand_kwh], np.int64)
    generation_wh = np.array([to_wh(v) for v in request.generation_kwh], np.int64)
    later = request.later_price_p_per_kwh
    if later is None:
        held = [
            min(max(p, e), i)
            for p, i, e in zip(
                prices.expected_p_per_kwh, prices.import_tariff_p_per_kwh, prices.export_tariff_p_per_kwh
            )
        ]
        later = (sum(held, Decimal(0)) / count).quantize(TICK_P_PER_KWH, ROUND_HALF_EVEN)

    battery = strategy.battery
    hours = periods.length_hours
    if battery is not None:
        assert request.battery_soc_kwh is not None  # checked by PlanRequest
        soc0 = to_wh(request.battery_soc_kwh)
        floor_wh = int((battery.floor_kwh * WH_PER_KWH).to_integral_value(ROUND_CEILING))
        ceiling_wh = int((battery.ceiling_kwh * WH_PER_KWH).to_integral_value(ROUND_FLOOR))
        efficiency = math.sqrt(float(battery.round_trip_efficiency_percent) / 100)
        charge_max = int((battery.charge_kw * hours * WH_PER_KWH).to_integral_value(ROUND_FLOOR))
        discharge_max = int((battery.discharge_kw * hours * WH_PER_KWH).to_integral_value(ROUND_FLOOR))
        soc_min, soc_max = min(floor_wh, soc0), max(ceiling_wh, soc0)
    else:
        soc0 = charge_max = discharge_max = soc_min = soc_max = 0
        efficiency = 1.0

    ev = None
    if strategy.ev is not None:
        needed = (
            strategy.ev.energy_needed_kwh
            if request.ev_energy_needed_kwh is None
            else request.ev_energy_needed_kwh
        )
        ev = ev_windows(periods, strategy.ev, to_wh(needed))
        if ev.window_count == 0:
            ev = None

    return HouseholdLP(
        periods=count,
        net_demand_wh=demand_wh - generation_wh,
        demand_wh=demand_wh,
        generation_wh=generation_wh,
        import_cost=import_cost,
        export_value=export_value,
        import_cost_p_per_kwh=np.array([float(v) for v in import_cost]),
        export_value_p_per_kwh=np.array([float(v) for v in export_value]),
        later_price=later,
        stored_price=later if request.stored_price_p_per_kwh is None else request.stored_price_p_per_kwh,
        has_battery=battery is not None,
        charge_max_wh=charge_max,
        discharge_max_wh=discharge_max,
        soc_initial_wh=soc0,
        soc_min_wh=soc_min,
        soc_max_wh=soc_max,
        charge_efficiency=efficiency,
        discharge_efficiency=efficiency,
        ev=ev,
    )


def ev_windows(periods: PlanPeriods, ev: ElectricVehicle, next_departure_needed_wh: int) -> EvWindows:
    """The plugged-in windows that overlap the horizon, with what each must and may receive in it.

    Windows are placed on the local calendar (``periods.timezone``) and compared in UTC, so a
    clock change inside a window shortens or lengthens it as it does the household's evening.
    The first window whose departure is after the horizon starts is the one
    ``next_departure_needed_wh`` is for; any later window in the horizon needs the strategy's full
    ``energy_needed_kwh``. A window needs at most what its charger can deliver before departure;
    what it can still receive after the horizon need not be bought in it.
    """
    geometry = _window_geometry(periods, ev.plugged_in_from, ev.departure, ev.charge_kw)
    within = np.bincount(
        geometry.slot_window, weights=geometry.slot_capacity_wh, minlength=len(geometry.after_wh)
    )
    first = [next_departure_needed_wh] if len(geometry.after_wh) else []
    wanted = np.array(first + [to_wh(ev.energy_needed_kwh)] * (len(geometry.after_wh) - 1), np.int64)
    needed = np.minimum(wanted, within.astype(np.int64) + geometry.after_wh)
    return EvWindows(
        slot_period=geometry.slot_period,
        slot_window=geometry.slot_window,
        slot_capacity_wh=geometry.slot_capacity_wh,
        needed_wh=needed,
        lower_wh=np.maximum(0, needed - geometry.after_wh),
        upper_wh=np.minimum(needed, within.astype(np.int64)),
        later_capacity_wh=geometry.after_wh,
        departures_utc=geometry.departures_utc,
    )


@dataclass(frozen=True)
class _WindowGeometry:
    slot_period: IntArray
    slot_window: IntArray
    slot_capacity_wh: IntArray
    after_wh: IntArray
    departures_utc: tuple[datetime, ...]


@lru_cache(maxsize=4096)
def _window_geometry(
    periods: PlanPeriods, plugged_in_from: time, departure: time, charge_kw: Decimal
) -> _WindowGeometry:
    """Where the windows fall on the periods and what the charger delivers in each slot and after
    the horizon: the same for every EV with these times and this charger, so computed once."""
    zone = ZoneInfo(periods.timezone)
    start = periods.starts_utc[0]
    end = periods.end_utc
    length = periods.length
    overnight = departure <= plugged_in_from
    windows: list[tuple[datetime, datetime]] = []
    day = start.astimezone(zone).date() - timedelta(days=1)
    while day <= end.astimezone(zone).date():
        plug = datetime.combine(day, plugged_in_from, tzinfo=zone).astimezone(UTC)
        leave_day = day + timedelta(days=1) if overnight else day
        leave = datetime.combine(leave_day, departure, tzinfo=zone).astimezone(UTC)
        if leave > start and plug < end:
            windows.append((plug, leave))
        day += timedelta(days=1)

    def energy_wh(seconds: float) -> int:
        return int((charge_kw * Decimal(round(seconds)) * WH_PER_KWH / 3600).to_integral_value(ROUND_FLOOR))

    slots: list[tuple[int, int, int]] = []
    after: list[int] = []
    for k, (plug, leave) in enumerate(windows):
        for t, period_start in enumerate(periods.starts_utc):
            overlap = (min(leave, period_start + length) - max(plug, period_start)).total_seconds()
            if overlap > 0:
                slots.append((t, k, energy_wh(overlap)))
        after.append(energy_wh(max(0.0, (leave - max(plug, end)).total_seconds())))
    slots.sort()
    arrays = [np.array(column, np.int64) for column in ([s[0] for s in slots], [s[1] for s in slots])]
    arrays += [np.array([s[2] for s in slots], np.int64), np.array(after, np.int64)]
    for array in arrays:  # shared by every household with this EV: nobody may change them
        array.flags.writeable = False
    period, window, capacity, after_wh = arrays
    return _WindowGeometry(period, window, capacity, after_wh, tuple(leave for _, leave in windows))


# --- the Pyomo model ------------------------------------------------------------------------------


def define_trade_variables(m: pyo.ConcreteModel, lp: HouseholdLP) -> None:
    r"""The household's net import (bought) and net export (sold) in each period, Wh.

    .. math:: b_t \ge 0, \quad s_t \ge 0 \quad \forall t \in PERIODS
    """
    m.PERIODS = pyo.RangeSet(0, lp.periods - 1)
    m.buy = pyo.Var(m.PERIODS, bounds=(0, None))
    m.sell = pyo.Var(m.PERIODS, bounds=(0, None))


def define_battery_variables(m: pyo.ConcreteModel, lp: HouseholdLP) -> None:
    r"""The battery's charge and discharge (at the meter, Wh) and its state of charge at each
    period's end, within its power and state-of-charge limits.

    .. math:: 0 \le c_t \le \overline{C}, \quad 0 \le d_t \le \overline{D}, \quad
        \underline{S} \le S_t \le \overline{S}
    """
    if not lp.has_battery:
        return
    m.charge = pyo.Var(m.PERIODS, bounds=(0, lp.charge_max_wh))
    m.discharge = pyo.Var(m.PERIODS, bounds=(0, lp.discharge_max_wh))
    m.soc = pyo.Var(m.PERIODS, bounds=(lp.soc_min_wh, lp.soc_max_wh))


def define_ev_variables(m: pyo.ConcreteModel, lp: HouseholdLP) -> None:
    r"""The EV's charging in each slot and the energy each window receives within the horizon.

    .. math:: 0 \le e_s \le \overline{E}_s \quad \forall s \in SLOTS, \qquad
        \underline{R}_k \le r_k \le \overline{R}_k \quad \forall k \in WINDOWS
    """
    if lp.ev is None:
        return
    capacity = lp.ev.slot_capacity_wh.tolist()
    lower, upper = lp.ev.lower_wh.tolist(), lp.ev.upper_wh.tolist()
    m.SLOTS = pyo.RangeSet(0, len(capacity) - 1)
    m.WINDOWS = pyo.RangeSet(0, len(lower) - 1)
    m.ev = pyo.Var(m.SLOTS, bounds=lambda _, s: (0, capacity[s]))
    m.delivered = pyo.Var(m.WINDOWS, bounds=lambda _, k: (lower[k], upper[k]))


def define_energy_balance(m: pyo.ConcreteModel, lp: HouseholdLP) -> None:
    r"""Energy balance in every period: what comes in equals what goes out.

    .. math:: b_t - s_t - c_t + d_t - \sum_{s \in SLOTS_t} e_s = D_t - G_t
    """
    slots: list[list[int]] = [[] for _ in range(lp.periods)]
    if lp.ev is not None:
        for s, t in enumerate(lp.ev.slot_period.tolist()):
            slots[t].append(s)
    net = lp.net_demand_wh.tolist()

    def balance(_: pyo.ConcreteModel, t: int) -> tuple[float, LinearExpression, float]:
        coefs: list[float] = [1.0, -1.0]
        variables: list[pyo.Var] = [m.buy[t], m.sell[t]]
        if lp.has_battery:
            coefs += (-1.0, 1.0)
            variables += (m.charge[t], m.discharge[t])
        for s in slots[t]:
            coefs.append(-1.0)
            variables.append(m.ev[s])
        body = LinearExpression(constant=0, linear_coefs=coefs, linear_vars=variables)
        return (net[t], body, net[t])

    m.balance = pyo.Constraint(m.PERIODS, rule=balance)


def define_battery_dynamics(m: pyo.ConcreteModel, lp: HouseholdLP) -> None:
    r"""The state of charge follows charge and discharge, each with half the round trip's loss.

    .. math:: S_t - S_{t-1} - \eta c_t + d_t / \eta = 0 \quad (t > 0), \qquad
        S_0 - \eta c_0 + d_0 / \eta = S^{init}, \qquad \eta = \sqrt{\eta^{rt}}
    """
    if not lp.has_battery:
        return
    eta_c, eta_d = lp.charge_efficiency, lp.discharge_efficiency

    def dynamics(_: pyo.ConcreteModel, t: int) -> tuple[float, LinearExpression, float]:
        coefs = [1.0, -eta_c, 1.0 / eta_d]
        variables = [m.soc[t], m.charge[t], m.discharge[t]]
        if t > 0:
            coefs.append(-1.0)
            variables.append(m.soc[t - 1])
        rhs = float(lp.soc_initial_wh) if t == 0 else 0.0
        return (rhs, LinearExpression(constant=0, linear_coefs=coefs, linear_vars=variables), rhs)

    m.dynamics = pyo.Constraint(m.PERIODS, rule=dynamics)


def define_ev_delivery(m: pyo.ConcreteModel, lp: HouseholdLP) -> None:
    r"""Each window receives the sum of its slots' charging.

    .. math:: \sum_{s \in SLOTS_k} e_s - r_k = 0 \quad \forall k \in WINDOWS
    """
    if lp.ev is None:
        return
    members: list[list[int]] = [[] for _ in range(lp.ev.window_count)]
    for s, k in enumerate(lp.ev.slot_window.tolist()):
        members[k].append(s)

    def delivery(_: pyo.ConcreteModel, k: int) -> tuple[float, LinearExpression, float]:
        coefs = [1.0] * len(members[k]) + [-1.0]
        variables = [m.ev[s] for s in members[k]] + [m.delivered[k]]
        return (0.0, LinearExpression(constant=0, linear_coefs=coefs, linear_vars=variables), 0.0)

    m.delivery = pyo.Constraint(m.WINDOWS, rule=delivery)


def define_cost_objective(m: pyo.ConcreteModel, lp: HouseholdLP) -> None:
    r"""The expected cost of the horizon, less what it leaves for later, in millipence.

    .. math:: \min \sum_t (\pi^{imp}_t b_t - \pi^{exp}_t s_t) - \eta\, \pi^{later} S_{T-1}
        - \pi^{later} \sum_{s} e_s

    The battery's last state of charge is worth the later price, discharged; each Wh the EV
    receives now is one it need not buy after the horizon at the later price.
    """
    coefs: list[float] = []
    variables: list[pyo.Var] = []
    for t in m.PERIODS:
        coefs += (float(lp.import_cost_p_per_kwh[t]), -float(lp.export_value_p_per_kwh[t]))
        variables += (m.buy[t], m.sell[t])
    if lp.has_battery:
        coefs.append(-lp.stored_value_p_per_kwh)
        variables.append(m.soc[lp.periods - 1])
    if lp.ev is not None:
        for s in m.SLOTS:
            coefs.append(-lp.later_price_p_per_kwh)
            variables.append(m.ev[s])
    m.cost = pyo.Objective(
        expr=LinearExpression(constant=0, linear_coefs=coefs, linear_vars=variables), sense=pyo.minimize
    )


def build_plan_model(lp: HouseholdLP) -> pyo.ConcreteModel:
    """Assemble one household's plan model: variables, balances, dynamics, delivery, objective."""
    m = pyo.ConcreteModel(name="smartbrum_plan")
    define_trade_variables(m, lp)
    define_battery_variables(m, lp)
    define_ev_variables(m, lp)
    define_energy_balance(m, lp)
    define_battery_dynamics(m, lp)
    define_ev_delivery(m, lp)
    define_cost_objective(m, lp)
    return m


def model_columns(m: pyo.ConcreteModel) -> list[pyo.Var]:
    """The model's variables in the column order of the module docstring."""
    columns = list(m.buy.values()) + list(m.sell.values())
    if hasattr(m, "charge"):
        columns += list(m.charge.values()) + list(m.discharge.values()) + list(m.soc.values())
    if hasattr(m, "ev"):
        columns += list(m.ev.values()) + list(m.delivered.values())
    return columns


def model_rows(m: pyo.ConcreteModel) -> list[pyo.Constraint]:
    """The model's equations in the row order of the module docstring."""
    rows = list(m.balance.values())
    if hasattr(m, "dynamics"):
        rows += list(m.dynamics.values())
    if hasattr(m, "delivery"):
        rows += list(m.delivery.values())
    return rows
