"""A series profile's power replaced from a step on: the counters follow, the past stands."""

from __future__ import annotations

from array import array
from datetime import UTC, datetime, timedelta

import pytest

from metering.emulator import SeriesProfile

START = datetime(2026, 6, 20, tzinfo=UTC)


def test_counters_follow_the_new_power_and_the_past_stands() -> None:
    profile = SeriesProfile(START, 60, array("d", [600.0] * 4))  # 10 Wh a minute
    assert profile.counters_kwh(START + timedelta(minutes=4)) == pytest.approx((0.04, 0.0))
    profile.set_power_w(2, [1200.0, -600.0])  # 20 Wh in minute 3, 10 Wh out in minute 4
    assert profile.counters_kwh(START + timedelta(minutes=2)) == pytest.approx((0.02, 0.0))
    assert profile.counters_kwh(START + timedelta(minutes=4)) == pytest.approx((0.04, 0.01))
    assert profile.net_power_w_at(START + timedelta(minutes=3, seconds=30)) == -600.0


@pytest.mark.parametrize(
    ("first", "values", "reason"),
    [(-1, [0.0], "within the series"), (3, [0.0, 0.0], "within the series"), (0, [float("nan")], "finite")],
)
def test_values_outside_the_series_or_not_finite_are_refused(
    first: int, values: list[float], reason: str
) -> None:
    profile = SeriesProfile(START, 60, array("d", [0.0] * 4))
    with pytest.raises(ValueError, match=reason):
        profile.set_power_w(first, values)
