"""The public price feed (``/open/v1/prices``, ``/open/v1/prices/evcc``) through real HTTP
requests against the app, on both databases: its formats, its validation and its caching."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import pairwise

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from api.app import create_app
from api.deps import Platform
from api.settings import Settings
from market.clearing import clear_interval
from market.database import transaction
from market.intervals import period_at, periods_of_day
from market.orders import place_order
from market.rules import MarketRules
from market.tables import TradeRow
from tests.factories import FixedClock, seed_market

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)  # GMT: London's date and clock are UTC's
CURRENT = period_at(NOW)  # 2026-11-21/25, 12:00 to 12:30, its gate closed at 11:55
EARLIER = CURRENT.previous()  # 11:30 to 12:00
RULES = MarketRules()
FEE = Decimal("0.1")
VAT = Decimal("0.05")
#: evcc's documented custom forecast: ``start``/``end`` as ``YYYY-MM-DDTHH:MM:SSZ``, ``value`` a
#: number in the configured currency per kWh (docs.evcc.io, tariffs: "custom", forecast source http).
EVCC_TIME = re.compile(r"\A\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z\Z")


def feed_app(engine, database_url, *, check_seconds: float = 0.0):  # type: ignore[no-untyped-def]
    """The app over ``engine`` at ``NOW`` with the platform fee and VAT of :data:`FEE`, :data:`VAT`."""
    settings = Settings(
        database_url=database_url,
        platform_fee_p_per_kwh=FEE,
        vat_rate=VAT,
        open_feed_check_seconds=check_seconds,
    )
    return create_app(Platform(engine=engine, settings=settings, clock=FixedClock(NOW)))


@pytest.fixture
def market(engine):
    """The street market (GSP, P1, feeders F1 and F2; H1 and H2 on F1, H3 on F2)."""
    with transaction(engine) as session:
        seed_market(session, now=NOW - timedelta(days=1))
    return engine


@pytest.fixture
def feed(market, database_url):
    with TestClient(feed_app(market, database_url)) as client:
        client.clock = client.app.state.platform.clock  # type: ignore[attr-defined]
        yield client


def clear_with_trade(engine, period, *, buy_p: str = "20", sell_p: str = "5") -> None:  # type: ignore[no-untyped-def]
    """H1 (F1) buys 1 kWh at ``buy_p``, H3 (F2) sells 1 kWh from ``sell_p``; ``period`` cleared."""
    placed_at = period.start_utc - timedelta(hours=1)
    with transaction(engine) as session:
        for home, side, price in (("H1", "buy", buy_p), ("H3", "sell", sell_p)):
            place_order(
                session,
                rules=RULES,
                participant_id=home,
                period=period,
                side=side,
                quantity_kwh=Decimal(1),
                price_p_per_kwh=Decimal(price),
                now=placed_at,
            )
    clear_interval(engine, period=period, rules=RULES, now=period.start_utc, triggered_by="test")


def traded_price(engine, participant_id: str) -> Decimal:  # type: ignore[no-untyped-def]
    with Session(engine) as session:
        return session.exec(
            select(TradeRow.price_p_per_kwh).where(TradeRow.participant_id == participant_id)
        ).one()


# --- /open/v1/prices -------------------------------------------------------------------------------


def test_prices_default_to_today_and_tomorrow_with_cleared_price_and_tariffs(feed, market):
    clear_with_trade(market, CURRENT)
    answer = feed.get("/open/v1/prices", params={"node": "F1"})  # no token
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/json"
    body = answer.json()
    assert (body["node"], body["unit"]) == ("F1", "p/kWh")
    periods = body["periods"]
    assert len(periods) == 96  # two 48-period days
    assert periods[0]["start"] == "2026-11-21T00:00:00Z"
    assert periods[-1]["end"] == "2026-11-23T00:00:00Z"
    assert all(a["end"] == b["start"] for a, b in pairwise(periods))
    cleared = [p for p in periods if p["cleared"]]
    assert [(p["settlement_date"], p["settlement_period"]) for p in cleared] == [("2026-11-21", 25)]
    row = cleared[0]
    assert (row["start"], row["end"]) == ("2026-11-21T12:00:00Z", "2026-11-21T12:30:00Z")
    # The price the node's households traded at (H1 is on F1): a decimal string.
    assert Decimal(row["price_p_per_kwh"]) == traded_price(market, "H1")
    assert isinstance(row["price_p_per_kwh"], str)
    assert (row["import_p_per_kwh"], row["export_p_per_kwh"]) == ("24.5", "4.1")
    # Never a made-up price for a period not yet cleared; the tariffs are known all the same.
    uncleared = [p for p in periods if not p["cleared"]]
    assert {p["price_p_per_kwh"] for p in uncleared} == {None}
    assert {(p["import_p_per_kwh"], p["export_p_per_kwh"]) for p in uncleared} == {("24.5", "4.1")}


def test_each_node_has_its_own_price(feed, market):
    clear_with_trade(market, CURRENT)
    window = {"from": "2026-11-21T12:00:00Z", "to": "2026-11-21T12:30:00Z"}
    f1 = feed.get("/open/v1/prices", params={"node": "F1", **window}).json()["periods"]
    f2 = feed.get("/open/v1/prices", params={"node": "F2", **window}).json()["periods"]
    assert Decimal(f1[0]["price_p_per_kwh"]) == traded_price(market, "H1")
    assert Decimal(f2[0]["price_p_per_kwh"]) == traded_price(market, "H3")


def test_csv_by_format_or_accept_holds_the_same_figures(feed, market):
    clear_with_trade(market, CURRENT)
    params = {"node": "F1", "from": "2026-11-21", "to": "2026-11-21"}
    as_json = feed.get("/open/v1/prices", params=params).json()["periods"]
    by_format = feed.get("/open/v1/prices", params={**params, "format": "csv"})
    by_accept = feed.get("/open/v1/prices", params=params, headers={"Accept": "text/csv"})
    assert by_format.headers["content-type"] == "text/csv; charset=utf-8"
    assert by_format.content == by_accept.content
    assert by_accept.headers["vary"] == "Accept"
    rows = list(csv.DictReader(io.StringIO(by_format.text)))
    assert list(rows[0]) == [
        "node",
        "settlement_date",
        "settlement_period",
        "start",
        "end",
        "cleared",
        "price_p_per_kwh",
        "import_p_per_kwh",
        "export_p_per_kwh",
    ]
    assert len(rows) == len(as_json) == 48
    for row, period in zip(rows, as_json, strict=True):
        assert row["node"] == "F1"
        assert row["cleared"] == ("true" if period["cleared"] else "false")
        assert row["price_p_per_kwh"] == (period["price_p_per_kwh"] or "")
        assert (row["start"], row["end"], int(row["settlement_period"])) == (
            period["start"],
            period["end"],
            period["settlement_period"],
        )
    # format=json wins over Accept.
    explicit = feed.get(
        "/open/v1/prices", params={**params, "format": "json"}, headers={"Accept": "text/csv"}
    )
    assert explicit.headers["content-type"] == "application/json"


@pytest.mark.parametrize(
    ("window", "count", "first_start", "last_end"),
    [
        ({"from": "2026-11-21", "to": "2026-11-21"}, 48, "2026-11-21T00:00:00Z", "2026-11-22T00:00:00Z"),
        (
            {"from": "2026-11-21T12:10:00Z", "to": "2026-11-21T13:00:00Z"},
            2,
            "2026-11-21T12:00:00Z",
            "2026-11-21T13:00:00Z",
        ),
        (
            {"from": "2026-11-21T12:00:00+01:00", "to": "2026-11-21T11:00:01Z"},
            1,
            "2026-11-21T11:00:00Z",
            "2026-11-21T11:30:00Z",
        ),
        (
            {"from": "2027-03-28", "to": "2027-03-28"},
            46,
            "2027-03-28T00:00:00Z",
            "2027-03-28T23:00:00Z",
        ),  # clocks go forward
        ({"from": "2026-11-23"}, 96, "2026-11-23T00:00:00Z", "2026-11-25T00:00:00Z"),
        ({"from": "2026-11-21", "to": "2026-11-27"}, 336, "2026-11-21T00:00:00Z", "2026-11-28T00:00:00Z"),
    ],
)
def test_from_and_to_dates_and_instants(feed, window, count, first_start, last_end):
    answer = feed.get("/open/v1/prices", params={"node": "GSP", **window})
    assert answer.status_code == 200, answer.text
    periods = answer.json()["periods"]
    assert (len(periods), periods[0]["start"], periods[-1]["end"]) == (count, first_start, last_end)


@pytest.mark.parametrize(
    ("params", "status", "field", "reason"),
    [
        ({"node": "F9"}, 404, "node", "'F9' is not a node of the network (its nodes: F1, F2, GSP, P1)"),
        ({}, 422, "node", None),
        ({"node": "F1", "from": "2026-11-22", "to": "2026-11-21"}, 422, "to", "must be after from"),
        (
            {"node": "F1", "from": "2026-11-21T12:00:00Z", "to": "2026-11-21T12:00:00Z"},
            422,
            "to",
            "must be after from",
        ),
        (
            {"node": "F1", "from": "2026-11-21", "to": "2026-11-28"},
            422,
            "to",
            "the feed spans at most 7 days from from",
        ),
        ({"node": "F1", "from": "tomorrow"}, 422, "from", None),
        ({"node": "F1", "from": "2026-11-21T12:00:00"}, 422, "from", None),  # no offset
        ({"node": "F1", "to": "2026-02-30"}, 422, "to", None),
        ({"node": "F1", "format": "xml"}, 422, "format", None),
    ],
)
def test_bad_requests_name_the_field(feed, params, status, field, reason):
    answer = feed.get("/open/v1/prices", params=params)
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    errors = answer.json()["errors"]
    assert field in [error["field"] for error in errors]
    if reason is not None:
        assert errors == [{"field": field, "reason": reason}]


# --- evcc --------------------------------------------------------------------------------------------


def test_evcc_feed_has_evccs_documented_shape(feed, market):
    clear_with_trade(market, CURRENT)
    for kind in ("grid", "feedin"):
        answer = feed.get("/open/v1/prices/evcc", params={"node": "F1", "kind": kind})
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"] == "application/json"
        slots = answer.json()
        assert isinstance(slots, list)
        for slot in slots:
            assert set(slot) == {"start", "end", "value"}
            assert EVCC_TIME.fullmatch(slot["start"])
            assert EVCC_TIME.fullmatch(slot["end"])
            assert type(slot["value"]) in (float, int)  # a JSON number, not a string
            assert datetime.fromisoformat(slot["end"]) - datetime.fromisoformat(slot["start"]) == timedelta(
                minutes=30
            )
        # From the current period, without a gap, to the end of tomorrow (London).
        assert slots[0]["start"] == "2026-11-21T12:00:00Z"
        assert slots[-1]["end"] == "2026-11-23T00:00:00Z"
        assert all(a["end"] == b["start"] for a, b in pairwise(slots))
        assert len(slots) == 24 + 48


def test_evcc_values_are_what_a_household_pays_and_is_paid_in_pounds(feed, market):
    clear_with_trade(market, CURRENT)
    price = traded_price(market, "H1")
    grid = feed.get("/open/v1/prices/evcc", params={"node": "F1"}).json()  # kind=grid by default
    feedin = feed.get("/open/v1/prices/evcc", params={"node": "F1", "kind": "feedin"}).json()
    # The cleared period: the price plus the fee, with 5% VAT; the price less the fee and its VAT.
    assert Decimal(str(grid[0]["value"])) == ((price + FEE) * (1 + VAT) / 100).quantize(Decimal("0.000001"))
    assert Decimal(str(feedin[0]["value"])) == ((price - FEE * (1 + VAT)) / 100).quantize(Decimal("0.000001"))
    # A period not yet cleared, with no cleared price at its half-hour in the last week: the
    # outlook is the tariffs' middle, (24.5 + 4.1) / 2 = 14.3 p; (14.3 + 0.1) x 1.05 = 15.12 p.
    three_am = next(slot for slot in grid if slot["start"] == "2026-11-22T03:00:00Z")
    assert three_am["value"] == 0.1512
    three_am = next(slot for slot in feedin if slot["start"] == "2026-11-22T03:00:00Z")
    assert three_am["value"] == 0.14195  # 14.3 - 0.105 p


def test_evcc_refuses_an_unknown_node_or_kind(feed):
    unknown = feed.get("/open/v1/prices/evcc", params={"node": "nowhere"})
    assert unknown.status_code == 404
    assert unknown.json()["errors"][0]["field"] == "node"
    kind = feed.get("/open/v1/prices/evcc", params={"node": "F1", "kind": "co2"})
    assert kind.status_code == 422
    assert [error["field"] for error in kind.json()["errors"]] == ["kind"]


# --- caching -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/open/v1/prices", "/open/v1/prices/evcc"])
def test_etag_answers_304_until_a_new_clearing_run_changes_the_answer(feed, market, path):
    clear_with_trade(market, EARLIER)
    first = feed.get(path, params={"node": "F1"})
    etag = first.headers["etag"]
    assert re.fullmatch(r'"[0-9a-f]{32}"', etag)
    same = feed.get(path, params={"node": "F1"}, headers={"If-None-Match": etag})
    assert (same.status_code, same.content, same.headers["etag"]) == (304, b"", etag)
    assert (
        feed.get(path, params={"node": "F1"}, headers={"If-None-Match": f'W/{etag}, "x"'}).status_code == 304
    )
    assert feed.get(path, params={"node": "F1"}, headers={"If-None-Match": '"other"'}).status_code == 200

    clear_with_trade(market, CURRENT, buy_p="22")
    after = feed.get(path, params={"node": "F1"}, headers={"If-None-Match": etag})
    assert after.status_code == 200
    assert after.headers["etag"] != etag
    assert after.content != first.content


def test_max_age_runs_to_the_next_gate_closure_and_is_short_while_a_clearing_is_due(feed, market):
    params = {"node": "F1"}
    # 12:00: the gates of 11:30 and 12:00 closed (11:25, 11:55) but nothing is cleared: due.
    assert feed.get("/open/v1/prices", params=params).headers["cache-control"] == "public, max-age=5"
    clear_with_trade(market, EARLIER)
    clear_with_trade(market, CURRENT)
    # The next gate closes at 12:25: 25 minutes, capped at 5 minutes.
    assert feed.get("/open/v1/prices", params=params).headers["cache-control"] == "public, max-age=300"
    feed.clock.moment = NOW + timedelta(minutes=24)
    assert feed.get("/open/v1/prices", params=params).headers["cache-control"] == "public, max-age=60"
    evcc = feed.get("/open/v1/prices/evcc", params=params)
    assert evcc.headers["cache-control"] == "public, max-age=60"
    # A window wholly cleared and past has nothing left to wait for but a re-clear: the cap.
    past = {"node": "F1", "from": "2026-11-21T11:30:00Z", "to": "2026-11-21T12:30:00Z"}
    assert feed.get("/open/v1/prices", params=past).headers["cache-control"] == "public, max-age=300"


class StatementCounter:
    """Counts the SQL statements an engine runs (to see that a cache hit runs none but the check)."""

    def __init__(self, engine) -> None:  # type: ignore[no-untyped-def]
        self.engine, self.statements = engine, []
        sa.event.listen(engine, "before_cursor_execute", self.record)

    def record(self, _conn, _cursor, statement, *_args) -> None:  # type: ignore[no-untyped-def]
        if not statement.startswith(("BEGIN", "COMMIT", "ROLLBACK")):  # SQLite's own transaction
            self.statements.append(statement)

    def close(self) -> None:
        sa.event.remove(self.engine, "before_cursor_execute", self.record)


@pytest.mark.parametrize("path", ["/open/v1/prices", "/open/v1/prices/evcc"])
def test_a_cache_hit_asks_the_database_only_whether_something_changed(feed, market, path):
    clear_with_trade(market, CURRENT)
    first = feed.get(path, params={"node": "F1"})
    counter = StatementCounter(market)
    try:
        again = feed.get(path, params={"node": "F1"})
    finally:
        counter.close()
    assert again.content == first.content
    assert len(counter.statements) == 1, counter.statements  # the generation check alone
    assert "clearing_run" in counter.statements[0]
    assert "node_price" not in counter.statements[0]


def test_between_checks_a_worker_asks_nothing_and_then_sees_the_new_run(market, database_url):
    app = feed_app(market, database_url, check_seconds=60)
    with TestClient(app) as feed:
        first = feed.get("/open/v1/prices", params={"node": "F1"})
        counter = StatementCounter(market)
        try:
            assert feed.get("/open/v1/prices", params={"node": "F1"}).content == first.content
        finally:
            counter.close()
        assert counter.statements == []
        clear_with_trade(market, CURRENT)
        app.state.open_price_feed.checked_at = float("-inf")  # the check interval has passed
        after = feed.get("/open/v1/prices", params={"node": "F1"})
        assert after.headers["etag"] != first.headers["etag"]
        assert [p["settlement_period"] for p in after.json()["periods"] if p["cleared"]] == [25]


def test_a_new_tariff_changes_the_answer(feed, market):
    from market.network import set_tariff

    before = feed.get("/open/v1/prices", params={"node": "F1", "from": "2026-11-22"}).json()["periods"]
    with transaction(market) as session:
        set_tariff(
            session,
            import_p_per_kwh=Decimal("30"),
            export_p_per_kwh=Decimal("5"),
            effective_from_utc=periods_of_day(datetime(2026, 11, 22).date())[0].start_utc,
            now=NOW,
        )
    after = feed.get("/open/v1/prices", params={"node": "F1", "from": "2026-11-22"}).json()["periods"]
    assert {p["import_p_per_kwh"] for p in before} == {"24.5"}
    assert {p["import_p_per_kwh"] for p in after} == {"30"}


def test_a_repeated_request_moves_on_with_the_clock(feed):
    """The same request, answered from the cache, still follows the clock: evcc's first slot is
    the current period, and the default window is today's."""
    assert (
        feed.get("/open/v1/prices/evcc", params={"node": "F1"}).json()[0]["start"] == "2026-11-21T12:00:00Z"
    )
    assert (
        feed.get("/open/v1/prices", params={"node": "F1"}).json()["periods"][0]["start"]
        == "2026-11-21T00:00:00Z"
    )
    feed.clock.moment = NOW + timedelta(minutes=30)
    assert (
        feed.get("/open/v1/prices/evcc", params={"node": "F1"}).json()[0]["start"] == "2026-11-21T12:30:00Z"
    )
    assert (
        feed.get("/open/v1/prices", params={"node": "F1"}).json()["periods"][0]["start"]
        == "2026-11-21T00:00:00Z"
    )
    feed.clock.moment = datetime(2026, 11, 22, 0, 0, tzinfo=UTC)
    assert (
        feed.get("/open/v1/prices", params={"node": "F1"}).json()["periods"][0]["start"]
        == "2026-11-22T00:00:00Z"
    )


def test_while_the_database_is_away_a_worker_serves_what_it_has(feed):
    """A fault injected: the check for new runs fails; the answers already made are still served."""
    from market.database import create_database_engine

    first = feed.get("/open/v1/prices", params={"node": "F1"})
    platform = feed.app.state.platform
    working, platform.engine = (
        platform.engine,
        create_database_engine("postgresql+psycopg://nobody@127.0.0.1:1/none"),
    )
    try:
        again = feed.get("/open/v1/prices", params={"node": "F1"})
    finally:
        platform.engine.dispose()
        platform.engine = working
    assert (again.status_code, again.content) == (200, first.content)
