"""Today and an order's outcome after a real clearing (HiGHS), en-GB display and the clock-change
days, on both databases."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from sqlmodel import Session

from market.clearing import clear_interval, current_run, node_prices
from market.database import transaction
from market.intervals import periods_of_day, settlement_period
from market.orders import place_order
from market.rules import MarketRules
from market.units import money_cp
from tests.web.conftest import NOW
from web.format import duration, p_per_kwh, period_label, period_times, pounds

NEXT = settlement_period(date(2026, 12, 6), 27)  # 13:00-13:30, gate at 12:55


@pytest.mark.parametrize(
    ("pence", "text"),
    [
        (Decimal("1234.5"), "£12.34"),
        (Decimal("1235.5"), "£12.36"),
        (Decimal("-21"), "\u2212£0.21"),
        (Decimal(0), "£0.00"),
    ],
)
def test_money_in_pounds_rounded_half_to_even(pence, text):
    assert pounds(pence) == text


def test_prices_and_durations_in_words():
    assert p_per_kwh(Decimal("12.50")) == "12.5p/kWh"
    assert p_per_kwh(Decimal("-3")) == "\u22123p/kWh"
    assert p_per_kwh(None) == "\u2013"
    assert [duration(timedelta(seconds=s)) for s in (30, 240, 3600, 5100)] == [
        "under a minute",
        "4 min",
        "1 h",
        "1 h 25 min",
    ]


def test_clock_change_days_name_their_zone_and_ordinary_days_do_not():
    autumn = periods_of_day(date(2026, 10, 25))
    assert len(autumn) == 50
    assert [period_times(p) for p in autumn[2:6]] == [
        "01:00 BST\u201301:30 BST",
        "01:30 BST\u201301:00 GMT",
        "01:00 GMT\u201301:30 GMT",
        "01:30 GMT\u201302:00 GMT",
    ]
    spring = periods_of_day(date(2026, 3, 29))
    assert len(spring) == 46
    assert period_times(spring[1]) == "00:30 GMT\u201302:00 BST"
    assert period_label(settlement_period(date(2026, 12, 6), 30)) == "Sun 6 Dec, 14:30\u201315:00 (period 30)"


def test_today_shows_the_cleared_price_the_trade_and_the_orders_outcome(web, engine):
    rules = MarketRules()
    h1 = web["H1"]
    placed = h1.client.post(
        "/orders",
        data={
            "interval": NEXT.key,
            "side": "buy",
            "quantity_kwh": "2",
            "price_p_per_kwh": "20",
            "csrf_token": h1.csrf,
        },
    )
    assert placed.status_code == 303
    order_id = placed.headers["location"].rsplit("placed=", 1)[1]
    before = h1.client.get("/today").text
    assert "in 55 min (12:55)" in before  # the open order's gate
    with transaction(engine) as session:
        place_order(
            session,
            rules=rules,
            participant_id="H3",
            period=NEXT,
            side="sell",
            quantity_kwh=Decimal("3"),
            price_p_per_kwh=Decimal("5"),
            now=NOW,
        )
    web["clock"].moment += timedelta(minutes=28)
    assert h1.client.get("/today").status_code == 200  # still signed in at the gate (30 minutes idle)
    web["clock"].moment = rules.gate_closure_utc(NEXT)
    clear_interval(engine, period=NEXT, rules=rules, now=web["clock"].moment, triggered_by="test")
    with Session(engine) as session:
        run = current_run(session, NEXT)
        assert run is not None
        price = next(p.price_p_per_kwh for p in node_prices(session, run.id) if p.node_id == "F1")
    today = h1.client.get("/today").text
    row = re.search(r"<tr><th scope=\"row\">27</th>(.*?)</tr>", today)
    assert row is not None
    assert (
        row.group(1)
        == f"<td>13:00\u201313:30</td><td>{p_per_kwh(price)}</td><td>24.5p/kWh</td><td>4.1p/kWh</td>"
    )
    charged = pounds(Decimal(money_cp(2000, price)) / 100)
    assert f"<td>charged {charged}</td>" in today
    assert "You have no open orders" in today
    order = h1.client.get(f"/orders/{order_id}").text
    assert '<dd id="order-status">Filled</dd>' in order
    assert f"2 kWh at {p_per_kwh(price)}" in order
    assert "Change this order" not in order


def test_today_on_the_autumn_clock_change_lists_fifty_periods(web):
    web["clock"].moment = datetime(2026, 10, 25, 12, 0, tzinfo=UTC)
    h1 = web["H1"]
    h1.client.cookies.clear()
    assert h1.sign_in("H1").status_code == 303
    page = h1.client.get("/today").text
    assert "Sunday 25 October 2026" in page
    assert page.count('<tr><th scope="row">') >= 50 + 48
    assert '<tr><th scope="row">50</th><td>23:30 GMT\u201300:00 GMT</td>' in page
    assert '<tr><th scope="row">4</th><td>01:30 BST\u201301:00 GMT</td>' in page
