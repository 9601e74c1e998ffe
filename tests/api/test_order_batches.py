"""POST /v1/orders/batch over real HTTP (httpx against the ASGI app), on both databases: a household's
orders placed together, all or none, naming the order at fault; idempotent; for households only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import Session, select

from market.intervals import period_at
from market.orders import MAX_BATCH_ORDERS
from market.tables import AuditEventRow, OrderEventRow, OrderRow
from tests.factories import api_client, auth, count_rows

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
NEXT = period_at(NOW + timedelta(hours=1))
AFTER = NEXT.next()
ORDER = {"interval": NEXT.key, "side": "buy", "quantity_kwh": "1.5", "price_p_per_kwh": "12.50"}
BATCH = {
    "orders": [
        ORDER,
        {
            "interval": AFTER.key,
            "side": "sell",
            "quantity_kwh": "0.25",
            "price_p_per_kwh": "-3.5",
            "node": "F1",
        },
        {**ORDER, "price_p_per_kwh": "13"},
    ]
}


@pytest.fixture
def api(engine, database_url):
    with api_client(engine, database_url, now=NOW) as client:
        yield client


def test_a_batch_is_placed_whole_in_request_order(api, engine):
    response = api.post("/v1/orders/batch", json=BATCH, headers=auth(api, "H1"))
    assert response.status_code == 201, response.text
    orders = response.json()["orders"]
    assert [(o["interval"]["key"], o["side"], o["quantity_kwh"], o["price_p_per_kwh"]) for o in orders] == [
        (NEXT.key, "buy", "1.5", "12.5"),
        (AFTER.key, "sell", "0.25", "-3.5"),
        (NEXT.key, "buy", "1.5", "13"),
    ]
    assert all(
        (o["participant_id"], o["node"], o["status"], o["version"]) == ("H1", "F1", "open", 1) for o in orders
    )
    assert orders[1]["interval"]["gate_closure_utc"] == "2026-11-21T13:25:00Z"
    assert (count_rows(engine, OrderRow), count_rows(engine, OrderEventRow)) == (3, 3)
    for order in orders:
        assert api.get(f"/v1/orders/{order['id']}", headers=auth(api, "H1")).json() == order
        history = api.get(f"/v1/orders/{order['id']}/history", headers=auth(api, "H1")).json()
        assert [(e["kind"], e["actor"], e["price_p_per_kwh"]) for e in history] == [
            ("placed", "H1", order["price_p_per_kwh"])
        ]
    listed = api.get("/v1/orders", headers=auth(api, "H1")).json()["items"]
    assert sorted(o["id"] for o in listed) == sorted(o["id"] for o in orders)


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ({"price_p_per_kwh": "12.345"}, "orders[1].price_p_per_kwh"),  # the market's tick
        ({"price_p_per_kwh": "x"}, "orders[1].price_p_per_kwh"),  # not a decimal at all
        ({"quantity_kwh": "-1"}, "orders[1].quantity_kwh"),
        ({"side": "hold"}, "orders[1].side"),
        ({"interval": "tomorrow"}, "orders[1].interval"),
        ({"interval": "2026-11-21/99"}, "orders[1].interval"),
        (
            {"interval": "2026-11-21/20"},
            "orders[1].interval",
        ),  # past gate closure: the batch is refused whole
        ({"node": "F2"}, "orders[1].node"),
        ({"extra": 1}, "orders[1].extra"),
    ],
)
def test_one_bad_order_refuses_the_batch_naming_the_order(api, engine, bad, field):
    body = {"orders": [ORDER, {**ORDER, **bad}, ORDER]}
    response = api.post("/v1/orders/batch", json=body, headers=auth(api, "H1"))
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == 422
    assert field in [error["field"] for error in problem["errors"]]
    assert field in problem["detail"]
    assert (count_rows(engine, OrderRow), count_rows(engine, OrderEventRow)) == (0, 0)


@pytest.mark.parametrize(
    "body",
    [{"orders": []}, {"orders": [ORDER] * (MAX_BATCH_ORDERS + 1)}, {}, {"orders": ORDER}, [ORDER]],
)
def test_a_batch_holds_1_to_the_maximum_orders(api, engine, body):
    response = api.post("/v1/orders/batch", json=body, headers=auth(api, "H1"))
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] in ("orders", "body")
    assert count_rows(engine, OrderRow) == 0


def test_a_batch_alone_over_the_limit_names_its_own_count(api, engine):
    response = api.post("/v1/orders/batch", json={"orders": [ORDER] * 11}, headers=auth(api, "H1"))
    assert response.status_code == 422
    [error] = response.json()["errors"]
    assert error["field"] == "orders[10].interval"
    assert "would have 11 open orders" in error["reason"]
    assert "(0 open already, 11 in this batch)" in error["reason"]
    assert count_rows(engine, OrderRow) == 0


def test_the_open_order_limit_counts_the_batch(api, engine):
    assert api.post("/v1/orders", json=ORDER, headers=auth(api, "H1")).status_code == 201
    response = api.post("/v1/orders/batch", json={"orders": [ORDER] * 10}, headers=auth(api, "H1"))
    assert response.status_code == 422
    [error] = response.json()["errors"]
    assert error["field"] == "orders[9].interval"
    assert "would have 11 open orders" in error["reason"]
    assert "(1 open already, 10 in this batch): at most 10 may be open" in error["reason"]
    assert count_rows(engine, OrderRow) == 1
    assert (
        api.post("/v1/orders/batch", json={"orders": [ORDER] * 9}, headers=auth(api, "H1")).status_code == 201
    )


def test_a_retried_batch_is_placed_once(api, engine):
    headers = {**auth(api, "H1"), "Idempotency-Key": "day-2026-11-21"}
    first = api.post("/v1/orders/batch", json=BATCH, headers=headers)
    assert first.status_code == 201, first.text
    again = api.post("/v1/orders/batch", json=BATCH, headers=headers)
    assert again.status_code == 200
    assert again.json() == first.json()
    clash = api.post("/v1/orders/batch", json={"orders": BATCH["orders"][:2]}, headers=headers)
    assert clash.status_code == 409
    assert clash.headers["content-type"] == "application/problem+json"
    assert clash.json()["errors"] == [
        {"field": "Idempotency-Key", "reason": "was already used for a different batch of orders"}
    ]
    single = api.post("/v1/orders", json=ORDER, headers=headers)
    assert single.status_code == 409
    assert (count_rows(engine, OrderRow), count_rows(engine, OrderEventRow)) == (3, 3)
    other = api.post(
        "/v1/orders/batch", json=BATCH, headers={**auth(api, "H2"), "Idempotency-Key": "day-2026-11-21"}
    )
    assert other.status_code == 201
    assert count_rows(engine, OrderRow) == 6


@pytest.mark.parametrize(
    ("who", "status"),
    [(None, 401), ("bad", 401), ("OPS", 403), ("H1", 201)],
)
def test_only_a_signed_in_household_places_batches(api, engine, who, status):
    headers = {"Authorization": "Bearer sbm_not-a-token"} if who == "bad" else auth(api, who)
    response = api.post("/v1/orders/batch", json=BATCH, headers=headers)
    assert response.status_code == status, response.text
    if status == 401:
        assert response.headers["www-authenticate"] == "Bearer"
    if status != 201:
        assert response.headers["content-type"] == "application/problem+json"
    assert count_rows(engine, OrderRow) == (3 if status == 201 else 0)


def test_the_single_route_answers_an_operator_the_same_way(api):
    # The batch route's authorisation is the single placement's.
    single = api.post("/v1/orders", json=ORDER, headers=auth(api, "OPS"))
    batch = api.post("/v1/orders/batch", json=BATCH, headers=auth(api, "OPS"))
    assert (single.status_code, batch.status_code) == (403, 403)
    assert single.json()["detail"] == batch.json()["detail"]


def test_another_household_does_not_see_the_batch(api):
    orders = api.post("/v1/orders/batch", json=BATCH, headers=auth(api, "H1")).json()["orders"]
    assert api.get(f"/v1/orders/{orders[0]['id']}", headers=auth(api, "H2")).status_code == 404
    assert api.get("/v1/orders", headers=auth(api, "H2")).json()["items"] == []
    assert len(api.get("/v1/orders", headers=auth(api, "OPS")).json()["items"]) == 3


def test_batches_are_audited_allowed_or_not(api, engine):
    api.post("/v1/orders/batch", json=BATCH, headers=auth(api, "H1"))
    api.post("/v1/orders/batch", json={"orders": [{**ORDER, "side": "hold"}]}, headers=auth(api, "H1"))
    api.post("/v1/orders/batch", json=BATCH)
    with Session(engine) as session:
        events = session.exec(select(AuditEventRow).order_by(AuditEventRow.id)).all()
    assert [(e.actor, e.method, e.path, e.status_code) for e in events] == [
        ("H1", "POST", "/v1/orders/batch", 201),
        ("H1", "POST", "/v1/orders/batch", 422),
        ("anonymous", "POST", "/v1/orders/batch", 401),
    ]


def test_the_batch_route_is_in_the_contract(api):
    document = api.get("/openapi.json").json()
    operation = document["paths"]["/v1/orders/batch"]["post"]
    assert {"201", "200", "401", "403", "409", "422"} <= set(operation["responses"])
    assert [p["name"] for p in operation["parameters"]] == ["idempotency-key"]
    batch = document["components"]["schemas"]["OrderBatchCreate"]
    assert batch["properties"]["orders"]["maxItems"] == MAX_BATCH_ORDERS
    assert batch["properties"]["orders"]["items"] == {"$ref": "#/components/schemas/OrderCreate"}
