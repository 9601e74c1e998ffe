"""Random sequences of order operations keep the market's invariants (hypothesis, on SQLite)."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import Session, col, select

from market.clearing import clear_interval, trades_of, verify_run
from market.database import create_database_engine, transaction, upgrade_database
from market.errors import MarketError
from market.intervals import period_at
from market.orders import amend_order, cancel_order, place_order
from market.rules import MarketRules
from market.tables import OrderEventRow, OrderRow
from tests.factories import seed_market

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
RULES = MarketRules(max_open_orders=3)
PERIOD = period_at(NOW + timedelta(hours=1))
HOMES = ("H1", "H2", "H3")

operations = st.lists(
    st.one_of(
        st.tuples(
            st.just("place"),
            st.sampled_from(HOMES),
            st.sampled_from(["buy", "sell"]),
            st.integers(1, 5000),
            st.integers(0, 3000),
        ),
        st.tuples(st.just("amend"), st.integers(0, 20), st.integers(1, 5000), st.integers(0, 3000)),
        st.tuples(st.just("cancel"), st.integers(0, 20)),
    ),
    max_size=25,
)


def apply(engine, op, now, placed: list[tuple[str, str]]) -> None:
    """One operation in its own transaction; a refused one must leave nothing behind."""
    try:
        with transaction(engine) as session:
            if op[0] == "place":
                _, home, side, wh, ticks = op
                order, _ = place_order(
                    session,
                    rules=RULES,
                    participant_id=home,
                    period=PERIOD,
                    side=side,
                    quantity_kwh=Decimal(wh) / 1000,
                    price_p_per_kwh=Decimal(ticks) / 100,
                    now=now,
                )
                placed.append((order.id, home))
            elif placed:
                order_id, home = placed[op[1] % len(placed)]
                if op[0] == "cancel":
                    cancel_order(session, rules=RULES, order_id=order_id, participant_id=home, now=now)
                    return
                quantity, price = Decimal(op[2]) / 1000, Decimal(op[3]) / 100
                amend_order(
                    session,
                    rules=RULES,
                    order_id=order_id,
                    participant_id=home,
                    now=now,
                    quantity_kwh=quantity,
                    price_p_per_kwh=price,
                )
    except MarketError:
        pass


def check_history(session: Session, orders: list[OrderRow]) -> None:
    """Versions run 1..n without gaps, the last event is the order as it stands, one 'placed' first."""
    for home in HOMES:
        open_orders = sum(o.participant_id == home and o.status == "open" for o in orders)
        assert open_orders <= RULES.max_open_orders
    for order in orders:
        query = select(OrderEventRow).where(OrderEventRow.order_id == order.id)
        events = session.exec(query.order_by(col(OrderEventRow.version))).all()
        assert [e.version for e in events] == list(range(1, order.version + 1))
        last = events[-1]
        assert (last.quantity_wh, last.price_ticks, last.status) == (
            order.quantity_wh,
            order.price_ticks,
            order.status,
        )
        assert [e.kind for e in events].count("placed") == 1
        assert events[0].kind == "placed"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(operations, st.integers(0, 54))
def test_order_operations_keep_history_limits_and_clear_once(ops, minutes):
    """Operations spread over ``minutes`` after NOW (gate closure is at 55): some land late."""
    with tempfile.TemporaryDirectory() as folder:
        engine = create_database_engine(f"sqlite:///{Path(folder) / 'm.db'}")
        upgrade_database(engine)
        with transaction(engine) as session:
            seed_market(session, now=NOW)
        placed: list[tuple[str, str]] = []
        for step, op in enumerate(ops):
            apply(engine, op, NOW + timedelta(minutes=minutes * step / max(len(ops), 1)), placed)
        with Session(engine) as session:
            orders = list(session.exec(select(OrderRow)).all())
            assert len(orders) == len(placed)
            check_history(session, orders)

        after_gate = RULES.gate_closure_utc(PERIOD)
        first = clear_interval(engine, period=PERIOD, rules=RULES, now=after_gate, triggered_by="test")
        second = clear_interval(engine, period=PERIOD, rules=RULES, now=after_gate, triggered_by="test")
        assert first.created
        assert not second.created
        assert first.run.orders == sum(o.status == "open" for o in orders)
        with Session(engine) as session:
            by_id = {o.id: o for o in orders}
            for trade in trades_of(session, first.run.id):
                order = by_id[trade.order_id]
                assert order.status == "open"
                assert 0 < trade.accepted_kwh * 1000 <= order.quantity_wh
                assert trade.side == order.side
        assert verify_run(engine, first.run.id) == []
        engine.dispose()
