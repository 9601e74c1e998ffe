"""`smartbrum db upgrade`, `intervals`, `market clear-due` and `market verify`, on both databases."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta

import pytest
from typer.testing import CliRunner

from api.settings import get_settings
from cli.main import app
from market.database import create_database_engine, transaction
from market.intervals import period_at
from tests.factories import seed_crossing_orders, seed_market

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
PERIOD = period_at(NOW + timedelta(hours=1))


@pytest.fixture
def cli(monkeypatch):
    """Runs a command against the database named by ``SMARTBRUM_DATABASE_URL``."""

    def run(url: str, *args: str):
        monkeypatch.setenv("SMARTBRUM_DATABASE_URL", url)
        get_settings.cache_clear()
        return CliRunner().invoke(app, list(args))

    yield run
    get_settings.cache_clear()


@pytest.mark.parametrize(
    ("day", "count", "third_start"),
    [("2026-03-29", 46, "2026-03-29T01:00:00Z"), ("2026-10-25", 50, "2026-10-25T00:00:00Z")],
)
def test_intervals_on_clock_change_days(cli, tmp_path, day, count, third_start):
    result = cli(f"sqlite:///{tmp_path / 'unused.db'}", "intervals", "--date", day, "--json")
    assert result.exit_code == 0, result.output
    periods = json.loads(result.stdout)
    assert len(periods) == count
    assert [p["period"] for p in periods] == list(range(1, count + 1))
    assert periods[2]["start_utc"] == third_start
    assert all(a["end_utc"] == b["start_utc"] for a, b in itertools.pairwise(periods))


def test_intervals_table_and_bad_date(cli, tmp_path):
    url = f"sqlite:///{tmp_path / 'unused.db'}"
    table = cli(url, "intervals", "--date", "2026-11-21")
    assert table.exit_code == 0
    assert "48 periods" in table.stdout
    bad = cli(url, "intervals", "--date", "21/11/2026")
    assert bad.exit_code == 2
    assert "not a date" in bad.output


def test_db_upgrade_creates_the_schema(cli, tmp_path):
    url = f"sqlite:///{tmp_path / 'var' / 'fresh.db'}"
    refused = cli(url, "market", "clear-due")
    assert refused.exit_code == 2
    assert "run 'smartbrum db upgrade'" in refused.stderr
    upgraded = cli(url, "db", "upgrade")
    assert upgraded.exit_code == 0, upgraded.output
    assert "at revision 0011" in upgraded.stdout
    assert cli(url, "market", "clear-due").exit_code == 0


def test_clear_due_clears_once_and_verify_confirms(cli, database_url):
    engine = create_database_engine(database_url)
    seed_crossing_orders(engine, PERIOD, now=NOW)
    engine.dispose()
    at = (PERIOD.start_utc + timedelta(minutes=31)).isoformat()
    first = cli(database_url, "market", "clear-due", "--now", at)
    assert first.exit_code == 0, first.output
    lines = first.stdout.strip().splitlines()
    assert [line.split()[1] for line in lines] == [PERIOD.key, PERIOD.next().key]
    assert "2 orders" in lines[0]
    assert "0 orders" in lines[1]
    again = cli(database_url, "market", "clear-due", "--now", at)
    assert again.stdout.startswith("nothing due")
    run_id = lines[0].split()[-1]
    verified = cli(database_url, "market", "verify", run_id)
    assert verified.exit_code == 0, verified.output
    assert "identical" in verified.stdout
    reclear = cli(database_url, "market", "reclear", PERIOD.key, "--reason", "late meter data", "--now", at)
    assert reclear.exit_code == 0, reclear.output
    assert f"supersedes run {run_id}: late meter data" in reclear.stdout
    blank = cli(database_url, "market", "reclear", PERIOD.key, "--reason", " ", "--now", at)
    assert blank.exit_code == 2
    assert "needs a reason" in blank.stderr
    missing = cli(database_url, "market", "verify", "999999")
    assert missing.exit_code == 2
    assert "999999 is not a clearing run" in missing.stderr
    naive = cli(database_url, "market", "clear-due", "--now", "2026-11-21T13:00")
    assert naive.exit_code == 2
    assert "UTC offset" in naive.output


def test_nothing_runs_ahead_of_the_real_clock_unless_the_clock_is_simulated(cli, database_url, monkeypatch):
    """A --now in the future is refused by clear-due, reclear and settle (the gate of that period
    has not closed, its meter data is not due); a platform on a declared simulated clock may."""
    engine = create_database_engine(database_url)
    with transaction(engine) as session:
        seed_market(session, now=NOW)
    engine.dispose()
    ahead = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    soon = period_at(datetime.now(UTC) + timedelta(days=1))
    for args in (
        ("market", "clear-due", "--now", ahead),
        ("market", "reclear", soon.key, "--reason", "r", "--now", ahead),
        ("settle", "--interval", soon.key, "--now", ahead),
    ):
        refused = cli(database_url, *args)
        assert refused.exit_code == 2, refused.output
        assert "is ahead of the platform's clock" in refused.output
        assert "SMARTBRUM_SIMULATED_CLOCK=true" in refused.output
    unsettled = cli(database_url, "settle", "--interval", soon.key)
    assert unsettled.exit_code == 2
    assert f"{soon.key} cannot be settled before its meter data is due" in unsettled.stderr
    monkeypatch.setenv("SMARTBRUM_SIMULATED_CLOCK", "true")
    simulated = cli(database_url, "market", "clear-due", "--now", ahead)
    assert simulated.exit_code == 0, simulated.output
    assert simulated.stdout.startswith(f"nothing due at {ahead[:10]}")  # no orders: nothing to clear
