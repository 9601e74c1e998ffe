"""The HTTP API through real HTTP requests (httpx against the ASGI app), on both databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from api.app import create_app
from api.deps import Platform
from market.clearing import clear_interval
from market.intervals import period_at
from market.rules import MarketRules
from market.tables import ApiTokenRow, AuditEventRow, MeterRow, OrderRow, SettlementRunRow
from tests.factories import api_client, auth, count_rows, mpan

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
NEXT = period_at(NOW + timedelta(hours=1))
ORDER = {"interval": NEXT.key, "side": "buy", "quantity_kwh": "1.5", "price_p_per_kwh": "12.50"}
STRATEGY = {"sell_floor_p_per_kwh": "5", "buy_ceiling_p_per_kwh": "25"}


@pytest.fixture
def api(engine, database_url):
    with api_client(engine, database_url, now=NOW) as client:
        yield client


def test_placing_is_idempotent_and_decimals_are_strings(api, engine):
    headers = {**auth(api, "H1"), "Idempotency-Key": "retry-me"}
    first = api.post("/v1/orders", json=ORDER, headers=headers)
    assert first.status_code == 201, first.text
    body = first.json()
    assert (body["quantity_kwh"], body["price_p_per_kwh"], body["node"]) == ("1.5", "12.5", "F1")
    assert body["interval"]["key"] == NEXT.key
    assert body["interval"]["start_utc"] == "2026-11-21T13:00:00Z"
    assert body["interval"]["gate_closure_utc"] == "2026-11-21T12:55:00Z"
    again = api.post("/v1/orders", json=ORDER, headers=headers)
    assert (again.status_code, again.json()["id"]) == (200, body["id"])
    clash = api.post("/v1/orders", json={**ORDER, "price_p_per_kwh": "13"}, headers=headers)
    assert clash.status_code == 409
    assert clash.headers["content-type"] == "application/problem+json"
    assert clash.json()["errors"] == [
        {"field": "Idempotency-Key", "reason": "was already used for a different order"}
    ]
    assert count_rows(engine, OrderRow) == 1


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"quantity_kwh": "-1"}, "quantity_kwh"),
        ({"quantity_kwh": "NaN"}, "quantity_kwh"),
        ({"quantity_kwh": "1e400"}, "quantity_kwh"),
        ({"quantity_kwh": 1.0005}, "quantity_kwh"),
        ({"price_p_per_kwh": "12.345"}, "price_p_per_kwh"),
        ({"price_p_per_kwh": "100000"}, "price_p_per_kwh"),
        ({"price_p_per_kwh": [1]}, "price_p_per_kwh"),
        ({"quantity_kwh": "\u0661"}, "quantity_kwh"),  # an Arabic-Indic one: not the pattern's digits
        ({"price_p_per_kwh": "1_000"}, "price_p_per_kwh"),
        ({"price_p_per_kwh": " 12"}, "price_p_per_kwh"),
        ({"quantity_kwh": "1."}, "quantity_kwh"),
        ({"side": "hold"}, "side"),
        ({"interval": "tomorrow"}, "interval"),
        ({"interval": "2026-11-21/99"}, "interval"),
        ({"interval": "2026-11-21/20"}, "interval"),  # past gate closure
        ({"node": "F2"}, "node"),
        ({"extra": 1}, "extra"),
    ],
)
def test_bad_orders_get_a_problem_naming_the_field_and_store_nothing(api, engine, change, field):
    response = api.post("/v1/orders", json={**ORDER, **change}, headers=auth(api, "H1"))
    assert response.status_code == 422, response.text
    problem = response.json()
    assert response.headers["content-type"] == "application/problem+json"
    assert problem["status"] == 422
    assert field in [error["field"] for error in problem["errors"]]
    assert count_rows(engine, OrderRow) == 0


@pytest.mark.parametrize("interval", ["0001-01-01/1", "1999-12-31/48", "2101-01-01/1", "9999-12-31/1"])
def test_dates_outside_the_platforms_range_are_refused_everywhere(api, engine, interval):
    """One bounded range (2000 to 2100) for orders, batches and settlement runs: a 422 naming the
    interval, never a 500 or a run for year 1."""
    responses = [
        api.post("/v1/orders", json={**ORDER, "interval": interval}, headers=auth(api, "H1")),
        api.post(
            "/v1/orders/batch", json={"orders": [{**ORDER, "interval": interval}]}, headers=auth(api, "H1")
        ),
        api.post("/v1/settlement/runs", json={"interval": interval}, headers=auth(api, "OPS")),
    ]
    for response in responses:
        assert response.status_code == 422, response.text
        assert any("interval" in error["field"] for error in response.json()["errors"]), response.text
        assert "outside the supported range (2000-01-01 to 2100-12-31)" in response.text
    assert count_rows(engine, OrderRow) == 0
    assert count_rows(engine, SettlementRunRow) == 0


@pytest.mark.parametrize(("token_id", "status"), [(2**31 - 1, 404), (2**31, 422), (2**62, 422)])
def test_a_token_id_beyond_its_column_is_a_clear_error(api, token_id, status):
    response = api.delete(f"/v1/tokens/{token_id}", headers=auth(api, "OPS"))
    assert response.status_code == status, response.text
    if status == 422:
        assert [error["field"] for error in response.json()["errors"]] == ["token_id"]


NUL = "a\x00b"
NUL_REQUESTS = [
    # method, path, query, JSON body, who asks, the field named
    ("get", "/v1/orders/a%00b", None, None, "H1", "order_id"),
    ("get", "/v1/orders/a%00b/history", None, None, "H1", "order_id"),
    ("patch", "/v1/orders/a%00b", None, {"price_p_per_kwh": "14"}, "H1", "order_id"),
    ("delete", "/v1/orders/a%00b", None, None, "H1", "order_id"),
    ("get", "/v1/orders", {"participant_id": NUL}, None, "OPS", "participant_id"),
    ("get", "/v1/trades", {"participant_id": NUL}, None, "OPS", "participant_id"),
    ("get", "/v1/readings", {"participant_id": NUL}, None, "OPS", "participant_id"),
    ("get", "/v1/energy", {"participant_id": NUL}, None, "OPS", "participant_id"),
    ("get", "/v1/statements/2026-11", {"participant_id": NUL}, None, "OPS", "participant_id"),
    ("get", "/v1/participants/a%00b", None, None, "OPS", "participant_id"),
    ("post", "/v1/participants/a%00b/tokens", None, {"label": "x"}, "OPS", "participant_id"),
    ("get", "/v1/audit", {"actor": NUL}, None, "OPS", "actor"),
    ("post", "/v1/participants/H1/tokens", None, {"label": NUL}, "OPS", "label"),
    ("post", "/v1/meters", None, {"id": "M9", "participant_id": "H1", "host": NUL}, "OPS", "host"),
    (
        "post",
        f"/v1/intervals/{NEXT.settlement_date}/{NEXT.period}/clear",
        None,
        {"reason": NUL},
        "OPS",
        "reason",
    ),
    ("post", "/v1/orders/batch", None, {"orders": [{**ORDER, "node": NUL}]}, "H1", "orders[0].node"),
]


@pytest.mark.parametrize(
    ("method", "path", "query", "body", "who", "field"),
    NUL_REQUESTS,
    ids=[f"{r[0]} {r[1]} {r[5]}" for r in NUL_REQUESTS],
)
def test_a_nul_character_is_refused_naming_the_field_on_every_database(
    api, engine, method, path, query, body, who, field
):
    """PostgreSQL cannot store a NUL in text: every route refuses it alike, before any query."""
    response = api.request(method.upper(), path, params=query, json=body, headers=auth(api, who))
    assert response.status_code == 422, response.text
    assert response.json()["errors"] == [{"field": field, "reason": "must not contain a NUL character"}]
    assert count_rows(engine, OrderRow) == 0


def test_a_meter_of_an_unknown_model_is_refused_naming_the_known_ones(api, engine):
    body = {"id": "M9", "participant_id": "H1", "host": "127.0.0.1", "model": "nope"}
    response = api.post("/v1/meters", json=body, headers=auth(api, "OPS"))
    assert response.status_code == 422, response.text
    [error] = response.json()["errors"]
    assert error["field"] == "model"
    assert error["reason"].startswith("'nope' is not a known meter model; known models: ")
    assert "sdm630" in error["reason"]
    assert "sunspec" in error["reason"]
    assert count_rows(engine, MeterRow) == 0
    assert api.post("/v1/meters", json={**body, "model": "em24"}, headers=auth(api, "OPS")).status_code == 201


def test_an_interval_is_not_settled_ahead_of_the_platforms_clock(api, engine):
    """The API takes no time from a client: settling the next interval now is a 422, and no run."""
    response = api.post("/v1/settlement/runs", json={"interval": NEXT.key}, headers=auth(api, "OPS"))
    assert response.status_code == 422, response.text
    [error] = response.json()["errors"]
    assert error["field"] == "interval"
    assert error["reason"].startswith(f"{NEXT.key} cannot be settled before its meter data is due")
    assert count_rows(engine, SettlementRunRow) == 0


def test_every_answer_carries_the_security_headers(api):
    for response in (
        api.get("/v1/participants", headers=auth(api, "OPS")),
        api.get("/v1/participants"),  # 401
        api.get("/openapi.json"),
    ):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"
    assert "frame-ancestors 'none'" in api.get("/docs").headers["content-security-policy"]  # test_docs.py


def test_a_body_over_the_limit_is_refused_before_it_is_read(api, engine):
    too_big = b'{"orders": [' + b" " * 1_048_576 + b"]}"
    declared = api.post(
        "/v1/orders/batch", content=too_big, headers={**auth(api, "H1"), "Content-Type": "application/json"}
    )
    assert declared.status_code == 413, declared.text
    assert declared.headers["content-type"] == "application/problem+json"
    assert declared.json()["errors"] == [{"field": "body", "reason": "must be at most 1048576 bytes"}]

    def chunks():
        yield b'{"orders": ['
        for _ in range(40):
            yield b" " * 32_768

    streamed = api.post(
        "/v1/orders/batch", content=chunks(), headers={**auth(api, "H1"), "Content-Type": "application/json"}
    )
    assert streamed.status_code == 413, streamed.text
    assert count_rows(engine, OrderRow) == 0
    with Session(engine) as session:
        audited = session.exec(select(AuditEventRow).where(AuditEventRow.status_code == 413)).all()
    assert len(audited) == 2  # refused, and still audited


def test_repeated_bad_tokens_from_one_client_are_throttled(api):
    for attempt in range(20):
        response = api.get("/v1/orders", headers={"Authorization": f"Bearer wrong-{attempt}"})
        assert response.status_code == 401
    throttled = api.get("/v1/orders", headers={"Authorization": "Bearer wrong-again"})
    assert throttled.status_code == 429, throttled.text
    assert 1 <= int(throttled.headers["retry-after"]) <= 60
    assert "too many failed authentications" in throttled.json()["detail"]
    # The client is refused whatever it sends until the window passes: no more guesses.
    assert api.get("/v1/orders", headers=auth(api, "H1")).status_code == 429


def test_amend_cancel_and_history(api):
    placed = api.post("/v1/orders", json=ORDER, headers=auth(api, "H1")).json()
    amended = api.patch(f"/v1/orders/{placed['id']}", json={"price_p_per_kwh": "14"}, headers=auth(api, "H1"))
    assert (amended.status_code, amended.json()["version"], amended.json()["price_p_per_kwh"]) == (
        200,
        2,
        "14",
    )
    cancelled = api.delete(f"/v1/orders/{placed['id']}", headers=auth(api, "H1"))
    assert cancelled.json()["status"] == "cancelled"
    history = api.get(f"/v1/orders/{placed['id']}/history", headers=auth(api, "H1")).json()
    assert [event["kind"] for event in history] == ["placed", "amended", "cancelled"]
    frozen = api.patch(f"/v1/orders/{placed['id']}", json={"quantity_kwh": "1"}, headers=auth(api, "H1"))
    assert frozen.status_code == 409


def test_households_see_only_their_own(api):
    placed = api.post("/v1/orders", json=ORDER, headers=auth(api, "H1")).json()
    path = f"/v1/orders/{placed['id']}"
    assert api.get(path, headers=auth(api, "H2")).status_code == 404
    assert api.get(path + "/history", headers=auth(api, "H2")).status_code == 404
    assert api.delete(path, headers=auth(api, "H2")).status_code == 404
    assert api.patch(path, json={"quantity_kwh": "1"}, headers=auth(api, "H2")).status_code == 404
    assert api.get("/v1/orders", headers=auth(api, "H2")).json()["items"] == []
    assert len(api.get("/v1/orders", headers=auth(api, "OPS")).json()["items"]) == 1
    assert api.get(path, headers=auth(api, "OPS")).status_code == 200


ROUTES = [
    ("get", "/v1/intervals?date=2026-11-21", None, "any"),
    ("get", f"/v1/intervals/{NEXT.settlement_date}/{NEXT.period}/clearing", None, "any"),
    ("post", "/v1/orders", ORDER, "household"),
    ("get", "/v1/orders", None, "any"),
    ("get", "/v1/orders/nope", None, "any"),
    ("patch", "/v1/orders/nope", {"quantity_kwh": "1"}, "household"),
    ("delete", "/v1/orders/nope", None, "household"),
    (
        "post",
        "/v1/participants",
        {"id": "H9", "display_name": "Nine", "mpan": mpan(9), "node": "F1"},
        "operator",
    ),
    ("get", "/v1/participants", None, "operator"),
    ("get", "/v1/participants/H1", None, "operator"),
    ("post", "/v1/participants/H1/tokens", {"label": "phone"}, "operator"),
    ("delete", "/v1/tokens/1", None, "operator"),
    ("get", "/v1/trades", None, "any"),
    ("get", "/v1/readings", None, "any"),
    ("get", "/v1/energy?date=2026-11-21", None, "any"),
    ("get", "/v1/statements/2026-11", None, "any"),
    ("get", "/v1/statements/days/2026-11-21", None, "any"),
    ("get", "/v1/network", None, "any"),
    ("get", "/v1/tariffs/current", None, "any"),
    ("post", "/v1/meters", {"id": "M9", "participant_id": "H1", "host": "10.0.0.9"}, "operator"),
    ("get", "/v1/meters", None, "operator"),
    (
        "post",
        "/v1/network",
        {"root": "GSP", "nodes": [], "effective_from_utc": "2027-01-01T00:00:00Z"},
        "operator",
    ),
    (
        "post",
        "/v1/tariffs",
        {"import_p_per_kwh": "25", "export_p_per_kwh": "5", "effective_from_utc": "2027-01-01T00:00:00Z"},
        "operator",
    ),
    ("post", f"/v1/intervals/{NEXT.settlement_date}/{NEXT.period}/clear", {}, "operator"),
    ("post", "/v1/settlement/runs", {"interval": NEXT.key}, "operator"),
    ("get", "/v1/settlement/export?date=2026-11-21", None, "operator"),
    ("get", "/v1/audit", None, "operator"),
    ("post", "/v1/meter-data", None, "operator"),  # the file's body: tests/api/test_meter_data_upload.py
    ("get", "/v1/strategy", None, "household"),
    ("put", "/v1/strategy", STRATEGY, "household"),
    ("post", "/v1/strategy/pause", None, "household"),
    ("post", "/v1/strategy/resume", None, "household"),
    ("get", "/v1/strategy/history", None, "household"),
    ("get", "/v1/strategy/plan", None, "household"),
    ("delete", "/v1/strategy", None, "household"),
    ("get", "/v1/participants/H1/strategy", None, "operator"),
    ("put", "/v1/participants/H1/strategy", STRATEGY, "operator"),
    ("post", "/v1/participants/H1/strategy/pause", None, "operator"),
    ("post", "/v1/participants/H1/strategy/resume", None, "operator"),
    ("get", "/v1/participants/H1/strategy/history", None, "operator"),
    ("get", "/v1/participants/H1/strategy/plan", None, "operator"),
    ("delete", "/v1/participants/H1/strategy", None, "operator"),
    ("get", "/open/v1/prices?node=F1", None, "public"),
    ("get", "/open/v1/prices/evcc?node=F1", None, "public"),
    ("get", "/open/v1/results?date=2026-11-20", None, "public"),
    ("get", "/open/v1/results?date=2026-11-20&format=csv", None, "public"),
    ("get", "/open/v1/results?date=2026-11-20&format=csv&table=totals", None, "public"),
]


@pytest.mark.parametrize(("method", "path", "body", "who"), ROUTES, ids=[f"{m} {p}" for m, p, _, _ in ROUTES])
def test_authorisation_matrix(api, method, path, body, who):
    call = getattr(api, method)
    kwargs = {"json": body} if body is not None else {}
    if who == "public":  # open data: answered without a token, and the same to everyone
        anonymous = call(path, **kwargs)
        assert anonymous.status_code == 200, anonymous.text
        assert "www-authenticate" not in anonymous.headers
        for headers in ({"Authorization": "Bearer sbm_not-a-token"}, auth(api, "H1"), auth(api, "OPS")):
            assert call(path, headers=headers, **kwargs).content == anonymous.content
        return
    anonymous = call(path, **kwargs)
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"] == "Bearer"
    bad = call(path, headers={"Authorization": "Bearer sbm_not-a-token"}, **kwargs)
    assert bad.status_code == 401
    if who == "operator":
        assert call(path, headers=auth(api, "H1"), **kwargs).status_code == 403
        assert call(path, headers=auth(api, "OPS"), **kwargs).status_code < 500
    elif who == "household":
        assert call(path, headers=auth(api, "OPS"), **kwargs).status_code == 403
        assert call(path, headers=auth(api, "H1"), **kwargs).status_code < 500
    else:
        assert call(path, headers=auth(api, "H1"), **kwargs).status_code in (200, 404)
        assert call(path, headers=auth(api, "OPS"), **kwargs).status_code in (200, 404)


def test_tokens_issued_by_the_operator_work_until_revoked(api, engine):
    created = api.post(
        "/v1/participants",
        json={"id": "H9", "display_name": "Nine", "mpan": mpan(9), "node": "F1"},
        headers=auth(api, "OPS"),
    )
    assert created.status_code == 201, created.text
    issued = api.post("/v1/participants/H9/tokens", json={"label": "phone"}, headers=auth(api, "OPS")).json()
    token = {"Authorization": f"Bearer {issued['token']}"}
    assert api.get("/v1/orders", headers=token).status_code == 200
    assert api.delete(f"/v1/tokens/{issued['id']}", headers=auth(api, "OPS")).status_code == 204
    assert api.get("/v1/orders", headers=token).status_code == 401
    duplicate = api.post(
        "/v1/participants",
        json={"id": "H9", "display_name": "Again", "mpan": mpan(10), "node": "F1"},
        headers=auth(api, "OPS"),
    )
    assert duplicate.status_code == 422
    assert duplicate.json()["errors"][0]["field"] == "participant_id"


def test_every_state_changing_request_is_audited(api, engine):
    headers = {**auth(api, "H1"), "Idempotency-Key": "k1"}
    placed = api.post("/v1/orders", json=ORDER, headers=headers).json()  # audited with the order
    api.post("/v1/orders", json=ORDER, headers=headers)  # a replay: 200
    api.post("/v1/orders", json=ORDER)  # refused: still audited
    api.post("/v1/orders", json={**ORDER, "quantity_kwh": "-1"}, headers=auth(api, "H1"))  # invalid
    api.delete(f"/v1/orders/{placed['id']}", headers=auth(api, "H2"))  # another's: 404
    api.patch(f"/v1/orders/{placed['id']}", json={"price_p_per_kwh": "13"}, headers=auth(api, "H1"))
    api.delete(f"/v1/orders/{placed['id']}", headers=auth(api, "H1"))
    api.get("/v1/orders", headers=auth(api, "H1"))  # a read: not audited
    with Session(engine) as session:
        events = session.exec(select(AuditEventRow).order_by(AuditEventRow.id)).all()
    assert [(e.actor, e.method, e.path, e.status_code) for e in events] == [
        ("H1", "POST", "/v1/orders", 201),
        ("H1", "POST", "/v1/orders", 200),
        ("anonymous", "POST", "/v1/orders", 401),
        ("H1", "POST", "/v1/orders", 422),
        ("H2", "DELETE", f"/v1/orders/{placed['id']}", 404),
        ("H1", "PATCH", f"/v1/orders/{placed['id']}", 200),
        ("H1", "DELETE", f"/v1/orders/{placed['id']}", 200),
    ]
    assert all(e.client for e in events)


def test_a_revoked_token_stops_working_at_once_where_revoked_and_within_the_cache_elsewhere(api, engine):
    other = TestClient(create_app(Platform(engine=engine, settings=api.app.state.platform.settings)))
    other.app.state.platform.token_cache_seconds = 0  # a second worker that checks every time
    token = {"Authorization": f"Bearer {api.tokens['H2']}"}
    assert api.get("/v1/orders", headers=token).status_code == 200  # now cached by this worker
    assert other.get("/v1/orders", headers=token).status_code == 200
    with Session(engine) as session:
        token_id = session.exec(select(ApiTokenRow.id).where(ApiTokenRow.participant_id == "H2")).one()
    assert other.delete(f"/v1/tokens/{token_id}", headers=auth(api, "OPS")).status_code == 204
    assert other.get("/v1/orders", headers=token).status_code == 401
    # This worker trusts its check for up to TOKEN_CACHE_SECONDS; an operator's change here
    # (or the time passing) makes it ask again.
    assert api.app.state.platform.tokens
    assert api.post("/v1/participants/H1/tokens", json={}, headers=auth(api, "OPS")).status_code == 201
    assert not api.app.state.platform.tokens
    assert api.get("/v1/orders", headers=token).status_code == 401


def test_intervals_are_paged_and_clearing_is_public(api, engine):
    page = api.get("/v1/intervals?date=2026-10-25&limit=20", headers=auth(api, "H2")).json()
    assert (len(page["items"]), page["next_offset"]) == (20, 20)
    last = api.get("/v1/intervals?date=2026-10-25&limit=20&offset=40", headers=auth(api, "H2")).json()
    assert (len(last["items"]), last["next_offset"], last["items"][-1]["period"]) == (10, None, 50)
    path = f"/v1/intervals/{NEXT.settlement_date}/{NEXT.period}/clearing"
    assert api.get(path, headers=auth(api, "H2")).status_code == 404
    api.post("/v1/orders", json=ORDER, headers=auth(api, "H1"))
    clear_interval(engine, period=NEXT, rules=MarketRules(), now=NEXT.start_utc, triggered_by="test")
    cleared = api.get(path, headers=auth(api, "H2")).json()
    assert cleared["orders"] == 1
    assert {price["node"] for price in cleared["prices"]} == {"GSP", "P1", "F1", "F2"}
    assert all(isinstance(price["price_p_per_kwh"], str) for price in cleared["prices"])


def test_a_day_from_orders_to_statement_over_http(api, engine):
    """Orders over HTTP, clearing and settlement triggered by the operator, the household's view."""
    bought = api.post("/v1/orders", json=ORDER, headers=auth(api, "H1")).json()
    assert (bought["status"], bought["filled_kwh"], bought["fill_price_p_per_kwh"]) == ("open", None, None)
    sell = {**ORDER, "side": "sell", "price_p_per_kwh": "5"}
    assert api.post("/v1/orders", json=sell, headers=auth(api, "H2")).status_code == 201
    path = f"/v1/intervals/{NEXT.settlement_date}/{NEXT.period}/clear"
    assert api.post(path, json={}, headers=auth(api, "OPS")).status_code == 422  # the gate has not closed
    api.clock.moment = NEXT.start_utc
    cleared = api.post(path, json={}, headers=auth(api, "OPS")).json()
    assert (cleared["created"], cleared["orders"]) == (True, 2)
    again = api.post(path, json={}, headers=auth(api, "OPS")).json()
    assert (again["created"], again["run_id"]) == (False, cleared["run_id"])
    reclear = api.post(path, json={"reason": "a late correction"}, headers=auth(api, "OPS")).json()
    assert (reclear["created"], reclear["sequence"]) == (True, 2)
    trades = api.get("/v1/trades?date=2026-11-21", headers=auth(api, "H1")).json()["items"]
    assert [(t["side"], t["accepted_kwh"]) for t in trades] == [("buy", "1.5")]
    # The order says how it ended, at the price it traded; a change to it is refused saying so.
    order = api.get(f"/v1/orders/{bought['id']}", headers=auth(api, "H1")).json()
    assert (order["status"], order["filled_kwh"]) == ("filled", "1.5")
    assert order["fill_price_p_per_kwh"] == trades[0]["price_p_per_kwh"]
    filled = api.get("/v1/orders?status=filled", headers=auth(api, "H1")).json()["items"]
    assert [o["id"] for o in filled] == [bought["id"]]
    refused = api.delete(f"/v1/orders/{bought['id']}", headers=auth(api, "H1"))
    assert refused.status_code == 409
    assert "is filled" in refused.json()["detail"]
    assert api.get("/v1/trades?participant_id=H2", headers=auth(api, "H1")).status_code == 404
    assert len(api.get("/v1/trades", headers=auth(api, "OPS")).json()["items"]) == 2
    api.clock.moment = NEXT.end_utc + timedelta(minutes=20)
    settled = api.post("/v1/settlement/runs", json={"interval": NEXT.key}, headers=auth(api, "OPS")).json()
    # No meters in this market: trades are settled, imbalances wait for meter data.
    assert (settled[0]["status"], sorted(settled[0]["pending"])) == ("partial", ["H1", "H2"])
    statement = api.get("/v1/statements/2026-11", headers=auth(api, "H1")).json()
    assert statement["total"]["bought_kwh"] == "1.5"
    # No meter data: the trade is settled, the day is not final, and no saving is claimed.
    assert (statement["total"]["final"], statement["total"]["saving_p"], statement["settled_days"]) == (
        False,
        None,
        0,
    )
    assert statement["total"]["intervals"] == {
        "settled": 0,
        "estimated": 0,
        "awaiting_meter_data": 1,
        "not_settled": 47,
    }
    day = api.get(f"/v1/statements/days/{NEXT.settlement_date}", headers=auth(api, "H1")).json()
    interval = next(row for row in day["intervals"] if row["interval"]["key"] == NEXT.key)
    assert (interval["status"], interval["figures"]["bought_kwh"]) == ("awaiting_meter_data", "1.5")
    assert "meter" in interval["reason"]
    assert day["total"]["total_p"] == statement["total"]["total_p"]
    other = api.get(f"/v1/statements/days/{NEXT.settlement_date}?participant_id=H2", headers=auth(api, "H1"))
    assert other.status_code == 404
    assert api.get("/v1/statements/days/2026-11-31", headers=auth(api, "H1")).status_code == 422
    export = api.get("/v1/settlement/export?date=2026-11-21", headers=auth(api, "OPS"))
    assert export.headers["content-type"].startswith("text/csv")
    assert export.text.splitlines()[0].startswith("run_id,run_type")
    audit = api.get("/v1/audit?actor=OPS", headers=auth(api, "OPS")).json()["items"]
    assert audit[0]["path"] == "/v1/settlement/runs"


def test_operator_manages_meters_network_and_tariffs(api):
    meter = {"id": "M1", "participant_id": "H1", "host": "10.0.0.5", "port": 502, "unit_id": 3}
    assert api.post("/v1/meters", json=meter, headers=auth(api, "OPS")).status_code == 201
    assert api.post("/v1/meters", json={**meter, "id": "M2"}, headers=auth(api, "OPS")).status_code == 422
    tree = {
        "root": "GSP",
        "nodes": [
            {"id": "P1", "parent": "GSP", "import_capacity_kwh": "500", "export_capacity_kwh": "500"},
            {"id": "F1", "parent": "P1", "import_capacity_kwh": "50", "export_capacity_kwh": "50"},
            {"id": "F2", "parent": "GSP", "import_capacity_kwh": "50", "export_capacity_kwh": "5"},
        ],
        "effective_from_utc": "2027-01-01T00:00:00Z",
    }
    published = api.post("/v1/network", json=tree, headers=auth(api, "OPS"))
    assert published.status_code == 201, published.text
    cyclic = {
        **tree,
        "nodes": [
            {"id": "A", "parent": "B", "import_capacity_kwh": 1, "export_capacity_kwh": 1},
            {"id": "B", "parent": "A", "import_capacity_kwh": 1, "export_capacity_kwh": 1},
        ],
        "effective_from_utc": "2027-02-01T00:00:00Z",
    }
    refused = api.post("/v1/network", json=cyclic, headers=auth(api, "OPS"))
    assert refused.status_code == 422
    assert "cycle" in refused.json()["detail"]
    current = api.get("/v1/network", headers=auth(api, "H1")).json()
    assert {n["id"] for n in current["nodes"]} == {"P1", "F1", "F2"}
    future = api.get("/v1/network?at=2027-01-02T00:00:00Z", headers=auth(api, "H1")).json()
    assert {n["id"]: n["parent"] for n in future["nodes"]} == {"P1": "GSP", "F1": "P1", "F2": "GSP"}
    inverted = {
        "import_p_per_kwh": "4",
        "export_p_per_kwh": "5",
        "effective_from_utc": "2027-01-01T00:00:00Z",
    }
    assert api.post("/v1/tariffs", json=inverted, headers=auth(api, "OPS")).status_code == 422
    assert api.get("/v1/tariffs/current", headers=auth(api, "H1")).json()["import_p_per_kwh"] == "24.5"
