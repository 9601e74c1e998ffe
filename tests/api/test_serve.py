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
