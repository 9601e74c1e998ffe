"""Interval energy from cumulative counters: hand-worked cases, clock-change day, bad inputs, invariants.

Every expected value in the hand-worked cases is worked out on paper in the comment beside it, in Wh,
from the policies in :mod:`metering.energy`'s docstring, not from the code under test.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metering.energy import (
    CounterEvent,
    CounterEventKind,
    CounterReading,
    IntervalEnergy,
    Register,
    ResetPolicy,
    derive_boundary_counters,
    derive_interval_energy,
    detect_counter_resets,
)

SETTINGS = settings(max_examples=200, deadline=None)
DAY = "2026-11-21"
BASE_UTC = datetime(2026, 11, 21, tzinfo=UTC)
HALF_HOUR = timedelta(minutes=30)
QUARTER_HOUR = timedelta(minutes=15)


def utc(text: str) -> datetime:
    """An aware UTC datetime from ``"YYYY-MM-DDTHH:MM"``."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def at(hhmm: str) -> datetime:
    """A time of day on the test day, in UTC."""
    return utc(f"{DAY}T{hhmm}")


def wh(kwh: str) -> int:
    """A counter written in kWh (as a meter shows it), in whole Wh."""
    value = Decimal(kwh) * 1000
    assert value == value.to_integral_value(), kwh
    return int(value)


def reading(hhmm: str, import_kwh: str, export_kwh: str = "0.000") -> CounterReading:
    return CounterReading(at(hhmm), wh(import_kwh), wh(export_kwh))


def half_hours(first_hhmm: str, count: int) -> list[tuple[datetime, datetime]]:
    """Consecutive half-hour ``(start_utc, end_utc)`` pairs, stepped in UTC."""
    first = at(first_hhmm)
    return [(first + k * HALF_HOUR, first + (k + 1) * HALF_HOUR) for k in range(count)]


def energy(
    start: str,
    end: str,
    import_wh: int,
    export_wh: int = 0,
    estimated: bool = False,
    events: tuple[CounterEvent, ...] = (),
) -> IntervalEnergy:
    return IntervalEnergy(at(start), at(end), import_wh, export_wh, estimated, events)


# --- hand-worked cases -----------------------------------------------------------------------


def test_readings_on_the_boundaries_give_their_differences():
    readings = [
        reading("00:00", "10.000", "2.000"),
        reading("00:30", "10.500", "2.000"),
        reading("01:00", "11.250", "2.100"),
    ]

    result = derive_interval_energy(readings, half_hours("00:00", 2))

    assert result == [energy("00:00", "00:30", 500, 0), energy("00:30", "01:00", 750, 100)]
    assert result[1].import_kwh == Decimal("0.750")
    assert result[1].export_kwh == Decimal("0.100")


def test_boundaries_between_readings_are_interpolated_linearly():
    readings = [
        reading("00:20", "5.000", "1.000"),
        reading("00:35", "5.100", "1.030"),
        reading("01:05", "5.400", "1.090"),
    ]

    boundaries = derive_boundary_counters(readings, [at("00:30"), at("01:00")])
    result = derive_interval_energy(readings, half_hours("00:30", 1))

    # 00:30 is 10 of the 15 minutes from 00:20 to 00:35: import 5000 + 100 * 10/15 = 5066⅔ -> 5067,
    # export 1000 + 30 * 10/15 = 1020. 01:00 is 25 of the 30 minutes from 00:35 to 01:05:
    # import 5100 + 300 * 25/30 = 5350, export 1030 + 60 * 25/30 = 1080.
    assert [(b.import_wh, b.export_wh, b.estimated) for b in boundaries] == [
        (5067, 1020, False),
        (5350, 1080, False),
    ]
    assert result == [energy("00:30", "01:00", 5350 - 5067, 1080 - 1020)]


@pytest.mark.parametrize(
    ("first_kwh", "last_kwh", "expected_wh"),
    [
        ("1.000", "1.001", (0, 1)),  # midpoint 1000.5 Wh rounds to even 1000
        ("1.001", "1.002", (1, 0)),  # midpoint 1001.5 Wh rounds to even 1002
        ("1.000", "1.003", (2, 1)),  # midpoint 1001.5 Wh rounds to even 1002
    ],
)
def test_each_boundary_is_rounded_once_half_to_even_and_the_energies_telescope(
    first_kwh, last_kwh, expected_wh
):
    readings = [reading("00:00", first_kwh), reading("01:00", last_kwh)]

    result = derive_interval_energy(readings, half_hours("00:00", 2))

    assert tuple(interval.import_wh for interval in result) == expected_wh
    # Readings exactly DEFAULT_MAX_GAP apart still give measured values.
    assert not any(interval.estimated for interval in result)


def test_a_reset_in_the_middle_of_an_interval_continues_the_counter_by_default():
    readings = [
        reading("00:00", "100.000", "3.000"),
        reading("00:10", "100.100", "3.000"),
        reading("00:20", "0.050", "3.000"),  # the import register was reset to zero after 00:10
        reading("00:30", "0.150", "3.000"),
        reading("01:00", "0.450", "3.000"),
    ]
    reset = CounterEvent(at("00:10"), at("00:20"), Register.IMPORT, 100_100, 50)

    result = derive_interval_energy(readings, half_hours("00:00", 2))
    around = derive_interval_energy(readings, [(at("00:00"), at("00:10")), (at("00:20"), at("00:30"))])

    # Continuous counter: 100000, 100100, then the new counter continues at 100100 (00:20), 100200
    # (00:30) and 100500 (01:00). Nothing is attributed to the reset gap 00:10-00:20.
    assert result == [
        energy("00:00", "00:30", 200, 0, estimated=True, events=(reset,)),
        energy("00:30", "01:00", 300, 0),
    ]
    # Intervals that only touch the reset gap 00:10-00:20 at its ends do not overlap it.
    assert around == [energy("00:00", "00:10", 100), energy("00:20", "00:30", 100)]
    assert reset.kind is CounterEventKind.COUNTER_RESET
    assert detect_counter_resets(readings) == [reset]


def test_a_reset_from_zero_policy_counts_the_new_counter_from_zero():
    readings = [
        reading("00:00", "100.000"),
        reading("00:10", "100.100"),
        reading("00:20", "0.050"),
        reading("00:30", "0.150"),
        reading("01:00", "0.450"),
    ]

    result = derive_interval_energy(readings, half_hours("00:00", 2), reset_policy=ResetPolicy.FROM_ZERO)

    # The new counter counted 50 Wh since it started from zero in the reset gap: 100 + 50 + 100 = 250.
    assert [(interval.import_wh, interval.estimated) for interval in result] == [(250, True), (300, False)]


def test_a_replacement_meter_starting_from_another_value_gives_no_jump():
    readings = [
        reading("00:00", "5000.000", "300.000"),
        reading("00:20", "5000.300", "300.000"),
        # The old meter is swapped for one whose counters start at 12.000 kWh and 0.000 kWh.
        reading("00:40", "12.000", "0.000"),
        reading("01:00", "12.100", "0.020"),
    ]
    events = (
        CounterEvent(at("00:20"), at("00:40"), Register.IMPORT, 5_000_300, 12_000),
        CounterEvent(at("00:20"), at("00:40"), Register.EXPORT, 300_000, 0),
    )

    continued = derive_interval_energy(readings, half_hours("00:00", 2))
    boundaries = derive_boundary_counters(readings, [at("00:20"), at("00:30"), at("00:40")])
    from_zero = derive_interval_energy(readings, half_hours("00:00", 2), reset_policy="from_zero")

    # Continue: import 5000000, 5000300, then flat across the gap to 5000300 at 00:40 (so 00:30, inside
    # the reset gap, is 5000300 too), then 5000400. Export 300000 until 00:40, then 300020. Both
    # intervals overlap the reset gap 00:20-00:40, so both are estimated and carry both events.
    assert continued == [
        energy("00:00", "00:30", 300, 0, estimated=True, events=events),
        energy("00:30", "01:00", 100, 20, estimated=True, events=events),
    ]
    # The readings either side of the gap are measured; a boundary inside it is not.
    assert [(b.import_wh, b.estimated) for b in boundaries] == [
        (5_000_300, False),
        (5_000_300, True),
        (5_000_300, False),
    ]
    # From zero: the continuous import counter climbs 12000 Wh across the gap, to 5012300 at 00:40,
    # so 00:30 is halfway, 5006300: the 12 kWh the new meter started at become energy. Hence not the
    # default.
    assert [(interval.import_wh, interval.export_wh) for interval in from_zero] == [(6300, 0), (6100, 20)]


def test_a_missing_reading_after_the_last_boundary_is_extrapolated_and_later_replaced():
    readings = [reading("00:00", "1.000"), reading("00:30", "1.300"), reading("00:45", "1.600")]
    intervals = half_hours("00:00", 2)

    over_all_readings = derive_interval_energy(readings, intervals)
    over_last_quarter_hour = derive_interval_energy(readings, intervals, rate_window=timedelta(minutes=15))
    over_last_ten_minutes = derive_interval_energy(readings, intervals, rate_window=timedelta(minutes=10))
    later = derive_interval_energy([*readings, reading("01:10", "1.700")], intervals)

    # The readings span 45 minutes, less than the default day: 600 Wh / 45 min = 13⅓ Wh/min, so 01:00
    # is 1600 + 15 * 13⅓ = 1800 and the second interval 1800 - 1300 = 500, estimated.
    assert over_all_readings == [energy("00:00", "00:30", 300), energy("00:30", "01:00", 500, estimated=True)]
    # 00:30-00:45: 300 Wh / 15 min = 20 Wh/min, so 01:00 is 1600 + 300 = 1900.
    assert over_last_quarter_hour[1] == energy("00:30", "01:00", 600, estimated=True)
    # 00:35 interpolates to 1300 + 300 * 5/15 = 1400; (1600 - 1400) / 10 min = 20 Wh/min again.
    assert over_last_ten_minutes[1] == energy("00:30", "01:00", 600, estimated=True)
    # Once 01:10 has arrived, 01:00 is 1600 + 100 * 15/25 = 1660: measured.
    assert later == [energy("00:00", "00:30", 300), energy("00:30", "01:00", 360)]


def test_a_boundary_before_the_first_reading_carries_the_first_reading_back():
    readings = [reading("00:45", "2.000"), reading("01:00", "2.150")]

    result = derive_interval_energy(readings, half_hours("00:00", 2))

    # 00:00 and 00:30 both take 2000; 01:00 is 2150.
    assert result == [
        energy("00:00", "00:30", 0, estimated=True),
        energy("00:30", "01:00", 150, estimated=True),
    ]


def test_a_long_gap_splits_its_energy_evenly_as_an_estimate_but_its_total_is_measured():
    readings = [reading("00:00", "0.000"), reading("03:00", "0.600")]

    split = derive_interval_energy(readings, half_hours("00:00", 6))
    whole = derive_interval_energy(readings, [(at("00:00"), at("03:00"))])
    trusted = derive_interval_energy(readings, half_hours("00:00", 6), max_gap=timedelta(hours=3))

    assert [(interval.import_wh, interval.estimated) for interval in split] == [(100, True)] * 6
    assert whole == [energy("00:00", "03:00", 600)]
    assert [(interval.import_wh, interval.estimated) for interval in trusted] == [(100, False)] * 6


def test_no_readings_give_zero_estimates():
    result = derive_interval_energy([], half_hours("00:00", 2))

    assert result == [
        energy("00:00", "00:30", 0, estimated=True),
        energy("00:30", "01:00", 0, estimated=True),
    ]


def test_of_duplicate_readings_the_largest_is_kept_whatever_the_order():
    readings = [
        reading("00:00", "1.000", "0.100"),
        reading("00:30", "1.200", "0.500"),
        reading("00:30", "1.300", "0.100"),
        reading("01:00", "1.600", "0.200"),
    ]

    results = [
        derive_interval_energy(order, half_hours("00:00", 2)) for order in itertools.permutations(readings)
    ]

    # 00:30 keeps (1.300, 0.100): the larger import.
    assert results[0] == [energy("00:00", "00:30", 300, 0), energy("00:30", "01:00", 300, 100)]
    assert all(result == results[0] for result in results)


def test_readings_in_another_zone_are_compared_as_instants_across_the_clock_change():
    london = ZoneInfo("Europe/London")
    # 01:30 happens twice in London on 2026-10-25: first in BST (00:30Z), then in GMT (01:30Z). The two
    # London datetimes compare equal as wall-clock times; as instants they are an hour apart.
    first = CounterReading(datetime(2026, 10, 25, 1, 30, fold=0, tzinfo=london), 1000, 0)
    second = CounterReading(datetime(2026, 10, 25, 1, 30, fold=1, tzinfo=london), 1600, 0)

    result = derive_interval_energy(
        [first, second],
        [
            (utc("2026-10-25T00:30"), utc("2026-10-25T01:00")),
            (utc("2026-10-25T00:30"), utc("2026-10-25T01:30")),
        ],
    )

    assert first.at_utc == utc("2026-10-25T00:30")
    assert first.at_utc.tzinfo is UTC
    assert [(interval.import_wh, interval.estimated) for interval in result] == [(300, False), (600, False)]


def test_the_autumn_clock_change_day_has_fifty_measured_half_hours():
    # Settlement date 2026-10-25 runs from local midnight (2026-10-24T23:00Z, BST) to the next local
    # midnight (2026-10-26T00:00Z, GMT): 25 hours, 50 half-hours, built here by stepping in UTC.
    start_utc = utc("2026-10-24T23:00")
    intervals = [(start_utc + k * HALF_HOUR, start_utc + (k + 1) * HALF_HOUR) for k in range(50)]
    # A reading every 10 minutes, 5 minutes off the boundaries so every boundary is interpolated:
    # 1.2 kW import (200 Wh per 10 minutes) and 0.3 kW export (50 Wh per 10 minutes).
    first_reading_utc = start_utc - timedelta(minutes=5)
    readings = [
        CounterReading(
            first_reading_utc + k * timedelta(minutes=10),
            1_000_000 + k * 200,
            20_000 + k * 50,
        )
        for k in range(25 * 6 + 2)  # 22:55Z to 00:05Z the next day
    ]

    result = derive_interval_energy(readings, intervals)

    assert len(result) == 50
    assert result[-1].end_utc == utc("2026-10-26T00:00")
    assert all((i.import_wh, i.export_wh, i.estimated) == (600, 150, False) for i in result)
    assert sum(interval.import_wh for interval in result) == 30_000  # 25 h at 1.2 kW


# --- bad inputs ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("at_utc", "import_wh", "export_wh", "field"),
    [
        (datetime(2026, 11, 21), 1, 0, "at_utc"),  # naive
        ("2026-11-21T00:00Z", 1, 0, "at_utc"),
        (BASE_UTC, Decimal("NaN"), 0, "import_wh"),
        (BASE_UTC, Decimal(1), 0, "import_wh"),  # kWh as a Decimal, not Wh
        (BASE_UTC, 1.5, 0, "import_wh"),
        (BASE_UTC, True, 0, "import_wh"),
        (BASE_UTC, 1, -1, "export_wh"),
    ],
)
def test_a_bad_reading_is_rejected_naming_the_field(at_utc, import_wh, export_wh, field):
    with pytest.raises(ValueError, match=f"^{field}: "):
        CounterReading(at_utc, import_wh, export_wh)


@pytest.mark.parametrize(
    ("intervals", "message"),
    [
        ([(at("00:30"), at("00:30"))], r"^intervals\[0\]: end_utc .* is not after start_utc"),
        ([(at("00:00"), at("00:30")), (at("01:00"), at("00:30"))], r"^intervals\[1\]: end_utc"),
        ([(datetime(2026, 11, 21), at("00:30"))], r"^intervals\[0\]\.start_utc: .* is naive"),
        ([(at("00:00"), datetime(2026, 11, 21, 1))], r"^intervals\[0\]\.end_utc: .* is naive"),
        ([(at("00:00"),)], r"^intervals\[0\]: .* is not a \(start_utc, end_utc\) pair"),
    ],
)
def test_a_bad_interval_is_rejected_naming_it(intervals, message):
    with pytest.raises(ValueError, match=message):
        derive_interval_energy([reading("00:00", "1.000")], intervals)


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"max_gap": timedelta(0)}, "max_gap"),
        ({"rate_window": timedelta(minutes=-1)}, "rate_window"),
        ({"reset_policy": "sideways"}, "reset_policy"),
    ],
)
def test_a_bad_option_is_rejected_naming_it(options, field):
    with pytest.raises(ValueError, match=f"^{field}: "):
        derive_interval_energy([reading("00:00", "1.000")], half_hours("00:00", 1), **options)


def test_other_bad_arguments_are_rejected_naming_them():
    with pytest.raises(ValueError, match=r"^readings\[1\]: "):
        derive_interval_energy([reading("00:00", "1.000"), (at("00:30"), 1, 0)], half_hours("00:00", 1))
    with pytest.raises(ValueError, match=r"^instants\[0\]: .* is naive"):
        derive_boundary_counters([reading("00:00", "1.000")], [datetime(2026, 11, 21)])


# --- invariants ------------------------------------------------------------------------------

policies = st.sampled_from(list(ResetPolicy))


@st.composite
def reading_lists(
    draw: st.DrawFn,
    *,
    monotone: bool,
    first_second: int = 0,
    last_second: int = 8 * 3600,
    max_size: int = 25,
    distinct_times: bool = False,
) -> list[CounterReading]:
    """Readings at whole seconds after BASE_UTC, often on quarter-hours, counters in whole Wh.

    Monotone lists rise by random steps (often zero); others take any values, so they reset often.
    """
    seconds = sorted(
        draw(
            st.lists(
                # Whole quarter-hours half the time, so readings often fall on half-hour boundaries.
                st.integers(first_second, last_second)
                | st.integers(-(-first_second // 900), last_second // 900).map(lambda quarter: quarter * 900),
                min_size=1,
                max_size=max_size,
                unique=distinct_times,
            )
        )
    )
    units = st.integers(0, 3_000) if monotone else st.integers(0, 200_000)
    import_units = draw(st.lists(units, min_size=len(seconds), max_size=len(seconds)))
    export_units = draw(st.lists(units, min_size=len(seconds), max_size=len(seconds)))
    if monotone:
        import_units = list(itertools.accumulate(import_units))
        export_units = list(itertools.accumulate(export_units))
    return [
        CounterReading(
            BASE_UTC + timedelta(seconds=second),
            import_unit,
            export_unit,
        )
        for second, import_unit, export_unit in zip(seconds, import_units, export_units)
    ]


@st.composite
def consecutive_half_hours(draw: st.DrawFn) -> list[tuple[datetime, datetime]]:
    """Up to 24 consecutive half-hours starting anywhere from 2 hours before BASE_UTC to 10 after."""
    first = BASE_UTC + draw(st.integers(-4, 20)) * HALF_HOUR
    return [(first + k * HALF_HOUR, first + (k + 1) * HALF_HOUR) for k in range(draw(st.integers(1, 24)))]


any_intervals = st.lists(
    st.tuples(st.integers(-7200, 36_000), st.integers(1, 4 * 3600)).map(
        lambda pair: (
            BASE_UTC + timedelta(seconds=pair[0]),
            BASE_UTC + timedelta(seconds=pair[0] + pair[1]),
        )
    ),
    min_size=1,
    max_size=10,
)


@SETTINGS
@given(st.data(), st.integers(1, 16))
def test_energies_over_covered_consecutive_intervals_add_up_to_the_counter_difference(data, count):
    span_seconds = count * 1800
    start_wh = data.draw(st.integers(0, 10**9))
    # Readings exactly on the first and last boundaries, in whole Wh, others anywhere in between or
    # outside; strictly rising times so the two end readings are the ones kept.
    inner_seconds = data.draw(st.lists(st.integers(-3600, span_seconds + 3600), unique=True, max_size=20))
    seconds = sorted({0, span_seconds, *inner_seconds})
    steps_wh = data.draw(st.lists(st.integers(0, 3_000), min_size=len(seconds), max_size=len(seconds)))
    readings = [
        CounterReading(
            BASE_UTC + timedelta(seconds=second),
            start_wh + total_wh,
            total_wh // 2,
        )
        for second, total_wh in zip(seconds, itertools.accumulate(steps_wh))
    ]
    intervals = [(BASE_UTC + k * HALF_HOUR, BASE_UTC + (k + 1) * HALF_HOUR) for k in range(count)]
    first = next(r for r in readings if r.at_utc == BASE_UTC)
    last = next(r for r in readings if r.at_utc == intervals[-1][1])

    result = derive_interval_energy(readings, intervals, max_gap=timedelta(days=1))

    expected_import_wh = last.import_wh - first.import_wh
    expected_export_wh = last.export_wh - first.export_wh
    assert sum(interval.import_wh for interval in result) == expected_import_wh
    assert sum(interval.export_wh for interval in result) == expected_export_wh
    assert not any(interval.estimated or interval.events for interval in result)


@SETTINGS
@given(
    reading_lists(monotone=False),
    st.lists(st.integers(-7200, 36_000), min_size=1, max_size=30),
    any_intervals,
    policies,
)
def test_boundary_values_never_go_down_and_energy_is_never_negative(
    readings, instant_seconds, intervals, policy
):
    instants = sorted(BASE_UTC + timedelta(seconds=second) for second in instant_seconds)

    boundaries = derive_boundary_counters(readings, instants, reset_policy=policy)
    result = derive_interval_energy(readings, intervals, reset_policy=policy)

    for earlier, later in itertools.pairwise(boundaries):
        assert earlier.import_wh <= later.import_wh
        assert earlier.export_wh <= later.export_wh
    for interval in result:
        assert interval.import_wh >= 0
        assert interval.export_wh >= 0
        start, end = derive_boundary_counters(
            readings, [interval.start_utc, interval.end_utc], reset_policy=policy
        )
        assert (interval.import_wh, interval.export_wh) == (
            end.import_wh - start.import_wh,
            end.export_wh - start.export_wh,
        )


@SETTINGS
@given(reading_lists(monotone=True, distinct_times=True))
def test_monotone_counters_give_monotone_boundary_values_that_reproduce_readings(readings):
    instants = sorted(
        {r.at_utc for r in readings} | {r.at_utc + timedelta(seconds=s) for r in readings for s in (-90, 450)}
    )

    boundaries = derive_boundary_counters(readings, instants)

    values = {b.at_utc: b for b in boundaries}
    for earlier, later in itertools.pairwise(boundaries):
        assert earlier.import_wh <= later.import_wh
        assert earlier.export_wh <= later.export_wh
    for r in readings:
        # A reading on a boundary is the boundary's value.
        assert values[r.at_utc].import_wh == r.import_wh
        assert values[r.at_utc].export_wh == r.export_wh
        assert not values[r.at_utc].estimated


def expected_flags_and_events(
    readings: list[CounterReading], start: datetime, end: datetime, max_gap: timedelta
) -> tuple[bool, tuple[CounterEvent, ...]]:
    """The estimate flag and events of one interval, straight from the module docstring's rules.

    For readings at distinct instants, so no duplicate needs dropping.
    """
    ordered = sorted(readings, key=lambda r: r.at_utc)
    events = []
    reset_pairs = []
    for before, after in itertools.pairwise(ordered):
        for register, field in ((Register.IMPORT, "import_wh"), (Register.EXPORT, "export_wh")):
            if getattr(after, field) < getattr(before, field):
                events.append(
                    CounterEvent(
                        before.at_utc, after.at_utc, register, getattr(before, field), getattr(after, field)
                    )
                )
                reset_pairs.append((before.at_utc, after.at_utc))

    def boundary_estimated(moment: datetime) -> bool:
        if any(r.at_utc == moment for r in ordered):
            return False
        before = [r.at_utc for r in ordered if r.at_utc < moment]
        after = [r.at_utc for r in ordered if r.at_utc > moment]
        if not before or not after:
            return True
        return after[0] - before[-1] > max_gap or (before[-1], after[0]) in reset_pairs

    overlapping = tuple(event for event in events if event.previous_at_utc < end and start < event.at_utc)
    return boundary_estimated(start) or boundary_estimated(end) or bool(overlapping), overlapping


@SETTINGS
@given(
    reading_lists(monotone=False, distinct_times=True, max_size=12)
    | reading_lists(monotone=True, distinct_times=True),
    consecutive_half_hours(),
    st.integers(5, 180).map(lambda minutes: timedelta(minutes=minutes)),
    policies,
)
def test_estimated_exactly_when_a_boundary_lacks_close_readings_either_side_or_a_reset_is_involved(
    readings, intervals, max_gap, policy
):
    result = derive_interval_energy(readings, intervals, max_gap=max_gap, reset_policy=policy)

    for interval in result:
        estimated, events = expected_flags_and_events(readings, interval.start_utc, interval.end_utc, max_gap)
        assert (interval.estimated, interval.events) == (estimated, events)


@SETTINGS
@given(
    reading_lists(monotone=False),
    reading_lists(monotone=False, first_second=1, last_second=4 * 3600),
    consecutive_half_hours(),
    policies,
)
def test_later_readings_never_change_intervals_that_end_by_the_last_reading(
    readings, later_readings, intervals, policy
):
    last_utc = max(r.at_utc for r in readings)
    shifted = [
        CounterReading(last_utc + (r.at_utc - BASE_UTC), r.import_wh, r.export_wh) for r in later_readings
    ]

    before = derive_interval_energy(readings, intervals, reset_policy=policy)
    after = derive_interval_energy([*readings, *shifted], intervals, reset_policy=policy)

    for old, new in zip(before, after):
        if old.end_utc <= last_utc:
            assert new == old


@SETTINGS
@given(
    st.one_of(
        reading_lists(monotone=False, max_size=15),
        # Few distinct instants, so duplicates are common.
        reading_lists(monotone=False, last_second=4 * 900, max_size=15).map(
            lambda rs: [
                CounterReading(
                    BASE_UTC + (r.at_utc - BASE_UTC) // QUARTER_HOUR * QUARTER_HOUR,
                    r.import_wh,
                    r.export_wh,
                )
                for r in rs
            ]
        ),
    ).flatmap(lambda rs: st.tuples(st.just(rs), st.permutations(rs))),
    consecutive_half_hours(),
    policies,
)
def test_the_order_of_the_readings_does_not_matter(reading_orders, intervals, policy):
    readings, shuffled = reading_orders

    assert derive_interval_energy(shuffled, intervals, reset_policy=policy) == derive_interval_energy(
        readings, intervals, reset_policy=policy
    )
    assert detect_counter_resets(shuffled) == detect_counter_resets(readings)
