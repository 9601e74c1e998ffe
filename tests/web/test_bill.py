"""The household's Bill on both databases: who may see it, the month and the day as the market's
statement gives them (the same figures as ``/v1/statements`` and the CSV), every line explained,
what is pending, the saving only where the statement gives one, and the clock-change days."""

from __future__ import annotations

import csv
import io
import re
from datetime import date, timedelta
from decimal import Decimal

import pytest
from sqlmodel import Session

from market.clearing import clear_interval
from market.database import transaction
from market.intervals import periods_of_day, settlement_period
from market.meter_data import store_readings
from market.orders import place_order
from market.rules import MarketRules
from market.settlement import INITIAL, RECONCILE, SettlementConfig, settle_periods
from market.statements import day_statement, day_statement_csv, statement, statement_csv
from metering.readings import Quality, Reading
from tests.factories import refresh_interval_energy, register_street_meters
from tests.web.conftest import NOW
from web.bill_pages import pence, signed_pounds

DAY = date(2026, 12, 5)  # the day before the web fixture's clock
PERIODS = periods_of_day(DAY)
TRADED = settlement_period(DAY, 27)  # 13:00-13:30: H1 buys 2 kWh, H3 sells 2 of its 3
CONFIG = SettlementConfig(vat_rate=Decimal("0.05"), platform_fee_p_per_kwh=Decimal("0.1"))
#: Meter counters' step per period (import, export kWh); the traded period's are larger.
STEP = {"M1": (0.1, 0.0), "M2": (0.2, 0.0), "M3": (0.0, 0.3)}
TRADED_STEP = {"M1": (2.4, 0.0), "M2": (1.0, 0.0), "M3": (0.0, 2.5)}


def settle_the_day(engine) -> None:  # type: ignore[no-untyped-def]
    """Meters M1..M3 for H1..H3, a trade in :data:`TRADED`, every period of :data:`DAY` cleared,
    readings for M1 and M3 only (H2's meter sent nothing), and the day's initial settlement."""
    rules = MarketRules()
    with transaction(engine) as session:
        register_street_meters(session, now=NOW - timedelta(days=3))
        for home, side, kwh, price in (("H1", "buy", "2", "20"), ("H3", "sell", "3", "5")):
            place_order(
                session,
                rules=rules,
                participant_id=home,
                period=TRADED,
                side=side,
                quantity_kwh=Decimal(kwh),
                price_p_per_kwh=Decimal(price),
                now=NOW - timedelta(days=2),
            )
    for period in PERIODS:
        clear_interval(engine, period=period, rules=rules, now=NOW, triggered_by="test")
    meter_data(engine, ("M1", "M3"))
    settle_periods(engine, PERIODS, run_type=INITIAL, config=CONFIG, now=NOW, triggered_by="test")


def meter_data(engine, meters: tuple[str, ...]) -> None:  # type: ignore[no-untyped-def]
    """Readings at every boundary of :data:`DAY` for ``meters``, then their energy derived."""
    with transaction(engine) as session:
        for meter in meters:
            counters, readings = [100.0, 10.0], []
            for period in PERIODS:
                values = dict(zip(("import_kwh", "export_kwh"), counters, strict=True))
                readings.append(Reading(meter, period.start_utc, None, values, Quality.GOOD))
                step = TRADED_STEP[meter] if period == TRADED else STEP[meter]
                counters = [round(counters[0] + step[0], 3), round(counters[1] + step[1], 3)]
            values = dict(zip(("import_kwh", "export_kwh"), counters, strict=True))
            readings.append(Reading(meter, PERIODS[-1].end_utc, None, values, Quality.GOOD))
            store_readings(session, readings)
            refresh_interval_energy(session, meter, PERIODS, now=NOW)


@pytest.fixture
def settled(web, engine):
    settle_the_day(engine)
    return web


def test_the_bill_pages_and_downloads_for_each_role(web):
    """A visitor is sent to sign in, the operator is refused, each household sees its own."""
    paths = [
        "/bill",
        "/bill?month=2026-11",
        "/bill.csv?month=2026-12",
        f"/bill/days/{DAY}",
        f"/bill/days/{DAY}/csv",
    ]
    wrong = []
    for path in paths:
        for who, status in {"none": 303, "H2": 200, "H1": 200, "OPS": 403}.items():
            response = web[who].client.get(path)
            if response.status_code != status:
                wrong.append((who, path, response.status_code, status))
            if who == "none" and not response.headers.get("location", "").startswith("/sign-in?next=/bill"):
                wrong.append((who, path, response.headers.get("location")))
    for path in ("/bill?month=2026-13", "/bill?month=26-12", "/bill/days/2026-02-30", "/bill/days/x/csv"):
        if (status := web["H1"].client.get(path).status_code) != 404:
            wrong.append(("H1", path, status, 404))
    assert wrong == []


def test_signed_amounts_say_who_pays():
    assert [signed_pounds(cp) for cp in (12_345, -4_000, 0, None)] == [
        "+£1.23",
        "\u2212£0.40",
        "£0.00",
        "\u2013",
    ]
    assert pence(12_345) == Decimal("123.45")


def test_the_month_is_the_markets_statement_with_every_line_explained(settled, engine):
    with Session(engine) as session:
        mine = statement(session, "H1", first_day=date(2026, 12, 1), last_day=date(2026, 12, 31))
    page = settled["H1"].client.get("/bill?month=2026-12").text
    total = mine.total
    assert total.final
    assert total.saving_cp is not None
    assert total.bought_wh == 2000
    # Every line, its amount in the one sign convention, and what it means.
    for name, amount in (
        ("Bought locally", total.bought_cp),
        ("Sold locally", total.sold_cp),
        ("Backstop import (imbalance)", total.imported_cp),
        ("Backstop export (imbalance)", total.exported_cp),
        ("Platform fees", total.fees_cp),
        ("VAT", total.vat_cp),
        ("Total", total.total_cp),
    ):
        assert re.search(
            rf'<th scope="row">{re.escape(name)}</th><td>[^<]*</td>'
            rf"<td>{re.escape(signed_pounds(amount))}</td>",
            page,
        ), name
    assert "+ you pay" in page
    assert "− you are paid" in page
    assert f"You saved <strong>{signed_pounds(total.saving_cp).lstrip('+')}</strong>" in page
    assert "Over the 1 day settled on your meter" in page
    assert f'<a href="/bill/days/{DAY}">Saturday 5 December 2026</a>' in page
    assert "all 48 periods settled on your meter&#39;s readings" in page
    assert 'href="/bill?month=2026-11"' in page
    assert 'href="/bill?month=2027-01"' in page
    # The CSV is the market's, for this household, under a filename naming it and the month.
    download = settled["H1"].client.get("/bill.csv?month=2026-12")
    assert download.headers["content-type"].startswith("text/csv")
    assert download.headers["content-disposition"] == 'attachment; filename="smartbrum-bill-H1-2026-12.csv"'
    assert download.text == statement_csv(mine)
    rows = {row["date"]: row for row in csv.DictReader(io.StringIO(download.text))}
    # The page's figures are the CSV's, rounded to the penny.
    assert signed_pounds(int(Decimal(rows["total"]["total_p"]) * 100)) in page


def test_a_household_waiting_for_its_meter_is_told_and_claims_no_saving(settled):
    page = settled["H2"].client.get("/bill?month=2026-12").text
    assert "48 periods: your trades are settled; the rest waits for your meter&#39;s readings." in page
    assert "No saving is claimed yet" in page
    assert "You saved" not in page
    day = settled["H2"].client.get(f"/bill/days/{DAY}").text
    assert "48 awaiting meter data" in day
    assert "No saving is claimed for this day yet" in day
    assert "no meter data" in day  # the statement's reason, on each period


def test_the_day_lists_every_period_as_the_market_does(settled, engine):
    with Session(engine) as session:
        rows = day_statement(session, "H1", DAY)
    page = settled["H1"].client.get(f"/bill/days/{DAY}").text
    assert page.count('<tr><th scope="row">') >= 48
    traded = rows[TRADED.period - 1].figures
    assert re.search(
        r'<tr><th scope="row">27</th><td>13:00–13:30</td>\s*<td>'
        + re.escape(signed_pounds(traded.bought_cp + traded.sold_cp)),
        page,
    )
    assert "You saved" in page or "cost you" in page
    download = settled["H1"].client.get(f"/bill/days/{DAY}/csv")
    assert download.headers["content-disposition"] == f'attachment; filename="smartbrum-bill-H1-{DAY}.csv"'
    assert download.text == day_statement_csv(rows)
    other = settled["H2"].client.get(f"/bill/days/{DAY}/csv").text
    assert other != download.text  # each household downloads its own


def test_a_clock_change_day_has_fifty_periods_each_time_with_its_zone(web):
    page = web["H1"].client.get("/bill/days/2026-10-25").text
    assert '<tr><th scope="row">50</th><td>23:30 GMT–00:00 GMT</td>' in page
    assert '<tr><th scope="row">4</th><td>01:30 BST–01:00 GMT</td>' in page
    assert "50 not settled" in page
    assert len(web["H1"].client.get("/bill/days/2026-03-29/csv").text.splitlines()) == 1 + 46


def test_a_reconciliation_shows_as_corrections_within_the_lines(settled, engine):
    """H2's readings arrive late: the reconciliation settles its imbalance, the day becomes final,
    and the page says how much of the lines were corrections (not added again)."""
    meter_data(engine, ("M2",))
    settle_periods(engine, PERIODS, run_type=RECONCILE, config=CONFIG, now=NOW, triggered_by="test")
    with Session(engine) as session:
        mine = statement(session, "H2", first_day=date(2026, 12, 1), last_day=date(2026, 12, 31))
    assert mine.total.corrections_cp != 0
    page = settled["H2"].client.get("/bill?month=2026-12").text
    assert re.search(
        r'<th scope="row">Of which corrections</th><td>–</td>'
        rf"<td>{re.escape(signed_pounds(mine.total.corrections_cp))}</td><td>Already in the lines above",
        page,
    )
    assert f"<td>{signed_pounds(mine.total.total_cp)}</td>" in page
    assert "all 48 periods settled on your meter&#39;s readings" in page
    assert "No saving is claimed yet" not in page
