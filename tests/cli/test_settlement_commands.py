"""`smartbrum settle` and `smartbrum statement` on both databases."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from typer.testing import CliRunner

from api.settings import get_settings
from cli.main import app
from market.database import create_database_engine
from market.intervals import period_at
from tests.factories import seed_cleared_metered_interval

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
PERIOD = period_at(NOW + timedelta(hours=1))


@pytest.fixture
def cli(monkeypatch, database_url):
    engine = create_database_engine(database_url)
    seed_cleared_metered_interval(engine, PERIOD, now=NOW)
    engine.dispose()
    monkeypatch.setenv("SMARTBRUM_DATABASE_URL", database_url)
    monkeypatch.setenv("SMARTBRUM_PLATFORM_FEE_P_PER_KWH", "0.1")
    get_settings.cache_clear()
    yield lambda *args: CliRunner().invoke(app, list(args))
    get_settings.cache_clear()


def test_settle_an_interval_then_a_day_idempotently(cli, tmp_path):
    first = cli(
        "settle", "--interval", PERIOD.key, "--now", "2026-11-21T14:00:00Z", "--csv", str(tmp_path / "x.csv")
    )
    assert first.exit_code == 0, first.output
    assert f"{PERIOD.key} initial #1 settled: complete" in first.stdout
    assert "balance 0" in first.stdout
    rows = list(csv.DictReader(io.StringIO((tmp_path / "x.csv").read_text())))
    assert {row["participant_id"] for row in rows} == {"H1", "H2", "H3"}
    h2 = next(row for row in rows if row["participant_id"] == "H2")
    # 1 kWh at 24.5 p; VAT 5% of 24.50 p is 1.225 p, half to even 1.22 p.
    assert (h2["imported_kwh"], h2["imported_p"], h2["vat_p"], h2["total_p"]) == (
        "1.000",
        "24.50",
        "1.22",
        "25.72",
    )
    day = cli("settle", "--date", "2026-11-21", "--now", "2026-11-22T01:00:00Z")
    assert day.exit_code == 0, day.output
    assert f"{PERIOD.key} initial #1 unchanged" in day.stdout
    assert "48 intervals: 1 complete, 0 partial, 47 pending" in day.stdout
    again = cli("settle", "--interval", PERIOD.key, "--run", "reconcile")
    assert again.exit_code == 0
    assert "unchanged" in again.stdout
    as_json = cli("settle", "--interval", PERIOD.key, "--run", "reconcile", "--json")
    assert as_json.exit_code == 0, as_json.output
    runs = json.loads(as_json.stdout)
    assert (runs["complete"], runs["partial"], runs["pending"]) == (1, 0, 0)
    (run,) = runs["runs"]
    assert (run["interval"], run["run_type"], run["created"], run["balance_p"]) == (
        PERIOD.key,
        "initial",
        False,
        "0",
    )


def test_statement_prints_and_writes_csv(cli, tmp_path, monkeypatch):
    cli("settle", "--interval", PERIOD.key)
    monkeypatch.setenv("COLUMNS", "80")
    shown = cli("statement", "H1", "--month", "2026-11")
    assert shown.exit_code == 0, shown.output
    assert "2026-11-21" in shown.stdout
    assert "total" in shown.stdout
    # It fits the terminal, says the sign convention and claims no saving for a day not settled.
    assert max(len(line) for line in shown.stdout.splitlines()) <= 80
    assert "+ the household pays, - it is paid" in shown.stdout
    assert "1/48" in shown.stdout
    assert "No saving is claimed yet" in shown.stdout
    written = cli("statement", "H1", "--month", "2026-11", "--csv", str(tmp_path / "h1.csv"))
    assert written.exit_code == 0
    assert written.stdout == ""
    rows = list(csv.DictReader(io.StringIO((tmp_path / "h1.csv").read_text())))
    total = next(row for row in rows if row["date"] == "total")
    assert total["bought_kwh"] == "2.000"
    assert (total["saving_p"], total["settled"], total["not_settled"]) == ("", "1", "47")
    money = ("bought_p", "sold_p", "imported_p", "exported_p", "fees_p", "vat_p")
    assert Decimal(total["total_p"]) == sum(Decimal(total[name]) for name in money)


def test_statement_of_a_day_shows_each_interval_and_why_it_is_not_final(cli, monkeypatch):
    cli("settle", "--interval", PERIOD.key)
    monkeypatch.setenv("COLUMNS", "80")
    shown = cli("statement", "H1", "--day", "2026-11-21")
    assert shown.exit_code == 0, shown.output
    assert max(len(line) for line in shown.stdout.splitlines()) <= 80
    assert "13:00 GMT" in shown.stdout  # the traded period, in local time
    assert "no settlement run yet" in shown.stdout
    as_json = cli("statement", "H1", "--day", "2026-11-21", "--json")
    assert as_json.exit_code == 0, as_json.output
    day = json.loads(as_json.stdout)
    assert len(day["intervals"]) == 48
    traded = next(row for row in day["intervals"] if row["interval"]["key"] == PERIOD.key)
    assert (traded["status"], traded["figures"]["bought_kwh"]) == ("settled", "2")
    assert traded["figures"]["saving_p"] is not None
    assert day["total"]["saving_p"] is None
    month = json.loads(cli("statement", "H1", "--month", "2026-11", "--json").stdout)
    assert (month["settled_days"], month["total"]["intervals"]["not_settled"]) == (0, 47)
    assert month["days"]["2026-11-21"]["total_p"] == day["total"]["total_p"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("statement", "NOBODY", "--month", "2026-11"), "'NOBODY' is not a household"),
        (("statement", "H1", "--month", "November"), "is not YYYY-MM"),
        (("statement", "H1"), "give --month or --day"),
        (("statement", "H1", "--day", "2026-11-31"), "is not a date"),
        (("statement", "H1", "--month", "2026-11", "--day", "2026-11-21"), "give --month or --day"),
        (("settle", "--interval", "2026-11-21/99"), "period"),
        (("settle", "--run", "final"), "is not initial or reconcile"),
        (("settle", "--interval", "2026-11-21/27", "--run", "reconcile"), "no initial settlement run"),
    ],
)
def test_bad_requests_get_one_line(cli, args, message):
    result = cli(*args)
    assert result.exit_code == 2
    assert message in result.output
