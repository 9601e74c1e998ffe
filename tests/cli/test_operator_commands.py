"""The operator's commands: participants, tokens, meters, the network and the tariff, on both
databases (issue 15, A7 and B)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from typer.testing import CliRunner

from api.settings import get_settings
from cli.main import app
from market.database import create_database_engine, transaction
from market.tables import ParticipantRow
from tests.factories import count_rows, mpan, seed_market

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


@pytest.fixture
def cli(monkeypatch, database_url):
    """Runs a command against the test database."""

    def run(*args: str):
        monkeypatch.setenv("SMARTBRUM_DATABASE_URL", database_url)
        get_settings.cache_clear()
        return CliRunner().invoke(app, list(args))

    yield run
    get_settings.cache_clear()


@pytest.fixture
def street(database_url):
    """The seeded market: OPS, the street network (GSP, P1, F1, F2), H1 and H2 on F1, H3 on F2."""
    engine = create_database_engine(database_url)
    with transaction(engine) as session:
        seed_market(session, now=NOW)
    yield engine
    engine.dispose()


def add_household(cli, participant_id: str, node: str, serial: int = 9):
    return cli("participant", "add", participant_id, "--name", "Nine", "--mpan", mpan(serial), "--node", node)


def test_a_household_needs_a_network_and_a_node_of_it(cli, database_url):
    before = add_household(cli, "HH-001", "FDR-1")
    assert before.exit_code == 2
    assert before.stderr.strip().splitlines() == [
        "smartbrum: node: no network is published yet; load one first ('smartbrum network load FILE')"
    ]
    engine = create_database_engine(database_url)
    try:
        with transaction(engine) as session:
            seed_market(session, now=NOW)
        unknown = add_household(cli, "HH-001", "FDR-1")
        assert unknown.exit_code == 2
        assert "node: 'FDR-1' is not a node of the network (its nodes: F1, F2, GSP, P1)" in unknown.stderr
        added = add_household(cli, "HH-001", "F2")
        assert added.exit_code == 0, added.output
        assert count_rows(engine, ParticipantRow) == 5
    finally:
        engine.dispose()
