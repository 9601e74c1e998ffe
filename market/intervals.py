"""Settlement periods: the half-hours (or quarter-hours, or hours) the market trades and settles in.

A settlement date is a Europe/London local calendar date, as on Elexon's settlement day. Its periods run
back to back from local midnight to the next local midnight, each ``length_minutes`` long, numbered from 1.
A 30-minute day therefore has 48 periods, 46 on the spring clock change and 50 on the autumn one.

Every instant this module stores or returns is an aware UTC :class:`~datetime.datetime`; local time
is only for naming a period (its settlement date and number) and for showing it to people. Period
boundaries are found by stepping in UTC from the UTC instant of local midnight, never by arithmetic on
wall-clock times, which would be wrong across a clock change (and Python's same-zone datetime
subtraction silently ignores the offset change).

May import the standard library only; nothing from the project or from third parties.

Glossary
--------
settlement date
    The Europe/London local calendar date a period belongs to.
settlement period
    One ``length_minutes`` slice of a settlement date, numbered from 1 at local midnight.
period key
    The text ``"<settlement date>/<period>"``, e.g. ``"2026-10-25/50"``: the period's name in storage,
    logs and URLs. It does not record the period length, so it is unique only within one length.
"""

from __future__ import annotations

import functools
import operator
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

__all__ = [
    "ALLOWED_LENGTHS_MINUTES",
    "FIRST_SETTLEMENT_DATE",
    "LAST_SETTLEMENT_DATE",
    "LONDON",
    "InvalidPeriodError",
    "SettlementPeriod",
    "parse_period_key",
    "period_at",
    "periods_between",
    "periods_in_day",
    "periods_of_day",
    "settlement_period",
]

LONDON = ZoneInfo("Europe/London")
ALLOWED_LENGTHS_MINUTES = (15, 30, 60)
#: The settlement dates the platform holds, everywhere (orders, clearing, settlement, the API, the
#: command line): wide enough for any real market, narrow enough that every date's gate closure
#: and local times exist and a stored date is never a surprise (year 1, say).
FIRST_SETTLEMENT_DATE = date(2000, 1, 1)
LAST_SETTLEMENT_DATE = date(2100, 12, 31)

# Strict: ASCII digits only, exactly the shape ``SettlementPeriod.key`` writes.
_KEY_PATTERN = re.compile(r"(?P<date>[0-9]{4}-[0-9]{2}-[0-9]{2})/(?P<period>[0-9]+)", re.ASCII)
# No valid period number has more digits than this; longer text is rejected before ``int()`` sees it.
_MAX_PERIOD_DIGITS = 3


class InvalidPeriodError(ValueError):
    """A settlement date, period number, moment or key that names no settlement period.

    The message starts with the offending field's name, e.g.
    ``"period: 51 is beyond 50 periods on 2026-10-25"``.
    """


@dataclass(frozen=True, order=True)
class SettlementPeriod:
    """One settlement period: its name (date and number) and its exact UTC span.

    Build these with :func:`settlement_period`, :func:`period_at` or :func:`parse_period_key`; direct
    construction is checked, so an instance whose times disagree with its date and number cannot exist.

    Ordering compares ``(settlement_date, period, ...)``, which is chronological for periods of one
    length; mixing lengths in one sort is not meaningful.

    Parameters
    ----------
    settlement_date : date
        The Europe/London local date the period belongs to (a plain ``date``, not a ``datetime``).
    period : int
        The period's number on that date, from 1 at local midnight.
    start_utc : datetime
        The period's first instant, with ``tzinfo=datetime.UTC``.
    end_utc : datetime
        The first instant after the period (exclusive), with ``tzinfo=datetime.UTC``.
    length_minutes : int
        The period length: 15, 30 or 60.

    Raises
    ------
    InvalidPeriodError
        If the fields do not describe a real period.
    ValueError
        If ``length_minutes`` is not an allowed length.
    """

    settlement_date: date
    period: int
    start_utc: datetime
    end_utc: datetime
    length_minutes: int

    def __post_init__(self) -> None:
        _check_length(self.length_minutes)
        _check_settlement_date(self.settlement_date)
        _check_period_number(self.settlement_date, self.period, self.length_minutes)
        expected_start_utc, expected_end_utc = _period_bounds_utc(
            self.settlement_date, self.period, self.length_minutes
        )
        for field, value, expected in (
            ("start_utc", self.start_utc, expected_start_utc),
            ("end_utc", self.end_utc, expected_end_utc),
        ):
            if not isinstance(value, datetime) or value.tzinfo is not UTC:
                raise InvalidPeriodError(f"{field}: {value!r} is not a datetime with tzinfo=datetime.UTC")
            if value != expected:
                raise InvalidPeriodError(
                    f"{field}: {value.isoformat()} is not the {field[:-4]} of "
                    f"{self.settlement_date.isoformat()}/{self.period}, which is {expected.isoformat()}"
                )

    @property
    def key(self) -> str:
        """The period's name, ``"<settlement date>/<period>"``, e.g. ``"2026-10-25/50"``.

        Returns
        -------
        str
            The key; :func:`parse_period_key` turns it back into this period.
        """
        return f"{self.settlement_date.isoformat()}/{self.period}"

    @property
    def start_local(self) -> datetime:
        """The period's start in Europe/London local time.

        Returns
        -------
        datetime
            Aware in :data:`LONDON`, with ``fold=1`` for the second of a repeated autumn hour.
            Compare instants through :attr:`start_utc`: Python compares two datetimes in the same zone
            by wall clock alone, so the two local 01:00 starts on the autumn change compare equal.
        """
        return self.start_utc.astimezone(LONDON)

    @property
    def end_local(self) -> datetime:
        """The period's (exclusive) end in Europe/London local time.

        Returns
        -------
        datetime
            Aware in :data:`LONDON`; see :attr:`start_local` about comparing local times.
        """
        return self.end_utc.astimezone(LONDON)

    def next(self) -> SettlementPeriod:
        """The period that follows this one, of the same length.

        Returns
        -------
        SettlementPeriod
            The next period on this date, or period 1 of the next date after the last period.
        """
        if self.period < periods_in_day(self.settlement_date, length_minutes=self.length_minutes):
            return settlement_period(
                self.settlement_date, self.period + 1, length_minutes=self.length_minutes
            )
        return settlement_period(_shift_date(self.settlement_date, 1), 1, length_minutes=self.length_minutes)

    def previous(self) -> SettlementPeriod:
        """The period that precedes this one, of the same length.

        Returns
        -------
        SettlementPeriod
            The previous period on this date, or the last period of the previous date before period 1.
        """
        if self.period > 1:
            return settlement_period(
                self.settlement_date, self.period - 1, length_minutes=self.length_minutes
            )
        previous_date = _shift_date(self.settlement_date, -1)
        last = periods_in_day(previous_date, length_minutes=self.length_minutes)
        return settlement_period(previous_date, last, length_minutes=self.length_minutes)


def periods_in_day(settlement_date: date, *, length_minutes: int = 30) -> int:
    """How many settlement periods a settlement date has.

    Parameters
    ----------
    settlement_date : date
        A Europe/London local date.
    length_minutes : int, default 30
        The period length: 15, 30 or 60.

    Returns
    -------
    int
        The day's UTC length divided by the period length: 48 on an ordinary 30-minute day, 46 on the
        spring clock change and 50 on the autumn one.

    Raises
    ------
    InvalidPeriodError
        If ``settlement_date`` is not a plain date or is outside the supported range.
    ValueError
        If ``length_minutes`` is not 15, 30 or 60.
    """
    _check_length(length_minutes)
    _check_settlement_date(settlement_date)
    day_start_utc, day_end_utc = _day_bounds_utc(settlement_date)
    return (day_end_utc - day_start_utc) // timedelta(minutes=length_minutes)


def periods_of_day(settlement_date: date, *, length_minutes: int = 30) -> list[SettlementPeriod]:
    """Every settlement period of a settlement date, in order.

    Parameters
    ----------
    settlement_date : date
        A Europe/London local date.
    length_minutes : int, default 30
        The period length: 15, 30 or 60.

    Returns
    -------
    list of SettlementPeriod
        Periods 1 to :func:`periods_in_day`, tiling local midnight to the next local midnight.

    Raises
    ------
    InvalidPeriodError
        If ``settlement_date`` is not a plain date or is outside the supported range.
    ValueError
        If ``length_minutes`` is not 15, 30 or 60.
    """
    count = periods_in_day(settlement_date, length_minutes=length_minutes)
    return [
        settlement_period(settlement_date, period, length_minutes=length_minutes)
        for period in range(1, count + 1)
    ]


def settlement_period(settlement_date: date, period: int, *, length_minutes: int = 30) -> SettlementPeriod:
    """The settlement period with a given date and number.

    Parameters
    ----------
    settlement_date : date
        A Europe/London local date.
    period : int
        The period number, from 1 at local midnight to :func:`periods_in_day`.
    length_minutes : int, default 30
        The period length: 15, 30 or 60.

    Returns
    -------
    SettlementPeriod
        The period, with its exact UTC start and end.

    Raises
    ------
    InvalidPeriodError
        If ``period`` is below 1 or beyond the day's count (e.g. 51 on 2026-10-25, 47 on 2026-03-29), or
        ``settlement_date`` is not a plain date or is outside the supported range.
    ValueError
        If ``length_minutes`` is not 15, 30 or 60.
    """
    _check_length(length_minutes)
    _check_settlement_date(settlement_date)
    period = _as_period_number(period)
    _check_period_number(settlement_date, period, length_minutes)
    start_utc, end_utc = _period_bounds_utc(settlement_date, period, length_minutes)
    return SettlementPeriod(
        settlement_date=settlement_date,
        period=period,
        start_utc=start_utc,
        end_utc=end_utc,
        length_minutes=length_minutes,
    )


def period_at(moment: datetime, *, length_minutes: int = 30) -> SettlementPeriod:
    """The settlement period containing an instant (``start_utc <= moment < end_utc``).

    Parameters
    ----------
    moment : datetime
        An aware datetime in any time zone; only the instant it denotes matters.
    length_minutes : int, default 30
        The period length: 15, 30 or 60.

    Returns
    -------
    SettlementPeriod
        The period containing ``moment``.

    Raises
    ------
    InvalidPeriodError
        If ``moment`` is naive (or not a datetime), or outside the supported range.
    ValueError
        If ``length_minutes`` is not 15, 30 or 60.
    """
    _check_length(length_minutes)
    moment_utc = _to_utc(moment, field="moment")
    try:
        settlement_date = moment_utc.astimezone(LONDON).date()
    except OverflowError:
        raise InvalidPeriodError(f"moment: {moment.isoformat()} is outside the supported range") from None
    day_start_utc, _ = _day_bounds_utc(settlement_date)
    period = (moment_utc - day_start_utc) // timedelta(minutes=length_minutes) + 1
    return settlement_period(settlement_date, period, length_minutes=length_minutes)


def parse_period_key(key: str, *, length_minutes: int = 30) -> SettlementPeriod:
    """The settlement period a key names; the inverse of :attr:`SettlementPeriod.key`.

    Only the exact form the key property writes is accepted: ``YYYY-MM-DD/N`` with ASCII digits, no
    spaces, and no leading zero on the period number, so that every period has exactly one key.

    Parameters
    ----------
    key : str
        A period key such as ``"2026-10-25/50"``.
    length_minutes : int, default 30
        The period length the key was written for: 15, 30 or 60 (keys do not record it).

    Returns
    -------
    SettlementPeriod
        The period the key names.

    Raises
    ------
    InvalidPeriodError
        If the text is not of the form ``YYYY-MM-DD/N``, names no calendar date, or names a period
        number outside the day.
    ValueError
        If ``length_minutes`` is not 15, 30 or 60.
    """
    _check_length(length_minutes)
    if not isinstance(key, str):
        raise InvalidPeriodError(f"key: expected text like '2026-10-25/50', got {type(key).__name__}")
    return _parse_period_key(key, length_minutes)


@functools.lru_cache(maxsize=8192)
def _parse_period_key(key: str, length_minutes: int) -> SettlementPeriod:
    # Cached: a household's day-ahead batch names 48 keys, a district's day half a million.
    match = _KEY_PATTERN.fullmatch(key)
    if match is None:
        raise InvalidPeriodError(f"key: {key!r} is not of the form 'YYYY-MM-DD/N', e.g. '2026-10-25/50'")
    date_text, period_text = match["date"], match["period"]
    try:
        settlement_date = date.fromisoformat(date_text)
    except ValueError as error:
        raise InvalidPeriodError(
            f"settlement_date: {date_text!r} in key {key!r} is not a date: {error}"
        ) from None
    if len(period_text) > 1 and period_text.startswith("0"):
        raise InvalidPeriodError(
            f"period: {period_text!r} in key {key!r} has a leading zero; keys write the number without one"
        )
    if len(period_text) > _MAX_PERIOD_DIGITS:
        count = periods_in_day(settlement_date, length_minutes=length_minutes)
        raise InvalidPeriodError(
            f"period: {period_text} is beyond {count} periods on {settlement_date.isoformat()}"
        )
    return settlement_period(settlement_date, int(period_text), length_minutes=length_minutes)


def periods_between(
    start_utc: datetime, end_utc: datetime, *, length_minutes: int = 30
) -> Iterator[SettlementPeriod]:
    """The settlement periods that start in ``[start_utc, end_utc)``, in order.

    A period that is already under way at ``start_utc`` is not included; a period that starts before
    ``end_utc`` is included even if it ends after it.

    Parameters
    ----------
    start_utc : datetime
        The inclusive lower bound on period starts; aware, in any zone.
    end_utc : datetime
        The exclusive upper bound on period starts; aware, in any zone. Empty if not after ``start_utc``.
    length_minutes : int, default 30
        The period length: 15, 30 or 60.

    Returns
    -------
    Iterator of SettlementPeriod
        A lazy iterator; the arguments are checked when this function is called, not on first use.

    Raises
    ------
    InvalidPeriodError
        If either bound is naive (or not a datetime).
    ValueError
        If ``length_minutes`` is not 15, 30 or 60.
    """
    _check_length(length_minutes)
    lower_utc = _to_utc(start_utc, field="start_utc")
    upper_utc = _to_utc(end_utc, field="end_utc")
    return _iterate_periods(lower_utc, upper_utc, length_minutes)


def _iterate_periods(
    lower_utc: datetime, upper_utc: datetime, length_minutes: int
) -> Iterator[SettlementPeriod]:
    if lower_utc >= upper_utc:
        return
    current = period_at(lower_utc, length_minutes=length_minutes)
    if current.start_utc < lower_utc:
        current = current.next()
    while current.start_utc < upper_utc:
        yield current
        current = current.next()


def _check_length(length_minutes: int) -> None:
    # bool is an int and 30.0 == 30; neither is a period length.
    if type(length_minutes) is not int or length_minutes not in ALLOWED_LENGTHS_MINUTES:
        allowed = ", ".join(str(length) for length in ALLOWED_LENGTHS_MINUTES)
        raise ValueError(f"length_minutes: {length_minutes!r} is not one of {allowed}")


def _check_settlement_date(settlement_date: date) -> None:
    # A datetime is a date; accepting one would put its time of day into keys and caches.
    if isinstance(settlement_date, datetime) or not isinstance(settlement_date, date):
        raise InvalidPeriodError(
            f"settlement_date: {settlement_date!r} is not a date (a datetime is not one)"
        )
    if not FIRST_SETTLEMENT_DATE <= settlement_date <= LAST_SETTLEMENT_DATE:
        raise InvalidPeriodError(
            f"settlement_date: {settlement_date.isoformat()} is outside the supported range "
            f"({FIRST_SETTLEMENT_DATE.isoformat()} to {LAST_SETTLEMENT_DATE.isoformat()})"
        )


def _as_period_number(period: int) -> int:
    # Accept integer-like numbers (numpy's, say) as plain ints, but not bools or floats.
    if isinstance(period, bool):
        raise InvalidPeriodError(f"period: {period!r} is not an int")
    try:
        return operator.index(period)
    except TypeError:
        raise InvalidPeriodError(f"period: {period!r} is not an int") from None


def _check_period_number(settlement_date: date, period: int, length_minutes: int) -> None:
    if type(period) is not int:
        raise InvalidPeriodError(f"period: {period!r} is not an int")
    if period < 1:
        raise InvalidPeriodError(f"period: {period} is before period 1")
    count = periods_in_day(settlement_date, length_minutes=length_minutes)
    if period > count:
        raise InvalidPeriodError(
            f"period: {period} is beyond {count} periods on {settlement_date.isoformat()}"
        )


def _to_utc(moment: datetime, *, field: str) -> datetime:
    if not isinstance(moment, datetime):
        raise InvalidPeriodError(f"{field}: {moment!r} is not a datetime")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise InvalidPeriodError(f"{field}: {moment.isoformat()} is naive; give it a time zone")
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise InvalidPeriodError(f"{field}: {moment.isoformat()} is outside the supported range") from None


def _shift_date(settlement_date: date, days: int) -> date:
    try:
        return settlement_date + timedelta(days=days)
    except OverflowError:
        raise InvalidPeriodError(
            f"settlement_date: {settlement_date.isoformat()} is outside the supported range "
            f"(the date {days:+d} day(s) away does not exist)"
        ) from None


def _period_bounds_utc(settlement_date: date, period: int, length_minutes: int) -> tuple[datetime, datetime]:
    day_start_utc, _ = _day_bounds_utc(settlement_date)
    length = timedelta(minutes=length_minutes)
    start_utc = day_start_utc + (period - 1) * length
    return start_utc, start_utc + length


@functools.lru_cache(maxsize=4096)
def _day_bounds_utc(settlement_date: date) -> tuple[datetime, datetime]:
    """The UTC instants of the settlement date's local midnight and the next one."""
    next_date = _shift_date(settlement_date, 1)
    day_start_utc = _local_midnight_utc(settlement_date)
    day_end_utc = _local_midnight_utc(next_date)
    if day_start_utc is None or day_end_utc is None:
        raise InvalidPeriodError(
            f"settlement_date: {settlement_date.isoformat()} is outside the supported range (its local day "
            "does not start and end at single instants in Europe/London)"
        )
    # Offset changes of whole quarter hours keep the day a whole number of periods. London's have all
    # been whole hours since it left local mean time (-0:01:15) in 1847; refuse any day that is not.
    if (day_end_utc - day_start_utc) % timedelta(minutes=min(ALLOWED_LENGTHS_MINUTES)):
        raise InvalidPeriodError(
            f"settlement_date: {settlement_date.isoformat()} is not a whole number of periods long in "
            "Europe/London"
        )
    return day_start_utc, day_end_utc


def _local_midnight_utc(local_date: date) -> datetime | None:
    """The UTC instant of local midnight, or None if that midnight is skipped or repeated."""
    # London changes clocks at 01:00 UTC, so midnight normally exists exactly once; check rather than
    # trust it, since a skipped or repeated midnight would silently shift every period of the day.
    try:
        midnight = datetime.combine(local_date, time(0), tzinfo=LONDON)
        first_utc = midnight.astimezone(UTC)
        second_utc = midnight.replace(fold=1).astimezone(UTC)
        round_trip = first_utc.astimezone(LONDON).replace(tzinfo=None)
    except OverflowError:
        raise InvalidPeriodError(
            f"settlement_date: {local_date.isoformat()} is outside the supported range"
        ) from None
    if first_utc != second_utc or round_trip != midnight.replace(tzinfo=None):
        return None
    return first_utc
