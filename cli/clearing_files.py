"""Order books as CSV, networks as TOML, clearing results as JSON: the ``smartbrum clear`` formats.

One path from files to JSON (:func:`clear_files`), shared by the command line and
``bench/clear.py`` so that the benchmark measures what a user runs. A bad file raises
:class:`FileFormatError` with a one-line message naming the file, the line or key and
the reason.

CSV header: ``order_id,participant_id,node,side,quantity_kwh,price_p_per_kwh,submitted_at``
(times in ISO 8601 with a UTC offset). Network TOML: the one network format of
:mod:`market.network_format` (``root``, an optional ``[tariff]`` table and ``[[nodes]]`` tables).
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np

from market.network_format import NetworkFormatError, load_network
from optimiser import (
    ClearingInputError,
    ClearingOptions,
    ClearingResult,
    Network,
    OrderBook,
    Tariff,
    clear_market,
)
from optimiser.book import timestamp_us

CSV_COLUMNS = (
    "order_id",
    "participant_id",
    "node",
    "side",
    "quantity_kwh",
    "price_p_per_kwh",
    "submitted_at",
)
DEFAULT_IMPORT_P_PER_KWH = Decimal("24.5")
DEFAULT_EXPORT_P_PER_KWH = Decimal("4.1")
DEFAULT_ROOT = "GSP"


class FileFormatError(ValueError):
    """A file that cannot be read as an order book or network; the message is one line."""


@dataclass(frozen=True)
class NetworkFile:
    """A network file's tree and, if it has one, its tariff."""

    network: Network
    tariff: Tariff | None


def read_order_book_csv(path: Path) -> OrderBook:
    """Read and validate an order book CSV; every error names the file's line.

    Built for city-sized books: each column is checked and converted in one pass at C speed
    (sets, NumPy), and only a column that fails is walked row by row to name the bad line.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as error:
        raise FileFormatError(f"{path}: cannot be read ({error.strerror or error})") from None
    except UnicodeDecodeError:
        raise FileFormatError(f"{path}: is not UTF-8 text") from None
    header_text, _, body_text = text.partition("\n")
    if tuple(name.strip() for name in header_text.split(",")) != CSV_COLUMNS:
        if not text:
            raise FileFormatError(f"{path}: is empty; expected the header {','.join(CSV_COLUMNS)}")
        raise FileFormatError(f"{path}: line 1: the header must be {','.join(CSV_COLUMNS)}")
    columns = _plain_columns(body_text) or _quoted_columns(path, body_text)
    order_ids, participants, nodes, sides, quantities, prices, times = columns

    def line(i: int) -> str:
        return f"{path}: line {i + 2} (order {order_ids[i]!r})"

    if not set(sides) <= {"buy", "sell"}:
        sides = tuple(side.strip().lower() for side in sides)
        for i, side in enumerate(sides):
            if side not in ("buy", "sell"):
                raise FileFormatError(f"{line(i)}: side must be buy or sell, not {columns[3][i]!r}")
    quantity = _numbers(quantities, "quantity_kwh", line)
    price = _numbers(prices, "price_p_per_kwh", line)
    submitted = _utc_microseconds(times, line)
    try:
        return OrderBook.from_columns(
            order_ids=order_ids,
            participant_ids=participants,
            nodes=nodes,
            is_buy=np.fromiter((side == "buy" for side in sides), bool, len(sides)),
            quantity_kwh=quantity,
            price_p_per_kwh=price,
            submitted_at_us=submitted,
        )
    except ClearingInputError as error:
        where = line(error.index) if error.index is not None else str(path)
        raise FileFormatError(f"{where}: {error.field} {error.reason}") from None


def _plain_columns(body: str) -> list[Sequence[str]] | None:
    """Columns of a body with no quoting, no CRs and no padding, split in one pass; else ``None``.

    That is how machines write order books, and then CSV is exactly "split on newlines and
    commas": one ``str.split`` and seven strided slices, at C speed, where the ``csv`` module
    and a transpose take a second on a city-wide book.
    """
    if '"' in body or "\r" in body or ", " in body:
        return None
    lines = body.count("\n") + (0 if not body or body.endswith("\n") else 1)
    fields = body.replace("\n", ",").split(",") if body else []
    if fields and body.endswith("\n"):
        fields.pop()
    width = len(CSV_COLUMNS)
    if len(fields) != lines * width:
        return None
    return [fields[k::width] for k in range(width)]


def _quoted_columns(path: Path, body: str) -> list[Sequence[str]]:
    """Columns of any other CSV body, through the ``csv`` module; errors name the line."""
    try:
        rows = list(csv.reader(io.StringIO(body, newline=""), skipinitialspace=True))
    except csv.Error as error:
        raise FileFormatError(f"{path}: is not valid CSV ({error})") from None
    width = len(CSV_COLUMNS)
    for i, row in enumerate(rows):
        if len(row) != width:
            raise FileFormatError(f"{path}: line {i + 2}: has {len(row)} fields, expected {width}")
    return list(zip(*rows)) if rows else [()] * width


def _numbers(texts: Sequence[str], name: str, line: Callable[[int], str]) -> np.ndarray:
    try:
        return np.array(texts, dtype=np.float64) if texts else np.zeros(0)
    except ValueError:
        for i, text in enumerate(texts):
            try:
                float(text)
            except ValueError:
                raise FileFormatError(f"{line(i)}: {name} must be a number, not {text!r}") from None
        raise


def _utc_microseconds(texts: Sequence[str], line: Callable[[int], str]) -> np.ndarray:
    """ISO 8601 times with a UTC offset as microseconds since the epoch.

    Times written in UTC with 'Z', as machines write them, are parsed by NumPy in one go;
    any other offset, or a time NumPy refuses, is read row by row with the standard library.
    """
    # NumPy also reads "NaT", "" and a bare year, so only full date-times take the fast path,
    # and a missing time (NaT) falls through to the row-by-row reader, which names the line.
    if all(len(text) >= 17 and text[10] in "T " and text.endswith("Z") for text in texts):
        try:
            parsed = np.array([text[:-1] for text in texts], dtype="datetime64[us]")
        except ValueError:
            parsed = None
        if parsed is not None and not np.isnat(parsed).any():
            return parsed.astype(np.int64)
    submitted = np.empty(len(texts), np.int64)
    for i, text in enumerate(texts):
        try:
            submitted[i] = timestamp_us(datetime.fromisoformat(text.strip()))
        except ValueError as error:
            reason = error.reason if isinstance(error, ClearingInputError) else "is not an ISO 8601 time"
            raise FileFormatError(f"{line(i)}: submitted_at {reason} ({text!r})") from None
    return submitted


def read_network_toml(path: Path) -> NetworkFile:
    """Read and validate a network file (:mod:`market.network_format`); errors name the file and key."""
    try:
        loaded = load_network(path)
    except NetworkFormatError as error:
        raise FileFormatError(str(error)) from None
    return NetworkFile(loaded.network, loaded.tariff)


def resolve_tariff(
    file_tariff: Tariff | None, import_price: Decimal | None, export_price: Decimal | None
) -> Tariff:
    """The tariff in force: command-line prices over the network file's, over the defaults."""
    base = file_tariff or Tariff(DEFAULT_IMPORT_P_PER_KWH, DEFAULT_EXPORT_P_PER_KWH)
    return Tariff(
        import_price if import_price is not None else base.import_p_per_kwh,
        export_price if export_price is not None else base.export_p_per_kwh,
    )


def result_document(result: ClearingResult) -> dict[str, Any]:
    """The JSON document ``smartbrum clear`` prints: quantities in kWh, prices in p/kWh."""
    return {
        "status": result.status,
        "welfare_p": float(result.welfare_p),
        "node_prices": {node: float(price) for node, price in result.node_prices_p_per_kwh.items()},
        "fills": [
            {"order_id": order_id, "cleared_kwh": wh / 1000}
            for order_id, wh in zip(result.order_ids, result.accepted_wh.tolist())
        ],
        "grid_import_kwh": result.grid_import_wh / 1000,
        "grid_export_kwh": result.grid_export_wh / 1000,
        "flows": {node: wh / 1000 for node, wh in result.flows_wh.items()},
        "audit": {
            "price_ranges": {
                node: [_bound(low), _bound(high)]
                for node, (low, high) in result.price_ranges_p_per_kwh.items()
            },
            "solver_prices": result.solver_prices_p_per_kwh,
            "strategy": result.stats.strategy,
            "orders": result.stats.orders,
            "price_levels": result.stats.price_levels,
            "variables": result.stats.variables,
            "constraints": result.stats.constraints,
            "rounds": result.stats.rounds,
            "simplex_iterations": result.stats.simplex_iterations,
            "seconds": {stage: round(value, 6) for stage, value in result.stats.seconds.items()},
        },
    }


def _bound(value: Decimal) -> float | None:
    """A supporting-range end for JSON: ``null`` where the range is open."""
    return float(value) if value.is_finite() else None


def clear_files(
    orders: Path,
    *,
    network: Path | None = None,
    import_price: Decimal | None = None,
    export_price: Decimal | None = None,
    options: ClearingOptions | None = None,
) -> tuple[ClearingResult, str]:
    """Read the files, clear, and render the JSON text: the whole ``smartbrum clear`` path.

    Without a network file every order trades at a single root node, whatever node it
    names. The JSON document's ``audit.seconds`` has the engine's stages and ``read``.
    """
    started = time.perf_counter()
    book = read_order_book_csv(orders)
    if network is None:
        tree, file_tariff = Network.single_node(DEFAULT_ROOT), None
        book = OrderBook(
            order_ids=book.order_ids,
            participant_ids=book.participant_ids,
            nodes=(DEFAULT_ROOT,) * len(book),
            is_buy=book.is_buy,
            quantity_wh=book.quantity_wh,
            price_ticks=book.price_ticks,
            submitted_at_us=book.submitted_at_us,
        )
    else:
        loaded = read_network_toml(network)
        tree, file_tariff = loaded.network, loaded.tariff
    try:
        tariff = resolve_tariff(file_tariff, import_price, export_price)
    except ClearingInputError as error:
        raise FileFormatError(f"tariff: {error.field} {error.reason}") from None
    read = time.perf_counter()
    try:
        result = clear_market(book, tree, tariff, options)
    except ClearingInputError as error:
        where = f"{orders}: line {error.index + 2}" if error.index is not None else str(orders)
        raise FileFormatError(f"{where}: {error}") from None
    document = result_document(result)
    document["audit"]["seconds"]["read"] = round(read - started, 6)
    text = json.dumps(document, separators=(",", ":"))
    return result, text
