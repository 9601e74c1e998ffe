"""The accelerated clock: a day in a second, held until released, the same time in a copy."""

from __future__ import annotations

import multiprocessing
from datetime import UTC, datetime, timedelta

import pytest

from api import clock as clock_module
from api.clock import AcceleratedClock
from tests.factories import ManualMonotonic

T0 = datetime(2026, 6, 20, 0, 0, tzinfo=UTC)


@pytest.fixture
def real(monkeypatch) -> ManualMonotonic:
    manual = ManualMonotonic()
    monkeypatch.setattr(clock_module.time, "monotonic", manual)
    return manual


def test_an_accelerated_clock_runs_a_day_in_a_second(real):
    clock = AcceleratedClock(T0, speed=86_400)
    assert clock.now() == T0
    real.now_s += 1.0
    assert clock.now() == T0 + timedelta(days=1)
    assert clock.real_seconds_until(T0 + timedelta(days=2)) == 1.0


def test_a_held_clock_shows_its_start_until_released(real):
    clock = AcceleratedClock(T0, speed=3600, held=True)
    real.now_s += 50.0
    assert clock.now() == T0
    clock.release()
    real.now_s += 2.0
    assert clock.now() == T0 + timedelta(hours=2)


@pytest.mark.parametrize(("start", "speed"), [(datetime(2026, 6, 20), 1.0), (T0, 0.0), (T0, -1.0)])
def test_a_clock_needs_an_aware_start_and_a_positive_speed(start, speed):
    with pytest.raises(ValueError, match=r"aware|positive"):
        AcceleratedClock(start, speed)


def _report_time(clock: AcceleratedClock, answers) -> None:
    answers.put(clock.now())


def test_a_copy_in_another_process_releases_with_the_original():
    """The scenario runner's meters and platform run in processes of their own, on copies."""
    context = multiprocessing.get_context("spawn")
    clock = AcceleratedClock(T0, speed=86_400, held=True)
    answers = context.Queue()
    held = context.Process(target=_report_time, args=(clock, answers))
    held.start()
    assert answers.get(timeout=60) == T0
    held.join(timeout=60)
    clock.release()
    running = context.Process(target=_report_time, args=(clock, answers))
    running.start()
    assert answers.get(timeout=60) > T0
    running.join(timeout=60)
