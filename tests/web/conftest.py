"""The web app over a real database on each backend: a seeded market, accounts for OPS, H1 and
H2 (password :data:`PASSWORD`), a clock the test moves, and browsers signed in as each."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient

from api.deps import Platform
from api.settings import Settings
from market.accounts import AccountPolicy, accept_invitation, invite
from market.database import transaction
from tests.factories import FixedClock, seed_market
from web.app import create_service

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
PASSWORD = "correct horse battery"
_HIDDEN = re.compile(r'name="(csrf_token|form_token)" value="([^"]+)"')


def hidden_token(html: str, name: str = "csrf_token") -> str:
    """The value of the form's hidden token ``name`` in a page."""
    for found, value in _HIDDEN.findall(html):
        if found == name:
            return value
    raise AssertionError(f"no {name} in the page")


class Browser:
    """A TestClient with its own cookies, signed in (or not) through the sign-in form."""

    def __init__(self, app, clock: FixedClock, base_url: str = "http://testserver") -> None:  # type: ignore[no-untyped-def]
        self.client = TestClient(app, base_url=base_url, follow_redirects=False)
        self.clock = clock
        self.csrf = ""

    def sign_in(self, name: str, password: str = PASSWORD):  # type: ignore[no-untyped-def]
        page = self.client.get("/sign-in")
        response = self.client.post(
            "/sign-in",
            data={"name": name, "password": password, "form_token": hidden_token(page.text, "form_token")},
        )
        if response.status_code == 303:
            self.csrf = hidden_token(
                self.client.get(response.headers["location"], follow_redirects=True).text
            )
        return response


@pytest.fixture
def web(engine, database_url) -> Iterator[dict]:
    """The service, its clock and browsers: ``none`` (a visitor), ``H1``, ``H2`` and ``OPS``."""
    with transaction(engine) as session:
        seed_market(session, now=NOW)
        for who in ("OPS", "H1", "H2"):
            secret = invite(
                session, participant_id=who, invited_by="OPS", now=NOW, policy=AccountPolicy()
            ).secret
            accept_invitation(session, secret=secret, password=PASSWORD, now=NOW, policy=AccountPolicy())
    clock = FixedClock(NOW)
    app = create_service(Platform(engine=engine, settings=Settings(database_url=database_url), clock=clock))
    browsers = {who: Browser(app, clock) for who in ("none", "H1", "H2", "OPS")}
    with browsers["none"].client:
        for who in ("H1", "H2", "OPS"):
            assert browsers[who].sign_in(who).status_code == 303
        yield {"app": app, "clock": clock, **browsers}
