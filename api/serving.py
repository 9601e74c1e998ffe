"""Running the app under uvicorn: one worker in this process, or several processes that share
one listening socket, each logging as :func:`api.logs.logging_config` says.

May import uvicorn, :mod:`api.logs`, :mod:`api.metrics` (only once the metrics directory is set)
and the standard library.
"""

from __future__ import annotations

import contextlib
import socket
from typing import Any

import uvicorn
from uvicorn.supervisors import Multiprocess


class SharedSocketConfig(uvicorn.Config):
    """uvicorn's settings, with the socket the workers share declared as TCP.

    uvicorn before 0.55 binds that socket with protocol 0, and asyncio sets ``TCP_NODELAY`` only
    on connections whose socket says TCP. Without it each response's body, written after its
    headers, waited for the client's delayed ACK: about 40 ms on every request with ``--workers``
    above 1 (a single worker binds through asyncio and was not affected). Newer releases set it
    themselves; declaring the protocol costs nothing there and keeps every allowed release right
    (``tests/api/test_serve.py`` checks the connections the server accepts).
    """

    def bind_socket(self) -> socket.socket:
        sock = super().bind_socket()
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            return sock
        tcp = socket.socket(sock.family, sock.type, socket.IPPROTO_TCP, fileno=sock.detach())
        tcp.set_inheritable(True)
        return tcp


class WorkerSupervisor(Multiprocess):
    """uvicorn's supervisor, marking a worker dead in the shared metrics once it has gone (a
    worker that stops cleanly marks itself; one killed cannot)."""

    def keep_subprocess_alive(self) -> None:
        before = {process.pid for process in self.processes}
        super().keep_subprocess_alive()
        self._mark_gone(before)

    def restart_all(self) -> None:
        before = {process.pid for process in self.processes}
        super().restart_all()
        self._mark_gone(before)

    def _mark_gone(self, before: set[int | None]) -> None:
        from api.metrics import mark_worker_dead

        for pid in before - {process.pid for process in self.processes}:
            if pid is not None:
                mark_worker_dead(pid)


def run_workers(app: str, *, host: str, port: int, workers: int, log_config: dict[str, Any]) -> None:
    """Serve the app factory ``app`` (an import string) from ``workers`` processes until stopped."""
    if workers == 1:
        uvicorn.run(app, factory=True, host=host, port=port, log_config=log_config)
        return
    config = SharedSocketConfig(
        app, factory=True, host=host, port=port, workers=workers, log_config=log_config
    )
    with contextlib.suppress(KeyboardInterrupt):
        WorkerSupervisor(config, sockets=[config.bind_socket()]).run()
