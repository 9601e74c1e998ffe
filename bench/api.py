"""Benchmark of the HTTP API under load: households placing and cancelling orders over loopback.

What it measures
----------------
On each backend, the real service: ``smartbrum serve`` started as a subprocess on a free
loopback port (PostgreSQL with ``--pg-workers`` worker processes, 2 by default; SQLite with one,
as the command requires), against a fresh database (a new schema in the local PostgreSQL
database, dropped afterwards; a SQLite file in a temporary directory), built by the Alembic
migrations. Readiness is polled (``GET /openapi.json`` answering 200 and every worker's
"Application startup complete" in the server's log) with a deadline, never a fixed sleep.

1. Setup, not timed, through the market's bulk registration (:func:`bench.harness.seed_market`)
   on the server's database: the operator, a network (``GSP``, a primary ``P1`` and ten
   feeders), the tariff, and ``--households`` households round-robin over the feeders, each
   with an API token.
2. Load: an asyncio client (``--client raw``, the default: :class:`RawClient`, a minimal
   keep-alive HTTP/1.1 client on asyncio streams, one connection per task; ``--client httpx2``:
   one ``httpx2.AsyncClient`` with a keep-alive connection per task) runs ``--concurrency``
   tasks in a closed loop; each task owns its share of the
   households (a household is only ever driven by one task, as one home's app would) and, for
   its households in turn:

   - places ``--batch`` orders (10 by default) in one ``POST /v1/orders/batch`` with a fresh
     ``Idempotency-Key`` (with ``--batch 1``, one order by ``POST /v1/orders``), each for one of
     ``--intervals`` half-hours (48 by default: a day ahead; 6 with ``--batch 1`` in the older
     runs) starting 2 hours or more after the real clock (the server's), buy or sell, 0.1 to
     3 kWh, 3 to 30 p/kWh; where an interval would pass the market's ten open orders per
     household, one of them is cancelled first;
   - then, with probability ``--cancel-share`` (0.25), cancels one of its open orders
     (``DELETE /v1/orders/{id}``); with ``--statement-share`` (0.05) reads its statement for the
     month (``GET /v1/statements/{YYYY-MM}``); with ``--replay-share`` (0.02) sends the same
     placement again with the same key, which must answer 200 with the same order; with
     ``--read-share`` (0.1) reads its open orders for the interval it placed in last
     (``GET /v1/orders?interval=...&status=open``), which must list the order it placed there
     while it is open, then its trades (``GET /v1/trades``).

   A warm-up of ``--warmup`` placements (every worker's first requests) comes first and is not
   timed; then the timed run, bounded by ``--orders`` placements and ``--seconds`` of wall time.
   Every request's latency is taken around ``await client.request(...)`` (client side, so it
   includes the client's own event loop).

Reported per backend: placements (201) per second and requests per second of the timed run;
p50, p99 and the maximum latency per request kind and over all requests; the responses by
class; where the CPU went during the timed run (this process, the server's processes, the
PostgreSQL backends serving it, and everything else on the machine, from ``/proc``), per request;
and how many PostgreSQL connections the server opened during the run (its backends are found by
the ``application_name`` in the server's database URL, sampled every 0.1 s: a lower bound).

Checks: the target (issue text) of at least 1,000 placements (orders placed) per second with a
placement request's p99 under 50 ms, on PostgreSQL with 2 workers, with the default load: a
household's next hours in one request, 4 concurrent clients (with 50 clients in a closed loop
the mean latency is 50 / throughput by Little's law, so a 50 ms p99 would need over 1,000
requests/s whatever the service does; one order per request tops out near 200/s on a 2-core
machine, see ``bench/README.md``) (SQLite's figures are shown beside it, without a
target); a household's reads (its orders, trades and statement) with a p99 under 50 ms, and
each read of its orders listing the order it has just placed (nothing it must see fresh comes
from a cache); no 5xx response and no transport error; and **no accepted order missing**: afterwards
the database's orders (open and cancelled) are exactly the orders answered 201, counted and
compared id by id, the cancelled ones exactly those a DELETE answered 200 for, one order event
per placement and cancellation, and one audit row per POST and DELETE answered.

The client shares the machine with the server and the database, and costs CPU of its own (the
table shows how much per request, and which client: about 1.2 ms with httpx2 on a 2-core
machine, so at the target's rate it alone would take most of two cores; about 0.3 ms with the raw
client): the figures are a lower bound for the service on its own hardware.

Usage
-----
::

    .venv/bin/python bench/api.py                         # both backends: batches of 10, 4 clients
    .venv/bin/python bench/api.py --batch 1 --intervals 6 --concurrency 50    # one order per request
    .venv/bin/python bench/api.py --quick                 # 200 households, 2,000 placements
    .venv/bin/python bench/api.py --backend postgresql --concurrency 20 --orders 50000
    .venv/bin/python bench/api.py --backend sqlite --statement-share 0    # orders only
    .venv/bin/python bench/api.py --quick --keep-logs var/bench-api       # keep the server's output

Exit status 1 if a check fails (the throughput target included).
"""

# ruff: noqa: E402 (the project's imports must come after the sys.path fix below)

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx2
import sqlalchemy as sa

_BENCH = Path(__file__).resolve().parent  # run by path, bench/ heads sys.path: see bench/harness.py
sys.path[:] = [str(_BENCH.parent), *(entry for entry in sys.path if Path(entry or ".").resolve() != _BENCH)]

from bench import harness
from market.intervals import SettlementPeriod, period_at

SMARTBRUM = Path(sys.executable).with_name("smartbrum")
FEEDERS = tuple(f"F{i:02d}" for i in range(1, 11))
#: The market's default cap on one household's open orders for one interval (``max_open_orders``).
MAX_OPEN_ORDERS = 10
#: Intervals the orders are spread over, the first starting this long after the real now.
INTERVALS = 6
DAY_AHEAD_INTERVALS = 48
FIRST_INTERVAL_AHEAD = timedelta(hours=2)
TARGET_PLACEMENTS_PER_SECOND = 1_000
TARGET_P99_SECONDS = 0.050
READY_SECONDS = 90.0
STOP_SECONDS = 30.0
KINDS = ("place", "cancel", "statement", "replay", "orders", "trades")
CLIENTS = ("raw", "httpx2")
log = harness.progress_logger()


# --- setup ---------------------------------------------------------------------------------------


def seed(database: harness.ScratchDatabase, households: int) -> list[tuple[str, str]]:
    """Register the operator, the network, the tariff and the households with a token each.

    Parameters
    ----------
    database : harness.ScratchDatabase
        A migrated, empty database.
    households : int
        How many households.

    Returns
    -------
    list of (str, str)
        Each household's id and its API token's secret.
    """
    now = datetime.now(UTC)
    tokens = harness.seed_market(
        database.engine,
        {f"H{serial:05d}": FEEDERS[serial % len(FEEDERS)] for serial in range(1, households + 1)},
        now=now,
        network=harness.feeder_network(FEEDERS, feeder_kwh=Decimal(10_000)),
        effective_from_utc=now - timedelta(days=30),
        token_label="bench",
    )
    return [(token.participant_id, token.secret) for token in tokens]


# --- the server ----------------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port free on the loopback interface right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Server:
    """A running ``smartbrum serve``."""

    process: subprocess.Popen
    base_url: str
    log: Path
    workers: int
    ready_seconds: float = 0.0

    def log_tail(self, lines: int = 30) -> str:
        """The end of the server's output, for an error message."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def pids(self) -> list[int]:
        """The server's process and its descendants (the uvicorn workers)."""
        parents = _parent_pids()
        found = [self.process.pid]
        for pid in found:
            found.extend(child for child, parent in parents.items() if parent == pid)
        return found


@contextmanager
def running_server(database: harness.ScratchDatabase, workers: int, folder: Path) -> Iterator[Server]:
    """``smartbrum serve`` on a free loopback port, ready; always stopped afterwards.

    Parameters
    ----------
    database : harness.ScratchDatabase
        The database the server uses (``SMARTBRUM_DATABASE_URL``).
    workers : int
        ``--workers``.
    folder : Path
        Where the server's output is written (``serve-<backend>.log``).

    Yields
    ------
    Server
        The process, its base URL and log, once ``/openapi.json`` answers and every worker has
        logged "Application startup complete".

    Raises
    ------
    RuntimeError
        If the server exits or is not ready within ``READY_SECONDS``.
    """
    port = free_port()
    log = folder / f"serve-{database.backend}.log"
    env = {**os.environ, "SMARTBRUM_DATABASE_URL": database.url}
    env.pop("SMARTBRUM_CONFIG", None)
    command = [str(SMARTBRUM), "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    started = time.perf_counter()
    with log.open("wb") as output:
        process = subprocess.Popen(
            command, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = Server(process, f"http://127.0.0.1:{port}", log, workers)
    try:
        wait_until_ready(server)
        server.ready_seconds = time.perf_counter() - started
        yield server
    finally:
        stop_server(server)


def wait_until_ready(server: Server) -> None:
    """Poll ``/openapi.json`` and the log until the server and all its workers are up.

    Parameters
    ----------
    server : Server
        The started server.

    Raises
    ------
    RuntimeError
        If the process exits first, or ``READY_SECONDS`` pass.
    """
    deadline = time.monotonic() + READY_SECONDS
    with httpx2.Client(base_url=server.base_url, timeout=2.0) as client:
        while True:
            if server.process.poll() is not None:
                raise RuntimeError(
                    f"smartbrum serve exited with {server.process.returncode}:\n{server.log_tail()}"
                )
            try:
                answered = client.get("/openapi.json").status_code == 200
            except httpx2.TransportError:
                answered = False
            text = server.log.read_text(errors="replace")
            if answered and text.count("Application startup complete") >= server.workers:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"smartbrum serve not ready after {READY_SECONDS:.0f} s:\n{server.log_tail()}"
                )
            time.sleep(0.05)


def stop_server(server: Server) -> None:
    """Stop the server: SIGTERM to its process (uvicorn stops its workers), SIGKILL to its
    process group if it has not exited within ``STOP_SECONDS``."""
    process = server.process
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        with suppress(subprocess.TimeoutExpired):
            process.wait(timeout=STOP_SECONDS)
    # Stray workers too: the group is the one this benchmark started (start_new_session).
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


# --- CPU accounting ------------------------------------------------------------------------------


def _parent_pids() -> dict[int, int]:
    """Every process's parent, from ``/proc``."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with suppress(OSError, IndexError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                parents[int(entry.name)] = int(fields[1])
    return parents


def database_pids(database: harness.ScratchDatabase) -> list[int]:
    """The PostgreSQL backends serving the server (by ``application_name``); none for SQLite."""
    if database.application_name is None:
        return []
    with database.engine.connect() as connection:
        rows = connection.execute(
            sa.text("SELECT pid FROM pg_stat_activity WHERE application_name = :name"),
            {"name": database.application_name},
        )
        return [int(pid) for (pid,) in rows]


def cpu_seconds(pids: Sequence[int]) -> float:
    """The CPU seconds of ``pids`` so far; one that is gone counts 0 (its share was sampled while it ran)."""
    return sum(harness.process_cpu_seconds(pid) or 0.0 for pid in pids)


@dataclass(frozen=True)
class CpuUse:
    """CPU seconds spent during the timed run, by whom, and the server's new database connections."""

    client: float
    server: float
    database: float
    machine: float
    #: PostgreSQL backends serving the server that appeared during the run (sampled: a lower bound).
    connections_opened: int

    @property
    def other(self) -> float:
        """Everything else the machine did (other benchmarks, the kernel's own work)."""
        return max(0.0, self.machine - self.client - self.server - self.database)


class CpuMonitor:
    """Measures the CPU time used while it is entered: this process, the server's processes, the
    PostgreSQL backends serving the server (sampled every ``SAMPLE_SECONDS`` in a thread, since the
    connection pool opens and closes connections while it runs) and the whole machine.

    Parameters
    ----------
    server : Server
        The running server.
    database : harness.ScratchDatabase
        Its database; on PostgreSQL its backends are found by ``application_name``.
    """

    SAMPLE_SECONDS = 0.1

    def __init__(self, server: Server, database: harness.ScratchDatabase) -> None:
        self.server = server
        self.database = database
        self.server_pids: list[int] = []
        self.server_start = self.client_start = self.machine_start = 0.0
        self.existing: set[int] = set()
        #: Per PostgreSQL backend: CPU seconds when first seen (0 for one opened during the run), latest.
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="cpu-monitor", daemon=True)
        self.result: CpuUse | None = None

    def _sample(self) -> None:
        for pid in database_pids(self.database):
            self.first.setdefault(pid, 0.0)
            self.last[pid] = max(cpu_seconds([pid]), self.last.get(pid, 0.0))

    def _run(self) -> None:
        while not self.stop.wait(self.SAMPLE_SECONDS):
            self._sample()

    def __enter__(self) -> CpuMonitor:
        self.server_pids = self.server.pids()
        self.server_start = cpu_seconds(self.server_pids)
        self.existing = set(database_pids(self.database))
        self.first = {pid: cpu_seconds([pid]) for pid in self.existing}
        self.client_start, self.machine_start = time.process_time(), harness.machine_busy_seconds() or 0.0
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
        self._sample()
        self.result = CpuUse(
            client=time.process_time() - self.client_start,
            server=cpu_seconds(self.server_pids) - self.server_start,
            database=sum(max(0.0, self.last.get(pid, 0.0) - first) for pid, first in self.first.items()),
            machine=(harness.machine_busy_seconds() or 0.0) - self.machine_start,
            connections_opened=len(set(self.first) - self.existing),
        )


# --- the load ------------------------------------------------------------------------------------


@dataclass
class Load:
    """What the client saw, over the warm-up and the timed run."""

    #: Per request kind: latencies (seconds) and statuses (0 for a transport error) of the timed run.
    latencies: dict[str, list[float]] = field(default_factory=lambda: {kind: [] for kind in KINDS})
    statuses: dict[str, Counter] = field(default_factory=lambda: {kind: Counter() for kind in KINDS})
    #: Over the warm-up and the timed run: order ids answered 201, and those a DELETE answered 200.
    accepted: set[str] = field(default_factory=set)
    cancelled: set[str] = field(default_factory=set)
    #: POST and DELETE requests answered (any status): each must leave one audit row.
    state_changing_answered: int = 0
    transport_errors: int = 0
    replay_mismatches: int = 0
    #: Reads of a household's open orders that did not list the order it had just placed.
    stale_reads: int = 0
    #: The first few unexpected answers, for the report.
    surprises: list[str] = field(default_factory=list)
    placements_started: int = 0
    #: Orders answered 201 in the timed run (with ``--batch``, several per request).
    orders_placed: int = 0
    seconds: float = 0.0
    timing: bool = False

    def placed(self) -> int:
        """Orders placed (answered 201) in the timed run."""
        return self.orders_placed

    def requests(self) -> int:
        """Requests of the timed run, every kind."""
        return sum(sum(counter.values()) for counter in self.statuses.values())


@dataclass(frozen=True)
class Plan:
    """How the client drives the server."""

    intervals: tuple[SettlementPeriod, ...]
    cancel_share: float
    statement_share: float
    replay_share: float
    #: Share of placements followed by the household reading its orders and its trades.
    read_share: float = 0.0
    #: Orders per placement request: 1 posts ``/v1/orders``, more post ``/v1/orders/batch``.
    batch: int = 1


class Household:
    """One household as its app sees it: its token and its open orders per interval."""

    def __init__(self, household_id: str, token: str) -> None:
        self.id = household_id
        self.headers = {"Authorization": f"Bearer {token}"}
        self.open: dict[str, list[str]] = {}
        #: (interval key, order id) of the order placed last, which a read must list while open.
        self.last_placed: tuple[str, str] | None = None

    def open_orders(self) -> list[tuple[str, str]]:
        """(interval key, order id) of every open order."""
        return [(key, order_id) for key, ids in self.open.items() for order_id in ids]


class RawResponse:
    """An answer read by :class:`RawClient`: what the benchmark looks at (status, JSON, text)."""

    def __init__(self, status_code: int, content: bytes) -> None:
        self.status_code = status_code
        self.content = content

    def json(self) -> Any:
        return json.loads(self.content)

    @property
    def text(self) -> str:
        return self.content.decode(errors="replace")


class RawClient:
    """A minimal keep-alive HTTP/1.1 client on asyncio streams: one connection, one request at a
    time (each household task has its own), the answer read by its ``Content-Length``.

    It asks as little CPU of the shared machine as it can (about a fifth of ``httpx2``'s), so that
    the figures measure the server rather than the client; ``--client httpx2`` keeps the general
    client. A connection the server closes is opened again for the next request; a failure
    raises :class:`httpx2.TransportError`, as the general client's would, so that both are
    counted the same way.
    """

    def __init__(self, base_url: str) -> None:
        parts = urlsplit(base_url)
        if parts.hostname is None or parts.port is None:
            raise ValueError(f"not a host and port: {base_url}")
        self.host, self.port = parts.hostname, parts.port
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def request(
        self, method: str, path: str, *, headers: dict[str, str], json: object = None
    ) -> RawResponse:
        """Send one request and read its answer."""
        body = b"" if json is None else _json_bytes(json)
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        if json is not None:
            lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
        data = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
        try:
            if self.streams is None:
                self.streams = await asyncio.open_connection(self.host, self.port)
            reader, writer = self.streams
            writer.write(data)
            head = await reader.readuntil(b"\r\n\r\n")
            status, length, close = int(head[9:12]), 0, False
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"connection" and value.strip().lower() == b"close":
                    close = True
            content = await reader.readexactly(length)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as error:
            await self.aclose()
            raise httpx2.TransportError(f"{type(error).__name__}: {error}") from error
        if close:
            await self.aclose()
        return RawResponse(status, content)

    async def aclose(self) -> None:
        """Close the connection (the next request opens another)."""
        if self.streams is not None:
            writer = self.streams[1]
            self.streams = None
            writer.close()
            with suppress(OSError):
                await writer.wait_closed()


def _json_bytes(document: object) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()


Client = httpx2.AsyncClient | RawClient


async def call(
    client: Client, load: Load, kind: str, method: str, path: str, **options: object
) -> httpx2.Response | RawResponse | None:
    """One request, timed and counted; ``None`` after a transport error.

    Parameters
    ----------
    client : httpx2.AsyncClient
        The client.
    load : Load
        Where the latency and status go (the latency only while ``load.timing``).
    kind : str
        One of ``KINDS``.
    method, path : str
        The request.
    **options
        Passed to :meth:`httpx2.AsyncClient.request` (headers, json).

    Returns
    -------
    httpx2.Response or None
        The response, read.
    """
    started = time.perf_counter()
    try:
        response = await client.request(method, path, **options)  # type: ignore[arg-type]
    except httpx2.TransportError as error:
        load.transport_errors += 1
        if load.timing:
            load.statuses[kind][0] += 1
        if len(load.surprises) < 10:
            load.surprises.append(f"{kind} {method} {path}: {type(error).__name__}: {error}")
        return None
    elapsed = time.perf_counter() - started
    if method in ("POST", "DELETE"):
        load.state_changing_answered += 1
    if load.timing:
        load.latencies[kind].append(elapsed)
        load.statuses[kind][response.status_code] += 1
    return response


def surprise(load: Load, kind: str, response: httpx2.Response | RawResponse) -> None:
    """Note an unexpected answer (the first ten are kept)."""
    if len(load.surprises) < 10:
        load.surprises.append(f"{kind}: {response.status_code} {response.text[:300]}")


async def cancel(client: Client, load: Load, home: Household, key: str, order_id: str) -> None:
    """Cancel one of the household's open orders."""
    home.open[key].remove(order_id)
    response = await call(client, load, "cancel", "DELETE", f"/v1/orders/{order_id}", headers=home.headers)
    if response is None:
        return
    if response.status_code == 200:
        load.cancelled.add(order_id)
    else:
        surprise(load, "cancel", response)


async def place(client: Client, load: Load, home: Household, plan: Plan, rng: random.Random) -> None:
    """Place ``plan.batch`` orders for the household, spread over the intervals (a household's
    next hours): one ``POST /v1/orders``, or a ``POST /v1/orders/batch`` for more than one.
    Where an interval would pass the open-order cap, one of its orders is cancelled first; the
    placement may be replayed with the same key."""
    periods = [rng.choice(plan.intervals) for _ in range(plan.batch)]
    for key, count in Counter(period.key for period in periods).items():
        open_here = home.open.setdefault(key, [])
        while open_here and len(open_here) + count > MAX_OPEN_ORDERS:
            await cancel(client, load, home, key, rng.choice(open_here))
    bodies = [order_body(period, rng) for period in periods]
    path, body = ("/v1/orders", bodies[0]) if plan.batch == 1 else ("/v1/orders/batch", {"orders": bodies})
    headers = {**home.headers, "Idempotency-Key": uuid.uuid4().hex}
    response = await call(client, load, "place", "POST", path, headers=headers, json=body)
    if response is None:
        return
    if response.status_code != 201:
        surprise(load, "place", response)
        return
    ids = placed_ids(response, plan.batch)
    load.accepted.update(ids)
    if load.timing:
        load.orders_placed += len(ids)
    for period, order_id in zip(periods, ids, strict=True):
        home.open[period.key].append(order_id)
        home.last_placed = (period.key, order_id)
    if rng.random() < plan.replay_share:
        again = await call(client, load, "replay", "POST", path, headers=headers, json=body)
        if again is not None and (again.status_code != 200 or placed_ids(again, plan.batch) != ids):
            load.replay_mismatches += 1
            surprise(load, "replay", again)


def placed_ids(response: httpx2.Response | RawResponse, batch: int) -> list[str]:
    """The order ids a placement answered: one order's, or a batch's in order."""
    document = response.json()
    return [document["id"]] if batch == 1 else [order["id"] for order in document["orders"]]


def order_body(period: SettlementPeriod, rng: random.Random) -> dict[str, str]:
    """One random order for ``period``: buy or sell, 0.1-3 kWh, 3-30 p/kWh."""
    return {
        "interval": period.key,
        "side": rng.choice(("buy", "sell")),
        "quantity_kwh": str(Decimal(rng.randint(100, 3_000)).scaleb(-3)),
        "price_p_per_kwh": str(Decimal(rng.randint(300, 3_000)).scaleb(-2)),
    }


async def household_task(
    client: Client,
    load: Load,
    homes: Sequence[Household],
    plan: Plan,
    rng: random.Random,
    placements: int,
    deadline: float,
) -> None:
    """One concurrent client: its households in turn until the placements or the time run out."""
    turn = 0
    while load.placements_started < placements and time.perf_counter() < deadline:
        load.placements_started += 1
        home = homes[turn % len(homes)]
        turn += 1
        await place(client, load, home, plan, rng)
        if rng.random() < plan.cancel_share and (open_orders := home.open_orders()):
            await cancel(client, load, home, *rng.choice(open_orders))
        if rng.random() < plan.statement_share:
            month = rng.choice(plan.intervals).settlement_date.strftime("%Y-%m")
            response = await call(
                client, load, "statement", "GET", f"/v1/statements/{month}", headers=home.headers
            )
            if response is not None and response.status_code != 200:
                surprise(load, "statement", response)
        if rng.random() < plan.read_share:
            await read_own(client, load, home)


async def read_own(client: Client, load: Load, home: Household) -> None:
    """Read the household's open orders for the interval it placed in last (which must list the
    order it placed, if still open: nothing a household must see fresh may come from a cache),
    then its trades."""
    if home.last_placed is not None:
        key, order_id = home.last_placed
        path = f"/v1/orders?interval={key}&status=open&limit=100"
        response = await call(client, load, "orders", "GET", path, headers=home.headers)
        if response is not None:
            if response.status_code != 200:
                surprise(load, "orders", response)
            elif order_id in home.open.get(key, ()) and order_id not in {
                item["id"] for item in response.json()["items"]
            }:
                load.stale_reads += 1
                surprise(load, "orders", response)
    response = await call(client, load, "trades", "GET", "/v1/trades?limit=100", headers=home.headers)
    if response is not None and response.status_code != 200:
        surprise(load, "trades", response)


async def drive(
    server: Server,
    homes: Sequence[Household],
    plan: Plan,
    load: Load,
    *,
    concurrency: int,
    placements: int,
    seconds: float,
    timing: bool,
    seed: int,
    client_kind: str = "raw",
) -> None:
    """Run ``concurrency`` household tasks until ``placements`` placements or ``seconds`` pass.

    Parameters
    ----------
    server : Server
        The running server.
    homes : sequence of Household
        Split round-robin between the tasks (each household belongs to one task).
    plan : Plan
        The intervals and the shares of cancels, statements and replays.
    load : Load
        Accumulates what the client sees; its ``seconds`` is set to this run's wall time if timed.
    concurrency : int
        Concurrent tasks, one connection each.
    placements : int
        Placements to start (the run ends when all are answered).
    seconds : float
        Wall time after which no new placement starts.
    timing : bool
        Whether latencies and statuses are recorded (the warm-up is not).
    seed : int
        Seeds each task's random choices.
    client_kind : str
        ``"raw"``: a :class:`RawClient` (one connection) per task; ``"httpx2"``: one
        ``httpx2.AsyncClient`` whose pool keeps a connection per task.
    """
    load.timing = timing
    load.placements_started = 0
    limits = httpx2.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    timeout = httpx2.Timeout(60.0)
    shared = None
    if client_kind == "httpx2":
        shared = httpx2.AsyncClient(base_url=server.base_url, limits=limits, timeout=timeout)
    clients: list[Client] = [shared or RawClient(server.base_url) for _ in range(concurrency)]
    try:
        started = time.perf_counter()
        deadline = started + seconds
        await asyncio.gather(
            *(
                household_task(
                    clients[task],
                    load,
                    homes[task::concurrency],
                    plan,
                    random.Random(seed * 1_000 + task),
                    placements,
                    deadline,
                )
                for task in range(concurrency)
            )
        )
        if timing:
            load.seconds = time.perf_counter() - started
    finally:
        for client in {id(client): client for client in clients}.values():
            await client.aclose()


# --- checking the database -----------------------------------------------------------------------


@dataclass(frozen=True)
class Stored:
    """What the database holds afterwards, compared with what the client was told."""

    orders: int
    missing: int  # answered 201, not in the database
    extra: int  # in the database, never answered 201
    cancelled_mismatch: int  # cancelled in the database xor a DELETE answered 200
    events: int
    expected_events: int
    audit_rows: int
    expected_audit_rows: int

    @property
    def ok(self) -> bool:
        return (
            self.missing == self.extra == self.cancelled_mismatch == 0
            and self.events == self.expected_events
            and self.audit_rows == self.expected_audit_rows
        )


def check_database(database: harness.ScratchDatabase, load: Load) -> Stored:
    """Count and compare the stored orders, order events and audit rows with the answers.

    Parameters
    ----------
    database : harness.ScratchDatabase
        The benchmark's database (read after the server has stopped).
    load : Load
        What the client saw over the warm-up and the timed run.

    Returns
    -------
    Stored
        The counts and differences.
    """
    with database.engine.connect() as connection:
        rows = connection.exec_driver_sql("SELECT id, status FROM market_order").all()
        events = connection.exec_driver_sql("SELECT count(*) FROM order_event").scalar_one()
        audit = connection.exec_driver_sql("SELECT count(*) FROM audit_event").scalar_one()
    stored = {order_id for order_id, _ in rows}
    cancelled = {order_id for order_id, status in rows if status == "cancelled"}
    return Stored(
        orders=len(rows),
        missing=len(load.accepted - stored),
        extra=len(stored - load.accepted),
        cancelled_mismatch=len(cancelled ^ load.cancelled),
        events=int(events),
        expected_events=len(load.accepted) + len(load.cancelled),
        audit_rows=int(audit),
        expected_audit_rows=load.state_changing_answered,
    )


# --- one backend ---------------------------------------------------------------------------------


@dataclass(kw_only=True)
class ApiRun(harness.BackendRun):
    """Everything measured on one backend."""

    workers: int
    concurrency: int
    batch: int
    load: Load
    cpu: CpuUse
    stored: Stored
    ready_seconds: float
    server_errors_logged: int
    server_version: str
    client: str


def future_intervals(now: datetime, count: int = INTERVALS) -> tuple[SettlementPeriod, ...]:
    """``count`` consecutive half-hours, the first starting at least ``FIRST_INTERVAL_AHEAD`` from now."""
    period = period_at(now + FIRST_INTERVAL_AHEAD).next()
    periods = [period]
    while len(periods) < count:
        periods.append(periods[-1].next())
    return tuple(periods)


def run_backend(backend: str, args: argparse.Namespace) -> ApiRun:
    """Set up, start the server, warm it up, run the timed load, stop it, check the database.

    Parameters
    ----------
    backend : str
        ``"sqlite"`` or ``"postgresql"``.
    args : argparse.Namespace
        The command line.

    Returns
    -------
    ApiRun
        The figures.
    """
    workers = args.pg_workers if backend == "postgresql" else 1
    with (
        tempfile.TemporaryDirectory(prefix="smartbrum-bench-api-") as folder,
        harness.fresh_database(backend, args.postgres_url) as database,
    ):
        started = time.perf_counter()
        homes = [Household(home, token) for home, token in seed(database, args.households)]
        log.info(f"{backend}: {len(homes):,} households and tokens in {time.perf_counter() - started:.1f} s")
        plan = Plan(
            intervals=future_intervals(datetime.now(UTC), args.intervals),
            cancel_share=args.cancel_share,
            statement_share=args.statement_share,
            replay_share=args.replay_share,
            read_share=args.read_share,
            batch=args.batch,
        )
        load = Load()
        with running_server(database, workers, Path(folder)) as server:
            log.info(
                f"{backend}: smartbrum serve ready ({workers} worker(s)) in {server.ready_seconds:.1f} s"
            )
            options = {"concurrency": args.concurrency, "seed": args.seed, "client_kind": args.client}
            asyncio.run(
                drive(server, homes, plan, load, placements=args.warmup, seconds=60, timing=False, **options)
            )
            with CpuMonitor(server, database) as monitor:
                timed = {**options, "seed": args.seed + 1}
                asyncio.run(
                    drive(
                        server,
                        homes,
                        plan,
                        load,
                        placements=args.orders,
                        seconds=args.seconds,
                        timing=True,
                        **timed,
                    )
                )
            assert monitor.result is not None
            cpu = monitor.result
            log.info(
                f"{backend}: {load.placed():,} placements in {load.seconds:.1f} s "
                f"({load.placed() / load.seconds:,.0f}/s)"
            )
        server_log = server.log.read_text(errors="replace")
        if args.keep_logs is not None:
            args.keep_logs.mkdir(parents=True, exist_ok=True)
            (args.keep_logs / server.log.name).write_text(server_log)
        errors_logged = server_log.count("Traceback") + server_log.count(" 500 Internal Server Error")
        stored = check_database(database, load)
        return ApiRun(
            backend=backend,
            workers=workers,
            households=len(homes),
            concurrency=args.concurrency,
            batch=args.batch,
            load=load,
            cpu=cpu,
            stored=stored,
            ready_seconds=server.ready_seconds,
            server_errors_logged=errors_logged,
            server_version=harness.database_version(database),
            client=args.client,
        )


# --- the report ----------------------------------------------------------------------------------


def milliseconds(values: Sequence[float]) -> str:
    """``p50 / p99 / max`` in ms, or a dash."""
    if not values:
        return "-"
    p50, p99, most = statistics.median(values), harness.percentile(values, 0.99), max(values)
    return f"{1e3 * p50:.1f} / {1e3 * p99:.1f} / {1e3 * most:.1f}"


def placement_p99(result: ApiRun) -> float:
    """The timed run's placement p99, seconds."""
    return harness.percentile(result.load.latencies["place"], 0.99)


def placements_per_second(result: ApiRun) -> float:
    """Placements answered 201 per wall second of the timed run."""
    return result.load.placed() / result.load.seconds if result.load.seconds else float("nan")


def responses(load: Load) -> str:
    """Responses of the timed run by class, e.g. ``2xx 25,010 · 4xx 0 · 5xx 0 · failed 0``."""
    classes: Counter = Counter()
    for counter in load.statuses.values():
        for status, count in counter.items():
            classes["failed" if status == 0 else f"{status // 100}xx"] += count
    return " · ".join(f"{name} {classes[name]:,}" for name in ("2xx", "4xx", "5xx", "failed"))


def report(runs: Sequence[ApiRun]) -> bool:
    """Print the table and the checks.

    Parameters
    ----------
    runs : sequence of ApiRun
        One per backend.

    Returns
    -------
    bool
        Whether every check passed.
    """
    table = harness.BackendTable(
        "HTTP API under load: households placing and cancelling orders over loopback",
        runs,
        header=lambda r: f"{r.server_version}, {r.workers} worker(s)",
    )
    row = table.row
    row("households / concurrent clients", lambda r: f"{r.households:,} / {r.concurrency}")
    row("benchmark client", lambda r: "raw HTTP/1.1 on asyncio streams" if r.client == "raw" else r.client)
    row("timed run, s", lambda r: f"{r.load.seconds:.1f}")
    row("orders per placement request", lambda r: f"{r.batch}")
    row("orders placed (201)", lambda r: f"{r.load.placed():,}")
    row("[bold]placements / s[/bold] (orders)", lambda r: f"[bold]{placements_per_second(r):,.0f}[/bold]")
    row("requests / s (all kinds)", lambda r: f"{r.load.requests() / r.load.seconds:,.0f}")
    for kind, label in (
        ("place", "POST /v1/orders (or /batch)"),
        ("cancel", "DELETE /v1/orders/{id}"),
        ("statement", "GET /v1/statements/{month}"),
        ("replay", "POST, same Idempotency-Key (200)"),
        ("orders", "GET /v1/orders?interval=..."),
        ("trades", "GET /v1/trades"),
    ):
        row(f"{label}: n", lambda r, kind=kind: f"{len(r.load.latencies[kind]):,}")
        row("  p50 / p99 / max ms", lambda r, kind=kind: milliseconds(r.load.latencies[kind]))
    row(
        "all requests p50 / p99 / max ms",
        lambda r: milliseconds([x for values in r.load.latencies.values() for x in values]),
    )
    row("responses", lambda r: responses(r.load))
    row("orders stored / answered 201", lambda r: f"{r.stored.orders:,} / {len(r.load.accepted):,}")
    row(
        "missing / extra / cancel mismatches",
        lambda r: f"{r.stored.missing} / {r.stored.extra} / {r.stored.cancelled_mismatch}",
    )
    row("order events / expected", lambda r: f"{r.stored.events:,} / {r.stored.expected_events:,}")
    row("audit rows / expected", lambda r: f"{r.stored.audit_rows:,} / {r.stored.expected_audit_rows:,}")

    def per_request(result: ApiRun, seconds: float) -> str:
        requests = result.load.requests()
        return f"{1e3 * seconds / requests:.2f}" if requests else "-"

    for label, pick in (
        ("CPU ms / request: server", lambda c: c.server),
        ("  PostgreSQL backends", lambda c: c.database),
        ("  client (this process)", lambda c: c.client),
        ("  rest of the machine", lambda c: c.other),
    ):
        row(label, lambda r, pick=pick: per_request(r, pick(r.cpu)))
    row("server CPU, cores busy", lambda r: f"{r.cpu.server / r.load.seconds:.2f}")
    row(
        "PostgreSQL connections opened (sampled, >=)",
        lambda r: f"{r.cpu.connections_opened:,}" if r.backend == "postgresql" else "-",
    )
    row("machine CPU busy (of cores)", lambda r: f"{r.cpu.machine / r.load.seconds:.2f} of {os.cpu_count()}")
    row("server ready after, s", lambda r: f"{r.ready_seconds:.1f}")
    console = harness.figures_console()
    console.print(table)

    checks = harness.TargetChecks()
    for run in runs:
        name = f"{run.server_version.split()[0]}, {run.workers} worker(s)"
        rate, p99 = placements_per_second(run), placement_p99(run)
        figures = f"{rate:,.0f} placements/s, placement p99 {1e3 * p99:.1f} ms"
        if run.backend == "postgresql":
            checks.target(
                f"{name}: >= {TARGET_PLACEMENTS_PER_SECOND:,} placements/s and p99 < "
                f"{1e3 * TARGET_P99_SECONDS:.0f} ms",
                rate >= TARGET_PLACEMENTS_PER_SECOND and p99 < TARGET_P99_SECONDS,
                figures,
            )
        else:
            checks.note(f"{name}: {figures} (no target)")
        load = run.load
        server_errors = sum(count for c in load.statuses.values() for s, count in c.items() if s >= 500)
        checks.target(
            f"{name}: no 5xx, no transport error, no traceback in the server log",
            server_errors == 0 and load.transport_errors == 0 and run.server_errors_logged == 0,
            f"{server_errors} 5xx, {load.transport_errors} transport errors, "
            f"{run.server_errors_logged} logged",
        )
        stored = run.stored
        checks.target(
            f"{name}: every accepted order stored, nothing else",
            stored.ok,
            f"{stored.orders:,} orders stored, {len(load.accepted):,} answered 201, "
            f"{stored.missing} missing, {stored.extra} extra; "
            f"events {stored.events:,}/{stored.expected_events:,}; "
            f"audit {stored.audit_rows:,}/{stored.expected_audit_rows:,}",
        )
        reads = {kind: run.load.latencies[kind] for kind in ("orders", "trades", "statement")}
        read_latencies = [x for values in reads.values() for x in values]
        if read_latencies:
            read_p99 = harness.percentile(read_latencies, 0.99)
            checks.target(
                f"{name}: a household's reads (orders, trades, statement) p99 < "
                f"{1e3 * TARGET_P99_SECONDS:.0f} ms",
                read_p99 < TARGET_P99_SECONDS,
                ", ".join(
                    f"{kind} p99 {1e3 * harness.percentile(values, 0.99):.1f} ms (n {len(values):,})"
                    for kind, values in reads.items()
                    if values
                ),
            )
        checks.target(
            f"{name}: a household's read lists the order it has just placed",
            load.stale_reads == 0,
            f"{load.stale_reads} stale reads of {len(run.load.latencies['orders']):,}",
        )
        if load.replay_mismatches:
            checks.problem(f"{name}: {load.replay_mismatches} idempotent replays did not return the order")
        for text in load.surprises:
            checks.note(f"{name}: unexpected: {text}")
    checks.print(console)
    return checks.passed


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line; ``--quick`` shrinks the defaults that were not given explicitly."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    harness.add_database_arguments(parser)
    parser.add_argument("--households", type=int, default=None, help="default 1,000 (200 with --quick)")
    parser.add_argument(
        "--concurrency", type=int, default=None, help="concurrent clients (default 4, also --quick)"
    )
    parser.add_argument(
        "--orders", type=int, default=None, help="timed placements (default 20,000; 2,000 --quick)"
    )
    parser.add_argument(
        "--seconds", type=float, default=None, help="timed run's wall-time cap (60; 20 --quick)"
    )
    parser.add_argument(
        "--warmup", type=int, default=None, help="untimed placements first (500; 100 --quick)"
    )
    parser.add_argument("--pg-workers", type=int, default=2, help="server workers on PostgreSQL")
    parser.add_argument("--cancel-share", type=float, default=0.25)
    parser.add_argument("--statement-share", type=float, default=0.05)
    parser.add_argument("--replay-share", type=float, default=0.02)
    parser.add_argument(
        "--read-share",
        type=float,
        default=0.1,
        help="share of placements followed by GET /v1/orders (the interval's open orders) and /v1/trades",
    )
    parser.add_argument(
        "--client",
        choices=CLIENTS,
        default="raw",
        help="raw: a minimal HTTP/1.1 client (least CPU); httpx2: the general client",
    )
    parser.add_argument(
        "--intervals",
        type=int,
        default=DAY_AHEAD_INTERVALS,
        help=f"half-hours the orders go to ({DAY_AHEAD_INTERVALS}: a day ahead)",
    )
    parser.add_argument(
        "--batch", type=int, default=10, help="orders per placement request (10; 1: POST /v1/orders)"
    )
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--keep-logs", type=Path, metavar="DIR", help="copy the server's output here")
    parser.add_argument("--quick", action="store_true", help="a small run: a few seconds per backend")
    args = parser.parse_args(argv)
    harness.fill_sizes(
        args,
        {
            "households": (1_000, 200),
            "concurrency": (4, 4),
            "orders": (20_000, 2_000),
            "seconds": (60.0, 20.0),
            "warmup": (500, 100),
        },
    )
    if not 1 <= args.intervals <= 96:
        parser.error("--intervals must be 1 to 96")
    if not 1 <= args.batch <= MAX_OPEN_ORDERS:
        parser.error(f"--batch must be 1 to {MAX_OPEN_ORDERS} (a household's open orders per interval)")
    if min(args.households, args.concurrency, args.orders, args.pg_workers) < 1 or args.seconds <= 0:
        parser.error("--households, --concurrency, --orders, --pg-workers and --seconds must be positive")
    if args.concurrency > args.households:
        parser.error("--concurrency must not exceed --households (each household has one client)")
    return args


def _terminate(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; the exit status is 1 if a check fails."""
    args = parse_args(argv)
    # A SIGTERM unwinds like Ctrl-C, so that the server is stopped and the schema dropped.
    signal.signal(signal.SIGTERM, _terminate)
    backends = harness.chosen_backends(args.backend, postgresql_first=True)
    notes = harness.machine_notes(
        packages=("FastAPI", "uvicorn", "SQLAlchemy", "httpx2"),
        backends=backends,
        postgres_url=args.postgres_url,
    )
    harness.figures_console().print(notes, soft_wrap=True)
    runs = [run_backend(backend, args) for backend in backends]
    return 0 if report(runs) else 1


if __name__ == "__main__":
    sys.exit(main())
