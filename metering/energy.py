"""Energy per settlement interval from one meter's cumulative import and export counters.

Pure functions: readings and interval boundaries in; whole-Wh energies, estimate flags and counter-reset
events out. Nothing is stored and nothing is remembered between calls, so when later readings arrive,
calling :func:`derive_interval_energy` again with the fuller list *is* the recomputation: estimates
become actual values and intervals that were already measured do not change.

May import the standard library only. Settlement intervals arrive as ``(start_utc, end_utc)`` pairs, not
as ``market.intervals.SettlementPeriod``, because metering may not import :mod:`market`.

Policies
--------
Exactness and rounding
    Counters are integer Wh and every step is exact rational arithmetic. The counter at each boundary
    is interpolated exactly and then rounded *once* to whole Wh, half to even. An interval's energy is
    the difference of its two rounded boundary values, so over consecutive intervals the energies
    telescope: they add up exactly to the difference between the first and the last boundary value,
    with no drift however many intervals there are, and a reading in whole Wh that falls on a boundary
    is reproduced exactly. Half to even rather than half up because interpolating whole-Wh counters
    at a midpoint lands on half a Wh often, and half up would bias every such boundary the same way.
Interpolation
    The counter at a boundary is interpolated linearly in time between the last reading at or before
    the boundary and the first at or after it; a reading exactly on the boundary is used as it is.
Duplicate readings
    Of several readings at the same instant the one with the largest ``(import_wh, export_wh)`` is
    kept and the rest are dropped. The choice depends only on the values, never on the input order.
Counter decreases (resets and meter replacements)
    A register that reads less than at the reading before has been reset or its meter replaced; the
    two cannot be told apart from the counters alone. Each decrease is recorded as a
    :class:`CounterEvent` and the series is stitched into a *continuous counter* that never goes down,
    so no energy is ever negative. Every interval overlapping the *reset gap* (the time between the
    last reading before the decrease and the first after it) is estimated and carries the event.
    What the energy across the reset gap is taken to be is the ``reset_policy``:

    * :attr:`ResetPolicy.CONTINUE` (default): the first reading after the decrease is the new
      counter's baseline, and no energy is attributed to the reset gap. It never invents energy: the
      shortfall is at most the energy that flowed between two consecutive readings, which is small
      when the meter is polled every few minutes.
    * :attr:`ResetPolicy.FROM_ZERO`: the new counter is assumed to have started from zero at the reset,
      so the first reading after the decrease is all energy of the reset gap. Right for a register
      reset to zero, but a replacement meter that starts at 12 345 kWh would put 12 345 kWh into one
      interval, which is why it is not the default.
Estimates
    A boundary value is *measured* when a reading falls on the boundary, or when it lies between two
    consecutive readings at most ``max_gap`` apart with no decrease between them. Otherwise it is
    estimated:

    * between two readings more than ``max_gap`` (default an hour) apart: interpolated all the same,
      since that keeps the total across the gap exact and only the split between intervals is a guess;
    * inside a reset gap: interpolated along the continuous counter (see the reset policy);
    * before the first reading: the first reading's value, carried back (zero energy), since a meter
      with no earlier reading was most likely not yet installed or commissioned;
    * after the last reading: extrapolated at the continuous counter's average rate over the
      ``rate_window`` (default a day) that ends at the last reading (or over all the readings, if they
      span less), since a meter that was running is most likely still running and its data has simply
      not arrived. With a single reading the rate is zero. Rates are never negative, so estimated
      energy is not either.

    An interval is estimated when either boundary is estimated or it overlaps a reset gap. An interval
    that spans a long gap from one measured boundary to another is *not* estimated: its total is known.

Glossary
--------
boundary
    The start or end instant of a settlement interval.
continuous counter
    A register's counter with resets stitched out: the raw counter up to the first decrease, and
    after each decrease the raw counter plus the offset the reset policy gives. It never decreases.
reset gap
    The open time span between the last reading before a counter decrease and the first after it.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from fractions import Fraction

__all__ = [
    "DEFAULT_MAX_GAP",
    "DEFAULT_RATE_WINDOW",
    "BoundaryCounter",
    "CounterEvent",
    "CounterEventKind",
    "CounterReading",
    "IntervalEnergy",
    "Register",
    "ResetPolicy",
    "derive_boundary_counters",
    "derive_interval_energy",
    "detect_counter_resets",
]

DEFAULT_MAX_GAP = timedelta(hours=1)
"""Readings further apart than this give estimated boundaries between them.

An hour: the meters are polled every few minutes, so a longer gap is an outage, and a linear split over
more than two half-hours could move energy between periods with quite different prices.
"""

DEFAULT_RATE_WINDOW = timedelta(hours=24)
"""A day, so the extrapolation rate averages over a whole daily cycle of use and generation."""

_MICROSECOND = timedelta(microseconds=1)


class Register(StrEnum):
    """Which of a meter's two energy counters."""

    IMPORT = "import"
    EXPORT = "export"


class CounterEventKind(StrEnum):
    """What happened to a counter."""

    COUNTER_RESET = "counter_reset"


class ResetPolicy(StrEnum):
    """How much energy the reset gap around a counter decrease is taken to hold (see module docstring)."""

    CONTINUE = "continue"
    FROM_ZERO = "from_zero"


@dataclass(frozen=True, slots=True)
class CounterReading:
    """One reading of a meter's cumulative import and export counters.

    Parameters
    ----------
    at_utc : datetime
        When the counters were read. Any aware datetime is accepted and stored converted to UTC, so
        that arithmetic on it is never wall-clock arithmetic; a naive one is rejected.
    import_wh, export_wh : int
        The cumulative counters in whole Wh, not negative (a meter's kWh registers are turned into
        Wh once, when the reading is stored).

    Raises
    ------
    ValueError
        Naming the field, for a naive or non-datetime ``at_utc`` or a counter that is not a
        non-negative integer.
    """

    at_utc: datetime
    import_wh: int
    export_wh: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "at_utc", _aware_utc("at_utc", self.at_utc))
        _check_counter_wh("import_wh", self.import_wh)
        _check_counter_wh("export_wh", self.export_wh)


@dataclass(frozen=True, slots=True)
class CounterEvent:
    """A register that read less than at the reading before: a reset or a meter replacement.

    Parameters
    ----------
    previous_at_utc : datetime
        The last reading before the decrease; the reset happened after it.
    at_utc : datetime
        The first reading after the decrease, where it was seen.
    register : Register
        Which counter went down.
    before_wh, after_wh : int
        That counter's raw values at ``previous_at_utc`` and ``at_utc``; ``after_wh < before_wh``.
    kind : CounterEventKind
        Always :attr:`CounterEventKind.COUNTER_RESET` for now.
    """

    previous_at_utc: datetime
    at_utc: datetime
    register: Register
    before_wh: int
    after_wh: int
    kind: CounterEventKind = CounterEventKind.COUNTER_RESET


@dataclass(frozen=True, slots=True)
class BoundaryCounter:
    """The continuous counters at one instant, in whole Wh (see the module docstring's policies).

    After a reset these are continuous-counter values, not what the meter's display showed; only
    differences between them mean energy.
    """

    at_utc: datetime
    import_wh: int
    export_wh: int
    estimated: bool


@dataclass(frozen=True, slots=True)
class IntervalEnergy:
    """The energy one meter imported and exported in one settlement interval.

    Parameters
    ----------
    start_utc, end_utc : datetime
        The interval, as given, in UTC.
    import_wh, export_wh : int
        Whole Wh, never negative.
    estimated : bool
        Whether either boundary value is an estimate or the interval overlaps a reset gap.
    events : tuple of CounterEvent
        The counter decreases whose reset gap overlaps the interval, in time order.
    """

    start_utc: datetime
    end_utc: datetime
    import_wh: int
    export_wh: int
    estimated: bool
    events: tuple[CounterEvent, ...] = ()

    @property
    def import_kwh(self) -> Decimal:
        """The imported energy in kWh, exact (three decimal places)."""
        return Decimal(self.import_wh).scaleb(-3)

    @property
    def export_kwh(self) -> Decimal:
        """The exported energy in kWh, exact (three decimal places)."""
        return Decimal(self.export_wh).scaleb(-3)


def detect_counter_resets(readings: Iterable[CounterReading]) -> list[CounterEvent]:
    """Every counter decrease in a meter's readings, in time order.

    Parameters
    ----------
    readings : iterable of CounterReading
        One meter's readings, in any order; duplicates at one instant as in the module docstring.

    Returns
    -------
    list of CounterEvent
        One per register that decreased between consecutive readings, import before export.
    """
    return list(_ContinuousCounters(readings, ResetPolicy.CONTINUE).events)


def derive_boundary_counters(
    readings: Iterable[CounterReading],
    instants: Iterable[datetime],
    *,
    max_gap: timedelta = DEFAULT_MAX_GAP,
    rate_window: timedelta = DEFAULT_RATE_WINDOW,
    reset_policy: ResetPolicy = ResetPolicy.CONTINUE,
) -> list[BoundaryCounter]:
    """The continuous counters at each instant, rounded once to whole Wh, with an estimate flag.

    Parameters
    ----------
    readings : iterable of CounterReading
        One meter's readings, in any order.
    instants : iterable of datetime
        Aware datetimes, in any order; the result follows it.
    max_gap : timedelta
        The longest span between two readings that still gives measured values between them.
    rate_window : timedelta
        How far back from the last reading the extrapolation rate is averaged.
    reset_policy : ResetPolicy
        The energy taken to lie in a reset gap.

    Returns
    -------
    list of BoundaryCounter
        One per instant. With no readings at all every value is 0 Wh and estimated.

    Raises
    ------
    ValueError
        Naming the argument, for a naive instant, a reading that is not a :class:`CounterReading`, or a
        non-positive ``max_gap`` or ``rate_window``.
    """
    counters = _ContinuousCounters(readings, _check_reset_policy(reset_policy))
    max_gap_us = _positive_us("max_gap", max_gap)
    rate_window_us = _positive_us("rate_window", rate_window)
    moments = [_aware_utc(f"instants[{index}]", instant) for index, instant in enumerate(instants)]
    return [counters.boundary_at(moment, max_gap_us, rate_window_us) for moment in moments]


def derive_interval_energy(
    readings: Iterable[CounterReading],
    intervals: Iterable[tuple[datetime, datetime]],
    *,
    max_gap: timedelta = DEFAULT_MAX_GAP,
    rate_window: timedelta = DEFAULT_RATE_WINDOW,
    reset_policy: ResetPolicy = ResetPolicy.CONTINUE,
) -> list[IntervalEnergy]:
    """The import and export energy of one meter in each settlement interval.

    Parameters
    ----------
    readings : iterable of CounterReading
        One meter's readings, in any order. Include the last reading before the first interval and the
        first after the last one, or the edge intervals come out estimated.
    intervals : iterable of (datetime, datetime)
        ``(start_utc, end_utc)`` pairs of aware datetimes with ``end_utc > start_utc``: a day's
        settlement periods, a range of them, or any others (they need not be consecutive).
    max_gap : timedelta
        The longest span between two readings that still gives measured values between them.
    rate_window : timedelta
        How far back from the last reading the extrapolation rate is averaged.
    reset_policy : ResetPolicy
        The energy taken to lie in a reset gap.

    Returns
    -------
    list of IntervalEnergy
        One per interval, in the order given.

    Raises
    ------
    ValueError
        Naming the argument, for a naive datetime, an interval whose end is not after its start, a
        reading that is not a :class:`CounterReading`, or a non-positive ``max_gap`` or ``rate_window``.
    """
    counters = _ContinuousCounters(readings, _check_reset_policy(reset_policy))
    max_gap_us = _positive_us("max_gap", max_gap)
    rate_window_us = _positive_us("rate_window", rate_window)
    spans = [_check_interval(index, interval) for index, interval in enumerate(intervals)]
    boundaries = {
        moment: counters.boundary_at(moment, max_gap_us, rate_window_us)
        for moment in {moment for span in spans for moment in span}
    }
    result = []
    for start_utc, end_utc in spans:
        start, end = boundaries[start_utc], boundaries[end_utc]
        # Events whose reset gap overlaps the interval: the interval's energy includes part of the gap.
        events = tuple(
            event for event in counters.events if event.previous_at_utc < end_utc and start_utc < event.at_utc
        )
        result.append(
            IntervalEnergy(
                start_utc=start_utc,
                end_utc=end_utc,
                import_wh=end.import_wh - start.import_wh,
                export_wh=end.export_wh - start.export_wh,
                estimated=start.estimated or end.estimated or bool(events),
                events=events,
            )
        )
    return result


class _ContinuousCounters:
    """A meter's readings, deduplicated, in time order, stitched into continuous counters in exact Wh."""

    def __init__(self, readings: Iterable[CounterReading], reset_policy: ResetPolicy) -> None:
        checked = []
        for index, reading in enumerate(readings):
            if not isinstance(reading, CounterReading):
                raise ValueError(f"readings[{index}]: {reading!r} is not a CounterReading")
            checked.append(reading)
        # Sorting by value as well as time, then keeping the last at each instant, makes the choice among
        # duplicates depend on the values alone.
        kept: dict[datetime, CounterReading] = {}
        for reading in sorted(checked, key=lambda r: (r.at_utc, r.import_wh, r.export_wh)):
            kept[reading.at_utc] = reading
        ordered = list(kept.values())
        self.times_utc: list[datetime] = [reading.at_utc for reading in ordered]
        # reset_after[k]: some register decreased between readings k and k + 1.
        self.reset_after: list[bool] = [False] * max(len(ordered) - 1, 0)
        events: list[CounterEvent] = []
        self.import_wh = self._stitch(ordered, Register.IMPORT, reset_policy, events)
        self.export_wh = self._stitch(ordered, Register.EXPORT, reset_policy, events)
        events.sort(key=lambda event: (event.at_utc, event.register != Register.IMPORT))
        self.events: tuple[CounterEvent, ...] = tuple(events)
        self._rates_by_window_us: dict[int, tuple[Fraction, Fraction]] = {}

    def _stitch(
        self,
        ordered: Sequence[CounterReading],
        register: Register,
        reset_policy: ResetPolicy,
        events: list[CounterEvent],
    ) -> list[Fraction]:
        raw_wh = [
            reading.import_wh if register is Register.IMPORT else reading.export_wh for reading in ordered
        ]
        continuous_wh: list[Fraction] = []
        for k, value in enumerate(raw_wh):
            value_wh = Fraction(value)
            if k == 0:
                continuous_wh.append(value_wh)
                continue
            offset_wh = continuous_wh[-1] - raw_wh[k - 1]
            if value < raw_wh[k - 1]:
                events.append(
                    CounterEvent(
                        previous_at_utc=ordered[k - 1].at_utc,
                        at_utc=ordered[k].at_utc,
                        register=register,
                        before_wh=raw_wh[k - 1],
                        after_wh=value,
                    )
                )
                self.reset_after[k - 1] = True
                if reset_policy is ResetPolicy.CONTINUE:
                    offset_wh = continuous_wh[-1] - value_wh
                else:
                    offset_wh = continuous_wh[-1]
            continuous_wh.append(value_wh + offset_wh)
        return continuous_wh

    def boundary_at(self, moment: datetime, max_gap_us: int, rate_window_us: int) -> BoundaryCounter:
        """The continuous counters at ``moment``, rounded half to even to whole Wh, and whether estimated."""
        times = self.times_utc
        if not times:
            return BoundaryCounter(moment, 0, 0, estimated=True)
        after = bisect.bisect_left(times, moment)
        if after < len(times) and times[after] == moment:
            import_wh, export_wh, estimated = self.import_wh[after], self.export_wh[after], False
        elif after == 0:
            import_wh, export_wh, estimated = self.import_wh[0], self.export_wh[0], True
        elif after == len(times):
            elapsed_us = _us(moment - times[-1])
            import_rate, export_rate = self._rates_wh_per_us(rate_window_us)
            import_wh = self.import_wh[-1] + import_rate * elapsed_us
            export_wh = self.export_wh[-1] + export_rate * elapsed_us
            estimated = True
        else:
            import_wh, export_wh = self._interpolate(after - 1, moment)
            estimated = self.reset_after[after - 1] or _us(times[after] - times[after - 1]) > max_gap_us
        # round() on a Fraction rounds half to even, exactly.
        return BoundaryCounter(moment, round(import_wh), round(export_wh), estimated)

    def _interpolate(self, before: int, moment: datetime) -> tuple[Fraction, Fraction]:
        """Both continuous counters at ``moment``, linearly between readings ``before`` and ``before + 1``."""
        start, end = self.times_utc[before], self.times_utc[before + 1]
        share = Fraction(_us(moment - start), _us(end - start))
        return (
            self.import_wh[before] + (self.import_wh[before + 1] - self.import_wh[before]) * share,
            self.export_wh[before] + (self.export_wh[before + 1] - self.export_wh[before]) * share,
        )

    def _rates_wh_per_us(self, rate_window_us: int) -> tuple[Fraction, Fraction]:
        """Average rates of both continuous counters over the window ending at the last reading."""
        if rate_window_us not in self._rates_by_window_us:
            self._rates_by_window_us[rate_window_us] = self._average_rates_wh_per_us(rate_window_us)
        return self._rates_by_window_us[rate_window_us]

    def _average_rates_wh_per_us(self, rate_window_us: int) -> tuple[Fraction, Fraction]:
        first, last = self.times_utc[0], self.times_utc[-1]
        # Compared in microseconds first: ``last - rate_window`` could fall off the calendar.
        whole_span = rate_window_us >= _us(last - first)
        window_start = first if whole_span else last - rate_window_us * _MICROSECOND
        span_us = _us(last - window_start)
        if span_us == 0:
            return Fraction(0), Fraction(0)
        index = bisect.bisect_right(self.times_utc, window_start) - 1
        if self.times_utc[index] == window_start:
            import_start, export_start = self.import_wh[index], self.export_wh[index]
        else:
            import_start, export_start = self._interpolate(index, window_start)
        return (
            (self.import_wh[-1] - import_start) / span_us,
            (self.export_wh[-1] - export_start) / span_us,
        )


def _us(span: timedelta) -> int:
    """A timedelta in whole microseconds (exact: timedeltas are whole microseconds)."""
    return span // _MICROSECOND


def _aware_utc(field: str, value: object) -> datetime:
    if isinstance(value, datetime) and value.tzinfo is UTC:
        return value  # already UTC (as read from the database): nothing to check or convert
    if not isinstance(value, datetime):
        raise ValueError(f"{field}: {value!r} is not a datetime")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{field}: {value.isoformat()} is naive; give it a time zone (UTC)")
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"{field}: {value.isoformat()} is outside the supported range") from None


def _check_counter_wh(field: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{field}: {value!r} is not a whole number of Wh")
    if value < 0:
        raise ValueError(f"{field}: {value} Wh is negative; a cumulative counter cannot be")


def _check_interval(index: int, interval: object) -> tuple[datetime, datetime]:
    if not isinstance(interval, tuple | list) or len(interval) != 2:
        raise ValueError(f"intervals[{index}]: {interval!r} is not a (start_utc, end_utc) pair")
    start_utc = _aware_utc(f"intervals[{index}].start_utc", interval[0])
    end_utc = _aware_utc(f"intervals[{index}].end_utc", interval[1])
    if end_utc <= start_utc:
        raise ValueError(
            f"intervals[{index}]: end_utc {end_utc.isoformat()} is not after "
            f"start_utc {start_utc.isoformat()}"
        )
    return start_utc, end_utc


def _positive_us(field: str, span: object) -> int:
    if not isinstance(span, timedelta) or span <= timedelta(0):
        raise ValueError(f"{field}: {span!r} is not a positive timedelta")
    return _us(span)


def _check_reset_policy(reset_policy: ResetPolicy | str) -> ResetPolicy:
    try:
        return ResetPolicy(reset_policy)
    except ValueError:
        allowed = ", ".join(repr(policy.value) for policy in ResetPolicy)
        raise ValueError(f"reset_policy: {reset_policy!r} is not one of {allowed}") from None
