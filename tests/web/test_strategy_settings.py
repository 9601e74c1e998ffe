"""The household's strategy on its Settings page, on both databases: who may post its forms (the
authorisation matrix), errors in plain words beside each field, pause, resume and removal, and
each order's source and who changed it on the Orders pages."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal
from html import unescape

from sqlmodel import Session

from market.autotrading import plan_strategies
from market.database import transaction
from market.intervals import period_at
from market.rules import MarketRules
from market.strategies import StrategyOrder, apply_strategy_orders, strategy_history, strategy_of
from market.tables import StrategyVersionRow
from tests.factories import count_rows
from tests.web.conftest import NOW
from web.format import period_label

NEXT = period_at(NOW + timedelta(hours=1))
FORM = {"sell_floor_p_per_kwh": "5", "buy_ceiling_p_per_kwh": "25"}
FULL = {
    **FORM,
    "pv_kwp": "4.2",
    "battery_capacity_kwh": "10",
    "battery_charge_kw": "3.6",
    "battery_discharge_kw": "3.6",
    "ev_charge_kw": "7.4",
    "ev_plugged_in_from": "18:00",
    "ev_departure": "07:30",
    "ev_energy_needed_kwh": "20",
}


def _errors(html: str) -> dict[str, str]:
    found = re.findall(r'<span class="error" id="([a-z_]+)-error">([^<]*)<', html)
    return {field: unescape(words) for field, words in found}


def test_the_authorisation_matrix_over_the_strategy_forms(web, engine):
    forms = [
        ("/settings/strategy", FORM, {"none": 303, "OPS": 403, "H2": 303, "H1": 303}),
        ("/settings/strategy/pause", {}, {"none": 303, "OPS": 403, "H2": 303, "H1": 303}),
        ("/settings/strategy/resume", {}, {"none": 303, "OPS": 403, "H2": 303, "H1": 303}),
        ("/settings/strategy/remove", {}, {"none": 303, "OPS": 403, "H2": 303, "H1": 303}),
        ("/settings/strategy/pause", {}, {"H1": 404}),  # removed: nothing to pause
    ]
    wrong = []
    for path, data, expected in forms:
        for who, status in expected.items():
            response = web[who].client.post(path, data={**data, "csrf_token": web[who].csrf})
            if response.status_code != status:
                wrong.append((who, path, response.status_code, status))
    assert wrong == []
    with Session(engine) as session:
        for home in ("H1", "H2"):  # each changed only its own
            assert [
                (v.version, v.paused, v.removed, v.created_by) for v in strategy_history(session, home)
            ] == [
                (1, False, False, home),
                (2, True, False, home),
                (3, False, False, home),
                (4, True, True, home),
            ]
    forged = web["H1"].client.post("/settings/strategy", data={**FORM, "csrf_token": web["H2"].csrf})
    assert forged.status_code == 403
    assert count_rows(engine, StrategyVersionRow) == 8


def test_the_form_states_the_strategy_and_shows_it(web, engine):
    h1 = web["H1"]
    page = h1.client.get("/settings").text
    assert "You have no strategy" in page
    saved = h1.client.post("/settings/strategy", data={**FULL, "csrf_token": h1.csrf})
    assert (saved.status_code, saved.headers["location"]) == (303, "/settings?strategy=saved")
    with Session(engine) as session:
        stored = strategy_of(session, "H1")
    assert stored is not None
    assert stored.strategy is not None
    assert stored.strategy.battery is not None
    assert stored.strategy.ev is not None
    assert (stored.strategy.battery.min_soc_percent, str(stored.strategy.ev.departure)) == (
        Decimal(10),
        "07:30:00",
    )
    page = h1.client.get("/settings?strategy=saved").text
    assert "Your strategy is saved" in page
    assert "Your strategy is <strong>running</strong> (version 1" in page
    assert 'value="4.2"' in page
    assert 'value="07:30"' in page
    paused = h1.client.post("/settings/strategy/pause", data={"csrf_token": h1.csrf})
    assert paused.headers["location"] == "/settings?strategy=paused"
    page = h1.client.get(paused.headers["location"]).text
    assert "<strong>paused</strong>" in page
    assert "Resume my strategy" in page
    # Saving again keeps it paused; leaving a device's fields empty removes the device.
    h1.client.post("/settings/strategy", data={**FORM, "csrf_token": h1.csrf})
    with Session(engine) as session:
        stored = strategy_of(session, "H1")
    assert stored is not None
    assert stored.paused
    assert stored.strategy is not None
    assert stored.strategy.battery is None


def test_refusals_are_plain_words_beside_each_field_and_store_nothing(web, engine):
    h1 = web["H1"]
    cases = [
        ({"sell_floor_p_per_kwh": ""}, "sell_floor_p_per_kwh", "Lowest price you sell at: enter a price"),
        ({"buy_ceiling_p_per_kwh": "lots"}, "buy_ceiling_p_per_kwh", "enter a number, like 12.5"),
        ({"buy_ceiling_p_per_kwh": "2000"}, "buy_ceiling_p_per_kwh", "must be at most 1000"),
        ({"sell_floor_p_per_kwh": "-200"}, "sell_floor_p_per_kwh", "outside the market's -100 to 1000 p/kWh"),
        ({"sell_floor_p_per_kwh": "1.234"}, "sell_floor_p_per_kwh", "use at most 2 decimal places"),
        ({"pv_kwp": "0"}, "pv_kwp", "Peak power (kWp): must be more than 0"),
        ({"pv_kwp": "", "pv_tilt_deg": "30"}, "pv_kwp", "Peak power (kWp): is needed"),
        ({"battery_max_soc_percent": "5"}, "battery_max_soc_percent", "must be above the lowest charge"),
        ({"battery_reserve_kwh": "20"}, "battery_reserve_kwh", "Reserve kept for you (kWh): must be at most"),
        ({"ev_departure": "18:00"}, "ev_departure", "Leaves at: must differ from the time it is plugged in"),
        (
            {"ev_energy_needed_kwh": "150"},
            "ev_energy_needed_kwh",
            "more than the charger delivers between plugging in and leaving",
        ),
        ({"ev_plugged_in_from": "6pm"}, "ev_plugged_in_from", "enter a time as HH:MM"),
    ]
    wrong = []
    for change, field, words in cases:
        response = h1.client.post("/settings/strategy", data={**FULL, **change, "csrf_token": h1.csrf})
        errors = _errors(response.text)
        if response.status_code != 422 or words not in errors.get(field, ""):
            wrong.append((change, response.status_code, errors))
        if f'id="{field}"' not in response.text or 'aria-invalid="true"' not in response.text:
            wrong.append((change, "the field is not marked"))
    assert wrong == []
    assert count_rows(engine, StrategyVersionRow) == 0


def test_orders_pages_show_each_orders_source_and_who_changed_it(web, engine):
    h1 = web["H1"]
    h1.client.post("/settings/strategy", data={**FORM, "csrf_token": h1.csrf})
    with transaction(engine) as session:
        applied = apply_strategy_orders(
            session,
            rules=MarketRules(),
            participant_id="H1",
            desired={NEXT: [StrategyOrder("sell", 1000, Decimal(6))]},
            now=NOW,
        )
    order_id = applied.placed[0]
    listed = h1.client.get(f"/orders?date={NEXT.settlement_date}").text
    assert '<th scope="col">Source</th>' in listed
    assert "<td>Your strategy</td>" in listed
    page = h1.client.get(f"/orders/{order_id}").text
    assert '<dd id="order-source">Your strategy' in page
    assert "Changing it makes it yours" in page
    amended = h1.client.post(
        f"/orders/{order_id}/amend", data={"quantity_kwh": "2", "price_p_per_kwh": "6", "csrf_token": h1.csrf}
    )
    assert amended.status_code == 303
    page = h1.client.get(f"/orders/{order_id}").text
    assert '<dd id="order-source">You</dd>' in page
    by = re.findall(r"<td>(You|Your strategy|The energy company)</td></tr>", page)
    assert by == ["Your strategy", "You"]
    assert web["H2"].client.get(f"/orders/{order_id}").status_code == 404


def test_the_settings_page_shows_the_platforms_latest_plan_while_the_strategy_runs(web, engine):
    h1 = web["H1"]
    h1.client.post("/settings/strategy", data={**FULL, "csrf_token": h1.csrf})
    page = h1.client.get("/settings").text
    assert "The platform has not planned for you yet" in page
    report = plan_strategies(engine, rules=MarketRules(), now=NOW)
    assert report.planned == 1, report.failed
    page = unescape(h1.client.get("/settings").text)
    assert "What the platform plans for you" in page
    assert "from a battery holding 1 kWh" in page  # its floor: 10% of 10 kWh
    rows = re.findall(r'<tr><th scope="row">([^<]+)</th><td>([^<]+)</td><td>([^<]+)</td></tr>', page)
    assert [label for label, _, _ in rows] == [period_label(p) for p in report.periods]
    assert all(soc.endswith(" kWh") and charged.endswith(" kWh") for _, soc, charged in rows)
    assert "Battery at its end" in page
    assert "Car charged" in page
    assert "What the platform plans for you" not in web["H2"].client.get("/settings").text
    h1.client.post("/settings/strategy/pause", data={"csrf_token": h1.csrf})
    page = h1.client.get("/settings").text
    assert "What the platform plans for you" not in page  # paused: its plan is not carried out
    assert "not planned for you yet" not in page
