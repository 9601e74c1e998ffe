"""Clocks: the real one, and an accelerated one that runs a day in seconds for demos and tests.

Everything that needs the time takes a :class:`Clock`; the market layer below takes plain
``now`` values from it.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """Market time, and how long in real seconds until a market moment."""

    def now(self) -> datetime: ...

    def real_seconds_until(self, moment: datetime) -> float: ...


class SystemClock:
    """Wall-clock time in UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def real_seconds_until(self, moment: datetime) -> float:
        return (moment - self.now()).total_seconds()


class AcceleratedClock:
    """Market time that starts at ``start`` and runs ``speed`` times faster than real time."""

    def __init__(self, start: datetime, speed: float) -> None:
        if start.tzinfo is None:
            raise ValueError("start must be an aware datetime")
        if not speed > 0:
            raise ValueError("speed must be positive")
        self.start = start.astimezone(UTC)
        self.speed = speed
        self._real_start = time.monotonic()

    def now(self) -> datetime:
        return self.start + timedelta(seconds=(time.monotonic() - self._real_start) * self.speed)

    def real_seconds_until(self, moment: datetime) -> float:
        return (moment - self.now()).total_seconds() / self.speed
