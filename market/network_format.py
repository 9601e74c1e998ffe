"""The one network format: TOML in files, the API's JSON with the same keys.

Read by ``smartbrum clear``, ``smartbrum network load`` and the scenarios (as their ``[network]``
table); the API's ``POST /v1/network`` takes the same keys as JSON::

    root = "GSP"                          # the grid supply point, where the backstop trades
    effective_from_utc = 2027-01-01T00:00:00Z   # optional: when the version takes effect
    note = "new feeder on Coventry Road"  # optional

    [tariff]                              # optional: the backstop tariff, p/kWh
    import_p_per_kwh = 24.5
    export_p_per_kwh = 4.1

    [[nodes]]                             # every node below the root, each under its parent
    id = "PRI-1"
    parent = "GSP"
    import_capacity_kwh = 5000            # most kWh per settlement interval into the node
    export_capacity_kwh = 4000            # most kWh per interval up to the parent
    fee_p_per_kwh = 0.4                   # on energy crossing the edge either way (default 0)

Numbers are exact decimals: TOML's numbers, or JSON numbers or strings (``"0.4"``). A
``version_id`` (as ``GET /v1/network`` and ``smartbrum network show --json`` print) is allowed and
ignored, so what was shown can be edited and loaded as a new version. An error
(:class:`NetworkFormatError`) names the file, the key (``nodes[2].parent``) and the reason.

May import the standard library and :mod:`optimiser`; no database, so that ``smartbrum clear``
starts without one.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from optimiser import ClearingInputError, Network, Node, Tariff

__all__ = [
    "NetworkDocument",
    "NetworkFormatError",
    "load_network",
    "network_document",
    "network_toml",
    "parse_network",
]

FILE_KEYS = ("root", "effective_from_utc", "note", "tariff", "nodes", "version_id")
NODE_KEYS = ("id", "parent", "import_capacity_kwh", "export_capacity_kwh", "fee_p_per_kwh")
TARIFF_KEYS = ("import_p_per_kwh", "export_p_per_kwh")
_DECIMAL_TEXT = re.compile(r"-?[0-9]{1,12}(\.[0-9]{1,6})?")


class DocumentError(ValueError):
    """A document (a file of the operator's) that cannot be read: the message names the file, the
    key and the reason.

    Attributes
    ----------
    path : str
        The file (or ``"<network>"``, ``"<scenario>"`` for a document not read from a file).
    key : str
        The dotted key, e.g. ``"nodes[2].parent"``; empty for the document as a whole.
    reason : str
        Why, in words.
    """

    def __init__(self, path: str, key: str, reason: str) -> None:
        self.path = path
        self.key = key
        self.reason = reason
        where = f"{path}: {key}" if key else path
        super().__init__(f"{where}: {reason}")


class NetworkFormatError(DocumentError):
    """A network document that cannot be read."""


@dataclass(frozen=True)
class NetworkDocument:
    """A network document's tree and whatever else it says."""

    network: Network
    tariff: Tariff | None = None
    effective_from_utc: datetime | None = None
    note: str = ""


def parse_network(
    document: Any, *, path: str = "<network>", prefix: str = "", keys: tuple[str, ...] = FILE_KEYS
) -> NetworkDocument:
    """Validate a parsed TOML or JSON document as a network.

    Parameters
    ----------
    document : dict
        As :func:`tomllib.loads` or :func:`json.loads` returns it.
    path : str
        What to call the document in error messages.
    prefix : str
        Put before every key an error names (``"network."`` for a scenario's table).
    keys : tuple of str
        The top-level keys allowed; a scenario's ``[network]`` allows only ``root`` and ``nodes``.

    Raises
    ------
    NetworkFormatError
        Naming the first wrong key and the reason.
    """

    def error(key: str, reason: str) -> NetworkFormatError:
        return NetworkFormatError(path, f"{prefix}{key}" if key else prefix.rstrip("."), reason)

    if not isinstance(document, Mapping):
        raise error("", "must be a table of root and nodes")
    for key in document:
        if key not in keys:
            raise error(str(key), f"unknown key (a network has {', '.join(keys)})")
    root = document.get("root")
    if root is None:
        raise error("root", "missing key (the grid supply point's id)")
    if not isinstance(root, str):
        raise error("root", "must be the grid supply point's id (a string)")
    tables = document.get("nodes", [])
    if not isinstance(tables, list):
        raise error("nodes", "must be an array of tables ([[nodes]])")
    nodes = [_node(table, f"nodes[{i}]", error) for i, table in enumerate(tables)]
    try:
        network = Network(root=root, nodes=tuple(nodes))
    except ClearingInputError as refused:
        raise error(_key_of(refused, nodes), refused.reason) from None
    tariff = None
    if "tariff" in document:
        tariff = _tariff(document["tariff"], error)
    effective = None
    if document.get("effective_from_utc") is not None:
        effective = _moment(document["effective_from_utc"], error)
    note = document.get("note", "")
    if not isinstance(note, str) or len(note) > 500:
        raise error("note", "must be text of at most 500 characters")
    return NetworkDocument(network, tariff, effective, note)


def load_network(path: str | Path) -> NetworkDocument:
    """Read and validate a network file: TOML, or JSON when its name ends in ``.json``.

    Raises
    ------
    NetworkFormatError
        If the file cannot be read, is not TOML or JSON (with the line), or any key is wrong.
    """
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise NetworkFormatError(name, "", f"cannot be read ({error.strerror or error})") from None
    except UnicodeDecodeError:
        raise NetworkFormatError(name, "", "is not UTF-8 text") from None
    if name.endswith(".json"):
        try:
            document = json.loads(text, parse_float=Decimal)
        except json.JSONDecodeError as error:
            raise NetworkFormatError(name, "", f"is not valid JSON ({error})") from None
    else:
        try:
            document = tomllib.loads(text, parse_float=Decimal)
        except tomllib.TOMLDecodeError as error:
            raise NetworkFormatError(name, "", f"is not valid TOML ({error})") from None
    return parse_network(document, path=name)


def network_document(
    network: Network, *, effective_from_utc: datetime | None = None, note: str = ""
) -> dict[str, Any]:
    """The network as the format's document (decimals as text, as the API's JSON has them)."""
    document: dict[str, Any] = {"root": network.root}
    if effective_from_utc is not None:
        document["effective_from_utc"] = effective_from_utc.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if note:
        document["note"] = note
    document["nodes"] = [
        {
            "id": node.id,
            "parent": node.parent,
            "import_capacity_kwh": str(node.import_capacity_kwh),
            "export_capacity_kwh": str(node.export_capacity_kwh),
            "fee_p_per_kwh": str(node.fee_p_per_kwh),
        }
        for node in _tree_order(network)
    ]
    return document


def network_toml(network: Network, *, effective_from_utc: datetime | None = None, note: str = "") -> str:
    """The network as a TOML file in the format, nodes parents first."""
    lines = [f"root = {json.dumps(network.root)}"]
    if effective_from_utc is not None:
        lines.append(f"effective_from_utc = {effective_from_utc.astimezone(UTC).isoformat()}")
    if note:
        lines.append(f"note = {json.dumps(note)}")
    for node in _tree_order(network):
        lines += [
            "",
            "[[nodes]]",
            f"id = {json.dumps(node.id)}",
            f"parent = {json.dumps(node.parent)}",
            f"import_capacity_kwh = {node.import_capacity_kwh}",
            f"export_capacity_kwh = {node.export_capacity_kwh}",
            f"fee_p_per_kwh = {node.fee_p_per_kwh}",
        ]
    return "\n".join(lines) + "\n"


def _tree_order(network: Network) -> list[Node]:
    by_id = {node.id: node for node in network.nodes}
    return [by_id[node_id] for node_id in network.node_ids[1:]]


def _node(table: Any, key: str, error: Any) -> Node:
    if not isinstance(table, Mapping):
        raise error(key, "must be a table")
    for name in table:
        if name not in NODE_KEYS:
            raise error(f"{key}.{name}", f"unknown key (a node has {', '.join(NODE_KEYS)})")
    for name in NODE_KEYS[:4]:
        if name not in table:
            raise error(f"{key}.{name}", "missing key")
    for name in ("id", "parent"):
        if not isinstance(table[name], str):
            raise error(f"{key}.{name}", "must be a string")
    return Node(
        id=table["id"],
        parent=table["parent"],
        import_capacity_kwh=_decimal(table["import_capacity_kwh"], f"{key}.import_capacity_kwh", error),
        export_capacity_kwh=_decimal(table["export_capacity_kwh"], f"{key}.export_capacity_kwh", error),
        fee_p_per_kwh=_decimal(table.get("fee_p_per_kwh", 0), f"{key}.fee_p_per_kwh", error),
    )


def _decimal(value: Any, key: str, error: Any) -> Decimal:
    """An exact, finite, non-negative decimal from TOML or JSON."""
    if isinstance(value, bool) or not isinstance(value, int | Decimal | str):
        raise error(key, f"must be a decimal number, not {value!r}")
    if isinstance(value, str):
        if not _DECIMAL_TEXT.fullmatch(value):
            raise error(key, f"{value!r} is not a decimal number")
        value = Decimal(value)
    number = Decimal(value)
    if not number.is_finite():
        raise error(key, f"{value} is not a finite number")
    if number < 0:
        raise error(key, "must not be negative")
    return number


def _tariff(table: Any, error: Any) -> Tariff:
    if not isinstance(table, Mapping):
        raise error("tariff", "must be a table of import_p_per_kwh and export_p_per_kwh")
    for name in table:
        if name not in TARIFF_KEYS:
            raise error(f"tariff.{name}", "unknown key (a tariff has import_p_per_kwh, export_p_per_kwh)")
    for name in TARIFF_KEYS:
        if name not in table:
            raise error(f"tariff.{name}", "missing key")
    prices = [_decimal(table[name], f"tariff.{name}", error) for name in TARIFF_KEYS]
    try:
        return Tariff(*prices)
    except ClearingInputError as refused:
        raise error(f"tariff.{refused.field}", refused.reason) from None


def _moment(value: Any, error: Any) -> datetime:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise error("effective_from_utc", f"{value!r} is not an ISO 8601 time") from None
    if not isinstance(value, datetime):
        raise error("effective_from_utc", "must be a time with a UTC offset (2027-01-01T00:00:00Z)")
    if value.tzinfo is None:
        raise error("effective_from_utc", "needs a UTC offset (for example 'Z')")
    return value.astimezone(UTC)


def _key_of(refused: ClearingInputError, nodes: list[Node]) -> str:
    """The key of the node an optimiser error is about (``node 'F-3'`` is ``nodes[i]``)."""
    if refused.subject == "network":
        return refused.field or "root"
    about = [i for i, node in enumerate(nodes) if refused.subject == f"node {node.id!r}"]
    if not about:
        return "nodes"
    # A repeated id is found at its second appearance (or its first, when it repeats the root).
    i = about[1] if refused.field == "id" and len(about) > 1 else about[0]
    return f"nodes[{i}].{refused.field}" if refused.field else f"nodes[{i}]"
