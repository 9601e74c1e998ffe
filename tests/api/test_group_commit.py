"""A household's order changes that arrive together are committed together (api/group_commit.py),
on both databases: each made exactly as alone, with its event and audit row; a refusal leaves the
others; one household's changes keep their order; a transaction that fails is retried change by
change; over HTTP, concurrent requests get the answers they would one at a time."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx2
import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, select
from starlette.requests import Request

from api.deps import Platform
from api.group_commit import GroupCommit, OrderChange, placement
from api.settings import Settings
from market.database import transaction
from market.errors import MarketError
from market.intervals import period_at
from market.orders import amend_order, cancel_order, place_order
from market.rules import MarketRules
from market.tables import AuditEventRow, OrderEventRow, OrderRow
from tests.factories import FixedClock, api_client, auth, seed_market

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
NEXT = period_at(NOW + timedelta(hours=1))
PAST = period_at(NOW - timedelta(hours=1))


def _request() -> Request:
    return Request(
        {"type": "http", "method": "POST", "path": "/v1/orders", "client": ("192.0.2.7", 1), "headers": []}
    )


def _placement(  # type: ignore[no-untyped-def]
    who: str,
    period,
    *,
    price: str = "12.5",
    key: str | None = None,
    fault: bool = False,
    commit_fault: bool = False,
) -> OrderChange:
    def place(session):  # type: ignore[no-untyped-def]
        if fault:  # the database refuses this placement's statement: its transaction is lost
            session.execute(text("SELECT * FROM no_such_table"))
        if commit_fault:  # the transaction's commit fails: whether it was kept is unknown
            event.listen(session, "before_commit", _commit_lost)
        return _buy(session, who, period, price, key)

    request = _request()
    request.state.participant_id = who
    return placement(who, place, request)


def _buy(session, who: str, period, price: str, key: str | None = None):  # type: ignore[no-untyped-def]
    """1.5 kWh bought by ``who`` for ``period`` at ``price``, as place_order places it."""
    return place_order(
        session,
        rules=MarketRules(),
        participant_id=who,
        period=period,
        side="buy",
        quantity_kwh=Decimal("1.5"),
        price_p_per_kwh=Decimal(price),
        now=NOW,
        idempotency_key=key,
    )


def _commit_lost(session) -> None:  # type: ignore[no-untyped-def]
    raise OperationalError("COMMIT", {}, ConnectionError("the connection was lost"))


@pytest.fixture
def group_commit(engine, database_url) -> GroupCommit:
    with transaction(engine) as session:
        seed_market(session, now=NOW)
    return GroupCommit(
        Platform(engine=engine, settings=Settings(database_url=database_url), clock=FixedClock(NOW))
    )


async def _together(group_commit: GroupCommit, placements: list[OrderChange]) -> list:
    # gather starts every placement before the writer runs: they all wait for one transaction
    return await asyncio.gather(*(group_commit.write(p) for p in placements), return_exceptions=True)


def _orders(engine) -> list[OrderRow]:  # type: ignore[no-untyped-def]
    with Session(engine) as session:
        return list(session.exec(select(OrderRow)).all())


def _events(engine) -> list[OrderEventRow]:  # type: ignore[no-untyped-def]
    with Session(engine) as session:
        return list(session.exec(select(OrderEventRow)).all())


def _audits(engine) -> list[AuditEventRow]:  # type: ignore[no-untyped-def]
    with Session(engine) as session:
        return list(session.exec(select(AuditEventRow)).all())


def test_placements_waiting_together_share_one_transaction(group_commit, engine):
    placements = [_placement(who, NEXT, price=str(10 + i)) for i, who in enumerate(["H2", "H1", "H3", "H1"])]
    outcomes = asyncio.run(_together(group_commit, placements))
    assert (group_commit.transactions, group_commit.changes) == (1, 4)
    assert [created for _, created in outcomes] == [True] * 4
    assert [(o.participant_id, o.price_p_per_kwh) for o, _ in outcomes] == [
        ("H2", Decimal(10)),
        ("H1", Decimal(11)),
        ("H3", Decimal(12)),
        ("H1", Decimal(13)),
    ]
    stored = {row.id for row in _orders(engine)}
    assert stored == {o.id for o, _ in outcomes}
    assert sorted(e.order_id for e in _events(engine) if e.kind == "placed") == sorted(stored)
    audits = _audits(engine)
    assert sorted(a.actor for a in audits) == ["H1", "H1", "H2", "H3"]
    assert {(a.method, a.path, a.status_code, a.client) for a in audits} == {
        ("POST", "/v1/orders", 201, "192.0.2.7")
    }
    assert all(p.request.state.audited for p in placements)


def test_a_refusal_leaves_the_others_of_its_transaction(group_commit, engine):
    placements = [_placement("H1", NEXT), _placement("H2", PAST), _placement("H3", NEXT)]
    outcomes = asyncio.run(_together(group_commit, placements))
    assert isinstance(outcomes[1], MarketError)
    assert outcomes[1].field == "interval"
    assert group_commit.transactions == 1
    assert sorted(row.participant_id for row in _orders(engine)) == ["H1", "H3"]
    assert sorted(a.actor for a in _audits(engine)) == ["H1", "H3"]  # the refusal's is the middleware's
    assert [getattr(p.request.state, "audited", False) for p in placements] == [True, False, True]


def test_one_key_twice_in_a_transaction_places_one_order(group_commit, engine):
    outcomes = asyncio.run(
        _together(
            group_commit, [_placement("H1", NEXT, key="retry-1"), _placement("H1", NEXT, key="retry-1")]
        )
    )
    (first, created_first), (second, created_second) = outcomes
    assert (created_first, created_second) == (True, False)
    assert first.id == second.id
    assert len(_orders(engine)) == 1
    assert sorted(a.status_code for a in _audits(engine)) == [200, 201]


def test_a_transaction_the_database_fails_is_retried_placement_by_placement(group_commit, engine):
    placements = [_placement("H1", NEXT), _placement("H2", NEXT, fault=True), _placement("H3", NEXT)]
    outcomes = asyncio.run(_together(group_commit, placements))
    assert not isinstance(outcomes[0], BaseException)
    assert not isinstance(outcomes[2], BaseException)
    assert isinstance(outcomes[1], Exception)
    assert not isinstance(outcomes[1], MarketError)
    assert group_commit.transactions == 2  # the group's rolled back; H1's and H3's alone committed
    assert sorted(row.participant_id for row in _orders(engine)) == ["H1", "H3"]
    assert sorted(a.actor for a in _audits(engine)) == ["H1", "H3"]
    assert len(_events(engine)) == 2


def test_concurrent_requests_get_the_answers_they_would_alone(engine, database_url):
    """Over HTTP: 20 requests at once from two households, among them a refused one and a retried
    key, each answered as it would be alone; every request audited once."""
    body = {"interval": NEXT.key, "side": "sell", "quantity_kwh": "0.5", "price_p_per_kwh": "9"}
    with api_client(engine, database_url, now=NOW) as client:
        app = client.app

        async def send_all() -> list[httpx2.Response]:
            async with httpx2.AsyncClient(
                transport=httpx2.ASGITransport(app=app), base_url="http://t"
            ) as http:
                requests = [
                    http.post(
                        "/v1/orders", json={**body, "price_p_per_kwh": str(5 + i)}, headers=auth(client, who)
                    )
                    for i, who in enumerate(["H1", "H2"] * 8)
                ]
                requests.append(
                    http.post("/v1/orders", json={**body, "node": "F2"}, headers=auth(client, "H1"))
                )  # not its node
                requests.extend(
                    http.post(
                        "/v1/orders", json=body, headers={**auth(client, "H2"), "Idempotency-Key": "k-7"}
                    )
                    for _ in range(3)
                )
                return await asyncio.gather(*requests)

        answers = asyncio.run(send_all())
    statuses = [answer.status_code for answer in answers]
    assert statuses[:16] == [201] * 16
    assert statuses[16] == 422
    assert answers[16].json()["errors"][0]["field"] == "node"
    assert sorted(statuses[17:]) == [200, 200, 201]
    assert len({answer.json()["id"] for answer in answers[17:]}) == 1
    orders = _orders(engine)
    assert len(orders) == 17
    assert sorted(row.price_ticks for row in orders if row.idempotency_key is None) == [
        (5 + i) * 100 for i in range(16)
    ]
    audits = [a for a in _audits(engine) if a.path == "/v1/orders"]
    assert sorted(a.status_code for a in audits) == [200, 200] + [201] * 17 + [422]


def test_a_request_cancelled_while_waiting_is_written_and_audited_once(group_commit, engine):
    placements = [_placement("H1", NEXT), _placement("H2", NEXT)]
    audited_when_answered: list[bool] = []

    async def cancel_the_second() -> list:
        tasks = [asyncio.ensure_future(group_commit.write(p)) for p in placements]
        tasks[1].add_done_callback(
            lambda _: audited_when_answered.append(getattr(placements[1].request.state, "audited", False))
        )
        await asyncio.sleep(0)  # both waiting for the writer
        tasks[1].cancel()
        return await asyncio.gather(*tasks, return_exceptions=True)

    outcomes = asyncio.run(cancel_the_second())
    assert isinstance(outcomes[1], asyncio.CancelledError)
    assert sorted(row.participant_id for row in _orders(engine)) == ["H1", "H2"]
    assert sorted(a.actor for a in _audits(engine)) == ["H1", "H2"]
    # The cancelled request ends only once its audit row is committed: the middleware, which
    # runs as it ends, leaves it.
    assert audited_when_answered == [True]


def test_a_failed_commit_is_not_tried_again(group_commit, engine):
    """Whether a transaction whose commit failed was kept is unknown: trying its placements again
    could place an order twice, so every request hears the error instead (a retry with its
    Idempotency-Key would then get its order once)."""
    placements = [_placement("H1", NEXT), _placement("H2", NEXT, commit_fault=True), _placement("H3", NEXT)]
    outcomes = asyncio.run(_together(group_commit, placements))
    assert all(isinstance(outcome, OperationalError) for outcome in outcomes)
    assert group_commit.transactions == 0
    assert _orders(engine) == []
    assert _audits(engine) == []


def _change(who: str, write) -> OrderChange:  # type: ignore[no-untyped-def]
    request = _request()
    request.state.participant_id = who
    return OrderChange(who, write, request)


def _place_now(engine, who: str, price: str = "12.5") -> str:  # type: ignore[no-untyped-def]
    with transaction(engine) as session:
        order, _ = _buy(session, who, NEXT, price)
    return order.id


def test_one_households_changes_keep_their_order_in_a_transaction(group_commit, engine):
    """An amendment, a cancellation and an amendment of one order, and another household's
    cancellation of it, waiting together: made in the order they came, as one after the other
    would be (the second amendment finds the order cancelled; the other household finds nothing)."""
    order_id = _place_now(engine, "H2")
    rules = MarketRules()

    def amend(price: str):  # type: ignore[no-untyped-def]
        return lambda session: amend_order(
            session,
            rules=rules,
            order_id=order_id,
            participant_id="H2",
            now=NOW,
            price_p_per_kwh=Decimal(price),
        )

    def cancel(who: str):  # type: ignore[no-untyped-def]
        return lambda session: cancel_order(
            session, rules=rules, order_id=order_id, participant_id=who, now=NOW
        )

    changes = [
        _change("H2", amend("14")),
        _change("H1", cancel("H1")),
        _change("H2", cancel("H2")),
        _change("H2", amend("15")),
    ]
    outcomes = asyncio.run(_together(group_commit, changes))
    assert (group_commit.transactions, group_commit.changes) == (1, 4)
    assert outcomes[0].price_p_per_kwh == Decimal(14)
    assert isinstance(outcomes[1], MarketError)
    assert outcomes[1].field == "order_id"  # not H1's order: not found
    assert outcomes[2].status == "cancelled"
    assert isinstance(outcomes[3], MarketError)  # cancelled already
    assert "cancelled" in str(outcomes[3])
    with Session(engine) as session:
        stored = session.get(OrderRow, order_id)
        assert stored is not None
        assert (stored.status, stored.price_ticks, stored.version) == ("cancelled", 1400, 3)
    assert [(e.version, e.kind) for e in sorted(_events(engine), key=lambda e: e.version)] == [
        (1, "placed"),
        (2, "amended"),
        (3, "cancelled"),
    ]
    audits = _audits(engine)
    assert sorted((a.actor, a.status_code) for a in audits) == [("H2", 200), ("H2", 200)]
    assert [getattr(c.request.state, "audited", False) for c in changes] == [True, False, True, False]


def test_concurrent_cancels_and_amendments_get_the_answers_they_would_alone(engine, database_url):
    """Over HTTP: each of two households amends and cancels its own orders at once, one cancels
    an order twice and tries the other's; every answer is the one it would get alone and every
    request is audited once."""
    with api_client(engine, database_url, now=NOW) as client:
        app = client.app
        ids = {who: [_place_now(engine, who, str(10 + i)) for i in range(4)] for who in ("H1", "H2")}

        async def send_all() -> list[httpx2.Response]:
            async with httpx2.AsyncClient(
                transport=httpx2.ASGITransport(app=app), base_url="http://t"
            ) as http:
                requests = []
                for who, own in ids.items():
                    headers = auth(client, who)
                    requests += [
                        http.patch(f"/v1/orders/{own[0]}", json={"price_p_per_kwh": "20"}, headers=headers),
                        http.delete(f"/v1/orders/{own[1]}", headers=headers),
                        http.delete(f"/v1/orders/{own[2]}", headers=headers),
                        http.patch(f"/v1/orders/{own[3]}", json={"quantity_kwh": "0.0005"}, headers=headers),
                    ]
                requests.append(http.delete(f"/v1/orders/{ids['H1'][1]}", headers=auth(client, "H1")))
                requests.append(http.delete(f"/v1/orders/{ids['H2'][2]}", headers=auth(client, "H1")))
                return await asyncio.gather(*requests)

        answers = asyncio.run(send_all())
    statuses = [answer.status_code for answer in answers]
    assert [statuses[i] for i in (0, 2, 3)] == [200, 200, 422]
    assert statuses[4:8] == [200, 200, 200, 422]
    assert answers[3].json()["errors"][0]["field"] == "quantity_kwh"
    # H1 cancels one order twice: whichever comes first cancels it, the other finds it cancelled
    assert sorted([statuses[1], statuses[8]]) == [200, 409]
    assert statuses[9] == 404  # H2's order is not H1's to cancel
    with Session(engine) as session:
        rows = {row.id: row for row in session.exec(select(OrderRow)).all()}
    for own in ids.values():
        assert rows[own[0]].price_ticks == 2000
        assert [rows[i].status for i in own] == ["open", "cancelled", "cancelled", "open"]
        assert rows[own[3]].quantity_wh == 1500
    audits = [a for a in _audits(engine) if a.path.startswith("/v1/orders/")]
    assert sorted(a.status_code for a in audits) == sorted(statuses)
