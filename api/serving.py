"""Running the app in several uvicorn worker processes that share one listening socket.

May import uvicorn and the standard library.
"""

from __future__ import annotations

import contextlib
import socket

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


def run_workers(app: str, *, host: str, port: int, workers: int) -> None:
    """Serve the app factory ``app`` (an import string) from ``workers`` processes until stopped."""
    config = SharedSocketConfig(app, factory=True, host=host, port=port, workers=workers, log_level="info")
    with contextlib.suppress(KeyboardInterrupt):
        Multiprocess(config, sockets=[config.bind_socket()]).run()
