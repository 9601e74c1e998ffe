"""Reading validation: bad values are dropped and named, never zeroed; quality flags."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from metering.readings import COUNTER_QUANTITIES, Quality, Reading, make_reading, validate
from metering.registers import load_register_map

SDM630 = load_register_map("sdm630")
GOOD = {
    "voltage_l1_v": 230.0,
    "voltage_l2_v": 231.5,
    "voltage_l3_v": 229.0,
    "current_l1_a": 4.0,
    "current_l2_a": 0.5,
    "current_l3_a": 0.0,
    "power_l1_w": 920.0,
    "power_l2_w": 115.75,
    "power_l3_w": -1500.0,
    "power_w": -464.25,
    "frequency_hz": 49.98,
    "import_kwh": 15234.5,
    "export_kwh": 0.0,
}
NOON = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def test_a_good_poll_keeps_everything():
    values, quality, problems = validate(SDM630, GOOD)
    assert values == GOOD
    assert quality is Quality.GOOD
    assert problems == ()


@pytest.mark.parametrize(
    ("name", "value", "quality", "problem"),
    [
        ("voltage_l1_v", math.nan, "suspect", "voltage_l1_v: not a number (NaN)"),
        ("voltage_l1_v", math.inf, "suspect", "voltage_l1_v: inf is infinite"),
        ("power_w", -math.inf, "suspect", "power_w: -inf is infinite"),
        ("voltage_l2_v", 612.0, "suspect", "voltage_l2_v: 612 V is outside 0..300"),
        ("frequency_hz", 0.0, "suspect", "frequency_hz: 0 Hz is outside 45..65"),
        ("current_l3_a", None, "suspect", "current_l3_a: None is not a number"),
        ("import_kwh", math.nan, "invalid", "import_kwh: not a number (NaN)"),
        ("import_kwh", -1.0, "invalid", "import_kwh: -1 kWh is outside 0..1e+08"),
        ("export_kwh", math.inf, "invalid", "export_kwh: inf is infinite"),
        ("export_kwh", 2e8, "invalid", "export_kwh: 2e+08 kWh is outside 0..1e+08"),
    ],
)
def test_a_bad_value_is_dropped_and_named_not_zeroed(name, value, quality, problem):
    values, got_quality, problems = validate(SDM630, {**GOOD, name: value})
    assert name not in values
    assert values == {k: v for k, v in GOOD.items() if k != name}
    assert got_quality == quality
    assert problems == (problem,)


@pytest.mark.parametrize(("missing", "quality"), [("power_l2_w", "suspect"), ("export_kwh", "invalid")])
def test_a_missing_value_is_a_problem(missing, quality):
    values, got_quality, problems = validate(SDM630, {k: v for k, v in GOOD.items() if k != missing})
    assert missing not in values
    assert got_quality == quality
    assert problems == (f"{missing}: missing",)


def test_values_outside_the_map_are_dropped():
    values, quality, problems = validate(SDM630, {**GOOD, "temperature_c": 21.0})
    assert "temperature_c" not in values
    assert quality is Quality.SUSPECT
    assert problems == ("temperature_c: not a quantity of sdm630",)


def test_the_range_bounds_themselves_are_plausible():
    values, quality, _ = validate(
        SDM630, {**GOOD, "frequency_hz": 45.0, "voltage_l1_v": 300.0, "export_kwh": 0}
    )
    assert quality is Quality.GOOD
    assert (values["frequency_hz"], values["voltage_l1_v"]) == (45.0, 300.0)


BAD = st.sampled_from([math.nan, math.inf, -math.inf, 1e12, -1e12])


@given(
    st.dictionaries(st.sampled_from(SDM630.names), BAD | st.floats(allow_nan=True, allow_infinity=True)),
)
def test_kept_values_are_exactly_the_plausible_ones(changes):
    values = {**GOOD, **changes}
    kept, quality, problems = validate(SDM630, values)
    for q in SDM630.quantities:
        value = values[q.name]
        plausible = math.isfinite(value) and q.minimum <= value <= q.maximum
        assert (q.name in kept) == plausible
        assert plausible == (not any(p.startswith(f"{q.name}:") for p in problems))
        if plausible:
            assert kept[q.name] == value
    counter_bad = any(name not in kept for name in COUNTER_QUANTITIES)
    expected = Quality.INVALID if counter_bad else (Quality.SUSPECT if problems else Quality.GOOD)
    assert quality is expected


def test_make_reading_carries_times_quality_and_problems():
    meter_time = NOON - timedelta(seconds=3)
    reading = make_reading(
        "meter-17", SDM630, {**GOOD, "voltage_l1_v": math.nan}, polled_at=NOON, meter_time=meter_time
    )
    assert reading.meter_id == "meter-17"
    assert (reading.polled_at, reading.meter_time) == (NOON, meter_time)
    assert reading.quality == "suspect"
    assert reading.problems == ("voltage_l1_v: not a number (NaN)",)
    assert "voltage_l1_v" not in reading.values
    assert reading.values["import_kwh"] == 15234.5


def test_reading_times_are_utc():
    london_summer = timezone(timedelta(hours=1))
    reading = make_reading("m", SDM630, GOOD, polled_at=datetime(2026, 6, 1, 13, 0, tzinfo=london_summer))
    assert reading.polled_at == datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
    assert reading.polled_at.tzinfo is UTC
    assert reading.meter_time is None


@pytest.mark.parametrize("field", ["polled_at", "meter_time"])
def test_naive_times_are_refused(field):
    times = {"polled_at": NOON, "meter_time": None, field: datetime(2026, 11, 21, 12, 0)}
    with pytest.raises(ValueError, match=f"{field} must be a timezone-aware datetime"):
        make_reading("m", SDM630, GOOD, **times)


def test_reading_values_are_read_only():
    reading = make_reading("m", SDM630, GOOD, polled_at=NOON)
    with pytest.raises(TypeError):
        reading.values["import_kwh"] = 0.0  # type: ignore[index]


def test_an_unknown_quality_is_refused():
    with pytest.raises(ValueError, match="'excellent'"):
        Reading("m", NOON, None, {}, "excellent")  # type: ignore[arg-type]
