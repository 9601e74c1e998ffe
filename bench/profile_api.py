"""Where a request's server CPU goes: the API under ``bench/api.py``'s load, profiled by area.

What it does
------------
Seeds a fresh database as ``bench/api.py`` does, then starts the service in a child process as
``smartbrum serve`` runs each worker (the web app around the API, the access log in text, the
metrics shared through a folder; one worker; uvicorn's ``--loop`` and ``--http`` choosable) with
cProfile measuring **thread CPU time** (``time.thread_time``) in the event loop's thread and in
every call the app hands to the threadpool (routes, sessions, the token lookup), each thread with
a profile of its own, merged at the end. The parent drives it with ``bench/api.py``'s households
(its raw client by default: one order per request, cancels, statements, reads), not timed and not
profiled during ``--warmup`` placements, then profiled for ``--seconds``.

The profile's self time is summed by **area** (the package a function belongs to:
FastAPI/Starlette, pydantic, SQLAlchemy ORM, SQLAlchemy core, psycopg, the project's own code,
uvicorn and its HTTP parser, the event loop, the threadpool, the metrics, the rest); a built-in
function's time (``len``, a C method) goes to the areas of its callers. Printed: the areas with
their CPU ms per request and share, then the functions with the most self time. Profiling slows
every call: the shares are what to compare, not the absolute figures (``bench/api.py`` measures
those from ``/proc`` without a profiler).

Usage
-----
::

    .venv/bin/python bench/profile_api.py                       # PostgreSQL, 20 clients, 15 s
    .venv/bin/python bench/profile_api.py --loop uvloop --http httptools
    .venv/bin/python bench/profile_api.py --save var/api.prof   # also keep the merged profile
"""

# ruff: noqa: E402 (the project's imports must come after the sys.path fix below)

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2
from rich.table import Table

_BENCH = Path(__file__).resolve().parent  # run by path, bench/ heads sys.path: see bench/harness.py
sys.path[:] = [str(_BENCH.parent), *(entry for entry in sys.path if Path(entry or ".").resolve() != _BENCH)]

from bench import api as api_bench
from bench import harness

ROOT = _BENCH.parent
#: (a fragment of a function's file name, its area), the first that matches.
AREAS: tuple[tuple[str, str], ...] = (
    ("/sqlalchemy/orm/", "SQLAlchemy ORM"),
    ("/sqlmodel/", "SQLAlchemy ORM"),
    ("/sqlalchemy/", "SQLAlchemy core"),
    ("/psycopg", "psycopg"),
    ("/pydantic", "pydantic"),
    ("/fastapi/", "FastAPI / Starlette"),
    ("/starlette/", "FastAPI / Starlette"),
    ("/uvicorn/", "uvicorn + HTTP parser"),
    ("/h11/", "uvicorn + HTTP parser"),
    ("/httptools/", "uvicorn + HTTP parser"),
    ("/asyncio/", "event loop"),
    ("/uvloop/", "event loop"),
    ("selectors.py", "event loop"),
    ("/anyio/", "threadpool (anyio)"),
    ("threading.py", "threadpool (anyio)"),
    ("/concurrent/", "threadpool (anyio)"),
    ("queue.py", "threadpool (anyio)"),
    ("/prometheus_client/", "metrics (prometheus)"),
    (f"{ROOT}/api/", "smartbrum api/"),
    (f"{ROOT}/market/", "smartbrum market/"),
    (f"{ROOT}/", "smartbrum (other)"),
    ("cProfile", "profiler"),
)
OTHER = "other (stdlib, libraries)"
log = harness.progress_logger()


# --- the profiled server (child process) ---------------------------------------------------------


class ThreadProfiles:
    """A cProfile per thread, on thread CPU time, switched on and off for the whole process."""

    def __init__(self) -> None:
        self.active = False
        self.main = cProfile.Profile(time.thread_time)
        self.local = threading.local()
        self.profiles: list[cProfile.Profile] = []
        self.lock = threading.Lock()

    def start(self) -> None:
        self.active = True
        self.main.enable()

    def stop(self) -> None:
        self.active = False
        self.main.disable()

    def wrap(self, func: Callable[..., Any]) -> Callable[..., Any]:
        """``func``, profiled in the thread that runs it while profiling is on."""

        def profiled(*args: Any, **kwargs: Any) -> Any:
            if not self.active:
                return func(*args, **kwargs)
            profile = getattr(self.local, "profile", None)
            if profile is None:
                profile = self.local.profile = cProfile.Profile(time.thread_time)
                with self.lock:
                    self.profiles.append(profile)
            return profile.runcall(func, *args, **kwargs)

        return profiled

    def merged(self) -> pstats.Stats:
        stats = pstats.Stats(self.main)
        for profile in self.profiles:
            stats.add(profile)
        return stats


def serve_profiled(port: int, out: Path, loop: str, http: str) -> None:
    """Run the app (``SMARTBRUM_DATABASE_URL`` from the environment) on ``port`` until SIGTERM;
    profile from SIGUSR1 to SIGUSR2, then write the merged profile to ``out``."""
    import anyio.to_thread
    import uvicorn

    from api.logs import logging_config

    profiles = ThreadProfiles()
    original = anyio.to_thread.run_sync

    async def run_sync(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await original(profiles.wrap(func), *args, **kwargs)

    anyio.to_thread.run_sync = run_sync  # starlette's run_in_threadpool looks it up at each call
    signal.signal(signal.SIGUSR1, lambda *_: profiles.start())

    def stop_and_write(*_: object) -> None:
        profiles.stop()
        profiles.merged().dump_stats(str(out.with_suffix(".part")))
        out.with_suffix(".part").rename(out)  # whole, or not there

    # Written at SIGUSR2: uvicorn re-raises the SIGTERM that stops it, so nothing runs after it.
    signal.signal(signal.SIGUSR2, stop_and_write)
    # As smartbrum serve runs it: the web app around the API, the access log (to the log file),
    # the metrics shared through a folder (the parent sets PROMETHEUS_MULTIPROC_DIR).
    config = uvicorn.Config(
        "web.app:service_from_settings",
        factory=True,
        host="127.0.0.1",
        port=port,
        log_config=logging_config("text"),
        loop=loop,
        http=http,
    )
    uvicorn.Server(config).run()


# --- the breakdown -------------------------------------------------------------------------------


def area_of(filename: str) -> str:
    """The area a function's file belongs to."""
    return next((area for fragment, area in AREAS if fragment in filename), OTHER)


def breakdown(stats: pstats.Stats) -> dict[str, float]:
    """Self CPU seconds by area; a built-in's (file ``~``) goes to its callers' areas."""
    seconds: dict[str, float] = defaultdict(float)
    for (filename, _, _), (_, _, self_s, _, callers) in stats.stats.items():  # type: ignore[attr-defined]
        if filename != "~":
            seconds[area_of(filename)] += self_s
            continue
        edges = {caller: edge[2] for caller, edge in callers.items()}
        attributed = sum(edges.values())
        for caller, edge_s in edges.items():
            seconds[area_of(caller[0]) if caller[0] != "~" else OTHER] += edge_s
        seconds[OTHER] += max(0.0, self_s - attributed)
    return dict(seconds)


def print_report(stats: pstats.Stats, requests: int, args: argparse.Namespace, placements: int) -> None:
    """The areas table and the top functions, on stdout."""
    console = harness.figures_console()
    areas = breakdown(stats)
    total = sum(areas.values())
    table = Table(
        title=f"Server CPU by area: {requests:,} requests ({placements:,} placements), one worker, "
        f"--loop {args.loop} --http {args.http}, profiled (thread CPU time)"
    )
    for column in ("area", "ms / request", "share"):
        table.add_column(column, justify="left" if column == "area" else "right")
    for area, spent in sorted(areas.items(), key=lambda item: -item[1]):
        table.add_row(area, f"{1e3 * spent / requests:.3f}", f"{100 * spent / total:.1f}%")
    table.add_row("[bold]total[/bold]", f"[bold]{1e3 * total / requests:.3f}[/bold]", "100%")
    console.print(table)
    # Python function calls do not depend on what else the machine runs: the steadier figure on a
    # shared machine (a coroutine's resumption counts as a call, as cProfile counts it).
    calls = stats.total_calls  # type: ignore[attr-defined]
    console.print(f"Python function calls per request: {calls / requests:,.0f}")
    top = Table(title=f"The {args.top} functions with the most self time")
    for column in ("function", "area", "calls / request", "self ms / request"):
        top.add_column(column, justify="left" if column in ("function", "area") else "right")
    rows = sorted(stats.stats.items(), key=lambda item: -item[1][2])[: args.top]  # type: ignore[attr-defined]
    for (filename, line, name), (_, calls, self_s, _, _) in rows:
        where = filename.replace(str(ROOT) + "/", "").split("site-packages/")[-1]
        top.add_row(
            f"{where}:{line}({name})",
            area_of(filename),
            f"{calls / requests:.1f}",
            f"{1e3 * self_s / requests:.3f}",
        )
    console.print(top)


# --- the run -------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    """Seed, serve under the profiler, drive, report."""
    with (
        tempfile.TemporaryDirectory(prefix="smartbrum-profile-api-") as folder,
        harness.fresh_database(args.backend, args.postgres_url) as database,
    ):
        homes = [
            api_bench.Household(home, token) for home, token in api_bench.seed(database, args.households)
        ]
        port = api_bench.free_port()
        out = Path(folder) / "api.prof"
        server_log = Path(folder) / "serve.log"
        metrics = Path(folder) / "metrics"
        metrics.mkdir()
        env = {**os.environ, "SMARTBRUM_DATABASE_URL": database.url, "PROMETHEUS_MULTIPROC_DIR": str(metrics)}
        env.pop("SMARTBRUM_CONFIG", None)
        command = [sys.executable, __file__, "--child", str(port), str(out), "--loop", args.loop]
        command += ["--http", args.http]
        with server_log.open("wb") as output:
            process = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)
        try:
            server = api_bench.Server(process, f"http://127.0.0.1:{port}", server_log, workers=0)
            _wait_until_ready(server)
            plan = api_bench.Plan(
                intervals=api_bench.future_intervals(datetime.now(UTC), args.intervals),
                cancel_share=args.cancel_share,
                statement_share=args.statement_share,
                replay_share=args.replay_share,
                read_share=args.read_share,
                batch=1,
            )
            load = api_bench.Load()
            options: dict[str, Any] = {"concurrency": args.concurrency, "client_kind": args.client}
            asyncio.run(
                api_bench.drive(
                    server,
                    homes,
                    plan,
                    load,
                    placements=args.warmup,
                    seconds=60,
                    timing=False,
                    seed=1,
                    **options,
                )
            )
            process.send_signal(signal.SIGUSR1)
            asyncio.run(
                api_bench.drive(
                    server,
                    homes,
                    plan,
                    load,
                    placements=10**9,
                    seconds=args.seconds,
                    timing=True,
                    seed=2,
                    **options,
                )
            )
            process.send_signal(signal.SIGUSR2)
            deadline = time.monotonic() + 60
            while not out.exists() and process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)  # polled with a deadline: the profile is written by the server
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=api_bench.STOP_SECONDS)
        if not out.exists():
            raise RuntimeError(
                f"the server wrote no profile:\n{server_log.read_text(errors='replace')[-3000:]}"
            )
        stats = pstats.Stats(str(out))
        if args.save is not None:
            args.save.parent.mkdir(parents=True, exist_ok=True)
            stats.dump_stats(str(args.save))
        log.info(
            f"{load.requests():,} requests in {load.seconds:.1f} s; {load.transport_errors} transport errors"
        )
        print_report(stats, load.requests(), args, load.placed())
        return 0 if load.transport_errors == 0 else 1


def _wait_until_ready(server: api_bench.Server) -> None:
    deadline = time.monotonic() + api_bench.READY_SECONDS
    with httpx2.Client(base_url=server.base_url, timeout=2.0) as client:
        while True:
            if server.process.poll() is not None:
                raise RuntimeError(f"the server exited:\n{server.log_tail()}")
            try:
                if client.get("/openapi.json").status_code == 200:
                    return
            except httpx2.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server is not ready:\n{server.log_tail()}")
            time.sleep(0.05)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    harness.add_database_arguments(parser)
    parser.set_defaults(backend="postgresql")
    parser.add_argument("--households", type=int, default=1_000)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=15.0, help="profiled run (15 s)")
    parser.add_argument("--warmup", type=int, default=300, help="placements before profiling")
    parser.add_argument("--intervals", type=int, default=6)
    parser.add_argument("--cancel-share", type=float, default=0.25)
    parser.add_argument("--statement-share", type=float, default=0.05)
    parser.add_argument("--replay-share", type=float, default=0.02)
    parser.add_argument("--read-share", type=float, default=0.1)
    parser.add_argument("--client", choices=api_bench.CLIENTS, default="raw")
    parser.add_argument("--loop", default="auto", help="uvicorn's --loop (auto, asyncio, uvloop)")
    parser.add_argument("--http", default="auto", help="uvicorn's --http (auto, h11, httptools)")
    parser.add_argument("--top", type=int, default=25, help="functions listed")
    parser.add_argument("--save", type=Path, help="keep the merged profile (pstats) here")
    parser.add_argument("--child", nargs=2, metavar=("PORT", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.backend == "both":
        parser.error("--backend: one of sqlite or postgresql")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        serve_profiled(int(args.child[0]), Path(args.child[1]), args.loop, args.http)
        return 0
    harness.figures_console().print(
        harness.machine_notes(
            packages=("FastAPI", "uvicorn", "SQLAlchemy"),
            backends=[args.backend],
            postgres_url=args.postgres_url,
        ),
        soft_wrap=True,
    )
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
