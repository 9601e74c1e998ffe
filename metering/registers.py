"""Register maps as data: loading, block-read planning, bulk decoding and encoding.

A meter model's Modbus registers are described by a TOML file, one per model, in
``metering/maps/`` (shipped) or in a user's directory passed as ``extra_dirs``; adding a meter
model needs a file, not code. This module turns such a file into a :class:`RegisterMap`, plans
the fewest block reads that cover it (:func:`plan_reads`), and decodes the registers those reads
return into physical values with one precompiled :class:`struct.Struct` per block
(:class:`Decoder`), because a fleet of 10,000 meters is polled every cycle and a per-value
Python conversion costs some thirty times as much. :func:`encode` is the inverse, for
simulators and tests.

May import: the standard library only (numpy and pymodbus are allowed in :mod:`metering`, but
``struct`` is faster than numpy for blocks of a few dozen registers). Never :mod:`market`,
:mod:`optimiser` or :mod:`api`.

Map file schema
---------------
Top-level keys:

``model`` (text, optional)
    Lower-case name, ``[a-z0-9][a-z0-9_.-]*``; defaults to the file name without ``.toml`` and
    must equal it when given.
``description`` (text, required), ``source`` (text, optional)
    What the meter is, and the document the addresses come from.
``max_registers_per_request`` (integer 1 to 125, required)
    The most registers one read may ask for (Modbus allows 125 for function codes 3 and 4;
    many meters allow fewer).
``even_counts`` (boolean, default false)
    Every request starts at an even address and asks for an even count (Eastron meters hold
    every value in a register pair and reject reads that split one).
``max_gap_registers`` (integer >= 0, optional)
    The most unused registers a read may pass through between two wanted ones; leave it out
    when the device answers for every register in the range.
``[defaults]`` (table, optional)
    Any quantity key except ``name`` and ``address``, applied to every quantity that leaves it
    out.
``[[quantity]]`` (array of tables, at least one), each with:

    ``name``
        Snake case; the standard names (:data:`STANDARD_UNITS`, also the CLI's JSON keys) must
        carry their standard unit.
    ``function_code``
        3 (holding registers) or 4 (input registers).
    ``address``
        0-based register address, 0 to 65535 (TOML takes ``0x48`` as well as ``72``).
    ``type``
        One of :data:`DATA_TYPES`: ``int16 uint16 int32 uint32 acc32 int64 uint64 float32
        float64`` (``acc32`` is SunSpec's unsigned 32-bit accumulator).
    ``word_order``
        ``"high_first"`` or ``"low_first"``: which 16-bit word of a 32- or 64-bit value comes
        first. Required for multi-register types. Bytes within a word are always big-endian,
        as Modbus sends them.
    ``scale``
        Positive multiplier from the raw value to the unit, a number or decimal text
        (``"0.001"``); default 1. Decimal scales are applied as exact fractions, so an integer
        2305 with scale 0.1 decodes to 230.5, not 230.50000000000003.
    ``unit``
        The unit after scaling: ``V``, ``A``, ``W``, ``Hz``, ``kWh``...
    ``min``, ``max``
        The plausible range of the scaled value; readings outside it are rejected by
        :func:`metering.readings.validate`. For integer types the range must fit the type.
    ``scale_factor_address`` (optional)
        SunSpec: the address of an int16 scale factor ``sf`` (-10 to 10); the value is then
        ``raw * 10**sf * scale``.
    ``invalid_raw`` (optional)
        A raw integer that means "not available" (SunSpec's 0x8000 for int16); it decodes to
        NaN.
    ``description`` (optional)
        Free text.

Example::

    model = "sdm630"
    description = "Eastron SDM630 three-phase meter"
    max_registers_per_request = 60
    even_counts = true

    [defaults]
    function_code = 4
    type = "float32"
    word_order = "high_first"

    [[quantity]]
    name = "voltage_l1_v"
    address = 0x00
    unit = "V"
    min = 0
    max = 300

Two quantities may name exactly the same registers (an alias, such as a single-phase meter's
phase power and total power); any other overlap is an error.
"""

from __future__ import annotations

import functools
import itertools
import math
import operator
import re
import struct
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from pathlib import Path
from typing import Any

__all__ = [
    "DATA_TYPES",
    "MAPS_DIR",
    "STANDARD_UNITS",
    "Decoder",
    "MapError",
    "Quantity",
    "ReadBlock",
    "RegisterMap",
    "available_models",
    "decoder_for",
    "encode",
    "find_map_file",
    "load_register_map",
    "parse_quantity",
    "plan_reads",
    "read_register_map",
    "read_toml",
    "register_map_from_table",
]

MAPS_DIR = Path(__file__).with_name("maps")
"""The shipped map files."""

SUNSPEC_LAYOUTS_STEM = "sunspec"
"""``sunspec.toml`` holds SunSpec model layouts, not a device map (see :mod:`metering.sunspec`)."""

MODBUS_MAX_REGISTERS = 125
"""The most registers a Modbus read (function code 3 or 4) may ask for."""

HIGH_FIRST = "high_first"
LOW_FIRST = "low_first"
WORD_ORDERS = (HIGH_FIRST, LOW_FIRST)

SUNSPEC_SF_MIN = -10
SUNSPEC_SF_MAX = 10
SUNSPEC_SF_NOT_IMPLEMENTED = -32768


@dataclass(frozen=True)
class _DataType:
    """How one register type is laid out: its struct code, size in registers and range."""

    code: str
    words: int
    minimum: int | None  # None: floating point
    maximum: int | None


DATA_TYPES: Mapping[str, _DataType] = {
    "int16": _DataType("h", 1, -(2**15), 2**15 - 1),
    "uint16": _DataType("H", 1, 0, 2**16 - 1),
    "int32": _DataType("i", 2, -(2**31), 2**31 - 1),
    "uint32": _DataType("I", 2, 0, 2**32 - 1),
    "acc32": _DataType("I", 2, 0, 2**32 - 1),
    "int64": _DataType("q", 4, -(2**63), 2**63 - 1),
    "uint64": _DataType("Q", 4, 0, 2**64 - 1),
    "float32": _DataType("f", 2, None, None),
    "float64": _DataType("d", 4, None, None),
}

STANDARD_UNITS: Mapping[str, str] = {
    "voltage_l1_v": "V",
    "voltage_l2_v": "V",
    "voltage_l3_v": "V",
    "current_l1_a": "A",
    "current_l2_a": "A",
    "current_l3_a": "A",
    "power_l1_w": "W",
    "power_l2_w": "W",
    "power_l3_w": "W",
    "power_w": "W",
    "frequency_hz": "Hz",
    "import_kwh": "kWh",
    "export_kwh": "kWh",
}
"""The standard quantity names, in display order, with the unit each must have."""

_NAME = re.compile(r"[a-z][a-z0-9_]*")
_MODEL = re.compile(r"[a-z0-9][a-z0-9_.-]*")


class MapError(ValueError):
    """A register map that cannot be used; the message names the file and the key.

    Attributes
    ----------
    source : str or None
        The map file (or other origin) the error is in.
    key : str or None
        The key within it, such as ``quantity[3].address``.
    reason : str
        What is wrong.
    """

    def __init__(self, reason: str, *, source: str | None = None, key: str | None = None) -> None:
        self.reason = reason
        self.source = source
        self.key = key
        prefix = "".join(f"{part}: " for part in (source, key) if part)
        super().__init__(prefix + reason)

    def located(self, *, source: str | None = None, key_prefix: str | None = None) -> MapError:
        """The same error with a source and a key prefix filled in where missing."""
        key = self.key
        if key_prefix:
            key = f"{key_prefix}.{key}" if key else key_prefix
        return MapError(self.reason, source=self.source or source, key=key)


@dataclass(frozen=True)
class Quantity:
    """One measured value: where it lives in the meter's registers and how to read it.

    Attributes
    ----------
    name : str
        Snake-case name with its unit, such as ``import_kwh``.
    function_code : int
        3 (holding registers) or 4 (input registers).
    address : int
        0-based address of its first register.
    data_type : str
        One of :data:`DATA_TYPES`.
    word_order : str
        ``"high_first"`` or ``"low_first"``.
    scale : float
        Multiplier from the raw value to ``unit``.
    unit : str
        Unit of the scaled value.
    minimum, maximum : float
        Plausible range of the scaled value.
    scale_factor_address : int or None
        SunSpec: address (same function code) of the int16 power-of-ten scale factor.
    invalid_raw : int or None
        Raw value meaning "not available"; decodes to NaN.
    """

    name: str
    function_code: int
    address: int
    data_type: str
    word_order: str
    scale: float
    unit: str
    minimum: float
    maximum: float
    scale_factor_address: int | None = None
    invalid_raw: int | None = None

    def __post_init__(self) -> None:
        problem = _quantity_problem(self)
        if problem is not None:
            raise MapError(problem[1], key=problem[0])

    @property
    def register_count(self) -> int:
        """How many 16-bit registers the value occupies."""
        return DATA_TYPES[self.data_type].words

    @property
    def is_integer(self) -> bool:
        """Whether the raw value is an integer (not floating point)."""
        return DATA_TYPES[self.data_type].minimum is not None


@dataclass(frozen=True, order=True)
class ReadBlock:
    """One read request: a function code, the first register and how many registers."""

    function_code: int
    address: int
    count: int


@dataclass(frozen=True)
class RegisterMap:
    """A meter model's registers: what to read, in what limits, and what it means.

    Attributes
    ----------
    model : str
        Lower-case model name (the map file's name).
    description : str
        What the meter is.
    max_registers_per_request : int
        The most registers one read may ask for (1 to 125).
    even_counts : bool
        Whether reads must start at an even address and ask for an even count.
    quantities : tuple of Quantity
        The values to read.
    max_gap_registers : int or None
        The most unused registers a read may pass through; None for no limit.
    source : str
        The document the addresses come from.
    """

    model: str
    description: str
    max_registers_per_request: int
    even_counts: bool
    quantities: tuple[Quantity, ...]
    max_gap_registers: int | None = None
    source: str = ""
    _hash: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        problem = _map_problem(self)
        if problem is not None:
            raise MapError(problem[1], key=problem[0])
        _check_overlaps(self)
        fields = (self.model, self.description, self.max_registers_per_request, self.even_counts)
        object.__setattr__(
            self, "_hash", hash((*fields, self.quantities, self.max_gap_registers, self.source))
        )

    def __hash__(self) -> int:
        # Cached: the plan and decoder caches look maps up on every poll, and hashing every
        # quantity each time would cost more than the decode itself.
        return self._hash

    @property
    def request_limit(self) -> int:
        """The most registers one read may ask for, rounded down to even where counts are even."""
        if self.even_counts:
            return self.max_registers_per_request - self.max_registers_per_request % 2
        return self.max_registers_per_request

    def quantity(self, name: str) -> Quantity:
        """The quantity called ``name``.

        Raises
        ------
        KeyError
            When the map has no such quantity.
        """
        for quantity in self.quantities:
            if quantity.name == name:
                return quantity
        raise KeyError(f"{self.model} has no quantity {name!r}")

    @property
    def names(self) -> tuple[str, ...]:
        """The quantity names, in map order."""
        return tuple(quantity.name for quantity in self.quantities)


# --- loading -------------------------------------------------------------------------------------

_MAP_KEYS = frozenset(
    {
        "model",
        "description",
        "source",
        "max_registers_per_request",
        "even_counts",
        "max_gap_registers",
        "defaults",
        "quantity",
    }
)
_QUANTITY_KEYS = frozenset(
    {
        "name",
        "function_code",
        "address",
        "type",
        "word_order",
        "scale",
        "unit",
        "min",
        "max",
        "scale_factor_address",
        "invalid_raw",
        "description",
    }
)
_DEFAULT_KEYS = _QUANTITY_KEYS - {"name", "address", "description"}


def find_map_file(model: str, *, extra_dirs: Sequence[Path] = ()) -> Path:
    """The file that defines ``model``: the first of ``extra_dirs`` that has it, else the shipped one.

    Parameters
    ----------
    model : str
        Model name (case-insensitive), the file name without ``.toml``.
    extra_dirs : sequence of Path
        User map directories, searched in order before the shipped maps.

    Raises
    ------
    MapError
        When no directory has the model.
    """
    stem = model.strip().lower()
    if not _MODEL.fullmatch(stem):
        raise MapError(f"{model!r} is not a model name", key="model")
    for directory in (*map(Path, extra_dirs), MAPS_DIR):
        candidate = directory / f"{stem}.toml"
        if candidate.is_file():
            return candidate
    known = ", ".join(available_models(extra_dirs=extra_dirs))
    raise MapError(f"no register map for model {model!r}; known models: {known}", key="model")


def load_register_map(model: str, *, extra_dirs: Sequence[Path] = ()) -> RegisterMap:
    """Load a meter model's register map.

    Parameters
    ----------
    model : str
        Model name, such as ``"sdm630"``; see :func:`available_models`.
    extra_dirs : sequence of Path
        User map directories; a file there overrides a shipped map of the same name.

    Returns
    -------
    RegisterMap

    Raises
    ------
    MapError
        When there is no such model, or its file is not a valid map (the message names the file
        and the key).
    """
    path = find_map_file(model, extra_dirs=extra_dirs)
    if path.stem == SUNSPEC_LAYOUTS_STEM:
        raise MapError(
            "sunspec.toml holds SunSpec model layouts; find a SunSpec meter with "
            "metering.sunspec.discover_sunspec",
            source=str(path),
        )
    stat = path.stat()
    return _read_cached(str(path.resolve()), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=256)
def _read_cached(path: str, _mtime_ns: int, _size: int) -> RegisterMap:
    """One map object per file version: the plan and decoder caches then hit on identity, not on
    a field-by-field comparison of equal copies (a changed file is read again)."""
    return read_register_map(Path(path))


def available_models(*, extra_dirs: Sequence[Path] = ()) -> list[str]:
    """The model names :func:`load_register_map` accepts, sorted (SunSpec layouts excluded)."""
    names: set[str] = set()
    for directory in (*map(Path, extra_dirs), MAPS_DIR):
        if directory.is_dir():
            names.update(path.stem for path in directory.glob("*.toml"))
    names.discard(SUNSPEC_LAYOUTS_STEM)
    return sorted(name for name in names if _MODEL.fullmatch(name))


def read_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML file, turning syntax errors into :class:`MapError` naming the file."""
    try:
        with Path(path).open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise MapError(f"not valid TOML: {exc}", source=str(path)) from exc
    except OSError as exc:
        raise MapError(f"cannot read the file: {exc.strerror}", source=str(path)) from exc


def read_register_map(path: Path) -> RegisterMap:
    """Load the register map in one file (see the module docstring for the schema).

    Raises
    ------
    MapError
        Naming the file and the key.
    """
    path = Path(path)
    return register_map_from_table(read_toml(path), source=str(path), default_model=path.stem.lower())


def register_map_from_table(
    table: Mapping[str, Any], *, source: str | None = None, default_model: str | None = None
) -> RegisterMap:
    """Build a :class:`RegisterMap` from a parsed map file.

    Parameters
    ----------
    table : mapping
        The parsed TOML document.
    source : str, optional
        Where it came from, for error messages.
    default_model : str, optional
        The model name when the table has none (the file name); when both are given they must
        agree.

    Raises
    ------
    MapError
        Naming ``source`` and the key.
    """
    try:
        _reject_unknown(table, _MAP_KEYS, "")
        model = table.get("model", default_model)
        if model is None:
            raise MapError("missing", key="model")
        if default_model is not None and model != default_model:
            raise MapError(f"{model!r} does not match the file name {default_model!r}", key="model")
        description = _get(table, "description", str, None)
        max_registers = _get(table, "max_registers_per_request", int, None)
        even_counts = _get(table, "even_counts", bool, False)
        max_gap = None if "max_gap_registers" not in table else _get(table, "max_gap_registers", int, None)
        map_source = _get(table, "source", str, "")
        defaults = table.get("defaults", {})
        if not isinstance(defaults, Mapping):
            raise MapError("must be a table", key="defaults")
        _reject_unknown(defaults, _DEFAULT_KEYS, "defaults")
        entries = table.get("quantity")
        if not isinstance(entries, list) or not entries:
            raise MapError("a map needs at least one [[quantity]] table", key="quantity")
        quantities = []
        for index, entry in enumerate(entries):
            if not isinstance(entry, Mapping):
                raise MapError("must be a table", key=f"quantity[{index}]")
            quantities.append(parse_quantity({**defaults, **entry}, where=f"quantity[{index}]"))
        return RegisterMap(
            model=model,
            description=description,
            max_registers_per_request=max_registers,
            even_counts=even_counts,
            quantities=tuple(quantities),
            max_gap_registers=max_gap,
            source=map_source,
        )
    except MapError as exc:
        raise exc.located(source=source) from None


def parse_quantity(
    table: Mapping[str, Any],
    *,
    where: str = "quantity",
    address_key: str = "address",
    address_base: int = 0,
    scale_factor_key: str = "scale_factor_address",
) -> Quantity:
    """Build a :class:`Quantity` from one ``[[quantity]]`` table.

    Parameters
    ----------
    table : mapping
        The quantity's keys (defaults already merged in).
    where : str
        Its key path for error messages, such as ``quantity[3]``.
    address_key, scale_factor_key : str
        The keys holding the register and scale-factor positions (SunSpec layouts use
        ``offset`` and ``scale_factor_offset``).
    address_base : int
        Added to both positions (a SunSpec model's first register).

    Raises
    ------
    MapError
        Naming the key within ``where``.
    """
    allowed = (_QUANTITY_KEYS - {"address", "scale_factor_address"}) | {address_key, scale_factor_key}
    try:
        _reject_unknown(table, allowed, "")
        data_type = _get(table, "type", str, None)
        words = DATA_TYPES[data_type].words if data_type in DATA_TYPES else 1
        word_order = _get(table, "word_order", str, HIGH_FIRST if words == 1 else None)
        scale_factor = table.get(scale_factor_key)
        invalid_raw = table.get("invalid_raw")
        try:
            return Quantity(
                name=_get(table, "name", str, None),
                function_code=_get(table, "function_code", int, None),
                address=address_base + _get(table, address_key, int, None),
                data_type=data_type,
                word_order=word_order,
                scale=_scale(table.get("scale", 1)),
                unit=_get(table, "unit", str, None),
                minimum=_get(table, "min", float, None),
                maximum=_get(table, "max", float, None),
                scale_factor_address=None
                if scale_factor is None
                else address_base + _get(table, scale_factor_key, int, None),
                invalid_raw=None if invalid_raw is None else _get(table, "invalid_raw", int, None),
            )
        except MapError as exc:
            renamed = {"address": address_key, "scale_factor_address": scale_factor_key}
            raise MapError(exc.reason, key=renamed.get(exc.key or "", exc.key)) from None
    except MapError as exc:
        name = table.get("name")
        label = f"{where} ({name})" if isinstance(name, str) else where
        raise exc.located(key_prefix=label) from None


def _quantity_problem(q: Quantity) -> tuple[str, str] | None:
    """The first thing wrong with a quantity, as (key, reason), or None."""
    if not (isinstance(q.name, str) and _NAME.fullmatch(q.name)):
        return "name", f"{q.name!r} is not a snake-case name"
    if q.function_code not in (3, 4):
        return "function_code", f"{q.function_code!r} is not 3 (holding) or 4 (input registers)"
    if q.data_type not in DATA_TYPES:
        return "type", f"unknown type {q.data_type!r}; expected one of {', '.join(DATA_TYPES)}"
    if q.word_order not in WORD_ORDERS:
        return "word_order", f"{q.word_order!r} is not 'high_first' or 'low_first'"
    if not (_is_int(q.address) and 0 <= q.address <= 0xFFFF):
        return "address", f"{q.address!r} is outside 0..65535"
    if q.address + q.register_count - 1 > 0xFFFF:
        return "address", f"a {q.data_type} at {q.address} runs past register 65535"
    if not (_is_number(q.scale) and math.isfinite(q.scale) and q.scale > 0):
        return "scale", f"{q.scale!r} is not a positive finite number"
    if not (isinstance(q.unit, str) and q.unit.strip()):
        return "unit", "must not be empty"
    expected_unit = STANDARD_UNITS.get(q.name)
    if expected_unit is not None and q.unit != expected_unit:
        return "unit", f"{q.name} must be in {expected_unit}, not {q.unit!r}"
    for key, bound in (("min", q.minimum), ("max", q.maximum)):
        if not _is_number(bound) or math.isnan(bound):
            return key, f"{bound!r} is not a number"
    if q.minimum > q.maximum:
        return "min", f"min {q.minimum} is above max {q.maximum}"
    kind = DATA_TYPES[q.data_type]
    if q.scale_factor_address is not None:
        if not (_is_int(q.scale_factor_address) and 0 <= q.scale_factor_address <= 0xFFFF):
            return "scale_factor_address", f"{q.scale_factor_address!r} is outside 0..65535"
        if kind.minimum is None:
            return "scale_factor_address", f"a scale factor applies to integer types, not {q.data_type}"
    if q.invalid_raw is not None and not (
        kind.minimum is not None
        and kind.maximum is not None
        and _is_int(q.invalid_raw)
        and kind.minimum <= q.invalid_raw <= kind.maximum
    ):
        return "invalid_raw", f"{q.invalid_raw!r} is not a {q.data_type} value"
    if kind.minimum is not None and kind.maximum is not None and q.scale_factor_address is None:
        # The plausible range must be one the type can hold, or a value in range could not be read.
        lowest = kind.minimum * _fraction(q.scale)
        highest = kind.maximum * _fraction(q.scale)
        if not (math.isfinite(q.minimum) and lowest <= Fraction(q.minimum)):
            return "min", f"{q.minimum} is below the lowest {q.data_type} x {q.scale} ({float(lowest)})"
        if not (math.isfinite(q.maximum) and Fraction(q.maximum) <= highest):
            return "max", f"{q.maximum} is above the highest {q.data_type} x {q.scale} ({float(highest)})"
    return None


def _map_problem(m: RegisterMap) -> tuple[str, str] | None:
    """The first thing wrong with a map's own fields and quantity list, as (key, reason), or None."""
    if not (isinstance(m.model, str) and _MODEL.fullmatch(m.model)):
        return "model", f"{m.model!r} is not a lower-case model name"
    if not isinstance(m.description, str):
        return "description", "must be text"
    limit = m.max_registers_per_request
    if not (_is_int(limit) and 1 <= limit <= MODBUS_MAX_REGISTERS):
        return "max_registers_per_request", f"{limit!r} is outside 1..{MODBUS_MAX_REGISTERS}"
    if not isinstance(m.even_counts, bool):
        return "even_counts", "must be true or false"
    if m.even_counts and m.request_limit < 2:
        return "max_registers_per_request", "must be at least 2 when even_counts is true"
    if m.max_gap_registers is not None and not (_is_int(m.max_gap_registers) and m.max_gap_registers >= 0):
        return "max_gap_registers", f"{m.max_gap_registers!r} is not a whole number >= 0"
    if not (isinstance(m.quantities, tuple) and m.quantities):
        return "quantity", "a map needs at least one quantity"
    seen: set[str] = set()
    for q in m.quantities:
        if not isinstance(q, Quantity):
            return "quantity", f"{q!r} is not a Quantity"
        if q.name in seen:
            return f"quantity {q.name!r}.name", "duplicate quantity name"
        seen.add(q.name)
    return None


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _reject_unknown(table: Mapping[str, Any], allowed: Iterable[str], where: str) -> None:
    allowed = frozenset(allowed)
    for key in table:
        if key not in allowed:
            path = f"{where}.{key}" if where else key
            raise MapError(f"unknown key; expected one of {', '.join(sorted(allowed))}", key=path)


def _get(table: Mapping[str, Any], key: str, kind: type, default: Any) -> Any:
    """``table[key]`` checked to be of ``kind``; ``default`` when absent, which None forbids."""
    if key not in table:
        if default is None:
            raise MapError("missing", key=key)
        return default
    value = table[key]
    if kind is int and _is_int(value):
        return value
    if kind is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if kind in (str, bool) and isinstance(value, kind):
        return value
    names = {int: "a whole number", float: "a number", str: "text", bool: "true or false"}
    raise MapError(f"{value!r} is not {names[kind]}", key=key)


def _scale(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise MapError(f"{value!r} is not a number or decimal text", key="scale")
    try:
        scale = Decimal(value) if isinstance(value, str) else Decimal(repr(value))
    except InvalidOperation:
        raise MapError(f"{value!r} is not a decimal number", key="scale") from None
    if not scale.is_finite() or scale <= 0:
        raise MapError(f"{value!r} is not a positive finite number", key="scale")
    return float(scale)


def _fraction(scale: float) -> Fraction:
    """The exact decimal a scale was written as (0.1 is 1/10, not the nearest binary float)."""
    return Fraction(Decimal(repr(scale)))


def _check_overlaps(register_map: RegisterMap) -> None:
    """Reject registers claimed twice (other than exact aliases) and reads that cannot fit."""
    quantities = register_map.quantities
    spans = sorted((q.function_code, q.address, q.address + q.register_count, q.name) for q in quantities)
    by_name = {q.name: q for q in quantities}
    for (fc_a, start_a, end_a, name_a), (fc_b, start_b, end_b, name_b) in itertools.pairwise(spans):
        if fc_a != fc_b or start_b >= end_a:
            continue
        a, b = by_name[name_a], by_name[name_b]
        shape_a = (start_a, end_a, a.data_type, a.word_order, a.scale_factor_address)
        if shape_a != (start_b, end_b, b.data_type, b.word_order, b.scale_factor_address):
            reason = f"registers {start_b}..{end_b - 1} overlap {name_a!r} at {start_a}..{end_a - 1}"
            raise MapError(reason, key=f"quantity {name_b!r}.address")
    taken = {(q.function_code, r) for q in quantities for r in range(q.address, q.address + q.register_count)}
    for q in quantities:
        if q.scale_factor_address is not None and (q.function_code, q.scale_factor_address) in taken:
            reason = f"register {q.scale_factor_address} is a quantity's register"
            raise MapError(reason, key=f"quantity {q.name!r}.scale_factor_address")
    for function_code, units in _read_units(register_map).items():
        for start, end in units:
            if end - start > register_map.request_limit:
                reason = (
                    f"registers {start}..{end - 1} (function code {function_code}) must be read together "
                    f"but exceed the limit of {register_map.request_limit}"
                )
                raise MapError(reason, key="max_registers_per_request")


# --- planning ------------------------------------------------------------------------------------


def _read_units(register_map: RegisterMap) -> dict[int, list[tuple[int, int]]]:
    """Per function code, the sorted disjoint register ranges that must each be read whole.

    A quantity's registers (and a scale factor's) must come in one read; with even counts a
    range is widened to register pairs, and ranges that then share a pair merge.
    """
    spans: dict[int, set[tuple[int, int]]] = {}
    for q in register_map.quantities:
        spans.setdefault(q.function_code, set()).add((q.address, q.address + q.register_count))
        if q.scale_factor_address is not None:
            spans[q.function_code].add((q.scale_factor_address, q.scale_factor_address + 1))
    units: dict[int, list[tuple[int, int]]] = {}
    for function_code, ranges in sorted(spans.items()):
        merged: list[tuple[int, int]] = []
        for start, end in sorted(ranges):
            if register_map.even_counts:
                start, end = start - start % 2, end + end % 2
            if merged and start < merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], end))
            else:
                merged.append((start, end))
        units[function_code] = merged
    return units


@functools.lru_cache(maxsize=512)
def plan_reads(register_map: RegisterMap) -> tuple[ReadBlock, ...]:
    """The fewest read requests that cover every quantity of a map.

    Registers of the same function code are merged into one request when the span fits
    ``max_registers_per_request`` and no gap between wanted registers exceeds
    ``max_gap_registers``; with ``even_counts`` every request starts even and asks for an even
    count. Among plans with the fewest requests the one reading the fewest registers wins.
    Cached per map.

    Parameters
    ----------
    register_map : RegisterMap

    Returns
    -------
    tuple of ReadBlock
        Sorted by function code and address, non-overlapping; every quantity (and SunSpec scale
        factor) lies wholly inside exactly one block.
    """
    limit = register_map.request_limit
    max_gap = register_map.max_gap_registers
    blocks: list[ReadBlock] = []
    for function_code, units in _read_units(register_map).items():
        # best[i]: (requests, registers) for units[i:], cut[i]: where the first block ends.
        n = len(units)
        best: list[tuple[int, int]] = [(0, 0)] * (n + 1)
        cut = [0] * n
        for i in range(n - 1, -1, -1):
            start = units[i][0]
            choice: tuple[int, int] | None = None
            for j in range(i, n):
                if j > i and max_gap is not None and units[j][0] - units[j - 1][1] > max_gap:
                    break
                count = units[j][1] - start
                if count > limit:
                    break
                candidate = (1 + best[j + 1][0], count + best[j + 1][1])
                if choice is None or candidate < choice:
                    choice, cut[i] = candidate, j + 1
            assert choice is not None  # RegisterMap checked every unit fits in one request
            best[i] = choice
        i = 0
        while i < n:
            end = units[cut[i] - 1][1]
            blocks.append(ReadBlock(function_code, units[i][0], end - units[i][0]))
            i = cut[i]
    return tuple(sorted(blocks))


# --- decoding ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Field:
    """One raw value to unpack: a quantity's registers or a SunSpec scale factor register."""

    address: int
    data_type: str
    word_order: str


@dataclass(frozen=True)
class _BlockDecoder:
    block: ReadBlock
    pack_big: struct.Struct
    unpack_big: struct.Struct | None
    pack_little: struct.Struct | None
    unpack_little: struct.Struct | None
    missing: tuple[float, ...]


def _unpack_format(fields: Sequence[_Field], block: ReadBlock, endian: str) -> str:
    parts = [endian]
    position = block.address
    for item in fields:
        gap = item.address - position
        if gap:
            parts.append(f"{2 * gap}x")
        parts.append(DATA_TYPES[item.data_type].code)
        position = item.address + DATA_TYPES[item.data_type].words
    tail = block.address + block.count - position
    if tail:
        parts.append(f"{2 * tail}x")
    return "".join(parts)


class Decoder:
    """Decodes a map's block reads into scaled values, built once per map.

    Each block's registers are packed to bytes and unpacked with one precompiled
    :class:`struct.Struct` holding every value in the block, pad bytes over the gaps. Values
    whose words come low first are unpacked from the registers packed little-endian, which puts
    the low word's bytes first as a little-endian integer or float needs. Scaling is one pass of
    C-level ``map`` calls, except for maps with SunSpec scale factors or "not available" raw
    values, which need a per-value check.

    Use :func:`decoder_for` rather than the constructor: it caches a decoder per map.

    Attributes
    ----------
    register_map : RegisterMap
    blocks : tuple of ReadBlock
        The reads whose registers :meth:`decode` expects (:func:`plan_reads`).
    formats : tuple of str
        The struct formats, one or two per block (never one per value).
    """

    def __init__(self, register_map: RegisterMap) -> None:
        self.register_map = register_map
        self.blocks = plan_reads(register_map)
        fields_index: dict[tuple[int, _Field], int] = {}
        steps: list[_BlockDecoder] = []
        formats: list[str] = []
        field_specs = _fields(register_map)
        for block in self.blocks:
            inside = sorted(
                (
                    item
                    for fc, item in field_specs
                    if fc == block.function_code
                    and block.address <= item.address < block.address + block.count
                ),
                key=lambda item: item.address,
            )
            big = [
                item
                for item in inside
                if item.word_order == HIGH_FIRST or DATA_TYPES[item.data_type].words == 1
            ]
            little = [item for item in inside if item not in big]
            for item in (*big, *little):
                fields_index[(block.function_code, item)] = len(fields_index)
            big_format = _unpack_format(big, block, ">") if big else None
            little_format = _unpack_format(little, block, "<") if little else None
            formats.extend(f for f in (big_format, little_format) if f is not None)
            steps.append(
                _BlockDecoder(
                    block=block,
                    pack_big=struct.Struct(f">{block.count}H"),
                    unpack_big=struct.Struct(big_format) if big_format else None,
                    pack_little=struct.Struct(f"<{block.count}H") if little_format else None,
                    unpack_little=struct.Struct(little_format) if little_format else None,
                    missing=(math.nan,) * len(inside),
                )
            )
        self.formats = tuple(formats)
        self._steps = tuple(steps)
        quantities = register_map.quantities
        self._names = tuple(q.name for q in quantities)
        indices = [fields_index[(q.function_code, _quantity_field(q))] for q in quantities]
        self._select = _selector(indices)
        fractions = [_fraction(q.scale) for q in quantities]
        self._scale = _scaler(
            tuple(f.numerator for f in fractions),
            tuple(f.denominator for f in fractions),
            all_float=not any(q.is_integer for q in quantities),
        )
        self._checked = any(
            q.scale_factor_address is not None or q.invalid_raw is not None for q in quantities
        )
        self._outputs: tuple[tuple[str, int, Fraction, int, int | None], ...] = tuple(
            (q.name, index, fraction, self._scale_factor_index(fields_index, q), q.invalid_raw)
            for q, index, fraction in zip(quantities, indices, fractions)
        )

    @staticmethod
    def _scale_factor_index(fields_index: Mapping[tuple[int, _Field], int], q: Quantity) -> int:
        if q.scale_factor_address is None:
            return -1
        return fields_index[(q.function_code, _Field(q.scale_factor_address, "int16", HIGH_FIRST))]

    def decode(self, blocks: Mapping[ReadBlock, Sequence[int]]) -> dict[str, float]:
        """Scaled values from the registers each planned read returned.

        Parameters
        ----------
        blocks : mapping of ReadBlock to sequence of int
            The registers (0 to 65535) each block in :attr:`blocks` returned. A block that is
            missing (its read failed) gives NaN for its quantities, so that validation names
            them rather than the poll failing whole.

        Returns
        -------
        dict of str to float
            Every quantity of the map. NaN and infinities read from the meter stay as they are
            (never zero): :func:`metering.readings.validate` rejects them.

        Raises
        ------
        ValueError
            When a block has the wrong number of registers or a register outside 0..65535.
        """
        raws: list[float] = []
        for step in self._steps:
            registers = blocks.get(step.block)
            if registers is None:
                raws.extend(step.missing)
                continue
            try:
                if step.unpack_big is not None:
                    raws.extend(step.unpack_big.unpack(step.pack_big.pack(*registers)))
                if step.unpack_little is not None and step.pack_little is not None:
                    raws.extend(step.unpack_little.unpack(step.pack_little.pack(*registers)))
            except struct.error as exc:
                raise ValueError(
                    f"{self.register_map.model}: block {step.block} needs {step.block.count} registers "
                    f"of 0..65535, got {len(registers)}: {exc}"
                ) from None
        if not self._checked:
            return dict(zip(self._names, self._scale(self._select(raws))))
        return {
            name: _checked_value(raws, index, scale, sf_index, invalid)
            for name, index, scale, sf_index, invalid in self._outputs
        }


def _selector(indices: Sequence[int]) -> Callable[[Sequence[float]], Sequence[float]]:
    """A C-level picker of the raw values at ``indices`` (``itemgetter`` returns a bare item for one)."""
    if len(indices) == 1:
        index = indices[0]
        return lambda raws: (raws[index],)
    return operator.itemgetter(*indices)


def _scaler(
    muls: tuple[int, ...], divs: tuple[int, ...], *, all_float: bool
) -> Callable[[Sequence[float]], Iterable[float]]:
    """The cheapest C-level pass applying ``raw * mul / div`` and giving floats.

    None at all when every value is already a float with scale 1, as on Eastron meters.
    """
    if all(m == 1 for m in muls) and all(d == 1 for d in divs):
        return (lambda raws: raws) if all_float else (lambda raws: map(float, raws))
    if all(m == 1 for m in muls):
        return lambda raws: map(operator.truediv, raws, divs)
    if all(d == 1 for d in divs):
        return lambda raws: map(operator.mul, raws, muls)
    return lambda raws: map(operator.truediv, map(operator.mul, raws, muls), divs)


def _checked_value(
    raws: Sequence[float], index: int, scale: Fraction, scale_factor_index: int, invalid_raw: int | None
) -> float:
    raw = raws[index]
    if invalid_raw is not None and raw == invalid_raw:
        return math.nan
    if scale_factor_index < 0:
        return raw * scale.numerator / scale.denominator
    sf = raws[scale_factor_index]
    if sf != sf or not SUNSPEC_SF_MIN <= sf <= SUNSPEC_SF_MAX:  # NaN (block missing) or "not implemented"
        return math.nan
    power = int(sf)
    if power >= 0:
        return raw * scale.numerator * 10**power / scale.denominator
    return raw * scale.numerator / (scale.denominator * 10**-power)


def _quantity_field(quantity: Quantity) -> _Field:
    order = HIGH_FIRST if quantity.register_count == 1 else quantity.word_order
    return _Field(quantity.address, quantity.data_type, order)


def _fields(register_map: RegisterMap) -> list[tuple[int, _Field]]:
    """Every distinct raw value the map needs (aliases share one), with its function code."""
    found: dict[tuple[int, _Field], None] = {}
    for q in register_map.quantities:
        found[(q.function_code, _quantity_field(q))] = None
        if q.scale_factor_address is not None:
            found[(q.function_code, _Field(q.scale_factor_address, "int16", HIGH_FIRST))] = None
    return list(found)


@functools.lru_cache(maxsize=512)
def decoder_for(register_map: RegisterMap) -> Decoder:
    """The :class:`Decoder` for a map, built on first use and cached."""
    return Decoder(register_map)


# --- encoding ------------------------------------------------------------------------------------


def encode(
    register_map: RegisterMap,
    values: Mapping[str, float],
    *,
    scale_factors: Mapping[int, int] | None = None,
) -> dict[tuple[int, int], int]:
    """The registers a meter would hold for the given values: the inverse of decoding.

    For simulators and tests. Integer values are rounded to the nearest step of their scale.
    NaN and infinities are written as such for floating-point types; for integer types NaN is
    written as ``invalid_raw`` where the quantity has one.

    Parameters
    ----------
    register_map : RegisterMap
    values : mapping of str to float
        Values by quantity name, in the quantity's unit; quantities left out are not written.
    scale_factors : mapping of int to int, optional
        SunSpec scale factors to use, by scale-factor register address. Those not given are
        chosen as the finest (most negative, -10 at the least) at which every value sharing the
        register fits its type.

    Returns
    -------
    dict of (function_code, address) to int
        16-bit register values.

    Raises
    ------
    ValueError
        For an unknown quantity, two aliases given different values, or a value that does not
        fit its type.
    """
    by_name = {q.name: q for q in register_map.quantities}
    for name in values:
        if name not in by_name:
            raise ValueError(f"{register_map.model} has no quantity {name!r}")
    written: dict[tuple[int, int], int] = {}
    owner: dict[tuple[int, int], str] = {}
    chosen = _choose_scale_factors(register_map, values, scale_factors or {})
    for (function_code, address), sf in chosen.items():
        written[(function_code, address)] = sf & 0xFFFF
    for name, value in values.items():
        q = by_name[name]
        factor = _fraction(q.scale)
        if q.scale_factor_address is not None:
            factor *= Fraction(10) ** chosen[(q.function_code, q.scale_factor_address)]
        words = _encode_value(q, float(value), factor)
        for offset, word in enumerate(words):
            key = (q.function_code, q.address + offset)
            if key in written and written[key] != word and key in owner:
                raise ValueError(f"{name} and {owner[key]} share registers but were given different values")
            written[key] = word
            owner[key] = name
    return written


def _encode_value(q: Quantity, value: float, factor: Fraction) -> list[int]:
    kind = DATA_TYPES[q.data_type]
    if kind.minimum is None:
        raw_float = value if not math.isfinite(value) else float(Fraction(value) / factor)
        try:
            data = struct.pack(f">{kind.code}", raw_float)
        except OverflowError:
            raise ValueError(f"{q.name}: {value} does not fit a {q.data_type}") from None
    else:
        assert kind.maximum is not None
        if math.isnan(value) and q.invalid_raw is not None:
            raw = q.invalid_raw
        elif not math.isfinite(value):
            raise ValueError(f"{q.name}: {value} cannot be written as a {q.data_type}")
        else:
            raw = round(Fraction(value) / factor)
        if not kind.minimum <= raw <= kind.maximum:
            raise ValueError(f"{q.name}: {value} {q.unit} does not fit a {q.data_type} at scale {factor}")
        data = struct.pack(f">{kind.code}", raw)
    words = list(struct.unpack(f">{kind.words}H", data))
    if q.word_order == LOW_FIRST:
        words.reverse()
    return words


def _choose_scale_factors(
    register_map: RegisterMap, values: Mapping[str, float], given: Mapping[int, int]
) -> dict[tuple[int, int], int]:
    groups: dict[tuple[int, int], list[Quantity]] = {}
    for q in register_map.quantities:
        if q.scale_factor_address is not None:
            groups.setdefault((q.function_code, q.scale_factor_address), []).append(q)
    chosen: dict[tuple[int, int], int] = {}
    for key, members in groups.items():
        if key[1] in given:
            sf = given[key[1]]
            if not SUNSPEC_SF_MIN <= sf <= SUNSPEC_SF_MAX:
                raise ValueError(f"scale factor {sf} at {key[1]} is outside -10..10")
            chosen[key] = sf
            continue
        finite = [(q, values[q.name]) for q in members if q.name in values and math.isfinite(values[q.name])]
        for sf in range(SUNSPEC_SF_MIN, SUNSPEC_SF_MAX + 1):
            if all(_fits(q, value, _fraction(q.scale) * Fraction(10) ** sf) for q, value in finite):
                chosen[key] = sf
                break
        else:
            names = ", ".join(q.name for q, _ in finite)
            raise ValueError(f"no SunSpec scale factor fits {names}")
    return chosen


def _fits(q: Quantity, value: float, factor: Fraction) -> bool:
    kind = DATA_TYPES[q.data_type]
    assert kind.minimum is not None
    assert kind.maximum is not None
    return kind.minimum <= round(Fraction(value) / factor) <= kind.maximum
