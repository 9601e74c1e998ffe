"""`smartbrum clear` and `smartbrum clear-sample`: files in, JSON or a table out, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import SCENARIOS, app

HEADER = "order_id,participant_id,node,side,quantity_kwh,price_p_per_kwh,submitted_at\n"
NETWORK = """\
root = "GSP"
[tariff]
import_p_per_kwh = 24.5
export_p_per_kwh = 4.1

[[nodes]]
id = "PRI-1"
parent = "GSP"
import_capacity_kwh = 5000
export_capacity_kwh = 4000
fee_p_per_kwh = 0.4

[[nodes]]
id = "F1"
parent = "PRI-1"
import_capacity_kwh = 100
export_capacity_kwh = 1
fee_p_per_kwh = 0.1
"""
ORDERS = """\
o1,HH-1,F1,sell,3,5,2026-11-21T16:00:00Z
o2,HH-2,PRI-1,buy,2.5,20,2026-11-21T16:01:00+00:00
o3,HH-3,GSP,buy,1,30,2026-11-21T16:02:00Z
"""


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_clear_prints_the_result_as_json(runner, tmp_path):
    """F1 exports its 1 kWh limit (its sell is marginal: 5 p) to o3 at the root (30 p), which is
    worth more than o2's 20 p at PRI-1. o2 stays unfilled, so p_PRI-1 >= 20 and, with the edge
    carrying energy, p_GSP = p_PRI-1 + 0.4 >= 20.4; the backstop is idle, so p_GSP <= 24.5.
    Midpoint 22.45, PRI-1 22.05. Welfare 30 - 5 - 0.1 - 0.4 = 24.5 p."""
    orders = write(tmp_path, "orders.csv", HEADER + ORDERS)
    network = write(tmp_path, "network.toml", NETWORK)
    result = runner.invoke(app, ["clear", str(orders), "--network", str(network)])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["status"] == "optimal"
    assert document["fills"] == [
        {"order_id": "o1", "cleared_kwh": 1.0},
        {"order_id": "o2", "cleared_kwh": 0.0},
        {"order_id": "o3", "cleared_kwh": 1.0},
    ]
    assert document["node_prices"] == {"GSP": 22.45, "PRI-1": 22.05, "F1": 5.0}
    assert document["flows"] == {"PRI-1": -1.0, "F1": -1.0}
    assert document["grid_import_kwh"] == 0.0
    assert document["grid_export_kwh"] == 0.0
    assert document["welfare_p"] == 24.5
    assert set(document["audit"]) >= {"price_ranges", "solver_prices", "seconds", "rounds"}


def test_quoted_crlf_and_padded_files_read_the_same(runner, tmp_path):
    """Spreadsheet exports quote fields, end lines with CRLF, pad after commas or start with a BOM."""
    plain = write(tmp_path, "plain.csv", HEADER + ORDERS)
    quoted_rows = ['"' + '","'.join(line.split(",")) + '"' for line in ORDERS.splitlines()]
    variants = {
        "quoted.csv": HEADER + "\n".join(quoted_rows) + "\n",
        "crlf.csv": (HEADER + ORDERS).replace("\n", "\r\n"),
        "padded.csv": HEADER + ORDERS.replace(",", ", "),
        "bom.csv": "\ufeff" + HEADER + ORDERS,
    }
    expected = json.loads(runner.invoke(app, ["clear", str(plain)]).stdout)
    for name, text in variants.items():
        result = runner.invoke(app, ["clear", str(write(tmp_path, name, text))])
        assert result.exit_code == 0, (name, result.output)
        assert json.loads(result.stdout)["fills"] == expected["fills"], name


def test_without_a_network_every_order_trades_at_one_node(runner, tmp_path):
    orders = write(tmp_path, "orders.csv", HEADER + ORDERS)
    result = runner.invoke(app, ["clear", str(orders), "--import-price", "25", "--export-price", "4"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert list(document["node_prices"]) == ["GSP"]
    assert {f["order_id"]: f["cleared_kwh"] for f in document["fills"]} == {"o1": 3.0, "o2": 2.0, "o3": 1.0}


def test_command_line_tariff_overrides_the_network_file(runner, tmp_path):
    orders = write(tmp_path, "orders.csv", HEADER + "o1,HH,GSP,buy,1,30,2026-11-21T16:00:00Z\n")
    network = write(tmp_path, "network.toml", NETWORK)
    result = runner.invoke(app, ["clear", str(orders), "--network", str(network), "--import-price", "28"])
    assert json.loads(result.stdout)["node_prices"]["GSP"] == 28.0


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "o1,HH,GSP,buy,-1,10,2026-11-21T16:00:00Z\n",
            "line 2 (order 'o1'): quantity_kwh must be greater than zero",
        ),
        ("o1,HH,GSP,buy,0.0001,10,2026-11-21T16:00:00Z\n", "quantity_kwh (0.0001) is finer than 0.001 kWh"),
        (
            "o1,HH,GSP,buy,1,ten,2026-11-21T16:00:00Z\n",
            "line 2 (order 'o1'): price_p_per_kwh must be a number",
        ),
        ("o1,HH,GSP,buy,1,nan,2026-11-21T16:00:00Z\n", "price_p_per_kwh must be a finite number"),
        ("o1,HH,GSP,buy,1,inf,2026-11-21T16:00:00Z\n", "price_p_per_kwh must be a finite number"),
        ("o1,HH,GSP,hold,1,10,2026-11-21T16:00:00Z\n", "side must be buy or sell"),
        ("o1,HH,GSP,buy,1,10,yesterday\n", "submitted_at is not an ISO 8601 time"),
        ("o1,HH,GSP,buy,1,10,2026-11-21T16:00:00\n", "submitted_at must carry a UTC offset"),
        ("o1,HH,GSP,buy,1,10,NaTZ\n", "submitted_at is not an ISO 8601 time"),
        ("o1,HH,GSP,buy,1,10,2026Z\n", "submitted_at is not an ISO 8601 time"),
        ("o1,HH,GSP,buy,1,10,Z\n", "submitted_at is not an ISO 8601 time"),
        ("o1,HH,GSP,buy,1,10,2026-11-21TxxZ\n", "submitted_at is not an ISO 8601 time"),
        ("o1,HH,GSP,buy,1,10\n", "line 2: has 6 fields, expected 7"),
        ("o1,HH,GSP,buy,1,10,2026-11-21T16:00:00Z\n\n", "line 3: has 0 fields, expected 7"),
        (
            "o1,HH,GSP,buy,1,10,2026-11-21T16:00:00Z\no1,HH,GSP,sell,1,5,2026-11-21T16:00:00Z\n",
            "line 3 (order 'o1'): order_id appears more than once",
        ),
        ("o1,HH,F9,buy,1,10,2026-11-21T16:00:00Z\n", "line 2: order 'o1': node 'F9' is not a node"),
    ],
)
def test_bad_order_files_get_one_line_naming_the_row(runner, tmp_path, body, message):
    orders = write(tmp_path, "orders.csv", HEADER + body)
    network = write(tmp_path, "network.toml", NETWORK)
    result = runner.invoke(app, ["clear", str(orders), "--network", str(network)])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert message in result.stderr
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("network", "message"),
    [
        (
            'root = "GSP"\n[[nodes]]\nid = "A"\nparent = "B"\n',
            "nodes[0].import_capacity_kwh: missing key",
        ),
        (NETWORK.replace('parent = "PRI-1"', 'parent = "NOPE"'), "nodes[1].parent: 'NOPE' is not a node"),
        (NETWORK.replace("fee_p_per_kwh = 0.1", "fee = 0.1"), "nodes[1].fee: unknown key"),
        (
            NETWORK.replace("fee_p_per_kwh = 0.1", 'fee_p_per_kwh = "cheap"'),
            "fee_p_per_kwh: 'cheap' is not a decimal",
        ),
        (
            NETWORK.replace("export_p_per_kwh = 4.1", "export_p_per_kwh = 40"),
            "tariff.import_p_per_kwh: (24.5) is below",
        ),
        ('root = "GSP"\n[[nodes]\n', "is not valid TOML"),
        ("[[nodes]]\n", "root: missing key"),
    ],
)
def test_bad_network_files_get_one_line_naming_the_key(runner, tmp_path, network, message):
    orders = write(tmp_path, "orders.csv", HEADER + ORDERS)
    path = write(tmp_path, "network.toml", network)
    result = runner.invoke(app, ["clear", str(orders), "--network", str(path)])
    assert result.exit_code == 2
    assert message in result.stderr
    assert result.stderr.count("\n") == 1


def test_missing_file_and_bad_options_are_refused(runner, tmp_path):
    missing = runner.invoke(app, ["clear", str(tmp_path / "nope.csv")])
    assert missing.exit_code == 2
    assert "cannot be read" in missing.stderr
    orders = write(tmp_path, "orders.csv", HEADER + ORDERS)
    bad = runner.invoke(app, ["clear", str(orders), "--import-price", "lots"])
    assert bad.exit_code == 2
    assert "'lots' is not a number" in bad.output
    inverted = runner.invoke(app, ["clear", str(orders), "--import-price", "3"])
    assert inverted.exit_code == 2
    assert "import_p_per_kwh (3) is below export_p_per_kwh (4.1)" in inverted.stderr


def test_empty_book_clears(runner, tmp_path):
    orders = write(tmp_path, "orders.csv", HEADER)
    result = runner.invoke(app, ["clear", str(orders)])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert (document["welfare_p"], document["fills"]) == (0.0, [])


def test_clear_sample_clears_the_sample_book(runner):
    result = runner.invoke(app, ["clear-sample"])
    assert result.exit_code == 0, result.output
    assert "sample-book.csv" in result.stdout
    assert "FDR-3" in result.stdout
    as_json = runner.invoke(app, ["clear-sample", "--json"])
    assert as_json.exit_code == 0, as_json.output
    assert "FDR-3" in json.loads(as_json.stdout)["node_prices"]


def test_the_installed_command_runs(tmp_path):
    """The console script itself, as a user runs it: JSON on stdout, exit 0."""
    command = Path(sys.executable).with_name("smartbrum")
    done = subprocess.run(
        [
            str(command),
            "clear",
            str(SCENARIOS / "sample-book.csv"),
            "--network",
            str(SCENARIOS / "sample-network.toml"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert len(document["fills"]) == 48
    assert document["node_prices"]["FDR-3"] < document["node_prices"]["FDR-1"]
