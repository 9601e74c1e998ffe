"""The household plan: hand-solved cases, its invariants over random households, and the two paths
(one Pyomo model per household, NumPy matrices for many) giving the same plans."""

from __future__ import annotations

import dataclasses
import math
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from planning.plan import (
    HouseholdPlan,
    PlanFailure,
    PlanInputError,
    PlannedPeriod,
    PlanPeriods,
    PlanRequest,
    PlanSolverError,
    PriceOutlook,
    Purpose,
    Side,
    _Leg,
    _net_orders,
    plan_household,
    plan_households,
)
from planning.plan_model import build_plan_model, describe_household
from planning.plan_solve import compile_model, household_matrices, solve_matrices
from planning.strategy import ElectricVehicle, HomeBattery, Strategy

D = Decimal
WINTER = datetime(2026, 1, 15, 17, 0, tzinfo=UTC)
IMPORT, EXPORT = D("24.5"), D("4.1")
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def outlook(expected: list[str], *, imports: str = "24.5", exports: str = "4.1") -> PriceOutlook:
    count = len(expected)
    return PriceOutlook(tuple(D(p) for p in expected), (D(imports),) * count, (D(exports),) * count)


def request(
    expected: list[str],
    *,
    start: datetime = WINTER,
    demand: list[str] | None = None,
    generation: list[str] | None = None,
    floor: str = "5",
    ceiling: str = "30",
    battery: HomeBattery | None = None,
    soc: str | None = None,
    ev: ElectricVehicle | None = None,
    ev_needed: str | None = None,
    later: str | None = "0",
    imports: str = "24.5",
    exports: str = "4.1",
) -> PlanRequest:
    count = len(expected)
    return PlanRequest(
        periods=PlanPeriods.half_hours(start, count),
        prices=outlook(expected, imports=imports, exports=exports),
        strategy=Strategy(
            sell_floor_p_per_kwh=D(floor), buy_ceiling_p_per_kwh=D(ceiling), battery=battery, ev=ev
        ),
        demand_kwh=tuple(D(v) for v in (demand or ["0"] * count)),
        generation_kwh=tuple(D(v) for v in (generation or ["0"] * count)),
        battery_soc_kwh=None if soc is None else D(soc),
        ev_energy_needed_kwh=None if ev_needed is None else D(ev_needed),
        later_price_p_per_kwh=None if later is None else D(later),
    )


def both_paths(req: PlanRequest) -> HouseholdPlan:
    """The Pyomo path's plan, after checking that the fast path gives the very same one."""
    reference = plan_household(req)
    (fast,) = plan_households([req], block_size=1)
    assert fast == reference
    return reference


def battery(**fields: str) -> HomeBattery:
    values = {"capacity_kwh": "10", "charge_kw": "2", "discharge_kw": "2", "min_soc_percent": "0"}
    values.update(fields)
    return HomeBattery(**{name: D(value) for name, value in values.items()})


def orders(period: PlannedPeriod) -> list[tuple[Side, int, Decimal, Purpose]]:
    return [(o.side, o.energy_wh, o.limit_p_per_kwh, o.purpose) for o in period.orders]


# --- hand-solved -----------------------------------------------------------------------------------


def test_battery_buys_at_the_cheap_period_and_sells_at_the_dear_one():
    """The import tariff at 40 p, so 30 p is a local price. 81% round trip, so 90% each way: 2 kW
    for half an hour is 1000 Wh in at 10 p, 900 Wh stored, 810 Wh out at 30 p. Cost 1000 x 10 -
    810 x 30 = 10,000 - 24,300 millipence = -14.3 p. The charge is bid at 0.81 x 30 = 24.30 p (above
    it the round trip loses); the discharge offered at what it cost, 10 / 0.81 = 12.345... p,
    rounded up to 12.35."""
    home = battery(round_trip_efficiency_percent="81")
    plan = both_paths(request(["10", "30"], battery=home, soc="0", imports="40"))
    first, second = plan.periods
    assert (first.battery_charge_wh, first.battery_soc_wh, first.buy_wh) == (1000, 900, 1000)
    assert (second.battery_discharge_wh, second.battery_soc_wh, second.sell_wh) == (810, 0, 810)
    assert plan.expected_cost_p == D("-14.3")
    assert orders(first) == [(Side.BUY, 1000, D("24.30"), Purpose.BATTERY)]
    assert orders(second) == [(Side.SELL, 810, D("12.35"), Purpose.BATTERY)]


def test_battery_idles_when_the_spread_does_not_pay_for_the_loss():
    """10 p to 12 p is a 20% spread; a 25% round-trip loss (75%) eats it: 1 kWh at 10 p returns
    0.75 kWh worth 9 p."""
    plan = both_paths(request(["10", "12"], battery=battery(round_trip_efficiency_percent="75"), soc="0"))
    assert all(p.battery_charge_wh == p.battery_discharge_wh == 0 for p in plan.periods)
    assert plan.expected_cost_p == 0


def test_the_later_price_keeps_energy_in_the_battery():
    """With the later price at 40 p a kWh kept is worth more than one sold at 30 p now."""
    home = battery(round_trip_efficiency_percent="81")
    kept = both_paths(request(["30"], battery=home, soc="5", later="40", imports="40"))
    assert kept.periods[0].battery_discharge_wh == 0
    sold = both_paths(request(["30"], battery=home, soc="5", later="20", imports="40"))
    assert sold.periods[0].battery_discharge_wh == 1000


def test_reserve_is_never_planned_away():
    """5 kWh stored, a 4 kWh reserve above the 10% minimum: only 1 kWh may go, 900 Wh at the meter
    with 90% one way, however dear the evening."""
    home = battery(min_soc_percent="10", reserve_kwh="4", round_trip_efficiency_percent="81")
    plan = both_paths(request(["30", "30", "30"], battery=home, soc="5"))
    assert min(p.battery_soc_wh for p in plan.periods) == 4000
    assert sum(p.battery_discharge_wh for p in plan.periods) == 900


def test_ev_fills_its_cheapest_plugged_in_periods_and_is_done_by_departure():
    """Summer time: 04:00 UTC is 05:00 in Birmingham. Plugged in until 06:30 local, 2 kW (1000 Wh a
    half hour), 1.5 kWh still needed. The plugged-in periods cost 20, 10, 15 p; the 5 p period
    after departure is out of reach. So 1000 Wh at 10 p and 500 Wh at 15 p.

    At 05:30 the 1000 Wh are half urgent (1500 needed, only 1000 possible afterwards), bid at the
    ceiling, and half flexible, bid at 15 p (the 06:00 period has room for it); at 06:00 the
    last 500 Wh are urgent."""
    ev = ElectricVehicle(
        charge_kw=D(2), plugged_in_from=time(18, 0), departure=time(6, 30), energy_needed_kwh=D(7)
    )
    start = datetime(2026, 7, 1, 4, 0, tzinfo=UTC)
    plan = both_paths(request(["20", "10", "15", "5"], start=start, ev=ev, ev_needed="1.5"))
    assert [p.ev_charge_wh for p in plan.periods] == [0, 1000, 500, 0]
    assert plan.ev_later_wh == 0
    assert plan.expected_cost_p == D("17.5")
    assert orders(plan.periods[1]) == [
        (Side.BUY, 500, D("24.50"), Purpose.EV_URGENT),
        (Side.BUY, 500, D("15.00"), Purpose.EV_FLEXIBLE),
    ]
    assert orders(plan.periods[2]) == [(Side.BUY, 500, D("24.50"), Purpose.EV_URGENT)]


def test_ev_energy_that_can_wait_past_the_horizon_waits_for_a_cheaper_later():
    """Plugged in at 18:00 (winter, UTC is local), 7 kWh by 07:00: the horizon 18:00-19:00 at 20 p
    is dearer than the later price of 12 p, and the night can deliver it all, so nothing now."""
    ev = ElectricVehicle(
        charge_kw=D("3.6"), plugged_in_from=time(18, 0), departure=time(7, 0), energy_needed_kwh=D(7)
    )
    start = datetime(2026, 1, 15, 18, 0, tzinfo=UTC)
    plan = both_paths(request(["20", "20"], start=start, ev=ev, later="12"))
    assert [p.ev_charge_wh for p in plan.periods] == [0, 0]
    assert plan.ev_later_wh == 7000
    cheap = both_paths(request(["8", "20"], start=start, ev=ev, later="12"))
    assert [p.ev_charge_wh for p in cheap.periods] == [1800, 0]
    assert orders(cheap.periods[0]) == [(Side.BUY, 1800, D("12.00"), Purpose.EV_FLEXIBLE)]


def test_pv_surplus_is_offered_at_no_less_than_the_floor():
    """1.2 kWh of PV, 0.2 kWh of demand: 1000 Wh offered at the 6 p floor. At an expected 5 p (below
    the floor) the plan expects the backstop's 4.1 p for it; at 8 p it expects 8 p."""
    plan = both_paths(request(["5", "8"], floor="6", demand=["0.2", "0.2"], generation=["1.2", "1.2"]))
    low, high = plan.periods
    assert orders(low) == orders(high) == [(Side.SELL, 1000, D("6.00"), Purpose.SURPLUS)]
    assert (low.export_value_p_per_kwh, high.export_value_p_per_kwh) == (D("4.1"), D("8"))
    assert plan.expected_cost_p == D("-12.1")


def test_nothing_is_bid_above_the_ceiling():
    """At an expected 28 p, above the 20 p ceiling, the plan expects the backstop's 24.5 p; the demand
    is still bid, at the ceiling, in case the price comes lower. The battery would rather charge at
    the 10 p period than at the dear one."""
    plan = both_paths(
        request(
            ["28", "10", "28"],
            ceiling="20",
            demand=["1", "1", "1"],
            battery=battery(round_trip_efficiency_percent="81"),
            soc="0",
            later="25",
        )
    )
    dear = plan.periods[0]
    assert dear.import_cost_p_per_kwh == IMPORT
    assert dear.battery_charge_wh == 0
    assert orders(dear) == [(Side.BUY, 1000, D("20.00"), Purpose.DEMAND)]
    assert plan.periods[1].battery_charge_wh == 1000
    assert all(o.limit_p_per_kwh <= D(20) for p in plan.periods for o in p.orders if o.side is Side.BUY)


def test_a_household_never_buys_and_sells_in_one_period():
    """2 kWh of surplus while the EV takes 1.5 kWh (3 kW charger): 500 Wh sold, nothing bought. A net
    buyer's own surplus covers its cheapest bid first."""
    ev = ElectricVehicle(
        charge_kw=D(3), plugged_in_from=time(12, 0), departure=time(13, 0), energy_needed_kwh=D(3)
    )
    noon = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
    plan = both_paths(request(["10", "10"], start=noon, ev=ev, generation=["2", "0.5"]))
    first, second = plan.periods
    assert (first.buy_wh, first.sell_wh, first.ev_charge_wh) == (0, 500, 1500)
    assert orders(first) == [(Side.SELL, 500, D("5.00"), Purpose.SURPLUS)]
    assert (second.buy_wh, second.sell_wh) == (1000, 0)
    assert orders(second) == [(Side.BUY, 1000, D("24.50"), Purpose.EV_URGENT)]


def test_ev_windows_follow_the_clock_change():
    """29 March 2026: the clocks go forward at 01:00 UTC, so the 06:30 departure is 05:30 UTC. From
    04:00 UTC the EV is plugged in for three half hours (3 kW: 1500 Wh each), not four; at 10 p
    against a later price of 0 it charges only because it must."""
    ev = ElectricVehicle(
        charge_kw=D(3), plugged_in_from=time(22, 0), departure=time(6, 30), energy_needed_kwh=D(20)
    )
    start = datetime(2026, 3, 29, 4, 0, tzinfo=UTC)
    plan = both_paths(request(["10", "10", "10", "1"], start=start, ev=ev, ev_needed="10"))
    assert [p.ev_charge_wh for p in plan.periods] == [1500, 1500, 1500, 0]
    assert plan.ev_later_wh == 0  # the 5.5 kWh no charger could deliver by 06:30 is not asked for


def test_a_battery_below_its_floor_is_neither_forced_up_nor_emptied_further():
    """A 5 kWh reserve just set on a battery holding 2 kWh: the dear periods take nothing from it."""
    home = battery(reserve_kwh="5", round_trip_efficiency_percent="81")
    plan = both_paths(request(["30", "30"], battery=home, soc="2", imports="40"))
    assert [p.battery_soc_wh for p in plan.periods] == [2000, 2000]
    assert all(p.battery_discharge_wh == 0 for p in plan.periods)


def test_a_net_buyer_s_own_surplus_covers_its_cheapest_bid_first():
    """1000 Wh of surplus, a battery charge of 1000 Wh bid at 12 p and 1500 Wh of urgent EV energy bid
    at 24.5 p: the 1500 Wh net is bid as the EV's, the battery charging from the surplus."""
    legs = [
        _Leg(-1000, 5.0, Purpose.SURPLUS),
        _Leg(1000, 12.0, Purpose.BATTERY),
        _Leg(1500, 24.5, Purpose.EV_URGENT),
    ]
    placed = _net_orders(legs, 1500, D(5), D(30))
    assert [(o.side, o.energy_wh, o.limit_p_per_kwh, o.purpose) for o in placed] == [
        (Side.BUY, 1500, D("24.50"), Purpose.EV_URGENT)
    ]
    offers = _net_orders(
        [
            _Leg(-2000, 5.0, Purpose.SURPLUS),
            _Leg(-500, 14.2, Purpose.BATTERY),
            _Leg(700, 9.0, Purpose.EV_FLEXIBLE),
        ],
        -1800,
        D(5),
        D(30),
    )
    assert [(o.energy_wh, o.limit_p_per_kwh, o.purpose) for o in offers] == [
        (1800, D("5.00"), Purpose.SURPLUS)
    ]


def test_a_household_whose_plan_fails_is_skipped_and_the_others_go_on(monkeypatch):
    """The block fails, so each household is solved alone; only the failing one is a PlanFailure."""
    poisoned = 13.37

    def solve(matrices):
        if np.any(matrices.cost == poisoned):
            raise PlanSolverError("HiGHS stopped with status Infeasible")
        return solve_matrices(matrices)

    monkeypatch.setattr("planning.plan.solve_matrices", solve)
    reqs = [request(["10", "20"], demand=["1", "1"]), request(["13.37", "20"], demand=["1", "1"])]
    reqs.append(reqs[0])
    first, failed, third = plan_households(reqs)
    assert isinstance(failed, PlanFailure)
    assert "Infeasible" in failed.reason
    assert first == third == plan_household(reqs[0])


def test_input_errors_name_their_field():
    with pytest.raises(PlanInputError, match=r"demand_kwh\[1\]"):
        request(["10", "10"], demand=["1", "-1"])
    with pytest.raises(PlanInputError, match="battery_soc_kwh"):
        request(["10"], battery=battery())
    with pytest.raises(PlanInputError, match=r"import_tariff_p_per_kwh\[0\]"):
        outlook(["10"], imports="3")
    with pytest.raises(PlanInputError, match=r"starts_utc\[1\]"):
        PlanPeriods((WINTER, WINTER + timedelta(minutes=20)))


# --- invariants over random households ------------------------------------------------------------

energies = st.decimals(min_value=0, max_value=3, places=3)
prices = st.decimals(min_value=0, max_value=40, places=2)


@st.composite
def batteries(draw):
    capacity = draw(st.decimals(min_value=1, max_value=20, places=1))
    low = draw(st.decimals(min_value=0, max_value=30, places=0))
    high = draw(st.decimals(min_value=low + 10, max_value=100, places=0))
    reserve = draw(st.decimals(min_value=0, max_value=capacity * high / 100, places=3))
    home = HomeBattery(
        capacity_kwh=capacity,
        charge_kw=draw(st.decimals(min_value="0.5", max_value=6, places=3)),
        discharge_kw=draw(st.decimals(min_value="0.5", max_value=6, places=3)),
        min_soc_percent=low,
        max_soc_percent=high,
        round_trip_efficiency_percent=draw(st.decimals(min_value=60, max_value=100, places=2)),
        reserve_kwh=reserve,
    )
    return home, draw(st.decimals(min_value=0, max_value=capacity, places=3))


@st.composite
def evs(draw):
    quarter = st.integers(0, 95).map(lambda q: time(q // 4, 15 * (q % 4)))
    plugged, leaving = draw(quarter), draw(quarter)
    if plugged == leaving:
        leaving = time((leaving.hour + 8) % 24, leaving.minute)
    kw = draw(st.decimals(min_value="1.4", max_value="11", places=1))
    hours = ElectricVehicle.model_construct(plugged_in_from=plugged, departure=leaving).window_hours()
    needed = draw(st.decimals(min_value="0.1", max_value=min(kw * hours, Decimal(60)), places=1))
    ev = ElectricVehicle(charge_kw=kw, plugged_in_from=plugged, departure=leaving, energy_needed_kwh=needed)
    still = draw(st.none() | st.decimals(min_value=0, max_value=needed, places=3))
    return ev, still


@st.composite
def households(draw, count=None):
    count = count or draw(st.integers(1, 12))
    day = draw(st.sampled_from([datetime(2026, 1, 15), datetime(2026, 3, 28), datetime(2026, 10, 24)]))
    start = day.replace(tzinfo=UTC) + timedelta(minutes=30 * draw(st.integers(0, 95)))
    per_period = {"min_size": count, "max_size": count}
    imports = draw(st.lists(st.decimals(min_value=15, max_value=40, places=2), **per_period))
    exports = draw(st.lists(st.decimals(min_value=0, max_value=15, places=2), **per_period))
    home, soc = draw(st.none() | batteries()) or (None, None)
    ev, still = draw(st.none() | evs()) or (None, None)
    return PlanRequest(
        periods=PlanPeriods.half_hours(start, count),
        prices=PriceOutlook(
            tuple(draw(st.lists(prices, min_size=count, max_size=count))), tuple(imports), tuple(exports)
        ),
        strategy=Strategy(
            sell_floor_p_per_kwh=draw(prices), buy_ceiling_p_per_kwh=draw(prices), battery=home, ev=ev
        ),
        demand_kwh=tuple(draw(st.lists(energies, min_size=count, max_size=count))),
        generation_kwh=tuple(draw(st.lists(energies, min_size=count, max_size=count))),
        battery_soc_kwh=soc,
        ev_energy_needed_kwh=still,
        later_price_p_per_kwh=draw(st.none() | prices),
    )


def assert_plan_holds(req: PlanRequest, plan: HouseholdPlan) -> None:
    """Balance to the Wh, every limit, netting, orders adding up, limit prices in the band."""
    lp = describe_household(req)
    floor, ceiling = req.strategy.sell_floor_p_per_kwh, req.strategy.buy_ceiling_p_per_kwh
    assert len(plan.periods) == req.periods.count
    for t, period in enumerate(plan.periods):
        demand, generation = int(lp.demand_wh[t]), int(lp.generation_wh[t])
        incoming = generation + period.battery_discharge_wh + period.buy_wh
        outgoing = demand + period.battery_charge_wh + period.ev_charge_wh + period.sell_wh
        assert incoming == outgoing
        assert period.buy_wh == 0 or period.sell_wh == 0
        assert min(period.buy_wh, period.sell_wh) >= 0
        assert sum(o.energy_wh for o in period.orders if o.side is Side.BUY) == period.buy_wh
        assert sum(o.energy_wh for o in period.orders if o.side is Side.SELL) == period.sell_wh
        for order in period.orders:
            assert order.energy_wh > 0
            assert order.limit_p_per_kwh == order.limit_p_per_kwh.quantize(D("0.01"))
            if order.side is Side.BUY:
                assert order.limit_p_per_kwh <= ceiling
            else:
                assert order.limit_p_per_kwh >= floor
            if floor <= ceiling:
                assert floor <= order.limit_p_per_kwh <= ceiling
        assert (
            period.expected_cost_p
            == (period.buy_wh * period.import_cost_p_per_kwh - period.sell_wh * period.export_value_p_per_kwh)
            / 1000
        )
        if lp.has_battery:
            assert 0 <= period.battery_charge_wh <= lp.charge_max_wh
            assert 0 <= period.battery_discharge_wh <= lp.discharge_max_wh
            assert lp.soc_min_wh <= period.battery_soc_wh <= lp.soc_max_wh
            floor_wh = math.ceil(req.strategy.battery.floor_kwh * 1000)
            assert period.battery_soc_wh >= min(lp.soc_initial_wh, floor_wh)
            # Losses cost something at these non-negative prices: never both at once.
            assert period.battery_charge_wh == 0 or period.battery_discharge_wh == 0
        else:
            assert period.battery_charge_wh == period.battery_discharge_wh == 0
    if lp.ev is not None:
        ev = lp.ev
        charged = [0] * ev.window_count
        for t in ev.slot_period.tolist():
            assert plan.periods[t].ev_charge_wh <= sum(
                int(c) for c, p in zip(ev.slot_capacity_wh, ev.slot_period) if p == t
            )
        # Per window from the periods: a period belongs to one window in these draws unless two
        # windows share it, in which case check the total only.
        if len(set(ev.slot_period.tolist())) == len(ev.slot_period):
            for t, k in zip(ev.slot_period.tolist(), ev.slot_window.tolist()):
                charged[k] += plan.periods[t].ev_charge_wh
            for k in range(ev.window_count):
                assert int(ev.lower_wh[k]) <= charged[k] <= int(ev.upper_wh[k])
        assert sum(p.ev_charge_wh for p in plan.periods) >= int(ev.lower_wh.sum())
    else:
        assert all(p.ev_charge_wh == 0 for p in plan.periods)


@SETTINGS
@given(households())
def test_every_plan_keeps_balance_limits_and_prices(req):
    assert_plan_holds(req, plan_household(req))


@SETTINGS
@given(households())
def test_the_two_paths_solve_the_same_lp_to_the_same_plan(req):
    """The NumPy matrices are the compiled Pyomo model's, entry for entry; so one household solved
    either way gives the same plan."""
    lp = describe_household(req)
    compiled = compile_model(build_plan_model(lp))
    written = household_matrices(lp)
    assert np.array_equal(compiled.cost, written.cost)
    assert np.array_equal(compiled.lower, written.lower)
    assert np.array_equal(compiled.upper, written.upper)
    assert np.array_equal(compiled.row_lower, written.row_lower)
    assert (compiled.matrix != written.matrix).nnz == 0
    assert np.array_equal(compiled.matrix.indices, written.matrix.indices)
    assert plan_households([req], block_size=1) == [plan_household(req)]


@SETTINGS
@given(st.lists(households(), min_size=2, max_size=12))
def test_households_solved_together_cost_what_each_costs_alone(reqs):
    """In one block-diagonal LP each household reaches its own optimum: the LP's objective is the
    same (to HiGHS's tolerance); where an optimum is not unique the plan may differ, never the
    cost, and every plan keeps its invariants."""
    together = plan_households(reqs, block_size=len(reqs))
    for req, plan in zip(reqs, together):
        assert isinstance(plan, HouseholdPlan)
        assert_plan_holds(req, plan)
        lp = describe_household(req)
        matrices = household_matrices(lp)
        alone = solve_matrices(matrices)
        optimum = float(matrices.cost @ alone)
        assert objective_of(lp, plan) == pytest.approx(optimum, abs=rounding_slack_millipence(lp))


def objective_of(lp, plan: HouseholdPlan) -> float:
    """The LP's objective (millipence) at the plan's rounded flows."""
    cost = float(plan.expected_cost_p) * 1000
    if lp.has_battery:
        cost -= lp.stored_value_p_per_kwh * plan.periods[-1].battery_soc_wh
    return cost - lp.later_price_p_per_kwh * sum(p.ev_charge_wh for p in plan.periods)


def rounding_slack_millipence(lp) -> float:
    """Rounding moves each flow by under a Wh or two, and the state of charge with it."""
    dearest = max(lp.import_cost_p_per_kwh.max(), lp.later_price_p_per_kwh, 1.0)
    return 6 * dearest * lp.periods + 1e-6


# --- own use sized for the forecast's errors (the newsvendor) ------------------------------------


def test_own_use_is_ordered_at_the_newsvendor_quantile_of_the_forecasts_errors():
    """Ten past errors of -400 to +500 Wh. Expected 1 kWh of demand at 24.3 p (near the import
    tariff: a Wh short costs 0.2 p more, one too many loses 20.2 p): it buys at the 1% quantile,
    600 Wh. Expected 1 kWh of surplus at 4.3 p (near the export tariff): it sells at the 99%
    quantile of the net, 500 Wh. At the tariffs' middle, the median: 1,000 Wh bought."""
    errors = tuple(range(-400, 600, 100))  # -400 ... 500
    base = request(["24.3", "4.3", "14.3"], demand=["1", "0", "1"], generation=["0", "1", "0"])
    plan = plan_household(dataclasses.replace(base, net_error_wh=(errors,) * 3))
    ordered = [sum(o.energy_wh for o in period.orders) for period in plan.periods]
    sides = [{o.side for o in period.orders} for period in plan.periods]
    assert ordered == [600, 500, 1000]
    assert sides == [{Side.BUY}, {Side.SELL}, {Side.BUY}]
    assert [(p.buy_wh, p.sell_wh) for p in plan.periods] == [(1000, 0), (0, 1000), (1000, 0)]  # expected


def test_without_errors_the_orders_are_the_forecast():
    plan = plan_household(request(["24.3", "4.3"], demand=["1", "0"], generation=["0", "1"]))
    assert [sum(o.energy_wh for o in period.orders) for period in plan.periods] == [1000, 1000]


def test_the_errors_need_one_sample_a_period():
    base = request(["24.3", "4.3"])
    with pytest.raises(PlanInputError, match="net_error_wh"):
        dataclasses.replace(base, net_error_wh=((1, 2),))
