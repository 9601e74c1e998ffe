"""Scenario files: the shipped ones load, bad ones are refused naming the key."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from simulation import ScenarioError, build_network, build_tariff, load_scenario, network_nodes

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"
SHIPPED = ("birmingham-street", "feeder-congestion", "clock-change", "district")

MINIMAL = """
name = "tiny"
seed = 1
date = 2026-06-20

[tariff]
import_p_per_kwh = 24.5
export_p_per_kwh = 4.1

[network]
root = "GSP"

[[network.nodes]]
id = "FDR-1"
parent = "GSP"
import_capacity_kwh = 50
export_capacity_kwh = 5

[[households]]
count = 3
feeder = "FDR-1"

[households.pv]
share = 0.5
kwp = [3, 4]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "scenario.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_scenario_loads_and_builds_its_network(name):
    scenario = load_scenario(SCENARIOS / f"{name}.toml")
    assert scenario.name == name
    network = build_network(scenario)
    assert len(network.node_ids) == len(scenario.network.nodes) + 1  # and the root
    assert build_tariff(scenario).import_p_per_kwh >= build_tariff(scenario).export_p_per_kwh


def test_feeder_congestion_structure():
    scenario = load_scenario(SCENARIOS / "feeder-congestion.toml")
    nodes = {node["id"]: node for node in network_nodes(scenario)}
    feeders = [n for n in nodes if n.startswith("FDR")]
    assert sorted(feeders) == ["FDR-1", "FDR-2", "FDR-3"]
    assert {nodes[f]["parent"] for f in feeders} == {"PRI-1"}
    assert scenario.household_count == 90
    assert nodes["FDR-3"]["export_capacity_kwh"] == Decimal(10)


def test_district_structure():
    scenario = load_scenario(SCENARIOS / "district.toml")
    nodes = network_nodes(scenario)
    assert scenario.household_count == 10_000
    assert sum(node["id"].startswith("PRI") for node in nodes) == 10
    assert sum(node["id"].startswith("FDR") for node in nodes) == 100
    assert {group.feeder for group in scenario.households} == {
        n["id"] for n in nodes if n["id"].startswith("FDR")
    }


def test_minimal_scenario_defaults(tmp_path):
    scenario = load_scenario(write(tmp_path, MINIMAL))
    assert scenario.interval_minutes == 30
    assert scenario.location.latitude == pytest.approx(52.48)
    assert scenario.fees.platform_p_per_kwh == 0
    (node,) = network_nodes(scenario)
    assert node == {
        "id": "FDR-1",
        "parent": "GSP",
        "import_capacity_kwh": Decimal(50),
        "export_capacity_kwh": Decimal(5),
        "fee_p_per_kwh": Decimal(0),
    }


@pytest.mark.parametrize(
    ("old", "new", "key", "reason"),
    [
        ("seed = 1", 'seed = "one"', "seed", "integer"),
        ("seed = 1", "seed = 1\ncolour = 3", "colour", "unknown key"),
        ('feeder = "FDR-1"', 'feeder = "FDR-9"', "households[0].feeder", "not a node"),
        (
            "export_capacity_kwh = 5",
            "export_capacity_kwh = -5",
            "network.nodes[0].export_capacity_kwh",
            "negative",
        ),
        ("share = 0.5", "share = 1.5", "households[0].pv.share", "1"),
        ("kwp = [3, 4]", "kwp = [4, 3]", "households[0].pv.kwp", "lo above hi"),
        ("count = 3", "count = 3\noccupants = [1, 6]", "households[0].occupants", "[1, 5]"),
        ("date = 2026-06-20", 'date = "2026-02-30"', "date", "not an ISO date"),
        ("date = 2026-06-20", "date = 2026-06-20\ndays = 0", "days", "greater than or equal to 1"),
        ("date = 2026-06-20", "date = 2026-06-20\ninterval_minutes = 20", "interval_minutes", "15, 30, 60"),
        ('parent = "GSP"', "", "network.nodes[0].parent", "missing key"),
        ('parent = "GSP"', 'parent = "FDR-1"', "network.nodes[0].parent", "cycle"),
        ('root = "GSP"', "", "network.root", "missing key"),
        ('root = "GSP"', 'root = "GSP"\nnote = "x"', "network.note", "unknown key"),
        ("import_capacity_kwh = 50", "", "network.nodes[0].import_capacity_kwh", "missing key"),
        (
            "import_capacity_kwh = 50",
            'import_capacity_kwh = "lots"',
            "network.nodes[0].import_capacity_kwh",
            "not a decimal",
        ),
        (
            "count = 3",
            'count = 3\nmeter_model = "acme9000"',
            "households[0].meter_model",
            "not a simulated meter",
        ),
        ("count = 3", 'count = 3\nstrategy = "greedy"', "households[0].strategy", "consumer"),
        ("count = 3", "count = 3\nstrategy_params = { wobble = 0.2 }", "households[0]", "wobble"),
        ("share = 0.5", "share = 0.5\ncount = 1", "households[0].pv", "not both"),
        ("[tariff]\n", "[tariff]\ncurrency = 1\n", "tariff.currency", "unknown key"),
    ],
)
def test_bad_scenario_names_the_key(tmp_path, old, new, key, reason):
    assert old in MINIMAL
    path = write(tmp_path, MINIMAL.replace(old, new, 1))
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: {key}")
    assert caught.value.key == key
    assert reason in message


def test_tariff_import_below_export_is_refused(tmp_path):
    text = MINIMAL.replace("import_p_per_kwh = 24.5", "import_p_per_kwh = 2.5")
    with pytest.raises(ScenarioError, match=r"tariff: import_p_per_kwh is below"):
        load_scenario(write(tmp_path, text))


def test_toml_syntax_error_gives_the_line(tmp_path):
    path = write(tmp_path, MINIMAL.replace('name = "tiny"', 'name = "tiny'))
    with pytest.raises(ScenarioError, match=r"is not valid TOML .*line 2"):
        load_scenario(path)


def test_missing_file_is_a_scenario_error(tmp_path):
    with pytest.raises(ScenarioError, match="cannot be read"):
        load_scenario(tmp_path / "nowhere.toml")


def test_a_node_may_not_repeat_the_root(tmp_path):
    text = MINIMAL.replace('id = "FDR-1"', 'id = "GSP"')
    with pytest.raises(ScenarioError, match=r"network.nodes\[0\].id: appears more than once"):
        load_scenario(write(tmp_path, text))


def test_ev_that_cannot_charge_in_its_window_is_refused(tmp_path):
    text = MINIMAL + "\n[households.ev]\nshare = 1\nkwh_per_day = 60\ncharger_kw = 3\n"
    with pytest.raises(ScenarioError, match=r"households\[0\].ev: kwh_per_day up to 60"):
        load_scenario(write(tmp_path, text))
