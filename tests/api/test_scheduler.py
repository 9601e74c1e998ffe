"""The market's clock: catch-up on start and clearing at each gate closure, with real APScheduler jobs
on an accelerated clock, on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlmodel import Session, col, select

from api.clock import AcceleratedClock
from api.scheduler import MarketScheduler
from market.database import transaction
from market.intervals import period_at
from market.orders import place_order
from market.rules import MarketRules
from market.tables import ClearingRunRow
from tests.factories import seed_market

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
RULES = MarketRules()
FIRST = period_at(NOW + timedelta(hours=1))


def seed_three_periods(engine) -> list:
    periods = [FIRST, FIRST.next(), FIRST.next().next()]
    with transaction(engine) as session:
        seed_market(session, now=NOW)
        for period in periods:
            for home, side, price in (("H1", "buy", "20"), ("H3", "sell", "5")):
                place_order(
                    session,
                    rules=RULES,
                    participant_id=home,
                    period=period,
                    side=side,
                    quantity_kwh=Decimal("1"),
                    price_p_per_kwh=Decimal(price),
                    now=NOW,
                )
    return periods


def runs(engine) -> list[tuple[str, str]]:
    with Session(engine) as session:
        rows = session.exec(select(ClearingRunRow).order_by(col(ClearingRunRow.interval_start_utc))).all()
        return [(f"{row.settlement_date}/{row.period}", row.triggered_by) for row in rows]


def wait_for(condition, *, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_start_catches_up_in_order_then_clears_at_each_gate(engine):
    first, second, third = seed_three_periods(engine)
    # The service comes back just after the second period's gate: two intervals are due.
    start = RULES.gate_closure_utc(second) + timedelta(seconds=30)
    clock = AcceleratedClock(start, speed=900.0)  # a 30-minute period passes in 2 s
    cleared: list[str] = []
    scheduler = MarketScheduler(
        engine, RULES, clock, on_cleared=lambda outcomes: cleared.extend(o.run.period.key for o in outcomes)
    )
    try:
        caught_up = scheduler.start()
        assert [o.run.period.key for o in caught_up] == [first.key, second.key]
        assert all(o.created for o in caught_up)
        wait_for(lambda: len(runs(engine)) >= 3)
    finally:
        scheduler.shutdown()
    assert runs(engine)[:3] == [
        (first.key, "scheduler:catch-up"),
        (second.key, "scheduler:catch-up"),
        (third.key, "scheduler"),
    ]
    assert cleared[:3] == [first.key, second.key, third.key]


def test_two_schedulers_never_clear_twice(engine):
    """Two service instances on one database (as with several workers): one run per interval."""
    seed_three_periods(engine)
    start = RULES.gate_closure_utc(FIRST) - timedelta(seconds=30)
    schedulers = [MarketScheduler(engine, RULES, AcceleratedClock(start, speed=900.0)) for _ in range(2)]
    try:
        for scheduler in schedulers:
            scheduler.start()
        wait_for(lambda: len(runs(engine)) >= 3)
    finally:
        for scheduler in schedulers:
            scheduler.shutdown()
    keys = [key for key, _ in runs(engine)]
    assert len(keys) == len(set(keys))
    assert keys[:3] == [FIRST.key, FIRST.next().key, FIRST.next().next().key]


def test_next_gate_closure(engine):
    scheduler = MarketScheduler(engine, RULES, AcceleratedClock(NOW, 1.0))
    period, gate = scheduler.next_gate_closure(datetime(2026, 11, 21, 12, 24, 59, tzinfo=UTC))
    assert (period.key, gate) == ("2026-11-21/26", datetime(2026, 11, 21, 12, 25, tzinfo=UTC))
    period, gate = scheduler.next_gate_closure(datetime(2026, 11, 21, 12, 25, tzinfo=UTC))
    assert (period.key, gate) == ("2026-11-21/27", datetime(2026, 11, 21, 12, 55, tzinfo=UTC))
