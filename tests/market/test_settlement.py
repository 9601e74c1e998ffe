"""Settlement runs on SQLite and PostgreSQL: exactly once, partial and pending, reconciliation by
difference, statements; balances always zero."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from sqlmodel import Session, select

from market.charges import settle_interval
from market.database import transaction
from market.errors import MarketError
from market.intervals import period_at, periods_of_day
from market.meter_data import store_readings
from market.rules import MarketRules
from market.settlement import (
    INITIAL,
    RECONCILE,
    SettlementConfig,
    _gather,
    account_balances,
    line_totals,
    runs_of,
    settle,
    settle_periods,
)
from market.statements import day_statement, statement, statement_csv, statements
from market.tables import LedgerLineRow, MeterReadingRow
from metering.readings import Quality, Reading
from tests.factories import race, refresh_interval_energy, seed_cleared_interval, seed_market

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
RULES = MarketRules()
PERIOD = period_at(NOW + timedelta(hours=1))  # 13:00-13:30 UTC
CONFIG = SettlementConfig(vat_rate=Decimal("0.05"), platform_fee_p_per_kwh=Decimal("0.1"))
LATER = PERIOD.end_utc + timedelta(minutes=10)


def reading(meter: str, at: datetime, import_kwh: float, export_kwh: float = 0.0) -> Reading:
    values = {"import_kwh": import_kwh, "export_kwh": export_kwh}
    return Reading(meter_id=meter, polled_at=at, meter_time=None, values=values, quality=Quality.GOOD)


def meter_data(engine, meter: str, start_kwh: tuple[float, float], end_kwh: tuple[float, float]) -> None:
    """Readings exactly at PERIOD's boundaries, then the energy derived."""
    with transaction(engine) as session:
        store_readings(
            session,
            [reading(meter, PERIOD.start_utc, *start_kwh), reading(meter, PERIOD.end_utc, *end_kwh)],
        )
        refresh_interval_energy(session, meter, [PERIOD], now=LATER)


@pytest.fixture
def market(engine):
    """H1 (F1) buys 2 kWh at 20 p; H3 (F2) sells 3 kWh from 5 p; H2 (F1) does not trade.
    F2 can export 2 kWh, so H3 sells 2. Meters M1..M3; the interval is cleared; no meter data."""
    seed_cleared_interval(engine, PERIOD, now=NOW)
    return engine


def run(engine, run_type=INITIAL):
    return settle(engine, period=PERIOD, run_type=run_type, config=CONFIG, now=LATER, triggered_by="test")


def posted_totals(engine) -> dict:
    with Session(engine) as session:
        totals = line_totals(session.exec(select(LedgerLineRow)))
    return {key: (money, energy) for key, (money, energy, _) in totals.items() if (money, energy) != (0, 0)}


def fresh_totals(engine) -> dict:
    with Session(engine) as session:
        gathered = _gather(session, PERIOD, CONFIG)
    totals = line_totals(settle_interval(gathered.inputs).lines)
    return {key: (money, energy) for key, (money, energy, _) in totals.items() if (money, energy) != (0, 0)}


def balanced(engine, **where) -> dict[str, int]:
    with Session(engine) as session:
        balances = account_balances(session, **where)
    assert sum(balances.values()) == 0
    assert balances.get("pool", 0) == 0
    return balances


def test_initial_run_settles_trades_imbalances_and_fees_once(market):
    """H1 used 2.4 kWh (bought 2: 0.4 at the import tariff); H2 no trades, used 1 kWh; H3 exported
    2.5 kWh (sold 2: 0.5 kWh at the export tariff)."""
    meter_data(market, "M1", (100, 0), (102.4, 0))
    meter_data(market, "M2", (50, 0), (51, 0))
    meter_data(market, "M3", (10, 20), (10, 22.5))
    first = run(market)
    assert first.created
    assert (first.run.status, first.run.sequence, first.run.pending) == ("complete", 1, {})
    again = run(market)
    assert (again.created, again.run.id) == (False, first.run.id)
    balances = balanced(market)
    with Session(market) as session:
        lines = session.exec(select(LedgerLineRow)).all()
    kinds = {
        (line.kind, line.participant_id): (line.amount_cp, line.energy_wh)
        for line in lines
        if line.participant_id
    }
    assert kinds[("imbalance_import", "H1")] == (980, 400)  # 0.4 kWh x 24.5 p = 9.80 p
    assert kinds[("imbalance_import", "H2")] == (2450, 1000)  # no trades: on the tariff
    assert kinds[("imbalance_export", "H3")] == (205, 500)  # 0.5 kWh x 4.1 p = 2.05 p
    assert kinds[("platform_fee", "H1")] == (20, 2000)
    assert balances["supplier"] == 980 + 2450 - 205
    assert balances["network"] > 0  # F2's export limit binds: fees and congestion rent


def test_missing_meter_data_is_pending_then_reconciled(market):
    meter_data(market, "M1", (100, 0), (102.4, 0))
    meter_data(market, "M3", (10, 20), (10, 22.5))
    first = run(market)
    assert first.run.status == "partial"
    assert set(first.run.pending) == {"H2"}
    assert not any(key[1] == "H2" for key in posted_totals(market))
    meter_data(market, "M2", (50, 0), (51, 0))  # the late reading
    second = run(market, RECONCILE)
    assert second.created
    assert (second.run.sequence, second.run.status, second.run.pending) == (2, "complete", {})
    with Session(market) as session:
        corrections = session.exec(select(LedgerLineRow).where(LedgerLineRow.run_id == second.run.id)).all()
    assert {(line.kind, line.participant_id) for line in corrections} == {
        ("imbalance_import", "H2"),
        ("vat", "H2"),
    }
    assert all(line.corrects_run_id == first.run.id for line in corrections)
    assert posted_totals(market) == fresh_totals(market)
    balanced(market)
    nothing_new = run(market, RECONCILE)
    assert (nothing_new.created, nothing_new.run.id) == (False, second.run.id)


def test_a_revised_reading_posts_only_the_difference(market):
    for meter, start, end in (
        ("M1", (100, 0), (102.4, 0)),
        ("M2", (50, 0), (51, 0)),
        ("M3", (10, 20), (10, 22.5)),
    ):
        meter_data(market, meter, start, end)
    run(market)
    before = posted_totals(market)
    with transaction(market) as session:  # a later reading: M2 used more than first measured
        store_readings(session, [reading("M2", PERIOD.end_utc + timedelta(minutes=5), 51.75, 0)])
    with transaction(market) as session:
        row = session.exec(
            select(MeterReadingRow).where(
                MeterReadingRow.meter_id == "M2", MeterReadingRow.polled_at == PERIOD.end_utc
            )
        ).one()
        session.delete(row)  # the boundary reading was wrong and is withdrawn
    with transaction(market) as session:
        refresh_interval_energy(session, "M2", [PERIOD], now=LATER)
    second = run(market, RECONCILE)
    assert second.created
    assert posted_totals(market) == fresh_totals(market)
    changed = {key for key in posted_totals(market) if posted_totals(market)[key] != before.get(key)}
    assert changed
    assert all(key[1] == "H2" for key in changed)
    balanced(market)


def test_an_uncleared_interval_is_pending_never_zero(engine):
    with transaction(engine) as session:
        seed_market(session, now=NOW)
    outcome = settle(engine, period=PERIOD, run_type=INITIAL, config=CONFIG, now=LATER, triggered_by="t")
    assert outcome.run.status == "pending"
    assert outcome.run.lines == 0
    assert "*" in outcome.run.pending


def test_reconcile_needs_an_initial_run(market):
    with pytest.raises(MarketError, match="no initial settlement run"):
        run(market, RECONCILE)


def test_racing_initial_runs_make_one(market, database_url):
    meter_data(market, "M1", (100, 0), (102.4, 0))
    outcomes = race(database_url, run, workers=6)
    assert sorted(o.created for o in outcomes) == [False] * 5 + [True]
    with Session(market) as session:
        assert len(runs_of(session, PERIOD)) == 1


def test_settling_intervals_two_at_a_time_beside_another_run_settles_each_once(market, database_url):
    meter_data(market, "M1", (100, 0), (102.4, 0))
    day = periods_of_day(PERIOD.settlement_date)

    after_the_day = day[-1].end_utc + timedelta(minutes=10)

    def settle_the_day(engine):
        return settle_periods(
            engine, day, run_type=INITIAL, config=CONFIG, now=after_the_day, triggered_by="test", workers=2
        )

    first, second = race(database_url, settle_the_day, workers=2)
    for outcomes in (first, second):
        assert [outcome.run.period for outcome in outcomes] == day  # in the order asked
    assert [a.created + b.created for a, b in zip(first, second, strict=True)] == [1] * len(day)
    with Session(market) as session:
        assert all(len(runs_of(session, period)) == 1 for period in day)
    statuses = {outcome.run.period: outcome.run.status for outcome in first}
    assert statuses[PERIOD] == "partial"  # H2 and H3 have no meter data yet
    assert {status for period, status in statuses.items() if period != PERIOD} == {"pending"}
    balanced(market)


@pytest.mark.parametrize("delay_minutes", [0, 2])
def test_nothing_is_settled_before_its_meter_data_is_due(market, delay_minutes):
    """Settlement never runs ahead of the platform's clock: not during the period, not before its
    meter data is due; at that moment it runs."""
    config = SettlementConfig(meter_data_delay=timedelta(minutes=delay_minutes))
    due = PERIOD.end_utc + timedelta(minutes=delay_minutes)
    for early in (PERIOD.start_utc - timedelta(hours=1), PERIOD.start_utc, due - timedelta(microseconds=1)):
        with pytest.raises(MarketError, match=rf"^interval: {PERIOD.key} cannot be settled before"):
            settle(market, period=PERIOD, run_type=INITIAL, config=config, now=early, triggered_by="t")
    with Session(market) as session:
        assert runs_of(session, PERIOD) == []
    outcome = settle(market, period=PERIOD, run_type=INITIAL, config=config, now=due, triggered_by="t")
    assert outcome.created


def test_settling_intervals_stops_at_the_first_error_and_names_the_interval(market):
    day = periods_of_day(PERIOD.settlement_date)
    with pytest.raises(MarketError, match=rf"{day[0].key} has no initial settlement run"):
        settle_periods(market, day, run_type=RECONCILE, config=CONFIG, now=LATER, triggered_by="t", workers=2)
    with Session(market) as session:
        assert all(runs_of(session, period) == [] for period in day)


def test_statement_totals_and_baseline(market):
    meter_data(market, "M1", (100, 0), (102.4, 0))
    meter_data(market, "M2", (50, 0), (51, 0))
    meter_data(market, "M3", (10, 20), (10, 22.5))
    run(market)
    with Session(market) as session:
        h1 = statement(session, "H1", first_day=date(2026, 11, 1), last_day=date(2026, 11, 30))
        balances = account_balances(session)
    assert h1.total.total_cp == -balances["household:H1"]
    assert (h1.total.bought_wh, h1.total.imported_wh) == (2000, 400)
    # Baseline: 2.4 kWh at 24.5 p = 58.80 p plus 5% VAT = 2.94 p.
    assert h1.total.baseline_cp == 5880 + 294
    # One interval of the day settled: no saving is claimed for the day, but the interval has one.
    assert h1.total.saving_cp is None
    with Session(market) as session:
        interval = {row.period: row for row in day_statement(session, "H1", PERIOD.settlement_date)}[PERIOD]
        h2_interval = {row.period: row for row in day_statement(session, "H2", PERIOD.settlement_date)}[
            PERIOD
        ]
    assert interval.figures.saving_cp == h1.total.baseline_cp - h1.total.total_cp
    assert h2_interval.figures.saving_cp == 0  # no trades: the same as the tariffs
    text = statement_csv(h1)
    assert text.splitlines()[0].startswith("date,bought_kwh")
    assert text.splitlines()[-2].startswith("total,2.000")


def test_every_households_statement_at_once_equals_each_alone(market):
    meter_data(market, "M1", (100, 0), (102.4, 0))
    meter_data(market, "M2", (50, 0), (51, 0))
    run(market)  # H3 has no meter data: its imbalance waits
    meter_data(market, "M3", (10, 20), (10, 22.5))
    run(market, RECONCILE)  # corrections too
    first, last = date(2026, 11, 1), date(2026, 11, 30)
    with Session(market) as session:
        every = statements(session, first_day=first, last_day=last)
        alone = {
            home: statement(session, home, first_day=first, last_day=last) for home in ("H1", "H2", "H3")
        }
    assert {home: every[home] for home in alone} == alone
    assert every["H3"].total.corrections_cp != 0


def test_a_clock_change_day_settles_fifty_periods(engine):
    with transaction(engine) as session:
        seed_market(session, now=NOW)
    outcomes = settle_periods(
        engine,
        periods_of_day(date(2026, 10, 25)),
        run_type=INITIAL,
        config=CONFIG,
        now=NOW,
        triggered_by="t",
    )
    assert len(outcomes) == 50
    assert [o.run.period.period for o in outcomes] == list(range(1, 51))
    assert len(periods_of_day(date(2026, 10, 25))) == 50


def test_what_is_due_and_what_needs_reconciling(market):
    from market.settlement import periods_due_for_settlement, periods_to_reconcile

    meter_data(market, "M1", (100, 0), (102.4, 0))
    with Session(market) as session:
        too_early = periods_due_for_settlement(
            session, length_minutes=30, now=PERIOD.end_utc, delay=timedelta(minutes=10)
        )
        due = periods_due_for_settlement(session, length_minutes=30, now=LATER, delay=timedelta(minutes=10))
    assert too_early == []
    assert due == [PERIOD]
    run(market)
    with Session(market) as session:
        assert (
            periods_due_for_settlement(session, length_minutes=30, now=LATER, delay=timedelta(minutes=10))
            == []
        )
        assert periods_to_reconcile(session, length_minutes=30) == []
    with transaction(market) as session:  # H2's meter data arrives after the run
        store_readings(
            session, [reading("M2", PERIOD.start_utc, 50, 0), reading("M2", PERIOD.end_utc, 51, 0)]
        )
        refresh_interval_energy(session, "M2", [PERIOD], now=LATER + timedelta(hours=1))
    with Session(market) as session:
        assert periods_to_reconcile(session, length_minutes=30) == [PERIOD]


def test_an_interval_in_the_repeated_autumn_hour_settles_to_the_penny(engine):
    """2026-10-25 period 5 is the second 01:00-01:30 (GMT): settled under its own key and date."""
    from market.intervals import settlement_period
    from tests.factories import seed_cleared_metered_interval

    period = settlement_period(date(2026, 10, 25), 5)
    assert (period.start_utc, period.start_local.utcoffset()) == (
        datetime(2026, 10, 25, 1, 0, tzinfo=UTC),
        timedelta(0),
    )
    seed_cleared_metered_interval(engine, period, now=period.start_utc - timedelta(hours=2))
    outcome = settle(
        engine,
        period=period,
        run_type=INITIAL,
        config=CONFIG,
        now=period.end_utc + timedelta(hours=1),
        triggered_by="t",
    )
    assert (outcome.run.period.key, outcome.run.status) == ("2026-10-25/5", "complete")
    with Session(engine) as session:
        lines = session.exec(select(LedgerLineRow).where(LedgerLineRow.participant_id == "H2")).all()
        h2 = statement(session, "H2", first_day=date(2026, 10, 1), last_day=date(2026, 10, 31))
    assert {(line.kind, line.amount_cp) for line in lines} == {("imbalance_import", 2450), ("vat", 122)}
    assert list(h2.days) == [date(2026, 10, 25)]
    assert (h2.total.total_cp, h2.total.baseline_cp) == (2572, 2572)
    balanced(engine, period=period)
