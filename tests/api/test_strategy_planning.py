"""Automatic trading's job on an accelerated clock: it plans at start and again after each gate
closure, so the periods ahead always hold the strategy's bids."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from sqlmodel import Session

from api.clock import AcceleratedClock
from api.scheduler import StrategyPlanning
from market.database import transaction
from market.orders import list_orders
from market.rules import MarketRules
from market.strategies import set_strategy
from tests.factories import seed_market

NOW = datetime(2026, 12, 7, 9, 1, tzinfo=UTC)
RULES = MarketRules()


def wait_for(condition, *, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def strategy_periods(engine) -> set[str]:
    with Session(engine) as session:
        orders = list_orders(session, participant_id="H1", status="open", limit=1000)
    return {o.period.key for o in orders if o.source == "strategy"}


def test_plans_at_start_and_again_after_each_gate_closure(engine):
    with transaction(engine) as session:
        seed_market(session, now=NOW - timedelta(days=10))
        set_strategy(
            session,
            participant_id="H1",
            strategy={"sell_floor_p_per_kwh": "5", "buy_ceiling_p_per_kwh": "30"},
            rules=RULES,
            now=NOW,
            actor="H1",
        )
    clock = AcceleratedClock(NOW, speed=600.0)  # a period every 3 s
    job = StrategyPlanning(engine, RULES, clock)
    try:
        first = job.start()
        assert first is not None
        assert (first.households, first.planned) == (1, 1)
        planned = strategy_periods(engine)
        assert planned == {p.key for p in first.periods}
        # A gate closes: the next run plans one period further on.
        later = first.periods[-1].next().key
        wait_for(lambda: later in strategy_periods(engine))
    finally:
        job.shutdown()
