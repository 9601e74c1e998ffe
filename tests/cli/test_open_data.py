"""`smartbrum open-data export` on both databases: the day's CSV files and a data package
descriptor that describes every column of them and no other; stdout is the paths written."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from api.settings import get_settings
from cli.main import app
from market.database import create_database_engine, transaction
from market.intervals import settlement_period
from tests.factories import seed_market, seed_open_results_day

DAY = date(2026, 11, 21)
TRADED = settlement_period(DAY, 27)
REGISTERED = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture
def cli(monkeypatch, database_url):
    engine = create_database_engine(database_url)
    with transaction(engine) as session:
        seed_market(session, now=REGISTERED)
    seed_open_results_day(engine, TRADED, registered_at=REGISTERED)
    engine.dispose()
    monkeypatch.setenv("SMARTBRUM_DATABASE_URL", database_url)
    get_settings.cache_clear()
    yield lambda *args: CliRunner().invoke(app, list(args))
    get_settings.cache_clear()


def test_export_writes_the_day_and_its_descriptor(cli, tmp_path):
    folder = tmp_path / "portal" / "2026-11-21"
    result = cli("open-data", "export", str(folder), "--date", DAY.isoformat())
    assert result.exit_code == 0, result.output
    written = [Path(line) for line in result.stdout.splitlines()]
    assert [path.name for path in written] == [
        "market-results-2026-11-21.csv",
        "market-results-totals-2026-11-21.csv",
        "datapackage.json",
    ]
    assert all(path.parent == folder and path.is_file() for path in written)
    assert "2 published" not in result.stdout
    assert "96 cells, 94 suppressed" in result.stderr
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in written)  # no leftovers
    descriptor = json.loads((folder / "datapackage.json").read_text())
    assert descriptor["name"] == "smartbrum-market-results-2026-11-21"
    assert descriptor["licenses"][0]["title"] == "Open Government Licence v3.0"
    assert descriptor["created"].endswith("Z")
    for resource in descriptor["resources"]:
        text = (folder / resource["path"]).read_bytes().decode("utf-8")
        header, *rows = list(csv.reader(io.StringIO(text)))
        fields = [field["name"] for field in resource["schema"]["fields"]]
        assert set(header) <= set(fields), "a column the descriptor does not describe"
        assert set(fields) <= set(header), "a described field the file lacks"
        assert header == fields
        required = [
            f["name"] for f in resource["schema"]["fields"] if f.get("constraints", {}).get("required")
        ]
        for row in rows:
            record = dict(zip(header, row, strict=True))
            assert all(record[name] != "" for name in required)
    cells = list(csv.DictReader(io.StringIO((folder / "market-results-2026-11-21.csv").read_text())))
    f1 = next(row for row in cells if (row["feeder"], row["period"]) == ("F1", "27"))
    assert (f1["status"], f1["bought_kwh"], f1["backstop_import_kwh"]) == ("published", "", "")
    assert f1["withheld"].split()[:2] == ["bought_kwh", "sold_kwh"]  # one buyer, one seller: their own
    f2 = next(row for row in cells if (row["feeder"], row["period"]) == ("F2", "27"))
    assert (f2["status"], f2["bought_kwh"], f2["backstop_import_kwh"]) == ("suppressed", "", "")
    again = cli("open-data", "export", str(folder), "--date", DAY.isoformat())  # replaces the files
    assert again.exit_code == 0
    assert again.stdout == result.stdout


def test_the_licence_and_threshold_come_from_the_settings(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("SMARTBRUM_OPEN_DATA_MIN_HOUSEHOLDS", "3")
    monkeypatch.setenv("SMARTBRUM_OPEN_DATA_LICENCE_NAME", "CC-BY-4.0")
    get_settings.cache_clear()
    result = cli("open-data", "export", str(tmp_path), "--date", DAY.isoformat())
    assert result.exit_code == 0, result.output
    descriptor = json.loads((tmp_path / "datapackage.json").read_text())
    assert descriptor["licenses"][0]["name"] == "CC-BY-4.0"
    assert "at least 3 households" in descriptor["description"]
    monkeypatch.setenv("SMARTBRUM_OPEN_DATA_MIN_HOUSEHOLDS", "2")
    get_settings.cache_clear()
    refused = cli("open-data", "export", str(tmp_path / "again"), "--date", DAY.isoformat())
    assert refused.exit_code == 2
    assert refused.stdout == ""
    assert "SMARTBRUM_OPEN_DATA_MIN_HOUSEHOLDS" in refused.stderr
    assert not (tmp_path / "again").exists()


@pytest.mark.parametrize(
    ("day", "words"),
    [
        ("2099-01-01", "--date: 2099-01-01 is not over yet"),
        ("1999-12-31", "--date:"),
        ("21/11/2026", "is not a date"),
        ("2026-11-21 --now 2026-11-21T23:00:00Z", "--date: 2026-11-21 is not over yet"),
        (
            "2026-11-21 --now 2099-01-01T00:00:00Z",
            "--now: 2099-01-01T00:00:00Z is ahead of the platform's clock",
        ),
    ],
)
def test_a_date_that_cannot_be_exported_is_refused_and_nothing_written(cli, tmp_path, day, words):
    folder = tmp_path / "out"
    result = cli("open-data", "export", str(folder), "--date", *day.split())
    assert result.exit_code == 2
    assert result.stdout == ""
    assert words in result.stderr
    assert not folder.exists()


def test_a_file_in_the_folders_place_is_refused(cli, tmp_path):
    blocker = tmp_path / "taken"
    blocker.write_text("x")
    result = cli("open-data", "export", str(blocker), "--date", DAY.isoformat())
    assert result.exit_code == 2
    assert "is not a folder" in result.stderr
    assert blocker.read_text() == "x"
