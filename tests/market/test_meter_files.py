"""Half-hourly meter data files: every row checked, all or nothing, revisions as Modbus energy's,
and settlement, reconciliation and statements on imported energy (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlmodel import Session, select

from api.scheduler import MeterPolling, SettlementJobs
from market.clearing import clear_interval
from market.database import transaction
from market.errors import MarketError
from market.intervals import period_at, settlement_period
from market.meter_files import (
    HEADER,
    MeterFileError,
    import_meter_file,
    parse_meter_file,
)
from market.monitoring import meter_states
from market.orders import place_order
from market.participants import list_meters, register_meter, remove_meter
from market.rules import MarketRules
from market.settlement import (
    ESTIMATED,
    INITIAL,
    RECONCILE,
    SettlementConfig,
    account_balances,
    periods_to_reconcile,
    pool_balance_cp,
    runs_of,
    settle,
)
from market.statements import ESTIMATE_REPLACED, day_statement, statement
from market.tables import IntervalEnergyRow, MeterRow
from market.units import money_cp, scale_cp
from metering.polling import PollSettings
from tests.factories import FixedClock, count_rows, mpan, race, seed_market

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
DAY = date(2026, 11, 20)  # a whole day before NOW
H1, H2, H3 = mpan(1), mpan(2), mpan(3)  # seed_market's households' MPANs
HEADER_LINE = ",".join(HEADER)


def csv_text(*rows: str, header: str = HEADER_LINE) -> str:
    return "\n".join([header, *rows]) + "\n"


def problems_of(text: str, *, now: datetime = NOW) -> list[tuple[int, str]]:
    return [(problem.row, problem.field) for problem in parse_meter_file(text, now=now).problems]


# --- parsing ----------------------------------------------------------------------------------


def test_rows_become_exact_wh_periods_and_quality():
    parsed = parse_meter_file(
        csv_text(f"{H1},2026-11-20,1,0.412,0,actual", f"{H2},2026-11-20,48,1,2.5,estimated"), now=NOW
    )
    assert parsed.problems == ()
    assert parsed.rows_read == 2
    first, second = parsed.rows
    assert (first.row, first.mpan, first.import_wh, first.export_wh, first.estimated) == (
        2,
        H1,
        412,
        0,
        False,
    )
    assert first.period == settlement_period(DAY, 1)
    assert first.period.start_utc == datetime(2026, 11, 20, 0, 0, tzinfo=UTC)  # GMT in November
    assert (second.row, second.import_wh, second.export_wh, second.estimated) == (3, 1000, 2500, True)


def test_columns_in_any_order_with_a_byte_order_mark_and_a_trailing_blank_line():
    header = "quality,export_kwh,import_kwh,settlement_period,settlement_date,mpan"
    parsed = parse_meter_file(
        "\ufeff" + csv_text(f"actual,0.1,0.2,3,2026-11-20,{H1}", header=header) + "\n", now=NOW
    )
    assert parsed.problems == ()
    assert [(row.import_wh, row.export_wh, row.period.period) for row in parsed.rows] == [(200, 100, 3)]


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ("", "empty"),
        ("mpan,settlement_date,settlement_period,import_kwh,export_kwh", "lacks quality"),
        (HEADER_LINE + ",note", "unknown column 'note'"),
        (HEADER_LINE.replace("quality", "mpan"), "names 'mpan' more than once"),
        (HEADER_LINE.upper(), "unknown column 'MPAN'"),
    ],
)
def test_a_wrong_header_refuses_the_whole_file(header, reason):
    with pytest.raises(MeterFileError, match=reason) as caught:
        parse_meter_file(
            csv_text(f"{H1},2026-11-20,1,0.4,0,actual", header=header) if header else "", now=NOW
        )
    assert caught.value.field == "header"


BAD_ROWS = [
    # (row, the column at fault, what the reason says)
    (f"{H1[:-1]}{(int(H1[-1]) + 1) % 10},2026-11-20,1,0.4,0,actual", "mpan", "check digit"),
    ("12345,2026-11-20,1,0.4,0,actual", "mpan", "13-digit"),
    (f"{H1},20/11/2026,1,0.4,0,actual", "settlement_date", "is not a date"),
    (f"{H1},2026-02-30,1,0.4,0,actual", "settlement_date", "is not a date"),
    (f"{H1},2026-11-20,0,0.4,0,actual", "settlement_period", "period"),
    (f"{H1},2026-11-20,49,0.4,0,actual", "settlement_period", "beyond 48"),
    (f"{H1},2026-03-29,47,0.4,0,actual", "settlement_period", "beyond 46"),  # spring: 46 periods
    (f"{H1},2026-11-20,one,0.4,0,actual", "settlement_period", "not a period number"),
    (f"{H1},2026-11-20,1,-0.4,0,actual", "import_kwh", "negative"),
    (f"{H1},2026-11-20,1,0.4125,0,actual", "import_kwh", "more than 3 decimal places"),
    (f"{H1},2026-11-20,1,0.4,1e3,actual", "export_kwh", "not a decimal number"),
    (f"{H1},2026-11-20,1,0.4,,actual", "export_kwh", "not a decimal number"),
    (f"{H1},2026-11-20,1,1000.001,0,actual", "import_kwh", "more than 1000 kWh"),
    (f"{H1},2026-11-20,1,0.4,0,Actual", "quality", "actual or estimated"),
    (f"{H1},2026-11-20,1,0.4,0", "row", "5 fields"),
    (f"{H1},2026-11-21,25,0.4,0,actual", "settlement_period", "has not ended"),  # 12:00-12:30 UTC
]


@pytest.mark.parametrize(("line", "field", "reason"), BAD_ROWS)
def test_a_bad_row_names_its_row_and_column(line, field, reason):
    parsed = parse_meter_file(csv_text(f"{H2},2026-11-20,1,0.1,0,actual", line), now=NOW)
    assert [(p.row, p.field) for p in parsed.problems] == [(3, field)]
    assert reason in parsed.problems[0].reason
    assert [row.row for row in parsed.rows] == [2]  # the good row is kept for --skip-bad


def test_a_long_value_is_quoted_cut_short():
    (problem,) = parse_meter_file(csv_text(f"{H1},2026-11-20,1,0.4,0,{'x' * 10_000}"), now=NOW).problems
    assert problem.reason == f"must be actual or estimated, not {'x' * 40 + '...'!r}"


def test_every_bad_column_of_a_row_is_named():
    assert problems_of(csv_text(f"{H1},2026-11-20,1,-1,x,sometimes")) == [
        (2, "import_kwh"),
        (2, "export_kwh"),
        (2, "quality"),
    ]


def test_clock_change_days_have_46_and_50_periods():
    parsed = parse_meter_file(
        csv_text(f"{H1},2026-10-25,50,0.1,0,actual", f"{H1},2026-03-29,46,0.1,0,actual"), now=NOW
    )
    assert parsed.problems == ()
    autumn, spring = parsed.rows
    assert autumn.period.start_utc == datetime(2026, 10, 25, 23, 30, tzinfo=UTC)
    assert spring.period.start_utc == datetime(2026, 3, 29, 22, 30, tzinfo=UTC)


def test_a_period_ending_exactly_now_is_accepted():
    period = period_at(NOW - timedelta(minutes=30))
    line = f"{H1},{period.settlement_date},{period.period},0.1,0,actual"
    assert problems_of(csv_text(line), now=period.end_utc) == []
    assert problems_of(csv_text(line), now=period.end_utc - timedelta(seconds=1)) == [
        (2, "settlement_period")
    ]


def test_a_repeated_mpan_date_and_period_is_refused_naming_the_first():
    parsed = parse_meter_file(
        csv_text(
            f"{H1},2026-11-20,1,0.1,0,actual",
            f"{H2},2026-11-20,1,0.1,0,actual",
            f"{H1},2026-11-20,1,0.2,0,actual",
        ),
        now=NOW,
    )
    assert [(p.row, p.field) for p in parsed.problems] == [(4, "settlement_period")]
    assert "repeats row 2" in parsed.problems[0].reason


def test_too_many_rows_refuse_the_file():
    rows = [f"{H1},2026-11-20,{n},0.1,0,actual" for n in range(1, 12)]
    with pytest.raises(MeterFileError, match="more than 10 data rows"):
        parse_meter_file(csv_text(*rows), now=NOW, max_rows=10)
    assert len(parse_meter_file(csv_text(*rows[:10]), now=NOW, max_rows=10).rows) == 10


@given(st.integers(min_value=0, max_value=1_000_000))
def test_any_wh_written_as_kwh_to_three_places_is_read_back_exactly(wh):
    text = f"{Decimal(wh) / 1000:.3f}"
    (row,) = parse_meter_file(csv_text(f"{H1},2026-11-20,7,{text},{text},actual"), now=NOW).rows
    assert (row.import_wh, row.export_wh) == (wh, wh)


# --- storing ----------------------------------------------------------------------------------


@pytest.fixture
def street(engine):
    """The street market (H1, H2 on F1; H3 on F2), no meters."""
    with transaction(engine) as session:
        seed_market(session, now=NOW - timedelta(days=2))
    return engine


def current_energy(engine) -> dict[tuple[str, int], tuple[int, int, bool, int]]:
    with Session(engine) as session:
        rows = session.exec(select(IntervalEnergyRow).where(IntervalEnergyRow.is_current)).all()
    return {
        (row.meter_id, row.period): (row.import_wh, row.export_wh, row.estimated, row.revision)
        for row in rows
    }


def test_a_first_import_makes_each_households_meter_and_revision_one(street):
    summary = import_meter_file(
        street,
        csv_text(
            f"{H1},2026-11-20,1,0.412,0,estimated",
            f"{H1},2026-11-20,2,0.3,0,actual",
            f"{H3},2026-11-20,1,0,1.25,actual",
        ),
        now=NOW,
    )
    assert (summary.rows_read, summary.stored, summary.new, summary.bad, summary.meters_created) == (
        3,
        3,
        3,
        0,
        2,
    )
    assert current_energy(street) == {
        (f"hh-{H1}", 1): (412, 0, True, 1),
        (f"hh-{H1}", 2): (300, 0, False, 1),
        (f"hh-{H3}", 1): (0, 1250, False, 1),
    }
    with Session(street) as session:
        meters = list_meters(session, polled=False)
        assert [(m.id, m.participant_id, m.transport) for m in meters] == [
            (f"hh-{H1}", "H1", "data-service"),
            (f"hh-{H3}", "H3", "data-service"),
        ]
        assert list_meters(session, polled=True) == []  # the poller and the energy job never see them
        # Never polled, so never "failing" in the operator's console.
        assert meter_states(session, failing_before=NOW)[1] == 0


def test_the_same_file_again_adds_nothing(street):
    text = csv_text(f"{H1},2026-11-20,1,0.412,0,estimated", f"{H2},2026-11-20,1,0.2,0.1,actual")
    import_meter_file(street, text, now=NOW)
    before = count_rows(street, IntervalEnergyRow)
    again = import_meter_file(street, text, now=NOW + timedelta(hours=1))
    assert (again.stored, again.unchanged, again.meters_created) == (0, 2, 0)
    assert count_rows(street, IntervalEnergyRow) == before == 2


def test_a_changed_value_is_a_new_revision_retiring_the_old(street):
    import_meter_file(
        street, csv_text(f"{H1},2026-11-20,1,0.412,0,estimated", f"{H1},2026-11-20,2,0.3,0,actual"), now=NOW
    )
    summary = import_meter_file(
        street,
        csv_text(f"{H1},2026-11-20,1,0.5,0,actual", f"{H1},2026-11-20,2,0.35,0,actual"),
        now=NOW + timedelta(hours=1),
    )
    assert (summary.stored, summary.revised, summary.estimates_replaced, summary.new) == (2, 2, 1, 0)
    assert current_energy(street) == {
        (f"hh-{H1}", 1): (500, 0, False, 2),
        (f"hh-{H1}", 2): (350, 0, False, 2),
    }
    assert count_rows(street, IntervalEnergyRow) == 4  # the first revisions are kept, retired


def test_an_estimate_never_replaces_an_actual(street):
    import_meter_file(street, csv_text(f"{H1},2026-11-20,1,0.5,0,actual"), now=NOW)
    refused = import_meter_file(
        street, csv_text(f"{H2},2026-11-20,1,0.2,0,actual", f"{H1},2026-11-20,1,0.45,0,estimated"), now=NOW
    )
    assert [(p.row, p.field) for p in refused.problems] == [(3, "quality")]
    assert "never replaces the actual" in refused.problems[0].reason
    assert (refused.bad, refused.stored) == (1, 0)
    assert current_energy(street) == {(f"hh-{H1}", 1): (500, 0, False, 1)}  # H2's good row waits too
    skipped = import_meter_file(
        street,
        csv_text(f"{H2},2026-11-20,1,0.2,0,actual", f"{H1},2026-11-20,1,0.45,0,estimated"),
        now=NOW,
        skip_bad=True,
    )
    assert (skipped.bad, skipped.stored) == (1, 1)
    assert current_energy(street)[(f"hh-{H1}", 1)] == (500, 0, False, 1)
    assert current_energy(street)[(f"hh-{H2}", 1)] == (200, 0, False, 1)


def test_any_bad_row_stores_nothing_and_skip_bad_stores_the_good_rows(street):
    text = csv_text(
        f"{H1},2026-11-20,1,0.4,0,actual",
        f"{mpan(99)},2026-11-20,1,0.4,0,actual",  # valid, but nobody's
        f"{H2},2026-11-20,1,0.4,0,maybe",
        f"{H3},2026-11-20,1,0,0.4,actual",
    )
    summary = import_meter_file(street, text, now=NOW)
    assert [(p.row, p.field) for p in summary.problems] == [(3, "mpan"), (4, "quality")]
    assert "not a registered household" in summary.problems[0].reason
    assert (summary.bad, summary.stored, summary.new, summary.meters_created) == (2, 0, 0, 0)
    assert count_rows(street, IntervalEnergyRow) == 0
    assert count_rows(street, MeterRow) == 0
    skipped = import_meter_file(street, text, now=NOW, skip_bad=True)
    assert (skipped.bad, skipped.stored, skipped.meters_created) == (2, 2, 2)
    assert set(current_energy(street)) == {(f"hh-{H1}", 1), (f"hh-{H3}", 1)}


def test_a_household_metered_over_modbus_is_refused_and_no_energy_is_counted_twice(street):
    with transaction(street) as session:
        register_meter(
            session,
            meter_id="M1",
            participant_id="H1",
            host="10.0.0.1",
            port=502,
            unit_id=1,
            transport="tcp",
            model="sdm630",
            now=NOW,
        )
    summary = import_meter_file(street, csv_text(f"{H1},2026-11-20,1,0.4,0,actual"), now=NOW)
    assert [(p.row, p.field) for p in summary.problems] == [(2, "mpan")]
    assert "metered over Modbus (meter 'M1')" in summary.problems[0].reason
    # Once the Modbus meter is removed, the data service reads the household.
    with transaction(street) as session:
        remove_meter(session, meter_id="M1")
    assert import_meter_file(street, csv_text(f"{H1},2026-11-20,1,0.4,0,actual"), now=NOW).stored == 1
    # And a Modbus meter cannot now join it.
    with transaction(street) as session, pytest.raises(MarketError, match="national data service") as caught:
        register_meter(
            session,
            meter_id="M1b",
            participant_id="H1",
            host="10.0.0.1",
            port=502,
            unit_id=2,
            transport="tcp",
            model="sdm630",
            now=NOW,
        )
    assert caught.value.field == "participant_id"


def test_an_inactive_household_is_refused(street):
    with transaction(street) as session:
        from market.tables import ParticipantRow

        row = session.get(ParticipantRow, "H2")
        row.active = False
        session.add(row)
    summary = import_meter_file(street, csv_text(f"{H2},2026-11-20,1,0.4,0,actual"), now=NOW)
    assert [(p.row, p.field) for p in summary.problems] == [(2, "mpan")]
    assert "inactive" in summary.problems[0].reason


# --- settlement on imported energy --------------------------------------------------------------

PERIOD = settlement_period(DAY, 27)  # 13:00-13:30 UTC
CONFIG = SettlementConfig(vat_rate=Decimal("0.05"), platform_fee_p_per_kwh=Decimal("0.1"))
SETTLED_AT = PERIOD.end_utc + timedelta(minutes=10)


@pytest.fixture
def cleared(street):
    """H1 buys 2 kWh at 20 p; H3 sells 3 kWh from 5 p; F2 lets 2 kWh out, so 2 kWh trade. No meters."""
    with transaction(street) as session:
        for home, side, kwh, price in (("H1", "buy", "2", "20"), ("H3", "sell", "3", "5")):
            place_order(
                session,
                rules=MarketRules(),
                participant_id=home,
                period=PERIOD,
                side=side,
                quantity_kwh=Decimal(kwh),
                price_p_per_kwh=Decimal(price),
                now=PERIOD.start_utc - timedelta(hours=2),
            )
    clear_interval(street, period=PERIOD, rules=MarketRules(), now=PERIOD.start_utc, triggered_by="test")
    return street


def rows_for(h1_kwh: str, h1_quality: str) -> str:
    day, number = PERIOD.settlement_date, PERIOD.period
    return csv_text(
        f"{H1},{day},{number},{h1_kwh},0,{h1_quality}",
        f"{H2},{day},{number},1.000,0,actual",
        f"{H3},{day},{number},0,2.5,actual",
    )


def test_imported_energy_is_settled_reconciled_by_the_difference_and_named_on_the_statement(cleared):
    """H1 bought 2 kWh; the data service first estimates it used 2.2 kWh, then reads 2.4 kWh:
    its imbalance import goes from 0.2 to 0.4 kWh at the 24.5 p tariff, 4.9 p more, plus 5% VAT."""
    assert (
        import_meter_file(
            cleared, rows_for("2.2", "estimated"), now=PERIOD.end_utc + timedelta(minutes=5)
        ).stored
        == 3
    )
    initial = settle(
        cleared, period=PERIOD, run_type=INITIAL, config=CONFIG, now=SETTLED_AT, triggered_by="test"
    )
    assert (initial.run.status, initial.run.estimated) == ("complete", ("H1",))
    with Session(cleared) as session:
        before = statement(session, "H1", first_day=DAY, last_day=DAY).total
        (row,) = [r for r in day_statement(session, "H1", DAY) if r.period == PERIOD]
        assert (row.status, row.reason) == (ESTIMATED, "settled on estimated meter energy")
        assert periods_to_reconcile(session, length_minutes=30) == []
    assert (before.bought_wh, before.imported_wh, before.imported_cp) == (
        2000,
        200,
        money_cp(200, Decimal("24.5")),
    )

    corrected_at = SETTLED_AT + timedelta(hours=1)
    summary = import_meter_file(cleared, rows_for("2.4", "actual"), now=corrected_at)
    assert (summary.revised, summary.estimates_replaced, summary.unchanged) == (1, 1, 2)
    # The settlement job finds the interval as it finds a late reading, and reconciles it.
    jobs = SettlementJobs(
        cleared, MarketRules(), FixedClock(corrected_at + timedelta(minutes=1)), config=CONFIG
    )
    outcomes = jobs.settle_due()
    assert [(o.run.period, o.run.run_type, o.run.estimated) for o in outcomes] == [(PERIOD, RECONCILE, ())]
    with Session(cleared) as session:
        after = statement(session, "H1", first_day=DAY, last_day=DAY).total
        (row,) = [r for r in day_statement(session, "H1", DAY) if r.period == PERIOD]
        assert pool_balance_cp(session, run_id=outcomes[0].run.id) == 0
        balances = account_balances(session, period=PERIOD)
        assert [r.run_type for r in runs_of(session, PERIOD)] == [INITIAL, RECONCILE]
    assert row.status == "settled"
    assert row.reason == ESTIMATE_REPLACED.format(sequence=2)
    extra = money_cp(400, Decimal("24.5")) - money_cp(200, Decimal("24.5"))
    assert extra == 490  # 4.9 p
    assert after.imported_wh - before.imported_wh == 200
    assert after.imported_cp - before.imported_cp == extra
    assert after.bought_cp == before.bought_cp
    assert after.bought_wh == before.bought_wh

    # VAT is on what the household pays in the interval, rounded once: 5% of 30.50 p, then of 35.40 p.
    def vat(figures):
        return scale_cp(figures.bought_cp + figures.imported_cp + figures.fees_cp, Decimal("0.05"))

    assert (before.vat_cp, after.vat_cp) == (vat(before), vat(after)) == (152, 177)
    assert after.total_cp - before.total_cp == extra + 177 - 152
    assert after.corrections_cp == after.total_cp - before.total_cp
    assert sum(balances.values()) == 0
    assert balances.get("pool", 0) == 0
    # Nothing changed since: a second pass reconciles nothing.
    assert jobs.settle_due() == []


def test_a_household_without_its_file_yet_waits_and_is_settled_when_it_arrives(cleared):
    day, number = PERIOD.settlement_date, PERIOD.period
    import_meter_file(
        cleared,
        csv_text(f"{H2},{day},{number},1,0,actual", f"{H3},{day},{number},0,2.5,actual"),
        now=SETTLED_AT,
    )
    # H1 has no meter at all yet: like a household with none, it is not settled on metered energy.
    first = settle(
        cleared, period=PERIOD, run_type=INITIAL, config=CONFIG, now=SETTLED_AT, triggered_by="test"
    )
    assert "H1" not in first.run.estimated
    import_meter_file(
        cleared, csv_text(f"{H1},{day},{number},2.4,0,actual"), now=SETTLED_AT + timedelta(minutes=30)
    )
    with Session(cleared) as session:
        assert periods_to_reconcile(session, length_minutes=30) == [PERIOD]
    second = settle(
        cleared,
        period=PERIOD,
        run_type=RECONCILE,
        config=CONFIG,
        now=SETTLED_AT + timedelta(hours=1),
        triggered_by="test",
    )
    assert second.created
    assert second.run.status == "complete"
    with Session(cleared) as session:
        total = statement(session, "H1", first_day=DAY, last_day=DAY).total
        assert sum(account_balances(session, period=PERIOD).values()) == 0
    assert (total.bought_wh, total.imported_wh) == (2000, 400)


def test_the_meter_jobs_leave_data_service_meters_and_their_energy_alone(street):
    """No poll reaches a data-service meter, and the energy job (which derives every polled meter's
    energy from its readings) never derives one from the readings it does not have."""
    period = settlement_period(DAY, 27)
    import_meter_file(street, csv_text(f"{H1},{DAY},27,0.412,0,estimated"), now=NOW)
    before = current_energy(street)
    polling = MeterPolling(street, MarketRules(), FixedClock(NOW), poll_settings=PollSettings())
    try:  # the jobs' own methods, called directly: no scheduler started
        assert polling.poll_once() == ([], 0)
        assert polling.derive_energy(period.next()) == 0
        assert polling.estimates_revisited == 0
    finally:
        polling._loop.close()  # never started: no poller, no thread, only its loop to close
    assert current_energy(street) == before


def test_racing_imports_of_one_file_store_it_once(street, database_url):
    text = csv_text(
        *(f"{mpan_},{DAY},{n},0.{n:03d},0,actual" for mpan_ in (H1, H2, H3) for n in range(1, 49))
    )
    summaries = race(database_url, lambda engine: import_meter_file(engine, text, now=NOW), workers=3)
    assert sorted(summary.new for summary in summaries) == [0, 0, 144]
    assert sorted(summary.unchanged for summary in summaries) == [0, 144, 144]
    assert count_rows(street, IntervalEnergyRow) == 144
    assert count_rows(street, MeterRow) == 3


def test_a_market_of_other_interval_lengths_is_refused_before_reading(street):
    with pytest.raises(MeterFileError, match="30-minute intervals; this one's are 15") as caught:
        import_meter_file(street, csv_text(f"{H1},{DAY},1,0.4,0,actual"), now=NOW, interval_minutes=15)
    assert caught.value.field == "interval_minutes"
    assert count_rows(street, IntervalEnergyRow) == 0
