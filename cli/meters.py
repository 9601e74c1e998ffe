"""The ``smartbrum meter`` commands: register, read, simulate and poll meters.

Heavy imports (the database, pymodbus) happen inside the commands that use them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import signal
import sys
import zlib
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from cli.options import fail, iso_utc

if TYPE_CHECKING:
    from collections.abc import Sequence

    from metering.emulator import Gateway
    from metering.polling import MeterEndpoint, PollResult

meter_app = typer.Typer(help="Household meters over Modbus.", no_args_is_help=True)

#: The keys ``meter read --json`` prints (those the meter's model has), in this order.
READ_KEYS = (
    "voltage_l1_v",
    "voltage_l2_v",
    "voltage_l3_v",
    "current_l1_a",
    "current_l2_a",
    "current_l3_a",
    "power_l1_w",
    "power_l2_w",
    "power_l3_w",
    "power_w",
    "frequency_hz",
    "import_kwh",
    "export_kwh",
)
TRANSPORT_HELP = "tcp, rtu-over-tcp or rtu (serial: HOST is the device, PORT the baud rate)"
#: What ``meter simulate --models sunspec`` serves: a SunSpec three-phase (wye) meter, which
#: ``meter read --model sunspec`` finds by the SunSpec discovery it does for every SunSpec model.
SIMULATED_SUNSPEC = "sunspec203"


def quiet_pymodbus() -> None:
    """Silence pymodbus's own logging ("Failed to connect ...", "Repeating...."): the command says
    in one line what failed."""
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL + 1)


def exact_text(value: float) -> str:
    """A meter's value as the decimal it stands for, without binary float noise.

    A float32 register's 231.41208 widens to the float 231.41207885742188; the shortest decimal
    that reads back as the same float32 is what the meter said. Other values (scaled integers,
    decoded exactly) print as the shortest decimal of their float.
    """
    import numpy as np

    if not math.isfinite(value):
        return repr(value)
    if float(np.float32(value)) == value:
        return np.format_float_positional(np.float32(value), unique=True, trim="-")
    return np.format_float_positional(value, unique=True, trim="-")


def exact_number(value: float) -> float:
    """:func:`exact_text` as a float, which JSON writes as that same short decimal."""
    return float(exact_text(value))


@meter_app.command("add")
def meter_add(
    meter_id: Annotated[str, typer.Argument(help="The meter's id.")],
    participant: Annotated[str, typer.Option(help="The household it belongs to.")],
    host: Annotated[str, typer.Option(help="Gateway host or address.")],
    port: Annotated[int, typer.Option(help="Gateway TCP port.")] = 502,
    unit: Annotated[int, typer.Option(help="Modbus unit id (1 to 247).")] = 1,
    model: Annotated[
        str, typer.Option(help="Register map model (sdm630, sdm120, sdm72, em24, sunspec).")
    ] = "sdm630",
    transport: Annotated[str, typer.Option(help=TRANSPORT_HELP)] = "tcp",
) -> None:
    """Register a household's meter."""
    from cli.options import market_engine, settings_or_fail
    from market.database import transaction
    from market.errors import MarketError
    from market.participants import register_meter

    _known_model(model)
    with market_engine(settings_or_fail()) as engine:
        try:
            with transaction(engine) as session:
                meter = register_meter(
                    session,
                    meter_id=meter_id,
                    participant_id=participant,
                    host=host,
                    port=port,
                    unit_id=unit,
                    transport=transport,
                    model=model,
                    now=datetime.now(UTC),
                    map_dirs=_map_dirs(),
                )
        except MarketError as error:
            raise fail(str(error)) from None
    where = f"{meter.host}:{meter.port} unit {meter.unit_id}"
    print(f"meter {meter.id} of {meter.participant_id}: {meter.model} at {where}")


@meter_app.command("list")
def meter_list(
    participant: Annotated[str | None, typer.Option(help="Only this household's meters.")] = None,
    inactive: Annotated[
        bool, typer.Option("--inactive", help="Include removed (deactivated) meters.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list.")] = False,
) -> None:
    """List the registered meters: id, household, Modbus address, model and whether polled."""
    from sqlmodel import Session

    from cli.options import market_engine, settings_or_fail
    from market.participants import DATA_SERVICE, list_meters

    with market_engine(settings_or_fail()) as engine, Session(engine) as session:
        meters = list_meters(session, participant_id=participant, active=None if inactive else True)
    if as_json:
        print(json.dumps([m.__dict__ for m in meters], indent=1))
        return
    table = Table("id", "household", title=f"{len(meters)} meter{'' if len(meters) == 1 else 's'}")
    table.add_column("address", overflow="fold")  # a host name in full: it is how the meter is reached
    table.add_column("model")
    table.add_column("active")
    for m in meters:
        address = f"{m.host}:{m.port}/{m.unit_id}" + ("" if m.transport == "tcp" else f" {m.transport}")
        if m.transport == DATA_SERVICE:  # read from files, not reached at an address
            address = "national data service (half-hourly files)"
        table.add_row(m.id, m.participant_id, address, m.model, "yes" if m.active else "no")
    Console().print(table)


@meter_app.command("remove")
def meter_remove(meter_id: Annotated[str, typer.Argument(help="The meter's id.")]) -> None:
    """Stop polling a meter.

    A meter with no stored data is deleted and its address freed. One with data is deactivated:
    its history stays for settlement, and so does its hold on its address (host, port, unit),
    which no other meter may take while it is stored.
    """
    from cli.options import market_engine, settings_or_fail
    from market.database import transaction
    from market.errors import MarketError
    from market.participants import remove_meter

    with market_engine(settings_or_fail()) as engine:
        try:
            with transaction(engine) as session:
                meter, deleted = remove_meter(session, meter_id=meter_id)
        except MarketError as error:
            raise fail(str(error)) from None
    where = f"{meter.host}:{meter.port} unit {meter.unit_id}"
    if deleted:
        print(f"meter {meter.id} removed; {where} is free")
    else:
        print(
            f"meter {meter.id} deactivated (its readings stay for settlement); {where} stays reserved by it"
        )


@meter_app.command("read")
def meter_read(
    host: Annotated[str, typer.Option(help="Gateway host or address.")],
    port: Annotated[int, typer.Option(help="Gateway TCP port.")] = 502,
    unit: Annotated[int, typer.Option(help="Modbus unit id.")] = 1,
    model: Annotated[str, typer.Option(help="sdm630, sdm120, sdm72, em24 or sunspec.")] = "sdm630",
    transport: Annotated[str, typer.Option(help=TRANSPORT_HELP)] = "tcp",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each answer.")] = 1.0,
) -> None:
    """Read one meter once and print what it measures, each value the decimal the meter gave."""
    from metering.polling import MeterEndpoint, MeterReadError, PollSettings, read_meter
    from metering.registers import MapError

    _known_model(model)
    quiet_pymodbus()
    try:
        endpoint = MeterEndpoint("cli", host, port, unit, model, transport)
        settings = PollSettings(timeout_s=timeout, retries=1, breaker_failures=1)
    except ValueError as error:
        raise fail(str(error)) from None
    try:
        reading = asyncio.run(read_meter(endpoint, settings=settings, map_dirs=_map_dirs()))
    except (MeterReadError, MapError, OSError) as error:
        raise fail(str(error)) from None
    values = {key: exact_number(reading.values[key]) for key in READ_KEYS if key in reading.values}
    if as_json:
        document = {**values, "read_time": iso_utc(reading.polled_at), "quality": str(reading.quality)}
        if reading.meter_time is not None:
            document["meter_time"] = iso_utc(reading.meter_time)
        if reading.problems:
            document["problems"] = list(reading.problems)
        sys.stdout.write(json.dumps(document) + "\n")
        return
    table = Table(
        "quantity", "value", title=f"{model} at {host}:{port} unit {unit}, {iso_utc(reading.polled_at)}"
    )
    for key, value in values.items():
        table.add_row(key, exact_text(value))
    table.add_row("quality", str(reading.quality))
    for problem in reading.problems:
        table.add_row("problem", problem)
    Console().print(table)


@meter_app.command("simulate")
def meter_simulate(
    gateways: Annotated[int, typer.Option(help="How many gateways (TCP ports).")] = 1,
    meters: Annotated[int, typer.Option(help="Meters behind each gateway (unit ids from 1).")] = 10,
    models: Annotated[
        str,
        typer.Option(
            help="Models, comma-separated, assigned in turn: sdm630, sdm120, sdm72, em24, sunspec "
            f"(a {SIMULATED_SUNSPEC}), sunspec201 to sunspec204, sunspec211 to sunspec214."
        ),
    ] = "sdm630",
    first_port: Annotated[int, typer.Option(help="First gateway's port; the others follow.")] = 5020,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    framer: Annotated[str, typer.Option(help="socket (Modbus TCP) or rtu (RTU over TCP).")] = "socket",
    seed: Annotated[int, typer.Option(help="Seeds the meters' profiles.")] = 0,
) -> None:
    """Serve a fleet of emulated meters over Modbus until interrupted."""
    from metering.emulator import MeterFleet, serve_fleet

    try:
        fleet = MeterFleet.build(
            gateways=gateways,
            meters_per_gateway=meters,
            models=[
                SIMULATED_SUNSPEC if m.strip() == "sunspec" else m.strip()
                for m in models.split(",")
                if m.strip()
            ],
            host=host,
            first_port=first_port,
            framer=framer,
            seed=seed,
        )
    except ValueError as error:
        raise fail(str(error)) from None

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)

        def ready(started: Sequence[Gateway]) -> None:
            for gateway in started:
                count = len(gateway.endpoints())
                print(f"gateway {host}:{gateway.port}: {count} meters ({framer})", flush=True)
            print("serving; Ctrl-C to stop", flush=True)

        await serve_fleet(fleet.build_gateways(), ready=ready, stop=stop)

    try:
        asyncio.run(serve())
    except OSError as error:
        raise fail(str(error)) from None


@meter_app.command("poll")
def meter_poll(
    shard: Annotated[
        str | None, typer.Option(help="I/N: poll only gateways in shard I of N (from 0).")
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each answer.")] = 1.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Poll every registered meter once, store the readings in one transaction, report per meter.

    With --shard I/N several processes (or machines) split the fleet by gateway, each writing
    to the same database.
    """
    from cli.options import market_engine, settings_or_fail
    from market.database import transaction
    from market.meter_data import store_readings
    from market.participants import list_meters
    from metering.polling import MeterEndpoint, PollSettings, poll_fleet

    index, count = _shard(shard)
    quiet_pymodbus()
    with market_engine(settings_or_fail()) as engine:
        with transaction(engine) as session:
            endpoints = [
                MeterEndpoint(m.id, m.host, m.port, m.unit_id, m.model, m.transport)
                for m in list_meters(session, polled=True)
                if m.active and gateway_shard(m.host, m.port, count) == index
            ]
        if not endpoints:
            if as_json:
                print(json.dumps({"meters": [], "read": 0, "polled": 0, "stored": 0}))
            else:
                print("no meters to poll" + (f" in shard {index}/{count}" if count > 1 else ""))
            return
        settings = PollSettings(timeout_s=timeout)
        results = asyncio.run(poll_fleet(endpoints, settings=settings, map_dirs=_map_dirs()))
        readings = [r.reading for r in results if r.reading is not None]
        with transaction(engine) as session:
            stored = store_readings(session, readings)
    if as_json:
        print(json.dumps(_poll_document(endpoints, results, stored), indent=1))
        return
    _report_poll(endpoints, results, stored)


def gateway_shard(host: str, port: int, count: int) -> int:
    """Which of ``count`` shards a gateway belongs to: stable across processes and machines."""
    return zlib.crc32(f"{host}:{port}".encode()) % count


def _shard(text: str | None) -> tuple[int, int]:
    if text is None:
        return 0, 1
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not I/N", param_hint="--shard") from None
    if not (count >= 1 and 0 <= index < count):
        raise typer.BadParameter(f"{text!r}: need 0 <= I < N", param_hint="--shard")
    return index, count


def _map_dirs() -> tuple[Path, ...]:
    """The extra register-map folder from the settings, if any."""
    from cli.options import settings_or_fail

    return settings_or_fail().meter_map_dirs()


def _known_model(model: str) -> None:
    from metering.polling import check_meter_model
    from metering.registers import MapError

    try:
        check_meter_model(model, map_dirs=_map_dirs())
    except MapError as error:
        raise typer.BadParameter(error.reason, param_hint="--model") from None


def _poll_document(
    endpoints: list[MeterEndpoint], results: list[PollResult], stored: int
) -> dict[str, object]:
    by_id = {e.meter_id: e for e in endpoints}
    meters = []
    for result in results:
        endpoint = by_id[result.meter_id]
        entry: dict[str, object] = {
            "meter_id": result.meter_id,
            "host": endpoint.host,
            "port": endpoint.port,
            "unit_id": endpoint.unit_id,
        }
        if result.reading is not None:
            counters = result.reading.values
            entry["status"] = "read"
            entry["quality"] = str(result.reading.quality)
            for key in ("import_kwh", "export_kwh"):
                entry[key] = exact_number(counters[key]) if key in counters else None
        else:
            entry["status"] = "skipped" if result.skipped else "failed"
        entry["error"] = result.error or None
        meters.append(entry)
    good = sum(r.reading is not None for r in results)
    return {"meters": meters, "read": good, "polled": len(results), "stored": stored}


def _report_poll(endpoints: list[MeterEndpoint], results: list[PollResult], stored: int) -> None:
    by_id = {e.meter_id: e for e in endpoints}
    for result in results:
        endpoint = by_id[result.meter_id]
        where = f"{endpoint.host}:{endpoint.port}/{endpoint.unit_id}"
        if result.reading is not None:
            counters = result.reading.values
            imported, exported = (
                exact_text(counters[key]) if key in counters else "-" for key in ("import_kwh", "export_kwh")
            )
            line = (
                f"{result.meter_id} {where}: {result.reading.quality}, "
                f"import {imported} kWh, export {exported} kWh"
            )
            if result.error:
                line += f" ({result.error})"
        elif result.skipped:
            line = f"{result.meter_id} {where}: skipped ({result.error})"
        else:
            line = f"{result.meter_id} {where}: failed: {result.error}"
        print(line)
    good = sum(r.reading is not None for r in results)
    print(f"{good} of {len(results)} meters read, {stored} readings stored")
