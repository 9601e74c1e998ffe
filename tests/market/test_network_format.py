"""The one network format: TOML files and the API's JSON with the same keys, errors naming the file
and the key."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from market.network_format import (
    NetworkFormatError,
    load_network,
    network_document,
    network_toml,
    parse_network,
)
from simulation import load_scenario

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"


def test_the_sample_file_its_json_and_its_toml_are_one_network(tmp_path):
    sample = load_network(SCENARIOS / "sample-network.toml")
    assert sample.network.node_ids == ("GSP", "PRI-1", "FDR-1", "FDR-2", "FDR-3")
    assert sample.tariff is not None
    assert sample.tariff.import_p_per_kwh == Decimal("24.5")
    moment = datetime(2027, 1, 1, tzinfo=UTC)
    as_json = tmp_path / "network.json"
    as_json.write_text(json.dumps(network_document(sample.network, effective_from_utc=moment, note="n")))
    as_toml = tmp_path / "network.toml"
    as_toml.write_text(network_toml(sample.network, effective_from_utc=moment, note="n"))
    for path in (as_json, as_toml):
        again = load_network(path)
        assert again.network.nodes == sample.network.nodes
        assert (again.effective_from_utc, again.note) == (moment, "n")
    document = network_document(sample.network)
    assert document["nodes"][0] == {
        "id": "PRI-1",
        "parent": "GSP",
        "import_capacity_kwh": "5000",
        "export_capacity_kwh": "4000",
        "fee_p_per_kwh": "0.4",
    }


def test_a_scenarios_network_table_is_the_same_format():
    scenario = load_scenario(SCENARIOS / "feeder-congestion.toml")
    assert scenario.network.root == "GSP"
    sample = load_network(SCENARIOS / "sample-network.toml").network
    assert set(scenario.network.node_ids) == set(sample.node_ids)


NODE = {"id": "F1", "parent": "GSP", "import_capacity_kwh": "5", "export_capacity_kwh": 2}


@pytest.mark.parametrize(
    ("document", "key", "reason"),
    [
        ({"nodes": []}, "root", "missing key"),
        ({"root": 7}, "root", "a string"),
        ({"root": "GSP", "colour": 1}, "colour", "unknown key"),
        ({"root": "GSP", "nodes": {}}, "nodes", "array of tables"),
        ({"root": "GSP", "nodes": [{**NODE, "fee": 1}]}, "nodes[0].fee", "unknown key"),
        (
            {"root": "GSP", "nodes": [{"id": "F1", "parent": "GSP"}]},
            "nodes[0].import_capacity_kwh",
            "missing",
        ),
        (
            {"root": "GSP", "nodes": [{**NODE, "export_capacity_kwh": "1e3"}]},
            "nodes[0].export_capacity_kwh",
            "not a",
        ),
        (
            {"root": "GSP", "nodes": [{**NODE, "export_capacity_kwh": True}]},
            "nodes[0].export_capacity_kwh",
            "not",
        ),
        ({"root": "GSP", "nodes": [{**NODE, "fee_p_per_kwh": "-1"}]}, "nodes[0].fee_p_per_kwh", "negative"),
        ({"root": "GSP", "nodes": [NODE, NODE]}, "nodes[1].id", "more than once"),
        ({"root": "GSP", "nodes": [{**NODE, "parent": "X"}]}, "nodes[0].parent", "'X' is not a node"),
        ({"root": "GSP", "tariff": {"import_p_per_kwh": 1}}, "tariff.export_p_per_kwh", "missing key"),
        ({"root": "GSP", "effective_from_utc": "2027-01-01T00:00"}, "effective_from_utc", "UTC offset"),
        ({"root": "GSP", "effective_from_utc": "soon"}, "effective_from_utc", "not an ISO 8601 time"),
    ],
)
def test_a_bad_document_names_the_file_and_the_key(document, key, reason):
    with pytest.raises(NetworkFormatError) as refused:
        parse_network(document, path="grid.json")
    assert refused.value.key == key
    assert str(refused.value).startswith(f"grid.json: {key}: ")
    assert reason in refused.value.reason


def test_an_unreadable_file_names_itself(tmp_path):
    with pytest.raises(NetworkFormatError, match=r"nowhere\.toml: cannot be read"):
        load_network(tmp_path / "nowhere.toml")
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    with pytest.raises(NetworkFormatError, match=r"broken\.json: is not valid JSON"):
        load_network(broken)
