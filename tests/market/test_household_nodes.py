"""A household is on a node the network has (issue 15, A7): registering one on an unknown node,
or before any network, is refused, one by one, in bulk and through the API; and a new network
version that drops a node households are on is refused, naming them. On SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from market.database import transaction
from market.errors import ConflictError, MarketError
from market.network import network_in_force, publish_network
from market.participants import NewHousehold, register_household, register_households, register_operator
from market.tables import NetworkVersionRow, ParticipantRow
from optimiser import Network
from tests.factories import api_client, auth, count_rows, mpan, node, seed_market, street_network

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(days=7)


def one_household(session, node_id: str, participant_id: str = "H9") -> None:
    register_household(
        session, participant_id=participant_id, display_name="Nine", mpan=mpan(9), node_id=node_id, now=NOW
    )


def test_a_household_before_any_network_is_refused(engine):
    with transaction(engine) as session:
        register_operator(session, participant_id="OPS", display_name="Brum Energy", now=NOW)
    with (
        pytest.raises(ConflictError, match="no network is published yet") as refused,
        transaction(engine) as session,
    ):
        one_household(session, "FDR-1")
    assert refused.value.field == "node"
    with pytest.raises(ConflictError, match="no network") as bulk, transaction(engine) as session:
        register_households(session, [NewHousehold("B1", "One", mpan(1), "FDR-1")], now=NOW)
    assert bulk.value.field == "households[0].node"
    assert count_rows(engine, ParticipantRow) == 1  # the operator


def test_a_household_on_an_unknown_node_is_refused_naming_the_known_ones(engine):
    with transaction(engine) as session:
        seed_market(session, now=NOW)
    with (
        pytest.raises(
            MarketError, match=r"'FDR-9' is not a node of the network \(its nodes: F1, F2, GSP, P1\)"
        ),
        transaction(engine) as session,
    ):
        one_household(session, "FDR-9")
    households = [NewHousehold(f"B{i}", f"Home {i}", mpan(100 + i), "F1") for i in range(3)]
    households.append(NewHousehold("B3", "Home 3", mpan(103), "FDR-9"))
    with pytest.raises(MarketError, match="'FDR-9' is not a node") as bulk, transaction(engine) as session:
        register_households(session, households, now=NOW)
    assert bulk.value.field == "households[3].node"
    assert count_rows(engine, ParticipantRow) == 4  # the operator and H1 to H3 only
    with transaction(engine) as session:  # the root and every node below it are places to be
        assert register_households(session, households[:3], now=NOW) == 3
        one_household(session, "GSP")


def test_a_node_a_later_version_drops_is_refused(engine):
    with transaction(engine) as session:
        seed_market(session, now=NOW, homes={"H1": "F1"})
        smaller = Network("GSP", (node("P1", "GSP", 500, 500), node("F1", "P1", 100, 100)))
        publish_network(session, network=smaller, effective_from_utc=LATER, now=NOW)
    dropped = "'F2' is not a node of the network from 2026-11-28"
    with pytest.raises(MarketError, match=dropped) as refused, transaction(engine) as session:
        one_household(session, "F2")
    assert refused.value.field == "node"


def test_a_network_that_drops_households_nodes_is_refused_naming_them(engine):
    with transaction(engine) as session:
        seed_market(session, now=NOW)  # H1, H2 on F1; H3 on F2
    without_feeders = Network("GSP", (node("P1", "GSP", 500, 500),))
    with pytest.raises(ConflictError) as refused, transaction(engine) as session:
        publish_network(session, network=without_feeders, effective_from_utc=LATER, now=NOW)
    assert refused.value.field == "nodes"
    assert "drops 2 node(s) that active households are on: F1 (H1, H2); F2 (H3)" in refused.value.reason
    assert count_rows(engine, NetworkVersionRow) == 1
    with transaction(engine) as session:  # the same tree again, or a bigger one, is fine
        publish_network(session, network=street_network(), effective_from_utc=LATER, now=NOW)
        assert network_in_force(session, LATER).network.node_ids == street_network().node_ids


def test_the_api_refuses_unknown_nodes_and_networks_that_strand_households(engine, database_url):
    with api_client(engine, database_url, now=NOW) as api:
        unknown = api.post(
            "/v1/participants",
            json={"id": "H9", "display_name": "Nine", "mpan": mpan(9), "node": "FDR-9"},
            headers=auth(api, "OPS"),
        )
        assert unknown.status_code == 422, unknown.text
        assert unknown.headers["content-type"] == "application/problem+json"
        [error] = unknown.json()["errors"]
        assert error["field"] == "node"
        assert "its nodes: F1, F2, GSP, P1" in error["reason"]
        stranding = api.post(
            "/v1/network",
            json={
                "root": "GSP",
                "nodes": [
                    {"id": "P1", "parent": "GSP", "import_capacity_kwh": "500", "export_capacity_kwh": "500"},
                    {"id": "F1", "parent": "P1", "import_capacity_kwh": "100", "export_capacity_kwh": "100"},
                ],
                "effective_from_utc": "2027-01-01T00:00:00Z",
            },
            headers=auth(api, "OPS"),
        )
        assert stranding.status_code == 409, stranding.text
        [error] = stranding.json()["errors"]
        assert error["field"] == "nodes"
        assert "F2 (H3)" in error["reason"]
    assert count_rows(engine, ParticipantRow) == 4
    assert count_rows(engine, NetworkVersionRow) == 1


def test_the_api_answers_409_before_any_network(engine, database_url):
    from fastapi.testclient import TestClient

    from api.app import create_app
    from api.deps import Platform
    from api.settings import Settings
    from market.access import issue_token
    from tests.factories import FixedClock

    with transaction(engine) as session:
        register_operator(session, participant_id="OPS", display_name="Brum Energy", now=NOW)
        token = issue_token(session, participant_id="OPS", now=NOW).secret
    platform = Platform(engine=engine, settings=Settings(database_url=database_url), clock=FixedClock(NOW))
    with TestClient(create_app(platform)) as api:
        refused = api.post(
            "/v1/participants",
            json={"id": "H1", "display_name": "One", "mpan": mpan(1), "node": "FDR-1"},
            headers={"Authorization": f"Bearer {token}"},
        )
    assert refused.status_code == 409, refused.text
    assert refused.json()["errors"][0]["field"] == "node"
    assert "no network is published yet" in refused.text
    assert count_rows(engine, ParticipantRow) == 1
