"""Strategies over HTTP on both databases: a household's own, the operator's for any household,
problems naming each field, the audit log, orders' source, and who may do what."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlmodel import Session, select

from api.problems import MARKET_RULE
from market.autotrading import plan_strategies
from market.database import transaction
from market.intervals import period_at
from market.rules import MarketRules
from market.strategies import StrategyOrder, apply_strategy_orders
from market.tables import AuditEventRow, StrategyVersionRow
from tests.factories import api_client, auth, count_rows

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
NEXT = period_at(NOW + timedelta(hours=1))
STRATEGY = {
    "sell_floor_p_per_kwh": "5",
    "buy_ceiling_p_per_kwh": "25.5",
    "pv": {"kwp": "4.2"},
    "battery": {"capacity_kwh": "10", "charge_kw": 3, "discharge_kw": "3"},
    "ev": {"charge_kw": "7.4", "plugged_in_from": "18:00", "departure": "07:30", "energy_needed_kwh": "20"},
}


@pytest.fixture
def api(engine, database_url):
    with api_client(engine, database_url, now=NOW) as client:
        yield client


def test_a_household_states_pauses_resumes_and_removes_its_strategy(api, engine):
    h1 = auth(api, "H1")
    assert api.get("/v1/strategy", headers=h1).status_code == 404
    stated = api.put("/v1/strategy", json=STRATEGY, headers=h1)
    assert stated.status_code == 200, stated.text
    body = stated.json()
    assert (body["version"], body["paused"], body["removed"], body["created_by"]) == (1, False, False, "H1")
    assert (body["sell_floor_p_per_kwh"], body["buy_ceiling_p_per_kwh"]) == ("5", "25.5")
    assert body["pv"] == {
        "kwp": "4.2",
        "tilt_deg": "35",
        "azimuth_deg": "180",
        "latitude": "52.4862",
        "longitude": "-1.8904",
    }
    assert body["battery"]["charge_kw"] == "3"
    assert (body["ev"]["plugged_in_from"], body["ev"]["departure"]) == ("18:00", "07:30")
    assert api.get("/v1/strategy", headers=h1).json() == body
    assert api.post("/v1/strategy/pause", headers=h1).json()["paused"] is True
    changed = api.put("/v1/strategy", json={**STRATEGY, "pv": None}, headers=h1).json()
    assert (changed["version"], changed["paused"], changed["pv"]) == (3, True, None)
    assert api.post("/v1/strategy/resume", headers=h1).json()["paused"] is False
    assert api.delete("/v1/strategy", headers=h1).status_code == 204
    assert api.get("/v1/strategy", headers=h1).status_code == 404
    assert api.post("/v1/strategy/pause", headers=h1).status_code == 404
    history = api.get("/v1/strategy/history?limit=4", headers=h1).json()
    assert [(v["version"], v["paused"], v["removed"]) for v in history["items"]] == [
        (1, False, False),
        (2, True, False),
        (3, True, False),
        (4, False, False),
    ]
    assert history["next_offset"] == 4
    last = api.get("/v1/strategy/history?offset=4", headers=h1).json()["items"]
    assert [(v["version"], v["removed"], v["sell_floor_p_per_kwh"]) for v in last] == [(5, True, None)]
    with Session(engine) as session:
        audited = session.exec(
            select(AuditEventRow).where(AuditEventRow.path.startswith("/v1/strategy"))
        ).all()
    assert [(a.method, a.path, a.status_code, a.actor) for a in audited] == [
        ("PUT", "/v1/strategy", 200, "H1"),
        ("POST", "/v1/strategy/pause", 200, "H1"),
        ("PUT", "/v1/strategy", 200, "H1"),
        ("POST", "/v1/strategy/resume", 200, "H1"),
        ("DELETE", "/v1/strategy", 204, "H1"),
        ("POST", "/v1/strategy/pause", 404, "H1"),
    ]


@pytest.mark.parametrize(
    ("change", "fields", "type_"),
    [
        ({"pv": {"kwp": "0"}}, ["pv.kwp"], MARKET_RULE),
        (
            {"battery": {**STRATEGY["battery"], "min_soc_percent": "60", "max_soc_percent": "50"}},
            ["battery.max_soc_percent"],
            MARKET_RULE,
        ),
        ({"ev": {**STRATEGY["ev"], "departure": "18:00"}}, ["ev.departure"], MARKET_RULE),
        ({"sell_floor_p_per_kwh": "-500"}, ["sell_floor_p_per_kwh"], MARKET_RULE),  # the rules: -100 at least
        ({"pv": {"kwp": "101"}, "ev": None}, ["pv.kwp"], MARKET_RULE),
        ({"buy_ceiling_p_per_kwh": "1.001"}, ["buy_ceiling_p_per_kwh"], MARKET_RULE),
        ({"buy_ceiling_p_per_kwh": 25.5}, ["buy_ceiling_p_per_kwh"], "about:blank"),  # a binary float
        ({"ev": {**STRATEGY["ev"], "departure": "7:30"}}, ["ev.departure"], "about:blank"),
        ({"heat_pump": {}}, ["heat_pump"], "about:blank"),
    ],
)
def test_a_refused_strategy_names_each_field_and_stores_nothing(api, engine, change, fields, type_):
    response = api.put("/v1/strategy", json={**STRATEGY, **change}, headers=auth(api, "H1"))
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["type"] == type_
    assert [error["field"] for error in problem["errors"]][: len(fields)] == fields
    assert count_rows(engine, StrategyVersionRow) == 0


def test_the_operator_sees_and_changes_any_households_strategy(api):
    ops, h1, h2 = auth(api, "OPS"), auth(api, "H1"), auth(api, "H2")
    assert api.get("/v1/participants/H1/strategy", headers=ops).status_code == 404
    assert api.put("/v1/participants/H1/strategy", json=STRATEGY, headers=ops).json()["created_by"] == "OPS"
    assert api.get("/v1/strategy", headers=h1).json()["created_by"] == "OPS"
    assert api.get("/v1/strategy", headers=h2).status_code == 404  # H2 never sees H1's
    assert api.post("/v1/participants/H1/strategy/pause", headers=ops).json()["paused"] is True
    assert api.post("/v1/participants/H1/strategy/resume", headers=ops).json()["version"] == 3
    history = api.get("/v1/participants/H1/strategy/history", headers=ops).json()["items"]
    assert [v["created_by"] for v in history] == ["OPS", "OPS", "OPS"]
    assert api.delete("/v1/participants/H1/strategy", headers=ops).status_code == 204
    missing = api.get("/v1/participants/H9/strategy", headers=ops)
    assert (missing.status_code, missing.json()["errors"][0]["field"]) == (404, "participant_id")
    refused = api.put("/v1/participants/OPS/strategy", json=STRATEGY, headers=ops)
    assert (refused.status_code, refused.json()["errors"][0]["field"]) == (422, "participant_id")


def test_orders_show_their_source_and_who_acted(api, engine):
    h1 = auth(api, "H1")
    manual = api.post(
        "/v1/orders",
        json={"interval": NEXT.key, "side": "buy", "quantity_kwh": "1", "price_p_per_kwh": "10"},
        headers=h1,
    ).json()
    assert manual["source"] == "manual"
    api.put("/v1/strategy", json=STRATEGY, headers=h1)
    later = NEXT.next()
    with transaction(engine) as session:
        applied = apply_strategy_orders(
            session,
            rules=MarketRules(),
            participant_id="H1",
            desired={later: [StrategyOrder("sell", 1500, Decimal("6"))]},
            now=NOW,
        )
    placed = api.get(f"/v1/orders/{applied.placed[0]}", headers=h1).json()
    assert (placed["source"], placed["quantity_kwh"], placed["price_p_per_kwh"]) == ("strategy", "1.5", "6")
    history = api.get(f"/v1/orders/{applied.placed[0]}/history", headers=h1).json()
    assert [(e["kind"], e["actor"]) for e in history] == [("placed", "strategy")]
    assert {o["source"] for o in api.get("/v1/orders", headers=h1).json()["items"]} == {"manual", "strategy"}
    # Pausing cancels the strategy's open orders, and their history names who paused it.
    api.post("/v1/participants/H1/strategy/pause", headers=auth(api, "OPS"))
    history = api.get(f"/v1/orders/{applied.placed[0]}/history", headers=h1).json()
    assert [(e["kind"], e["actor"]) for e in history] == [("placed", "strategy"), ("cancelled", "OPS")]
    assert api.get(f"/v1/orders/{manual['id']}", headers=h1).json()["status"] == "open"


def test_a_household_sees_the_platforms_latest_plan_for_it_and_only_its_own(api, engine):
    h1, h2, ops = auth(api, "H1"), auth(api, "H2"), auth(api, "OPS")
    assert api.get("/v1/strategy/plan", headers=h1).status_code == 404  # no strategy, no plan
    assert api.put("/v1/strategy", json=STRATEGY, headers=h1).status_code == 200
    not_yet = api.get("/v1/strategy/plan", headers=h1)
    assert (not_yet.status_code, not_yet.json()["detail"]) == (404, "plan: household 'H1' has no plan yet")
    report = plan_strategies(engine, rules=MarketRules(), now=NOW)
    assert report.planned == 1, report.failed
    plan = api.get("/v1/strategy/plan", headers=h1)
    assert plan.status_code == 200, plan.text
    body = plan.json()
    first = report.periods[0]
    assert (body["participant_id"], body["planned_at"]) == ("H1", "2026-11-21T12:00:00Z")
    assert [(p["settlement_date"], p["period"]) for p in body["periods"]] == [
        (p.settlement_date.isoformat(), p.period) for p in report.periods
    ]
    assert (body["periods"][0]["start"], body["periods"][0]["end"]) == (
        first.start_utc.isoformat().replace("+00:00", "Z"),
        first.end_utc.isoformat().replace("+00:00", "Z"),
    )
    # The battery starts at its floor (10% of 10 kWh, the default) and stays within its capacity.
    assert Decimal(body["battery_start_kwh"]) == Decimal(1)
    assert all(Decimal(1) <= Decimal(p["battery_soc_kwh"]) <= Decimal(10) for p in body["periods"])
    # Plugged in from 18:00: nothing is charged in the afternoon's periods.
    assert all(p["ev_charge_kwh"] == "0" for p in body["periods"] if p["start"] < "2026-11-21T18:00")
    assert api.get("/v1/strategy/plan", headers=h2).status_code == 404  # H2's own: none
    assert api.get("/v1/participants/H1/strategy/plan", headers=h2).status_code == 403
    assert api.get("/v1/participants/H1/strategy/plan", headers=ops).json() == body
    assert api.get("/v1/participants/nobody/strategy/plan", headers=ops).status_code == 404
