"""A household's batch of orders, on SQLite and PostgreSQL: placed whole with its history, or refused
whole naming the order and field; the open-order limit, gate closure, the network, idempotency, and
clearing racing batches."""

from __future__ import annotations

import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import Session, col, func, select
from sqlmodel import delete as sa_delete

from market.clearing import clear_interval
from market.database import create_database_engine, transaction, upgrade_database
from market.errors import ConflictError, MarketError, NotFoundError
from market.intervals import period_at
from market.network import publish_network
from market.orders import (
    MAX_BATCH_ORDERS,
    OrderBatch,
    OrderRequest,
    cancel_order,
    list_orders,
    order_history,
    place_order,
    place_orders,
)
from market.rules import MarketRules
from market.tables import OrderEventRow, OrderRow, ParticipantRow
from optimiser import Network
from tests.factories import node, seed_market

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
RULES = MarketRules()
NEXT = period_at(NOW + timedelta(hours=1))  # 13:00-13:30 UTC, gate closes 12:55
AFTER = NEXT.next()  # 13:30-14:00 UTC


@pytest.fixture
def market(engine):
    with transaction(engine) as session:
        seed_market(session, now=NOW)
    return engine


def request(**overrides) -> OrderRequest:
    values = {
        "period": NEXT,
        "side": "buy",
        "quantity_kwh": Decimal("1.5"),
        "price_p_per_kwh": Decimal("12.5"),
    }
    values.update(overrides)
    return OrderRequest(**values)


def place_batch(engine, requests, **overrides):
    values = {"rules": RULES, "participant_id": "H1", "requests": requests, "now": NOW}
    values.update(overrides)
    with transaction(engine) as session:
        return place_orders(session, **values)


def place_one(engine, **overrides):
    values = {
        "rules": RULES,
        "participant_id": "H1",
        "period": NEXT,
        "side": "buy",
        "quantity_kwh": Decimal("1"),
        "price_p_per_kwh": Decimal("10"),
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


def test_a_batch_is_stored_whole_with_its_history_in_request_order(market):
    requests = [
        request(),
        request(period=AFTER, side="sell", quantity_kwh=Decimal("0.25"), price_p_per_kwh=Decimal("-3.5")),
        request(price_p_per_kwh=Decimal("13"), node_id="F1"),
    ]
    orders, created = place_batch(market, requests, actor="hems-7")
    assert created
    assert [(o.period, o.side, o.quantity_kwh, o.price_p_per_kwh) for o in orders] == [
        (r.period, r.side, r.quantity_kwh, r.price_p_per_kwh) for r in requests
    ]
    assert all((o.participant_id, o.node_id, o.status, o.version) == ("H1", "F1", "open", 1) for o in orders)
    assert all(o.priority_at == o.created_at == o.updated_at == NOW for o in orders)
    assert len({o.id for o in orders}) == 3
    assert stored(market) == (3, 3)
    with Session(market) as session:
        assert sorted(o.id for o in list_orders(session, participant_id="H1")) == sorted(o.id for o in orders)
        by_id = {o.id: o for o in list_orders(session)}
        for order in orders:
            assert by_id[order.id] == order  # what was returned is what is stored
            [event] = order_history(session, order.id)
            assert (event.version, event.kind, event.status, event.at, event.actor) == (
                1,
                "placed",
                "open",
                NOW,
                "hems-7",
            )
            assert (event.quantity_kwh, event.price_p_per_kwh) == (order.quantity_kwh, order.price_p_per_kwh)


def test_events_name_the_household_by_default(market):
    orders, _ = place_batch(market, [request()])
    with Session(market) as session:
        assert [e.actor for e in order_history(session, orders[0].id)] == ["H1"]


@pytest.mark.parametrize(
    ("bad", "field", "reason"),
    [
        ({"quantity_kwh": Decimal("0")}, "quantity_kwh", "outside"),
        ({"quantity_kwh": Decimal("100.001")}, "quantity_kwh", "outside"),
        ({"quantity_kwh": Decimal("1.0001")}, "quantity_kwh", "finer than 0.001"),
        ({"quantity_kwh": "lots"}, "quantity_kwh", "must be a number"),
        ({"price_p_per_kwh": Decimal("1000.01")}, "price_p_per_kwh", "outside"),
        ({"price_p_per_kwh": Decimal("12.345")}, "price_p_per_kwh", "0.01 p/kWh tick"),
        ({"price_p_per_kwh": Decimal("NaN")}, "price_p_per_kwh", "finite"),
        ({"side": "hold"}, "side", "buy or sell"),
        ({"node_id": "F2"}, "node", "sits on 'F1'"),
        ({"period": period_at(NOW)}, "interval", "gate closure"),
        ({"period": period_at(NOW + timedelta(hours=2), length_minutes=60)}, "interval", "30-minute"),
    ],
)
def test_one_bad_order_stores_nothing_and_is_named(market, bad, field, reason):
    requests = [request(), request(period=AFTER), request(**bad), request()]
    with pytest.raises(MarketError) as caught:
        place_batch(market, requests)
    assert caught.value.field == f"orders[2].{field}"
    assert reason in caught.value.reason
    assert stored(market) == (0, 0)


def test_the_first_bad_order_is_named(market):
    requests = [request(), request(side="hold"), request(price_p_per_kwh=Decimal("0.001"))]
    with pytest.raises(MarketError) as caught:
        place_batch(market, requests)
    assert caught.value.field == "orders[1].side"


def test_a_batch_with_a_past_gate_interval_is_refused_whole(market):
    gate = RULES.gate_closure_utc(NEXT)
    with pytest.raises(MarketError, match="gate closure for 2026-11-21/27") as caught:
        place_batch(market, [request(period=AFTER), request(period=NEXT)], now=gate)
    assert caught.value.field == "orders[1].interval"
    assert stored(market) == (0, 0)
    orders, _ = place_batch(market, [request(period=AFTER)], now=gate)  # the later period is still open
    assert len(orders) == 1


@pytest.mark.parametrize(
    ("participant_id", "error", "reason"),
    [
        ("NOBODY", NotFoundError, "not a participant"),
        ("OPS", MarketError, "not a household"),
    ],
)
def test_only_households_place_batches(market, participant_id, error, reason):
    with pytest.raises(error, match=reason) as caught:
        place_batch(market, [request()], participant_id=participant_id)
    assert caught.value.field == "participant_id"
    assert stored(market) == (0, 0)


def test_empty_and_oversized_batches_are_refused(market):
    with pytest.raises(MarketError, match="at least one order") as caught:
        place_batch(market, [])
    assert caught.value.field == "orders"
    rules = MarketRules(max_open_orders=10_000)
    with pytest.raises(MarketError, match=f"at most {MAX_BATCH_ORDERS} orders, not {MAX_BATCH_ORDERS + 1}"):
        place_batch(market, [request()] * (MAX_BATCH_ORDERS + 1), rules=rules)
    assert stored(market) == (0, 0)
    orders, _ = place_batch(market, [request()] * MAX_BATCH_ORDERS, rules=rules)
    assert len(orders) == MAX_BATCH_ORDERS
    assert stored(market) == (MAX_BATCH_ORDERS, MAX_BATCH_ORDERS)


def test_the_open_order_limit_counts_the_batch_and_what_is_stored(market):
    rules = MarketRules(max_open_orders=3)
    first, _ = place_one(market, rules=rules)
    requests = [request(period=AFTER), request(), request(period=AFTER), request(), request()]
    with pytest.raises(MarketError) as caught:
        place_batch(market, requests, rules=rules)
    assert caught.value.field == "orders[4].interval"  # the fourth open order for NEXT
    assert caught.value.reason == (
        "household 'H1' would have 4 open orders for 2026-11-21/27 (1 open already, 3 in this batch): "
        "at most 3 may be open"
    )
    assert stored(market) == (1, 1)
    place_batch(market, requests[:4], rules=rules)  # NEXT: 1 + 2, AFTER: 2
    assert stored(market) == (5, 5)
    with pytest.raises(MarketError) as caught:
        place_batch(market, [request(period=AFTER), request()], rules=rules)
    assert caught.value.field == "orders[1].interval"
    with transaction(market) as session:
        cancel_order(session, rules=rules, order_id=first.id, participant_id="H1", now=NOW)
    place_batch(market, [request(period=AFTER), request()], rules=rules)  # a cancelled order frees its place
    place_batch(market, [request()] * 3, rules=rules, participant_id="H2")  # another household's limit
    assert stored(market) == (10, 11)


def test_a_batch_may_mix_intervals(market):
    periods = [NEXT, AFTER, AFTER.next(), NEXT, AFTER.next()]
    orders, _ = place_batch(
        market, [request(period=p) for p in periods], rules=MarketRules(max_open_orders=2)
    )
    assert [o.period for o in orders] == periods
    with Session(market) as session:
        for period in (NEXT, AFTER, AFTER.next()):
            assert len(list_orders(session, period=period)) == periods.count(period)


def test_a_cleared_interval_refuses_the_whole_batch(market):
    place_one(market)
    clear_interval(market, period=NEXT, rules=RULES, now=RULES.gate_closure_utc(NEXT), triggered_by="test")
    # A household whose clock is behind: its batch reaches the book after the clearing.
    with pytest.raises(MarketError, match="has been cleared") as caught:
        place_batch(market, [request(period=AFTER), request()])
    assert caught.value.field == "orders[1].interval"
    assert stored(market) == (1, 1)


def test_the_node_must_be_in_the_network_in_force_for_each_interval(market):
    # From AFTER on, the network no longer has F2 (H3's feeder): a version stored before publishing
    # refused to drop an active household's node, made here with H3 inactive for the moment.
    network = Network("GSP", (node("P1", "GSP", 500, 500, "0.4"), node("F1", "P1", 100, 100, "0.2")))
    with transaction(market) as session:
        h3 = session.get(ParticipantRow, "H3")
        h3.active = False
        session.flush()
        publish_network(session, network=network, effective_from_utc=AFTER.start_utc, now=NOW)
        h3.active = True
    with pytest.raises(
        MarketError, match="'F2' is not a node of the network in force for 2026-11-21/28"
    ) as caught:
        place_batch(market, [request(), request(period=AFTER)], participant_id="H3")
    assert caught.value.field == "orders[1].node"
    assert stored(market) == (0, 0)
    orders, _ = place_batch(market, [request(), request()], participant_id="H3")
    assert {o.node_id for o in orders} == {"F2"}
    place_batch(market, [request(), request(period=AFTER)], participant_id="H1")  # F1 is in both


def test_no_network_in_force_is_not_found(engine):
    with transaction(engine) as session:
        seed_market(session, now=NOW, effective_from=AFTER.start_utc)
    with pytest.raises(NotFoundError, match="no network version is in force") as caught:
        place_batch(engine, [request(period=AFTER), request()])
    assert caught.value.field == "orders[1].network"


def test_an_idempotency_key_places_a_batch_once(market):
    requests = [request(), request(period=AFTER, side="sell")]
    first, created = place_batch(market, requests, idempotency_key="day-1")
    again, created_again = place_batch(market, requests, idempotency_key="day-1")
    assert (created, created_again) == (True, False)
    assert again == first
    assert stored(market) == (2, 2)
    # A retry arriving after the first interval's gate closed still gets its answer.
    late, _ = place_batch(market, requests, idempotency_key="day-1", now=RULES.gate_closure_utc(NEXT))
    assert [o.id for o in late] == [o.id for o in first]
    for different in (requests[:1], [*requests, request()], [requests[0], request(period=AFTER, side="buy")]):
        with pytest.raises(ConflictError, match="a different batch") as caught:
            place_batch(market, different, idempotency_key="day-1")
        assert caught.value.field == "Idempotency-Key"
    other, created_other = place_batch(market, requests, participant_id="H2", idempotency_key="day-1")
    assert created_other
    assert {o.id for o in other}.isdisjoint(o.id for o in first)
    assert stored(market) == (4, 4)


def test_batch_and_single_keys_do_not_mix(market):
    place_one(market, idempotency_key="k")
    with pytest.raises(ConflictError, match="a single order"):
        place_batch(market, [request()], idempotency_key="k")
    place_batch(market, [request()], idempotency_key="b")
    with pytest.raises(ConflictError, match="a batch of orders"):
        place_one(market, idempotency_key="b")
    long_key = "x" * 128
    place_batch(market, [request()] * 3, idempotency_key=long_key)
    assert place_batch(market, [request()] * 3, idempotency_key=long_key)[1] is False
    with pytest.raises(MarketError, match="1 to 128") as caught:
        place_batch(market, [request()], idempotency_key="x" * 129)
    assert caught.value.field == "Idempotency-Key"
    assert stored(market) == (5, 5)


def test_orders_placed_as_a_batch_amend_cancel_and_clear_like_any_other(market):
    orders, _ = place_batch(
        market,
        [request(price_p_per_kwh=Decimal("20")), request(side="sell", price_p_per_kwh=Decimal("5"))],
        participant_id="H1",
    )
    with transaction(market) as session:
        cancel_order(session, rules=RULES, order_id=orders[0].id, participant_id="H1", now=NOW)
    outcome = clear_interval(
        market, period=NEXT, rules=RULES, now=RULES.gate_closure_utc(NEXT), triggered_by="test"
    )
    assert outcome.run.orders == 1
    with Session(market) as session:
        assert [e.kind for e in order_history(session, orders[0].id)] == ["placed", "cancelled"]


def test_batches_racing_gate_closure_are_either_cleared_or_refused_whole(market, database_url):
    """Households keep placing batches (their clocks just before the gate) while the interval is
    cleared: each batch commits before the clearing reads the book, or is refused whole."""
    rules = MarketRules(max_open_orders=100_000)
    just_before = RULES.gate_closure_utc(NEXT) - timedelta(microseconds=1)
    started = threading.Barrier(4)
    accepted: list[list[str]] = []
    refused: list[str] = []

    def place_until_refused(home: str) -> None:
        engine = create_database_engine(database_url)
        started.wait(timeout=30)
        try:
            deadline = time.monotonic() + 90  # until the clearing refuses it (a batch takes ms)
            while time.monotonic() < deadline:
                try:
                    with transaction(engine) as session:
                        orders, _ = place_orders(
                            session,
                            rules=rules,
                            participant_id=home,
                            requests=[request(period=NEXT), request(period=AFTER), request(period=NEXT)],
                            now=just_before,
                        )
                    accepted.append([o.id for o in orders])
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
    while len(accepted) < 10:
        assert time.monotonic() < wait_for_orders
        time.sleep(0.001)
    outcome = clear_interval(
        market, period=NEXT, rules=rules, now=just_before + timedelta(seconds=1), triggered_by="t"
    )
    for thread in placers:
        thread.join(timeout=120)
    assert len(refused) == 3
    assert all("has been cleared" in reason for reason in refused)
    with Session(market) as session:
        next_orders = session.exec(
            select(func.count()).select_from(OrderRow).where(OrderRow.interval_start_utc == NEXT.start_utc)
        ).one()
        after_orders = session.exec(
            select(func.count()).select_from(OrderRow).where(OrderRow.interval_start_utc == AFTER.start_utc)
        ).one()
    assert (next_orders, after_orders) == (2 * len(accepted), len(accepted))  # no batch split
    assert outcome.run.orders == next_orders


# --- a batch is the same as its orders one by one -------------------------------------------------

HOME_RULES = MarketRules(max_open_orders=3)
batches = st.lists(
    st.tuples(
        st.sampled_from([0, 1, 2]),  # which period after NEXT
        st.sampled_from(["buy", "sell"]),
        st.integers(0, 5001),  # Wh; 0 is refused, 5001 is fine (the bound is 100 kWh)
        st.integers(-10_001, 3000),  # ticks; below -10,000 is refused
    ),
    min_size=1,
    max_size=8,
)


def book_of(session: Session, home: str) -> tuple[list[tuple], list[tuple]]:
    """A household's orders and events, without ids, in a canonical order."""
    orders = session.exec(select(OrderRow).where(OrderRow.participant_id == home)).all()
    kept = sorted(
        (
            o.node_id,
            o.interval_start_utc,
            o.side,
            o.quantity_wh,
            o.price_ticks,
            o.status,
            o.version,
            o.priority_at,
        )
        for o in orders
    )
    events = session.exec(
        select(OrderEventRow).where(col(OrderEventRow.order_id).in_([o.id for o in orders]))
    ).all()
    history = sorted((e.version, e.kind, e.quantity_wh, e.price_ticks, e.status, e.at) for e in events)
    return kept, history


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches, st.integers(0, 3))
def test_a_batch_stores_what_its_orders_placed_one_by_one_store(batch, already):
    """H1 places the batch, H2 (same feeder, the same ``already`` open orders in NEXT) the same
    orders one by one: the batch is refused exactly when some order is, and then stores nothing;
    otherwise both households end with the same book and history."""
    with tempfile.TemporaryDirectory() as folder:
        engine = create_database_engine(f"sqlite:///{Path(folder) / 'm.db'}")
        upgrade_database(engine)
        with transaction(engine) as session:
            seed_market(session, now=NOW)
        for home in ("H1", "H2"):
            for _ in range(min(already, HOME_RULES.max_open_orders)):
                place_one(engine, rules=HOME_RULES, participant_id=home)
        periods = [NEXT, AFTER, AFTER.next()]
        requests = [
            OrderRequest(periods[p], side, Decimal(wh) / 1000, Decimal(ticks) / 100)
            for p, side, wh, ticks in batch
        ]
        refusals = []
        for r in requests:
            try:
                place_one(
                    engine,
                    rules=HOME_RULES,
                    participant_id="H2",
                    period=r.period,
                    side=r.side,
                    quantity_kwh=r.quantity_kwh,
                    price_p_per_kwh=r.price_p_per_kwh,
                )
            except MarketError as error:
                refusals.append(error.field)
        with Session(engine) as session:
            before = book_of(session, "H1")
        if refusals:
            with pytest.raises(MarketError) as caught:
                place_batch(engine, requests, rules=HOME_RULES, participant_id="H1")
            assert caught.value.field.split(".", 1)[1] in refusals
            with Session(engine) as session:
                assert book_of(session, "H1") == before
        else:
            place_batch(engine, requests, rules=HOME_RULES, participant_id="H1")
            with Session(engine) as session:
                assert book_of(session, "H1") == book_of(session, "H2")
        engine.dispose()


# --- many households' orders in one transaction (OrderBatch) ------------------------------------


def orders_and_events(engine) -> list[tuple]:
    """Every stored order and its events, without ids or times of storing."""
    with Session(engine) as session:
        orders = session.exec(select(OrderRow).order_by(OrderRow.participant_id, OrderRow.price_ticks)).all()
        events = session.exec(select(OrderEventRow)).all()
        by_order = {event.order_id: event for event in events}
        return [
            (
                o.participant_id,
                o.node_id,
                o.interval_start_utc,
                o.side,
                o.quantity_wh,
                o.price_ticks,
                o.status,
                o.version,
                o.source,
                o.priority_at,
                o.created_at,
                o.updated_at,
                by_order[o.id].kind,
                by_order[o.id].at,
                by_order[o.id].actor,
                by_order[o.id].quantity_wh,
            )
            for o in orders
        ]


def test_a_batch_of_households_stores_what_each_placed_alone_stores(market):
    wanted = {
        "H1": [request(), request(period=AFTER, side="sell", price_p_per_kwh=Decimal("4"))],
        "H3": [request(price_p_per_kwh=Decimal("9.5"), quantity_kwh=Decimal("0.75"))],
    }
    for household, requests in wanted.items():
        place_batch(market, requests, participant_id=household, actor="platform", source="strategy")
    alone = orders_and_events(market)
    with transaction(market) as session:
        session.exec(sa_delete(OrderEventRow))
        session.exec(sa_delete(OrderRow))
    batch = OrderBatch()
    with transaction(market) as session:
        for household, requests in wanted.items():
            placed, created = place_orders(
                session,
                rules=RULES,
                participant_id=household,
                requests=requests,
                now=NOW,
                actor="platform",
                source="strategy",
                batch=batch,
            )
            assert created
            assert [o.participant_id for o in placed] == [household] * len(requests)
        assert session.exec(select(func.count()).select_from(OrderRow)).one() == 0  # kept, not written
        assert batch.write(session) == 3
    assert orders_and_events(market) == alone


def test_a_batch_counts_its_kept_orders_against_the_open_order_limit(market):
    rules = MarketRules(max_open_orders=2)
    batch = OrderBatch()
    with transaction(market) as session:
        place_orders(session, rules=rules, participant_id="H1", requests=[request()], now=NOW, batch=batch)
        with pytest.raises(MarketError) as caught:
            place_orders(
                session,
                rules=rules,
                participant_id="H1",
                requests=[request(), request()],
                now=NOW,
                batch=batch,
            )
        assert caught.value.field == "orders[1].interval"
        assert caught.value.reason.startswith("household 'H1' would have 3 open orders")
        place_orders(
            session, rules=rules, participant_id="H2", requests=[request()] * 2, now=NOW, batch=batch
        )
        batch.write(session)
    assert stored(market) == (3, 3)


def test_a_household_discarded_from_a_batch_leaves_the_others(market):
    batch = OrderBatch()
    with transaction(market) as session:
        place_orders(session, rules=RULES, participant_id="H1", requests=[request()], now=NOW, batch=batch)
        mark = batch.mark()
        place_orders(
            session, rules=RULES, participant_id="H2", requests=[request()] * 2, now=NOW, batch=batch
        )
        batch.discard_since(mark)  # H2's savepoint rolled back
        place_orders(session, rules=RULES, participant_id="H2", requests=[request()], now=NOW, batch=batch)
        batch.write(session)
    with Session(market) as session:
        counts = session.exec(
            select(OrderRow.participant_id, func.count()).group_by(OrderRow.participant_id)
        ).all()
    assert dict(counts) == {"H1": 1, "H2": 1}


def test_a_batch_refuses_what_a_single_placement_refuses(market):
    batch = OrderBatch()
    with transaction(market) as session:
        with pytest.raises(MarketError) as caught:
            place_orders(
                session,
                rules=RULES,
                participant_id="H1",
                requests=[request(), request(price_p_per_kwh=Decimal("12.345"))],
                now=NOW,
                batch=batch,
            )
        assert caught.value.field == "orders[1].price_p_per_kwh"
        with pytest.raises(ValueError, match="idempotency key"):
            place_orders(
                session,
                rules=RULES,
                participant_id="H1",
                requests=[request()],
                now=NOW,
                batch=batch,
                idempotency_key="k1",
            )
        assert batch.write(session) == 0
    assert stored(market) == (0, 0)


def test_what_a_batch_is_told_it_holds_is_what_it_counts(market):
    """A planning run's batch has read the household's open orders under its lock: placing counts
    those (and what it keeps), and reads the counts only for the periods it was not told of."""
    rules = MarketRules(max_open_orders=3)
    place_batch(market, [request(period=AFTER)] * 2, rules=rules)  # stored: 2 open for AFTER
    batch = OrderBatch()
    with transaction(market) as session:
        batch.hold("H1", node_id="F1", open_orders={NEXT.start_utc: 2}, books=[NEXT])
        with pytest.raises(MarketError) as caught:  # told 2 open for NEXT: a second makes 4
            place_orders(
                session, rules=rules, participant_id="H1", requests=[request()] * 2, now=NOW, batch=batch
            )
        assert caught.value.reason.startswith("household 'H1' would have 4 open orders for 2026-11-21/27")
        with pytest.raises(MarketError) as caught:  # AFTER was not told of: its 2 stored are read
            place_orders(
                session,
                rules=rules,
                participant_id="H1",
                requests=[request(period=AFTER)] * 2,
                now=NOW,
                batch=batch,
            )
        assert caught.value.reason.startswith("household 'H1' would have 4 open orders for 2026-11-21/28")
        place_orders(session, rules=rules, participant_id="H1", requests=[request()], now=NOW, batch=batch)
        assert batch.write(session) == 1
        assert batch.known_open == {}  # what it was told leaves out what it wrote
    assert stored(market) == (3, 3)
