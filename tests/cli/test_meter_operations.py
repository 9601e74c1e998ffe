"""`smartbrum meter list / remove`, `meter poll --json`, exact values from `meter read`, one-line
failures without pymodbus's noise, and `meter simulate --models sunspec` (issue 15, B)."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from api.settings import get_settings
from cli.main import app
from market.database import create_database_engine, transaction
from market.participants import register_meter
from metering.emulator import SimulatedMeter
from tests.factories import GatewayThread, seed_market

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
SMARTBRUM = str(Path(sys.executable).with_name("smartbrum"))


@pytest.fixture
def gateway():
    with GatewayThread([SimulatedMeter(1, "sdm630"), SimulatedMeter(2, "em24")]) as served:
        yield served


@pytest.fixture
def cli(monkeypatch):
    def run(*args: str, url: str | None = None):
        if url is not None:
            monkeypatch.setenv("SMARTBRUM_DATABASE_URL", url)
        get_settings.cache_clear()
        return CliRunner().invoke(app, list(args))

    yield run
    get_settings.cache_clear()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def add_meter(session, meter_id: str, home: str, port: int, unit: int, model: str = "sdm630") -> None:
    register_meter(
        session,
        meter_id=meter_id,
        participant_id=home,
        host="127.0.0.1",
        port=port,
        unit_id=unit,
        transport="tcp",
        model=model,
        now=NOW,
    )


def test_meter_read_prints_the_decimals_the_meter_gave(cli, gateway):
    result = cli("meter", "read", "--host", "127.0.0.1", "--port", str(gateway.port), "--json")
    assert result.exit_code == 0, result.output
    texts = json.loads(result.stdout, parse_float=str)
    assert "voltage_l1_v" in texts

    def shortest(value: str) -> bool:
        """The shortest decimal that is the register's float32, exactly (no 231.41207885742188)."""
        return Decimal(value) == Decimal(np.format_float_positional(np.float32(value), unique=True))

    decimals = [
        value for value in texts.values() if isinstance(value, str) and re.fullmatch(r"-?\d+\.\d+", value)
    ]
    assert decimals
    assert all(shortest(value) for value in decimals), [v for v in decimals if not shortest(v)]
    table = cli("meter", "read", "--host", "127.0.0.1", "--port", str(gateway.port))
    assert table.exit_code == 0, table.output
    cells = dict(re.findall(r"│ (\w+)\s+│ (-?\d+\.\d+)\s+│", table.stdout))
    assert "voltage_l1_v" in cells, table.stdout
    assert all(shortest(value) for value in cells.values()), table.stdout


def test_an_unreachable_meter_is_one_line_without_pymodbus_noise():
    started = time.monotonic()
    done = subprocess.run(
        [SMARTBRUM, "meter", "read", "--host", "127.0.0.1", "--port", str(free_port()), "--timeout", "0.5"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert time.monotonic() - started < 20
    assert done.returncode == 2
    assert done.stdout == ""
    [line] = done.stderr.splitlines()
    assert line.startswith("smartbrum: ")
    assert "cannot connect" in line


def test_meter_list_poll_json_and_remove(cli, gateway, database_url):
    engine = create_database_engine(database_url)
    with transaction(engine) as session:
        seed_market(session, now=NOW)
        add_meter(session, "M1", "H1", gateway.port, 1)
        add_meter(session, "M2", "H2", gateway.port, 2, "em24")
        add_meter(session, "M3", "H3", free_port(), 1)  # nobody answers there
    listed = cli("meter", "list", "--json", url=database_url)
    assert listed.exit_code == 0, listed.output
    assert [(m["id"], m["participant_id"], m["model"], m["active"]) for m in json.loads(listed.stdout)] == [
        ("M1", "H1", "sdm630", True),
        ("M2", "H2", "em24", True),
        ("M3", "H3", "sdm630", True),
    ]
    assert "3 meters" in cli("meter", "list", url=database_url).stdout
    polled = cli("meter", "poll", "--json", "--timeout", "0.5", url=database_url)
    assert polled.exit_code == 0, polled.output
    document = json.loads(polled.stdout)
    assert (document["read"], document["polled"], document["stored"]) == (2, 3, 2)
    by_id = {m["meter_id"]: m for m in document["meters"]}
    assert by_id["M1"]["status"] == "read"
    assert by_id["M1"]["import_kwh"] > 0
    assert by_id["M3"]["status"] == "failed"
    assert "cannot connect" in by_id["M3"]["error"]

    deleted = cli("meter", "remove", "M3", url=database_url)  # never read: deleted, its address freed
    assert deleted.exit_code == 0, deleted.output
    assert deleted.stdout.startswith("meter M3 removed; 127.0.0.1:")
    kept = cli("meter", "remove", "M1", url=database_url)  # it has readings: kept for settlement
    assert kept.exit_code == 0, kept.output
    assert "meter M1 deactivated (its readings stay for settlement)" in kept.stdout
    assert "stays reserved by it" in kept.stdout
    assert [m["id"] for m in json.loads(cli("meter", "list", "--json", url=database_url).stdout)] == ["M2"]
    everything = json.loads(cli("meter", "list", "--inactive", "--json", url=database_url).stdout)
    assert [(m["id"], m["active"]) for m in everything] == [("M1", False), ("M2", True)]
    after = json.loads(cli("meter", "poll", "--json", url=database_url).stdout)
    assert [m["meter_id"] for m in after["meters"]] == ["M2"]
    missing = cli("meter", "remove", "M9", url=database_url)
    assert (missing.exit_code, missing.stderr) == (2, "smartbrum: meter_id: 'M9' is not a meter\n")
    engine.dispose()


def test_meter_simulate_serves_sunspec_as_meter_read_reads_it():
    port = free_port()
    command = [
        SMARTBRUM,
        "meter",
        "simulate",
        "--models",
        "sunspec",
        "--meters",
        "1",
        "--first-port",
        str(port),
    ]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as served:
        try:
            assert served.stdout is not None
            first = served.stdout.readline()  # blocks until it serves, or ends with the process
            assert f"gateway 127.0.0.1:{port}: 1 meters" in first, first
            reader = [SMARTBRUM, "meter", "read", "--host", "127.0.0.1", "--port", str(port)]
            read = subprocess.run(
                [*reader, "--model", "sunspec", "--json"],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert read.returncode == 0, read.stderr
            assert json.loads(read.stdout)["quality"] == "good"
        finally:
            served.terminate()
