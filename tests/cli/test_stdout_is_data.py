"""Stdout is data: every command that solves a clearing prints only its promised output.

Each command runs as a user runs it, the installed console script in a process of its own, so
that whatever a library writes to the process's file descriptor 1 (HiGHS's banner is written by
C++, past Python's ``sys.stdout``) is caught; its stdout is then parsed as the command promises.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from sqlmodel import Session, func, select

from market.database import create_database_engine, transaction
from market.intervals import period_at
from market.orders import place_order
from market.rules import MarketRules
from market.tables import ClearingRunRow
from tests.api.test_serve import free_port
from tests.factories import seed_crossing_orders, seed_market

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"
SMARTBRUM = Path(sys.executable).with_name("smartbrum")
#: What a solver (HiGHS's banner, its log) or a progress display would put on stdout.
FOREIGN_TEXT = re.compile(
    r"HiGHS|Copyright|licence|THIRD_PARTY|Running|Presolv|Iteration|\d+/\d+ +\d+:\d\d:\d\d"
)


def smartbrum(*args: str, env: dict[str, str] | None = None, timeout: float = 180) -> str:
    """Run the installed command; its stdout, after checking it exited 0 and holds no foreign text."""
    done = subprocess.run(
        [str(SMARTBRUM), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert not FOREIGN_TEXT.search(done.stdout), done.stdout[:500]
    return done.stdout


def test_clear_prints_one_json_document():
    stdout = smartbrum(
        "clear",
        str(SCENARIOS / "sample-book.csv"),
        "--network",
        str(SCENARIOS / "sample-network.toml"),
    )
    document = json.loads(stdout)
    assert document["status"] == "optimal"
    assert len(document["fills"]) == 48


def test_clear_sample_prints_its_tables():
    lines = smartbrum("clear-sample").splitlines()
    assert lines[0].startswith("smartbrum cleared"), lines[:3]
    assert any("p/kWh" in line for line in lines)


def test_market_commands_print_their_lines(tmp_path):
    """clear-due, verify and reclear: one plain line per result, each of the promised form."""
    url = f"sqlite:///{tmp_path / 'market.db'}"
    env = {**os.environ, "SMARTBRUM_DATABASE_URL": url}
    smartbrum("db", "upgrade", env=env)
    now = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
    period = period_at(now + timedelta(hours=1))
    engine = create_database_engine(url)
    seed_crossing_orders(engine, period, now=now)
    engine.dispose()
    at = (period.start_utc + timedelta(minutes=1)).isoformat()

    cleared = smartbrum("market", "clear-due", "--now", at, env=env).splitlines()
    form = re.compile(
        r"^(?:already )?cleared (\S+) \(\S+Z\): \d+ orders, welfare [\d.-]+ p, backstop \S+ kWh, run (\d+)$"
    )
    matches = [form.match(line) for line in cleared]
    assert all(matches), cleared
    run_id = next(m.group(2) for m in matches if m is not None and m.group(1) == period.key)

    assert smartbrum("market", "verify", run_id, env=env).splitlines() == [
        f"run {run_id}: re-cleared from its stored inputs, identical"
    ]
    reclear = smartbrum("market", "reclear", period.key, "--reason", "audit", "--now", at, env=env)
    first, second = reclear.splitlines()
    match = form.match(first)
    assert match is not None, first
    assert match.group(1) == period.key
    assert re.fullmatch(rf"run \d+ supersedes run {run_id}: audit", second), second


def test_serve_keeps_stdout_clear_while_it_clears(tmp_path):
    """The server clears a due interval as it starts (the catch-up); nothing reaches its stdout."""
    url = f"sqlite:///{tmp_path / 'serve.db'}"
    env = {**os.environ, "SMARTBRUM_DATABASE_URL": url}
    smartbrum("db", "upgrade", env=env)
    now = datetime.now(UTC) - timedelta(hours=2)
    period = period_at(now + timedelta(hours=1))  # its gate closed about an hour ago
    engine = create_database_engine(url)
    with transaction(engine) as session:
        seed_market(session, now=now)
        place_order(
            session,
            rules=MarketRules(),
            participant_id="H1",
            period=period,
            side="buy",
            quantity_kwh=Decimal("1"),
            price_p_per_kwh=Decimal("20"),
            now=now,
        )
    server = subprocess.Popen(
        [str(SMARTBRUM), "serve", "--port", str(free_port())],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            with Session(engine) as session:
                runs = session.exec(
                    select(func.count())
                    .select_from(ClearingRunRow)
                    .where(ClearingRunRow.interval_start_utc == period.start_utc)
                ).one()
            if runs:
                break
            assert server.poll() is None, server.communicate()[1]
            assert time.monotonic() < deadline, "the server did not clear the due interval"
            time.sleep(0.1)
    finally:
        server.send_signal(signal.SIGTERM)
        stdout, stderr = server.communicate(timeout=30)
        engine.dispose()
    assert stdout == "", stdout[:500]
    assert "smartbrum API on http://" in stderr


def test_the_demo_prints_its_summary_alone(tmp_path):
    """The demo's day (shortened): stdout is the summary table, row by row; progress is on stderr."""
    done = subprocess.run(
        [str(SMARTBRUM), "demo", "--day-seconds", "12", "--report", str(tmp_path / "report")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert not FOREIGN_TEXT.search(done.stdout), done.stdout[:500]
    labels = [line.split("  ")[0] for line in done.stdout.splitlines() if not line.startswith(" ")]
    assert labels[:3] == ["households", "intervals cleared", "orders placed"], done.stdout
    assert "money balance" in labels
    assert "intervals cleared" in done.stderr
