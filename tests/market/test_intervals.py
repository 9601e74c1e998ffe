"""Settlement periods: counts and exact UTC times on ordinary and clock-change days, invariants, errors.

The expected UTC times are worked out by hand from the UK rule (clocks go forward at 01:00 UTC on the
last Sunday in March and back at 01:00 UTC on the last Sunday in October), not from the code under test.
"""

from __future__ import annotations

import dataclasses
import itertools
import pickle
from datetime import UTC, date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from market.intervals import (
    LONDON,
    InvalidPeriodError,
    SettlementPeriod,
    parse_period_key,
    period_at,
    periods_between,
    periods_in_day,
    periods_of_day,
    settlement_period,
)

SPRING_2026 = date(2026, 3, 29)
AUTUMN_2026 = date(2026, 10, 25)
LENGTHS_MINUTES = (15, 30, 60)
SETTINGS = settings(max_examples=200, deadline=None)


def utc(text: str) -> datetime:
    """An aware UTC datetime from ``"YYYY-MM-DDTHH:MM"``."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


AUTUMN_START_UTC = utc("2026-10-24T23:00")
AUTUMN_END_UTC = utc("2026-10-26T00:00")


def last_sunday(year: int, month: int) -> date:
    """The last Sunday of March or October: the UK's clock-change days."""
    last_day = date(year, month, 31)
    return last_day - timedelta(days=(last_day.weekday() - 6) % 7)


def local_day_length(settlement_date: date) -> timedelta:
    """Midnight to midnight in London, measured between UTC instants.

    Subtracting the two London-aware midnights directly would give 24 hours every day: Python subtracts
    datetimes that share a tzinfo by wall clock.
    """
    start = datetime.combine(settlement_date, time(0), tzinfo=LONDON).astimezone(UTC)
    end = datetime.combine(settlement_date + timedelta(days=1), time(0), tzinfo=LONDON).astimezone(UTC)
    return end - start


# ---------------------------------------------------------------------------------------------------------
# Hand-worked examples


@pytest.mark.parametrize(
    ("settlement_date", "length_minutes", "count"),
    [
        (date(2026, 1, 15), 30, 48),
        (date(2026, 7, 1), 30, 48),
        (date(2026, 3, 28), 30, 48),
        (SPRING_2026, 30, 46),
        (date(2026, 3, 30), 30, 48),
        (date(2026, 10, 24), 30, 48),
        (AUTUMN_2026, 30, 50),
        (date(2026, 10, 26), 30, 48),
        (date(2025, 3, 30), 30, 46),
        (date(2025, 10, 26), 30, 50),
        (date(2024, 2, 29), 30, 48),
        (date(2026, 1, 15), 15, 96),
        (SPRING_2026, 15, 92),
        (AUTUMN_2026, 15, 100),
        (date(2026, 7, 1), 60, 24),
        (SPRING_2026, 60, 23),
        (AUTUMN_2026, 60, 25),
    ],
)
def test_periods_in_day(settlement_date, length_minutes, count):
    assert periods_in_day(settlement_date, length_minutes=length_minutes) == count
    periods = periods_of_day(settlement_date, length_minutes=length_minutes)
    assert [p.period for p in periods] == list(range(1, count + 1))


def test_default_length_is_thirty_minutes():
    assert periods_in_day(AUTUMN_2026) == 50
    assert settlement_period(AUTUMN_2026, 1).length_minutes == 30


@pytest.mark.parametrize(
    ("settlement_date", "period", "length_minutes", "start", "end"),
    [
        # Spring 2026: 00:00 GMT is 00:00Z; at 01:00Z local jumps from 01:00 GMT to 02:00 BST.
        (SPRING_2026, 1, 30, "2026-03-29T00:00", "2026-03-29T00:30"),
        (SPRING_2026, 2, 30, "2026-03-29T00:30", "2026-03-29T01:00"),
        (SPRING_2026, 3, 30, "2026-03-29T01:00", "2026-03-29T01:30"),
        (SPRING_2026, 46, 30, "2026-03-29T22:30", "2026-03-29T23:00"),
        (SPRING_2026, 2, 60, "2026-03-29T01:00", "2026-03-29T02:00"),
        (SPRING_2026, 23, 60, "2026-03-29T22:00", "2026-03-29T23:00"),
        (SPRING_2026, 5, 15, "2026-03-29T01:00", "2026-03-29T01:15"),
        (SPRING_2026, 92, 15, "2026-03-29T22:45", "2026-03-29T23:00"),
        # Autumn 2026: 00:00 BST is 23:00Z the day before; local 01:00-02:00 happens twice.
        (AUTUMN_2026, 1, 30, "2026-10-24T23:00", "2026-10-24T23:30"),
        (AUTUMN_2026, 3, 30, "2026-10-25T00:00", "2026-10-25T00:30"),
        (AUTUMN_2026, 4, 30, "2026-10-25T00:30", "2026-10-25T01:00"),
        (AUTUMN_2026, 5, 30, "2026-10-25T01:00", "2026-10-25T01:30"),
        (AUTUMN_2026, 7, 30, "2026-10-25T02:00", "2026-10-25T02:30"),
        (AUTUMN_2026, 50, 30, "2026-10-25T23:30", "2026-10-26T00:00"),
        (AUTUMN_2026, 2, 60, "2026-10-25T00:00", "2026-10-25T01:00"),
        (AUTUMN_2026, 3, 60, "2026-10-25T01:00", "2026-10-25T02:00"),
        (AUTUMN_2026, 25, 60, "2026-10-25T23:00", "2026-10-26T00:00"),
        (AUTUMN_2026, 100, 15, "2026-10-25T23:45", "2026-10-26T00:00"),
        # A summer day (BST: starts 23:00Z the day before) and a winter day (GMT: local is UTC).
        (date(2026, 7, 1), 1, 30, "2026-06-30T23:00", "2026-06-30T23:30"),
        (date(2026, 7, 1), 48, 30, "2026-07-01T22:30", "2026-07-01T23:00"),
        (date(2026, 7, 1), 24, 60, "2026-07-01T22:00", "2026-07-01T23:00"),
        (date(2026, 1, 15), 1, 30, "2026-01-15T00:00", "2026-01-15T00:30"),
        (date(2026, 1, 15), 37, 30, "2026-01-15T18:00", "2026-01-15T18:30"),
        (date(2026, 1, 15), 96, 15, "2026-01-15T23:45", "2026-01-16T00:00"),
    ],
)
def test_exact_utc_times(settlement_date, period, length_minutes, start, end):
    p = settlement_period(settlement_date, period, length_minutes=length_minutes)
    assert (p.start_utc, p.end_utc) == (utc(start), utc(end))
    assert p.start_utc.tzinfo is UTC
    assert p.end_utc.tzinfo is UTC


@pytest.mark.parametrize(
    ("settlement_date", "period", "local_start", "offset_hours", "fold"),
    [
        (SPRING_2026, 2, "2026-03-29T00:30", 0, 0),
        (SPRING_2026, 3, "2026-03-29T02:00", 1, 0),  # 01:00-02:00 local never happens
        (AUTUMN_2026, 1, "2026-10-25T00:00", 1, 0),
        (AUTUMN_2026, 3, "2026-10-25T01:00", 1, 0),  # first 01:00, BST
        (AUTUMN_2026, 5, "2026-10-25T01:00", 0, 1),  # second 01:00, GMT
        (AUTUMN_2026, 7, "2026-10-25T02:00", 0, 0),
    ],
)
def test_local_presentation_on_clock_change_days(settlement_date, period, local_start, offset_hours, fold):
    start_local = settlement_period(settlement_date, period).start_local
    assert start_local.tzinfo is LONDON
    assert start_local.replace(tzinfo=None) == datetime.fromisoformat(local_start)
    assert start_local.utcoffset() == timedelta(hours=offset_hours)
    assert start_local.fold == fold


def test_the_repeated_local_hour_is_told_apart_in_utc():
    """Periods 3 and 5 share a local wall clock; only UTC (or the offset) distinguishes them."""
    third, fifth = settlement_period(AUTUMN_2026, 3), settlement_period(AUTUMN_2026, 5)
    assert fifth.start_utc - third.start_utc == timedelta(hours=1)
    assert third != fifth
    assert third < fifth
    assert third.end_local.replace(tzinfo=None) == datetime(2026, 10, 25, 1, 30)
    assert fifth.end_local.replace(tzinfo=None) == datetime(2026, 10, 25, 1, 30)


@pytest.mark.parametrize(
    ("settlement_date", "period", "key"),
    [
        (AUTUMN_2026, 50, "2026-10-25/50"),
        (AUTUMN_2026, 5, "2026-10-25/5"),
        (SPRING_2026, 1, "2026-03-29/1"),
    ],
)
def test_key(settlement_date, period, key):
    assert settlement_period(settlement_date, period).key == key
    assert parse_period_key(key) == settlement_period(settlement_date, period)


@pytest.mark.parametrize(
    ("key", "length_minutes", "following_key", "boundary"),
    [
        ("2026-10-25/50", 30, "2026-10-26/1", "2026-10-26T00:00"),
        ("2026-03-28/48", 30, "2026-03-29/1", "2026-03-29T00:00"),
        ("2026-03-29/2", 30, "2026-03-29/3", "2026-03-29T01:00"),
        ("2026-10-25/4", 30, "2026-10-25/5", "2026-10-25T01:00"),
        ("2026-03-29/46", 30, "2026-03-30/1", "2026-03-29T23:00"),
        ("2026-12-31/48", 30, "2027-01-01/1", "2027-01-01T00:00"),
        ("2026-10-24/24", 60, "2026-10-25/1", "2026-10-24T23:00"),
        ("2026-03-29/92", 15, "2026-03-30/1", "2026-03-29T23:00"),
    ],
)
def test_next_and_previous_across_midnight_and_clock_changes(key, length_minutes, following_key, boundary):
    p = parse_period_key(key, length_minutes=length_minutes)
    following = p.next()
    assert following.key == following_key
    assert following.length_minutes == length_minutes
    assert p.end_utc == following.start_utc == utc(boundary)
    assert following.previous() == p


@pytest.mark.parametrize(
    ("moment", "key"),
    [
        (utc("2026-10-24T23:00"), "2026-10-25/1"),
        (utc("2026-10-24T22:59:59.999999"), "2026-10-24/48"),
        (utc("2026-10-25T00:45"), "2026-10-25/4"),
        (utc("2026-10-25T01:45"), "2026-10-25/6"),
        (datetime(2026, 10, 25, 1, 15, tzinfo=LONDON), "2026-10-25/3"),  # first 01:15, BST
        (datetime(2026, 10, 25, 1, 15, fold=1, tzinfo=LONDON), "2026-10-25/5"),  # second 01:15, GMT
        (utc("2026-03-29T00:59:59"), "2026-03-29/2"),
        (utc("2026-03-29T01:00"), "2026-03-29/3"),
        (datetime(2026, 3, 29, 3, 0, tzinfo=LONDON), "2026-03-29/5"),
        (datetime(2026, 7, 1, 19, 0, tzinfo=ZoneInfo("America/New_York")), "2026-07-02/1"),  # 23:00Z
        (datetime(2026, 1, 15, 5, 30, tzinfo=timezone(timedelta(hours=5, minutes=30))), "2026-01-15/1"),
    ],
)
def test_period_at(moment, key):
    assert period_at(moment).key == key


def test_period_at_other_lengths():
    moment = utc("2026-10-25T01:20")
    assert period_at(moment, length_minutes=15).key == "2026-10-25/10"
    assert period_at(moment, length_minutes=60).key == "2026-10-25/3"


def test_periods_between_covers_the_autumn_day():
    periods = list(periods_between(AUTUMN_START_UTC, AUTUMN_END_UTC))
    assert periods == periods_of_day(AUTUMN_2026)


def test_periods_between_takes_periods_starting_in_the_half_open_range():
    keys = [p.key for p in periods_between(utc("2026-03-29T00:10"), utc("2026-03-29T01:30"))]
    assert keys == ["2026-03-29/2", "2026-03-29/3"]  # /1 is already under way; /4 starts at the end
    keys = [p.key for p in periods_between(utc("2026-03-29T00:10"), utc("2026-03-29T01:31"))]
    assert keys == ["2026-03-29/2", "2026-03-29/3", "2026-03-29/4"]


def test_periods_between_is_empty_for_an_empty_or_backwards_range():
    assert list(periods_between(utc("2026-10-25T01:00"), utc("2026-10-25T01:00"))) == []
    assert list(periods_between(utc("2026-10-25T02:00"), utc("2026-10-25T01:00"))) == []


def test_integer_like_period_numbers_become_plain_ints():
    p = settlement_period(AUTUMN_2026, np.int64(5))  # type: ignore[arg-type]  # as read from an array
    assert p == settlement_period(AUTUMN_2026, 5)
    assert type(p.period) is int


def test_periods_are_immutable_hashable_and_picklable():
    p = settlement_period(AUTUMN_2026, 5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.period = 6  # type: ignore[misc]
    assert {p, settlement_period(AUTUMN_2026, 5)} == {p}
    assert pickle.loads(pickle.dumps(p)) == p
    # Same date and number, different length: a different period.
    assert settlement_period(AUTUMN_2026, 5, length_minutes=15) != p


# ---------------------------------------------------------------------------------------------------------
# Invariants

lengths = st.sampled_from(LENGTHS_MINUTES)
settlement_dates = st.dates(min_value=date(2020, 1, 1), max_value=date(2035, 12, 31))
clock_change_dates = st.builds(
    last_sunday, st.integers(min_value=2020, max_value=2035), st.sampled_from([3, 10])
)
zones = st.sampled_from(
    [
        UTC,
        LONDON,
        ZoneInfo("America/New_York"),
        ZoneInfo("Asia/Kathmandu"),  # +05:45
        ZoneInfo("Australia/Lord_Howe"),  # half-hour daylight saving
        timezone(timedelta(hours=-3, minutes=-17)),
    ]
)
# Most random instants fall on ordinary days, so also aim at the hours around each clock change.
near_clock_changes = st.builds(
    lambda change_date, offset_us, zone: (
        datetime.combine(change_date, time(1), tzinfo=UTC) + timedelta(microseconds=offset_us)
    ).astimezone(zone),
    clock_change_dates,
    st.integers(min_value=-2 * 86_400 * 10**6, max_value=2 * 86_400 * 10**6),
    zones,
)
moments = st.one_of(
    st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2035, 12, 31, 23, 59), timezones=zones),
    near_clock_changes,
)
periods = st.builds(lambda moment, length: period_at(moment, length_minutes=length), moments, lengths)


@SETTINGS
@given(moments, lengths)
def test_period_at_contains_the_moment(moment, length_minutes):
    p = period_at(moment, length_minutes=length_minutes)
    assert p.start_utc <= moment < p.end_utc
    assert p.end_utc - p.start_utc == timedelta(minutes=length_minutes)
    assert p.length_minutes == length_minutes
    assert p.settlement_date == moment.astimezone(LONDON).date()


@SETTINGS
@given(periods)
def test_every_way_of_naming_a_period_gives_it_back(p):
    assert period_at(p.start_utc, length_minutes=p.length_minutes) == p
    assert period_at(p.end_utc - timedelta(microseconds=1), length_minutes=p.length_minutes) == p
    assert settlement_period(p.settlement_date, p.period, length_minutes=p.length_minutes) == p
    assert parse_period_key(p.key, length_minutes=p.length_minutes) == p
    assert parse_period_key(p.key, length_minutes=p.length_minutes).key == p.key


@SETTINGS
@given(periods)
def test_consecutive_periods_tile_time(p):
    following, preceding = p.next(), p.previous()
    assert following.start_utc == p.end_utc
    assert preceding.end_utc == p.start_utc
    assert following.previous() == p
    assert preceding.next() == p
    assert preceding < p < following


@SETTINGS
@given(periods)
def test_local_start_is_on_the_settlement_date_and_a_whole_period(p):
    start_local = p.start_local
    assert start_local.date() == p.settlement_date
    assert (start_local.hour * 60 + start_local.minute) % p.length_minutes == 0
    assert (start_local.second, start_local.microsecond) == (0, 0)
    assert p.end_local.astimezone(UTC) == p.end_utc


@SETTINGS
@given(st.one_of(settlement_dates, clock_change_dates), lengths)
def test_a_day_is_tiled_from_local_midnight_to_local_midnight(settlement_date, length_minutes):
    day = periods_of_day(settlement_date, length_minutes=length_minutes)
    midnight_utc = datetime.combine(settlement_date, time(0), tzinfo=LONDON).astimezone(UTC)
    assert day[0].start_utc == midnight_utc
    assert day[-1].end_utc == midnight_utc + local_day_length(settlement_date)
    assert sum((p.end_utc - p.start_utc for p in day), timedelta()) == local_day_length(settlement_date)
    assert all(earlier.end_utc == later.start_utc for earlier, later in itertools.pairwise(day))
    assert day[0].previous().settlement_date == settlement_date - timedelta(days=1)
    assert day[-1].next().key == f"{settlement_date + timedelta(days=1)}/1"


@SETTINGS
@given(st.one_of(settlement_dates, clock_change_dates), lengths)
def test_counts_follow_the_uk_clock_change_rule(settlement_date, length_minutes):
    hours = {
        last_sunday(settlement_date.year, 3): 23,
        last_sunday(settlement_date.year, 10): 25,
    }.get(settlement_date, 24)
    assert periods_in_day(settlement_date, length_minutes=length_minutes) == hours * 60 // length_minutes


@SETTINGS
@given(periods, periods)
def test_ordering_is_chronological_within_one_length(p, q):
    q = period_at(q.start_utc, length_minutes=p.length_minutes)
    assert (p < q) == (p.start_utc < q.start_utc)
    assert (p == q) == (p.start_utc == q.start_utc)


@SETTINGS
@given(moments, st.integers(min_value=0, max_value=3 * 86_400 * 10**6), lengths)
def test_periods_between_yields_exactly_the_periods_starting_in_range(start, span_us, length_minutes):
    end = start + timedelta(microseconds=span_us)
    found = list(periods_between(start, end, length_minutes=length_minutes))
    before = period_at(start, length_minutes=length_minutes)
    first = before if before.start_utc >= start else before.next()
    if not found:
        assert first.start_utc >= end
        return
    assert found[0] == first
    assert all(start <= p.start_utc < end for p in found)
    assert all(earlier.next() == later for earlier, later in itertools.pairwise(found))
    assert found[-1].next().start_utc >= end


# ---------------------------------------------------------------------------------------------------------
# Errors


def test_error_message_names_field_and_reason():
    with pytest.raises(InvalidPeriodError, match=r"^period: 51 is beyond 50 periods on 2026-10-25$"):
        settlement_period(AUTUMN_2026, 51)


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda: settlement_period(AUTUMN_2026, 0), "period"),
        (lambda: settlement_period(AUTUMN_2026, -1), "period"),
        (lambda: settlement_period(AUTUMN_2026, 51), "period"),
        (lambda: settlement_period(SPRING_2026, 47), "period"),
        (lambda: settlement_period(SPRING_2026, 24, length_minutes=60), "period"),
        (lambda: settlement_period(SPRING_2026, 93, length_minutes=15), "period"),
        (lambda: settlement_period(date(2026, 7, 1), 49), "period"),
        (lambda: settlement_period(AUTUMN_2026, True), "period"),
        (lambda: settlement_period(AUTUMN_2026, 2.0), "period"),  # type: ignore[arg-type]
        (lambda: settlement_period(datetime(2026, 10, 25), 1), "settlement_date"),
        (lambda: settlement_period("2026-10-25", 1), "settlement_date"),  # type: ignore[arg-type]
        (lambda: periods_in_day(date.max), "settlement_date"),
        (lambda: settlement_period(date(1999, 12, 31), 1), "settlement_date"),  # before the range
        (lambda: settlement_period(date(2101, 1, 1), 1), "settlement_date"),  # after it
        (lambda: parse_period_key("0001-01-01/1"), "settlement_date"),
        (lambda: period_at(datetime(2101, 1, 1, 0, 30, tzinfo=UTC)), "settlement_date"),
        (lambda: periods_in_day(date(1847, 12, 1)), "settlement_date"),  # London leaves local mean time
        (lambda: period_at(datetime(2026, 10, 25, 1, 0)), "moment"),
        (lambda: period_at(date(2026, 10, 25)), "moment"),  # type: ignore[arg-type]
        (lambda: periods_between(datetime(2026, 10, 25), utc("2026-10-26T00:00")), "start_utc"),
        (lambda: periods_between(utc("2026-10-25T00:00"), datetime(2026, 10, 26)), "end_utc"),
    ],
)
def test_invalid_periods_and_moments_are_refused(call, field):
    with pytest.raises(InvalidPeriodError, match=rf"^{field}: "):
        call()


@pytest.mark.parametrize(
    ("key", "field"),
    [
        ("2026-10-25", "key"),
        ("x/y", "key"),
        ("", "key"),
        ("2026-10-25/", "key"),
        ("/5", "key"),
        ("2026-10-25/-1", "key"),
        ("2026-10-25/+1", "key"),
        (" 2026-10-25/1", "key"),
        ("2026-10-25/1\n", "key"),
        ("2026-10-25/1/2", "key"),
        ("20261025/1", "key"),
        ("2026-W43-7/1", "key"),
        ("2026-10-25/\u0663", "key"),  # ARABIC-INDIC DIGIT THREE: int() would accept it
        ("2026-13-01/1", "settlement_date"),
        ("2026-02-29/1", "settlement_date"),
        ("2026-10-25/0", "period"),
        ("2026-10-25/05", "period"),
        ("2026-10-25/51", "period"),
        ("2026-03-29/47", "period"),
        ("2026-10-25/" + "9" * 5000, "period"),
    ],
)
def test_malformed_keys_are_refused(key, field):
    with pytest.raises(InvalidPeriodError, match=rf"^{field}: "):
        parse_period_key(key)


def test_key_length_matters():
    assert parse_period_key("2026-10-25/50").end_utc == utc("2026-10-26T00:00")
    with pytest.raises(InvalidPeriodError, match=r"^period: 50 is beyond 25 periods on 2026-10-25$"):
        parse_period_key("2026-10-25/50", length_minutes=60)


@pytest.mark.parametrize("length_minutes", [20, 0, -30, 45, 120, 30.0, True])
@pytest.mark.parametrize(
    "call",
    [
        lambda length: periods_in_day(AUTUMN_2026, length_minutes=length),
        lambda length: periods_of_day(AUTUMN_2026, length_minutes=length),
        lambda length: settlement_period(AUTUMN_2026, 1, length_minutes=length),
        lambda length: period_at(utc("2026-10-25T00:00"), length_minutes=length),
        lambda length: parse_period_key("2026-10-25/1", length_minutes=length),
        lambda length: periods_between(AUTUMN_START_UTC, AUTUMN_END_UTC, length_minutes=length),
    ],
)
def test_unsupported_lengths_are_refused(call, length_minutes):
    with pytest.raises(ValueError, match=r"^length_minutes: "):
        call(length_minutes)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"start_utc": utc("2026-10-25T00:30")}, "start_utc"),
        ({"end_utc": utc("2026-10-25T02:00")}, "end_utc"),
        ({"start_utc": datetime(2026, 10, 25, 1, 0, fold=1, tzinfo=LONDON)}, "start_utc"),  # same instant
        ({"start_utc": datetime(2026, 10, 25, 1, 0)}, "start_utc"),
        ({"period": 4}, "start_utc"),
        ({"period": 51}, "period"),
        ({"length_minutes": 20}, "length_minutes"),
    ],
)
def test_inconsistent_construction_is_refused(changes, field):
    p = settlement_period(AUTUMN_2026, 5)
    with pytest.raises(ValueError, match=rf"^{field}: "):
        dataclasses.replace(p, **changes)


def test_direct_construction_of_a_consistent_period_is_allowed():
    p = SettlementPeriod(
        settlement_date=AUTUMN_2026,
        period=5,
        start_utc=utc("2026-10-25T01:00"),
        end_utc=utc("2026-10-25T01:30"),
        length_minutes=30,
    )
    assert p == settlement_period(AUTUMN_2026, 5)
