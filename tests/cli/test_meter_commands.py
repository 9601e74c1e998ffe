"""`smartbrum meter add / read / poll` against emulated meters on loopback Modbus."""

from __future__ import annotations

import json
import socket
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlmodel import Session, func, select
from typer.testing import CliRunner

from api.settings import get_settings
from cli.main import app
from cli.meters import gateway_shard
from market.database import create_database_engine, transaction
from market.tables import MeterReadingRow
from metering.emulator import SimulatedMeter
from tests.factories import GatewayThread, seed_market


@pytest.fixture
def gateway():
    meters = [SimulatedMeter(1, "sdm630"), SimulatedMeter(2, "sdm120"), SimulatedMeter(3, "em24")]
    with GatewayThread(meters) as served:
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


@pytest.mark.parametrize(
    ("unit", "model", "keys"),
    [
        (
            1,
            "sdm630",
            {"voltage_l3_v", "current_l2_a", "power_l3_w", "power_w", "frequency_hz", "import_kwh"},
        ),
        (2, "sdm120", {"voltage_l1_v", "power_w", "import_kwh", "export_kwh"}),
        (3, "em24", {"voltage_l2_v", "power_w", "import_kwh", "export_kwh"}),
    ],
)
def test_read_prints_the_meters_quantities_as_json(cli, gateway, unit, model, keys):
    result = cli(
        "meter",
        "read",
        "--host",
        "127.0.0.1",
        "--port",
        str(gateway.port),
        "--unit",
        str(unit),
        "--model",
        model,
        "--json",
    )
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert keys <= set(document)
    assert document["quality"] == "good"
    assert document["read_time"].endswith("Z")
    assert document["import_kwh"] > 0
    if model == "sdm120":
        assert "voltage_l3_v" not in document


def test_an_unreachable_meter_fails_in_one_line_within_seconds(cli):
    started = time.monotonic()
    result = cli("meter", "read", "--host", "127.0.0.1", "--port", str(free_port()), "--timeout", "0.5")
    assert time.monotonic() - started < 10
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.output


def test_a_silent_unit_fails_in_one_line(cli, gateway):
    result = cli(
        "meter", "read", "--host", "127.0.0.1", "--port", str(gateway.port), "--unit", "9", "--timeout", "0.5"
    )
    assert result.exit_code == 2
    assert "unit 9" in result.stderr


def test_unknown_model_is_refused(cli):
    result = cli("meter", "read", "--host", "127.0.0.1", "--model", "sdm999")
    assert result.exit_code == 2
    assert "'sdm999' is not a known meter model" in result.output


def test_add_then_poll_stores_the_fleets_readings(cli, gateway, database_url):
    engine = create_database_engine(database_url)
    with transaction(engine) as session:
        seed_market(session, now=datetime.now(UTC))
    for meter_id, home, unit, model in (
        ("M1", "H1", 1, "sdm630"),
        ("M2", "H2", 2, "sdm120"),
        ("M3", "H3", 3, "em24"),
    ):
        added = cli(
            "meter",
            "add",
            meter_id,
            "--participant",
            home,
            "--host",
            "127.0.0.1",
            "--port",
            str(gateway.port),
            "--unit",
            str(unit),
            "--model",
            model,
            url=database_url,
        )
        assert added.exit_code == 0, added.output
    clash = cli(
        "meter",
        "add",
        "M4",
        "--participant",
        "H1",
        "--host",
        "127.0.0.1",
        "--port",
        str(gateway.port),
        "--unit",
        "1",
        url=database_url,
    )
    assert clash.exit_code == 2
    assert "already meter 'M1'" in clash.stderr
    polled = cli("meter", "poll", url=database_url)
    assert polled.exit_code == 0, polled.output
    assert "3 of 3 meters read, 3 readings stored" in polled.stdout
    other_shard = 1 - gateway_shard("127.0.0.1", gateway.port, 2)
    sharded = cli("meter", "poll", "--shard", f"{other_shard}/2", url=database_url)
    assert "no meters to poll in shard" in sharded.stdout
    with Session(engine) as session:
        assert session.exec(select(func.count()).select_from(MeterReadingRow)).one() == 3
    engine.dispose()


def test_a_dropped_in_map_file_adds_a_model(cli, gateway, tmp_path, monkeypatch):
    """A user's map (here the SDM630's layout under another name) is used without code."""
    shipped = (Path(__file__).resolve().parents[2] / "metering" / "maps" / "sdm630.toml").read_text()
    (tmp_path / "brum3p.toml").write_text(shipped.replace('model = "sdm630"', 'model = "brum3p"'))
    monkeypatch.setenv("SMARTBRUM_METER_MAPS_DIR", str(tmp_path))
    result = cli(
        "meter", "read", "--host", "127.0.0.1", "--port", str(gateway.port), "--model", "brum3p", "--json"
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["quality"] == "good"
