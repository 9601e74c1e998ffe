"""Polling many meters over Modbus: a lane per gateway, lanes in parallel, a breaker per meter.

A gateway (a Modbus TCP port, or an RTU-over-TCP converter, or a serial RS485 bus) answers one
request at a time, so the meters behind it are polled in turn over one connection that is kept
between cycles and re-established when it drops: a *lane*. Lanes run concurrently, so a cycle
takes as long as the slowest gateway, not the sum of them. Each meter's poll reads the blocks
:func:`metering.registers.plan_reads` plans for its model, decodes them in bulk and validates them
into a :class:`metering.readings.Reading`; a SunSpec meter's map is discovered on first contact
and remembered.

A meter that keeps failing costs its lane a timeout every cycle; after ``breaker_failures``
failures in a row its :class:`CircuitBreaker` opens and it is skipped (and reported as skipped)
until ``breaker_cooldown_s`` has passed, when one poll probes it again.

Policies
--------
Timeouts and retries
    Every request (and every connection attempt) is bounded by ``timeout_s``; a request that fails
    is retried ``retries`` times after ``backoff_s``, doubling. Exception responses meaning the
    request itself is wrong (illegal function, address or value) are not retried. The pymodbus
    client is made with ``retries=0`` and a longer timeout of its own as a backstop, so that
    retries and timeouts are this module's, the same for every transport.
Partial answers
    A meter that does not answer (timeout, lost connection, gateway exception 10 or 11) is given
    up for the cycle at its first failed block: its other blocks would only cost more timeouts.
    A block answered with an exception does not stop the others: the reading is built from the
    blocks read (the rest decode as NaN and are dropped, lowering its quality) and the result
    carries both the reading and the error.
Unreachable gateways
    When a lane cannot connect, the rest of its meters this cycle are reported unreachable without
    more attempts, and their breakers are left alone: the gateway is down, not the meters.
Stale connections
    After three requests in a row without an answer the lane drops its connection and reconnects
    at the next request, in case the gateway has silently lost it.

May import: the standard library, pymodbus, and :mod:`metering.registers`, :mod:`metering.sunspec`
and :mod:`metering.readings`. Never :mod:`market`, :mod:`optimiser` or :mod:`api`.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import time
from collections import Counter
from collections.abc import Callable, MutableMapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Self

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.client.base import ModbusBaseClient
from pymodbus.constants import ExcCodes
from pymodbus.exceptions import ModbusException
from pymodbus.framer import FramerType
from pymodbus.pdu import ModbusPDU

from metering.readings import Reading, make_reading
from metering.registers import (
    MapError,
    ReadBlock,
    RegisterMap,
    available_models,
    decoder_for,
    load_register_map,
    plan_reads,
)
from metering.sunspec import SUNSPEC_FUNCTION_CODE, SunSpecError, discover_sunspec

__all__ = [
    "TRANSPORTS",
    "BreakerState",
    "CircuitBreaker",
    "LaneKey",
    "MeterEndpoint",
    "MeterReadError",
    "PollResult",
    "PollSettings",
    "Poller",
    "check_meter_model",
    "poll_fleet",
    "read_meter",
    "utc_now",
]

log = logging.getLogger("smartbrum.metering")

TRANSPORTS = ("tcp", "rtu-over-tcp", "rtu")
"""Modbus TCP; RTU frames over a TCP connection (cheap RS485 gateways); RTU on a serial port."""

SUNSPEC_MODEL_PREFIX = "sunspec"
"""An endpoint model starting with this is a SunSpec device: ``sunspec`` for any meter model,
``sunspec203`` to insist on model 203."""

LaneKey = tuple[str, str, int]
"""``(transport, host, port)``: the connection a meter is reached through (for serial RTU,
``(\"rtu\", device, baud rate)``)."""

DROP_CONNECTION_AFTER_TIMEOUTS = 3
"""Requests in a row without an answer after which a lane reconnects (see the module docstring)."""

_PERMANENT_EXCEPTIONS = frozenset(
    {ExcCodes.ILLEGAL_FUNCTION, ExcCodes.ILLEGAL_ADDRESS, ExcCodes.ILLEGAL_VALUE}
)
_NOT_ANSWERED_EXCEPTIONS = frozenset({ExcCodes.GATEWAY_PATH_UNAVIABLE, ExcCodes.GATEWAY_NO_RESPONSE})
_EXCEPTION_NAMES: dict[int, str] = {
    ExcCodes.ILLEGAL_FUNCTION: "illegal function",
    ExcCodes.ILLEGAL_ADDRESS: "illegal data address",
    ExcCodes.ILLEGAL_VALUE: "illegal data value",
    ExcCodes.DEVICE_FAILURE: "server device failure",
    ExcCodes.ACKNOWLEDGE: "acknowledge",
    ExcCodes.DEVICE_BUSY: "server device busy",
    ExcCodes.NEGATIVE_ACKNOWLEDGE: "negative acknowledge",
    ExcCodes.MEMORY_PARITY_ERROR: "memory parity error",
    ExcCodes.GATEWAY_PATH_UNAVIABLE: "gateway path unavailable",
    ExcCodes.GATEWAY_NO_RESPONSE: "gateway target device failed to respond",
}


def check_meter_model(model: str, *, map_dirs: Sequence[Path] = ()) -> None:
    """Refuse a model the poller could not read: one with no register map that is not SunSpec.

    Checked when a meter is registered, so that a typing mistake is an error then, not a meter
    that is never read.

    Raises
    ------
    MapError
        With key ``model`` and a reason naming the known models.
    """
    if model.startswith(SUNSPEC_MODEL_PREFIX):
        return
    known = available_models(extra_dirs=map_dirs)
    if model not in known:
        names = ", ".join([*known, f"{SUNSPEC_MODEL_PREFIX} (discovered)"])
        raise MapError(f"{model!r} is not a known meter model; known models: {names}", key="model")


def utc_now() -> datetime:
    """The current time, UTC (the default clock for ``polled_at``)."""
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class MeterEndpoint:
    """Where a meter is and what it is.

    Attributes
    ----------
    meter_id : str
        The meter's name in readings and results.
    host : str
        The gateway's host name or address; for serial ``rtu``, the serial device
        (``/dev/ttyUSB0``).
    port : int
        The gateway's TCP port; for serial ``rtu``, the baud rate.
    unit_id : int
        The meter's Modbus unit (slave) ID, 0 to 255 (1 to 247 on a serial bus).
    model : str
        A register-map model (``sdm630``...), or ``sunspec`` / ``sunspec203`` for a SunSpec
        device whose map is discovered.
    transport : str
        One of :data:`TRANSPORTS`.
    """

    meter_id: str
    host: str
    port: int
    unit_id: int
    model: str
    transport: str = "tcp"

    def __post_init__(self) -> None:
        if not self.meter_id:
            raise ValueError("meter_id must not be empty")
        if self.transport not in TRANSPORTS:
            raise ValueError(f"{self.meter_id}: transport must be one of {', '.join(TRANSPORTS)}")
        if not self.host:
            raise ValueError(f"{self.meter_id}: host must not be empty")
        top_unit = 247 if self.transport == "rtu" else 255
        if not (isinstance(self.unit_id, int) and 0 <= self.unit_id <= top_unit):
            raise ValueError(f"{self.meter_id}: unit_id must be 0 to {top_unit}, got {self.unit_id!r}")
        if self.transport == "rtu":
            if not (isinstance(self.port, int) and self.port > 0):
                raise ValueError(f"{self.meter_id}: for serial rtu, port is the baud rate, got {self.port!r}")
        elif not (isinstance(self.port, int) and 1 <= self.port <= 0xFFFF):
            raise ValueError(f"{self.meter_id}: port must be 1 to 65535, got {self.port!r}")
        if not self.model or self.model != self.model.strip().lower():
            raise ValueError(f"{self.meter_id}: model must be a lower-case model name, got {self.model!r}")

    @property
    def lane_key(self) -> LaneKey:
        """The connection this meter is polled over."""
        return (self.transport, self.host, self.port)

    @property
    def is_sunspec(self) -> bool:
        """Whether the map is discovered (SunSpec) rather than loaded by model name."""
        return self.model.startswith(SUNSPEC_MODEL_PREFIX)


@dataclass(frozen=True)
class PollSettings:
    """How hard to try each meter.

    Attributes
    ----------
    timeout_s : float
        The longest wait for one answer, or for a connection.
    retries : int
        Extra attempts for a failed request.
    backoff_s : float
        Wait before the first retry; doubles for each further one.
    unit_switch_pause_s : float
        Pause before a request to a different unit ID than the last one on the lane (some RS485
        meters need a silent interval after another device's answer).
    breaker_failures : int
        Failed polls in a row after which a meter is skipped.
    breaker_cooldown_s : float
        How long a skipped meter is left alone before it is probed again.
    """

    timeout_s: float = 1.0
    retries: int = 1
    backoff_s: float = 0.05
    unit_switch_pause_s: float = 0.0
    breaker_failures: int = 3
    breaker_cooldown_s: float = 60.0

    def __post_init__(self) -> None:
        if not self.timeout_s > 0:
            raise ValueError(f"timeout_s must be positive, got {self.timeout_s}")
        if not (isinstance(self.retries, int) and self.retries >= 0):
            raise ValueError(f"retries must be a whole number >= 0, got {self.retries!r}")
        if self.backoff_s < 0 or self.unit_switch_pause_s < 0 or self.breaker_cooldown_s < 0:
            raise ValueError("backoff_s, unit_switch_pause_s and breaker_cooldown_s must not be negative")
        if not (isinstance(self.breaker_failures, int) and self.breaker_failures >= 1):
            raise ValueError(f"breaker_failures must be a whole number >= 1, got {self.breaker_failures!r}")


@dataclass(frozen=True, slots=True)
class PollResult:
    """What one meter's poll gave.

    Attributes
    ----------
    meter_id : str
    reading : Reading or None
        The validated reading; None when nothing could be read.
    error : str or None
        What went wrong; with a reading, the blocks that could not be read.
    attempts : int
        Requests sent for this meter this cycle, retries and SunSpec discovery included.
    skipped : bool
        True when its circuit breaker was open and nothing was sent.
    """

    meter_id: str
    reading: Reading | None
    error: str | None
    attempts: int
    skipped: bool = False

    @property
    def ok(self) -> bool:
        """Whether there is a reading and nothing went wrong."""
        return self.reading is not None and self.error is None


class MeterReadError(RuntimeError):
    """A meter could not be read (:func:`read_meter`)."""

    def __init__(self, endpoint: MeterEndpoint, reason: str) -> None:
        self.endpoint = endpoint
        self.reason = reason
        where = (
            f"serial {endpoint.host} at {endpoint.port} baud"
            if endpoint.transport == "rtu"
            else f"{endpoint.host}:{endpoint.port} ({endpoint.transport})"
        )
        super().__init__(f"{endpoint.meter_id}: unit {endpoint.unit_id} on {where}: {reason}")


# --- circuit breakers ----------------------------------------------------------------------------


class BreakerState(StrEnum):
    """Where a :class:`CircuitBreaker` is."""

    CLOSED = "closed"
    """Polled normally."""
    OPEN = "open"
    """Skipped until the cool-down has passed."""
    HALF_OPEN = "half_open"
    """Cool-down over: the next poll is a probe; success closes, failure reopens."""


class CircuitBreaker:
    """Skips a meter that keeps failing, and probes it again after a cool-down.

    Parameters
    ----------
    failures_to_open : int
        Failures in a row that open it.
    cooldown_s : float
        Seconds it stays open.
    monotonic : callable
        The clock, in seconds (injectable for tests).
    """

    __slots__ = ("_monotonic", "_opened_at_s", "cooldown_s", "failures", "failures_to_open", "state")

    def __init__(
        self,
        *,
        failures_to_open: int = 3,
        cooldown_s: float = 60.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if failures_to_open < 1 or cooldown_s < 0:
            raise ValueError("need failures_to_open >= 1 and cooldown_s >= 0")
        self.failures_to_open = failures_to_open
        self.cooldown_s = cooldown_s
        self.failures = 0
        self.state = BreakerState.CLOSED
        self._monotonic = monotonic
        self._opened_at_s = 0.0

    def allow_request(self) -> bool:
        """Whether to poll now; an open breaker past its cool-down turns half-open and allows a probe."""
        if self.state is BreakerState.OPEN:
            if self._monotonic() - self._opened_at_s < self.cooldown_s:
                return False
            self.state = BreakerState.HALF_OPEN
        return True

    def record_success(self) -> None:
        """The poll worked: close."""
        self.failures = 0
        self.state = BreakerState.CLOSED

    def record_failure(self) -> None:
        """The poll failed: open after enough failures in a row, or at once when it was a probe."""
        self.failures += 1
        if self.state is BreakerState.HALF_OPEN or self.failures >= self.failures_to_open:
            self.state = BreakerState.OPEN
            self._opened_at_s = self._monotonic()

    def seconds_until_probe(self) -> float:
        """How long until an open breaker allows a probe (0 when not open)."""
        if self.state is not BreakerState.OPEN:
            return 0.0
        return max(0.0, self.cooldown_s - (self._monotonic() - self._opened_at_s))

    def __repr__(self) -> str:
        return f"CircuitBreaker({self.state.value}, {self.failures} failures)"


# --- lanes ---------------------------------------------------------------------------------------


class _RequestError(Exception):
    """A request that got no usable answer.

    ``answered``: the device itself answered (with an exception); ``retry``: worth trying again;
    ``connection``: the lane could not connect at all.
    """

    def __init__(self, message: str, *, answered: bool = False, retry: bool = True, connection: bool = False):
        super().__init__(message)
        self.answered = answered
        self.retry = retry
        self.connection = connection


def _new_client(key: LaneKey, settings: PollSettings) -> ModbusBaseClient:
    transport, host, port = key
    # The client's own timeout is only a backstop: every await is bounded by asyncio.timeout(timeout_s),
    # and reconnect_delay=0 turns off pymodbus's background reconnection (the lane reconnects itself).
    backstop_s = 2 * settings.timeout_s + 1.0
    if transport == "rtu":
        return AsyncModbusSerialClient(
            host, framer=FramerType.RTU, baudrate=port, timeout=backstop_s, retries=0, reconnect_delay=0
        )
    framer = FramerType.SOCKET if transport == "tcp" else FramerType.RTU
    return AsyncModbusTcpClient(
        host, port=port, framer=framer, timeout=backstop_s, retries=0, reconnect_delay=0
    )


class _Lane:
    """One gateway's connection, used by one meter's request at a time."""

    def __init__(
        self,
        key: LaneKey,
        members: Sequence[tuple[int, MeterEndpoint]],
        *,
        settings: PollSettings,
        clients: MutableMapping[LaneKey, ModbusBaseClient],
    ) -> None:
        self.key = key
        self.members = tuple(members)
        self.settings = settings
        self.clients = clients
        self.sent = 0
        self.down: str | None = None  # why this cycle's remaining meters are unreachable
        self._last_unit: int | None = None
        self._timeouts_in_a_row = 0

    @property
    def where(self) -> str:
        transport, host, port = self.key
        return f"serial {host} at {port} baud" if transport == "rtu" else f"{host}:{port}"

    def _client(self) -> ModbusBaseClient:
        client = self.clients.get(self.key)
        if client is None:
            client = self.clients[self.key] = _new_client(self.key, self.settings)
        return client

    async def _connected_client(self) -> ModbusBaseClient:
        client = self._client()
        if client.connected:
            return client
        client.close()
        connected = False
        try:
            async with asyncio.timeout(self.settings.timeout_s):
                connected = await client.connect()
        except TimeoutError:
            pass
        if not connected:
            client.close()
            raise _RequestError(f"cannot connect to {self.where}", connection=True)
        self._last_unit = None
        return client

    async def request(self, function_code: int, address: int, count: int, unit_id: int) -> Sequence[int]:
        """One read, bounded by the timeout; raises :class:`_RequestError`."""
        client = await self._connected_client()
        pause_s = self.settings.unit_switch_pause_s
        if pause_s and self._last_unit is not None and self._last_unit != unit_id:
            await asyncio.sleep(pause_s)
        self._last_unit = unit_id
        self.sent += 1
        read = client.read_input_registers if function_code == 4 else client.read_holding_registers
        response: ModbusPDU
        try:
            async with asyncio.timeout(self.settings.timeout_s):
                response = await read(address, count=count, device_id=unit_id)
        except TimeoutError:
            self._timeouts_in_a_row += 1
            if self._timeouts_in_a_row >= DROP_CONNECTION_AFTER_TIMEOUTS:
                self._timeouts_in_a_row = 0
                client.close()
            raise _RequestError(f"no answer within {self.settings.timeout_s:g} s") from None
        except ModbusException as exc:  # not connected, or the connection dropped under the request
            client.close()
            raise _RequestError(f"connection to {self.where} lost: {exc}") from None
        self._timeouts_in_a_row = 0
        if response.isError():
            code = response.exception_code
            name = _EXCEPTION_NAMES.get(code, "unknown")
            raise _RequestError(
                f"Modbus exception {code} ({name})",
                answered=code not in _NOT_ANSWERED_EXCEPTIONS,
                retry=code not in _PERMANENT_EXCEPTIONS,
            )
        registers = response.registers
        if len(registers) != count:
            raise _RequestError(f"answered {len(registers)} registers, asked for {count}")
        return registers

    async def read(self, function_code: int, address: int, count: int, unit_id: int) -> Sequence[int]:
        """:meth:`request` with the settings' retries and backoff."""
        settings = self.settings
        attempt = 0
        while True:
            try:
                return await self.request(function_code, address, count, unit_id)
            except _RequestError as failure:
                attempt += 1
                if not failure.retry or attempt > settings.retries:
                    raise
            if settings.backoff_s:
                await asyncio.sleep(settings.backoff_s * 2 ** (attempt - 1))

    def close(self) -> None:
        client = self.clients.get(self.key)
        if client is not None:
            client.close()


# --- the poller ----------------------------------------------------------------------------------


class Poller:
    """Polls a fixed set of meters, keeping connections, breakers and SunSpec maps between cycles.

    What a scheduler job holds and calls every cycle: ``await poller.poll_once()``; ``await
    poller.close()`` at shutdown (or use ``async with``). Cycles do not overlap: a second call
    waits for the first.

    Parameters
    ----------
    endpoints : sequence of MeterEndpoint
        The meters, with distinct ``meter_id``; results come back in this order.
    settings : PollSettings
    clock : callable
        Gives each reading's ``polled_at`` (timezone-aware), called as a meter's poll starts.
    monotonic : callable
        The breakers' clock, in seconds.
    breakers : dict of str to CircuitBreaker, optional
        Breakers by meter ID, shared with the caller; missing ones are added.
    clients : dict of LaneKey to pymodbus client, optional
        Connections by lane, shared with the caller, who then closes them; missing ones are added.
        Without it the poller owns its clients and :meth:`close` closes them.
    sunspec_maps : dict of (LaneKey, int) to RegisterMap, optional
        Discovered SunSpec maps by lane and unit ID, shared with the caller.
    map_dirs : sequence of Path
        User register-map directories.
    sunspec_base_address : int
        Where to look for a SunSpec device's 'SunS' marker first.

    A meter that cannot be polled as configured (a model with no usable register map, a serial
    port already polled at another baud rate, serial without pyserial) is left out, logged once
    and listed in :attr:`unusable`; every cycle reports it as a skipped result, and one such
    meter never stops the others.

    Raises
    ------
    ValueError
        For duplicate meter IDs.
    """

    def __init__(
        self,
        endpoints: Sequence[MeterEndpoint],
        *,
        settings: PollSettings | None = None,
        clock: Callable[[], datetime] = utc_now,
        monotonic: Callable[[], float] = time.monotonic,
        breakers: MutableMapping[str, CircuitBreaker] | None = None,
        clients: MutableMapping[LaneKey, ModbusBaseClient] | None = None,
        sunspec_maps: MutableMapping[tuple[LaneKey, int], RegisterMap] | None = None,
        map_dirs: Sequence[Path] = (),
        sunspec_base_address: int = 40000,
    ) -> None:
        self.endpoints = tuple(endpoints)
        self.settings = settings or PollSettings()
        self.clock = clock
        self.monotonic = monotonic
        self.breakers: MutableMapping[str, CircuitBreaker] = {} if breakers is None else breakers
        self.sunspec_maps: MutableMapping[tuple[LaneKey, int], RegisterMap] = (
            {} if sunspec_maps is None else sunspec_maps
        )
        self.map_dirs = tuple(map_dirs)
        self.sunspec_base_address = sunspec_base_address
        self._owns_clients = clients is None
        self._clients: MutableMapping[LaneKey, ModbusBaseClient] = {} if clients is None else clients
        counts = Counter(endpoint.meter_id for endpoint in self.endpoints)
        duplicates = sorted(meter_id for meter_id, count in counts.items() if count > 1)
        if duplicates:
            raise ValueError(f"meter IDs given twice: {', '.join(duplicates)}")
        #: Meters that cannot be polled as configured, by meter ID, with the reason: each is
        #: reported every cycle as a skipped result and the others are polled as usual.
        self.unusable: dict[str, str] = {}
        self._maps: dict[str, RegisterMap] = {}
        for model in sorted({e.model for e in self.endpoints if not e.is_sunspec}):
            try:
                self._maps[model] = load_register_map(model, extra_dirs=self.map_dirs)
            except MapError as error:
                for endpoint in self.endpoints:
                    if endpoint.model == model:
                        self.unusable[endpoint.meter_id] = f"no usable register map: {error}"
        bauds: dict[str, int] = {}
        serial_available = importlib.util.find_spec("serial") is not None
        for endpoint in self.endpoints:
            if endpoint.transport != "rtu":
                continue
            if not serial_available:
                self.unusable[endpoint.meter_id] = "serial rtu needs pyserial: pip install pyserial"
            elif bauds.setdefault(endpoint.host, endpoint.port) != endpoint.port:
                self.unusable[endpoint.meter_id] = (
                    f"serial port {endpoint.host} is already polled at {bauds[endpoint.host]} baud, "
                    f"not {endpoint.port}"
                )
        for meter_id, reason in sorted(self.unusable.items()):
            log.warning("meter %s is not polled: %s", meter_id, reason)
        by_lane: dict[LaneKey, list[tuple[int, MeterEndpoint]]] = {}
        for index, endpoint in enumerate(self.endpoints):
            if endpoint.meter_id not in self.unusable:
                by_lane.setdefault(endpoint.lane_key, []).append((index, endpoint))
        self._lanes = [
            _Lane(key, members, settings=self.settings, clients=self._clients)
            for key, members in by_lane.items()
        ]
        self._cycle_lock = asyncio.Lock()

    @property
    def lane_keys(self) -> list[LaneKey]:
        """The connections the meters are polled over, one lane each."""
        return [lane.key for lane in self._lanes]

    async def poll_once(self) -> list[PollResult]:
        """Poll every meter once: lanes concurrently, each lane's meters one at a time.

        Returns
        -------
        list of PollResult
            One per endpoint, in the order given. Failures are results, not exceptions.
        """
        async with self._cycle_lock:
            results: list[PollResult | None] = [
                PollResult(e.meter_id, None, f"not polled: {self.unusable[e.meter_id]}", 0, skipped=True)
                if e.meter_id in self.unusable
                else None
                for e in self.endpoints
            ]
            if len(self._lanes) == 1:
                await self._poll_lane(self._lanes[0], results)
            else:
                async with asyncio.TaskGroup() as group:
                    for lane in self._lanes:
                        group.create_task(self._poll_lane(lane, results))
            return [result for result in results if result is not None]

    async def close(self) -> None:
        """Close the connections the poller owns (not those passed in as ``clients``)."""
        if self._owns_clients:
            for lane in self._lanes:
                lane.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.close()

    def breaker(self, meter_id: str) -> CircuitBreaker:
        """The meter's circuit breaker (made on first use)."""
        breaker = self.breakers.get(meter_id)
        if breaker is None:
            breaker = self.breakers[meter_id] = CircuitBreaker(
                failures_to_open=self.settings.breaker_failures,
                cooldown_s=self.settings.breaker_cooldown_s,
                monotonic=self.monotonic,
            )
        return breaker

    async def _poll_lane(self, lane: _Lane, results: list[PollResult | None]) -> None:
        lane.down = None
        for index, endpoint in lane.members:
            results[index] = await self._poll_meter(lane, endpoint)

    async def _poll_meter(self, lane: _Lane, endpoint: MeterEndpoint) -> PollResult:
        meter_id = endpoint.meter_id
        if lane.down is not None:
            return PollResult(meter_id, None, lane.down, 0)
        breaker = self.breaker(meter_id)
        if not breaker.allow_request():
            reason = (
                f"skipped: circuit open after {breaker.failures} failed polls in a row; "
                f"next probe in {breaker.seconds_until_probe():.0f} s"
            )
            return PollResult(meter_id, None, reason, 0, skipped=True)
        sent_before = lane.sent
        errors: list[str] | None = None  # blocks answered with an exception, when others were read
        try:
            register_map = self._maps.get(endpoint.model) or await self._sunspec_map(lane, endpoint)
            polled_at = self.clock()
            blocks: dict[ReadBlock, Sequence[int]] = {}
            unit_id = endpoint.unit_id
            for block in plan_reads(register_map):
                try:
                    blocks[block] = await lane.read(block.function_code, block.address, block.count, unit_id)
                except _RequestError as failure:
                    if not failure.answered:
                        raise
                    where = f"registers {block.address}+{block.count} (function {block.function_code})"
                    errors = [*(errors or ()), f"{where}: {failure}"]
            if not blocks:
                raise _RequestError("; ".join(errors or ()), answered=True)
            values = decoder_for(register_map).decode(blocks)
        except _RequestError as failure:
            attempts = lane.sent - sent_before
            if failure.connection:
                lane.down = f"gateway unreachable: {failure}"
                return PollResult(meter_id, None, lane.down, attempts)
            breaker.record_failure()
            if failure.answered and endpoint.is_sunspec:
                # Rediscover next time: the device may have been replaced or reconfigured.
                self.sunspec_maps.pop((endpoint.lane_key, endpoint.unit_id), None)
            return PollResult(meter_id, None, str(failure), attempts)
        except (SunSpecError, MapError) as exc:
            breaker.record_failure()
            return PollResult(meter_id, None, f"SunSpec discovery: {exc}", lane.sent - sent_before)
        breaker.record_success()
        reading = make_reading(meter_id, register_map, values, polled_at=polled_at)
        return PollResult(meter_id, reading, "; ".join(errors) if errors else None, lane.sent - sent_before)

    async def _sunspec_map(self, lane: _Lane, endpoint: MeterEndpoint) -> RegisterMap:
        key = (endpoint.lane_key, endpoint.unit_id)
        known = self.sunspec_maps.get(key)
        if known is not None:
            return known
        unit_id = endpoint.unit_id

        async def read_holding(address: int, count: int) -> Sequence[int]:
            return await lane.read(SUNSPEC_FUNCTION_CODE, address, count, unit_id)

        try:
            # Probe first: discovery tries every base address in turn and takes any failure as "not
            # here", so a meter that does not answer would cost a timeout at each.
            await read_holding(self.sunspec_base_address, 2)
        except _RequestError as failure:
            if not failure.answered:
                raise
        register_map = await discover_sunspec(
            read_holding, base_address=self.sunspec_base_address, extra_dirs=self.map_dirs
        )
        wanted = endpoint.model.removeprefix(SUNSPEC_MODEL_PREFIX).lstrip("-_")
        if wanted and register_map.model != f"{SUNSPEC_MODEL_PREFIX}-{wanted}":
            raise SunSpecError(f"expected SunSpec model {wanted}, found {register_map.model}")
        self.sunspec_maps[key] = register_map
        return register_map


async def poll_fleet(
    endpoints: Sequence[MeterEndpoint],
    *,
    settings: PollSettings | None = None,
    clock: Callable[[], datetime] = utc_now,
    breakers: MutableMapping[str, CircuitBreaker] | None = None,
    clients: MutableMapping[LaneKey, ModbusBaseClient] | None = None,
    monotonic: Callable[[], float] = time.monotonic,
    sunspec_maps: MutableMapping[tuple[LaneKey, int], RegisterMap] | None = None,
    map_dirs: Sequence[Path] = (),
) -> list[PollResult]:
    """Poll every meter once (a one-off :class:`Poller`; see it for the parameters).

    Pass ``breakers``, ``clients`` and ``sunspec_maps`` to keep them from one call to the next;
    clients passed in are left open for the caller to close.

    Returns
    -------
    list of PollResult
        One per endpoint, in order.
    """
    poller = Poller(
        endpoints,
        settings=settings,
        clock=clock,
        monotonic=monotonic,
        breakers=breakers,
        clients=clients,
        sunspec_maps=sunspec_maps,
        map_dirs=map_dirs,
    )
    try:
        return await poller.poll_once()
    finally:
        await poller.close()


async def read_meter(
    endpoint: MeterEndpoint,
    *,
    settings: PollSettings | None = None,
    clock: Callable[[], datetime] = utc_now,
    map_dirs: Sequence[Path] = (),
) -> Reading:
    """Read one meter once (the CLI's ``meter read``).

    Gives up within about ``(retries + 1) * timeout_s`` plus backoff (2 s by default) when the
    meter or its gateway does not answer.

    Returns
    -------
    Reading
        Validated; check its ``quality``.

    Raises
    ------
    MeterReadError
        When nothing could be read, saying why.
    metering.registers.MapError
        For a model with no register map.
    """
    [result] = await poll_fleet([endpoint], settings=settings, clock=clock, map_dirs=map_dirs)
    if result.reading is None:
        raise MeterReadError(endpoint, result.error or "no reading")
    return result.reading
