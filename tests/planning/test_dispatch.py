"""planning.dispatch: a battery carries out its plan less what the market did not trade."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from planning.dispatch import battery_dispatch_wh, battery_grid_wh, stored_change_wh


@pytest.mark.parametrize(
    ("planned", "unsold", "unbought", "done"),
    [
        (-2000, 0, 0, -2000),  # everything traded: the plan
        (-2000, 500, 0, -1500),  # 500 Wh not sold: kept
        (-2000, 3000, 0, 0),  # more unsold than the discharge (PV's too): no discharge, no charge
        (-2000, 0, 700, -2000),  # an unbought purchase does not touch a discharge
        (1500, 0, 400, 1100),  # 400 Wh not bought: not charged
        (1500, 0, 2000, 0),
        (1500, 900, 0, 1500),  # an unsold offer does not touch a charge
        (0, 100, 100, 0),
    ],
)
def test_the_battery_does_the_plan_less_what_did_not_trade(planned, unsold, unbought, done):
    assert battery_dispatch_wh(planned, unsold, unbought) == done


def test_what_did_not_trade_is_never_negative():
    with pytest.raises(ValueError, match="never negative"):
        battery_dispatch_wh(-100, -1, 0)


@given(st.integers(-20_000, 20_000), st.integers(0, 20_000), st.integers(0, 20_000))
def test_a_dispatch_never_goes_beyond_its_plan_nor_turns_it_round(planned, unsold, unbought):
    done = battery_dispatch_wh(planned, unsold, unbought)
    assert min(planned, 0) <= done <= max(planned, 0)


@given(st.integers(-20_000, 20_000), st.sampled_from([0.81, 0.9, 0.95, 1.0]))
def test_the_stored_change_undoes_the_meters_energy_to_a_watt_hour(grid_wh, efficiency):
    stored = stored_change_wh(grid_wh, efficiency)
    assert abs(battery_grid_wh(0, stored, efficiency) - grid_wh) <= 1


@pytest.mark.parametrize(
    ("before", "after", "efficiency", "expected"),
    [
        (0, 900, 0.81, 1000),  # charging: 900 Wh stored over sqrt(0.81) = 0.9
        (900, 0, 0.81, -810),  # discharging: 900 Wh taken out x 0.9 reach the meter
        (500, 500, 0.9, 0),
    ],
)
def test_battery_energy_at_the_meter(before: int, after: int, efficiency: float, expected: int) -> None:
    assert battery_grid_wh(before, after, efficiency) == expected
