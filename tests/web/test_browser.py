"""The web app in a real browser: Debian's Chromium driven by Playwright (no browser download),
against the service served by uvicorn on loopback over a SQLite database, on a clock the test
moves. axe-core checks every page at 1280 and 320 px wide; with ``SMARTBRUM_SCREENSHOTS=1`` the
main pages are saved to ``docs/screenshots/`` for the README."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import uvicorn

from api.deps import Platform
from api.settings import Settings
from market.accounts import AccountPolicy, accept_invitation, invite
from market.autotrading import plan_strategies
from market.clearing import clear_interval
from market.database import create_database_engine, transaction, upgrade_database
from market.intervals import periods_of_day, settlement_period
from market.orders import place_order
from market.rules import MarketRules
from tests.factories import FixedClock, seed_market
from web.app import create_service
from web.rendering import invitation_link

CHROMIUM = Path("/usr/bin/chromium")
NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
NEXT = settlement_period(NOW.date(), 27)  # 13:00-13:30, gate at 12:55
PASSWORD = "correct horse battery"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (.ci/run installs it)")


@dataclass
class Site:
    url: str
    clock: FixedClock
    engine: object
    settings: Settings


@pytest.fixture
def site(tmp_path) -> Iterator[Site]:
    """The service on a free loopback port: the street market, H2 with an account, no one else."""
    url = f"sqlite:///{tmp_path / 'smartbrum.db'}"
    engine = create_database_engine(url)
    upgrade_database(engine)
    with transaction(engine) as session:
        seed_market(session, now=NOW)
        secret = invite(
            session, participant_id="H2", invited_by="OPS", now=NOW, policy=AccountPolicy()
        ).secret
        accept_invitation(session, secret=secret, password=PASSWORD, now=NOW, policy=AccountPolicy())
    clock = FixedClock(NOW)
    server = uvicorn.Server(uvicorn.Config(app=None, host="127.0.0.1", port=0, log_level="warning"))
    settings = Settings(database_url=url)
    server.config.app = create_service(Platform(engine=engine, settings=settings, clock=clock))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        assert thread.is_alive(), "the server stopped"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    try:
        yield Site(base, clock, engine, Settings(database_url=url, public_url=base))
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        engine.dispose()


@pytest.fixture
def browser():  # type: ignore[no-untyped-def]
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()


def _local(site: Site, link: str) -> str:
    """An invitation link (on the configured public URL) on the test server."""
    parts = urlsplit(link)
    return f"{site.url}{parts.path}?{parts.query}"


def _invite(site: Site, who: str) -> str:
    """An invitation as ``smartbrum participant invite WHO`` makes it."""
    with transaction(site.engine) as session:  # type: ignore[arg-type]
        secret = invite(
            session, participant_id=who, invited_by="cli", now=site.clock.moment, policy=AccountPolicy()
        ).secret
    return invitation_link(site.url, secret)


def _set_password(page, link: str) -> None:  # type: ignore[no-untyped-def]
    page.goto(link)
    page.get_by_label("New password (at least 10 characters)").fill(PASSWORD)
    page.get_by_label("The new password again").fill(PASSWORD)
    page.get_by_role("button", name="Set password and sign in").click()


def _advance(site: Site, page, minutes: int) -> None:  # type: ignore[no-untyped-def]
    """Move the clock in steps shorter than the idle limit, the page kept open meanwhile."""
    while minutes > 0:
        step = min(minutes, 25)
        site.clock.moment += timedelta(minutes=step)
        minutes -= step
        page.reload()


def test_an_invited_household_trades_and_sees_its_order_clear(site, browser):
    """The operator invites a household; it sets a password, places an order, sees it clear and
    its outcome; another household is refused it; a forged form and an expired session are refused."""
    operator = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    _set_password(operator, _invite(site, "OPS"))
    assert operator.url == f"{site.url}/operator"
    operator.get_by_role("link", name="Invite", exact=True).click()
    operator.get_by_label("Who").fill("H1")
    operator.get_by_role("button", name="Create invitation link").click()
    link = operator.locator("#invitation-link").inner_text()
    assert link.startswith("http://127.0.0.1:8000/invitation?token=")

    household = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    _set_password(household, _local(site, link))
    assert household.url == f"{site.url}/today"
    household.get_by_role("button", name="Sign out").click()
    household.get_by_label("Account name").fill("H1")
    household.get_by_label("Password", exact=True).fill(PASSWORD)
    household.get_by_role("button", name="Sign in", exact=True).click()
    assert household.url == f"{site.url}/today"

    household.get_by_role("link", name="Orders", exact=True).click()
    household.get_by_label("Period").select_option(NEXT.key)
    household.get_by_label("Buy", exact=True).check()
    household.get_by_label("Amount (kWh)").fill("2")
    household.get_by_label("Limit price (p/kWh)").fill("20")
    household.get_by_role("button", name="Place order").click()
    assert "Your order has been placed." in household.locator("main").inner_text()
    household.get_by_role("link", name="See it").click()
    order_url = household.url
    assert household.locator("#order-status").inner_text() == "Open"

    with transaction(site.engine) as session:  # type: ignore[arg-type]
        place_order(
            session,
            rules=MarketRules(),
            participant_id="H3",
            period=NEXT,
            side="sell",
            quantity_kwh=Decimal("3"),
            price_p_per_kwh=Decimal("5"),
            now=site.clock.moment,
        )
    _advance(site, household, 55)  # to gate closure, where the platform's clearing job runs
    clear_interval(site.engine, period=NEXT, rules=MarketRules(), now=site.clock.moment, triggered_by="test")  # type: ignore[arg-type]
    household.reload()
    assert household.locator("#order-status").inner_text() == "Filled"
    assert "2 kWh at" in household.locator("main").inner_text()
    household.get_by_role("link", name="Today", exact=True).click()
    assert "charged £" in household.locator("main").inner_text()
    # Settled without meter data: the bill shows the trade and says what waits for the meter.
    from market.settlement import INITIAL, SettlementConfig, settle_periods

    settle_periods(
        site.engine,
        [NEXT],
        run_type=INITIAL,
        config=SettlementConfig(),
        now=NEXT.end_utc,
        triggered_by="test",
    )  # type: ignore[arg-type]
    household.get_by_role("link", name="Bill", exact=True).click()
    bill = household.locator("main").inner_text()
    assert "Bought locally" in bill
    assert "your trades are settled; the rest waits for your meter's readings" in bill
    assert "No saving is claimed yet" in bill
    household.get_by_role("link", name="Sunday 6 December 2026").click()
    assert household.locator("h1").inner_text() == "Bill for Sunday 6 December 2026"
    assert "2.000 kWh" in household.locator("main").inner_text()

    other = browser.new_context().new_page()
    other.goto(f"{site.url}/sign-in")
    other.get_by_label("Account name").fill("H2")
    other.get_by_label("Password", exact=True).fill(PASSWORD)
    other.get_by_role("button", name="Sign in", exact=True).click()
    refused = other.goto(order_url)
    assert refused is not None
    assert refused.status == 404
    assert "There is no such order among yours." in other.locator("main").inner_text()

    forged = other.context.request.post(
        f"{site.url}/orders",
        form={"interval": NEXT.next().key, "side": "buy", "quantity_kwh": "1", "price_p_per_kwh": "10"},
        max_redirects=0,
    )
    assert forged.status == 403
    assert "did not come from this site" in forged.text()

    site.clock.moment += timedelta(minutes=31)  # idle past the limit
    household.reload()
    assert urlsplit(household.url).path == "/sign-in"
    assert household.get_by_role("heading", name="Sign in").is_visible()


PAGES = [
    "/sign-in",
    "/today",
    "/orders",
    "/order",
    "/account",
    "/operator",
    "/operator/invite",
    "/operator/households",
    "/operator/households/H3/deactivate",
    "/operator/meters",
    "/operator/settlement",
    "/operator/settlement/1",
    "/operator/audit",
    "/operator/network",
    f"/operator/intervals/{NEXT.key}",
    "/invitation",
    "/energy",
    "/bill",
    "/bill/days/2026-12-06",
    "/settings",
    "/settings/strategy-refused",
    "/settings/strategy-saved",
    "/settings/plan",
    "/settings/issued",
]


def _meter_and_settlement(site: Site) -> None:
    """H2's meter with readings until now (the rest of the day estimated) and NEXT settled, so
    Energy and Bill have figures to show."""
    from market.meter_data import store_readings
    from market.participants import register_meter
    from market.settlement import INITIAL, SettlementConfig, settle_periods
    from metering.readings import Quality, Reading
    from tests.factories import refresh_interval_energy

    with transaction(site.engine) as session:  # type: ignore[arg-type]
        register_meter(
            session,
            meter_id="M2",
            participant_id="H2",
            host="10.0.0.2",
            port=502,
            unit_id=2,
            transport="tcp",
            model="sdm630",
            now=NOW - timedelta(days=1),
        )
        store_readings(
            session,
            [
                Reading("M2", NOW - timedelta(minutes=30 * i), None, values, Quality.GOOD)
                for i in range(25)
                for values in [{"import_kwh": 100.0 - 0.3 * i, "export_kwh": 10.0 - 0.1 * i}]
            ],
        )
        refresh_interval_energy(session, "M2", periods_of_day(NOW.date()), now=NOW)
    settle_periods(
        site.engine,  # type: ignore[arg-type]
        [NEXT],
        run_type=INITIAL,
        config=SettlementConfig(platform_fee_p_per_kwh=Decimal("0.1")),
        now=NEXT.end_utc,
        triggered_by="test",
    )


def test_every_page_passes_axe_at_1280_and_320_pixels(site, browser):
    from axe_playwright_python.sync_playwright import Axe

    with transaction(site.engine) as session:  # type: ignore[arg-type]
        for home, side, price in (("H2", "buy", "20"), ("H3", "sell", "5")):
            place_order(
                session,
                rules=MarketRules(),
                participant_id=home,
                period=NEXT,
                side=side,
                quantity_kwh=Decimal("2"),
                price_p_per_kwh=Decimal(price),
                now=NOW,
            )
    clear_interval(
        site.engine,
        period=settlement_period(NOW.date(), 27),
        rules=MarketRules(),
        now=NEXT.start_utc,
        triggered_by="test",
    )  # type: ignore[arg-type]
    _meter_and_settlement(site)
    axe = Axe()
    screenshots = os.environ.get("SMARTBRUM_SCREENSHOTS") == "1"
    found: dict[str, list[str]] = {}
    for width in (1280, 320):
        context = browser.new_context(viewport={"width": width, "height": 900})
        household, operator = (
            context.new_page(),
            browser.new_context(viewport={"width": width, "height": 900}).new_page(),
        )
        visitor = browser.new_context(viewport={"width": width, "height": 900}).new_page()
        _sign_in(site, household, "H2")
        household.goto(f"{site.url}/orders")
        household.get_by_label("Amount (kWh)").fill("1")
        household.get_by_label("Limit price (p/kWh)").fill("12.5")
        household.get_by_role("button", name="Place order").click()
        household.get_by_role("link", name="See it").click()
        order_url = household.url
        _set_password(operator, _invite(site, "OPS"))
        for path in PAGES:
            if path == "/invitation":
                page = visitor
                page.goto(_invite(site, "H3"))
            elif path == "/sign-in":
                page = visitor
                page.goto(f"{site.url}/sign-in")
            elif path.startswith("/settings/strategy-"):  # the strategy's form refused, then saved
                page = household
                page.goto(f"{site.url}/settings")
                saved = path.endswith("saved")
                page.get_by_label("Lowest price you sell at (p/kWh)").fill("5" if saved else "five")
                page.get_by_label("Highest price you buy at (p/kWh)").fill("25")
                page.get_by_label("Peak power (kWp)").fill("4" if saved else "0")
                page.get_by_role("button", name="Save my strategy").click()
                assert ("strategy is saved" in page.content()) == saved
            elif path == "/settings/plan":  # a battery's strategy, and the platform's plan for it
                page = household
                page.goto(f"{site.url}/settings")
                page.get_by_label("Usable capacity (kWh)").fill("10")
                page.get_by_label("Most charging power (kW)").fill("3")
                page.get_by_label("Most discharging power (kW)").fill("3")
                page.get_by_role("button", name="Save my strategy").click()
                planned = plan_strategies(site.engine, rules=MarketRules(), now=site.clock.moment)  # type: ignore[arg-type]
                assert planned.planned == 1
                page.goto(f"{site.url}/settings#plan")
                assert "What the platform plans for you" in page.content()
            elif path == "/settings/issued":  # a new token, shown once
                page = household
                page.goto(f"{site.url}/settings")
                page.get_by_label("Label (optional)").fill("axe")
                page.get_by_role("button", name="Issue a token").click()
            elif path.startswith("/operator"):
                page = operator
                page.goto(f"{site.url}{path}")
            else:
                page = household
                page.goto(order_url if path == "/order" else f"{site.url}{path}")
            results = axe.run(page)
            found[f"{path} at {width} px"] = [v["id"] for v in results.response["violations"]]
            overflow = page.evaluate("document.documentElement.scrollWidth > window.innerWidth")
            if overflow:
                found[f"{path} at {width} px"].append("scrolls sideways")
            if screenshots and width == 1280:
                SCREENSHOTS.mkdir(parents=True, exist_ok=True)
                name = path.strip("/").replace("/", "-") or "home"
                page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=name not in ("today",))
        context.close()
    assert found == {key: [] for key in found}


def _sign_in(site: Site, page, who: str) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{site.url}/sign-in")
    page.get_by_label("Account name").fill(who)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()
    assert urlsplit(page.url).path == "/today"
