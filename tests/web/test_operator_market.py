"""The operator's Network and Interval pages on both databases: who may see and use them, the
feeder tree with its prices and a congested edge, an interval's curves, runs and trades, re-clearing
with a reason (refused in plain words where the market refuses) and verifying a run."""

from __future__ import annotations

import re
from datetime import date, timedelta
from decimal import Decimal
from html import unescape

from market.clearing import clear_interval
from market.database import transaction
from market.intervals import settlement_period
from market.orders import BookLevel, place_order
from market.rules import MarketRules
from market.tables import ClearingRunRow, NodePriceRow
from tests.factories import count_rows
from tests.web.conftest import NOW
from web.charts import curves_chart

PERIOD = settlement_period(date(2026, 12, 6), 24)  # 11:30-12:00, its gate closed at 11:25, before NOW
INTERVAL = f"/operator/intervals/{PERIOD.key}"


def _clear_a_congested_book(engine, *, sell_kwh: str = "5") -> None:
    """H3 on F2 sells more than F2 may export (2 kWh); H1 on F1 and H2 buy."""
    with transaction(engine) as session:
        for home, side, kwh, price in (
            ("H3", "sell", sell_kwh, "5"),
            ("H1", "buy", "5", "20"),
            ("H2", "buy", "1", "10"),
        ):
            place_order(
                session,
                rules=MarketRules(),
                participant_id=home,
                period=PERIOD,
                side=side,
                quantity_kwh=Decimal(kwh),
                price_p_per_kwh=Decimal(price),
                now=NOW - timedelta(hours=1),
            )
    clear_interval(engine, period=PERIOD, rules=MarketRules(), now=NOW, triggered_by="test")


def _text(html: str) -> str:
    """The page's words without its tags, spaces collapsed."""
    return unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)).replace(" .", "."))


def test_the_authorisation_matrix_over_the_network_and_interval_pages(web, engine):
    _clear_a_congested_book(engine)
    pages = [
        ("/operator/network", {"none": 303, "H2": 403, "H1": 403, "OPS": 200}),
        (f"/operator/network?interval={PERIOD.key}", {"none": 303, "H2": 403, "H1": 403, "OPS": 200}),
        ("/operator/intervals", {"none": 303, "H2": 403, "H1": 403, "OPS": 303}),
        (INTERVAL, {"none": 303, "H2": 403, "H1": 403, "OPS": 200}),
    ]
    forms = [
        (
            f"{INTERVAL}/reclear",
            {"reason": "meter corrected"},
            {"none": 303, "H2": 403, "H1": 403, "OPS": 303},
        ),
        (f"{INTERVAL}/verify", {"run_id": "1"}, {"none": 303, "H2": 403, "H1": 403, "OPS": 200}),
    ]
    wrong = []
    for path, expected in pages:
        for who, status in expected.items():
            response = web[who].client.get(path)
            if response.status_code != status:
                wrong.append((who, "GET", path, response.status_code, status))
            if who == "none" and not response.headers.get("location", "").startswith("/sign-in"):
                wrong.append((who, "GET", path, response.headers.get("location"), "/sign-in"))
    for path, data, expected in forms:
        for who, status in expected.items():
            response = web[who].client.post(path, data={**data, "csrf_token": web[who].csrf})
            if response.status_code != status:
                wrong.append((who, "POST", path, response.status_code, status))
    assert wrong == []
    assert count_rows(engine, ClearingRunRow) == 2  # the seeded clearing and the operator's re-clear only
    assert web["OPS"].client.get("/operator/intervals").headers["location"] == INTERVAL


def test_forms_without_the_csrf_token_are_refused_and_change_nothing(web, engine):
    _clear_a_congested_book(engine)
    ops = web["OPS"]
    for token in ("", "forged", web["H1"].csrf):
        response = ops.client.post(f"{INTERVAL}/reclear", data={"reason": "x", "csrf_token": token})
        assert response.status_code == 403
        assert "did not come from this site" in response.text
        assert (
            ops.client.post(f"{INTERVAL}/verify", data={"run_id": "1", "csrf_token": token}).status_code
            == 403
        )
    assert count_rows(engine, ClearingRunRow) == 1


def test_the_network_shows_prices_flows_and_the_congested_edge_in_words(web, engine):
    _clear_a_congested_book(engine)
    page = web["OPS"].client.get("/operator/network")  # the last cleared period by default
    assert page.status_code == 200
    text = _text(page.text)
    assert "Sun 6 Dec, 11:30\u201312:00 (period 24)" in text
    assert "1 edge is congested : F2 to P1." in text
    rows = [_text(row).strip() for row in re.findall(r"<tr[^>]*>(.*?)</tr>", page.text, re.S)]
    assert "F2 P1 2 kWh 2 kWh 100.0% \u26a0 Yes" in rows  # from, to, flow, capacity, utilisation, congested
    assert "P1 F1 2 kWh 100 kWh 2.0% No" in rows
    assert "\u26a0 Congested: 2 kWh from F2 to P1, of 2 kWh (100.0%)" in text
    assert f'href="/operator/intervals/{PERIOD.key}"' in page.text
    assert f'href="/operator/network?interval={PERIOD.previous().key}"' in page.text
    assert f'href="/operator/network?interval={PERIOD.next().key}"' in page.text
    prices = re.findall(r'<th scope="row">(F\d|P1|GSP)</th><td>([^<]+)</td>', page.text)
    assert dict(prices)["F2"] == "5p/kWh"  # the congested feeder keeps its own price
    net = dict(re.findall(r'<th scope="row">(F\d)</th><td>[^<]+</td><td>([^<]+)</td>', page.text))
    assert net == {"F1": "2 kWh in", "F2": "2 kWh out"}


def test_the_network_of_a_period_not_cleared_and_of_a_clock_change_day(web):
    ops = web["OPS"].client
    fresh = _text(ops.get("/operator/network").text)  # nothing cleared: the current period
    assert "This period has not been cleared" in fresh
    assert "no flow yet" in fresh
    autumn = _text(ops.get("/operator/network?interval=2026-10-25/4").text)
    assert "Sun 25 Oct, 01:30 BST\u201301:00 GMT (period 4)" in autumn
    for bad in ("2026-12-06/0", "2026-12-06/49", "junk", "2026-02-30/1"):
        assert ops.get(f"/operator/network?interval={bad}").status_code == 404
    assert ops.get("/operator/intervals/2026-12-06/49").status_code == 404
    assert ops.get("/operator/intervals/nonsense/1").status_code == 404


def test_an_interval_shows_its_curves_runs_and_trades(web, engine, monkeypatch):
    _clear_a_congested_book(engine)
    page = web["OPS"].client.get(INTERVAL)
    assert page.status_code == 200
    text = _text(page.text)
    assert "1 sell order offers 5 kWh from 5p/kWh to 5p/kWh; 2 buy orders bid for 6 kWh" in text
    rows = [_text(row).strip() for row in re.findall(r"<tr[^>]*>(.*?)</tr>", page.text, re.S)]
    assert rows[1:4] == ["5p/kWh 5 kWh 6 kWh", "10p/kWh 5 kWh 6 kWh", "20p/kWh 5 kWh 5 kWh"]
    assert any(row.startswith("1 (run 1), current") for row in rows)
    assert "First clearing" in text
    assert "Trades 1 to 2 of 2" in text
    assert 'class="supply" d="M' in page.text
    assert 'class="demand" d="M' in page.text
    monkeypatch.setattr("web.operator_market_pages.TRADES_PER_PAGE", 1)
    first = web["OPS"].client.get(INTERVAL)
    assert "Trades 1 to 1 of" in _text(first.text)
    assert f'href="{INTERVAL}?offset=1&amp;levels=0#trades"' in first.text
    second = web["OPS"].client.get(f"{INTERVAL}?offset=1")
    assert "Trades 2 to 2 of" in _text(second.text)
    assert f'href="{INTERVAL}?offset=0&amp;levels=0#trades"' in second.text
    assert "Trades 1 to 1 of" in _text(web["OPS"].client.get(f"{INTERVAL}?offset=junk").text)
    assert "Trades 2 to 2 of" in _text(web["OPS"].client.get(f"{INTERVAL}?offset=99").text)  # the last page
    # The book's prices are paged too, each pager keeping the other's place.
    monkeypatch.setattr("web.operator_market_pages.LEVELS_PER_PAGE", 2)
    lower = web["OPS"].client.get(f"{INTERVAL}?offset=1")
    assert "prices 1 to 2 of 3" in _text(lower.text)
    assert f'href="{INTERVAL}?offset=1&amp;levels=2#book"' in lower.text
    higher = web["OPS"].client.get(f"{INTERVAL}?offset=1&levels=2")
    rows = [_text(row).strip() for row in re.findall(r"<tr[^>]*>(.*?)</tr>", higher.text, re.S)]
    assert rows[1] == "20p/kWh 5 kWh 5 kWh"
    assert f'href="{INTERVAL}?offset=1&amp;levels=0#book"' in higher.text


def test_reclearing_needs_a_reason_and_a_closed_gate_and_verify_shows_the_result(web, engine):
    _clear_a_congested_book(engine)
    ops = web["OPS"]
    blank = ops.client.post(f"{INTERVAL}/reclear", data={"reason": "  ", "csrf_token": ops.csrf})
    assert blank.status_code == 422
    assert re.search(
        r'class="error" id="reason-error">Give a reason for clearing this interval again.<', blank.text
    )
    assert 'aria-invalid="true"' in blank.text
    long = ops.client.post(f"{INTERVAL}/reclear", data={"reason": "x" * 501, "csrf_token": ops.csrf})
    assert long.status_code == 422
    assert "The reason is too long: at most 500 characters." in long.text
    later = PERIOD.next().next()
    early = ops.client.post(
        f"/operator/intervals/{later.key}/reclear", data={"reason": "why not", "csrf_token": ops.csrf}
    )
    assert early.status_code == 422
    assert "Too early: this interval&#39;s gate has not closed" in early.text
    assert count_rows(engine, ClearingRunRow) == 1
    done = ops.client.post(f"{INTERVAL}/reclear", data={"reason": "meter corrected", "csrf_token": ops.csrf})
    assert (done.status_code, done.headers["location"]) == (303, f"{INTERVAL}?recleared=2")
    after = _text(ops.client.get(done.headers["location"]).text)
    assert "Cleared again: run number 2 is now this interval" in after
    for said in ("meter corrected", "web:OPS", "1 (run 1), superseded", "2 (run 2), current"):
        assert said in after
    verified = ops.client.post(f"{INTERVAL}/verify", data={"run_id": "2", "csrf_token": ops.csrf})
    assert verified.status_code == 200
    assert "Verified: run 2 (number 2) re-cleared from its stored inputs gives the same" in _text(
        verified.text
    )
    for other in ("99", "x", "99999999999999999999"):
        missing = ops.client.post(f"{INTERVAL}/verify", data={"run_id": other, "csrf_token": ops.csrf})
        assert missing.status_code == 404
    elsewhere = ops.client.post(
        f"/operator/intervals/{PERIOD.next().key}/verify", data={"run_id": "2", "csrf_token": ops.csrf}
    )
    assert elsewhere.status_code == 404  # run 2 is not that interval's


def test_the_curves_are_exact_steps_with_a_table_equivalent():
    chart = curves_chart(
        [
            BookLevel("sell", 500, 2000, 3),  # 5p/kWh (in 0.01 p ticks), 2 kWh, 3 orders
            BookLevel("sell", 300, 1000, 1),
            BookLevel("buy", 800, 1500, 1),
        ],
        clearing_price_p_per_kwh=Decimal("5"),
        interval="2026-12-06/27",
    )
    assert [(lv.price_p_per_kwh, lv.supply_kwh, lv.demand_kwh) for lv in chart.levels] == [
        (Decimal(3), Decimal(1), Decimal("1.5")),
        (Decimal(5), Decimal(3), Decimal("1.5")),
        (Decimal(8), Decimal(3), Decimal("1.5")),
    ]
    assert (chart.supply_path.count("H"), chart.supply_path.count("V")) == (2, 1)
    assert [t.label for t in chart.x_ticks] == ["0", "1", "2", "3"]
    assert "cleared at 5p/kWh at the root" in chart.summary
    assert "4 sell orders offer 3 kWh" in chart.summary


def test_verify_names_what_differs_when_a_stored_run_was_changed(web, engine):
    _clear_a_congested_book(engine)
    with transaction(engine) as session:
        row = session.get(NodePriceRow, (1, "F1"))
        assert row is not None
        row.price_p_per_kwh = Decimal("99")
        session.add(row)
    ops = web["OPS"]
    page = ops.client.post(f"{INTERVAL}/verify", data={"run_id": "1", "csrf_token": ops.csrf})
    assert page.status_code == 200
    text = _text(page.text)
    assert "Not verified: run 1 (number 1) re-cleared from its stored inputs differs" in text
    assert "node prices" in text
