"""`smartbrum serve` as a real process, and the job lock that lets one worker run the jobs."""

from __future__ import annotations

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


def _nodelay_of_accepted_connection(sock: socket.socket) -> int:
    """Serve ``sock`` with asyncio, as a uvicorn worker does, and read TCP_NODELAY on the
    connection it accepts."""
    import asyncio

    async def accept_one() -> int:
        accepted: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        class Probe(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                raw = transport.get_extra_info("socket")
                accepted.set_result(raw.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
                transport.close()

        server = await asyncio.get_running_loop().create_server(Probe, sock=sock)
        async with server:
            _, writer = await asyncio.open_connection(*sock.getsockname()[:2])
            value = await asyncio.wait_for(accepted, timeout=10)
            writer.close()
            return value

    return asyncio.run(accept_one())


def test_the_socket_shared_by_workers_gives_connections_tcp_nodelay():
    # uvicorn's own shared socket says protocol 0, so asyncio leaves Nagle on and each response's
    # body waits for the client's delayed ACK (about 40 ms a request); ours says TCP.
    import uvicorn

    from api.serving import SharedSocketConfig

    plain = uvicorn.Config("api.app:app_from_settings", host="127.0.0.1", port=0, workers=2)
    assert _nodelay_of_accepted_connection(plain.bind_socket()) == 0
    ours = SharedSocketConfig("api.app:app_from_settings", host="127.0.0.1", port=0, workers=2)
    sock = ours.bind_socket()
    assert sock.proto == socket.IPPROTO_TCP
    assert sock.get_inheritable()
    assert _nodelay_of_accepted_connection(sock) != 0
