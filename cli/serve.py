"""``smartbrum serve``: the HTTP API and the market's jobs."""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import logging.config
import os
import shutil
import tempfile
from collections.abc import Iterator
from enum import StrEnum
from typing import Annotated

import typer

from cli.options import fail, market_engine, settings_or_fail

log = logging.getLogger("smartbrum.serve")


class LogFormatChoice(StrEnum):
    text = "text"
    json = "json"


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes (PostgreSQL for more than one).")] = 1,
    log_format: Annotated[
        LogFormatChoice | None,
        typer.Option(
            help="The log on stderr: one event a line as text, or as a JSON object. "
            "[default: SMARTBRUM_LOG_FORMAT, else text]",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Serve the HTTP API; the market's jobs run in whichever worker holds the job lock.

    The log (the jobs' events and every request) goes to stderr; GET /healthz, /readyz and
    /metrics show the running service.
    """
    from api.logs import log_event, logging_config

    settings = settings_or_fail()
    chosen = log_format.value if log_format is not None else settings.log_format
    config = logging_config(chosen)
    logging.config.dictConfig(config)
    with market_engine(settings) as engine:
        backend = engine.dialect.name
    if workers < 1:
        raise typer.BadParameter("must be at least 1", param_hint="--workers")
    if workers > 1 and backend != "postgresql":
        raise fail("--workers above 1 needs PostgreSQL (SQLite serialises every write)")
    # The workers (separate processes) read the same choice from the environment.
    os.environ["SMARTBRUM_LOG_FORMAT"] = chosen
    log_event(
        log,
        "serve_started",
        f"smartbrum API on http://{host}:{port} ({backend}, {workers} worker(s))",
        host=host,
        port=port,
        backend=backend,
        workers=workers,
    )
    if not _is_loopback(host):
        log_event(
            log,
            "serve_warning",
            f"warning: serving plain HTTP on {host}, beyond this machine; put a TLS-terminating "
            "proxy in front (tokens and sessions must not cross a network in clear text)",
            level=logging.WARNING,
            host=host,
        )
    with metrics_directory():
        from api.serving import run_workers

        run_workers("api.app:app_from_settings", host=host, port=port, workers=workers, log_config=config)


@contextlib.contextmanager
def metrics_directory() -> Iterator[str]:
    """A fresh ``PROMETHEUS_MULTIPROC_DIR`` for the workers' shared metrics, removed afterwards.

    Set before anything imports prometheus-client (it decides where values live at import).
    """
    path = tempfile.mkdtemp(prefix="smartbrum-metrics-")
    previous = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    try:
        yield path
    finally:
        if previous is None:
            os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        else:
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = previous
        shutil.rmtree(path, ignore_errors=True)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
