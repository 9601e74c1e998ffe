"""``smartbrum strategy``: the operator shows, sets, pauses, resumes, removes and lists a household's
strategy, on both databases; stdout is the data (parsed here), errors one line on stderr naming the
field, and every change audited."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from sqlmodel import Session, select
from typer.testing import CliRunner

from api.settings import get_settings
from cli.main import app
from market.database import create_database_engine, transaction
from market.tables import AuditEventRow, StrategyVersionRow
from tests.factories import count_rows, seed_market

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
TOML = """\
sell_floor_p_per_kwh = "5"
buy_ceiling_p_per_kwh = 25

[battery]
capacity_kwh = "10"
charge_kw = "3.6"
discharge_kw = "3.6"
reserve_kwh = "2"

[ev]
charge_kw = "7.4"
plugged_in_from = "18:00:00"
departure = "07:30:00"
energy_needed_kwh = "20"
"""


@pytest.fixture
def street(database_url):
    engine = create_database_engine(database_url)
    with transaction(engine) as session:
        seed_market(session, now=NOW)
    yield engine
    engine.dispose()


@pytest.fixture
def cli(monkeypatch, database_url, street):
    def run(*args: str):
        monkeypatch.setenv("SMARTBRUM_DATABASE_URL", database_url)
        get_settings.cache_clear()
        return CliRunner().invoke(app, list(args))

    yield run
    get_settings.cache_clear()


def test_the_operator_sets_pauses_resumes_and_removes_a_strategy(cli, street, tmp_path):
    file = tmp_path / "strategy.toml"
    file.write_text(TOML)
    stated = cli("strategy", "set", "H1", "--file", str(file), "--json")
    assert stated.exit_code == 0, stated.output
    document = json.loads(stated.stdout)
    assert (document["version"], document["paused"], document["created_by"]) == (1, False, "cli")
    assert document["battery"]["reserve_kwh"] == "2"
    assert (document["ev"]["plugged_in_from"], document["buy_ceiling_p_per_kwh"]) == ("18:00", "25")
    shown = json.loads(cli("strategy", "show", "H1", "--json").stdout)
    assert shown == document
    assert json.loads(cli("strategy", "pause", "H1", "--json").stdout)["paused"] is True
    json_file = tmp_path / "strategy.json"
    json_file.write_text(json.dumps({"sell_floor_p_per_kwh": "6", "buy_ceiling_p_per_kwh": "20"}))
    still_paused = json.loads(cli("strategy", "set", "H1", "--file", str(json_file), "--json").stdout)
    assert (still_paused["version"], still_paused["paused"], still_paused["battery"]) == (3, True, None)
    assert json.loads(cli("strategy", "resume", "H1", "--json").stdout)["paused"] is False
    removed = cli("strategy", "remove", "H1")
    assert (removed.exit_code, removed.stdout) == (0, "strategy of H1 removed (version 5)\n")
    history = json.loads(cli("strategy", "history", "H1", "--json").stdout)
    assert [(v["version"], v["paused"], v["removed"]) for v in history] == [
        (1, False, False),
        (2, True, False),
        (3, True, False),
        (4, False, False),
        (5, True, True),
    ]
    table = cli("strategy", "history", "H1")
    assert table.exit_code == 0
    assert "5 versions of H1's strategy" in table.stdout
    with Session(street) as session:
        audited = session.exec(select(AuditEventRow).where(AuditEventRow.method == "CLI")).all()
    assert [a.path for a in audited] == [
        "strategy set H1",
        "strategy pause H1",
        "strategy set H1",
        "strategy resume H1",
        "strategy remove H1",
    ]
    missing = cli("strategy", "show", "H1")
    assert (missing.exit_code, missing.stdout) == (2, "")
    assert missing.stderr == "smartbrum: strategy: household 'H1' has no strategy\n"


@pytest.mark.parametrize(
    ("text", "suffix", "message"),
    [
        (
            TOML.replace('reserve_kwh = "2"', 'reserve_kwh = "11"'),
            ".toml",
            "battery.reserve_kwh: must be at most",
        ),
        (
            TOML.replace("buy_ceiling_p_per_kwh = 25", "buy_ceiling_p_per_kwh = 2000"),
            ".toml",
            "buy_ceiling_p_per_kwh:",
        ),
        (
            TOML.replace('sell_floor_p_per_kwh = "5"', 'sell_floor_p_per_kwh = "-200"'),
            ".toml",
            "sell_floor_p_per_kwh: -200 is outside the market's -100 to 1000 p/kWh",
        ),
        ('{"sell_floor_p_per_kwh": "5"}', ".json", "buy_ceiling_p_per_kwh: field required"),
        (
            '{"sell_floor_p_per_kwh": "5", "buy_ceiling_p_per_kwh": "9", "paused": "yes"}',
            ".json",
            "paused: must be true or false",
        ),
        ("sell_floor_p_per_kwh = ", ".toml", "not valid TOML"),
        ("[1, 2]", ".json", "must hold the strategy's fields"),
    ],
)
def test_a_bad_file_is_one_line_naming_the_field_and_stores_nothing(
    cli, street, tmp_path, text, suffix, message
):
    file = tmp_path / f"strategy{suffix}"
    file.write_text(text)
    refused = cli("strategy", "set", "H1", "--file", str(file))
    assert (refused.exit_code, refused.stdout) == (2, "")
    assert len(refused.stderr.strip().splitlines()) == 1
    assert message in refused.stderr
    assert count_rows(street, StrategyVersionRow) == 0


def test_an_unknown_household_or_no_strategy_is_refused_on_stderr(cli):
    for args in (("show", "H9"), ("history", "H9"), ("pause", "H1"), ("resume", "H1"), ("remove", "H1")):
        refused = cli("strategy", *args)
        assert (refused.exit_code, refused.stdout) == (2, ""), args
        assert refused.stderr.startswith("smartbrum: "), args


def test_the_operator_sees_the_platforms_latest_plan(cli, street, tmp_path):
    from market.autotrading import plan_strategies
    from market.rules import MarketRules

    file = tmp_path / "strategy.toml"
    file.write_text(TOML)
    assert cli("strategy", "set", "H1", "--file", str(file)).exit_code == 0
    none_yet = cli("strategy", "plan", "H1")
    assert (none_yet.exit_code, none_yet.stdout) == (2, "")
    assert none_yet.stderr == "smartbrum: plan: household 'H1' has no plan yet\n"
    report = plan_strategies(street, rules=MarketRules(), now=datetime.now(UTC))
    assert report.planned == 1, report.failed
    shown = cli("strategy", "plan", "H1", "--json")
    assert shown.exit_code == 0, shown.output
    plan = json.loads(shown.stdout)
    assert plan["participant_id"] == "H1"
    assert [(p["settlement_date"], p["period"]) for p in plan["periods"]] == [
        (p.settlement_date.isoformat(), p.period) for p in report.periods
    ]
    assert plan["battery_start_kwh"] == "2"  # its floor: the 2 kWh reserve, above 10% of 10 kWh
    table = cli("strategy", "plan", "H1")
    assert table.exit_code == 0
    words = " ".join(table.stdout.split())  # the title as a line, wherever the terminal wrapped it
    assert "H1's plan, made" in words
    assert "battery from 2 kWh" in words
    assert cli("strategy", "plan", "nobody").exit_code == 2
