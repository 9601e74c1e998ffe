"""Meter readings: one poll's values, the meter's and the poll's time, and a quality flag.

A value that is NaN, infinite, missing or outside its quantity's plausible range is dropped from
the reading and named in its problems, never turned into zero: a zero would settle as energy
that was never measured. A bad energy counter (``import_kwh``, ``export_kwh``) makes the reading
``invalid``, since settlement cannot use it; any other bad value makes it ``suspect``.

May import: the standard library and :mod:`metering.registers`. Never :mod:`market`,
:mod:`optimiser` or :mod:`api`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from types import MappingProxyType

from metering.registers import RegisterMap

__all__ = ["COUNTER_QUANTITIES", "Quality", "Reading", "make_reading", "validate"]

COUNTER_QUANTITIES = frozenset({"import_kwh", "export_kwh"})
"""The energy counters settlement is computed from; a bad one makes a reading invalid."""


class Quality(StrEnum):
    """How far a reading can be trusted."""

    GOOD = "good"
    """Every quantity of the map was read and is plausible."""
    SUSPECT = "suspect"
    """The counters are fine, but some other value was bad and has been dropped."""
    INVALID = "invalid"
    """An energy counter was bad and has been dropped: the reading cannot be settled on."""


@dataclass(frozen=True)
class Reading:
    """One poll of one meter.

    Attributes
    ----------
    meter_id : str
        The meter polled.
    polled_at : datetime
        When the poll was made, UTC (an aware time in another zone is converted).
    meter_time : datetime or None
        The meter's own clock, UTC, where the meter has one.
    values : mapping of str to float
        The plausible values only, by quantity name (read-only).
    quality : Quality
        ``good``, ``suspect`` or ``invalid`` (a ``str``).
    problems : tuple of str
        One line per value dropped, naming the quantity and why.
    """

    meter_id: str
    polled_at: datetime
    meter_time: datetime | None
    values: Mapping[str, float]
    quality: Quality
    problems: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "polled_at", _utc(self.polled_at, "polled_at"))
        if self.meter_time is not None:
            object.__setattr__(self, "meter_time", _utc(self.meter_time, "meter_time"))
        object.__setattr__(self, "values", MappingProxyType(dict(self.values)))
        object.__setattr__(self, "quality", Quality(self.quality))
        object.__setattr__(self, "problems", tuple(self.problems))


def _utc(moment: datetime, name: str) -> datetime:
    if not isinstance(moment, datetime) or moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got {moment!r}")
    return moment.astimezone(UTC)


def validate(
    register_map: RegisterMap, values: Mapping[str, float]
) -> tuple[dict[str, float], Quality, tuple[str, ...]]:
    """Keep the plausible values of a poll and say what was wrong with the rest.

    Parameters
    ----------
    register_map : RegisterMap
        The meter's map, whose quantities give each value's plausible range.
    values : mapping of str to float
        Decoded values by quantity name (:meth:`metering.registers.Decoder.decode`).

    Returns
    -------
    values : dict of str to float
        The values that are finite and within ``[minimum, maximum]``, in map order.
    quality : Quality
        ``invalid`` when an energy counter of the map is bad or missing, ``suspect`` when any
        other value is, else ``good``.
    problems : tuple of str
        One line per dropped or missing value.
    """
    kept: dict[str, float] = {}
    problems: list[str] = []
    counter_bad = False
    for quantity in register_map.quantities:
        name = quantity.name
        problem = None
        if name not in values:
            problem = "missing"
        else:
            value = _number(values[name])
            if value is None:
                problem = f"{values[name]!r} is not a number"
            elif math.isnan(value):
                problem = "not a number (NaN)"
            elif math.isinf(value):
                problem = f"{value} is infinite"
            elif not quantity.minimum <= value <= quantity.maximum:
                problem = f"{value:g} {quantity.unit} is outside {quantity.minimum:g}..{quantity.maximum:g}"
            else:
                kept[name] = value
        if problem is not None:
            problems.append(f"{name}: {problem}")
            counter_bad = counter_bad or name in COUNTER_QUANTITIES
    known = set(register_map.names)
    problems.extend(f"{name}: not a quantity of {register_map.model}" for name in values if name not in known)
    if counter_bad:
        quality = Quality.INVALID
    elif problems:
        quality = Quality.SUSPECT
    else:
        quality = Quality.GOOD
    return kept, quality, tuple(problems)


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def make_reading(
    meter_id: str,
    register_map: RegisterMap,
    values: Mapping[str, float],
    *,
    polled_at: datetime,
    meter_time: datetime | None = None,
) -> Reading:
    """A :class:`Reading` of decoded values, validated against the meter's map.

    Parameters
    ----------
    meter_id : str
    register_map : RegisterMap
    values : mapping of str to float
        Decoded values, bad ones included: :func:`validate` drops them.
    polled_at : datetime
        When the poll was made (timezone-aware).
    meter_time : datetime, optional
        The meter's clock, where it has one (timezone-aware).
    """
    kept, quality, problems = validate(register_map, values)
    return Reading(
        meter_id=meter_id,
        polled_at=polled_at,
        meter_time=meter_time,
        values=kept,
        quality=quality,
        problems=problems,
    )
