"""Households' strategies on SQLite and PostgreSQL: validation naming each field, the market's rules,
versions and history, pause and resume, removal, the households the platform trades for, and the
strategy's orders (amended without duplicates, idempotent, giving way to manual orders, never
touching a period past its gate)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlmodel import Session, col, func, select

from market.database import transaction
from market.errors import MarketError, NotFoundError
from market.households import deactivate_household
from market.intervals import period_at
from market.orders import amend_order, get_order, list_orders, order_history, place_order
from market.rules import MarketRules
from market.strategies import (
    StrategyInvalidError,
    StrategyOrder,
    apply_strategy_orders,
    households_with_strategies,
    parse_strategy,
    pause_strategy,
    read_strategy_books,
    remove_strategy,
    resume_strategy,
    set_strategy,
    strategy_history,
    strategy_of,
)
from market.tables import OrderEventRow, OrderRow, StrategyVersionRow
from tests.factories import seed_market

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
RULES = MarketRules()
P1 = period_at(NOW + timedelta(hours=1))  # gate closes 12:55
P2 = period_at(NOW + timedelta(hours=1, minutes=30))
PAST_GATE = period_at(NOW + timedelta(minutes=2))  # 12:00-12:30: its gate closed at 11:55
SIMPLE = {"sell_floor_p_per_kwh": "5", "buy_ceiling_p_per_kwh": "25"}
FULL = {
    **SIMPLE,
    "pv": {"kwp": "4.2", "tilt_deg": "30", "azimuth_deg": "170"},
    "battery": {"capacity_kwh": "10", "charge_kw": "3.6", "discharge_kw": "3.6", "reserve_kwh": "2"},
    "ev": {"charge_kw": "7.4", "plugged_in_from": "18:00", "departure": "07:30", "energy_needed_kwh": "20"},
}


@pytest.fixture
def market(engine):
    with transaction(engine) as session:
        seed_market(session, now=NOW)
    return engine


def set_for(engine, participant_id="H1", document=None, **options):
    with transaction(engine) as session:
        return set_strategy(
            session,
            participant_id=participant_id,
            strategy=document or SIMPLE,
            rules=RULES,
            now=options.pop("now", NOW),
            actor=options.pop("actor", participant_id),
            **options,
        )


def apply(engine, desired, participant_id="H1", now=NOW):
    with transaction(engine) as session:
        return apply_strategy_orders(
            session, rules=RULES, participant_id=participant_id, desired=desired, now=now
        )


def versions(engine) -> int:
    with Session(engine) as session:
        return session.exec(select(func.count()).select_from(OrderEventRow)).one()


def open_orders(engine, participant_id="H1"):
    with Session(engine) as session:
        return list_orders(session, participant_id=participant_id, status="open")


def buy(kwh: str, price: str) -> StrategyOrder:
    return StrategyOrder("buy", int(Decimal(kwh) * 1000), Decimal(price))


def sell(kwh: str, price: str) -> StrategyOrder:
    return StrategyOrder("sell", int(Decimal(kwh) * 1000), Decimal(price))


# --- validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"sell_floor_p_per_kwh": None}, "sell_floor_p_per_kwh"),
        ({"buy_ceiling_p_per_kwh": "2000"}, "buy_ceiling_p_per_kwh"),
        ({"sell_floor_p_per_kwh": "1.234"}, "sell_floor_p_per_kwh"),
        ({"pv": {"kwp": "0"}}, "pv.kwp"),
        ({"pv": {"kwp": "4", "tilt_deg": "91"}}, "pv.tilt_deg"),
        ({"pv": {"kwp": "4", "azimuth_deg": "360"}}, "pv.azimuth_deg"),
        ({"pv": {"kwp": "4", "latitude": "91"}}, "pv.latitude"),
        ({"battery": {**FULL["battery"], "capacity_kwh": "-1"}}, "battery.capacity_kwh"),
        ({"battery": {**FULL["battery"], "charge_kw": "0"}}, "battery.charge_kw"),
        ({"battery": {**FULL["battery"], "discharge_kw": "101"}}, "battery.discharge_kw"),
        (
            {"battery": {**FULL["battery"], "min_soc_percent": "50", "max_soc_percent": "40"}},
            "battery.max_soc_percent",
        ),
        (
            {"battery": {**FULL["battery"], "round_trip_efficiency_percent": "0"}},
            "battery.round_trip_efficiency_percent",
        ),
        ({"battery": {**FULL["battery"], "reserve_kwh": "11"}}, "battery.reserve_kwh"),
        ({"ev": {**FULL["ev"], "departure": "18:00"}}, "ev.departure"),
        ({"ev": {**FULL["ev"], "energy_needed_kwh": "200"}}, "ev.energy_needed_kwh"),
        ({"ev": {**FULL["ev"], "charge_kw": "0"}}, "ev.charge_kw"),
        ({"heat_pump": {}}, "heat_pump"),
    ],
)
def test_each_fields_error_names_it_and_stores_nothing(market, change, field):
    document = {**FULL, **change}
    document = {key: value for key, value in document.items() if value is not None}
    with pytest.raises(StrategyInvalidError) as refused:
        set_for(market, document=document)
    assert refused.value.field == field
    assert field in [name for name, _ in refused.value.problems]
    with Session(market) as session:
        assert session.exec(select(func.count()).select_from(StrategyVersionRow)).one() == 0


def test_every_problem_is_named_at_once():
    with pytest.raises(StrategyInvalidError) as refused:
        parse_strategy({"sell_floor_p_per_kwh": "x", "pv": {"kwp": "-1"}})
    assert [name for name, _ in refused.value.problems] == [
        "sell_floor_p_per_kwh",
        "buy_ceiling_p_per_kwh",
        "pv.kwp",
    ]


@pytest.mark.parametrize(
    ("rules", "change", "field", "words"),
    [
        (
            RULES,
            {"sell_floor_p_per_kwh": "-150"},
            "sell_floor_p_per_kwh",
            "outside the market's -100 to 1000",
        ),
        (
            MarketRules(max_price_p_per_kwh=Decimal(50)),
            {"buy_ceiling_p_per_kwh": "60"},
            "buy_ceiling_p_per_kwh",
            "0 to 50",
        ),
        (MarketRules(min_price_p_per_kwh=Decimal(10)), {}, "sell_floor_p_per_kwh", "outside"),
    ],
)
def test_prices_the_markets_rules_refuse_are_refused_naming_the_field(market, rules, change, field, words):
    with transaction(market) as session, pytest.raises(MarketError) as refused:
        set_strategy(
            session, participant_id="H1", strategy={**SIMPLE, **change}, rules=rules, now=NOW, actor="H1"
        )
    assert refused.value.field == field
    assert words in refused.value.reason


def test_only_an_active_household_states_a_strategy(market):
    with pytest.raises(NotFoundError):
        set_for(market, participant_id="H9")
    with pytest.raises(MarketError, match="participant_id: 'OPS' is not a household"):
        set_for(market, participant_id="OPS")
    with transaction(market) as session:
        deactivate_household(session, participant_id="H2", rules=RULES, now=NOW, actor="OPS")
    with pytest.raises(MarketError, match="not active"):
        set_for(market, participant_id="H2")


# --- versions ------------------------------------------------------------------------------------


def test_every_change_is_a_version_and_the_history_keeps_them_all(market):
    first = set_for(market, document=FULL)
    assert (first.version, first.paused, first.created_by) == (1, False, "H1")
    assert first.strategy is not None
    assert first.strategy.battery is not None
    assert first.strategy.battery.reserve_kwh == Decimal(2)
    assert first.strategy.ev is not None
    assert str(first.strategy.ev.departure) == "07:30:00"
    later = NOW + timedelta(minutes=5)
    set_for(market, document={**FULL, "sell_floor_p_per_kwh": "6"}, actor="OPS", now=later)
    with transaction(market) as session:
        paused = pause_strategy(session, participant_id="H1", rules=RULES, now=later, actor="H1")
        again = pause_strategy(session, participant_id="H1", rules=RULES, now=later, actor="H1")
    assert (paused.version, paused.paused, again.version) == (3, True, 3)  # pausing twice adds nothing
    # Changing a paused strategy keeps it paused; resuming adds a version.
    assert set_for(market, document=SIMPLE).paused is True
    with transaction(market) as session:
        resumed = resume_strategy(session, participant_id="H1", rules=RULES, now=later, actor="H1")
    assert (resumed.version, resumed.paused) == (5, False)
    with transaction(market) as session:
        removed = remove_strategy(session, participant_id="H1", rules=RULES, now=later, actor="OPS")
        assert removed.removed
        assert removed.version == 6
        assert strategy_of(session, "H1") is None
        history = strategy_history(session, "H1")
    assert [(v.version, v.paused, v.removed, v.created_by) for v in history] == [
        (1, False, False, "H1"),
        (2, False, False, "OPS"),
        (3, True, False, "H1"),
        (4, True, False, "H1"),
        (5, False, False, "H1"),
        (6, True, True, "OPS"),
    ]
    assert history[1].strategy is not None
    assert history[1].strategy.sell_floor_p_per_kwh == Decimal(6)
    assert history[1].created_at == later
    # After a removal, stating one again starts trading at the next version.
    assert (set_for(market).version, set_for(market).paused) == (7, False)
    with Session(market) as session:
        assert [v.version for v in strategy_history(session, "H1", limit=2, offset=5)] == [6, 7]


def test_pausing_resuming_or_removing_what_is_not_there_is_not_found(market):
    with transaction(market) as session:
        for change in (pause_strategy, resume_strategy, remove_strategy):
            with pytest.raises(NotFoundError, match="strategy: household 'H1' has no strategy"):
                change(session, participant_id="H1", rules=RULES, now=NOW, actor="H1")


def test_the_platform_trades_for_active_households_with_a_strategy_in_force(market):
    for home in ("H1", "H2", "H3"):
        set_for(market, participant_id=home, document={**SIMPLE, "sell_floor_p_per_kwh": "7"})
    set_for(market, participant_id="H1")  # a newer version of H1's
    with transaction(market) as session:
        pause_strategy(session, participant_id="H2", rules=RULES, now=NOW, actor="H2")
        seed_more = households_with_strategies(session)
    assert [(s.participant_id, s.version) for s in seed_more] == [("H1", 2), ("H3", 1)]
    assert seed_more[0].strategy is not None
    assert seed_more[0].strategy.sell_floor_p_per_kwh == Decimal(5)
    with transaction(market) as session:
        deactivate_household(session, participant_id="H3", rules=RULES, now=NOW, actor="OPS")
        remove_strategy(session, participant_id="H1", rules=RULES, now=NOW, actor="H1")
        resume_strategy(session, participant_id="H2", rules=RULES, now=NOW, actor="H2")
        assert [s.participant_id for s in households_with_strategies(session)] == ["H2"]


def test_households_with_strategies_is_one_query(market, engine):
    import sqlalchemy as sa

    for home in ("H1", "H2", "H3"):
        set_for(market, participant_id=home)
    statements: list[str] = []
    sa.event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    with Session(engine) as session:
        assert len(households_with_strategies(session)) == 3
    assert len([s for s in statements if s.lstrip().upper().startswith("SELECT")]) == 1


# --- the strategy's orders -----------------------------------------------------------------------


def test_the_plans_orders_are_placed_then_amended_never_duplicated(market):
    set_for(market)
    first = apply(market, {P1: [buy("1", "20"), sell("0.5", "8")], P2: [buy("2", "19")]})
    assert (len(first.placed), first.amended, first.cancelled) == (3, (), ())
    placed = open_orders(market)
    assert {(o.period, o.side, o.quantity_kwh, o.price_p_per_kwh, o.source) for o in placed} == {
        (P1, "buy", Decimal(1), Decimal(20), "strategy"),
        (P1, "sell", Decimal("0.5"), Decimal(8), "strategy"),
        (P2, "buy", Decimal(2), Decimal(19), "strategy"),
    }
    with Session(market) as session:
        assert {order_history(session, o.id)[0].actor for o in placed} == {"strategy"}
    # A new plan: P1's buy changes price, its sell goes, a second buy comes; P2 stays.
    later = NOW + timedelta(minutes=30)
    second = apply(market, {P1: [buy("1", "21"), buy("0.2", "30")], P2: [buy("2", "19")]}, now=later)
    assert (len(second.placed), len(second.amended), len(second.cancelled), second.unchanged) == (1, 1, 1, 1)
    now_open = open_orders(market)
    assert sorted((o.period.key, o.side, o.quantity_kwh, o.price_p_per_kwh) for o in now_open) == sorted(
        [
            (P1.key, "buy", Decimal(1), Decimal(21)),
            (P1.key, "buy", Decimal("0.2"), Decimal(30)),
            (P2.key, "buy", Decimal(2), Decimal(19)),
        ]
    )
    with Session(market) as session:
        amended = get_order(session, second.amended[0])
        assert (amended.version, amended.source) == (2, "strategy")
        assert [(e.kind, e.actor) for e in order_history(session, amended.id)] == [
            ("placed", "strategy"),
            ("amended", "strategy"),
        ]
        assert session.exec(select(func.count()).select_from(OrderRow)).one() == 4


def test_applying_the_same_plan_twice_changes_nothing(market):
    set_for(market)
    plan = {P1: [buy("1", "20"), buy("1", "20"), sell("3", "6")], P2: []}
    apply(market, plan)
    events = versions(market)
    again = apply(market, plan, now=NOW + timedelta(minutes=1))
    assert not again.changed
    assert again.unchanged == 3
    assert versions(market) == events
    assert len(open_orders(market)) == 3


def test_a_manual_order_takes_the_period_from_the_strategy(market):
    set_for(market)
    apply(market, {P1: [buy("1", "20")], P2: [buy("1", "20")]})
    with transaction(market) as session:
        manual, _ = place_order(
            session,
            rules=RULES,
            participant_id="H1",
            period=P1,
            side="sell",
            quantity_kwh=Decimal(2),
            price_p_per_kwh=Decimal(9),
            now=NOW,
        )
    applied = apply(market, {P1: [buy("1", "22")], P2: [buy("1", "22")]})
    assert applied.manual_periods == (P1.key,)
    assert (len(applied.cancelled), len(applied.amended), applied.placed) == (1, 1, ())
    left = open_orders(market)
    assert {(o.period, o.source, o.side) for o in left} == {(P1, "manual", "sell"), (P2, "strategy", "buy")}
    assert manual.source == "manual"
    # The household's own amendment of a strategy order makes it manual: the strategy leaves that
    # period alone from then on rather than undo the change.
    p2_order = next(o for o in left if o.period == P2)
    with transaction(market) as session:
        changed = amend_order(
            session, rules=RULES, order_id=p2_order.id, participant_id="H1", now=NOW, quantity_kwh=Decimal(3)
        )
        assert changed.source == "manual"
        assert order_history(session, p2_order.id)[-1].actor == "H1"
    assert apply(market, {P2: [buy("1", "22")]}).manual_periods == (P2.key,)
    with Session(market) as session:
        assert get_order(session, p2_order.id).quantity_kwh == Decimal(3)


def test_periods_past_their_gate_are_not_touched(market):
    set_for(market)
    early = NOW - timedelta(hours=1)
    apply(market, {PAST_GATE: [buy("1", "20")]}, now=early)
    events = versions(market)
    applied = apply(market, {PAST_GATE: [buy("5", "30")], P1: [buy("1", "20")]})
    assert applied.closed_periods == (PAST_GATE.key,)
    assert len(applied.placed) == 1
    assert versions(market) == events + 1
    frozen = [o for o in open_orders(market) if o.period == PAST_GATE]
    assert [(o.quantity_kwh, o.version) for o in frozen] == [(Decimal(1), 1)]


def test_a_paused_or_removed_strategy_places_nothing_and_its_orders_go(market):
    set_for(market)
    apply(market, {P1: [buy("1", "20")], P2: [sell("1", "8")]})
    with transaction(market) as session:
        place_order(
            session,
            rules=RULES,
            participant_id="H1",
            period=P2,
            side="buy",
            quantity_kwh=Decimal(1),
            price_p_per_kwh=Decimal(9),
            now=NOW,
        )
        pause_strategy(session, participant_id="H1", rules=RULES, now=NOW, actor="H1")
    assert [(o.source, o.side) for o in open_orders(market)] == [("manual", "buy")]
    assert not apply(market, {P1: [buy("1", "20")]}).changed
    with transaction(market) as session:
        resume_strategy(session, participant_id="H1", rules=RULES, now=NOW, actor="H1")
    assert len(apply(market, {P1: [buy("1", "20")]}).placed) == 1
    with transaction(market) as session:
        remove_strategy(session, participant_id="H1", rules=RULES, now=NOW, actor="H1")
        cancelled = session.exec(
            select(OrderEventRow).where(OrderEventRow.kind == "cancelled").order_by(col(OrderEventRow.id))
        ).all()
    assert [event.actor for event in cancelled] == ["H1", "H1", "H1"]  # two on pausing, one on removing
    assert [o.source for o in open_orders(market)] == ["manual"]


def test_a_refused_plan_changes_nothing_and_names_the_order(market):
    set_for(market)
    apply(market, {P1: [buy("1", "20")]})
    events = versions(market)
    with pytest.raises(MarketError) as refused:
        apply(market, {P1: [buy("2", "20")], P2: [buy("1", "20"), sell("1", "1000.5")]})
    assert refused.value.field == f"desired[{P2.key}][1].price_p_per_kwh"
    with pytest.raises(MarketError) as too_many:
        apply(market, {P2: [buy("1", "20")] * 11})
    assert too_many.value.field == f"desired[{P2.key}]"
    assert versions(market) == events
    with transaction(market) as session:
        deactivate_household(session, participant_id="H1", rules=RULES, now=NOW, actor="OPS")
    with pytest.raises(MarketError, match="participant_id: household 'H1' is not active"):
        apply(market, {P1: [buy("1", "20")]})


def test_books_read_for_many_households_apply_as_each_read_alone_and_are_not_read_again(market, engine):
    import sqlalchemy as sa

    set_for(market, participant_id="H1")
    set_for(market, participant_id="H2")
    apply(market, {P1: [buy("1", "20")]}, participant_id="H1")
    apply(market, {P1: [sell("1", "8")]}, participant_id="H2")
    with transaction(market) as session:
        place_order(
            session,
            rules=RULES,
            participant_id="H1",
            period=P2,
            side="sell",
            quantity_kwh=Decimal(2),
            price_p_per_kwh=Decimal(9),
            now=NOW,
        )
        pause_strategy(session, participant_id="H2", rules=RULES, now=NOW, actor="H2")
    statements: list[str] = []
    with transaction(market) as session:
        books = read_strategy_books(
            session,
            rules=RULES,
            participant_ids=["H3", "H1", "H2", "NOPE"],
            periods=[P2, P1, PAST_GATE],
            now=NOW,
        )
        assert books.trading == {"H1": True, "H2": False, "H3": False}  # NOPE is no participant
        assert books.periods == {P1, P2}  # PAST_GATE's book is the market's now
        assert {start: [o.side for o in rows] for start, rows in books.open_orders["H1"].items()} == {
            P1.start_utc: ["buy"],
            P2.start_utc: ["sell"],
        }
        sa.event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
        h1 = apply_strategy_orders(
            session,
            rules=RULES,
            participant_id="H1",
            desired={P1: [buy("1", "21")], P2: [buy("1", "20")]},
            now=NOW,
            books=books,
        )
        h2 = apply_strategy_orders(
            session, rules=RULES, participant_id="H2", desired={P1: [sell("1", "8")]}, now=NOW, books=books
        )
        # What apply_strategy_orders reads itself (amending an order locks its household and book).
        read_again = [s for s in statements if "strategy_version" in s or "name_1" in s]
        with pytest.raises(NotFoundError):
            apply_strategy_orders(
                session, rules=RULES, participant_id="NOPE", desired={P1: []}, now=NOW, books=books
            )
    assert read_again == []  # the households' strategies and books were read once, above
    assert (len(h1.amended), h1.placed, h1.manual_periods) == (1, (), (P2.key,))
    assert not h2.changed  # paused: nothing placed
    assert {(o.period, o.source, o.price_p_per_kwh) for o in open_orders(market)} == {
        (P1, "strategy", Decimal(21)),
        (P2, "manual", Decimal(9)),
    }
