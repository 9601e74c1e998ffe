"""The operator's commands: participants, tokens, meters, the network and the tariff, on both
databases (issue 15, A7 and B)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from typer.testing import CliRunner

from api.settings import get_settings
from cli.main import app
from market.access import issue_token
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


NETWORK = """\
root = "GSP"
effective_from_utc = 2026-12-01T00:00:00Z

[tariff]
import_p_per_kwh = 25
export_p_per_kwh = 4.5

[[nodes]]
id = "P1"
parent = "GSP"
import_capacity_kwh = 500
export_capacity_kwh = 500
fee_p_per_kwh = 0.4

[[nodes]]
id = "F1"
parent = "P1"
import_capacity_kwh = 100
export_capacity_kwh = 100
fee_p_per_kwh = 0.2

[[nodes]]
id = "F2"
parent = "P1"
import_capacity_kwh = 100
export_capacity_kwh = 2.5
"""


def test_network_load_and_show_round_trip_through_the_api_json(cli, street, tmp_path):
    path = tmp_path / "grid.toml"
    path.write_text(NETWORK, encoding="utf-8")
    loaded = cli("network", "load", str(path))
    assert loaded.exit_code == 0, loaded.output
    assert loaded.stdout.splitlines() == [
        "network version 2 in force from 2026-12-01T00:00:00Z: 3 nodes under GSP",
        "tariff 2 in force from 2026-12-01T00:00:00Z: import 25 p/kWh, export 4.5 p/kWh",
    ]
    shown = cli("network", "show", "--at", "2026-12-02T00:00:00Z", "--json")
    assert shown.exit_code == 0, shown.output
    document = json.loads(shown.stdout)
    assert document["version_id"] == 2
    assert document["nodes"][-1] == {
        "id": "F2",
        "parent": "P1",
        "import_capacity_kwh": "100",
        "export_capacity_kwh": "2.5",
        "fee_p_per_kwh": "0",
    }
    again = tmp_path / "again.json"  # the JSON is the same format, ready to load as a new version
    again.write_text(shown.stdout)
    reloaded = cli("network", "load", str(again), "--from", "2027-01-01T00:00:00Z")
    assert reloaded.exit_code == 0, reloaded.output
    assert "network version 3 in force from 2027-01-01T00:00:00Z: 3 nodes under GSP" in reloaded.stdout
    table = cli("network", "show", "--at", "2026-11-30T00:00:00Z")
    assert table.exit_code == 0, table.output
    assert "network version 1 from 2026-10-22T12:00:00Z, root GSP" in table.stdout
    assert "F2" in table.stdout


def test_network_load_refuses_a_bad_file_or_a_tree_that_strands_households(cli, street, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(NETWORK.replace('parent = "P1"', 'parent = "P9"', 1), encoding="utf-8")
    refused = cli("network", "load", str(bad))
    assert refused.exit_code == 2
    assert refused.stderr == f"smartbrum: {bad}: nodes[1].parent: 'P9' is not a node of the network\n"
    stranding = tmp_path / "stranding.toml"
    stranding.write_text(NETWORK.split('[[nodes]]\nid = "F2"')[0], encoding="utf-8")
    refused = cli("network", "load", str(stranding))
    assert refused.exit_code == 2
    assert "nodes: drops 1 node(s) that active households are on: F2 (H3)" in refused.stderr
    assert refused.stderr.count("\n") == 1


def test_tariff_set_and_show(cli, street):
    shown = cli("tariff", "show", "--json")
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)["import_p_per_kwh"] == "24.5"
    added = cli(
        "tariff", "set", "--import-price", "26.1", "--export-price", "5", "--from", "2027-01-01T00:00Z"
    )
    assert added.exit_code == 0, added.output
    assert added.stdout == "tariff 2 in force from 2027-01-01T00:00:00Z: import 26.1 p/kWh, export 5 p/kWh\n"
    later = cli("tariff", "show", "--at", "2027-02-01T00:00:00Z")
    assert "import 26.1 p/kWh" in later.stdout
    inverted = cli(
        "tariff", "set", "--import-price", "4", "--export-price", "5", "--from", "2027-02-01T00:00Z"
    )
    assert inverted.exit_code == 2
    assert "import_p_per_kwh" in inverted.stderr
    clash = cli("tariff", "set", "--import-price", "30", "--export-price", "5", "--from", "2026-10-22T12:00Z")
    assert clash.exit_code == 2
    assert clash.stderr.startswith("smartbrum: --from: a tariff already starts at 2026-10-22")
    nonsense = cli("tariff", "set", "--import-price", "lots", "--export-price", "5")
    assert nonsense.exit_code == 2
    assert "--import-price" in nonsense.output


def test_participant_list_and_deactivate(cli, street):
    with transaction(street) as session:
        issue_token(session, participant_id="H3", now=NOW, label="agent")
    listed = cli("participant", "list", "--kind", "household", "--json")
    assert listed.exit_code == 0, listed.output
    assert [(p["id"], p["node"], p["active"]) for p in json.loads(listed.stdout)] == [
        ("H1", "F1", True),
        ("H2", "F1", True),
        ("H3", "F2", True),
    ]
    done = cli("participant", "deactivate", "H3", "--reason", "moved away")
    assert done.exit_code == 0, done.output
    assert done.stdout == (
        "household H3 deactivated: 1 token(s) revoked, 0 web session(s) ended, 0 open order(s) cancelled\n"
    )
    again = cli("participant", "deactivate", "H3")
    assert again.exit_code == 2
    assert again.stderr == "smartbrum: participant_id: 'H3' is already inactive\n"
    active = cli("participant", "list", "--json")
    assert [p["id"] for p in json.loads(active.stdout)] == ["H1", "H2", "OPS"]
    everyone = cli("participant", "list", "--inactive")
    assert everyone.exit_code == 0
    assert "4 participants" in everyone.stdout
    assert "H3" in everyone.stdout
    bad = cli("participant", "list", "--kind", "robot")
    assert bad.exit_code == 2
    assert "--kind" in bad.output


def test_token_list_and_revoke(cli, street):
    with transaction(street) as session:
        first = issue_token(session, participant_id="H1", now=NOW, label="phone")
        issue_token(session, participant_id="H2", now=NOW, label="agent")
    listed = cli("token", "list", "--json")
    assert listed.exit_code == 0, listed.output
    tokens = json.loads(listed.stdout)
    assert [(t["participant_id"], t["label"], t["revoked_at"]) for t in tokens] == [
        ("H1", "phone", None),
        ("H2", "agent", None),
    ]
    assert first.secret not in listed.stdout
    revoked = cli("token", "revoke", str(first.id))
    assert (revoked.exit_code, revoked.stdout) == (0, f"token {first.id} revoked\n")
    assert [t["participant_id"] for t in json.loads(cli("token", "list", "--json").stdout)] == ["H2"]
    with_revoked = cli("token", "list", "--participant", "H1", "--revoked")
    assert "phone" in with_revoked.stdout
    missing = cli("token", "revoke", "999")
    assert (missing.exit_code, missing.stderr) == (2, "smartbrum: token_id: 999 is not a token\n")
    too_big = cli("token", "revoke", str(2**31))
    assert too_big.exit_code == 2
    assert "is not a token id" in too_big.output
