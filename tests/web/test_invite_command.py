"""``smartbrum participant invite``: the link on stdout, on the public URL; errors in one line."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

from typer.testing import CliRunner

from api.settings import get_settings
from cli.main import app
from market.accounts import invited_participant
from market.database import transaction
from tests.factories import seed_market

NOW = datetime.now(UTC)


def test_the_link_is_printed_alone_on_stdout_and_opens_the_invitation(engine, database_url, monkeypatch):
    with transaction(engine) as session:
        seed_market(session, now=NOW)
    monkeypatch.setenv("SMARTBRUM_DATABASE_URL", database_url)
    monkeypatch.setenv("SMARTBRUM_PUBLIC_URL", "https://energy.example.org/brum")
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["participant", "invite", "H1"])
        refused = CliRunner().invoke(app, ["participant", "invite", "NOBODY"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    link = result.stdout.strip()
    assert "\n" not in link
    parts = urlsplit(link)
    assert (parts.scheme, parts.netloc, parts.path) == ("https", "energy.example.org", "/brum/invitation")
    secret = parse_qs(parts.query)["token"][0]
    with transaction(engine) as session:
        assert invited_participant(session, secret=secret, now=NOW).id == "H1"
    assert refused.exit_code == 2
    assert refused.stdout == ""
    assert refused.stderr.strip() == "smartbrum: participant_id: 'NOBODY' is not a participant"
