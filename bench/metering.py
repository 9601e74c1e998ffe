"""Benchmark of the meter poller: a city's fleet of emulated meters polled over Modbus/TCP on loopback.

What it measures
----------------
For each fleet size (``--gateways``, by default 10 and then 40 gateways of ``--meters-per-gateway``
247 SDM630 meters: 2,470 and 9,880 meters), a separate server process
(``bench/metering.py --serve``) runs the fleet's emulated gateways
(:class:`metering.emulator.Gateway`, one pymodbus server per TCP port on 127.0.0.1, every meter
behind it a unit ID) and says when all of them listen. In this, the client, process:

1. **smartbrum's poller**: :meth:`metering.polling.Poller.poll_once` over every meter (one lane per
   gateway, lanes concurrent, each lane's meters in turn, the two blocks
   :func:`metering.registers.plan_reads` plans for an SDM630 decoded in bulk and validated into a
   :class:`metering.readings.Reading`), with the timeout and retries set explicitly
   (``--timeout``, ``--retries``, ``--backoff``).
2. **A raw asyncio client**, written below: Modbus/TCP framed by hand with :mod:`struct` on an
   :class:`asyncio.Protocol`, one connection per gateway, one request in flight per connection,
   gateways concurrent, the same blocks, the same timeout and retries, decoded with the same
   :func:`metering.registers.decoder_for` decoder and validated with the same
   :func:`metering.readings.make_reading`. Everything but the protocol work is the same, so it
   is the floor the poller's protocol stack (pymodbus's client, and the poller's lanes, breakers
   and bookkeeping) is compared with.
3. **The poller and storage**: each cycle's readings written with
   :func:`market.meter_data.store_readings` in one transaction
   (:func:`market.database.transaction`) into a fresh database built by the migrations (a SQLite
   file in a temporary directory and/or a fresh schema in the local PostgreSQL, dropped
   afterwards), every meter and its household registered beforehand through the market's bulk
   registration (:func:`bench.harness.seed_market`, not timed). Timed: the poll and the store, one
   after the other.

Each is run once to warm up (connections made, maps and decoders built, SQL compiled), then
``--cycles`` times; the two clients' cycles alternate so that both see the same load. Reported
per cycle, medians: the wall time of the full cycle, meters per second, this process's CPU time
(:func:`time.process_time`), the server process's CPU time (from ``/proc``: near the wall time,
the server is the bottleneck, not the client), every other process's CPU time over the cycle
(from ``/proc/stat``: on a shared machine, what the neighbours took) and the meters read.

A second measurement gives the request latency for the cadence guidance: one gateway's meters
polled alone (every other gateway idle), by both clients; wall time divided by the requests sent.

Targets (issue text), checked on the largest fleet: a full cycle of 10,000 meters with storage
under 2.5 s (every database run), and the poller's cycle within 2x of the raw client's (wall
time; the CPU ratio is shown beside it).

Usage
-----
::

    .venv/bin/python bench/metering.py                     # 10 then 40 gateways of 247, both databases
    .venv/bin/python bench/metering.py --gateways 4 --meters-per-gateway 50 --database sqlite
    .venv/bin/python bench/metering.py --gateways 40 --models sdm630,sdm120,sdm72,em24   # mixed fleet
    .venv/bin/python bench/metering.py --profile var/poll.pstats   # cProfile one poller cycle

PostgreSQL is reached at ``--postgres-url`` (default ``SMARTBRUM_TEST_POSTGRES_URL`` or the
test database, ``postgresql+psycopg://postgres@127.0.0.1:5432/test``); with
``--database both`` (the default) a PostgreSQL that cannot be reached is skipped with a note.
Everything listens on 127.0.0.1 only; the server stops when this process closes its standard input
or after ``--serve-limit`` seconds, whichever comes first. Exit status 1 if a target is missed or a
cycle reads fewer meters than the fleet has.
"""

# ruff: noqa: E402 (the project's imports must come after the sys.path fix below)

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import selectors
import statistics
import struct
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from rich.table import Table

_BENCH = Path(__file__).resolve().parent  # run by path, bench/ heads sys.path: see bench/harness.py
sys.path[:] = [str(_BENCH.parent), *(entry for entry in sys.path if Path(entry or ".").resolve() != _BENCH)]

from bench import harness
from metering.emulator import Gateway, MeterFleet, serve_fleet
from metering.polling import MeterEndpoint, Poller, PollResult, PollSettings, utc_now
from metering.readings import Reading, make_reading
from metering.registers import Decoder, ReadBlock, RegisterMap, decoder_for, load_register_map, plan_reads

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

HOST = "127.0.0.1"
DEFAULT_GATEWAYS = (10, 40)
DEFAULT_METERS_PER_GATEWAY = 247
DEFAULT_MODELS = ("sdm630",)
TARGET_CYCLE_S = 2.5
TARGET_METERS = 10_000
TARGET_FLEET_MIN = 9_000
"""The smallest fleet the 10,000-meter target is checked on (40 x 247 = 9,880)."""
TARGET_RAW_RATIO = 2.0
READY_DEADLINE_S = 180.0
"""The longest wait for the server process to build the fleet and listen."""
STOP_DEADLINE_S = 15.0
CADENCES_S = (60.0, 15.0, 5.0)
LATENCIES_MS = (5.0, 20.0, 50.0, 100.0)
BUS_UNIT_LIMIT = 247
"""Unit IDs on one RS485 bus (Modbus serial addresses 1 to 247)."""
log = harness.progress_logger()


# --------------------------------------------------------------------------------------------
# The server process
# --------------------------------------------------------------------------------------------


def serve(gateways: int, meters_per_gateway: int, models: Sequence[str], seed: int, limit_s: float) -> int:
    """Run the fleet's gateways on 127.0.0.1 until standard input closes or ``limit_s`` passes.

    Prints one line, ``READY`` and the gateways' ports as JSON, once every gateway listens.

    Parameters
    ----------
    gateways : int
        How many gateways (TCP ports, picked free by the system).
    meters_per_gateway : int
        Meters behind each gateway, unit IDs 1 to ``meters_per_gateway``.
    models : sequence of str
        Meter models, assigned round-robin (:meth:`metering.emulator.MeterFleet.build`).
    seed : int
        The fleet's seed.
    limit_s : float
        Serve at most this long, even if nobody closes standard input.

    Returns
    -------
    int
        The exit status.
    """
    logging.basicConfig(level=logging.WARNING)
    fleet = MeterFleet.build(
        gateways=gateways, meters_per_gateway=meters_per_gateway, models=models, host=HOST, seed=seed
    )

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        stdin = sys.stdin.fileno()

        def on_input() -> None:
            if not os.read(stdin, 4096):  # end of file: the client is done (or gone)
                loop.remove_reader(stdin)
                stop.set()

        loop.add_reader(stdin, on_input)
        loop.call_later(limit_s, stop.set)

        def ready(started: Sequence[Gateway]) -> None:
            print("READY " + json.dumps([gateway.port for gateway in started]), flush=True)

        await serve_fleet(fleet.build_gateways(), ready=ready, stop=stop)

    asyncio.run(run())
    return 0


class ServerProcess:
    """The emulated fleet in a child process (``bench/metering.py --serve``), stopped on exit.

    Parameters
    ----------
    gateways, meters_per_gateway, models, seed
        As for :func:`serve`.
    limit_s : float
        The child's own time limit: it stops by itself after this long.
    """

    def __init__(
        self, gateways: int, meters_per_gateway: int, models: Sequence[str], seed: int, limit_s: float
    ) -> None:
        command = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--serve",
            "--gateways",
            str(gateways),
            "--meters-per-gateway",
            str(meters_per_gateway),
            "--models",
            ",".join(models),
            "--seed",
            str(seed),
            "--serve-limit",
            str(limit_s),
        ]
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.ports: list[int] = []

    def wait_ready(self, deadline_s: float = READY_DEADLINE_S) -> list[int]:
        """Wait for the child's ``READY`` line, at most ``deadline_s``; returns the gateways' ports.

        Raises
        ------
        RuntimeError
            When the child exits or the deadline passes first.
        """
        assert self.process.stdout is not None
        give_up_at = time.monotonic() + deadline_s
        with selectors.DefaultSelector() as selector:
            selector.register(self.process.stdout, selectors.EVENT_READ)
            while (left_s := give_up_at - time.monotonic()) > 0:
                if not selector.select(timeout=min(left_s, 1.0)):
                    if self.process.poll() is not None:
                        break
                    continue
                line = self.process.stdout.readline()
                if not line:  # the child closed its output: it has exited
                    break
                if line.startswith("READY "):
                    self.ports = [int(port) for port in json.loads(line.removeprefix("READY "))]
                    return self.ports
        raise RuntimeError(
            f"the server process did not report ready within {deadline_s:g} s "
            f"(exit status {self.process.poll()})"
        )

    def cpu_seconds(self) -> float | None:
        """The child's CPU time so far (user + system, from ``/proc``); None where unavailable."""
        return harness.process_cpu_seconds(self.process.pid)

    def stop(self) -> None:
        """Close the child's input (it then stops its gateways and exits); kill it if it lingers."""
        if self.process.stdin is not None:
            with contextlib.suppress(OSError):
                self.process.stdin.close()
        try:
            self.process.wait(timeout=STOP_DEADLINE_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=STOP_DEADLINE_S)
        if self.process.stdout is not None:
            self.process.stdout.close()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def fleet_endpoints(fleet: MeterFleet, ports: Sequence[int]) -> list[MeterEndpoint]:
    """How to reach every meter of ``fleet``, its gateway ``g`` listening on ``ports[g]``."""
    if len(ports) != len(fleet.gateways):
        raise ValueError(f"{len(fleet.gateways)} gateways but {len(ports)} ports")
    return [
        MeterEndpoint(meter_id=m.meter_id, host=HOST, port=port, unit_id=m.unit_id, model=m.model)
        for spec, port in zip(fleet.gateways, ports)
        for m in spec.meters
    ]


# --------------------------------------------------------------------------------------------
# The raw client: the floor for the protocol work
# --------------------------------------------------------------------------------------------

_MBAP_REQUEST = struct.Struct(">HHHBBHH")
"""Transaction ID, protocol 0, length 6, unit ID, function code, first register, register count."""
_MBAP_HEADER = 7  # transaction ID, protocol, length, unit ID
_EXCEPTION_BIT = 0x80


class RawModbusError(Exception):
    """A request that got no usable answer from the raw client."""


class RawConnection(asyncio.Protocol):
    """One Modbus/TCP connection to a gateway with one request in flight at a time.

    Frames are cut from the byte stream by the MBAP header's length field; an answer whose
    transaction ID is not the request in flight (a late answer to an abandoned request) is dropped.
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._waiter: asyncio.Future[bytes] | None = None
        self._transaction = 0
        self._unpackers: dict[int, struct.Struct] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(RawModbusError(f"connection lost: {exc or 'closed by the gateway'}"))

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        while len(buffer) >= _MBAP_HEADER:
            end = 6 + ((buffer[4] << 8) | buffer[5])
            if len(buffer) < end:
                return
            frame = bytes(buffer[:end])
            del buffer[:end]
            waiter = self._waiter
            if waiter is not None and not waiter.done() and (frame[0] << 8 | frame[1]) == self._transaction:
                waiter.set_result(frame)

    @property
    def connected(self) -> bool:
        """Whether the connection is open."""
        return self.transport is not None and not self.transport.is_closing()

    async def read(
        self, unit_id: int, function_code: int, address: int, count: int, timeout_s: float
    ) -> tuple[int, ...]:
        """Read ``count`` registers (function code 3 or 4); the registers as a tuple of ints.

        Raises
        ------
        RawModbusError
            For an exception response, a malformed answer or a lost connection.
        TimeoutError
            When no answer comes within ``timeout_s``.
        """
        transport = self.transport
        if transport is None:
            raise RawModbusError("not connected")
        self._transaction = transaction = (self._transaction + 1) & 0xFFFF
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        transport.write(_MBAP_REQUEST.pack(transaction, 0, 6, unit_id, function_code, address, count))
        try:
            async with asyncio.timeout(timeout_s):
                frame = await waiter
        finally:
            self._waiter = None
        if frame[6] != unit_id or frame[2] or frame[3]:
            raise RawModbusError(f"answer for unit {frame[6]} (protocol {frame[2] << 8 | frame[3]})")
        if frame[7] != function_code:
            if frame[7] == function_code | _EXCEPTION_BIT and len(frame) > 8:
                raise RawModbusError(f"Modbus exception {frame[8]}")
            raise RawModbusError(f"answer with function code {frame[7]}")
        if len(frame) != 9 + 2 * count or frame[8] != 2 * count:
            raise RawModbusError(f"answered {len(frame) - 9} bytes, asked for {2 * count}")
        unpack = self._unpackers.get(count)
        if unpack is None:
            unpack = self._unpackers[count] = struct.Struct(f">{count}H")
        return unpack.unpack_from(frame, 9)

    def close(self) -> None:
        """Close the connection."""
        if self.transport is not None:
            self.transport.close()


@dataclass(frozen=True)
class _ModelPlan:
    register_map: RegisterMap
    blocks: tuple[ReadBlock, ...]
    decoder: Decoder


class RawPoller:
    """Polls meters with :class:`RawConnection`: a connection per gateway, gateways concurrent.

    The same work as :class:`metering.polling.Poller` apart from the protocol: the same blocks,
    decoder and validation, a timeout on every request and on connecting, ``retries`` more
    attempts after ``backoff_s`` (doubling). No circuit breakers and no SunSpec discovery.

    Parameters
    ----------
    endpoints : sequence of MeterEndpoint
        Modbus/TCP meters with a shipped register map.
    timeout_s, retries, backoff_s
        As in :class:`metering.polling.PollSettings`.
    clock : callable
        Gives each reading's ``polled_at``.
    """

    def __init__(
        self,
        endpoints: Sequence[MeterEndpoint],
        *,
        timeout_s: float,
        retries: int,
        backoff_s: float,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        if any(endpoint.transport != "tcp" for endpoint in endpoints):
            raise ValueError("the raw client speaks Modbus/TCP only")
        self.endpoints = tuple(endpoints)
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.clock = clock
        self.sent = 0
        self._plans: dict[str, _ModelPlan] = {}
        for model in sorted({endpoint.model for endpoint in self.endpoints}):
            register_map = load_register_map(model)
            self._plans[model] = _ModelPlan(register_map, plan_reads(register_map), decoder_for(register_map))
        self._gateways: dict[tuple[str, int], list[tuple[int, MeterEndpoint]]] = {}
        for index, endpoint in enumerate(self.endpoints):
            self._gateways.setdefault((endpoint.host, endpoint.port), []).append((index, endpoint))
        self._connections: dict[tuple[str, int], RawConnection] = {}

    async def poll_once(self) -> list[Reading | None]:
        """Poll every meter once; a reading per endpoint, in order, None where nothing was read."""
        results: list[Reading | None] = [None] * len(self.endpoints)
        async with asyncio.TaskGroup() as group:
            for key, members in self._gateways.items():
                group.create_task(self._poll_gateway(key, members, results))
        return results

    async def _connection(self, key: tuple[str, int]) -> RawConnection:
        connection = self._connections.get(key)
        if connection is not None and connection.connected:
            return connection
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(self.timeout_s):
            _, connection = await loop.create_connection(RawConnection, *key)
        self._connections[key] = connection
        return connection

    async def _read(self, key: tuple[str, int], unit_id: int, block: ReadBlock) -> tuple[int, ...]:
        attempt = 0
        while True:
            try:
                connection = await self._connection(key)
                self.sent += 1
                return await connection.read(
                    unit_id, block.function_code, block.address, block.count, self.timeout_s
                )
            except (RawModbusError, TimeoutError, OSError):
                attempt += 1
                if attempt > self.retries:
                    raise
            if self.backoff_s:
                await asyncio.sleep(self.backoff_s * 2 ** (attempt - 1))

    async def _poll_gateway(
        self,
        key: tuple[str, int],
        members: Sequence[tuple[int, MeterEndpoint]],
        results: list[Reading | None],
    ) -> None:
        plans = self._plans
        for index, endpoint in members:
            plan = plans[endpoint.model]
            polled_at = self.clock()
            registers: dict[ReadBlock, Sequence[int]] = {}
            try:
                for block in plan.blocks:
                    registers[block] = await self._read(key, endpoint.unit_id, block)
            except (RawModbusError, TimeoutError, OSError):
                continue
            values = plan.decoder.decode(registers)
            results[index] = make_reading(endpoint.meter_id, plan.register_map, values, polled_at=polled_at)

    def close(self) -> None:
        """Close every connection."""
        for connection in self._connections.values():
            connection.close()
        self._connections.clear()


# --------------------------------------------------------------------------------------------
# Databases
# --------------------------------------------------------------------------------------------


def register_fleet(engine: Engine, endpoints: Sequence[MeterEndpoint]) -> None:
    """A household and its meter for every endpoint, in one transaction (the storage's foreign key)."""
    from market.participants import NewMeter

    harness.seed_market(
        engine,
        {f"HH-{endpoint.meter_id}": "F1" for endpoint in endpoints},
        now=datetime.now(UTC),
        meters=[
            NewMeter(
                meter_id=endpoint.meter_id,
                participant_id=f"HH-{endpoint.meter_id}",
                host=endpoint.host,
                port=endpoint.port,
                unit_id=endpoint.unit_id,
                transport=endpoint.transport,
                model=endpoint.model,
            )
            for endpoint in endpoints
        ],
    )


def store_cycle(engine: Engine, results: Sequence[PollResult]) -> int:
    """Store one cycle's readings with :func:`market.meter_data.store_readings` in one transaction."""
    from market.database import transaction
    from market.meter_data import store_readings

    readings = [result.reading for result in results if result.reading is not None]
    with transaction(engine) as session:
        return store_readings(session, readings)


# --------------------------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------------------------


@dataclass
class Sample:
    """One timed cycle."""

    wall_s: float
    cpu_s: float
    server_cpu_s: float | None
    meters_read: int
    store_s: float | None = None
    others_s: float | None = None
    """CPU time of every other process on the machine during the cycle (PostgreSQL's included)."""

    @property
    def poll_s(self) -> float:
        """The wall time without the store."""
        return self.wall_s - (self.store_s or 0.0)


@dataclass
class Figures:
    """The medians of one client's cycles on one fleet."""

    fleet: str
    client: str
    meters: int
    samples: list[Sample] = field(default_factory=list)

    def median(self, name: str) -> float | None:
        values = [getattr(sample, name) for sample in self.samples]
        known = [value for value in values if value is not None]
        return statistics.median(known) if known else None

    @property
    def wall_s(self) -> float:
        return statistics.median(sample.wall_s for sample in self.samples)

    @property
    def cpu_s(self) -> float:
        return statistics.median(sample.cpu_s for sample in self.samples)

    @property
    def worst_read(self) -> int:
        return min(sample.meters_read for sample in self.samples)


@dataclass
class LaneLatency:
    """One gateway's meters polled alone: the time per request."""

    fleet: str
    client: str
    meters: int
    requests: int
    wall_s: float

    @property
    def per_request_ms(self) -> float:
        return 1000 * self.wall_s / self.requests


@dataclass
class FleetRun:
    """Everything measured on one fleet."""

    name: str
    gateways: int
    meters: int
    requests_per_meter: float
    figures: list[Figures] = field(default_factory=list)
    latencies: list[LaneLatency] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


CycleBody = Callable[[], Awaitable[tuple[int, float | None]]]
"""One cycle to time: returns the meters read (or readings stored) and the seconds spent storing."""


def _delta(before: float | None, after: float | None) -> float | None:
    return None if before is None or after is None else after - before


async def timed(cycle: CycleBody, server: ServerProcess) -> Sample:
    """Run ``cycle`` once and time it: wall, this process's, the server process's and the machine's CPU."""
    machine_before = harness.machine_busy_seconds()
    server_before = server.cpu_seconds()
    cpu_before = time.process_time()
    wall_before = time.perf_counter()
    meters_read, store_s = await cycle()
    wall_s = time.perf_counter() - wall_before
    cpu_s = time.process_time() - cpu_before
    server_s = _delta(server_before, server.cpu_seconds())
    machine_s = _delta(machine_before, harness.machine_busy_seconds())
    others_s = None if machine_s is None or server_s is None else max(0.0, machine_s - cpu_s - server_s)
    return Sample(wall_s, cpu_s, server_s, meters_read, store_s, others_s)


def poller_cycle(poller: Poller) -> CycleBody:
    """A cycle of smartbrum's poller; counts the meters read without error."""

    async def cycle() -> tuple[int, float | None]:
        results = await poller.poll_once()
        return sum(1 for result in results if result.ok), None

    return cycle


def raw_cycle(raw: RawPoller) -> CycleBody:
    """A cycle of the raw client; counts the meters read."""

    async def cycle() -> tuple[int, float | None]:
        readings = await raw.poll_once()
        return sum(1 for reading in readings if reading is not None), None

    return cycle


def stored_cycle(poller: Poller, engine: Engine) -> CycleBody:
    """A cycle of smartbrum's poller, then its readings stored in one transaction; counts rows added."""

    async def cycle() -> tuple[int, float | None]:
        results = await poller.poll_once()
        polled = time.perf_counter()
        added = store_cycle(engine, results)
        return added, time.perf_counter() - polled

    return cycle


async def measure_fleet(
    run: FleetRun,
    endpoints: Sequence[MeterEndpoint],
    server: ServerProcess,
    *,
    settings: PollSettings,
    cycles: int,
    databases: Sequence[str],
    postgres_url: str,
    profile: Path | None,
) -> None:
    """Measure both clients, then the poller with storage, then one lane's latency, on one fleet.

    Parameters
    ----------
    run : FleetRun
        Filled in with the figures.
    endpoints : sequence of MeterEndpoint
        Every meter of the fleet.
    server : ServerProcess
        The running fleet (for its CPU time).
    settings : PollSettings
        The poller's timeout, retries and backoff (the raw client takes the same).
    cycles : int
        Timed cycles per measurement, after one warm-up cycle.
    databases : sequence of str
        ``"sqlite"`` and/or ``"postgresql"``.
    postgres_url : str
        The PostgreSQL database for ``"postgresql"``.
    profile : Path or None
        Where to write cProfile statistics of one more poller cycle.
    """
    raw = RawPoller(
        endpoints, timeout_s=settings.timeout_s, retries=settings.retries, backoff_s=settings.backoff_s
    )
    poller = Poller(endpoints, settings=settings)
    poller_figures = Figures(run.name, "smartbrum Poller", len(endpoints))
    raw_figures = Figures(run.name, "raw asyncio client", len(endpoints))
    try:
        log.info(f"{run.name}: the poller and the raw client, {cycles} cycles each after a warm-up")
        forget_cached_plans()
        await poller.poll_once()  # warm-up: connections made, plans and decoders cached
        await raw.poll_once()
        for _ in range(cycles):  # alternating, so that both clients see the same load
            poller_figures.samples.append(await timed(poller_cycle(poller), server))
            raw_figures.samples.append(await timed(raw_cycle(raw), server))
        run.figures += [poller_figures, raw_figures]
        if profile is not None:
            with harness.profiled(profile):
                await poller.poll_once()
            run.notes.append(f"cProfile of one poller cycle written to {profile}")

        for backend in databases:
            with harness.fresh_database(backend, postgres_url) as database:
                started = time.perf_counter()
                register_fleet(database.engine, endpoints)
                log.info(
                    f"{run.name}: {backend}: {len(endpoints):,} households and meters registered in "
                    f"{time.perf_counter() - started:.1f} s (not timed); {cycles} cycles with storage"
                )
                figures = Figures(run.name, f"Poller + store ({backend})", len(endpoints))
                cycle = stored_cycle(poller, database.engine)
                await cycle()  # warm-up: the statement compiled, the tables' pages cached
                for _ in range(cycles):
                    figures.samples.append(await timed(cycle, server))
                run.figures.append(figures)

        log.info(f"{run.name}: one gateway alone")
        await measure_lane(run, endpoints, settings=settings, cycles=cycles)
    finally:
        await poller.close()
        raw.close()


async def measure_lane(
    run: FleetRun, endpoints: Sequence[MeterEndpoint], *, settings: PollSettings, cycles: int
) -> None:
    """Poll the first gateway's meters alone (every other gateway idle) with both clients.

    Parameters
    ----------
    run : FleetRun
        Its ``latencies`` get one entry per client: the median cycle over the requests sent.
    endpoints : sequence of MeterEndpoint
        The fleet; the meters of the first endpoint's gateway are polled.
    settings : PollSettings
        As for the fleet.
    cycles : int
        Timed cycles per client, after a warm-up cycle.
    """
    lane = [endpoint for endpoint in endpoints if endpoint.port == endpoints[0].port]
    raw = RawPoller(
        lane, timeout_s=settings.timeout_s, retries=settings.retries, backoff_s=settings.backoff_s
    )
    poller = Poller(lane, settings=settings)
    forget_cached_plans()
    requests = requests_for(lane)
    try:
        for client, poll in (("smartbrum Poller", poller.poll_once), ("raw asyncio client", raw.poll_once)):
            await poll()
            walls = []
            for _ in range(cycles):
                start = time.perf_counter()
                await poll()
                walls.append(time.perf_counter() - start)
            run.latencies.append(LaneLatency(run.name, client, len(lane), requests, statistics.median(walls)))
    finally:
        await poller.close()
        raw.close()


def requests_for(endpoints: Sequence[MeterEndpoint]) -> int:
    """Read requests one cycle over ``endpoints`` sends when every meter answers."""
    per_model = {model: len(plan_reads(load_register_map(model))) for model in {e.model for e in endpoints}}
    return sum(per_model[endpoint.model] for endpoint in endpoints)


def forget_cached_plans() -> None:
    """Empty the process-wide plan and decoder caches before a new :class:`Poller`'s first cycle.

    They are keyed by :class:`metering.registers.RegisterMap`, and every ``Poller`` (and the raw
    client) loads maps of its own: equal, not identical. A lookup with a map equal to the cached
    key's but not the same object compares the two maps field by field, quantity by quantity,
    about 7 µs per meter polled (measured with ``--profile``). Emptied, the caches are keyed by the
    ``Poller``'s own maps, as for the first ``Poller`` of a process.
    """
    plan_reads.cache_clear()
    decoder_for.cache_clear()


def bench_fleet(
    gateways: int,
    args: argparse.Namespace,
    settings: PollSettings,
    databases: Sequence[str],
) -> FleetRun:
    """Start the fleet in a server process, measure it, stop it."""
    fleet = MeterFleet.build(
        gateways=gateways,
        meters_per_gateway=args.meters_per_gateway,
        models=args.models,
        host=HOST,
        seed=args.seed,
    )
    name = f"{gateways} x {args.meters_per_gateway}"
    if tuple(args.models) != DEFAULT_MODELS:
        name += f" {'+'.join(args.models)}"
    run = FleetRun(
        name=name,
        gateways=gateways,
        meters=fleet.meter_count,
        requests_per_meter=requests_for(fleet_endpoints(fleet, [1] * len(fleet.gateways)))
        / fleet.meter_count,
    )
    log.info(f"{name}: {fleet.meter_count:,} meters, starting the server process")
    load_before = harness.load_average()
    started = time.perf_counter()
    with ServerProcess(gateways, args.meters_per_gateway, args.models, args.seed, args.serve_limit) as server:
        ports = server.wait_ready()
        log.info(f"{name}: ready in {time.perf_counter() - started:.1f} s; measuring")
        endpoints = fleet_endpoints(fleet, ports)
        asyncio.run(
            measure_fleet(
                run,
                endpoints,
                server,
                settings=settings,
                cycles=args.cycles,
                databases=databases,
                postgres_url=args.postgres_url,
                profile=args.profile,
            )
        )
    run.notes.append(
        f"{name}: load average {load_before:.2f} at the start, {harness.load_average():.2f} at the end"
    )
    return run


# --------------------------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------------------------


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def results_table(runs: Sequence[FleetRun], cycles: int) -> Table:
    """The figures of every fleet and client, medians of ``cycles`` cycles."""
    table = Table(title=f"Polling a fleet of emulated meters (median of {cycles} cycles after a warm-up)")
    for name, justify in (
        ("fleet", "left"),
        ("client", "left"),
        ("meters", "right"),
        ("read", "right"),
        ("cycle s", "right"),
        ("range s", "right"),
        ("meters/s", "right"),
        ("client CPU s", "right"),
        ("CPU µs/meter", "right"),
        ("server CPU s", "right"),
        ("others' CPU s", "right"),
        ("store s", "right"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for run in runs:
        for figures in run.figures:
            walls = [sample.wall_s for sample in figures.samples]
            table.add_row(
                figures.fleet,
                figures.client,
                f"{figures.meters:,}",
                f"{figures.worst_read:,}",
                _fmt(figures.wall_s),
                f"{min(walls):.2f}-{max(walls):.2f}",
                f"{figures.meters / figures.wall_s:,.0f}",
                _fmt(figures.cpu_s),
                f"{1e6 * figures.cpu_s / figures.meters:,.0f}",
                _fmt(figures.median("server_cpu_s"), 2),
                _fmt(figures.median("others_s"), 2),
                _fmt(figures.median("store_s")),
            )
    return table


def latency_table(runs: Sequence[FleetRun]) -> Table:
    """One gateway's meters polled alone: time per request."""
    table = Table(title="One gateway polled alone on loopback (median cycle)")
    for name in ("fleet", "client", "meters", "requests", "lane s", "ms/request", "ms/meter"):
        table.add_column(name, justify="left" if name in ("fleet", "client") else "right")
    for run in runs:
        for latency in run.latencies:
            table.add_row(
                latency.fleet,
                latency.client,
                f"{latency.meters}",
                f"{latency.requests}",
                _fmt(latency.wall_s),
                _fmt(latency.per_request_ms),
                _fmt(1000 * latency.wall_s / latency.meters),
            )
    return table


def meters_per_gateway(cadence_s: float, requests: float, latency_ms: float) -> int:
    """Meters one gateway can poll within ``cadence_s``: cadence / (requests per meter x latency)."""
    return math.floor(cadence_s / (requests * latency_ms / 1000))


def cadence_table(runs: Sequence[FleetRun]) -> Table:
    """Meters per gateway that fit a cadence, for the measured and some typical latencies."""
    requests = runs[-1].requests_per_meter
    table = Table(
        title=f"Meters per gateway within a cadence: cadence / ({requests:.3g} requests x latency); "
        f"a serial bus stops at {BUS_UNIT_LIMIT}"
    )
    table.add_column("request latency", justify="left")
    for cadence in CADENCES_S:
        table.add_column(f"{cadence:g} s", justify="right")
    rows: list[tuple[str, float]] = [
        (f"loopback, {latency.client} ({latency.fleet})", latency.per_request_ms)
        for latency in runs[-1].latencies
    ]
    rows += [(f"{latency:g} ms", latency) for latency in LATENCIES_MS]
    for label, latency_ms in rows:
        cells = []
        for cadence in CADENCES_S:
            fit = meters_per_gateway(cadence, requests, latency_ms)
            cells.append(f"{fit:,}" if fit <= BUS_UNIT_LIMIT else f"{fit:,} → {BUS_UNIT_LIMIT}")
        table.add_row(label, *cells)
    return table


def target_checks(runs: Sequence[FleetRun]) -> harness.TargetChecks:
    """The two target checks on the largest fleet."""
    largest = max(runs, key=lambda run: run.meters)
    by_client = {figures.client: figures for figures in largest.figures}
    checks = harness.TargetChecks()
    stored = [figures for client, figures in by_client.items() if client.startswith("Poller + store")]
    name = f"{TARGET_METERS:,}-meter cycle with storage < {TARGET_CYCLE_S:g} s"
    if largest.meters < TARGET_FLEET_MIN:
        checks.not_run(name, f"largest fleet {largest.meters:,} meters")
    elif not stored:
        checks.not_run(name, "--database none")
    else:
        worst = max(stored, key=lambda figures: figures.wall_s)
        detail = ", ".join(
            f"{figures.client.removeprefix('Poller + store ').strip('()')} {figures.wall_s:.2f} s "
            f"(medians: poll {figures.median('poll_s'):.2f}, store {figures.median('store_s'):.2f})"
            for figures in stored
        )
        checks.target(name, worst.wall_s < TARGET_CYCLE_S, f"{largest.meters:,} meters: {detail}")
    poller, raw = by_client["smartbrum Poller"], by_client["raw asyncio client"]
    ratio = poller.wall_s / raw.wall_s
    checks.target(
        f"within {TARGET_RAW_RATIO:g}x of the raw client",
        ratio <= TARGET_RAW_RATIO,
        f"{largest.name}: wall {ratio:.2f}x, {poller.wall_s:.3f} s against {raw.wall_s:.3f} s; "
        f"client CPU {poller.cpu_s / raw.cpu_s:.2f}x, {poller.cpu_s:.3f} s against {raw.cpu_s:.3f} s",
    )
    return checks


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def _counts(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of whole numbers") from None
    if not values or any(value < 1 for value in values):
        raise argparse.ArgumentTypeError("give at least one count, each 1 or more")
    return values


def _models(text: str) -> list[str]:
    return [part.strip().lower() for part in text.split(",") if part.strip()]


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Poll a fleet of emulated Modbus meters with smartbrum's poller and a raw asyncio client."
    )
    parser.add_argument(
        "--gateways",
        type=_counts,
        default=list(DEFAULT_GATEWAYS),
        help="fleet sizes in gateways, run in turn (10,40)",
    )
    parser.add_argument(
        "--meters-per-gateway",
        type=int,
        default=DEFAULT_METERS_PER_GATEWAY,
        help="meters behind each gateway (247)",
    )
    parser.add_argument(
        "--models", type=_models, default=list(DEFAULT_MODELS), help="meter models, round-robin (sdm630)"
    )
    parser.add_argument(
        "--cycles", type=int, default=5, help="timed cycles per measurement, after a warm-up (5)"
    )
    harness.add_database_arguments(parser, option="--database")
    parser.add_argument("--timeout", type=float, default=1.0, help="seconds per request and per connect (1)")
    parser.add_argument("--retries", type=int, default=1, help="extra attempts per failed request (1)")
    parser.add_argument("--backoff", type=float, default=0.05, help="seconds before the first retry (0.05)")
    parser.add_argument("--seed", type=int, default=20260621, help="the fleet's seed (20260621)")
    parser.add_argument(
        "--serve-limit",
        type=float,
        default=1800.0,
        help="the server process stops by itself after this (1800 s)",
    )
    parser.add_argument(
        "--profile", type=Path, default=None, help="write cProfile stats of one poller cycle here"
    )
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not 1 <= args.meters_per_gateway <= BUS_UNIT_LIMIT:
        parser.error(f"--meters-per-gateway must be 1 to {BUS_UNIT_LIMIT} (a meter's unit ID on the market)")
    if args.cycles < 1:
        parser.error("--cycles must be 1 or more")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark (or, with ``--serve``, the server process); the exit status."""
    args = _arguments(argv)
    if args.serve:
        [gateways] = args.gateways
        return serve(gateways, args.meters_per_gateway, args.models, args.seed, args.serve_limit)
    settings = PollSettings(timeout_s=args.timeout, retries=args.retries, backoff_s=args.backoff)
    databases = harness.chosen_backends(args.database)
    notes: list[str] = []
    if "postgresql" in databases:
        problem = harness.postgres_problem(args.postgres_url)
        if problem is not None:
            if args.database == "postgresql":
                log.error(f"PostgreSQL at {args.postgres_url} is not reachable: {problem}")
                return 1
            databases.remove("postgresql")
            notes.append(f"PostgreSQL skipped: {problem}")
    console = harness.figures_console()
    notes_line = harness.machine_notes(
        packages=("pymodbus", "sqlalchemy", "psycopg"), backends=databases, postgres_url=args.postgres_url
    )
    console.print(
        f"{notes_line}; poll settings timeout {args.timeout:g} s, retries {args.retries}, "
        f"backoff {args.backoff:g} s",
        soft_wrap=True,
    )
    runs = [bench_fleet(gateways, args, settings, databases) for gateways in args.gateways]
    console.print(results_table(runs, args.cycles))
    console.print(latency_table(runs))
    console.print(cadence_table(runs))
    checks = target_checks(runs)
    for note in notes:
        checks.note(f"note: {note}")
    for run in runs:
        incomplete = [figures.client for figures in run.figures if figures.worst_read < figures.meters]
        if incomplete:
            checks.problem(
                f"note: {run.name}: cycles that read fewer meters than the fleet has: {', '.join(incomplete)}"
            )
        for note in run.notes:
            checks.note(f"note: {note}")
    checks.print(console)
    return 0 if checks.passed else 1


if __name__ == "__main__":
    sys.exit(main())
