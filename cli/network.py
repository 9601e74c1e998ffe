"""``smartbrum network`` and ``smartbrum tariff``: the versioned network and backstop tariff.

The network file is the one network format (:mod:`market.network_format`): what ``clear`` reads,
the scenarios' ``[network]`` table, and the API's ``POST /v1/network`` JSON.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from cli.options import fail, iso_utc, market_engine, settings_or_fail, utc_option

if TYPE_CHECKING:
    from market.network import NetworkVersion, TariffVersion

network_app = typer.Typer(help="The network tree, in versions.", no_args_is_help=True)
tariff_app = typer.Typer(help="The backstop tariff, in versions.", no_args_is_help=True)

_FROM_HELP = (
    "When the version takes effect, ISO 8601 with offset (default: the file's effective_from_utc, else now)."
)


@network_app.command("load")
def network_load(
    file: Annotated[Path, typer.Argument(help="Network file: TOML, or the API's JSON (*.json).")],
    from_time: Annotated[str | None, typer.Option("--from", help=_FROM_HELP)] = None,
) -> None:
    """Publish a network file as the version in force from --from; a [tariff] in it is set too.

    The past keeps its network: a version starts after every cleared interval, and keeps every
    node an active household is on.
    """
    from market.database import transaction
    from market.errors import MarketError
    from market.network import publish_network, set_tariff
    from market.network_format import NetworkFormatError, load_network

    try:
        loaded = load_network(file)
    except NetworkFormatError as error:
        raise fail(str(error)) from None
    now = datetime.now(UTC)
    effective = utc_option(from_time, "--from") or loaded.effective_from_utc or now
    with market_engine(settings_or_fail()) as engine:
        try:
            with transaction(engine) as session:
                version = publish_network(
                    session, network=loaded.network, effective_from_utc=effective, now=now, note=loaded.note
                )
                tariff = None
                if loaded.tariff is not None:
                    tariff = set_tariff(
                        session,
                        import_p_per_kwh=loaded.tariff.import_p_per_kwh,
                        export_p_per_kwh=loaded.tariff.export_p_per_kwh,
                        effective_from_utc=effective,
                        now=now,
                    )
        except MarketError as error:
            raise fail(f"{file}: {_named(error)}") from None
    tree = version.network
    print(
        f"network version {version.id} in force from {iso_utc(version.effective_from_utc)}: "
        f"{len(tree.node_ids) - 1} nodes under {tree.root}"
    )
    if tariff is not None:
        _print_tariff_line(tariff)


@network_app.command("show")
def network_show(
    at: Annotated[str | None, typer.Option(help="In force at, ISO 8601 with offset (default: now).")] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the API's JSON (the network format's keys).")
    ] = False,
) -> None:
    """Show the network version in force: every node, its parent, capacities and fee."""
    from sqlmodel import Session

    from market.errors import MarketError
    from market.network import network_in_force

    moment = utc_option(at, "--at") or datetime.now(UTC)
    with market_engine(settings_or_fail()) as engine, Session(engine) as session:
        try:
            version = network_in_force(session, moment)
        except MarketError as error:
            raise fail(str(error)) from None
    if as_json:
        print(json.dumps(network_json(version), indent=2))
        return
    tree = version.network
    table = Table(
        "node",
        "parent",
        "import kWh",
        "export kWh",
        "fee p/kWh",
        title=f"network version {version.id} from {iso_utc(version.effective_from_utc)}, root {tree.root}",
    )
    by_id = {node.id: node for node in tree.nodes}
    for node_id in tree.node_ids[1:]:
        node = by_id[node_id]
        table.add_row(
            node.id,
            node.parent,
            str(node.import_capacity_kwh),
            str(node.export_capacity_kwh),
            str(node.fee_p_per_kwh),
        )
    Console().print(table)


def network_json(version: NetworkVersion) -> dict[str, Any]:
    """A stored version as the API's ``NetworkPublic`` JSON: the format's keys and ``version_id``."""
    from market.network_format import network_document

    document = network_document(version.network, effective_from_utc=version.effective_from_utc)
    return {"version_id": version.id, **document}


def _named(error: Exception) -> str:
    """A market error, the start time named as the option that sets it."""
    from market.errors import MarketError

    if isinstance(error, MarketError) and error.field == "effective_from_utc":
        return f"--from: {error.reason}"
    return str(error)


def _price(value: str, name: str) -> Decimal:
    try:
        price = Decimal(value)
    except InvalidOperation:
        raise typer.BadParameter(f"{value!r} is not a number", param_hint=name) from None
    if not price.is_finite():
        raise typer.BadParameter(f"{value!r} is not a finite number", param_hint=name)
    return price


@tariff_app.command("set")
def tariff_set(
    import_price: Annotated[str, typer.Option(help="Backstop import tariff, p/kWh (what households pay).")],
    export_price: Annotated[str, typer.Option(help="Backstop export tariff, p/kWh (what they are paid).")],
    from_time: Annotated[
        str | None, typer.Option("--from", help="When it takes effect, ISO 8601 with offset (default: now).")
    ] = None,
) -> None:
    """Set the backstop tariff in force from --from (after every cleared interval)."""
    from market.database import transaction
    from market.errors import MarketError
    from market.network import set_tariff

    import_p = _price(import_price, "--import-price")
    export_p = _price(export_price, "--export-price")
    now = datetime.now(UTC)
    effective = utc_option(from_time, "--from") or now
    with market_engine(settings_or_fail()) as engine:
        try:
            with transaction(engine) as session:
                tariff = set_tariff(
                    session,
                    import_p_per_kwh=import_p,
                    export_p_per_kwh=export_p,
                    effective_from_utc=effective,
                    now=now,
                )
        except MarketError as error:
            raise fail(_named(error)) from None
    _print_tariff_line(tariff)


@tariff_app.command("show")
def tariff_show(
    at: Annotated[str | None, typer.Option(help="In force at, ISO 8601 with offset (default: now).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the API's JSON.")] = False,
) -> None:
    """Show the backstop tariff in force."""
    from sqlmodel import Session

    from market.errors import MarketError
    from market.network import tariff_in_force

    moment = utc_option(at, "--at") or datetime.now(UTC)
    with market_engine(settings_or_fail()) as engine, Session(engine) as session:
        try:
            tariff = tariff_in_force(session, moment)
        except MarketError as error:
            raise fail(str(error)) from None
    if as_json:
        print(json.dumps(tariff_json(tariff), indent=2))
        return
    _print_tariff_line(tariff)


def tariff_json(version: TariffVersion) -> dict[str, Any]:
    """A stored tariff as the API's ``TariffPublic`` JSON (decimals as text)."""
    return {
        "id": version.id,
        "import_p_per_kwh": str(version.tariff.import_p_per_kwh),
        "export_p_per_kwh": str(version.tariff.export_p_per_kwh),
        "effective_from_utc": iso_utc(version.effective_from_utc),
    }


def _print_tariff_line(version: TariffVersion) -> None:
    print(
        f"tariff {version.id} in force from {iso_utc(version.effective_from_utc)}: "
        f"import {version.tariff.import_p_per_kwh} p/kWh, export {version.tariff.export_p_per_kwh} p/kWh"
    )
