"""Clocks: the real one, and an accelerated one that runs a day in seconds for demos and tests.

Everything that needs the time takes a :class:`Clock`; the market layer below takes plain
``now`` values from it, and emulated meters take its ``now`` method as their clock.
"""

from __future__ import annotations

import multiprocessing
import time
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

#: Shared memory made with the spawn context, as the scenario runner's processes are.
_SPAWN = multiprocessing.get_context("spawn")


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
    """Market time that starts at ``start`` and runs ``speed`` times faster than real time.

    A ``held`` clock shows ``start`` until :meth:`release`, then runs (the scenario runner holds
    it while it sets up). The real moment it started running is kept in shared memory, so a copy
    of the clock in a process started after it was made (the emulated meters', the platform's)
    keeps the same time and releases with it: the monotonic clock is the machine's.
    """

    def __init__(self, start: datetime, speed: float, *, held: bool = False, _started: Any = None) -> None:
        if start.tzinfo is None:
            raise ValueError("start must be an aware datetime")
        if not speed > 0:
            raise ValueError("speed must be positive")
        self.start = start.astimezone(UTC)
        self.speed = speed
        self._started = (
            _started
            if _started is not None
            else _SPAWN.Value("d", -1.0 if held else time.monotonic(), lock=False)
        )

    def release(self) -> None:
        """Start a held clock running from ``start`` (a running clock restarts from ``start``)."""
        self._started.value = time.monotonic()

    def now(self) -> datetime:
        started = self._started.value
        if started < 0:
            return self.start
        return self.start + timedelta(seconds=(time.monotonic() - started) * self.speed)

    def real_seconds_until(self, moment: datetime) -> float:
        return (moment - self.now()).total_seconds() / self.speed

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_clock, (self.start, self.speed, self._started))


def _rebuild_clock(start: datetime, speed: float, started: Any) -> AcceleratedClock:
    return AcceleratedClock(start, speed, _started=started)
