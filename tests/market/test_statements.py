"""Statements on SQLite and PostgreSQL (issue 15, A9): what is pending is said, no saving is claimed
before a day is settled on metered energy, one sign convention, totals that add up, and a
per-interval view."""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from sqlmodel import Session

from market.clearing import clear_interval
from market.database import transaction
from market.intervals import period_at, periods_of_day
from market.meter_data import store_readings
from market.rules import MarketRules
from market.settlement import INITIAL, RECONCILE, SettlementConfig, account_balances, settle_periods
from market.statements import (
    AWAITING_METER_DATA,
    NOT_SETTLED,
    SETTLED,
    StatementFigures,
    day_statement,
    day_statement_csv,
    statement,
    statement_csv,
)
from metering.readings import Quality, Reading
from tests.factories import refresh_interval_energy, seed_cleared_interval

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
RULES = MarketRules()
TRADED = period_at(NOW + timedelta(hours=1))  # 13:00-13:30 UTC: H1 buys 2 kWh, H3 sells 2
DAY = periods_of_day(TRADED.settlement_date)
AFTER = DAY[-1].end_utc + timedelta(hours=1)
CONFIG = SettlementConfig(vat_rate=Decimal("0.05"), platform_fee_p_per_kwh=Decimal("0.1"))
NOVEMBER = {"first_day": date(2026, 11, 1), "last_day": date(2026, 11, 30)}
#: Meter counters' step per interval (import, export kWh); the traded interval's are larger.
STEP = {"M1": (0.1, 0.0), "M2": (0.2, 0.0), "M3": (0.0, 0.3)}
TRADED_STEP = {"M1": (2.4, 0.0), "M2": (1.0, 0.0), "M3": (0.0, 2.5)}


def meter_data(engine, meters=("M1", "M2", "M3")) -> None:
    """Readings at every boundary of the day for ``meters``, then their energy derived."""
    with transaction(engine) as session:
        for meter in meters:
            counters, readings = [100.0, 10.0], []
            for period in DAY:
                readings.append(
                    Reading(
                        meter,
                        period.start_utc,
                        None,
                        dict(zip(("import_kwh", "export_kwh"), counters)),
                        Quality.GOOD,
                    )
                )
                step = TRADED_STEP[meter] if period == TRADED else STEP[meter]
                counters = [round(counters[0] + step[0], 3), round(counters[1] + step[1], 3)]
            readings.append(
                Reading(
                    meter,
                    DAY[-1].end_utc,
                    None,
                    dict(zip(("import_kwh", "export_kwh"), counters)),
                    Quality.GOOD,
                )
            )
            store_readings(session, readings)
            refresh_interval_energy(session, meter, DAY, now=AFTER)


def settle_day(engine, run_type=INITIAL):
    return settle_periods(engine, DAY, run_type=run_type, config=CONFIG, now=AFTER, triggered_by="test")


@pytest.fixture
def market(engine):
    """The street market, its traded interval and every other interval of the day cleared."""
    seed_cleared_interval(engine, TRADED, now=NOW)
    for period in DAY:
        clear_interval(engine, period=period, rules=RULES, now=AFTER, triggered_by="test")
    return engine


def test_a_day_waiting_for_meter_data_claims_no_saving(market):
    meter_data(market, meters=("M1", "M2"))  # H3's meter sent nothing
    settle_day(market)
    with Session(market) as session:
        h3 = statement(session, "H3", **NOVEMBER)
        h1 = statement(session, "H1", **NOVEMBER)
        rows = day_statement(session, "H3", TRADED.settlement_date)
    day = h3.days[TRADED.settlement_date]
    assert dict(day.intervals) == {AWAITING_METER_DATA: 48}
    assert (day.final, day.saving_cp) == (False, None)
    assert (h3.total.saving_cp, h3.settled_days, h3.settled.total_cp) == (None, 0, 0)
    # The household's trade is settled and shown; the reason its imbalance is not, on every row.
    assert h3.total.sold_wh == 2000
    assert {row.status for row in rows} == {AWAITING_METER_DATA}
    assert "no meter data" in rows[0].reason
    # H1's data came: its day is final and its saving is claimed.
    assert dict(h1.days[TRADED.settlement_date].intervals) == {SETTLED: 48}
    assert h1.settled_days == 1
    assert h1.total.saving_cp == h1.total.baseline_cp - h1.total.total_cp
    assert h1.settled.saving_cp == h1.total.saving_cp


def test_one_sign_convention_and_totals_that_add_up(market):
    meter_data(market)
    settle_day(market)
    with Session(market) as session:
        h1 = statement(session, "H1", **NOVEMBER)
        h3 = statement(session, "H3", **NOVEMBER)
        balances = account_balances(session)
    for bill in (h1.total, h3.total):
        columns = (
            bill.bought_cp,
            bill.sold_cp,
            bill.imported_cp,
            bill.exported_cp,
            bill.fees_cp,
            bill.vat_cp,
        )
        assert bill.total_cp == sum(columns)
    # + the household pays, - it is paid: H3 sold and exported, so both are negative.
    assert h3.total.sold_cp < 0
    assert h3.total.exported_cp < 0
    assert h3.total.sold_wh > 0
    assert h3.total.exported_wh > 0
    assert h1.total.bought_cp > 0
    assert h1.total.imported_cp > 0
    assert h1.total.total_cp == -balances["household:H1"]
    assert h3.total.total_cp == -balances["household:H3"]
    assert h3.total.total_cp < 0  # paid on balance
    lines = statement_csv(h3).splitlines()
    assert lines[-2].startswith("total,")
    assert lines[-1].startswith("settled,")


def test_a_reconciliation_restates_the_figures_and_says_how_much_it_corrected(market):
    meter_data(market, meters=("M1", "M2"))
    settle_day(market)
    meter_data(market, meters=("M3",))  # H3's data arrives late
    settle_day(market, RECONCILE)
    with Session(market) as session:
        h3 = statement(session, "H3", **NOVEMBER)
        balances = account_balances(session)
    assert dict(h3.total.intervals) == {SETTLED: 48}
    assert h3.total.corrections_cp != 0
    # The corrections are part of the columns, not an extra term: the total is still their sum
    # and still what the ledger says the household owes.
    assert h3.total.total_cp == -balances["household:H3"]
    assert h3.total.saving_cp is not None


def test_the_per_interval_view_adds_up_to_the_day(market):
    meter_data(market)
    settle_day(market)
    with Session(market) as session:
        rows = day_statement(session, "H1", TRADED.settlement_date)
        month = statement(session, "H1", **NOVEMBER)
    assert [row.period for row in rows] == DAY
    day = month.days[TRADED.settlement_date]
    assert sum(row.figures.total_cp for row in rows) == day.total_cp
    assert sum(row.figures.baseline_cp for row in rows) == day.baseline_cp
    assert sum(row.figures.saving_cp or 0 for row in rows) == day.saving_cp
    traded = next(row for row in rows if row.period == TRADED)
    assert (traded.status, traded.figures.bought_wh, traded.figures.imported_wh) == (SETTLED, 2000, 400)
    text = day_statement_csv(rows).splitlines()
    assert text[0].startswith("interval,start_utc,status,reason,bought_kwh")
    assert len(text) == 1 + 48


def test_intervals_not_yet_settled_are_counted_not_guessed(engine):
    seed_cleared_interval(engine, TRADED, now=NOW)
    settle_periods(engine, [TRADED], run_type=INITIAL, config=CONFIG, now=AFTER, triggered_by="test")
    with Session(engine) as session:
        h1 = statement(session, "H1", **NOVEMBER)
        rows = day_statement(session, "H1", TRADED.settlement_date)
    assert dict(h1.days[TRADED.settlement_date].intervals) == {AWAITING_METER_DATA: 1, NOT_SETTLED: 47}
    assert h1.total.saving_cp is None
    assert sum(row.status == NOT_SETTLED for row in rows) == 47
    assert next(row for row in rows if row.status == NOT_SETTLED).reason == "no settlement run yet"


def test_the_summed_figures_land_in_the_fields_they_name():
    from market import statements as module

    names = [f.name for f in fields(StatementFigures) if f.name not in ("baseline_cp", "intervals")]
    assert list(module._SUMMED) == names
    figures = module._summed_figures(list(range(1, len(names) + 1)))
    assert [getattr(figures, name) for name in names] == list(range(1, len(names) + 1))
    assert figures.baseline_cp == 0
