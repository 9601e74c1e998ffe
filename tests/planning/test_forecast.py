"""The forecasts on known data: hand-solvable histories, pvlib's own clear sky, and invariants."""

from __future__ import annotations

import warnings
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

import numpy as np
import pandas as pd
import pvlib
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from planning.forecast import (
    DEFAULT_ANNUAL_KWH,
    DEFAULT_CLEAR_SKY_INDEX,
    LONDON,
    ForecastSettings,
    HouseholdHistory,
    MeterHistory,
    clear_sky_generation_kwh,
    default_demand_kwh,
    forecast_error,
    forecast_household,
    forecast_households,
    net_forecast_error,
)
from planning.strategy import PvArray

HALF_HOUR = timedelta(minutes=30)
#: No blending towards the default profile: the hand calculations below need none.
PLAIN = ForecastSettings(prior_days=0)


def periods(start: datetime, count: int) -> list[datetime]:
    return [start + i * HALF_HOUR for i in range(count)]


def local_midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=LONDON).astimezone(UTC)


def history(starts: list[datetime], import_wh, export_wh=None, estimated=None) -> MeterHistory:  # type: ignore[no-untyped-def]
    """A history with ``import_wh`` (and ``export_wh``) given as a function of each start."""
    return MeterHistory.from_periods(
        (
            start,
            int(import_wh(start)),
            0 if export_wh is None else int(export_wh(start)),
            False if estimated is None else bool(estimated(start)),
        )
        for start in starts
    )


def days_before(day: date, days: int) -> list[datetime]:
    """Every period of the ``days`` local days before ``day``."""
    start, end = local_midnight(day - timedelta(days=days)), local_midnight(day)
    return periods(start, int((end - start) / HALF_HOUR))


# --- demand ---------------------------------------------------------------------------------------


def test_a_flat_profile_forecasts_itself() -> None:
    day = date(2026, 3, 11)
    flat = history(days_before(day, 35), lambda _: 200)
    targets = periods(local_midnight(day) + 8 * HALF_HOUR, 12)
    forecast = forecast_household(HouseholdHistory("h", flat), targets, settings=PLAIN)
    assert forecast.demand_wh == (200,) * 12
    assert forecast.generation_wh == (0,) * 12
    assert forecast.from_history
    # Blended with the default (a day's worth against five weeks), it stays within a few Wh.
    blended = forecast_household(HouseholdHistory("h", flat), targets)
    assert all(abs(wh - 200) <= 10 for wh in blended.demand_wh)


def test_a_same_weekday_pattern_is_picked_up() -> None:
    """Saturdays use 500 Wh a period, other days 100: a Saturday's forecast is, by hand,
    1/2 x 500 (the last four Saturdays) + 1/2 x (500 + 6 x 100) / 7 (the last seven days)."""
    saturday = date(2026, 6, 20)
    assert saturday.weekday() == 5
    pattern = history(
        days_before(saturday, 35), lambda start: 500 if start.astimezone(LONDON).weekday() == 5 else 100
    )
    targets = periods(local_midnight(saturday) + 20 * HALF_HOUR, 12)
    forecast = forecast_household(HouseholdHistory("h", pattern), targets, settings=PLAIN)
    assert forecast.demand_wh == (round(250 + 1100 / 14),) * 12  # 328.57 -> 329
    weekly_only = ForecastSettings(prior_days=0, same_weekday_weight=1)
    assert (
        forecast_household(HouseholdHistory("h", pattern), targets, settings=weekly_only).demand_wh
        == (500,) * 12
    )
    recent_only = ForecastSettings(prior_days=0, same_weekday_weight=0)
    monday = saturday + timedelta(days=2)
    to_monday = history(
        days_before(monday, 35), lambda start: 500 if start.astimezone(LONDON).weekday() == 5 else 100
    )
    targets = periods(local_midnight(monday), 12)  # the last seven days hold one Saturday
    assert (
        forecast_household(HouseholdHistory("h", to_monday), targets, settings=recent_only).demand_wh
        == (round((500 + 6 * 100) / 7),) * 12
    )


def test_neighbouring_half_hours_smooth_a_spike() -> None:
    """One spiky half-hour each day (900 Wh at 18:00, 100 otherwise): its own slot forecasts
    1/2 x 900 + 1/4 x 100 + 1/4 x 100, each neighbour 1/4 x 900 + 3/4 x 100."""
    day = date(2026, 5, 6)
    spike = history(days_before(day, 30), lambda s: 900 if s.astimezone(LONDON).time() == time(18) else 100)
    targets = periods(local_midnight(day) + 35 * HALF_HOUR, 3)  # 17:30, 18:00, 18:30
    smoothed = ForecastSettings(prior_days=0, neighbour_slot_weight=0.25)
    forecast = forecast_household(HouseholdHistory("h", spike), targets, settings=smoothed)
    assert forecast.demand_wh == (300, 500, 300)
    assert forecast_household(HouseholdHistory("h", spike), targets, settings=PLAIN).demand_wh == (
        100,
        900,
        100,
    )


@pytest.mark.parametrize(
    ("day", "periods_in_day"),
    [(date(2026, 10, 25), 50), (date(2026, 3, 29), 46), (date(2026, 10, 26), 48), (date(2026, 3, 30), 48)],
)
def test_profiles_follow_the_wall_clock_across_clock_changes(day: date, periods_in_day: int) -> None:
    """A home using 100 Wh a period before 07:00 local time and 300 after: every period of a
    clock-change day (and the day after one, whose history holds it) gets its wall-clock value."""
    starts = days_before(day, 35)

    def by_clock(start: datetime) -> int:
        return 100 if start.astimezone(LONDON).hour < 7 else 300

    targets = periods(local_midnight(day), periods_in_day)
    assert local_midnight(day + timedelta(days=1)) == targets[-1] + HALF_HOUR
    no_smoothing = ForecastSettings(prior_days=0, neighbour_slot_weight=0)
    forecast = forecast_household(
        HouseholdHistory("h", history(starts, by_clock)), targets, settings=no_smoothing
    )
    assert forecast.demand_wh == tuple(by_clock(start) for start in targets)


def test_estimated_and_missing_periods_are_left_out() -> None:
    day = date(2026, 2, 4)
    starts = days_before(day, 35)
    # Every third day's data are the meter's estimates, and wild; every fifth day is missing.
    kept = [s for s in starts if s.astimezone(LONDON).toordinal() % 5]
    gappy = history(
        kept,
        lambda s: 9000 if s.astimezone(LONDON).toordinal() % 3 == 0 else 250,
        estimated=lambda s: s.astimezone(LONDON).toordinal() % 3 == 0,
    )
    targets = periods(local_midnight(day) + 14 * HALF_HOUR, 12)
    assert forecast_household(HouseholdHistory("h", gappy), targets, settings=PLAIN).demand_wh == (250,) * 12


def test_history_at_or_after_the_first_target_is_not_used() -> None:
    day = date(2026, 2, 4)
    targets = periods(local_midnight(day) + 20 * HALF_HOUR, 12)
    past = days_before(day, 30)
    future = periods(targets[0], 96)
    known = history([*past, *future], lambda s: 5000 if s >= targets[0] else 120)
    assert forecast_household(HouseholdHistory("h", known), targets, settings=PLAIN).demand_wh == (120,) * 12


# --- the default ----------------------------------------------------------------------------------


def test_no_history_gives_the_documented_default() -> None:
    day = date(2026, 1, 15)  # the seasonal peak: 1.15 x the year's average day
    targets = periods(local_midnight(day), 48)
    forecast = forecast_household(HouseholdHistory("new"), targets)
    assert not forecast.from_history
    expected_day_kwh = DEFAULT_ANNUAL_KWH / 365 * 1.15
    assert sum(forecast.demand_wh) / 1000 == pytest.approx(expected_day_kwh, abs=0.048)
    assert forecast.demand_wh == tuple(int(v) for v in np.rint(default_demand_kwh(targets) * 1000))
    # The evening peak is above the night trough, as in profile class 1.
    assert forecast.demand_wh[36] > 2 * forecast.demand_wh[8]


def test_a_whole_year_of_default_is_ofgems_typical_consumption() -> None:
    start = local_midnight(date(2026, 1, 1))
    end = local_midnight(date(2027, 1, 1))
    year = periods(start, int((end - start) / HALF_HOUR))
    assert float(default_demand_kwh(year).sum()) == pytest.approx(DEFAULT_ANNUAL_KWH, rel=0.002)


def test_a_new_household_with_pv_gets_the_default_cloudiness() -> None:
    pv = PvArray(kwp=Decimal(3))
    targets = periods(datetime(2026, 6, 21, 9, tzinfo=UTC), 12)
    forecast = forecast_household(HouseholdHistory("new", pv=pv), targets)
    assert forecast.clear_sky_index == DEFAULT_CLEAR_SKY_INDEX
    expected = np.rint(DEFAULT_CLEAR_SKY_INDEX * clear_sky_generation_kwh(pv, targets) * 1000)
    assert forecast.generation_wh == tuple(int(v) for v in expected)


# --- PV -------------------------------------------------------------------------------------------


def pvlib_reference_kwh(pv: PvArray, starts: list[datetime], performance_ratio: float = 0.8) -> np.ndarray:
    """The same clear sky through pvlib's pandas interface (SPA solar position), at the same
    5-minute midpoints: an independent check of the forecast's numpy path."""
    moments = pd.DatetimeIndex([s + timedelta(minutes=2.5 + 5 * k) for s in starts for k in range(6)])
    site = pvlib.location.Location(float(pv.latitude), float(pv.longitude), tz="UTC")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        position = site.get_solarposition(moments)
        sky = site.get_clearsky(moments, model="simplified_solis", solar_position=position)
        poa = pvlib.irradiance.get_total_irradiance(
            float(pv.tilt_deg),
            float(pv.azimuth_deg),
            position["apparent_zenith"],
            position["azimuth"],
            sky["dni"],
            sky["ghi"],
            sky["dhi"],
        )["poa_global"]
    watts = np.where(position["elevation"].to_numpy() > 0, np.nan_to_num(poa.to_numpy()), 0.0)
    return float(pv.kwp) * performance_ratio * watts.reshape(len(starts), 6).mean(axis=1) / 1000 / 2


@pytest.mark.parametrize(
    "pv",
    [
        PvArray(kwp=Decimal(4)),
        PvArray(kwp=Decimal("2.5"), tilt_deg=Decimal(20), azimuth_deg=Decimal(120)),
        PvArray(kwp=Decimal(6), tilt_deg=Decimal(45), azimuth_deg=Decimal(250), latitude=Decimal("55.9")),
    ],
)
@pytest.mark.parametrize("day", [date(2026, 6, 21), date(2026, 12, 21), date(2026, 3, 29)])
def test_clear_sky_generation_is_pvlibs(pv: PvArray, day: date) -> None:
    starts = periods(local_midnight(day), 48)
    ours = clear_sky_generation_kwh(pv, starts)
    reference = pvlib_reference_kwh(pv, starts)
    # The analytical sun position (no refraction) differs from SPA's apparent position by a
    # fraction of a degree, most at a low sun: 5% of the day's peak per period (the midwinter sun
    # at 56 degrees north, never 11 degrees high, is the worst), the day within 2%.
    assert np.abs(ours - reference).max() <= 0.05 * reference.max()
    assert ours.sum() == pytest.approx(reference.sum(), rel=0.02)
    assert np.all(ours[reference == 0] == 0)


def clear_sky_household(
    pv: PvArray, day: date, days: int, *, index, demand_wh: int = 150
) -> HouseholdHistory:  # type: ignore[no-untyped-def]
    """A home using ``demand_wh`` a period under a sky ``index(start)`` x clear."""
    starts = days_before(day, days)
    clear_wh = clear_sky_generation_kwh(pv, starts) * 1000
    net = [demand_wh - index(s) * c for s, c in zip(starts, clear_wh)]
    return HouseholdHistory(
        "pv",
        MeterHistory.from_periods(
            (s, round(max(n, 0)), round(max(-n, 0)), False) for s, n in zip(starts, net)
        ),
        pv,
    )


def test_a_clear_sky_history_forecasts_the_clear_sky_output() -> None:
    pv = PvArray(kwp=Decimal(4))
    day = date(2026, 6, 20)
    household = clear_sky_household(pv, day, 30, index=lambda _: 1.0)
    targets = periods(local_midnight(day) + 18 * HALF_HOUR, 12)  # 09:00-15:00 local
    forecast = forecast_household(household, targets, settings=PLAIN)
    assert forecast.clear_sky_index == pytest.approx(1.0, abs=0.01)
    clear_wh = clear_sky_generation_kwh(pv, targets) * 1000
    assert np.allclose(forecast.generation_wh, clear_wh, rtol=0.01, atol=1)
    assert all(abs(wh - 150) <= 3 for wh in forecast.demand_wh)


@pytest.mark.parametrize("index", [0.3, 0.55, 0.9])
def test_cloudiness_is_estimated_from_export(index: float) -> None:
    """Half-clear skies every day, and a 150 Wh demand the export hides: the index comes back,
    and so does the demand behind the net flows."""
    pv = PvArray(kwp=Decimal("3.5"), azimuth_deg=Decimal(200))
    day = date(2026, 5, 14)
    household = clear_sky_household(pv, day, 30, index=lambda _: index)
    targets = periods(local_midnight(day) + 16 * HALF_HOUR, 12)
    forecast = forecast_household(household, targets, settings=PLAIN)
    assert forecast.clear_sky_index == pytest.approx(index, abs=0.03)
    assert np.allclose(
        forecast.generation_wh, index * clear_sky_generation_kwh(pv, targets) * 1000, rtol=0.05, atol=5
    )
    assert all(abs(wh - 150) <= 30 for wh in forecast.demand_wh)


def test_recent_skies_count_most() -> None:
    pv = PvArray(kwp=Decimal(4))
    day = date(2026, 7, 1)
    yesterday = local_midnight(day - timedelta(days=1))
    household = clear_sky_household(pv, day, 30, index=lambda s: 0.4 if s >= yesterday else 1.0)
    targets = periods(local_midnight(day) + 20 * HALF_HOUR, 12)
    estimate = forecast_household(household, targets).clear_sky_index
    assert estimate is not None
    assert 0.4 < estimate < 0.7  # yesterday (0.4) weighs twice the day before (1.0)


# --- invariants -----------------------------------------------------------------------------------

_start = datetime(2026, 1, 1, tzinfo=UTC)


@st.composite
def households(draw: st.DrawFn) -> HouseholdHistory:
    days = draw(st.integers(min_value=0, max_value=10))
    count = days * 48
    imports = draw(st.lists(st.integers(0, 5000), min_size=count, max_size=count))
    exports = draw(st.lists(st.integers(0, 5000), min_size=count, max_size=count))
    estimated = draw(st.lists(st.booleans(), min_size=count, max_size=count))
    origin = draw(st.integers(min_value=40, max_value=360))
    starts = periods(_start + timedelta(days=origin - days), count)
    pv = draw(
        st.none()
        | st.builds(
            PvArray,
            kwp=st.decimals("0.5", "12", places=1),
            tilt_deg=st.decimals(0, 90, places=0),
            azimuth_deg=st.decimals(0, 359, places=0),
        )
    )
    return HouseholdHistory("h", MeterHistory.from_periods(zip(starts, imports, exports, estimated)), pv)


@settings(max_examples=40, deadline=None)
@given(household=households(), hour=st.integers(0, 23))
def test_forecasts_are_never_negative_and_there_is_no_sun_at_night(
    household: HouseholdHistory, hour: int
) -> None:
    end = (
        datetime.fromtimestamp(int(household.history.start_s.max()), UTC) + HALF_HOUR
        if len(household.history)
        else _start
    )
    targets = periods(end.replace(hour=hour, minute=0) + timedelta(days=1), 12)
    forecast = forecast_household(household, targets)
    assert all(wh >= 0 for wh in forecast.demand_wh + forecast.generation_wh)
    assert forecast.demand_kwh == tuple(Decimal(wh) / 1000 for wh in forecast.demand_wh)
    if household.pv is None:
        assert forecast.generation_wh == (0,) * 12
    else:
        dark = clear_sky_generation_kwh(household.pv, targets) == 0
        assert all(wh == 0 for wh, night in zip(forecast.generation_wh, dark) if night)


def test_many_households_at_once_match_each_alone() -> None:
    day = date(2026, 4, 8)
    rng = np.random.default_rng(7)
    starts = days_before(day, 20)
    homes = [
        HouseholdHistory(
            f"h{i}",
            MeterHistory.from_periods(
                (s, int(v), int(e), False)
                for s, v, e in zip(
                    starts, rng.integers(0, 800, len(starts)), rng.integers(0, 300, len(starts))
                )
            ),
            PvArray(kwp=Decimal(2 + i)) if i % 2 else None,
        )
        for i in range(5)
    ]
    targets = periods(local_midnight(day) + 24 * HALF_HOUR, 12)
    together = forecast_households(homes, targets, chunk_size=2)
    assert together == [forecast_household(home, targets) for home in homes]


def test_periods_must_be_aware_aligned_and_in_order() -> None:
    start = datetime(2026, 4, 8, 12, tzinfo=UTC)
    home = HouseholdHistory("h")
    with pytest.raises(ValueError, match="aware"):
        forecast_household(home, [datetime(2026, 4, 8, 12)])
    with pytest.raises(ValueError, match="boundary"):
        forecast_household(home, [start + timedelta(minutes=10)])
    with pytest.raises(ValueError, match="increasing"):
        forecast_household(home, [start + HALF_HOUR, start])
    with pytest.raises(ValueError, match="boundary"):
        MeterHistory.from_periods([(start + timedelta(minutes=5), 1, 0, False)])


# --- the error ------------------------------------------------------------------------------------


def test_forecast_error_by_hand() -> None:
    errors = forecast_error([[100, 200], [300, 0]], [[150, 200], [300, np.nan]])
    assert [(e.periods_ahead, e.count) for e in errors] == [(1, 2), (2, 1)]
    assert errors[0].mae_kwh == pytest.approx(0.025)
    assert errors[0].mean_actual_kwh == pytest.approx(0.225)
    assert errors[0].nmae == pytest.approx(25 / 225)
    assert errors[1].mae_kwh == 0
    assert errors[1].nmae == 0


def test_net_error_against_what_the_meter_measured() -> None:
    start = datetime(2026, 4, 8, 12, tzinfo=UTC)
    targets = periods(start, 2)
    forecast = forecast_household(HouseholdHistory("h"), targets)
    measured = MeterHistory.from_periods(
        [(targets[0], 500, 100, False), (targets[1], 9999, 0, True)]  # the second is an estimate
    )
    errors = net_forecast_error([forecast], {"h": measured})
    assert errors[0].count == 1
    assert errors[0].mae_kwh == pytest.approx(abs(forecast.net_import_wh[0] - 400) / 1000)
    assert errors[1].count == 0


# --- the spread of the net around the forecast ---------------------------------------------------


def test_the_net_errors_are_the_recent_days_around_the_forecast() -> None:
    """Demand alternating 100 and 300 Wh by day (no PV): the forecast is their mean, 200 Wh, and
    each period's sample is the recent 7 days at its slot and the two beside it, each 100 Wh off."""
    day = date(2026, 3, 11)
    alternating = history(days_before(day, 35), lambda start: 100 if start.toordinal() % 2 else 300)
    targets = periods(local_midnight(day) + 8 * HALF_HOUR, 4)
    forecast = forecast_household(
        HouseholdHistory("h", alternating),
        targets,
        settings=ForecastSettings(prior_days=0, same_weekday_weight=0),
    )
    assert len(forecast.net_error_wh) == 4
    for sample, expected in zip(forecast.net_error_wh, forecast.demand_wh, strict=True):
        assert len(sample) == 21
        assert list(sample) == sorted(sample)
        assert {expected + error for error in sample} == {100, 300}


def test_a_new_household_has_no_net_errors() -> None:
    targets = periods(local_midnight(date(2026, 3, 11)), 3)
    forecast = forecast_household(HouseholdHistory("h", MeterHistory.empty()), targets)
    assert forecast.net_error_wh == ((), (), ())
