"""`smartbrum meter-data import FILE`: a JSON summary on stdout and nothing else, exit 0 / 1 / 3 / 2,
all or nothing unless --skip-bad (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from typer.testing import CliRunner

from api.settings import get_settings
from cli.main import app
from market.database import transaction
from market.meter_files import HEADER
from market.tables import IntervalEnergyRow, MeterRow
from tests.factories import count_rows, mpan, seed_market

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
HEADER_LINE = ",".join(HEADER)


@pytest.fixture
def cli(monkeypatch, engine, database_url):
    with transaction(engine) as session:
        seed_market(session, now=NOW - timedelta(days=2))
    monkeypatch.setenv("SMARTBRUM_DATABASE_URL", database_url)

    def run(*args: str):
        get_settings.cache_clear()
        return CliRunner().invoke(app, ["meter-data", "import", *args, "--now", "2026-11-21T12:00:00Z"])

    yield run
    get_settings.cache_clear()


def write(tmp_path, *rows: str, name: str = "hh.csv"):
    path = tmp_path / name
    path.write_text("\n".join([HEADER_LINE, *rows]) + "\n", encoding="utf-8")
    return str(path)


def test_a_good_file_is_stored_and_summarised_as_json_on_stdout(cli, engine, tmp_path):
    path = write(
        tmp_path, f"{mpan(1)},2026-11-20,1,0.412,0,actual", f"{mpan(2)},2026-11-20,1,0.2,0.05,estimated"
    )
    result = cli(path)
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    summary = json.loads(result.stdout)
    assert {
        key: summary[key] for key in ("rows_read", "stored", "new", "unchanged", "bad", "meters_created")
    } == {
        "rows_read": 2,
        "stored": 2,
        "new": 2,
        "unchanged": 0,
        "bad": 0,
        "meters_created": 2,
    }
    assert summary["problems"] == []
    again = json.loads(cli(path).stdout)
    assert (again["stored"], again["unchanged"]) == (0, 2)
    assert count_rows(engine, IntervalEnergyRow) == 2


def test_bad_rows_store_nothing_and_exit_1_naming_row_and_column(cli, engine, tmp_path):
    path = write(
        tmp_path,
        f"{mpan(1)},2026-11-20,1,0.412,0,actual",
        f"{mpan(2)},2026-11-20,49,0.2,0,actual",
        f"{mpan(3)},2026-11-20,1,0.2,-1,actual",
    )
    result = cli(path)
    assert result.exit_code == 1
    summary = json.loads(result.stdout)
    assert summary["stored"] == 0
    assert summary["bad"] == 2
    assert [(p["row"], p["field"]) for p in summary["problems"]] == [
        (3, "settlement_period"),
        (4, "export_kwh"),
    ]
    assert result.stderr.count("\n") == 1
    assert "2 bad rows (first: row 3, settlement_period:" in result.stderr
    assert "nothing is stored" in result.stderr
    assert count_rows(engine, IntervalEnergyRow) == 0
    assert count_rows(engine, MeterRow) == 0


def test_skip_bad_stores_the_good_rows_and_exits_3(cli, engine, tmp_path):
    path = write(
        tmp_path,
        f"{mpan(1)},2026-11-20,1,0.412,0,actual",
        f"{mpan(2)},2026-11-20,1,0.2,0,actual",
        f"{mpan(3)},2026-11-20,1,0.2,0,guessed",
    )
    result = cli(path, "--skip-bad")
    assert result.exit_code == 3
    summary = json.loads(result.stdout)
    assert (summary["stored"], summary["bad"], summary["skip_bad"]) == (2, 1, True)
    assert [(p["row"], p["field"]) for p in summary["problems"]] == [(4, "quality")]
    assert count_rows(engine, IntervalEnergyRow) == 2


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"mpan,date\n", "header: has unknown column 'date'"),
        (b"\xff\xfe" + HEADER_LINE.encode("utf-16-le"), "file: is not UTF-8 text"),
        (None, "cannot read it"),
    ],
)
def test_an_unreadable_file_exits_2_with_one_line_and_no_stdout(cli, tmp_path, content, message):
    path = tmp_path / "hh.csv"
    if content is not None:
        path.write_bytes(content)
    result = cli(str(path))
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert message in result.stderr


def test_a_time_ahead_of_the_clock_is_refused(cli, tmp_path, monkeypatch):
    path = write(tmp_path, f"{mpan(1)},2026-11-20,1,0.412,0,actual")
    get_settings.cache_clear()
    result = CliRunner().invoke(app, ["meter-data", "import", path, "--now", "2999-01-01T00:00:00Z"])
    assert result.exit_code == 2
    assert "ahead of the platform's clock" in result.stderr
