"""Automatic trading's planning runs (market.autotrading), on SQLite and PostgreSQL: the price
outlook, the devices' assumed state, orders made from plans without duplicates, manual orders
first, a failing household that stops nobody, and a run that stops before the gate."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa
from sqlmodel import Session

import market.autotrading as autotrading
from market.autotrading import (
    LEAD,
    OUTLOOK_DAYS,
    NetPosition,
    _battery_state,
    _ev_state,
    estimated_price,
    forecast_positions,
    latest_plan,
    local_markets,
    plan_strategies,
    planning_periods,
    price_outlook,
)
from market.clearing import clear_interval, current_run, trades_of
from market.database import transaction
from market.intervals import period_at, settlement_period
from market.orders import OrderRequest, cancel_order, list_orders, place_order, place_orders
from market.rules import MarketRules
from market.strategies import pause_strategy, set_strategy
from market.tables import StrategyPlanRow
from planning.forecast import LONDON, HouseholdHistory, MeterHistory
from planning.strategy import ElectricVehicle, HomeBattery, Strategy
from tests.factories import seed_market, street_network

NOW = datetime(2026, 12, 7, 9, 1, tzinfo=UTC)  # a Monday in winter: London is on UTC
RULES = MarketRules()
BATTERY = {"capacity_kwh": "10", "charge_kw": "2", "discharge_kw": "2", "min_soc_percent": "10"}


@pytest.fixture
def market(engine):
    with transaction(engine) as session:
        seed_market(session, now=NOW - timedelta(days=10))
    return engine


def state(engine, household: str, **fields) -> None:
    document = {"sell_floor_p_per_kwh": "5", "buy_ceiling_p_per_kwh": "30", **fields}
    with transaction(engine) as session:
        set_strategy(
            session, participant_id=household, strategy=document, rules=RULES, now=NOW, actor=household
        )


def open_orders(engine, household: str) -> list:
    with Session(engine) as session:
        return list_orders(session, participant_id=household, status="open", limit=1000)


def test_the_periods_start_at_the_first_gate_still_open_with_room_to_spare():
    periods = planning_periods(RULES, NOW)
    assert len(periods) == 12
    assert RULES.gate_closure_utc(periods[0]) >= NOW + LEAD
    assert RULES.gate_closure_utc(periods[0]) - RULES.gate_closure_utc(periods[0].previous()) == timedelta(
        minutes=30
    )
    assert RULES.gate_closure_utc(periods[0].previous()) < NOW + LEAD
    assert all(b.start_utc - a.start_utc == timedelta(minutes=30) for a, b in itertools.pairwise(periods))


def clear_days_before(engine, period, days, buy_price=lambda day: 20 + day) -> None:
    """Clear ``period``'s half-hour on each of ``days`` earlier days: H1 buys 0.5 kWh, H2 sells."""
    for day in days:
        earlier = period.start_utc - timedelta(days=day)
        at = period_at(earlier)
        with transaction(engine) as session:
            for home, side, price in (("H1", "buy", buy_price(day)), ("H2", "sell", 5)):
                place_order(
                    session,
                    rules=RULES,
                    participant_id=home,
                    period=at,
                    side=side,
                    quantity_kwh=Decimal("0.5"),
                    price_p_per_kwh=Decimal(price),
                    now=earlier - timedelta(hours=1),
                )
        clear_interval(engine, period=at, rules=RULES, now=RULES.gate_closure_utc(at), triggered_by="t")


def test_the_outlook_blends_the_nodes_prices_at_the_same_half_hour_with_the_tariffs_middle(market):
    """Two earlier days cleared at the first period's half-hour: F1 expects 2/7 of their mean and
    5/7 of the estimate, here (no forecast position) the tariffs' middle (24.5 and 4.1: 14.3p); a
    period never cleared is expected at the middle alone."""
    periods = planning_periods(RULES, NOW)
    clear_days_before(market, periods[0], (1, 2))
    with Session(market) as session:
        outlook = price_outlook(session, ["F1"], periods)["F1"]
        from market.clearing import current_run, node_prices

        cleared = [
            next(
                p.price_p_per_kwh
                for p in node_prices(
                    session, current_run(session, period_at(periods[0].start_utc - timedelta(days=d))).id
                )
                if p.node_id == "F1"
            )
            for d in (1, 2)
        ]
    mean = sum(cleared) / 2
    assert outlook.expected_p_per_kwh[0] == ((2 * mean + 5 * Decimal("14.3")) / 7).quantize(Decimal("0.01"))
    assert outlook.expected_p_per_kwh[1:] == (Decimal("14.30"),) * 11
    assert outlook.import_p_per_kwh == (Decimal("24.5"),) * 12
    assert outlook.export_p_per_kwh == (Decimal("4.1"),) * 12
    assert outlook.from_history == 1


def test_the_battery_starts_where_the_last_plan_left_it_else_at_its_floor():
    strategy = Strategy(sell_floor_p_per_kwh=5, buy_ceiling_p_per_kwh=30, battery=HomeBattery(**BATTERY))
    start = NOW.replace(minute=0)
    assert _battery_state(strategy, None, start) == Decimal(1)  # 10% of 10 kWh
    previous = StrategyPlanRow(
        participant_id="H1",
        planned_at=start,
        first_start_utc=start,
        battery_soc_wh=3000,
        periods_json='[["2026-12-07T09:00:00+00:00", 4000, 0], ["2026-12-07T09:30:00+00:00", 5000, 0]]',
        expected_cost_p=Decimal(0),
    )
    assert _battery_state(strategy, previous, start) == Decimal(3)
    assert _battery_state(strategy, previous, start + timedelta(minutes=30)) == Decimal(4)
    assert _battery_state(strategy, previous, start + timedelta(hours=3)) == Decimal(5)  # idle after
    assert _battery_state(Strategy(sell_floor_p_per_kwh=5, buy_ceiling_p_per_kwh=30), previous, start) is None


def test_a_batterys_energy_past_the_horizon_is_worth_the_dearest_hours_it_could_empty_in():
    """10 kWh, 10% floor, 2 kW: a full battery needs 9 kWh / 1 kWh a period = 9 periods to empty,
    so its energy is worth the mean of the 9 dearest prices after the horizon, within the tariffs."""
    after = tuple(Decimal(p) for p in ["10"] * 20 + ["30"] * 4 + ["22"] * 5 + ["12"] * 7)
    outlook = autotrading.NodeOutlook(
        (Decimal(14),) * 12, (Decimal("24.5"),) * 12, (Decimal("4.1"),) * 12, 0, after
    )
    battery = HomeBattery(**BATTERY)
    # The 9 dearest: four at 30 (held at the import tariff, 24.5, only as a mean) and five at 22.
    expected = ((4 * Decimal(30) + 5 * Decimal(22)) / 9).quantize(Decimal("0.01"))
    assert autotrading.stored_price(battery, outlook, Decimal("0.5")) == min(expected, Decimal("24.5"))
    slow = HomeBattery(**{**BATTERY, "discharge_kw": "0.5"})  # 36 periods: every one after
    assert autotrading.stored_price(slow, outlook, Decimal("0.5")) == (sum(after) / 36).quantize(
        Decimal("0.01")
    )
    without = autotrading.NodeOutlook(
        outlook.expected_p_per_kwh, outlook.import_p_per_kwh, outlook.export_p_per_kwh, 0
    )
    assert autotrading.stored_price(battery, without, Decimal("0.5")) is None


def test_the_battery_keeps_what_a_cleared_period_did_not_sell_or_buy():
    """The previous plan discharged 2 kWh of stored energy at 09:00 to sell and charged 1 kWh at
    09:30 from a purchase; at 09:00 half of its sell orders' energy did not sell, at 09:30 none
    of its purchase was bought: the battery kept the unsold energy and did not charge."""
    strategy = Strategy(
        sell_floor_p_per_kwh=5,
        buy_ceiling_p_per_kwh=30,
        battery=HomeBattery(**BATTERY, round_trip_efficiency_percent=81),
    )
    start = NOW.replace(minute=0)
    previous = StrategyPlanRow(
        participant_id="H1",
        planned_at=start,
        first_start_utc=start,
        battery_soc_wh=5000,
        periods_json='[["2026-12-07T09:00:00+00:00", 3000, 0], ["2026-12-07T09:30:00+00:00", 3900, 0]]',
        expected_cost_p=Decimal(0),
    )
    half = timedelta(minutes=30)
    # Planned at the meter: -1800 Wh at 09:00 (2000 stored x 0.9), +1000 Wh at 09:30 (900 / 0.9).
    untraded = {("H1", start): autotrading.Untraded(unsold_wh=900, unbought_wh=0)}
    assert _battery_state(strategy, previous, start + half, untraded) == Decimal(4)  # -900 Wh: 1000 stored
    untraded[("H1", start + half)] = autotrading.Untraded(unsold_wh=0, unbought_wh=1000)
    assert _battery_state(strategy, previous, start + 2 * half, untraded) == Decimal(4)  # no charge
    assert _battery_state(strategy, previous, start + 2 * half) == Decimal("3.9")  # cleared as planned


def test_what_a_strategy_did_not_trade_in_a_cleared_period(market):
    """H1's strategy offers 2 kWh at 10 p, and H1 offers 1 kWh more by hand; H2 buys 0.5 kWh: of
    the 3 kWh offered 2.5 did not sell, of which what the strategy's offer did not sell counts. A
    cancelled strategy order and a period not yet cleared are not counted."""
    at = period_at(NOW + timedelta(hours=1))
    later = at.next()
    with transaction(market) as session:
        strategy_orders, _ = place_orders(
            session,
            rules=RULES,
            participant_id="H1",
            requests=[
                OrderRequest(at, "sell", Decimal(2), Decimal(10)),
                OrderRequest(at, "buy", Decimal(1), Decimal(3)),
                OrderRequest(later, "sell", Decimal(1), Decimal(10)),
            ],
            now=NOW,
            source="strategy",
        )
        cancel_order(session, rules=RULES, order_id=strategy_orders[1].id, participant_id="H1", now=NOW)
        manual, _ = place_order(
            session,
            rules=RULES,
            participant_id="H1",
            period=at,
            side="sell",
            quantity_kwh=Decimal(1),
            price_p_per_kwh=Decimal(10),
            now=NOW,
        )
        place_order(
            session,
            rules=RULES,
            participant_id="H2",
            period=at,
            side="buy",
            quantity_kwh=Decimal("0.5"),
            price_p_per_kwh=Decimal(25),
            now=NOW,
        )
    clear_interval(market, period=at, rules=RULES, now=RULES.gate_closure_utc(at), triggered_by="t")
    with Session(market) as session:
        untraded = autotrading.untraded_strategy_orders(
            session, ["H1", "H2"], since=at.start_utc, until=later.end_utc
        )
        trades = trades_of(session, current_run(session, at).id)
    accepted = {t.order_id: t.accepted_wh for t in trades}
    assert sum(accepted.values()) == 1000  # 500 Wh sold by H1's offers, bought by H2
    assert set(untraded) == {("H1", at.start_utc)}
    unsold = untraded[("H1", at.start_utc)].unsold_wh
    assert unsold == 2000 - accepted.get(strategy_orders[0].id, 0)
    assert unsold + 1000 - accepted.get(manual.id, 0) == 2500
    assert untraded[("H1", at.start_utc)].unbought_wh == 0  # its bid was cancelled


def test_the_ev_needs_what_its_window_has_not_yet_been_planned_to_receive():
    ev = ElectricVehicle(energy_needed_kwh=10, charge_kw=7, plugged_in_from=time(18), departure=time(7))
    evening = datetime(2026, 12, 7, 18, 0, tzinfo=UTC)
    half = timedelta(minutes=30)
    assert _ev_state(ev, None, evening - half, half) is None  # not plugged in yet
    assert _ev_state(ev, None, evening, half) == Decimal(10)
    previous = StrategyPlanRow(
        participant_id="H1",
        planned_at=evening,
        first_start_utc=evening - half,  # planned from before the window opened
        ev_needed_wh=None,
        periods_json=(
            '[["2026-12-07T17:30:00+00:00", null, 0], ["2026-12-07T18:00:00+00:00", null, 3500],'
            ' ["2026-12-07T18:30:00+00:00", null, 2000]]'
        ),
        expected_cost_p=Decimal(0),
    )
    assert _ev_state(ev, previous, evening + 2 * half, half) == Decimal("4.5")
    after_midnight = datetime(2026, 12, 8, 1, 0, tzinfo=UTC)  # the same window, across midnight
    assert _ev_state(ev, previous, after_midnight, half) == Decimal("4.5")
    assert _ev_state(ev, previous, datetime(2026, 12, 8, 8, 0, tzinfo=UTC), half) is None  # departed


def test_a_run_places_the_plans_orders_and_a_second_run_changes_nothing(market):
    state(market, "H1", battery=BATTERY)
    state(market, "H3", pv={"kwp": "4"})
    first = plan_strategies(market, rules=RULES, now=NOW)
    assert (first.households, first.planned, first.failed, first.not_reached) == (2, 2, {}, 0)
    orders = open_orders(market, "H1")
    assert orders, "a household with demand always bids"
    assert {o.source for o in orders} == {"strategy"}
    assert first.placed == len(orders) + len(open_orders(market, "H3"))
    assert all(Decimal(5) <= o.price_p_per_kwh <= Decimal(30) for o in orders)
    keys = {o.period.key for o in orders}
    assert keys <= {p.key for p in first.periods}
    with Session(market) as session:
        plan = latest_plan(session, "H1")
        assert plan is not None
        assert plan.first_start_utc == first.periods[0].start_utc
        assert plan.battery_soc_wh == 1000  # its floor: no plan before
    again = plan_strategies(market, rules=RULES, now=NOW)
    assert (again.placed, again.amended, again.cancelled) == (0, 0, 0)
    assert sorted(o.id for o in open_orders(market, "H1")) == sorted(o.id for o in orders)
    assert open_orders(market, "H2") == []  # no strategy, no orders


def test_a_households_manual_order_for_a_period_takes_precedence(market):
    state(market, "H1")
    periods = planning_periods(RULES, NOW)
    with transaction(market) as session:
        manual, _ = place_order(
            session,
            rules=RULES,
            participant_id="H1",
            period=periods[2],
            side="buy",
            quantity_kwh=Decimal("2"),
            price_p_per_kwh=Decimal("12"),
            now=NOW,
        )
    plan_strategies(market, rules=RULES, now=NOW)
    in_that_period = [o for o in open_orders(market, "H1") if o.period == periods[2]]
    assert [(o.id, o.source) for o in in_that_period] == [(manual.id, "manual")]
    assert {o.period for o in open_orders(market, "H1") if o.source == "strategy"} == set(periods) - {
        periods[2]
    }


def test_a_household_whose_orders_fail_is_skipped_and_the_others_go_on(market, monkeypatch):
    state(market, "H1")
    state(market, "H3")
    real = autotrading.apply_strategy_orders

    def failing_for_h1(session, **arguments):  # a fault injected for one household
        if arguments["participant_id"] == "H1":
            raise RuntimeError("the book is unreachable")
        return real(session, **arguments)

    monkeypatch.setattr(autotrading, "apply_strategy_orders", failing_for_h1)
    report = plan_strategies(market, rules=RULES, now=NOW)
    assert report.planned == 1
    assert set(report.failed) == {"H1"}
    assert "the book is unreachable" in report.failed["H1"]
    assert open_orders(market, "H1") == []
    assert open_orders(market, "H3")
    with Session(market) as session:
        assert latest_plan(session, "H1") is None  # its plan and its orders: one transaction


def test_a_run_stops_before_the_first_periods_gate_and_leaves_the_rest(market):
    state(market, "H1")
    state(market, "H3")
    periods = planning_periods(RULES, NOW)
    late = RULES.gate_closure_utc(periods[0]) - LEAD
    report = plan_strategies(market, rules=RULES, now=NOW, clock=lambda: late)
    assert (report.planned, report.not_reached) == (0, 2)
    assert open_orders(market, "H1") == open_orders(market, "H3") == []


def test_a_paused_strategy_is_not_planned_and_its_orders_go(market):
    state(market, "H1")
    assert plan_strategies(market, rules=RULES, now=NOW).planned == 1
    with transaction(market) as session:
        pause_strategy(session, participant_id="H1", rules=RULES, now=NOW, actor="H1")
    report = plan_strategies(market, rules=RULES, now=NOW)
    assert (report.households, report.planned) == (0, 0)
    assert open_orders(market, "H1") == []


def test_the_period_after_a_clock_change_is_planned_in_local_time():
    """On 25 October 2026 London's clocks go back: the day has 50 periods, and the planning
    periods follow one another in UTC across the change."""
    night = settlement_period(datetime(2026, 10, 25).date(), 3)
    periods = planning_periods(RULES, night.start_utc - timedelta(minutes=30))
    assert all(b.start_utc - a.start_utc == timedelta(minutes=30) for a, b in itertools.pairwise(periods))
    assert [p.period for p in periods[:4]] == [3, 4, 5, 6]


def test_households_planned_in_batches_of_one_get_the_same_orders(market, monkeypatch):
    state(market, "H1", battery=BATTERY)
    state(market, "H3", pv={"kwp": "4"})
    together = plan_strategies(market, rules=RULES, now=NOW)
    orders = {
        home: sorted(
            (o.period.key, o.side, o.quantity_kwh, o.price_p_per_kwh) for o in open_orders(market, home)
        )
        for home in ("H1", "H3")
    }
    with transaction(market) as session:  # start again: no orders, no plans
        for home in ("H1", "H3"):
            for order in open_orders(market, home):
                cancel_order(session, rules=RULES, order_id=order.id, participant_id=home, now=NOW)
        session.execute(sa.delete(StrategyPlanRow))
    monkeypatch.setattr(autotrading, "BATCH_HOUSEHOLDS", 1)
    alone = plan_strategies(market, rules=RULES, now=NOW)
    assert (alone.planned, alone.placed, alone.failed) == (together.planned, together.placed, {})
    assert {
        home: sorted(
            (o.period.key, o.side, o.quantity_kwh, o.price_p_per_kwh) for o in open_orders(market, home)
        )
        for home in ("H1", "H3")
    } == orders


def test_a_batch_whose_transaction_fails_counts_its_households_and_the_next_batch_goes_on(
    market, monkeypatch
):
    state(market, "H1")
    state(market, "H3")
    real = autotrading.read_strategy_books

    def failing_for_h1(session, **arguments):  # the first batch's reads fail
        if "H1" in arguments["participant_ids"]:
            raise RuntimeError("the database went away")
        return real(session, **arguments)

    monkeypatch.setattr(autotrading, "BATCH_HOUSEHOLDS", 1)
    monkeypatch.setattr(autotrading, "read_strategy_books", failing_for_h1)
    report = plan_strategies(market, rules=RULES, now=NOW)
    assert (report.planned, set(report.failed), report.not_reached) == (1, {"H1"}, 0)
    assert "the database went away" in report.failed["H1"]
    assert open_orders(market, "H1") == []
    assert open_orders(market, "H3")


def test_a_run_that_reaches_its_deadline_within_a_batch_keeps_what_it_did(market, monkeypatch):
    state(market, "H1")
    state(market, "H3")
    periods = planning_periods(RULES, NOW)
    deadline = RULES.gate_closure_utc(periods[0]) - LEAD
    applied: list[str] = []
    real = autotrading.apply_strategy_orders

    def recorded(session, **arguments):
        applied.append(arguments["participant_id"])
        return real(session, **arguments)

    def clock():  # the deadline passes once H1's orders are made, before H3's (one batch)
        return deadline if applied else NOW

    monkeypatch.setattr(autotrading, "apply_strategy_orders", recorded)
    report = plan_strategies(market, rules=RULES, now=NOW, clock=clock)
    assert (report.planned, report.not_reached, applied) == (1, 1, ["H1"])
    assert open_orders(market, "H1")
    assert open_orders(market, "H3") == []
    with Session(market) as session:
        assert latest_plan(session, "H1") is not None


@pytest.mark.parametrize(
    ("import_wh", "export_wh", "expected"),
    [
        (0, 1000, Decimal("4.10")),  # all export: r = -1, 1 / (1 + e^10) of the way up
        (1000, 0, Decimal("24.50")),  # all import
        (500, 500, Decimal("14.30")),  # balanced: the middle
        (0, 0, Decimal("14.30")),  # nothing forecast: the middle
        (550, 450, Decimal("19.01")),  # r = 0.1: 4.1 + 20.4 / (1 + e^-1) = 19.0136
        (200, 800, Decimal("4.15")),  # r = -0.6: 4.1 + 20.4 / (1 + e^6) = 4.1505
    ],
)
def test_the_estimate_is_a_logistic_position_between_the_tariffs_on_the_net_import_ratio(
    import_wh, export_wh, expected
):
    price = estimated_price(import_wh, export_wh, Decimal("24.5"), Decimal("4.1"))
    assert price.quantize(Decimal("0.01")) == expected


def test_every_node_trades_in_the_market_of_its_ancestor_below_the_root():
    assert local_markets(street_network()) == {"GSP": "GSP", "P1": "P1", "F1": "P1", "F2": "P1"}


def local_history(rows: list[tuple[datetime, int, int, bool]]) -> MeterHistory:
    return MeterHistory.from_periods(sorted((start.astimezone(UTC), *rest) for start, *rest in rows))


def test_a_market_forecast_to_export_at_midday_and_import_in_the_evening():
    """A summer Saturday (London on BST). Over the last week at 12:00 H1's PV exported 800 Wh and H2
    imported 200 (one of H2's days an estimate, left out of its mean); at 18:00 both imported, 500
    and 300 Wh. H3, on another market, and H4, without history, add nothing to P1's."""
    midday, evening = (datetime(2026, 6, 20, hour, tzinfo=LONDON) for hour in (12, 18))
    days = range(1, OUTLOOK_DAYS + 1)
    h1 = [(midday - timedelta(days=d), 0, 800, False) for d in days]
    h1 += [(evening - timedelta(days=d), 500, 0, False) for d in days]
    h2 = [(midday - timedelta(days=d), 200 if d > 1 else 5000, 0, d == 1) for d in days]
    h2 += [(evening - timedelta(days=d), 300, 0, False) for d in days]
    h2.append((midday - timedelta(days=OUTLOOK_DAYS + 1), 9000, 0, False))  # older than the outlook reads
    histories = [
        HouseholdHistory("H1", local_history(h1)),
        HouseholdHistory("H2", local_history(h2)),
        HouseholdHistory("H3", local_history([(midday - timedelta(days=1), 700, 0, False)])),
        HouseholdHistory("H4", MeterHistory.empty()),
    ]
    starts = [midday.astimezone(UTC), evening.astimezone(UTC)]
    positions = forecast_positions(histories, {"H1": "P1", "H2": "P1", "H3": "Q1", "H4": "P1"}, starts)
    assert positions == {
        "P1": NetPosition(import_wh=(200.0, 800.0), export_wh=(800.0, 0.0)),
        "Q1": NetPosition(import_wh=(700.0, 0.0), export_wh=(0.0, 0.0)),
    }
    p1 = positions["P1"]
    midday_price, evening_price = (
        estimated_price(p1.import_wh[i], p1.export_wh[i], Decimal("24.5"), Decimal("4.1")) for i in (0, 1)
    )
    assert midday_price < Decimal("4.2")  # near the export tariff
    assert evening_price > Decimal("24.4")  # near the import tariff


def test_a_week_of_cleared_prices_wins_over_the_estimate(market):
    """The first period's half-hour cleared on each of the last 7 days: F1 expects their mean
    whatever its forecast position; the next period, never cleared, the estimate alone."""
    periods = planning_periods(RULES, NOW)
    clear_days_before(market, periods[0], range(1, OUTLOOK_DAYS + 1))
    exporting = NetPosition(import_wh=(0.0,) * 12, export_wh=(1000.0,) * 12)
    with Session(market) as session:
        outlook = price_outlook(session, ["F1"], periods, positions={"F1": exporting})["F1"]
        plain = price_outlook(session, ["F1"], periods)["F1"]
    assert outlook.expected_p_per_kwh[0] == plain.expected_p_per_kwh[0]
    assert outlook.expected_p_per_kwh[0] > Decimal("5")  # the cleared prices, not the export tariff
    assert outlook.expected_p_per_kwh[1:] == (Decimal("4.10"),) * 11
    assert outlook.from_history == 1


def test_a_plan_made_long_ago_reads_what_did_not_trade_in_its_own_periods_only(market):
    """H1's plan covered one period a day ago; its strategy's offers a day ago and an hour ago
    both went unsold. Only the plan's own period counts: what came after it never reaches the
    battery's state (it is idle after its plan)."""
    day_ago = period_at(NOW - timedelta(days=1))
    hour_ago = period_at(NOW - timedelta(hours=1))
    for period in (day_ago, hour_ago):
        with transaction(market) as session:
            place_orders(
                session,
                rules=RULES,
                participant_id="H1",
                requests=[OrderRequest(period, "sell", Decimal(1), Decimal(90))],
                now=RULES.gate_closure_utc(period) - timedelta(minutes=5),
                source="strategy",
            )
        clear_interval(
            market, period=period, rules=RULES, now=RULES.gate_closure_utc(period), triggered_by="t"
        )
    plan = StrategyPlanRow(
        participant_id="H1",
        planned_at=day_ago.start_utc - timedelta(hours=1),
        first_start_utc=day_ago.start_utc,
        battery_soc_wh=5000,
        periods_json=f'[["{day_ago.start_utc.isoformat()}", 4000, 0]]',
        expected_cost_p=Decimal(0),
    )
    with Session(market) as session:
        untraded = autotrading._untraded_in_plans(
            session, [plan], until=period_at(NOW).start_utc, length=timedelta(minutes=30)
        )
        everything = autotrading.untraded_strategy_orders(
            session, ["H1"], since=day_ago.start_utc, until=period_at(NOW).start_utc
        )
    assert untraded == {("H1", day_ago.start_utc): autotrading.Untraded(unsold_wh=1000, unbought_wh=0)}
    assert set(everything) == {("H1", day_ago.start_utc), ("H1", hour_ago.start_utc)}
