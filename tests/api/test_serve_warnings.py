"""``smartbrum serve`` warns on stderr when it listens beyond this machine: TLS belongs in front."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

WARNING = "put a TLS-terminating proxy in front"
STARTED = "smartbrum API on http://"


def serve_stderr(host: str, database_url: str) -> str:
    """What ``smartbrum serve --host HOST`` writes to stderr up to uvicorn's start-up line; the
    server is then stopped."""
    command = Path(sys.executable).with_name("smartbrum")
    env = {**os.environ, "SMARTBRUM_DATABASE_URL": database_url}
    lines = []
    deadline = time.monotonic() + 60
    with subprocess.Popen(
        [str(command), "serve", "--host", host, "--port", "0"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    ) as server:
        try:
            assert server.stderr is not None
            for line in server.stderr:  # until uvicorn says it listens (or the command ends)
                lines.append(line)
                if "Uvicorn running" in line:
                    break
                assert time.monotonic() < deadline, "".join(lines)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)
    return "".join(lines)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(("host", "warned"), [("0.0.0.0", True), ("127.0.0.1", False)])
def test_serving_beyond_loopback_warns_that_tls_belongs_in_front(database_url, host, warned):
    stderr = serve_stderr(host, database_url)
    assert STARTED in stderr, stderr
    assert (WARNING in stderr) == warned, stderr
