"""Seeing the running service: the jobs' log events, /healthz and /readyz, and /metrics, on both
databases; then a real `smartbrum serve --workers 2` on PostgreSQL, its log parsed line by line
and its workers' metrics added up."""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx2
import pytest
from alembic.script import ScriptDirectory
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from api.app import create_app
from api.clock import AcceleratedClock
from api.deps import Platform
from api.leader import JobLeader
from api.logs import JsonFormatter, TextFormatter, log_event
from api.scheduler import MarketScheduler, MeterPolling, SettlementJobs
from api.settings import Settings
from market.access import issue_token
from market.database import alembic_config, create_database_engine, transaction, upgrade_database
from market.intervals import period_at
from market.participants import register_meter
from market.rules import MarketRules
from market.settlement import SettlementConfig
from metering.emulator import Fault, SimulatedMeter
from metering.polling import PollSettings
from tests.factories import FixedClock, GatewayThread, seed_crossing_orders, seed_market

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
PERIOD = period_at(NOW + timedelta(hours=1))  # 2026-11-21 13:00-13:30 UTC, gate 12:55
#: A quarter of an hour after PERIOD ends: its gate closed 50 minutes ago, its meter data is due.
LATER = PERIOD.end_utc + timedelta(minutes=15)


def wait_for(condition, *, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@contextmanager
def captured_events(log_format: str = "json") -> Iterator[list[str]]:
    """The lines smartbrum's loggers write in ``log_format`` while the block runs."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    logger = logging.getLogger("smartbrum")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    lines: list[str] = []
    try:
        yield lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        lines.extend(stream.getvalue().splitlines())


def events(lines: list[str], name: str) -> list[dict]:
    return [event for event in map(json.loads, lines) if event["event"] == name]


def metrics(client: TestClient, headers: dict[str, str] | None = None) -> dict[tuple, float]:
    """Every sample of /metrics: (name, sorted labels) -> value."""
    response = client.get("/metrics", headers=headers or {})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def app_client(engine, database_url, clock, **settings) -> TestClient:  # type: ignore[no-untyped-def]
    platform = Platform(engine=engine, settings=Settings(database_url=database_url, **settings), clock=clock)
    return TestClient(create_app(platform))


# --- the log ----------------------------------------------------------------------------------


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_each_event_is_one_line_and_money_stays_exact(log_format):
    with captured_events(log_format) as lines:
        log_event(
            logging.getLogger("smartbrum.test"),
            "clearing_run",
            "cleared 2026-11-21/27",
            interval="2026-11-21/27",
            node_prices={"F1": Decimal("12.100000")},
            orders=2,
        )
        try:
            raise ValueError("two\nlines")
        except ValueError:
            log_event(
                logging.getLogger("smartbrum.test"),
                "job_failed",
                "it failed",
                level=logging.ERROR,
                job="clearing",
                exc_info=True,
            )
    assert len(lines) == 2
    if log_format == "json":
        cleared, failed = map(json.loads, lines)
        assert cleared["event"] == "clearing_run"
        assert cleared["node_prices"] == {"F1": "12.100000"}  # a string: the decimal as it is
        assert (cleared["orders"], cleared["level"], cleared["logger"]) == (2, "info", "smartbrum.test")
        assert (failed["event"], failed["job"], failed["level"]) == ("job_failed", "clearing", "error")
        assert "ValueError: two\nlines" in failed["exception"]
    else:
        assert "clearing_run: cleared 2026-11-21/27 interval=2026-11-21/27" in lines[0]
        assert 'node_prices={"F1":"12.100000"}' in lines[0]
        assert "job_failed: it failed job=clearing exception=" in lines[1]


def test_the_jobs_log_clearing_and_settlement_and_metrics_show_them(engine, database_url):
    """A catch-up clears the one due interval and settles it: each says what it did (the run's
    orders and node prices; its lines and that it balances), and /metrics shows the last cleared
    interval, the clearing lag and the settlement run, read from the database."""
    seed_crossing_orders(engine, PERIOD, now=NOW)
    clock = FixedClock(LATER)
    rules = MarketRules()
    with captured_events() as lines:
        clearing = MarketScheduler(engine, rules, clock)
        settlement = SettlementJobs(
            engine, rules, clock, config=SettlementConfig(), delay=timedelta(minutes=10)
        )
        try:
            clearing.start()
            settlement.start()
        finally:
            settlement.shutdown()
            clearing.shutdown()
    # PERIOD and the (empty) one after it: both gates have closed by LATER.
    cleared, empty = events(lines, "clearing_run")
    assert (cleared["interval"], cleared["orders"], cleared["triggered_by"]) == (
        PERIOD.key,
        2,
        "scheduler:catch-up",
    )
    assert (empty["interval"], empty["orders"]) == (PERIOD.next().key, 0)
    # The street network's nodes, each with its price as an exact decimal string.
    assert set(cleared["node_prices"]) >= {"F1", "F2"}
    assert all(
        Decimal(price) == Decimal(price).quantize(Decimal("0.000001"))
        for price in cleared["node_prices"].values()
    )
    assert cleared["seconds"] > 0
    catch_ups = {event["job"]: event for event in events(lines, "catch_up")}
    assert (catch_ups["clearing"]["runs"], catch_ups["clearing"]["first"]) == (2, PERIOD.key)
    assert (catch_ups["settlement"]["runs"], catch_ups["settlement"]["last"]) == (1, PERIOD.key)
    (settled,) = events(lines, "settlement_run")
    assert (settled["interval"], settled["run_type"], settled["balanced"], settled["pool_balance_cp"]) == (
        PERIOD.key,
        "initial",
        True,
        0,
    )
    assert settled["lines"] > 0

    # Clearing has stopped since: at 14:10 the gate of the interval after the last cleared one
    # (13:55, for 14:00) has been closed a quarter of an hour.
    stalled = FixedClock(PERIOD.next().end_utc + timedelta(minutes=10))
    with app_client(engine, database_url, stalled, metrics_public=True) as client:
        samples = metrics(client)
    last = ("smartbrum_last_cleared_interval_start_timestamp_seconds", ())
    assert samples[last] == PERIOD.next().start_utc.timestamp()
    assert samples[("smartbrum_clearing_lag_seconds", ())] == 15 * 60
    assert samples[("smartbrum_last_settlement_run_interval_start_timestamp_seconds", ())] == (
        PERIOD.start_utc.timestamp()
    )
    assert samples[("smartbrum_settlement_unbalanced_runs_total", ())] == 0
    assert samples[("smartbrum_last_settlement_run_balanced", ())] == 1
    assert samples[("smartbrum_clearing_runs_total", ())] >= 1
    assert samples[("smartbrum_settlement_runs_total", (("run_type", "initial"),))] >= 1


def test_a_polling_cycle_says_what_it_read_and_which_meters_fail(engine):
    clock = AcceleratedClock(PERIOD.end_utc - timedelta(minutes=3), speed=1.0)
    good = SimulatedMeter(1, "sdm630", clock=clock.now)
    dead = SimulatedMeter(2, "sdm630", clock=clock.now)
    dead.fault = Fault.NO_ANSWER
    with GatewayThread([good, dead]) as gateway:
        with transaction(engine) as session:
            seed_market(session, now=clock.now())
            for meter_id, home, unit in (("M1", "H1", 1), ("M2", "H2", 2)):
                register_meter(
                    session,
                    meter_id=meter_id,
                    participant_id=home,
                    host="127.0.0.1",
                    port=gateway.port,
                    unit_id=unit,
                    transport="tcp",
                    model="sdm630",
                    now=clock.now(),
                )
        polling = MeterPolling(
            engine,
            MarketRules(),
            clock,
            poll_settings=PollSettings(timeout_s=0.2, retries=0, breaker_failures=1, breaker_cooldown_s=3600),
            poll_seconds=3600.0,
        )
        with captured_events() as lines:
            cycles: list[int] = []
            polling.on_polled = lambda results, stored: cycles.append(stored)
            polling.start()
            try:
                wait_for(lambda: len(cycles) == 1)  # the first cycle runs at once
                polling.poll_once()  # the dead meter's breaker is open now
            finally:
                polling.shutdown()
    first, second = events(lines, "poll_cycle")
    assert (first["meters"], first["read"], first["failed"], first["breakers_open"]) == (2, 1, 1, 0)
    assert first["failing"] == ["M2"]
    assert (second["read"], second["failed"], second["breakers_open"], second["stored"]) == (1, 0, 1, 1)
    from api.metrics import METER_BREAKERS_OPEN, METERS_FAILING

    assert (METERS_FAILING._value.get(), METER_BREAKERS_OPEN._value.get()) == (1, 1)


def test_energy_derivation_logs_its_interval_and_a_failing_job_says_which(engine, database_url):
    """The energy job logs what it derived; when the database is gone the job's failure is a
    job_failed event naming the job and interval, with its traceback, and is counted."""
    from api.metrics import JOB_FAILURES

    with transaction(engine) as session:
        seed_market(session, now=NOW)
    settings = PollSettings(timeout_s=0.2, retries=0)
    working = MeterPolling(engine, MarketRules(), FixedClock(LATER), poll_settings=settings)
    gone = create_database_engine("postgresql+psycopg://postgres@127.0.0.1:1/test?connect_timeout=2")
    broken = MeterPolling(gone, MarketRules(), FixedClock(LATER), poll_settings=settings)
    failures = JOB_FAILURES.labels(job="energy")._value.get()
    with captured_events() as lines:
        working._energy_job(PERIOD)  # the scheduler is not running: nothing is scheduled after
        broken._energy_job(PERIOD)
    for polling in (working, broken):
        polling._loop.close()  # never started
    gone.dispose()
    (derived,) = events(lines, "energy_derived")
    assert (derived["interval"], derived["previous"], derived["meters"]) == (
        PERIOD.key,
        PERIOD.previous().key,
        0,
    )
    (failed,) = events(lines, "job_failed")
    assert (failed["job"], failed["interval"], failed["level"]) == ("energy", PERIOD.key, "error")
    assert "OperationalError" in failed["exception"]
    assert JOB_FAILURES.labels(job="energy")._value.get() == failures + 1


# --- health -----------------------------------------------------------------------------------


class Recorder:
    def start(self) -> None:
        pass

    def shutdown(self) -> None:
        pass


def test_healthz_is_alive_and_readyz_names_a_missing_job_leader(engine, database_url):
    """No process leads the jobs (an app without its scheduler): alive, but not ready, and the
    problem names the check; once a leader holds the lock (here another engine's, as another
    process would) the service is ready."""
    with app_client(engine, database_url, FixedClock(NOW)) as client:
        assert client.get("/healthz").json() == {"status": "alive"}
        response = client.get("/readyz")
        assert response.status_code == 503
        assert response.headers["content-type"] == "application/problem+json"
        problem = response.json()
        assert [error["field"] for error in problem["errors"]] == ["job_leader"]
        assert problem["status"] == 503
        other = create_database_engine(database_url)
        leader = JobLeader(other, [Recorder()], retry_s=0.05)
        leader.start()
        try:
            wait_for(lambda: leader.leading)
            ready = client.get("/readyz")
            assert ready.status_code == 200, ready.text
            assert ready.json() == {
                "status": "ready",
                "checks": {"database": "ok", "migrations": "ok", "job_leader": "ok"},
            }
        finally:
            leader.shutdown()
            other.dispose()
        assert client.get("/readyz").status_code == 503


def test_readyz_names_migrations_behind_and_a_database_that_does_not_answer(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = create_database_engine(url)
    script = ScriptDirectory.from_config(alembic_config(engine))
    head = script.get_revision(script.get_current_head())
    upgrade_database(engine, str(head.down_revision))
    platform = Platform(engine=engine, settings=Settings(database_url=url), clock=FixedClock(NOW))
    leader = JobLeader(engine, [Recorder()], retry_s=0.05)
    platform.jobs = [leader]
    try:
        with TestClient(create_app(platform)) as client:
            wait_for(lambda: leader.leading)
            problem = client.get("/readyz").json()
            assert [error["field"] for error in problem["errors"]] == ["migrations"]
            assert "smartbrum db upgrade" in problem["detail"]
    finally:
        engine.dispose()
    gone = create_database_engine("postgresql+psycopg://postgres@127.0.0.1:1/test?connect_timeout=2")
    with app_client(gone, "postgresql+psycopg://postgres@127.0.0.1:1/test", FixedClock(NOW)) as client:
        response = client.get("/readyz")
        assert client.get("/healthz").status_code == 200
    assert response.status_code == 503
    assert [error["field"] for error in response.json()["errors"]] == ["database"]
    gone.dispose()


def test_health_routes_are_documented_with_their_answers(engine, database_url):
    with app_client(engine, database_url, FixedClock(NOW)) as client:
        paths = client.get("/openapi.json").json()["paths"]
    assert set(paths["/readyz"]["get"]["responses"]) >= {"200", "503"}
    assert "application/problem+json" in paths["/readyz"]["get"]["responses"]["503"]["content"]
    assert "200" in paths["/healthz"]["get"]["responses"]
    assert set(paths["/metrics"]["get"]["responses"]) >= {"200", "401", "403"}


# --- metrics ----------------------------------------------------------------------------------


def test_metrics_count_requests_by_route_template_and_need_the_operator(engine, database_url):
    with transaction(engine) as session:
        seed_market(session, now=NOW)
        tokens = {who: issue_token(session, participant_id=who, now=NOW).secret for who in ("OPS", "H1")}
    operator = {"Authorization": f"Bearer {tokens['OPS']}"}
    with app_client(engine, database_url, FixedClock(NOW)) as client:
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers={"Authorization": f"Bearer {tokens['H1']}"}).status_code == 403
        before = metrics(client, operator)
        key = (
            "smartbrum_http_requests_total",
            (("method", "GET"), ("route", "/v1/orders/{order_id}"), ("status", "404")),
        )
        for order_id in ("a", "b", "c"):
            client.get(f"/v1/orders/{order_id}", headers={"Authorization": f"Bearer {tokens['H1']}"})
        client.get("/no/such/path")
        after = metrics(client, operator)
    assert after[key] - before.get(key, 0) == 3  # one series for every order id
    unmatched = (
        "smartbrum_http_requests_total",
        (("method", "GET"), ("route", "unmatched"), ("status", "404")),
    )
    assert after[unmatched] - before.get(unmatched, 0) == 1
    assert not any("/v1/orders/a" in str(labels) for _, labels in after)
    latency = (
        "smartbrum_http_request_duration_seconds_count",
        (("method", "GET"), ("route", "/v1/orders/{order_id}")),
    )
    assert after[latency] - before.get(latency, 0) == 3
    with app_client(engine, database_url, FixedClock(NOW), metrics_public=True) as client:
        assert client.get("/metrics").status_code == 200


# --- a real service ---------------------------------------------------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_two_workers_log_json_on_stderr_and_share_their_metrics(database_url, tmp_path):
    """`smartbrum serve --workers 2 --log-format json`: every stderr line is a JSON event and
    stdout is empty; one worker at a time leads and says so; /readyz is ready from either worker; the
    requests both workers answered add up in /metrics; the metrics folder goes when it stops."""
    env = {
        **os.environ,
        "SMARTBRUM_DATABASE_URL": database_url,
        "SMARTBRUM_METRICS_PUBLIC": "true",
        "TMPDIR": str(tmp_path),
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    port = free_port()
    command = Path(sys.executable).with_name("smartbrum")
    stderr = tmp_path / "stderr.log"
    with stderr.open("w") as err:
        server = subprocess.Popen(
            [str(command), "serve", "--port", str(port), "--workers", "2", "--log-format", "json"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=err,
        )
    try:
        with httpx2.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:

            def up() -> bool:
                try:
                    return client.get("/readyz").status_code == 200
                except httpx2.TransportError:
                    return False

            wait_for(up, seconds=60)
            (shared,) = tmp_path.glob("smartbrum-metrics-*")
        requests = 20
        for _ in range(requests):  # a new connection each: the kernel spreads them over the workers
            assert httpx2.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
        for _ in range(4):
            assert httpx2.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200
        text = httpx2.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        # A worker killed outright (not the leader, so the jobs stay put) is marked dead by the
        # supervisor that replaces it: its live gauges go, its counters stay (the requests it
        # answered still count).
        workers = Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()
        leading = {
            event["pid"]
            for event in map(json.loads, stderr.read_text().splitlines())
            if event["event"] == "job_leader"
        }
        victim = next(
            int(pid)
            for pid in workers
            if (shared / f"gauge_livesum_{pid}.db").exists() and int(pid) not in leading
        )
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: not (shared / f"gauge_livesum_{victim}.db").exists(), seconds=60)
        assert (shared / f"counter_{victim}.db").exists()
        wait_for(lambda: len(list(shared.glob("gauge_livesum_*.db"))) == 2, seconds=60)  # its replacement
    finally:
        server.send_signal(signal.SIGTERM)
        stdout, _ = server.communicate(timeout=60)
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    healthz = ("smartbrum_http_requests_total", (("method", "GET"), ("route", "/healthz"), ("status", "200")))
    assert samples[healthz] == requests
    assert stdout == b""
    lines = stderr.read_text().splitlines()
    logged = [json.loads(line) for line in lines]  # every line is one JSON event
    # Never two leaders at once: each process that comes to lead does so after the one before it
    # said it stopped. (At shutdown the lead may pass once more, to a worker still starting up
    # when the leader let go; that is a hand-over, not a second leader.)
    changes = [event for event in logged if event["event"] == "job_leader"]
    leading_now: set[int] = set()
    for event in changes:
        if event["role"] == "leader":
            assert not leading_now, f"{event['pid']} leads while {leading_now} still does"
            leading_now.add(event["pid"])
        elif event["role"] in ("stopped", "lost"):
            leading_now.discard(event["pid"])
    assert any(event["role"] == "leader" for event in changes)
    assert {event["event"] for event in logged} >= {"serve_started", "catch_up", "poll_cycle", "http_request"}
    assert (
        sum(1 for event in logged if event["event"] == "http_request" and event["path"] == "/healthz")
        == requests
    )
    assert not list(tmp_path.glob("smartbrum-metrics-*"))


def test_the_served_pages_static_files_are_one_series(engine, database_url):
    """The service `serve` runs (the API and the web pages): a static file is counted under its
    mount, not as an unknown path and not one series a file."""
    from web.app import add_pages

    platform = Platform(
        engine=engine,
        settings=Settings(database_url=database_url, metrics_public=True),
        clock=FixedClock(NOW),
    )
    with TestClient(add_pages(create_app(platform))) as client:
        before = metrics(client)
        assert client.get("/static/site.css").status_code == 200
        assert client.get("/static/no-such.css").status_code == 404
        after = metrics(client)
    for status in ("200", "404"):
        key = (
            "smartbrum_http_requests_total",
            (("method", "GET"), ("route", "/static/{path}"), ("status", status)),
        )
        assert after[key] - before.get(key, 0) == 1
