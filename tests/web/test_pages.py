"""The web app's pages and forms through real HTTP requests, on both databases: who may see and
do what (the authorisation matrix), CSRF, sessions' expiry, throttled sign-ins, invitations, and
orders' errors in plain words."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

from market.database import transaction
from market.intervals import period_at
from market.orders import place_order
from market.rules import MarketRules
from market.tables import InvitationRow, OrderRow
from tests.factories import count_rows
from tests.web.conftest import NOW, PASSWORD, Browser, hidden_token

NEXT = period_at(NOW + timedelta(hours=1))
ORDER_FORM = {"interval": NEXT.key, "side": "buy", "quantity_kwh": "1.5", "price_p_per_kwh": "12.5"}
SIGN_IN = "/sign-in"


def _h1_order(engine) -> str:
    with transaction(engine) as session:
        order, _ = place_order(
            session,
            rules=MarketRules(),
            participant_id="H1",
            period=NEXT,
            side="sell",
            quantity_kwh=Decimal("2"),
            price_p_per_kwh=Decimal("6"),
            now=NOW,
        )
    return order.id


def _errors(html: str) -> list[str]:
    return re.findall(r'class="error"[^>]*>([^<]*)<', html)


def test_the_authorisation_matrix_over_every_page_and_form(web, engine):
    """Each page and form for a visitor, another household, the household and the operator."""
    order = _h1_order(engine)
    pages = [
        # path, {who: status}; 303 for a visitor is the way to the sign-in page
        ("/", {"none": 303, "H2": 303, "H1": 303, "OPS": 303}),
        ("/today", {"none": 303, "H2": 200, "H1": 200, "OPS": 403}),
        ("/orders", {"none": 303, "H2": 200, "H1": 200, "OPS": 403}),
        (f"/orders/{order}", {"none": 303, "H2": 404, "H1": 200, "OPS": 403}),
        ("/account", {"none": 303, "H2": 200, "H1": 200, "OPS": 200}),
        ("/operator", {"none": 303, "H2": 403, "H1": 403, "OPS": 200}),
        ("/operator/invite", {"none": 303, "H2": 403, "H1": 403, "OPS": 200}),
    ]
    forms = [
        # path, form, {who: status}; the household's own changes answer 303 to the page they changed
        ("/orders", ORDER_FORM, {"none": 303, "OPS": 403, "H2": 303, "H1": 303}),
        (
            f"/orders/{order}/amend",
            {"quantity_kwh": "1", "price_p_per_kwh": "7"},
            {"none": 303, "OPS": 403, "H2": 404, "H1": 303},
        ),
        ("/operator/invite", {"participant_id": "H3"}, {"none": 303, "H2": 403, "H1": 403, "OPS": 200}),
        (
            "/account/password",
            {"current_password": "x", "new_password": "y", "confirm_password": "y"},
            {"none": 303},
        ),
        ("/sign-out-everywhere", {}, {"none": 303}),
        (f"/orders/{order}/cancel", {}, {"none": 303, "OPS": 403, "H2": 404, "H1": 303}),
    ]
    wrong = []
    for path, expected in pages:
        for who, status in expected.items():
            response = web[who].client.get(path)
            if response.status_code != status:
                wrong.append((who, "GET", path, response.status_code, status))
            if (
                who == "none"
                and path != "/"
                and response.headers.get("location", "").split("?")[0] != SIGN_IN
            ):
                wrong.append((who, "GET", path, response.headers.get("location"), SIGN_IN))
    for path, data, expected in forms:
        for who, status in expected.items():
            response = web[who].client.post(path, data={**data, "csrf_token": web[who].csrf})
            if response.status_code != status:
                wrong.append((who, "POST", path, response.status_code, status))
    assert wrong == []
    # H2 changed nothing of H1's: the amend was H1's own, and the cancel came last.
    with transaction(engine) as session:
        row = session.get(OrderRow, order)
        assert row is not None
        assert (row.status, row.quantity_wh, row.version) == ("cancelled", 1000, 3)
    assert count_rows(engine, InvitationRow) == 4  # three seeded, one by OPS's form


def test_a_form_without_its_csrf_token_is_refused_and_changes_nothing(web, engine):
    h1 = web["H1"]
    for token in ("", "forged", web["H2"].csrf):
        response = h1.client.post("/orders", data={**ORDER_FORM, "csrf_token": token})
        assert response.status_code == 403, token
        assert "did not come from this site" in response.text
    assert count_rows(engine, OrderRow) == 0
    signed_out = h1.client.post("/sign-out-everywhere", data={})
    assert signed_out.status_code == 403
    assert h1.client.get("/today").status_code == 200
    # The forms used before signing in repeat the token of their cookie.
    visitor = web["none"].client
    assert visitor.post(SIGN_IN, data={"name": "H1", "password": PASSWORD}).status_code == 403
    page = visitor.get(SIGN_IN)
    forged = visitor.post(SIGN_IN, data={"name": "H1", "password": PASSWORD, "form_token": "x" * 43})
    assert forged.status_code == 403
    right = visitor.post(
        SIGN_IN,
        data={"name": "H1", "password": PASSWORD, "form_token": hidden_token(page.text, "form_token")},
    )
    assert right.status_code == 303


def test_sessions_expire_when_idle_and_at_their_absolute_limit(web, engine):
    h1, clock = web["H1"], web["clock"]
    cookie = h1.client.cookies.get("smartbrum_session")
    assert cookie
    set_cookie = web["none"].sign_in("H2").headers["set-cookie"].lower()
    assert "httponly" in set_cookie
    assert "samesite=lax" in set_cookie
    assert "secure" not in set_cookie  # the public URL is plain http here
    for _ in range(24):  # kept alive by a request every 29 minutes...
        clock.moment += timedelta(minutes=29)
        assert h1.client.get("/today").status_code == 200
    clock.moment += timedelta(minutes=29)  # ...until 12 hours after signing in
    expired = h1.client.get("/today")
    assert (expired.status_code, expired.headers["location"]) == (303, "/sign-in?next=/today")
    clock.moment += timedelta(minutes=31)
    assert web["H2"].client.get("/orders").status_code == 303  # idle for more than 30 minutes
    refused = web["H2"].client.post("/orders", data={**ORDER_FORM, "csrf_token": web["H2"].csrf})
    assert (refused.status_code, refused.headers["location"]) == (303, SIGN_IN)
    assert count_rows(engine, OrderRow) == 0


def test_secure_cookies_behind_an_https_public_url(engine, database_url):
    from api.deps import Platform
    from api.settings import Settings
    from market.accounts import AccountPolicy, accept_invitation, invite
    from tests.factories import FixedClock, seed_market
    from web.app import create_service

    with transaction(engine) as session:
        seed_market(session, now=NOW)
        secret = invite(
            session, participant_id="H1", invited_by="OPS", now=NOW, policy=AccountPolicy()
        ).secret
        accept_invitation(session, secret=secret, password=PASSWORD, now=NOW, policy=AccountPolicy())
    settings = Settings(database_url=database_url, public_url="https://energy.example.org")
    app = create_service(Platform(engine=engine, settings=settings, clock=FixedClock(NOW)))
    browser = Browser(app, FixedClock(NOW), base_url="https://testserver")
    with browser.client:
        response = browser.sign_in("H1")
        assert response.status_code == 303
        assert "secure" in response.headers["set-cookie"].lower()


def test_failed_sign_ins_are_throttled_then_locked_with_a_plain_message(web):
    visitor, clock = web["none"], web["clock"]
    for _ in range(3):
        assert visitor.sign_in("H1", "wrong password").status_code == 401
    throttled = visitor.sign_in("H1")
    assert throttled.status_code == 429
    assert throttled.headers["retry-after"] == "1"
    assert "wait 1 seconds, then try again" in throttled.text
    for wait in (1, 2, 4, 8, 16, 32, 60):
        clock.moment += timedelta(seconds=wait)
        assert visitor.sign_in("H1", "wrong password").status_code == 401
    clock.moment += timedelta(minutes=1)
    locked = visitor.sign_in("H1")
    assert locked.status_code == 429
    assert "This account is locked after too many failed sign-ins. Try again after" in locked.text
    assert Browser(web["app"], clock).sign_in("H2").status_code == 303  # another account is not locked
    clock.moment += timedelta(minutes=15)
    assert visitor.sign_in("H1").status_code == 303


def test_an_invitation_from_the_page_works_once_and_expires(web, engine):
    ops, clock = web["OPS"], web["clock"]
    page = ops.client.post("/operator/invite", data={"participant_id": "H3", "csrf_token": ops.csrf})
    assert page.status_code == 200
    link = re.search(r'id="invitation-link" href="([^"]+)"', page.text)
    assert link is not None
    assert link.group(1).startswith("http://127.0.0.1:8000/invitation?token=")
    path = urlsplit(link.group(1).replace("&amp;", "&"))
    invited = web["none"].client
    form = invited.get(f"{path.path}?{path.query}")
    assert form.status_code == 200
    assert "Home H3" in form.text
    data = {
        "token": parse_qs(path.query)["token"][0],
        "form_token": hidden_token(form.text, "form_token"),
        "password": "short",
        "confirm_password": "short",
    }
    too_short = invited.post("/invitation", data=data)
    assert too_short.status_code == 422
    assert _errors(too_short.text) == ["The new password must be at least 10 characters."]
    accepted = invited.post("/invitation", data={**data, "password": PASSWORD, "confirm_password": PASSWORD})
    assert (accepted.status_code, accepted.headers["location"]) == (303, "/")
    assert invited.get("/today").status_code == 200
    again = invited.post("/invitation", data={**data, "password": PASSWORD, "confirm_password": PASSWORD})
    assert again.status_code == 410
    assert "already been used" in again.text
    late = ops.client.post("/operator/invite", data={"participant_id": "H3", "csrf_token": ops.csrf})
    late_link = re.search(r'id="invitation-link" href="http://127.0.0.1:8000([^"]+)"', late.text)
    assert late_link is not None
    clock.moment += timedelta(hours=72)
    assert "has expired" in invited.get(late_link.group(1).replace("&amp;", "&")).text
    assert invited.get("/invitation?token=made-up").status_code == 404


def test_signing_out_everywhere_and_changing_the_password_end_other_sessions(web):
    phone = Browser(web["app"], web["clock"])
    assert phone.sign_in("H1").status_code == 303
    h1 = web["H1"]
    mismatch = h1.client.post(
        "/account/password",
        data={
            "csrf_token": h1.csrf,
            "current_password": PASSWORD,
            "new_password": "a new password",
            "confirm_password": "another",
        },
    )
    assert mismatch.status_code == 422
    assert _errors(mismatch.text) == ["The two new passwords are not the same."]
    changed = h1.client.post(
        "/account/password",
        data={
            "csrf_token": h1.csrf,
            "current_password": PASSWORD,
            "new_password": "a new password",
            "confirm_password": "a new password",
        },
    )
    assert changed.status_code == 200
    assert "signed out everywhere else" in changed.text
    assert phone.client.get("/today").status_code == 303
    assert h1.client.get("/today").status_code == 200  # this browser has a new session
    assert phone.sign_in("H1", "a new password").status_code == 303
    h1.csrf = hidden_token(changed.text)
    assert h1.client.post("/sign-out-everywhere", data={"csrf_token": h1.csrf}).status_code == 303
    assert phone.client.get("/today").status_code == 303
    assert h1.client.get("/today").status_code == 303


def test_order_errors_in_plain_words_beside_their_fields(web, engine):
    h1, rules = web["H1"], MarketRules()

    def place(**change: str):  # type: ignore[no-untyped-def]
        return h1.client.post("/orders", data={**ORDER_FORM, **change, "csrf_token": h1.csrf})

    too_dear = place(price_p_per_kwh="1000.01")
    assert too_dear.status_code == 422
    assert "The price must be from -100 to 1000 p/kWh, in steps of 0.01p." in _errors(too_dear.text)
    assert "Enter an amount in kWh, like 1.5: digits, with a decimal point if needed." in _errors(
        place(quantity_kwh="lots").text
    )
    past = period_at(NOW)
    assert "Too late: the gate for that period has closed, so its orders can no longer change." in _errors(
        place(interval=past.key).text
    )
    for _ in range(rules.max_open_orders):
        assert place().status_code == 303
    too_many = place()
    assert too_many.status_code == 422
    assert (
        "You already have 10 open orders for that period, the most allowed. Amend or cancel one instead."
        in _errors(too_many.text)
    )
    assert count_rows(engine, OrderRow) == rules.max_open_orders
    assert place(quantity_kwh="1\x00").status_code == 422


def test_the_pages_are_not_in_the_api_document_and_load_only_their_own_stylesheet(web):
    paths = web["none"].client.get("/openapi.json").json()["paths"]
    operations = {"/healthz", "/readyz", "/metrics"}  # probes and metrics for machines, not pages
    # The API's routes, and the open data's (issue 18).
    assert all(path.startswith(("/v1/", "/open/v1/")) or path in operations for path in paths), sorted(paths)
    policy = web["H1"].client.get("/today").headers["content-security-policy"]
    assert policy.startswith("default-src 'none'; style-src 'self';")
    assert "script-src" not in policy
    api = web["H1"].client.get("/v1/orders").headers["content-security-policy"]
    assert api == "default-src 'none'; frame-ancestors 'none'"
    css = web["none"].client.get("/static/site.css")
    assert css.status_code == 200
    assert css.headers["content-type"].startswith("text/css")


def test_after_signing_in_a_visitor_goes_back_to_the_page_asked_for_on_this_site_only(web):
    visitor = web["none"].client
    asked = visitor.get("/orders")
    assert asked.headers["location"] == "/sign-in?next=/orders"
    cases = (("/orders", "/orders"), ("//evil.example/x", "/"), ("https://evil.example", "/"))
    for next_path, lands in cases:
        page = visitor.get(f"/sign-in?next={next_path}")
        response = visitor.post(
            SIGN_IN,
            data={
                "name": "H1",
                "password": PASSWORD,
                "next": next_path,
                "form_token": hidden_token(page.text, "form_token"),
            },
        )
        assert (response.status_code, response.headers["location"]) == (303, lands)
        visitor.cookies.delete("smartbrum_session")


def test_an_address_that_is_no_page_is_a_page_saying_so_and_the_apis_a_problem(web):
    page = web["H1"].client.get("/no-such-page")
    assert page.status_code == 404
    assert page.headers["content-type"].startswith("text/html")
    assert "There is no page at this address." in page.text
    api = web["H1"].client.get("/v1/no-such-route")
    assert api.status_code == 404
    assert api.headers["content-type"] == "application/problem+json"
