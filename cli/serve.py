"""``smartbrum serve``: the HTTP API and the market's jobs."""

from __future__ import annotations

import ipaddress
import sys
from typing import Annotated

import typer

from cli.options import fail, market_engine, settings_or_fail


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes (PostgreSQL for more than one).")] = 1,
) -> None:
    """Serve the HTTP API; the market's jobs run in whichever worker holds the job lock."""
    import uvicorn

    settings = settings_or_fail()
    with market_engine(settings) as engine:
        backend = engine.dialect.name
    if workers < 1:
        raise typer.BadParameter("must be at least 1", param_hint="--workers")
    if workers > 1 and backend != "postgresql":
        raise fail("--workers above 1 needs PostgreSQL (SQLite serialises every write)")
    print(f"smartbrum API on http://{host}:{port} ({backend}, {workers} worker(s))", file=sys.stderr)
    if not _is_loopback(host):
        print(
            f"smartbrum: warning: serving plain HTTP on {host}, beyond this machine; put a TLS-terminating "
            "proxy in front (tokens and sessions must not cross a network in clear text)",
            file=sys.stderr,
        )
    if workers == 1:
        uvicorn.run("web.app:service_from_settings", factory=True, host=host, port=port, log_level="info")
    else:
        from api.serving import run_workers

        run_workers("web.app:service_from_settings", host=host, port=port, workers=workers)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
