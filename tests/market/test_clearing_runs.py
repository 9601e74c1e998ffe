"""Clearing runs on SQLite and PostgreSQL: exactly once under races and crashes, audit, catch-up."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlmodel import Session, func, select

from market.clearing import (
    clear_due,
    clear_interval,
    current_run,
    due_periods,
    node_prices,
    runs_of,
    trades_of,
    verify_run,
)
from market.database import create_database_engine, transaction
from market.errors import MarketError
from market.intervals import period_at
from market.network import network_in_force, publish_network
from market.orders import place_order
from market.rules import MarketRules
from market.tables import ClearingRunRow, NodePriceRow, OrderRow, TradeRow
from optimiser import Network
from tests.factories import node, race, seed_market

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
RULES = MarketRules()
PERIOD = period_at(NOW + timedelta(hours=1))  # 13:00-13:30 UTC
AFTER_GATE = PERIOD.start_utc - timedelta(minutes=4)


@pytest.fixture
def market(engine):
    """H1 (F1) buys 2 kWh at up to 20 p; H3 (F2, export limit 2 kWh) sells 3 kWh from 5 p."""
    with transaction(engine) as session:
        seed_market(session, now=NOW)
        for home, side, kwh, price in (("H1", "buy", "2", "20"), ("H3", "sell", "3", "5")):
            place_order(
                session,
                rules=RULES,
                participant_id=home,
                period=PERIOD,
                side=side,
                quantity_kwh=Decimal(kwh),
                price_p_per_kwh=Decimal(price),
                now=NOW,
            )
    return engine


def clear(engine, **overrides):
    values = {"period": PERIOD, "rules": RULES, "now": AFTER_GATE, "triggered_by": "test"}
    values.update(overrides)
    return clear_interval(engine, **values)


def counts(engine) -> tuple[int, int, int]:
    with Session(engine) as session:
        return tuple(
            session.exec(select(func.count()).select_from(table)).one()
            for table in (ClearingRunRow, TradeRow, NodePriceRow)
        )


def test_clearing_stores_the_run_its_prices_and_trades(market):
    """F2 may export only 2 kWh: H3 sells 2 (marginal, 5 p), H1 buys them at F1's price.

    H1's buy is filled (p_F1 <= 20) and F1 imports 2 kWh below capacity: p_F1 = p_P1 + 0.2, so
    p_P1 <= 19.8. F2 exports at its limit: p_F2 - p_P1 <= -0.2 with p_F2 = 5, so p_P1 >= 5.2.
    Nothing crosses P1's edge: p_GSP within p_P1 +/- 0.4. Root range [4.8, 20.2] -> 12.5.
    """
    outcome = clear(market)
    assert outcome.created
    run = outcome.run
    assert (run.sequence, run.is_current, run.orders, run.excluded_orders) == (1, True, 2, 0)
    assert run.grid_import_kwh == run.grid_export_kwh == 0
    with Session(market) as session:
        prices = {p.node_id: p.price_p_per_kwh for p in node_prices(session, run.id)}
        trades = {
            (t.participant_id, t.side, t.accepted_kwh, t.price_p_per_kwh) for t in trades_of(session, run.id)
        }
    assert prices["F2"] == Decimal("5")
    assert prices["GSP"] == Decimal("12.5")
    assert trades == {("H1", "buy", Decimal(2), prices["F1"]), ("H3", "sell", Decimal(2), Decimal(5))}
    assert run.welfare_p == Decimal(2) * 20 - Decimal(2) * 5 - Decimal("0.2") * 2 * 2
    assert counts(market) == (1, 2, 4)


def test_a_second_trigger_changes_nothing(market):
    first = clear(market)
    second = clear(market, now=AFTER_GATE + timedelta(minutes=30))
    assert (first.created, second.created) == (True, False)
    assert second.run == first.run
    assert counts(market) == (1, 2, 4)


def test_gate_must_have_closed(market):
    with pytest.raises(MarketError, match="not yet") as caught:
        clear(market, now=PERIOD.start_utc - timedelta(minutes=6))
    assert caught.value.field == "interval"
    assert counts(market) == (0, 0, 0)


def test_re_clear_needs_a_reason_and_keeps_the_old_run(market):
    first = clear(market)
    with pytest.raises(MarketError, match="needs a reason"):
        clear(market, reason="  ")
    second = clear(market, reason="meter data corrected by the DNO", triggered_by="operator:alice")
    assert second.created
    assert (second.run.sequence, second.run.supersedes_id) == (2, first.run.id)
    with Session(market) as session:
        runs = runs_of(session, PERIOD)
        assert [(r.sequence, r.is_current) for r in runs] == [(1, False), (2, True)]
        assert current_run(session, PERIOD).id == second.run.id
        assert len(trades_of(session, first.run.id)) == len(trades_of(session, second.run.id)) == 2
    assert second.run.inputs_digest == first.run.inputs_digest


def test_a_run_can_be_re_run_and_audited(market):
    run = clear(market).run
    assert verify_run(market, run.id) == []
    with transaction(market) as session:  # tamper with a stored trade: the audit must notice
        trade = session.exec(select(TradeRow).where(TradeRow.run_id == run.id)).first()
        trade.accepted_wh -= 1
        session.add(trade)
    assert any("trades differ" in difference for difference in verify_run(market, run.id))


def test_a_past_interval_keeps_its_network(market):
    run = clear(market).run
    tighter = Network(
        "GSP", (node("P1", "GSP", 500, 500, "0.4"), node("F1", "P1", 1, 1, "0.2"), node("F2", "P1", 1, 1))
    )
    with (
        transaction(market) as session,
        pytest.raises(MarketError, match="not after the last cleared interval"),
    ):
        publish_network(session, network=tighter, effective_from_utc=PERIOD.start_utc, now=AFTER_GATE)
    with transaction(market) as session:
        publish_network(session, network=tighter, effective_from_utc=PERIOD.end_utc, now=AFTER_GATE)
    with Session(market) as session:
        assert network_in_force(session, PERIOD.start_utc).id == run.network_version_id
        assert network_in_force(session, PERIOD.end_utc).id != run.network_version_id
    assert verify_run(market, run.id) == []


def test_catch_up_clears_every_due_period_in_order_exactly_once(market):
    """Down from before PERIOD's gate until two hours later: PERIOD and the four after it are due."""
    later = PERIOD.start_utc + timedelta(hours=2, minutes=10)
    with Session(market) as session:
        due = due_periods(session, rules=RULES, now=later)
    assert [p.key for p in due] == [
        "2026-11-21/27",
        "2026-11-21/28",
        "2026-11-21/29",
        "2026-11-21/30",
        "2026-11-21/31",
    ]
    outcomes = clear_due(market, rules=RULES, now=later, triggered_by="catch-up")
    assert [(o.run.period.key, o.created) for o in outcomes] == [(p.key, True) for p in due]
    assert [o.run.orders for o in outcomes] == [2, 0, 0, 0, 0]
    assert clear_due(market, rules=RULES, now=later, triggered_by="catch-up") == []
    with Session(market) as session:
        assert due_periods(session, rules=RULES, now=later + timedelta(minutes=30))[0].key == "2026-11-21/32"


def test_nothing_is_due_before_the_market_trades(engine):
    with transaction(engine) as session:
        seed_market(session, now=NOW)
    with Session(engine) as session:
        assert due_periods(session, rules=RULES, now=NOW + timedelta(days=1)) == []


CRASHING_WORKER = """
import os, sys
from datetime import datetime
import market.clearing as clearing
from market.database import create_database_engine
from market.intervals import parse_period_key
from market.rules import MarketRules

original = clearing._store_run

def store_then_die(session, **kwargs):
    row = original(session, **kwargs)
    session.flush()       # every row of the run is written, the transaction still open
    os._exit(17)          # the process dies before commit, as in a power cut

clearing._store_run = store_then_die
engine = create_database_engine(sys.argv[1])
clearing.clear_interval(engine, period=parse_period_key(sys.argv[2]), rules=MarketRules(),
                        now=datetime.fromisoformat(sys.argv[3]), triggered_by="doomed")
"""


def test_a_crash_before_commit_leaves_nothing_and_the_next_trigger_clears(market, database_url, tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(textwrap.dedent(CRASHING_WORKER))
    done = subprocess.run(
        [sys.executable, str(script), database_url, PERIOD.key, AFTER_GATE.isoformat()],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 17, done.stderr
    assert counts(market) == (0, 0, 0)
    outcome = clear(market)
    assert outcome.created
    assert counts(market) == (1, 2, 4)


def test_racing_threads_make_one_run(market, database_url):
    """Eight workers, each with its own connection pool, released together."""
    outcomes = race(database_url, clear, workers=8)
    assert sorted(o.created for o in outcomes) == [False] * 7 + [True]
    assert len({o.run.id for o in outcomes}) == 1
    assert counts(market) == (1, 2, 4)


RACING_WORKER = """
import sys
from datetime import datetime
from market.clearing import clear_interval
from market.database import create_database_engine
from market.intervals import parse_period_key
from market.rules import MarketRules

engine = create_database_engine(sys.argv[1])
outcome = clear_interval(engine, period=parse_period_key(sys.argv[2]), rules=MarketRules(),
                         now=datetime.fromisoformat(sys.argv[3]), triggered_by="racer")
print("created" if outcome.created else "found", outcome.run.id)
"""


def test_racing_processes_make_one_run(market, database_url, tmp_path):
    script = tmp_path / "racer.py"
    script.write_text(textwrap.dedent(RACING_WORKER))
    racers = [
        subprocess.Popen(
            [sys.executable, str(script), database_url, PERIOD.key, AFTER_GATE.isoformat()],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    results = [racer.communicate(timeout=180) for racer in racers]
    assert all(racer.returncode == 0 for racer in racers), [err for _, err in results]
    words = sorted(out.split()[0] for out, _ in results)
    assert words == ["created", "found", "found", "found"]
    assert len({out.split()[1] for out, _ in results}) == 1
    assert counts(market) == (1, 2, 4)


def test_orders_racing_gate_closure_are_either_cleared_or_refused(market, database_url):
    """Households keep placing (their clocks just before the gate) while the interval is cleared:
    each order commits before the clearing reads the book, or is refused; none is lost."""
    from market.errors import MarketError

    rules = MarketRules(max_open_orders=10_000)
    just_before = RULES.gate_closure_utc(PERIOD) - timedelta(microseconds=1)
    started = threading.Barrier(4)
    accepted: list[str] = []
    refused: list[str] = []

    def place_until_refused(home: str) -> None:
        engine = create_database_engine(database_url)
        started.wait(timeout=30)
        try:
            deadline = time.monotonic() + 90  # until the clearing refuses it (an order takes ms)
            while time.monotonic() < deadline:
                try:
                    with transaction(engine) as session:
                        order, _ = place_order(
                            session,
                            rules=rules,
                            participant_id=home,
                            period=PERIOD,
                            side="buy",
                            quantity_kwh=Decimal("0.1"),
                            price_p_per_kwh=Decimal("15"),
                            now=just_before,
                        )
                    accepted.append(order.id)
                except MarketError as error:
                    refused.append(error.reason)
                    return
        finally:
            engine.dispose()

    placers = [threading.Thread(target=place_until_refused, args=(home,)) for home in ("H1", "H2", "H3")]
    for thread in placers:
        thread.start()
    started.wait(timeout=30)
    wait_for_orders = time.monotonic() + 30
    while len(accepted) < 20:
        assert time.monotonic() < wait_for_orders
        time.sleep(0.001)
    outcome = clear(market, rules=rules)
    for thread in placers:
        thread.join(timeout=120)
    assert len(refused) == 3
    assert all("has been cleared" in reason for reason in refused)
    with Session(market) as session:
        stored = session.exec(
            select(func.count()).select_from(OrderRow).where(OrderRow.status == "open")
        ).one()
    assert stored == len(accepted) + 2  # the fixture's two orders
    assert outcome.run.orders == stored
