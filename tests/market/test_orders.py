"""Orders up to gate closure, on SQLite and PostgreSQL: lifecycle, history, and every rejection."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlmodel import Session, func, select

from market.clearing import clear_interval, node_prices
from market.database import transaction
from market.errors import ConflictError, MarketError, NotFoundError
from market.intervals import period_at
from market.orders import (
    BookLevel,
    amend_order,
    book_levels,
    cancel_order,
    get_order,
    list_orders,
    order_history,
    place_order,
)
from market.rules import MarketRules
from market.tables import OrderEventRow, OrderRow
from tests.factories import seed_market

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
RULES = MarketRules()
NEXT = period_at(NOW + timedelta(hours=1))  # 13:00-13:30 UTC, gate closes 12:55


@pytest.fixture
def market(engine):
    with transaction(engine) as session:
        seed_market(session, now=NOW)
    return engine


def place(engine, **overrides):
    values = {
        "rules": RULES,
        "participant_id": "H1",
        "period": NEXT,
        "side": "buy",
        "quantity_kwh": Decimal("1.5"),
        "price_p_per_kwh": Decimal("12.5"),
        "now": NOW,
    }
    values.update(overrides)
    with transaction(engine) as session:
        return place_order(session, **values)


def stored(engine) -> tuple[int, int]:
    with Session(engine) as session:
        orders = session.exec(select(func.count()).select_from(OrderRow)).one()
        events = session.exec(select(func.count()).select_from(OrderEventRow)).one()
    return orders, events


def test_place_amend_cancel_keeps_every_version(market):
    order, created = place(market)
    assert created
    assert (order.side, order.quantity_kwh, order.price_p_per_kwh, order.status) == ("buy", 1.5, 12.5, "open")
    assert order.node_id == "F1"
    assert order.period == NEXT
    later = NOW + timedelta(minutes=10)
    with transaction(market) as session:
        amended = amend_order(
            session,
            rules=RULES,
            order_id=order.id,
            participant_id="H1",
            now=later,
            price_p_per_kwh=Decimal("14"),
        )
    assert (amended.version, amended.price_p_per_kwh, amended.priority_at) == (2, 14, later)
    with transaction(market) as session:
        cancelled = cancel_order(session, rules=RULES, order_id=order.id, participant_id="H1", now=later)
    assert (cancelled.status, cancelled.version) == ("cancelled", 3)
    with Session(market) as session:
        history = order_history(session, order.id)
    assert [(e.version, e.kind, e.price_p_per_kwh, e.status) for e in history] == [
        (1, "placed", Decimal("12.5"), "open"),
        (2, "amended", Decimal("14"), "open"),
        (3, "cancelled", Decimal("14"), "cancelled"),
    ]


def test_lowering_quantity_keeps_time_priority_raising_it_loses_it(market):
    order, _ = place(market)
    first, second = NOW + timedelta(minutes=1), NOW + timedelta(minutes=2)
    with transaction(market) as session:
        lower = amend_order(
            session, rules=RULES, order_id=order.id, participant_id="H1", now=first, quantity_kwh=Decimal("1")
        )
    assert lower.priority_at == NOW
    with transaction(market) as session:
        higher = amend_order(
            session,
            rules=RULES,
            order_id=order.id,
            participant_id="H1",
            now=second,
            quantity_kwh=Decimal("2"),
        )
    assert higher.priority_at == second


@pytest.mark.parametrize(
    ("overrides", "field", "reason"),
    [
        ({"now": datetime(2026, 11, 21, 12, 55, tzinfo=UTC)}, "interval", "gate closure"),
        ({"period": period_at(NOW)}, "interval", "gate closure"),
        ({"period": period_at(NOW + timedelta(hours=1), length_minutes=60)}, "interval", "30-minute"),
        ({"quantity_kwh": Decimal("0")}, "quantity_kwh", "outside"),
        ({"quantity_kwh": Decimal("-1")}, "quantity_kwh", "outside"),
        ({"quantity_kwh": Decimal("100.001")}, "quantity_kwh", "outside"),
        ({"quantity_kwh": Decimal("1.0001")}, "quantity_kwh", "finer than 0.001"),
        ({"quantity_kwh": Decimal("NaN")}, "quantity_kwh", "finite"),
        ({"quantity_kwh": "lots"}, "quantity_kwh", "must be a number"),
        ({"price_p_per_kwh": Decimal("1000.01")}, "price_p_per_kwh", "outside"),
        ({"price_p_per_kwh": Decimal("-100.01")}, "price_p_per_kwh", "outside"),
        ({"price_p_per_kwh": Decimal("12.345")}, "price_p_per_kwh", "0.01 p/kWh tick"),
        ({"price_p_per_kwh": Decimal("Infinity")}, "price_p_per_kwh", "finite"),
        ({"side": "hold"}, "side", "buy or sell"),
        ({"participant_id": "NOBODY"}, "participant_id", "not a participant"),
        ({"participant_id": "OPS"}, "participant_id", "not a household"),
        ({"node_id": "F2"}, "node", "sits on 'F1'"),
        ({"idempotency_key": ""}, "Idempotency-Key", "1 to 128"),
    ],
)
def test_rejections_name_the_field_and_store_nothing(market, overrides, field, reason):
    with pytest.raises(MarketError) as caught:
        place(market, **overrides)
    assert caught.value.field == field
    assert reason in caught.value.reason
    assert stored(market) == (0, 0)


def test_household_on_a_node_outside_the_network_is_refused(market):
    from market.participants import register_household
    from market.tables import ParticipantRow
    from tests.factories import mpan

    with (
        pytest.raises(MarketError, match="'F9' is not a node of the network"),
        transaction(market) as session,
    ):
        register_household(
            session, participant_id="H9", display_name="Nine", mpan=mpan(9), node_id="F9", now=NOW
        )
    with transaction(market) as session:  # one stored before registration checked the node
        session.add(
            ParticipantRow(
                id="H9", kind="household", display_name="Nine", mpan=mpan(9), node_id="F9", created_at=NOW
            )
        )
    with pytest.raises(MarketError, match="'F9' is not a node of the network"):
        place(market, participant_id="H9")


def test_too_many_open_orders(market):
    rules = MarketRules(max_open_orders=2)
    place(market, rules=rules)
    second, _ = place(market, rules=rules)
    with pytest.raises(MarketError, match="already has 2 open orders") as caught:
        place(market, rules=rules)
    assert caught.value.field == "interval"
    with transaction(market) as session:
        cancel_order(session, rules=rules, order_id=second.id, participant_id="H1", now=NOW)
    place(market, rules=rules)  # a cancelled order frees its place
    assert stored(market)[0] == 3


def test_idempotency_key_places_once(market):
    first, created = place(market, idempotency_key="req-1")
    again, created_again = place(market, idempotency_key="req-1")
    assert (created, created_again) == (True, False)
    assert again.id == first.id
    with pytest.raises(ConflictError) as caught:
        place(market, idempotency_key="req-1", price_p_per_kwh=Decimal("13"))
    assert caught.value.field == "Idempotency-Key"
    other, created_other = place(market, participant_id="H2", idempotency_key="req-1")
    assert created_other
    assert other.id != first.id
    assert stored(market) == (2, 2)


def test_orders_freeze_at_gate_closure(market):
    order, _ = place(market)
    gate = RULES.gate_closure_utc(NEXT)
    with transaction(market) as session, pytest.raises(ConflictError, match="frozen"):
        amend_order(session, rules=RULES, order_id=order.id, participant_id="H1", now=gate, price_p_per_kwh=1)
    with transaction(market) as session, pytest.raises(ConflictError, match="frozen"):
        cancel_order(session, rules=RULES, order_id=order.id, participant_id="H1", now=gate)
    with transaction(market) as session:
        cancel_order(
            session, rules=RULES, order_id=order.id, participant_id="H1", now=gate - timedelta(microseconds=1)
        )


def test_an_order_reports_how_it_ended_once_its_interval_is_cleared(market):
    """A8: filled, partly filled (with the energy filled), unfilled; cancelled stays cancelled."""
    sold, _ = place(market, participant_id="H3", side="sell", quantity_kwh=Decimal("1"), price_p_per_kwh=5)
    whole, _ = place(market, participant_id="H1", quantity_kwh=Decimal("0.6"), price_p_per_kwh=20)
    part, _ = place(market, participant_id="H2", quantity_kwh=Decimal("0.6"), price_p_per_kwh=15)
    none, _ = place(market, participant_id="H2", quantity_kwh=Decimal("1"), price_p_per_kwh=1)
    withdrawn, _ = place(market, participant_id="H1", quantity_kwh=Decimal("1"), price_p_per_kwh=23)
    with transaction(market) as session:
        cancel_order(session, rules=RULES, order_id=withdrawn.id, participant_id="H1", now=NOW)
    with Session(market) as session:
        assert {o.status for o in list_orders(session)} == {"open", "cancelled"}
        assert get_order(session, whole.id).filled_kwh is None

    gate = RULES.gate_closure_utc(NEXT)
    run = clear_interval(market, period=NEXT, rules=RULES, now=gate, triggered_by="test").run
    with Session(market) as session:
        prices = {p.node_id: p.price_p_per_kwh for p in node_prices(session, run.id)}
        outcome = {o.id: (o.status, o.filled_kwh, o.fill_price_p_per_kwh) for o in list_orders(session)}
        assert outcome == {
            sold.id: ("filled", Decimal("1"), prices["F2"]),
            whole.id: ("filled", Decimal("0.6"), prices["F1"]),
            part.id: ("partly_filled", Decimal("0.4"), prices["F1"]),
            none.id: ("unfilled", Decimal("0"), None),
            withdrawn.id: ("cancelled", None, None),
        }
        assert get_order(session, part.id).status == "partly_filled"
        assert [o.id for o in list_orders(session, status="unfilled")] == [none.id]
        assert {o.id for o in list_orders(session, status=("filled", "partly_filled"))} == {
            sold.id,
            whole.id,
            part.id,
        }
        assert list_orders(session, status="open") == []
        # The book the curves are drawn from: by side and price, the cancelled order left out,
        # the same after clearing as before.
        assert book_levels(session, NEXT) == [
            BookLevel("buy", 100, 1000, 1),  # 1p/kWh (in 0.01 p ticks), 1 kWh
            BookLevel("buy", 1500, 600, 1),
            BookLevel("buy", 2000, 600, 1),
            BookLevel("sell", 500, 1000, 1),
        ]
        assert book_levels(session, NEXT.next()) == []
        assert (
            book_levels(session, NEXT)[1].price_p_per_kwh,
            book_levels(session, NEXT)[1].quantity_kwh,
        ) == (
            Decimal(15),
            Decimal("0.6"),
        )
    # A filled order says so when a change is refused, not that it is "frozen".
    with transaction(market) as session, pytest.raises(ConflictError, match=r"is filled: .* cleared"):
        cancel_order(session, rules=RULES, order_id=whole.id, participant_id="H1", now=gate)


def test_households_see_only_their_own_orders(market):
    order, _ = place(market)
    with Session(market) as session:
        assert get_order(session, order.id, participant_id="H1").id == order.id
        with pytest.raises(NotFoundError):
            get_order(session, order.id, participant_id="H2")
        with pytest.raises(NotFoundError):
            order_history(session, order.id, participant_id="H2")
        assert list_orders(session, participant_id="H2") == []
        assert [o.id for o in list_orders(session, period=NEXT)] == [order.id]
    with transaction(market) as session, pytest.raises(NotFoundError):
        cancel_order(session, rules=RULES, order_id=order.id, participant_id="H2", now=NOW)


def test_the_book_adds_up_orders_at_one_price(market):
    place(market, participant_id="H1", quantity_kwh=Decimal("0.5"))
    place(market, participant_id="H2", quantity_kwh=Decimal("0.25"))
    place(
        market, participant_id="H3", side="sell", quantity_kwh=Decimal("2"), price_p_per_kwh=Decimal("12.5")
    )
    with Session(market) as session:
        assert book_levels(session, NEXT) == [
            BookLevel("buy", 1250, 750, 2),
            BookLevel("sell", 1250, 2000, 1),
        ]
