"""SunSpec meters: find the meter model on a device, and build a simulated device's registers.

A SunSpec device starts its holding registers with "SunS" (0x5375 0x6E53) at 40000 (the
specification also allows 0 and 50000), then a chain of models, each a two-register header
(model ID, length L) followed by L registers, ending with the marker model ID 0xFFFF. Meters are
models 201 to 204 (integers with power-of-ten scale factors) and 211 to 214 (float32). Where each
quantity sits within a model is data, in ``metering/maps/sunspec.toml``; this module walks the
chain (:func:`discover_sunspec`), turns the layout into a device map at the address it found
(:func:`sunspec_register_map`), and builds the register image a simulator serves
(:func:`sunspec_image`).

Discovery is pure over a read function, so that it runs as well over a pymodbus client as over
an in-memory image in tests.

May import: the standard library and :mod:`metering.registers`. Never :mod:`market`,
:mod:`optimiser` or :mod:`api`.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from metering.registers import (
    MAPS_DIR,
    MODBUS_MAX_REGISTERS,
    SUNSPEC_LAYOUTS_STEM,
    MapError,
    Quantity,
    RegisterMap,
    encode,
    parse_quantity,
    read_toml,
)

__all__ = [
    "COMMON_MODEL_ID",
    "END_MODEL_ID",
    "METER_MODEL_IDS",
    "SUNS_MARKER",
    "SunSpecError",
    "SunSpecModel",
    "discover_sunspec",
    "load_sunspec_models",
    "sunspec_image",
    "sunspec_register_map",
]

SUNS_MARKER = (0x5375, 0x6E53)
"""'SunS' in two registers: the start of a SunSpec register map."""

COMMON_MODEL_ID = 1
COMMON_MODEL_LENGTH = 66
END_MODEL_ID = 0xFFFF
METER_MODEL_IDS = (201, 202, 203, 204, 211, 212, 213, 214)
FALLBACK_BASE_ADDRESSES = (0, 50000)
"""Where the specification also allows the 'SunS' marker, tried after ``base_address``."""

SUNSPEC_FUNCTION_CODE = 3
_HEADER_REGISTERS = 2

ReadHolding = Callable[[int, int], Awaitable[Sequence[int]] | Sequence[int]]
"""``read_holding(address, count)``: the holding registers from ``address``, async or not."""


class SunSpecError(LookupError):
    """The device is not a SunSpec meter: no 'SunS' marker, no meter model, or a broken chain."""


@dataclass(frozen=True)
class SunSpecModel:
    """One SunSpec meter model's layout.

    Attributes
    ----------
    model_id : int
        201 to 204 or 211 to 214.
    description : str
        What kind of meter it is.
    length : int
        The model's standard length L (registers after the two-register header).
    quantities : tuple of Quantity
        The model's quantities, with addresses (and scale-factor addresses) counted from the
        model's ID register.
    source : str
        Where the layout comes from.
    """

    model_id: int
    description: str
    length: int
    quantities: tuple[Quantity, ...]
    source: str = ""


_LAYOUTS_KEYS = frozenset({"description", "source", "max_registers_per_request", "layout", "model"})
_LAYOUT_KEYS = frozenset({"name", "length", "defaults", "quantity"})
_MODEL_KEYS = frozenset({"id", "layout", "description", "quantities"})


def load_sunspec_models(*, extra_dirs: Sequence[Path] = ()) -> dict[int, SunSpecModel]:
    """The SunSpec meter layouts, from the first ``sunspec.toml`` in ``extra_dirs`` or the shipped one.

    Raises
    ------
    MapError
        Naming the file and the key, when the layouts file is malformed.
    """
    for directory in (*map(Path, extra_dirs), MAPS_DIR):
        path = directory / f"{SUNSPEC_LAYOUTS_STEM}.toml"
        if path.is_file():
            stat = path.stat()
            return dict(_load_layouts(str(path.resolve()), stat.st_mtime_ns, stat.st_size))
    raise MapError("no sunspec.toml found", source=str(MAPS_DIR))


@functools.lru_cache(maxsize=16)
def _load_layouts(path: str, _mtime_ns: int, _size: int) -> tuple[tuple[int, SunSpecModel], ...]:
    # Cached by file identity: a simulator builds thousands of images from the same layouts.
    table = read_toml(Path(path))
    try:
        return tuple(_parse_layouts(table).items())
    except MapError as exc:
        raise exc.located(source=path) from None


def _parse_layouts(table: Mapping[str, Any]) -> dict[int, SunSpecModel]:
    _reject(table, _LAYOUTS_KEYS, "")
    source = table.get("source", "")
    layouts: dict[str, tuple[int, dict[str, Quantity]]] = {}
    for index, layout in enumerate(_tables(table, "layout")):
        where = f"layout[{index}]"
        _reject(layout, _LAYOUT_KEYS, where)
        name = layout.get("name")
        length = layout.get("length")
        if not isinstance(name, str) or name in layouts:
            raise MapError(f"{name!r} is missing or not a new layout name", key=f"{where}.name")
        if not isinstance(length, int) or isinstance(length, bool) or not 0 < length <= 0xFFFF:
            raise MapError(f"{length!r} is not a model length", key=f"{where}.length")
        defaults = layout.get("defaults", {})
        if not isinstance(defaults, Mapping):
            raise MapError("must be a table", key=f"{where}.defaults")
        quantities: dict[str, Quantity] = {}
        for q_index, entry in enumerate(_tables(layout, "quantity")):
            q_where = f"{where}.quantity[{q_index}]"
            quantity = parse_quantity(
                {**defaults, **entry},
                where=q_where,
                address_key="offset",
                scale_factor_key="scale_factor_offset",
            )
            q_where = f"{q_where} ({quantity.name})"
            _check_inside(quantity, length, q_where)
            if quantity.name in quantities:
                raise MapError("duplicate quantity name", key=f"{q_where}.name")
            quantities[quantity.name] = quantity
        layouts[name] = (length, quantities)
    models: dict[int, SunSpecModel] = {}
    for index, model in enumerate(_tables(table, "model")):
        where = f"model[{index}]"
        _reject(model, _MODEL_KEYS, where)
        model_id = model.get("id")
        if model_id not in METER_MODEL_IDS or model_id in models:
            raise MapError(f"{model_id!r} is not a new meter model ID 201-204 or 211-214", key=f"{where}.id")
        layout_name = model.get("layout")
        if layout_name not in layouts:
            raise MapError(f"unknown layout {layout_name!r}", key=f"{where}.layout")
        length, available = layouts[layout_name]
        names = model.get("quantities")
        if not isinstance(names, list) or not names:
            raise MapError("must list the model's quantities", key=f"{where}.quantities")
        for name in names:
            if name not in available:
                raise MapError(f"layout {layout_name!r} has no quantity {name!r}", key=f"{where}.quantities")
        models[model_id] = SunSpecModel(
            model_id=model_id,
            description=str(model.get("description", f"SunSpec model {model_id}")),
            length=length,
            quantities=tuple(available[name] for name in names),
            source=str(source),
        )
    if not models:
        raise MapError("no [[model]] tables", key="model")
    return models


def _tables(table: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    entries = table.get(key)
    if not isinstance(entries, list) or not all(isinstance(entry, Mapping) for entry in entries):
        raise MapError(f"expected one or more [[{key}]] tables", key=key)
    return entries


def _reject(table: Mapping[str, Any], allowed: frozenset[str], where: str) -> None:
    for key in table:
        if key not in allowed:
            path = f"{where}.{key}" if where else key
            raise MapError(f"unknown key; expected one of {', '.join(sorted(allowed))}", key=path)


def _check_inside(quantity: Quantity, length: int, where: str) -> None:
    end = _HEADER_REGISTERS + length
    if not _HEADER_REGISTERS <= quantity.address <= end - quantity.register_count:
        raise MapError(
            f"{quantity.address} is outside the model's registers 2..{end - 1}", key=f"{where}.offset"
        )
    sf = quantity.scale_factor_address
    if sf is not None and not _HEADER_REGISTERS <= sf < end:
        raise MapError(
            f"{sf} is outside the model's registers 2..{end - 1}", key=f"{where}.scale_factor_offset"
        )


def sunspec_register_map(
    model_id: int, model_address: int, *, extra_dirs: Sequence[Path] = ()
) -> RegisterMap:
    """The device map of a SunSpec meter model whose ID register is at ``model_address``.

    Parameters
    ----------
    model_id : int
        201 to 204 or 211 to 214.
    model_address : int
        Holding register of the model's ID (the first header register).
    extra_dirs : sequence of Path
        User map directories that may hold their own ``sunspec.toml``.

    Returns
    -------
    RegisterMap
        Model ``sunspec-<id>``, function code 3, absolute addresses.

    Raises
    ------
    SunSpecError
        When the layouts do not describe ``model_id``, or the model would run past register 65535.
    """
    models = load_sunspec_models(extra_dirs=extra_dirs)
    if model_id not in models:
        raise SunSpecError(f"no SunSpec meter layout for model {model_id}; known: {sorted(models)}")
    model = models[model_id]
    if not 0 <= model_address <= 0xFFFF - _HEADER_REGISTERS - model.length + 1:
        raise SunSpecError(f"model {model_id} at {model_address} would run past register 65535")
    quantities = tuple(
        dataclasses.replace(
            q,
            address=model_address + q.address,
            scale_factor_address=None
            if q.scale_factor_address is None
            else model_address + q.scale_factor_address,
        )
        for q in model.quantities
    )
    return RegisterMap(
        model=f"sunspec-{model_id}",
        description=f"{model.description}, model at holding register {model_address}",
        max_registers_per_request=MODBUS_MAX_REGISTERS,
        even_counts=False,
        quantities=quantities,
        source=model.source,
    )


async def _read(read_holding: ReadHolding, address: int, count: int) -> list[int]:
    result = read_holding(address, count)
    registers = list(await result if inspect.isawaitable(result) else result)
    if len(registers) != count:
        raise SunSpecError(f"asked for {count} registers at {address}, got {len(registers)}")
    return registers


async def discover_sunspec(
    read_holding: ReadHolding,
    *,
    base_address: int = 40000,
    fallback_base_addresses: Sequence[int] = FALLBACK_BASE_ADDRESSES,
    extra_dirs: Sequence[Path] = (),
    max_models: int = 100,
) -> RegisterMap:
    """Find a SunSpec device's meter model and return its device map.

    Checks for 'SunS' at ``base_address`` (then at each fallback), walks the model headers to
    the end marker 0xFFFF, and returns the map of the first meter model (201-204, 211-214).

    Parameters
    ----------
    read_holding : callable
        ``read_holding(address, count)`` returning (or awaiting to) the holding registers, such
        as a wrapper round pymodbus's ``read_holding_registers(address, count=count,
        device_id=...)``.
    base_address : int
        Where to look for 'SunS' first.
    fallback_base_addresses : sequence of int
        Where to look next (the specification allows 0 and 50000 as well as 40000).
    extra_dirs : sequence of Path
        User map directories that may hold their own ``sunspec.toml``.
    max_models : int
        The most models to step over before giving up on a chain that never ends.

    Returns
    -------
    RegisterMap
        Model ``sunspec-<id>``, holding registers at the addresses found.

    Raises
    ------
    SunSpecError
        No 'SunS' at any base address, no meter model before the end marker, a model shorter
        than its layout, or a chain that runs past register 65535.
    """
    base = await _find_base(read_holding, (base_address, *fallback_base_addresses))
    layouts = load_sunspec_models(extra_dirs=extra_dirs)
    address = base + len(SUNS_MARKER)
    seen: list[int] = []
    for _ in range(max_models):
        if address > 0xFFFF - 1:
            raise SunSpecError(f"the model chain from {base} runs past register 65535 (models {seen})")
        model_id, length = await _read(read_holding, address, _HEADER_REGISTERS)
        if model_id == END_MODEL_ID:
            raise SunSpecError(f"no SunSpec meter model (201-204, 211-214) at {base}; models found: {seen}")
        seen.append(model_id)
        if model_id in METER_MODEL_IDS and model_id in layouts:
            needed = layouts[model_id].length
            if length < needed:
                raise SunSpecError(
                    f"model {model_id} at {address} has length {length}, its layout needs {needed}"
                )
            return sunspec_register_map(model_id, address, extra_dirs=extra_dirs)
        address += _HEADER_REGISTERS + length
    raise SunSpecError(f"no end marker after {max_models} models from {base}: {seen}")


async def _find_base(read_holding: ReadHolding, candidates: Sequence[int]) -> int:
    errors: list[str] = []
    first_error: Exception | None = None
    for candidate in dict.fromkeys(candidates):
        try:
            registers = await _read(read_holding, candidate, len(SUNS_MARKER))
        except Exception as exc:
            # Devices answer a read of a register they lack with an exception response, and its
            # type depends on the client, so any failure here means "not at this address".
            errors.append(f"{candidate}: {exc}")
            first_error = first_error or exc
            continue
        if tuple(registers) == SUNS_MARKER:
            return candidate
        errors.append(f"{candidate}: {' '.join(f'{r:#06x}' for r in registers)}")
    raise SunSpecError(
        f"no 'SunS' marker (0x5375 0x6E53) at holding registers {'; '.join(errors)}"
    ) from first_error


def sunspec_image(
    model_id: int,
    values: Mapping[str, float],
    *,
    base_address: int = 40000,
    extra_models: Sequence[tuple[int, int]] = (),
    scale_factors: Mapping[int, int] | None = None,
    extra_dirs: Sequence[Path] = (),
) -> dict[int, int]:
    """The holding registers of a SunSpec meter holding ``values``, for simulators and tests.

    'SunS' at ``base_address``, the common model 1 (length 66, manufacturer "smartbrum"), any
    ``extra_models``, the meter model with ``values`` encoded (:func:`metering.registers.encode`,
    scale factors chosen unless given), and the end marker.

    Parameters
    ----------
    model_id : int
        A meter model, 201 to 204 or 211 to 214.
    values : mapping of str to float
        Quantity values; those left out read as zero.
    base_address : int
        Where 'SunS' goes (40000, 0 or 50000 for a standard device).
    extra_models : sequence of (model_id, length)
        Models of zeros placed before the meter (an inverter's 101, say).
    scale_factors : mapping of int to int, optional
        Scale factors by their offset within the model (6 for currents, 15 for voltages...).
    extra_dirs : sequence of Path
        User map directories that may hold their own ``sunspec.toml``.

    Returns
    -------
    dict of int to int
        Holding register address to 16-bit value.
    """
    models = load_sunspec_models(extra_dirs=extra_dirs)
    if model_id not in models:
        raise SunSpecError(f"no SunSpec meter layout for model {model_id}; known: {sorted(models)}")
    image: dict[int, int] = {}
    image[base_address], image[base_address + 1] = SUNS_MARKER
    address = base_address + len(SUNS_MARKER)
    common = [
        *_text("smartbrum", 16),  # Mn
        *_text(f"simulated SunSpec meter {model_id}", 16),  # Md
        *_text("", 8),  # Opt
        *_text("1.0", 8),  # Vr
        *_text(f"SIM{model_id}", 16),  # SN
        1,  # DA
        0x8000,  # Pad
    ]
    for model, length, body in ((COMMON_MODEL_ID, COMMON_MODEL_LENGTH, common), *_blank(extra_models)):
        address = _place(image, address, model, length, body)
    meter = models[model_id]
    register_map = sunspec_register_map(model_id, address, extra_dirs=extra_dirs)
    sf = {address + offset: value for offset, value in (scale_factors or {}).items()}
    _place(image, address, model_id, meter.length, [0] * meter.length)
    for (_, register), value in encode(register_map, values, scale_factors=sf).items():
        image[register] = value
    end = address + _HEADER_REGISTERS + meter.length
    image[end], image[end + 1] = END_MODEL_ID, 0
    return image


def _blank(models: Sequence[tuple[int, int]]) -> list[tuple[int, int, list[int]]]:
    return [(model_id, length, [0] * length) for model_id, length in models]


def _place(image: dict[int, int], address: int, model_id: int, length: int, body: Sequence[int]) -> int:
    image[address], image[address + 1] = model_id, length
    for offset, value in enumerate(body):
        image[address + _HEADER_REGISTERS + offset] = value
    return address + _HEADER_REGISTERS + length


def _text(text: str, registers: int) -> list[int]:
    """ASCII text in ``registers`` registers, two characters each, NUL-padded (SunSpec strings)."""
    data = text.encode("ascii")[: 2 * registers].ljust(2 * registers, b"\0")
    return [data[i] << 8 | data[i + 1] for i in range(0, len(data), 2)]
