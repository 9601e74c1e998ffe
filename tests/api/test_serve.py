"""`smartbrum serve` as a real process, and the job lock that lets one worker run the jobs."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx2
import pytest

from api.leader import JobLeader
from market.database import create_database_engine


class Recorder:
    def __init__(self) -> None:
        self.started = self.stopped = 0

    def start(self) -> None:
        self.started += 1

    def shutdown(self) -> None:
        self.stopped += 1


def wait_for(condition, *, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_one_leader_runs_the_jobs_and_another_takes_over(database_url):
    engines = [create_database_engine(database_url) for _ in range(2)]
    jobs = [Recorder(), Recorder()]
    first = JobLeader(engines[0], [jobs[0]], retry_s=0.05)
    second = JobLeader(engines[1], [jobs[1]], retry_s=0.05)
    first.start()
    wait_for(lambda: first.leading)
    second.start()
    time.sleep(0.3)  # the second keeps trying for a while and must not lead: a negative check
    assert (second.leading, jobs[1].started) == (False, 0)
    first.shutdown()
    assert jobs[0].stopped == 1
    wait_for(lambda: second.leading)
    assert jobs[1].started == 1
    second.shutdown()
    for engine in engines:
        engine.dispose()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def smartbrum(*args: str, env: dict[str, str]) -> str:
    command = Path(sys.executable).with_name("smartbrum")
    done = subprocess.run(
        [str(command), *args], capture_output=True, text=True, env=env, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_serve_answers_over_real_http(database_url):
    env = {**os.environ, "SMARTBRUM_DATABASE_URL": database_url}
    smartbrum("participant", "add", "OPS", "--name", "Brum Energy", "--operator", env=env)
    token = smartbrum("token", "issue", "OPS", "--label", "test", env=env).strip()
    port = free_port()
    command = Path(sys.executable).with_name("smartbrum")
    server = subprocess.Popen(
        [str(command), "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"

        def up() -> bool:
            try:
                return httpx2.get(f"{base}/openapi.json", timeout=1).status_code == 200
            except httpx2.TransportError:
                return False

        wait_for(up, seconds=60)
        headers = {"Authorization": f"Bearer {token}"}
        assert httpx2.get(f"{base}/v1/participants", headers=headers).json()["items"][0]["id"] == "OPS"
        assert httpx2.get(f"{base}/v1/participants").status_code == 401
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)


PIDFD_GETFD = 438  # the same number on every Linux architecture (the unified syscall table)


def _server_side_nodelay(server_pids: list[int], server_port: int, client_port: int) -> int:
    """TCP_NODELAY on the server's end of the connection from ``client_port``, read from the
    serving process that holds it (a copy of its descriptor through ``pidfd_getfd``)."""
    libc = ctypes.CDLL(None, use_errno=True)
    wanted = (f"{server_port:04X}", f"{client_port:04X}")
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local_port, remote_port = fields[1].rsplit(":", 1)[1], fields[2].rsplit(":", 1)[1]
            if (local_port, remote_port) == wanted:
                inodes.add(fields[9])
    assert inodes, "the server holds no connection from the client"
    for pid in server_pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                if os.readlink(fd).removeprefix("socket:[").rstrip("]") in inodes:
                    pidfd = os.pidfd_open(pid)
                    try:
                        copy = libc.syscall(PIDFD_GETFD, pidfd, int(fd.name), 0)
                        assert copy >= 0, os.strerror(ctypes.get_errno())
                    finally:
                        os.close(pidfd)
                    with socket.socket(fileno=copy) as held:
                        return held.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    raise AssertionError("no serving process holds the connection")


def _descendants(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [pid, *(d for child in children for d in _descendants(int(child)))]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the server's socket through /proc")
@pytest.mark.parametrize(
    ("database_url", "workers"), [("sqlite", 1), ("postgresql", 2)], indirect=["database_url"]
)
def test_served_connections_have_tcp_nodelay(database_url, workers):
    """Every connection `smartbrum serve` accepts sends without waiting (Nagle off), with one
    worker or several (several need PostgreSQL): with Nagle on, each response's body waited for
    the client's delayed ACK, about 40 ms a request. Checked on the server's own end of a live
    connection, whatever the server library does by itself."""
    env = {**os.environ, "SMARTBRUM_DATABASE_URL": database_url}
    smartbrum("db", "upgrade", env=env)
    port = free_port()
    command = Path(sys.executable).with_name("smartbrum")
    server = subprocess.Popen(
        [str(command), "serve", "--port", str(port), "--workers", str(workers)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with httpx2.Client(base_url=f"http://127.0.0.1:{port}", timeout=2) as client:

            def up() -> bool:
                try:
                    return client.get("/openapi.json").status_code == 200
                except httpx2.TransportError:
                    return False

            wait_for(up, seconds=60)
            with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
                connection.sendall(b"GET /openapi.json HTTP/1.1\r\nHost: test\r\n\r\n")
                assert connection.recv(12).startswith(b"HTTP/1.1 200")
                client_port = connection.getsockname()[1]
                nodelay = _server_side_nodelay(_descendants(server.pid), port, client_port)
        assert nodelay != 0
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)


# --- the job lock: keyed by the database, re-competed when lost --------------------------------


def other_spelling(url: str) -> str:
    """The same database and schema by another URL (the host's name for its address)."""
    assert "127.0.0.1" in url
    return url.replace("127.0.0.1", "localhost")


def another_schema(url: str, tmp_schemas: list[str]) -> str:
    """A migrated schema of its own on the same server (dropped by the caller's cleanup)."""
    import uuid

    import sqlalchemy as sa

    from market.database import upgrade_database
    from tests.conftest import POSTGRES_URL

    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    admin.dispose()
    tmp_schemas.append(schema)
    url = f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    engine = create_database_engine(url)
    upgrade_database(engine)
    engine.dispose()
    return url


@pytest.fixture
def tmp_schemas():
    import sqlalchemy as sa

    from tests.conftest import POSTGRES_URL

    made: list[str] = []
    yield made
    admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        for schema in made:
            connection.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
    admin.dispose()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_the_job_lock_is_the_databases_not_the_urls(database_url, tmp_schemas):
    """Two URLs for one database and schema compete for one lock; a market in another schema on
    the same server has a lock of its own and leads at the same time."""
    engines = [
        create_database_engine(url)
        for url in (database_url, other_spelling(database_url), another_schema(database_url, tmp_schemas))
    ]
    jobs = [Recorder() for _ in engines]
    leaders = [JobLeader(engine, [job], retry_s=0.05) for engine, job in zip(engines, jobs, strict=True)]
    try:
        leaders[0].start()
        wait_for(lambda: leaders[0].leading)
        leaders[1].start()
        leaders[2].start()
        wait_for(lambda: leaders[2].leading)  # another market: its own lock
        time.sleep(0.3)  # the same market by another URL keeps trying and must not lead: a negative check
        assert (leaders[1].leading, jobs[1].started) == (False, 0)
    finally:
        for leader in leaders:
            leader.shutdown()
        for engine in engines:
            engine.dispose()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_leader_whose_connection_is_lost_stops_its_jobs_and_competes_again(database_url):
    import json
    import logging

    import sqlalchemy as sa

    from api.logs import JsonFormatter

    engine = create_database_engine(database_url)
    admin = create_database_engine(database_url)
    job = Recorder()
    leader = JobLeader(engine, [job], retry_s=0.05)
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("smartbrum.leader")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        leader.start()
        wait_for(lambda: leader.leading)
        assert leader._connection is not None
        backend = leader._connection.connection.driver_connection.info.backend_pid
        with admin.connect() as connection:  # the server ends the leader's session, lock and all
            assert connection.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": backend}).scalar()
        wait_for(lambda: job.started == 2)
        assert job.stopped == 1
        assert leader.leading
    finally:
        leader.shutdown()
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)
        engine.dispose()
        admin.dispose()
    roles = [json.loads(JsonFormatter().format(record))["role"] for record in records]
    assert roles == ["leader", "lost", "leader", "stopped"]


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_transaction_locks_are_the_databases_not_the_urls(database_url, tmp_schemas):
    """lock_for_transaction on one name: another URL for the same market waits for the holder;
    another market on the same server does not."""
    import sqlalchemy as sa
    from sqlalchemy.exc import OperationalError

    from market.database import lock_for_transaction, transaction

    def lock_within(engine, timeout: str) -> None:
        with transaction(engine) as session:
            session.execute(sa.text(f"SET LOCAL lock_timeout = '{timeout}'"))
            lock_for_transaction(session, "participant", "H1")

    holder, same, other = (
        create_database_engine(url)
        for url in (database_url, other_spelling(database_url), another_schema(database_url, tmp_schemas))
    )
    try:
        with transaction(holder) as held:
            lock_for_transaction(held, "participant", "H1")
            lock_within(other, "5s")  # at once: another market
            with pytest.raises(OperationalError, match="lock timeout"):
                lock_within(same, "200ms")
    finally:
        for engine in (holder, same, other):
            engine.dispose()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_serve_logs_json_when_the_environment_says_so_and_refuses_an_unknown_format(database_url):
    """SMARTBRUM_LOG_FORMAT=json: every stderr line up to uvicorn's start-up is one JSON event,
    its own and uvicorn's; an unknown --log-format is refused in one line, naming the option."""
    import json

    env = {**os.environ, "SMARTBRUM_DATABASE_URL": database_url, "SMARTBRUM_LOG_FORMAT": "json"}
    command = Path(sys.executable).with_name("smartbrum")
    lines: list[str] = []
    with subprocess.Popen(
        [str(command), "serve", "--port", str(free_port())],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as server:
        try:
            assert server.stderr is not None
            deadline = time.monotonic() + 60
            for line in server.stderr:
                lines.append(line)
                if "Uvicorn running" in line:
                    break
                assert time.monotonic() < deadline, "".join(lines)
        finally:
            server.send_signal(signal.SIGTERM)
            stdout, _ = server.communicate(timeout=30)
    logged = [json.loads(line) for line in lines]
    assert logged[0]["event"] == "serve_started"
    assert {event["logger"] for event in logged} >= {"smartbrum.serve", "uvicorn.error"}
    assert stdout == ""
    refused = subprocess.run(
        [str(command), "serve", "--log-format", "xml"], env=env, capture_output=True, text=True, check=False
    )
    assert refused.returncode == 2
    assert "--log-format" in refused.stderr
    assert refused.stdout == ""


def test_a_job_that_cannot_start_makes_the_leader_stop_them_all_and_try_again(database_url):
    """Half the jobs running is worse than none: when one fails to start (its catch-up met a
    database error, say), those started are stopped, the lock is let go, and the next attempt
    builds and starts them all afresh."""
    attempts: list[list[Recorder]] = []

    class FailsFirstTime(Recorder):
        def start(self) -> None:
            if len(attempts) == 1:
                raise RuntimeError("the catch-up failed")
            super().start()

    def build() -> list:
        attempts.append([Recorder(), FailsFirstTime()])
        return attempts[-1]

    engine = create_database_engine(database_url)
    leader = JobLeader(engine, build, retry_s=0.05)
    leader.start()
    try:
        wait_for(lambda: len(attempts) == 2 and attempts[1][1].started == 1)
        first, second = attempts
        assert [(job.started, job.stopped) for job in first] == [(1, 1), (0, 0)]
        assert [job.started for job in second] == [1, 1]
    finally:
        leader.shutdown()
        engine.dispose()
