r"""A household's plan for the coming periods: what to buy and sell, at what limit prices, with its
battery and EV schedule (issue 17's automatic trading).

Before each gate closure the platform plans every household with a strategy over the next periods
(typically 12 half-hours) and turns the plan's first period into orders. A perfect-foresight plan
(the oracle the scenario report compares with) is the same call with the true demand, generation
and prices in the request: :func:`plan_household` and :func:`plan_households` neither know nor
care which they are given.

The economics
-------------
Per period ``t`` the household's net import ``b_t`` (bought) or net export ``s_t`` (sold) follows
from its energy balance::

    demand + battery charge + EV charge + sold = generation + battery discharge + bought

The plan minimises the expected cost of the horizon less what it leaves for later:

- **Prices.** The expected local price is first held within the tariffs (the backstop, the energy
  company, always sells at the import tariff and buys at the export tariff). A Wh bought costs
  that price when it is at most the household's ``buy_ceiling_p_per_kwh``; when the expected
  price is above the ceiling the plan expects no local fill in that direction, and the energy
  comes from the backstop at the import tariff (the settlement's imbalance). A Wh sold earns the
  held price when it is at least ``sell_floor_p_per_kwh``, else the export tariff from the
  backstop. Energy is never curtailed or left unserved: what is not traded locally is the
  backstop's. So the cost of importing is never below the value of exporting, and the LP never
  wants to import and export in one period; the plan nets them anyway (one of ``buy_wh`` and
  ``sell_wh`` is zero). A price below the export tariff is counted as the export tariff: the plan
  does not count on buying below what its own export would earn.
- **Battery.** ``S_t = S_{t-1} + eta c_t - d_t / eta`` with ``eta = sqrt(round-trip efficiency)``:
  the loss is split evenly between charging and discharging, each measured at the meter. The state
  of charge stays within ``[floor_kwh, ceiling_kwh]`` of
  :class:`~planning.strategy.HomeBattery` (its minimum or its reserve, whichever is higher, so the
  reserve is never planned away), widened only to include where it starts; charge and discharge
  within the battery's power times the period's length. With any loss, charging and discharging
  in one period only wastes energy, so the LP does neither at once unless wasting energy pays (a
  negative price), which the tests check on non-negative prices.
- **EV.** Its plugged-in windows (``plugged_in_from`` to ``departure``, Europe/London wall clock)
  are laid on the periods; in each period it charges at most its charger's power times the time
  it is plugged in. The window whose departure comes first receives the request's
  ``ev_energy_needed_kwh`` by its departure, later ones the strategy's ``energy_needed_kwh``; what
  the charger can still deliver after the horizon may wait, what it cannot must be bought within.
  A need beyond what the charger can deliver is cut to what it can.
- **After the horizon.** Without a value for what is left the plan would empty the battery and put
  off the EV at every horizon's end. The battery's last state of charge is worth ``eta`` times the
  *stored price* per kWh, and every Wh the EV receives now is one it need not buy later at the
  *later price*. The later price is the request's ``later_price_p_per_kwh``, by default the
  horizon's mean expected price (held within the tariffs); the stored price is the request's
  ``stored_price_p_per_kwh``, by default the later price. They differ because a battery sells
  its energy in the dearest hours to come, where an EV may take its energy in the cheapest: the
  platform values a battery's energy at the mean of the dearest periods of the day after the
  horizon that a full battery needs to empty (:mod:`market.autotrading`).

The objective's optimum is what :attr:`HouseholdPlan.expected_cost_p` reports less those terms:
the expected cost of the horizon alone, ``sum(b_t x import cost - s_t x export value)``.

How much to order for the household's own use
---------------------------------------------
The plan works on expected demand and generation, but what the household will use is uncertain,
and the costs of guessing wrong are not even: every Wh ordered and not used goes back to the
energy company at the export tariff ``e``, every Wh used and not ordered comes from it at the
import tariff ``i``, where the local price ``p`` sits between. So, as the newsvendor orders
newspapers, the net ordered for its own use (``demand - generation``) is not the forecast but the
forecast plus the ``(i - p) / (i - e)`` quantile of its past errors
(:attr:`PlanRequest.net_error_wh`, nearest rank): where the local price is near the import
tariff, buying too little costs little, so it buys at a low quantile; where it is near the export
tariff, selling too little costs little, so it sells at a high one (a low quantile of the net).
The battery and the EV, which do what they are told, are planned on the expectation.

Limit prices
------------
A period's net energy is split into *legs*, each with its own limit price (p/kWh), every buy at
most ``min(ceiling, import tariff)`` (above the tariff the backstop is cheaper) and every sell at
least ``max(floor, export tariff)``:

``demand``
    Demand not met by the household's own generation: must-have, bid at the ceiling.
``surplus``
    Generation beyond demand: offered at the floor.
``battery``
    Charging is bid at ``round-trip efficiency x`` the best use of the energy after it (the
    dearest later period in which the plan discharges, or the stored price): above that the round
    trip cannot pay. Discharging is offered at the average cost of the energy in the battery per
    kWh out (what it was charged at, over the efficiency; what it held at the start valued at the
    stored price): no lower than what it cost.
``ev_urgent``
    What the EV must receive in the period to make its departure even charging at full power
    afterwards: bid at the ceiling.
``ev_flexible``
    The rest, which could wait: bid at the cheapest alternative, the expected price of the
    cheapest later period of its window with charger capacity to spare (or the later price when
    the window goes beyond the horizon).

Each limit is then held within the household's own range ``[floor, ceiling]`` (when the floor is
above the ceiling, buys stay at most the ceiling and sells at least the floor), and put on the
0.01 p tick: buys rounded down, sells up, so no limit crosses its bound. A net buyer's own supply
(surplus, discharge) first covers its cheapest bids, a net seller's own use first takes its
dearest offers: what is left in the market are the legs most likely to clear, and their energy
adds up to the period's net exactly.

Exactness
---------
Where the plan becomes orders it is exact: energy in whole Wh (``int``), prices as
:class:`~decimal.Decimal` on the 0.01 p tick. The LP's bounds are whole Wh (power and charger
energy rounded down, the battery's least state of charge up and its most down); its answer is
rounded to the nearest Wh, the EV's per window so that each window's total stays within its
bounds, the battery's forward in time, cutting a charge or discharge by what rounding added when
it would cross a limit. Bought and sold then follow from the balance in integers, so the balance
holds exactly in Wh. The state of charge (:attr:`PlannedPeriod.battery_soc_wh`) is the rounded
flows' trajectory, itself rounded to the Wh. The expected cost is exact Decimal pence.

May import the standard library, NumPy, SciPy, Pyomo, highspy and :mod:`planning`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

import numpy as np
import numpy.typing as npt

from planning.plan_inputs import PlanInputError, PlanPeriods, PlanRequest, PriceOutlook
from planning.plan_model import WH_PER_KWH, HouseholdLP, build_plan_model, describe_household
from planning.plan_solve import PlanSolverError, compile_model, solve_matrices, stack_matrices

__all__ = [
    "DEFAULT_BLOCK_SIZE",
    "HouseholdPlan",
    "PlanFailure",
    "PlanInputError",
    "PlanPeriods",
    "PlanRequest",
    "PlanSolverError",
    "PlannedOrder",
    "PlannedPeriod",
    "PriceOutlook",
    "Purpose",
    "Side",
    "plan_household",
    "plan_households",
]

#: Households per HiGHS call on the fast path, one block-diagonal LP per block. Measured with
#: ``bench/plan.py``: 32 per call take half the time of one per call, 128 are no faster, and in a
#: first prototype 1,000 per call were slower again (each simplex grows faster than the calls saved).
DEFAULT_BLOCK_SIZE = 32

FloatArray = npt.NDArray[np.float64]
_ROUNDING_TOLERANCE_WH = 1e-6


class Side(StrEnum):
    """Which way an order trades."""

    BUY = "buy"
    SELL = "sell"


class Purpose(StrEnum):
    """What an order's energy is for: it decides the limit price (module docstring)."""

    DEMAND = "demand"
    SURPLUS = "surplus"
    BATTERY = "battery"
    EV_URGENT = "ev_urgent"
    EV_FLEXIBLE = "ev_flexible"


@dataclass(frozen=True)
class PlannedOrder:
    """One order the plan places in a period."""

    side: Side
    energy_wh: int
    limit_p_per_kwh: Decimal
    purpose: Purpose


@dataclass(frozen=True)
class PlannedPeriod:
    """The plan for one period.

    ``buy_wh`` and ``sell_wh`` are the household's expected net import and export (at most one is
    nonzero); ``orders`` carry that net with the household's own use sized for the forecast's
    errors (:func:`own_use_shift`: the same net without them). ``import_cost_p_per_kwh`` and
    ``export_value_p_per_kwh`` are what the plan expects a Wh bought to cost and one sold to earn
    (the expected price where it trades locally, the tariff where it falls back to the backstop);
    ``expected_cost_p`` is the period's cost at those prices.
    """

    start_utc: datetime
    buy_wh: int
    sell_wh: int
    battery_charge_wh: int
    battery_discharge_wh: int
    battery_soc_wh: int
    ev_charge_wh: int
    import_cost_p_per_kwh: Decimal
    export_value_p_per_kwh: Decimal
    expected_cost_p: Decimal
    orders: tuple[PlannedOrder, ...]


@dataclass(frozen=True)
class HouseholdPlan:
    """A household's plan over the horizon.

    ``later_price_p_per_kwh`` is the price that valued what the horizon leaves for later;
    ``ev_later_wh`` is the energy the EV's windows still need after the horizon.
    """

    periods: tuple[PlannedPeriod, ...]
    later_price_p_per_kwh: Decimal
    ev_later_wh: int

    @property
    def expected_cost_p(self) -> Decimal:
        """The horizon's expected cost, pence (negative: it earns)."""
        return sum((period.expected_cost_p for period in self.periods), Decimal(0))


@dataclass(frozen=True)
class PlanFailure:
    """A household whose plan could not be made, in :func:`plan_households`' answer: skipped."""

    reason: str


def plan_household(request: PlanRequest) -> HouseholdPlan:
    """Plan one household with its Pyomo model: the reference path, one model per household.

    Raises
    ------
    PlanSolverError
        If HiGHS finds no optimal plan.
    """
    lp = describe_household(request)
    values = solve_matrices(compile_model(build_plan_model(lp)))
    return plan_from_values(request, lp, values)


def plan_households(
    requests: Sequence[PlanRequest], *, block_size: int = DEFAULT_BLOCK_SIZE
) -> list[HouseholdPlan | PlanFailure]:
    """Plan many households at once: the path for scale, the same LP as :func:`plan_household`.

    Each household's LP is written with NumPy (no Pyomo model) and ``block_size`` of them are
    solved together as one block-diagonal LP. Households are independent, so the optimum of the
    block is each household's optimum; where one household's optimum is not unique, the plan
    chosen may differ from :func:`plan_household`'s at the same cost (with ``block_size=1`` it is
    the same plan). A block that fails is solved again household by household, so one failing
    household is a :class:`PlanFailure` in its place and the others go on.

    Returns
    -------
    list of HouseholdPlan or PlanFailure
        In the order of ``requests``.
    """
    if block_size < 1:
        raise ValueError("block_size must be at least 1")
    results: list[HouseholdPlan | PlanFailure] = []
    for first in range(0, len(requests), block_size):
        block = requests[first : first + block_size]
        lps = [describe_household(request) for request in block]
        try:
            values = solve_matrices(stack_matrices(lps))
        except PlanSolverError:
            results += [_plan_alone(request, lp) for request, lp in zip(block, lps)]
            continue
        offset = 0
        for request, lp in zip(block, lps):
            columns = lp.column_count
            results.append(plan_from_values(request, lp, values[offset : offset + columns]))
            offset += columns
    return results


def _plan_alone(request: PlanRequest, lp: HouseholdLP) -> HouseholdPlan | PlanFailure:
    try:
        values = solve_matrices(stack_matrices([lp]))
        return plan_from_values(request, lp, values)
    except (PlanSolverError, ValueError, ArithmeticError) as error:
        return PlanFailure(f"{type(error).__name__}: {error}")


# --- from the LP's answer to the plan -------------------------------------------------------------


@dataclass(frozen=True)
class _Flows:
    charge_wh: list[int]
    discharge_wh: list[int]
    soc_wh: list[int]
    ev_slot_wh: list[int]


def plan_from_values(request: PlanRequest, lp: HouseholdLP, values: FloatArray) -> HouseholdPlan:
    """Round the LP's answer to whole Wh, net each period and price its legs (module docstring)."""
    flows = _round_flows(lp, values)
    count = lp.periods
    ev_wh = [0] * count
    if lp.ev is not None:
        for slot, t in enumerate(lp.ev.slot_period.tolist()):
            ev_wh[t] += flows.ev_slot_wh[slot]
    demand = lp.demand_wh.tolist()
    generation = lp.generation_wh.tolist()
    net = [
        demand[t] + flows.charge_wh[t] + ev_wh[t] - generation[t] - flows.discharge_wh[t]
        for t in range(count)
    ]
    buy = [max(n, 0) for n in net]
    sell = [max(-n, 0) for n in net]
    marginal = [float(lp.export_value[t]) if sell[t] > 0 else float(lp.import_cost[t]) for t in range(count)]
    shift = own_use_shift(request)
    legs = _legs(request, lp, flows, marginal, shift)
    floor, ceiling = request.strategy.sell_floor_p_per_kwh, request.strategy.buy_ceiling_p_per_kwh
    periods = []
    for t in range(count):
        cost = (Decimal(buy[t]) * lp.import_cost[t] - Decimal(sell[t]) * lp.export_value[t]) / WH_PER_KWH
        periods.append(
            PlannedPeriod(
                start_utc=request.periods.starts_utc[t],
                buy_wh=buy[t],
                sell_wh=sell[t],
                battery_charge_wh=flows.charge_wh[t],
                battery_discharge_wh=flows.discharge_wh[t],
                battery_soc_wh=flows.soc_wh[t],
                ev_charge_wh=ev_wh[t],
                import_cost_p_per_kwh=lp.import_cost[t],
                export_value_p_per_kwh=lp.export_value[t],
                expected_cost_p=cost,
                orders=_net_orders(legs[t], net[t] + shift[t], floor, ceiling),
            )
        )
    ev_later = 0
    if lp.ev is not None:
        delivered = [0] * lp.ev.window_count
        for slot, k in enumerate(lp.ev.slot_window.tolist()):
            delivered[k] += flows.ev_slot_wh[slot]
        ev_later = sum(max(0, int(need) - got) for need, got in zip(lp.ev.needed_wh, delivered))
    return HouseholdPlan(periods=tuple(periods), later_price_p_per_kwh=lp.later_price, ev_later_wh=ev_later)


def _round_flows(lp: HouseholdLP, values: FloatArray) -> _Flows:
    """The LP's charge, discharge and EV charging in whole Wh, within every bound (module docstring)."""
    count = lp.periods
    charge = [0] * count
    discharge = [0] * count
    soc = [0] * count
    column = 2 * count
    if lp.has_battery:
        eta_c, eta_d = lp.charge_efficiency, lp.discharge_efficiency
        low, high = lp.soc_min_wh, lp.soc_max_wh
        stored = float(lp.soc_initial_wh)
        raw_charge = values[column : column + count].tolist()
        raw_discharge = values[column + count : column + 2 * count].tolist()
        for t in range(count):
            c = min(max(round(raw_charge[t]), 0), lp.charge_max_wh)
            d = min(max(round(raw_discharge[t]), 0), lp.discharge_max_wh)
            after = stored + eta_c * c - d / eta_d
            if after > high + _ROUNDING_TOLERANCE_WH:
                c = max(0, math.floor((high - stored + d / eta_d) / eta_c))
                after = stored + eta_c * c - d / eta_d
            if after < low - _ROUNDING_TOLERANCE_WH:
                d = max(0, math.floor((stored + eta_c * c - low) * eta_d))
                after = stored + eta_c * c - d / eta_d
            charge[t], discharge[t] = c, d
            stored = min(max(after, low), high)
            soc[t] = round(stored)
        column += 3 * count
    ev_slot: list[int] = []
    if lp.ev is not None:
        ev = lp.ev
        slots = len(ev.slot_period)
        capacity = ev.slot_capacity_wh.tolist()
        ev_slot = [
            min(max(round(v), 0), capacity[s]) for s, v in enumerate(values[column : column + slots].tolist())
        ]
        windows = ev.slot_window.tolist()
        for k in range(ev.window_count):
            members = [s for s in range(slots) if windows[s] == k]
            total = sum(ev_slot[s] for s in members)
            lower, upper = int(ev.lower_wh[k]), int(ev.upper_wh[k])
            for s in members:  # short of the window's least: add where the charger has room
                if total >= lower:
                    break
                extra = min(capacity[s] - ev_slot[s], lower - total)
                ev_slot[s] += extra
                total += extra
            for s in reversed(members):  # over its most: take from the latest charging
                if total <= upper:
                    break
                cut = min(ev_slot[s], total - upper)
                ev_slot[s] -= cut
                total -= cut
    return _Flows(charge, discharge, soc, ev_slot)


@dataclass(frozen=True)
class _Leg:
    energy_wh: int  # import positive, export negative
    limit: float
    purpose: Purpose


def own_use_shift(request: PlanRequest) -> list[int]:
    """How much each period's orders for the household's own use differ from its forecast net,
    Wh: the newsvendor's quantile of the forecast's errors (module docstring), 0 without them."""
    count = request.periods.count
    if not request.net_error_wh:
        return [0] * count
    prices = request.prices
    shift = []
    for t, sample in enumerate(request.net_error_wh):
        if not sample:
            shift.append(0)
            continue
        imported, exported = prices.import_tariff_p_per_kwh[t], prices.export_tariff_p_per_kwh[t]
        price = min(max(prices.expected_p_per_kwh[t], exported), imported)
        level = Decimal("0.5") if imported == exported else (imported - price) / (imported - exported)
        rank = min(max(math.ceil(level * len(sample)) - 1, 0), len(sample) - 1)
        shift.append(sorted(sample)[rank])
    return shift


def _legs(
    request: PlanRequest, lp: HouseholdLP, flows: _Flows, marginal: list[float], shift: list[int]
) -> list[list[_Leg]]:
    """Each period's legs with their limit prices before the household's band and the tick; its
    own use sized by ``shift`` (:func:`own_use_shift`)."""
    count = lp.periods
    prices = request.prices
    ceiling = [
        min(float(request.strategy.buy_ceiling_p_per_kwh), float(i)) for i in prices.import_tariff_p_per_kwh
    ]
    floor = [
        max(float(request.strategy.sell_floor_p_per_kwh), float(e)) for e in prices.export_tariff_p_per_kwh
    ]
    later = lp.later_price_p_per_kwh
    stored_later = float(lp.stored_price)  # what the battery's energy fetches after the horizon
    legs: list[list[_Leg]] = [[] for _ in range(count)]
    demand = lp.demand_wh.tolist()
    generation = lp.generation_wh.tolist()
    for t in range(count):
        base = demand[t] - generation[t] + shift[t]
        if base > 0:
            legs[t].append(_Leg(base, ceiling[t], Purpose.DEMAND))
        elif base < 0:
            legs[t].append(_Leg(base, floor[t], Purpose.SURPLUS))
    if lp.has_battery:
        rte = lp.charge_efficiency * lp.discharge_efficiency
        eta_c, eta_d = lp.charge_efficiency, lp.discharge_efficiency
        stored = float(lp.soc_initial_wh)
        stored_cost = stored * eta_d * stored_later  # p/kWh x Wh: millipence
        best_use_after = [stored_later] * count
        best = stored_later
        for t in range(count - 1, -1, -1):
            best_use_after[t] = best
            if flows.discharge_wh[t] > 0:
                best = max(best, marginal[t])
        for t in range(count):
            c, d = flows.charge_wh[t], flows.discharge_wh[t]
            if c > 0:
                legs[t].append(_Leg(c, min(rte * best_use_after[t], ceiling[t]), Purpose.BATTERY))
                stored_cost += c * marginal[t]
                stored += eta_c * c
            if d > 0:
                average = stored_cost / stored if stored > 0 else eta_d * stored_later
                legs[t].append(_Leg(-d, max(average / eta_d, floor[t]), Purpose.BATTERY))
                taken = min(stored, d / eta_d)
                stored -= taken
                stored_cost -= average * taken
    if lp.ev is not None:
        ev = lp.ev
        periods = ev.slot_period.tolist()
        windows = ev.slot_window.tolist()
        capacity = ev.slot_capacity_wh.tolist()
        for k in range(ev.window_count):
            members = [s for s in range(len(periods)) if windows[s] == k]
            must = int(ev.lower_wh[k])
            for position, s in enumerate(members):
                energy = flows.ev_slot_wh[s]
                later_slots = members[position + 1 :]
                room_after = sum(capacity[u] for u in later_slots)
                urgent = min(energy, max(0, must - room_after))
                must -= energy
                t = periods[s]
                if urgent > 0:
                    legs[t].append(_Leg(urgent, ceiling[t], Purpose.EV_URGENT))
                if energy > urgent:
                    options = [marginal[periods[u]] for u in later_slots if flows.ev_slot_wh[u] < capacity[u]]
                    if ev.later_capacity_wh[k] > 0:
                        options.append(later)
                    limit = min(min(options), ceiling[t]) if options else ceiling[t]
                    legs[t].append(_Leg(energy - urgent, limit, Purpose.EV_FLEXIBLE))
    return legs


def _net_orders(legs: list[_Leg], net_wh: int, floor: Decimal, ceiling: Decimal) -> tuple[PlannedOrder, ...]:
    """The period's orders: the legs on the net's side, less what the other side's legs cover,
    each limit on the tick and within the household's band (module docstring)."""
    if net_wh == 0:
        return ()
    buying = net_wh > 0
    ours = [leg for leg in legs if leg.energy_wh != 0 and (leg.energy_wh > 0) == buying]
    covered = sum(abs(leg.energy_wh) for leg in legs if leg.energy_wh != 0 and (leg.energy_wh > 0) != buying)
    # Our own supply covers our cheapest bids; our own use takes our dearest offers.
    ours.sort(key=lambda leg: leg.limit if buying else -leg.limit)
    left: dict[tuple[Purpose, Decimal], int] = {}
    for leg in ours:
        energy = abs(leg.energy_wh)
        take = min(energy, covered)
        covered -= take
        if energy > take:
            if buying:
                limit = min(ceiling, max(_tick(leg.limit, buying), min(floor, ceiling)))
            else:
                limit = max(floor, min(_tick(leg.limit, buying), max(floor, ceiling)))
            key = (leg.purpose, limit)
            left[key] = left.get(key, 0) + energy - take
    side = Side.BUY if buying else Side.SELL
    # The order most likely to clear first: the dearest bid, the cheapest offer.
    ranked = sorted(left.items(), key=lambda item: -item[0][1] if buying else item[0][1])
    return tuple(PlannedOrder(side, energy, limit, purpose) for (purpose, limit), energy in ranked)


def _tick(limit: float, buying: bool) -> Decimal:
    """A limit on the 0.01 p tick: a bid rounded down, an offer up (a 1e-6 tick allows float noise)."""
    ticks = limit * 100
    whole = math.floor(ticks + 1e-6) if buying else math.ceil(ticks - 1e-6)
    return Decimal(whole).scaleb(-2)
