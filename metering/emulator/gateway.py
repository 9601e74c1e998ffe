"""One emulated RS485 gateway: a pymodbus server on one TCP port answering for its meters' unit
IDs, one request at a time as a serial bus does, with the meters' faults.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from types import TracebackType
from typing import NamedTuple, Self

from pymodbus.constants import ExcCodes
from pymodbus.framer import FramerType
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from metering.emulator.meters import Fault, SimulatedMeter
from metering.polling import MeterEndpoint

UNANSWERED_HOLD_S = 300.0
"""How long a request that gets no answer is held before the simulator forgets it: beyond any
client's timeout, yet bounded, so that a meter polled every minute for days does not pile them up."""


class RequestRecord(NamedTuple):
    """One request a gateway received, for tests and diagnostics."""

    unit_id: int
    function_code: int
    address: int
    register_count: int
    received_s: float
    """The server's event-loop clock (:meth:`asyncio.AbstractEventLoop.time`) on arrival."""


_FRAMERS = {"socket": FramerType.SOCKET, "rtu": FramerType.RTU}

_SimAction = Callable[
    [int, int, int, int, list[int], list[int] | list[bool] | None], Coroutine[None, None, ExcCodes | None]
]
"""pymodbus's ``SimDevice(action=...)`` hook: (function code, block start, address, count,
the block's registers, values to write or None) -> an exception code or None."""


class Gateway:
    """One Modbus TCP server on one port answering for several meters, as an RS485 gateway does.

    Parameters
    ----------
    host : str
        Address to listen on (``127.0.0.1`` for loopback).
    port : int
        Port to listen on; 0 picks a free one at the first start and keeps it for restarts (give
        a numeric ``host`` then: a name such as ``localhost`` may bind IPv4 and IPv6 on different
        free ports).
    meters : sequence of SimulatedMeter
        The meters behind it, with distinct unit IDs. Requests for other unit IDs get Modbus
        exception 11 (gateway target failed to respond), as from a real gateway.
    framer : str
        ``"socket"`` (Modbus TCP) or ``"rtu"`` (RTU frames over TCP, as cheap RS485 gateways speak).
    request_log_size : int
        How many of the latest requests :attr:`requests` keeps.

    Use as ``async with Gateway(...) as gateway:``, or call :meth:`start` and :meth:`stop`.
    """

    def __init__(
        self,
        host: str,
        port: int,
        meters: Sequence[SimulatedMeter],
        *,
        framer: str = "socket",
        request_log_size: int = 10_000,
    ) -> None:
        if framer not in _FRAMERS:
            raise ValueError(f"framer must be one of {', '.join(_FRAMERS)}, got {framer!r}")
        if not 0 <= port <= 0xFFFF:
            raise ValueError(f"port must be 0 to 65535, got {port}")
        units = [meter.unit_id for meter in meters]
        duplicates = sorted({unit for unit in units if units.count(unit) > 1})
        if duplicates:
            raise ValueError(f"unit IDs used twice on one gateway: {duplicates}")
        self.host = host
        self.framer = framer
        self.meters = tuple(meters)
        self.requests: deque[RequestRecord] = deque(maxlen=request_log_size)
        self._port = port
        self._server: ModbusTcpServer | None = None
        self._sequence = 0
        self._in_flight: set[asyncio.Task[object]] = set()
        self._by_unit = {meter.unit_id: meter for meter in self.meters}

    @property
    def port(self) -> int:
        """The port it listens on (the one picked, once started with port 0)."""
        return self._port

    @property
    def running(self) -> bool:
        """Whether it is listening."""
        return self._server is not None

    @property
    def held_requests(self) -> int:
        """Requests being delayed (:attr:`Fault.LATE`) or held unanswered right now."""
        return len(self._in_flight)

    def meter(self, unit_id: int) -> SimulatedMeter:
        """The meter at ``unit_id``."""
        return self._by_unit[unit_id]

    def endpoints(self) -> list[MeterEndpoint]:
        """How a poller reaches each meter (start first when the port is 0)."""
        if self._port == 0:
            raise RuntimeError("start the gateway first: its port is picked when it starts")
        return [meter.endpoint(host=self.host, port=self._port, framer=self.framer) for meter in self.meters]

    async def start(self) -> None:
        """Start listening (again, on the same port, after :meth:`stop`)."""
        if self._server is not None:
            return
        devices = [
            SimDevice(id=meter.unit_id, simdata=[meter.sim_data()], action=self._action_for(meter))
            for meter in self.meters
        ]
        # Unit ID 0 in pymodbus's simulator answers for every unit ID not configured; without it an
        # unknown unit makes pymodbus log a KeyError traceback and answer "device failure".
        devices.append(
            SimDevice(
                id=0,
                simdata=[SimData(address=0, count=0x10000, values=0, datatype=DataType.REGISTERS)],
                action=_absent_unit,
            )
        )
        server = ModbusTcpServer(
            context=devices, framer=_FRAMERS[self.framer], address=(self.host, self._port)
        )
        try:
            await server.serve_forever(background=True)
        except RuntimeError as exc:  # pymodbus logs the OSError and raises this
            await server.shutdown()
            raise OSError(f"cannot listen on {self.host}:{self._port}: {exc}") from None
        sockets = getattr(server.transport, "sockets", None) or ()
        if sockets:
            self._port = int(sockets[0].getsockname()[1])
        self._server = server

    async def stop(self) -> None:
        """Stop listening, drop the connections and abandon unanswered requests."""
        server, self._server = self._server, None
        if server is None:
            return
        listener = server.transport
        await server.shutdown()
        tasks = list(self._in_flight)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if isinstance(listener, asyncio.AbstractServer):
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await listener.wait_closed()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.stop()

    def _action_for(self, meter: SimulatedMeter) -> _SimAction:
        loop_time = asyncio.get_running_loop().time  # built by start(), inside the server's loop

        async def action(
            function_code: int,
            start_address: int,
            address: int,
            count: int,
            registers: list[int],
            set_values: list[int] | list[bool] | None,
        ) -> ExcCodes | None:
            self._sequence += 1
            meter.requests_received += 1
            self.requests.append(RequestRecord(meter.unit_id, function_code, address, count, loop_time()))
            fault = meter.fault
            if fault is Fault.EXCEPTION:
                return ExcCodes.DEVICE_FAILURE
            if fault is Fault.NO_ANSWER or fault is Fault.LATE:
                await self._wait(meter, fault)
            if set_values is not None:
                return ExcCodes.ILLEGAL_FUNCTION  # meters' measurements are read-only
            meter.fill_registers(registers)
            return None

        return action

    async def _wait(self, meter: SimulatedMeter, fault: Fault) -> None:
        """Delay an answer; hold and drop it (or until :meth:`stop`) when it should never come."""
        task = asyncio.current_task()
        assert task is not None
        self._in_flight.add(task)
        try:
            sequence = self._sequence
            if fault is Fault.LATE:
                await asyncio.sleep(meter.late_s)
                if self._sequence == sequence:
                    return
                # Another request reached the gateway while this meter was slow: a gateway serves its
                # bus one request at a time, so it gave up on this one. (Answering now would also hit
                # a pymodbus server quirk: a response takes the transaction ID of the connection's
                # latest request, so a client would take it as that request's answer.)
            await asyncio.sleep(UNANSWERED_HOLD_S)
            # Drop the request without answering: pymodbus sends a response for whatever the hook
            # returns, and only a handler that ends cancelled sends nothing.
            raise asyncio.CancelledError
        finally:
            self._in_flight.discard(task)

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"Gateway({self.host}:{self._port}, {len(self.meters)} meters, {self.framer}, {state})"


async def _absent_unit(
    function_code: int,
    start_address: int,
    address: int,
    count: int,
    registers: list[int],
    set_values: list[int] | list[bool] | None,
) -> ExcCodes | None:
    return ExcCodes.GATEWAY_NO_RESPONSE
