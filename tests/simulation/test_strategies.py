"""Strategies: the price forecast, battery and EV plans and leg netting, by hand and by hypothesis."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from simulation.strategies import (
    BatteryStrategy,
    EvStrategy,
    check_strategy_params,
    forecast_positions,
    make_strategy,
    net_legs,
    plan_battery,
    plan_ev,
)


def test_forecast_is_cheap_at_sunny_midday_and_dear_in_the_evening():
    hours = np.array([3.0, 13.0, 18.5])
    sun = np.array([0.0, 900.0, 100.0])
    levels = {"night_level": 0.55, "day_level": 0.75, "peak_level": 1.0, "solar_depth": 0.9}
    midday_cheapest = forecast_positions(hours, sun, clear_sky_index_mean=0.9, **levels)
    assert midday_cheapest[1] < midday_cheapest[0] < midday_cheapest[2]
    winter = forecast_positions(hours, np.array([0.0, 200.0, 0.0]), clear_sky_index_mean=0.5, **levels)
    assert winter[0] < winter[1] < winter[2]
    assert ((midday_cheapest >= 0) & (midday_cheapest <= 1)).all()


def test_battery_charges_cheapest_and_discharges_dearest_by_hand():
    forecast = np.array([0.5, 0.2, 0.2, 0.6, 0.9, 0.9, 0.5, 0.5])
    grid, soc = plan_battery(
        forecast,
        np.zeros(8, dtype=np.int64),
        np.arange(8.0),
        capacity_kwh=2.0,
        power_kw=2.0,
        period_h=0.5,
        round_trip_efficiency=1.0,
        initial_soc_kwh=0.0,
    )
    np.testing.assert_allclose(grid, [0, 1, 1, 0, -1, -1, 0, 0])
    np.testing.assert_allclose(soc, [0, 0, 1, 2, 2, 1, 0, 0, 0])


def test_battery_idles_when_the_spread_does_not_pay_for_losses():
    grid, soc = plan_battery(
        np.array([0.50, 0.52, 0.51, 0.50]),
        np.zeros(4, dtype=np.int64),
        np.zeros(4),
        capacity_kwh=1.0,
        power_kw=2.0,
        period_h=0.5,
        round_trip_efficiency=0.9,
        initial_soc_kwh=0.5,
    )
    assert (grid == 0).all()
    assert (soc == 0.5).all()


@settings(max_examples=60, deadline=None)
@given(
    forecast=arrays(np.float64, 48, elements=st.floats(0, 1)),
    capacity=st.floats(1, 15),
    power=st.floats(0.5, 6),
    efficiency=st.floats(0.7, 1.0),
    initial=st.floats(0, 1),
)
def test_battery_stays_within_its_limits(forecast, capacity, power, efficiency, initial):
    grid, soc = plan_battery(
        forecast,
        np.repeat([0, 1], 24),
        np.zeros(48),
        capacity_kwh=capacity,
        power_kw=power,
        period_h=0.5,
        round_trip_efficiency=efficiency,
        initial_soc_kwh=initial * capacity,
    )
    assert (np.abs(grid) <= power * 0.5 + 1e-9).all()
    assert (soc >= -1e-9).all()
    assert (soc <= capacity + 1e-9).all()


def test_ev_plan_by_hand_cheapest_first_and_urgent_at_the_end():
    forecast = np.array([1.0, 0.5, 0.5, 0.2, 0.9])
    plan, urgent = plan_ev(forecast, np.zeros(5), need_kwh=7.0, max_kwh_per_period=3.0)
    np.testing.assert_allclose(plan, [0, 3, 1, 3, 0])
    # At period 1, 7 kWh are still needed and the 3 later periods can take 9: nothing urgent.
    np.testing.assert_allclose(urgent, [0, 0, 0, 0, 0])
    plan, urgent = plan_ev(np.array([0.9, 0.9, 0.1]), np.zeros(3), need_kwh=8.0, max_kwh_per_period=3.0)
    np.testing.assert_allclose(plan, [3, 2, 3])  # equal forecasts: the tie key (all 0) keeps time order
    # 8 kWh with 6 possible later must start with 2 now; then 5 with 3 later; then the last 3.
    np.testing.assert_allclose(urgent, [2, 2, 3])


@settings(max_examples=60, deadline=None)
@given(
    forecast=arrays(np.float64, st.integers(1, 30), elements=st.floats(0, 1)),
    need=st.floats(0, 60),
    per_period=st.floats(0.5, 5),
)
def test_ev_plan_meets_the_need_within_the_charger(forecast, need, per_period):
    plan, urgent = plan_ev(forecast, np.zeros(forecast.size), need_kwh=need, max_kwh_per_period=per_period)
    assert plan.sum() == pytest.approx(min(need, per_period * forecast.size))
    assert (plan <= per_period + 1e-9).all()
    assert (plan >= 0).all()
    assert (urgent <= plan + 1e-9).all()
    assert (urgent >= 0).all()


def test_netting_by_hand():
    # PV 1 kWh for sale at 0.3; EV flexible 3 kWh at 0.35; demand 0.5 at 0.7: net buyer of 2.5.
    energy = np.array([[0.5, -1.0, 3.0]])
    position = np.array([[0.7, 0.3, 0.35]])
    np.testing.assert_allclose(net_legs(energy, position), [[0.5, 0.0, 2.0]])
    # Net seller of 0.9: its 0.4 kWh demand takes the dearer sell leg (0.3 at 0.8) first, then 0.1.
    energy = np.array([[0.4, -1.0, -0.3]])
    position = np.array([[0.7, 0.2, 0.8]])
    np.testing.assert_allclose(net_legs(energy, position), [[0.0, -0.9, 0.0]], atol=1e-12)


@settings(max_examples=100, deadline=None)
@given(
    energy=arrays(np.float64, (5, 4), elements=st.floats(-10, 10)),
    position=arrays(np.float64, (5, 4), elements=st.floats(0, 1)),
)
def test_netting_keeps_the_net_and_one_side(energy, position):
    bid = net_legs(energy, position)
    np.testing.assert_allclose(bid.sum(axis=1), energy.sum(axis=1), atol=1e-9)
    assert ((bid >= -1e-12).all(axis=1) | (bid <= 1e-12).all(axis=1)).all()
    assert (np.abs(bid) <= np.abs(energy) + 1e-9).all()


def test_strategy_params_are_checked_and_applied():
    check_strategy_params("ev", {"urgent_position": 0.9})
    with pytest.raises(ValueError, match="charge_margin is not a parameter of strategy 'ev'"):
        check_strategy_params("ev", {"charge_margin": 0.1})
    with pytest.raises(ValueError, match="within"):
        check_strategy_params("pv", {"sell_position": 1.5})
    check_strategy_params("auto", {"charge_margin": 0.1, "urgent_position": 0.9})
    strategy = make_strategy("battery", {"charge_margin": 0.1, "urgent_position": 0.9})
    assert isinstance(strategy, BatteryStrategy)
    assert strategy.charge_margin == 0.1
    charge, discharge = strategy.battery_positions(np.array([0.5]))
    assert charge[0] == pytest.approx(0.4)
    assert discharge[0] == pytest.approx(0.55)
    assert make_strategy("ev", {}).ev_positions() == (
        EvStrategy.urgent_position,
        EvStrategy.flexible_position,
    )
