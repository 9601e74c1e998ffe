"""Emulated meters: a profile in a meter model's registers (:class:`SimulatedMeter`), and the
ways a meter misbehaves (:class:`Fault`).

Models: ``sdm630``, ``sdm120``, ``sdm72``, ``em24`` (the shipped register maps) and SunSpec
devices ``sunspec201`` ... ``sunspec214``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import struct
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import NamedTuple

from pymodbus.simulator import DataType, SimData

from metering.emulator.profiles import STANDARD_QUANTITIES, MeterProfile, Profile
from metering.polling import MeterEndpoint, utc_now
from metering.registers import (
    DATA_TYPES,
    HIGH_FIRST,
    STANDARD_UNITS,
    SUNSPEC_SF_NOT_IMPLEMENTED,
    RegisterMap,
    load_register_map,
    plan_reads,
)
from metering.sunspec import (
    COMMON_MODEL_LENGTH,
    METER_MODEL_IDS,
    SUNS_MARKER,
    sunspec_image,
    sunspec_register_map,
)

MAX_UNIT_ID = 255
"""The highest unit ID a gateway serves (the Modbus TCP header's byte; serial buses stop at 247)."""

_IMPORT = STANDARD_QUANTITIES.index("import_kwh")
_EXPORT = STANDARD_QUANTITIES.index("export_kwh")
_OTHER = len(STANDARD_QUANTITIES)
"""Where a map's non-standard quantities take their value from: a constant 0."""

CLASSIC_MODELS = ("sdm630", "sdm120", "sdm72", "em24")
"""Models with a shipped register map at fixed addresses."""

SUNSPEC_PREFIX = "sunspec"
SIMULATED_MODELS = (*CLASSIC_MODELS, *(f"{SUNSPEC_PREFIX}{model_id}" for model_id in METER_MODEL_IDS))
"""Every model a :class:`SimulatedMeter` can be (``sunspec203`` is a SunSpec device with model 203)."""

SUNSPEC_SCALE_FACTORS_BY_UNIT: Mapping[str, int] = {"V": -1, "A": -2, "W": 0, "Hz": -2, "kWh": 0}
"""The SunSpec power-of-ten scale factor a simulated integer model uses for each unit.

Fixed rather than chosen per value, as real devices do: 0.1 V, 0.01 A, 1 W, 0.01 Hz and 1 Wh
steps, each fitting an int16 (or acc32) for any household value.
"""


class Fault(StrEnum):
    """How a simulated meter misbehaves (:attr:`SimulatedMeter.fault`)."""

    NO_ANSWER = "no_answer"
    """Never answers: the request is held beyond any client timeout (:data:`UNANSWERED_HOLD_S`),
    then dropped."""
    EXCEPTION = "exception"
    """Answers every request with Modbus exception 4 (server device failure)."""
    LATE = "late"
    """Answers after :attr:`SimulatedMeter.late_s`; abandoned if another request reaches the gateway first."""
    COUNTER_RESET = "counter_reset"
    """The energy counters restart from zero at the next request; the fault then clears itself."""
    NAN = "nan"
    """The energy counters read as "not a number": NaN for floats, the "not available" raw value or
    scale factor for integers (the largest raw value where the map defines neither)."""


class _FieldGroup(NamedTuple):
    """Values written with one struct: all big-endian words, or all low-word-first."""

    positions: tuple[int, ...]  # each value's index in the list :meth:`_RegisterWriter.write` takes
    pack: struct.Struct  # the values, in the group's byte order
    unpack_words: struct.Struct  # the same bytes as 16-bit registers
    indices: tuple[int, ...]  # where each register goes, relative to the device's first register
    divisors: tuple[float, ...]  # raw = value / divisor
    integer: tuple[bool, ...]
    limits: tuple[tuple[float, float], ...]
    nan_raws: tuple[float, ...]  # what a NaN is written as


class _Entry(NamedTuple):
    address: int
    position: int
    data_type: str
    divisor: float
    invalid_raw: int | None
    minimum: float
    maximum: float


class _RegisterWriter:
    """Writes a map's values into a device's registers, one struct per byte order.

    The inverse of :class:`metering.registers.Decoder` for the simulator's read-time updates;
    :func:`metering.registers.encode` is exact but slow (fractions per value) for a fleet that
    answers thousands of reads a second. Values come as a list in the order of
    :data:`STANDARD_QUANTITIES` plus one more, written to every non-standard quantity.
    """

    def __init__(
        self, register_map: RegisterMap, *, first_address: int, scale_factors: Mapping[int, int]
    ) -> None:
        seen: set[int] = set()
        big: list[_Entry] = []
        little: list[_Entry] = []
        for q in register_map.quantities:
            if q.address in seen:  # an alias: its registers are written once
                continue
            seen.add(q.address)
            divisor = q.scale
            if q.scale_factor_address is not None:
                divisor *= 10.0 ** scale_factors[q.scale_factor_address]
            position = STANDARD_QUANTITIES.index(q.name) if q.name in STANDARD_UNITS else _OTHER
            entry = _Entry(q.address, position, q.data_type, divisor, q.invalid_raw, q.minimum, q.maximum)
            (big if q.word_order == HIGH_FIRST or q.register_count == 1 else little).append(entry)
        self.groups = tuple(
            self._group(entries, endian, first_address)
            for entries, endian in ((big, ">"), (little, "<"))
            if entries
        )
        self.counter_scale_factors = tuple(
            (q.scale_factor_address - first_address, scale_factors[q.scale_factor_address] & 0xFFFF)
            for q in register_map.quantities
            if q.name in ("import_kwh", "export_kwh") and q.scale_factor_address is not None
        )

    @staticmethod
    def _group(entries: list[_Entry], endian: str, first_address: int) -> _FieldGroup:
        entries.sort()
        indices: list[int] = []
        limits: list[tuple[float, float]] = []
        nan_raws: list[float] = []
        for entry in entries:
            kind = DATA_TYPES[entry.data_type]
            indices.extend(range(entry.address - first_address, entry.address - first_address + kind.words))
            if kind.minimum is None or kind.maximum is None:
                limits.append((-math.inf, math.inf))
                nan_raws.append(math.nan)
                continue
            limits.append((kind.minimum, kind.maximum))
            if entry.invalid_raw is not None:
                nan_raws.append(entry.invalid_raw)
            elif (
                kind.maximum * entry.divisor <= entry.maximum and kind.minimum * entry.divisor < entry.minimum
            ):
                nan_raws.append(kind.minimum)
            else:
                nan_raws.append(kind.maximum)  # decodes outside the plausible range, so is dropped
        return _FieldGroup(
            positions=tuple(entry.position for entry in entries),
            pack=struct.Struct(endian + "".join(DATA_TYPES[entry.data_type].code for entry in entries)),
            unpack_words=struct.Struct(f"{endian}{len(indices)}H"),
            indices=tuple(indices),
            divisors=tuple(entry.divisor for entry in entries),
            integer=tuple(DATA_TYPES[entry.data_type].minimum is not None for entry in entries),
            limits=tuple(limits),
            nan_raws=tuple(nan_raws),
        )

    def write(self, registers: list[int], values: Sequence[float], *, counters_invalid: bool) -> None:
        """Write ``values`` into ``registers`` (``registers[0]`` the device's first) in place."""
        if counters_invalid:
            values = list(values)
            values[_IMPORT] = values[_EXPORT] = math.nan
        for group in self.groups:
            raws: list[float] = []
            for position, divisor, integer, (low, high), nan_raw in zip(
                group.positions, group.divisors, group.integer, group.limits, group.nan_raws
            ):
                value = values[position]
                if not integer:
                    raws.append(value / divisor)
                elif value != value:  # NaN
                    raws.append(nan_raw)
                else:
                    raws.append(min(max(round(value / divisor), low), high))
            for index, word in zip(group.indices, group.unpack_words.unpack(group.pack.pack(*raws))):
                registers[index] = word
        for index, scale_factor in self.counter_scale_factors:
            registers[index] = (SUNSPEC_SF_NOT_IMPLEMENTED & 0xFFFF) if counters_invalid else scale_factor


def _sunspec_model_id(model: str) -> int | None:
    if not model.startswith(SUNSPEC_PREFIX):
        return None
    suffix = model.removeprefix(SUNSPEC_PREFIX).lstrip("-_")
    if not suffix.isdigit() or int(suffix) not in METER_MODEL_IDS:
        raise ValueError(
            f"{model!r}: SunSpec meters are sunspec201 to sunspec204 and sunspec211 to sunspec214"
        )
    return int(suffix)


def _phases_of(register_map: RegisterMap) -> int:
    names = set(register_map.names)
    if "power_l3_w" in names:
        return 3
    return 2 if "power_l2_w" in names else 1


class _DeviceLayout(NamedTuple):
    """What every simulated meter of one model shares: its map, static registers and writer."""

    register_map: RegisterMap
    first_address: int
    initial: tuple[int, ...]  # the registers before any read: SunSpec headers and scale factors
    positions: tuple[tuple[str, int], ...]  # each quantity's index in the writer's value list
    writer: _RegisterWriter
    phases: int


@functools.lru_cache(maxsize=64)
def _device_layout(model: str, sunspec_base_address: int, map_dirs: tuple[Path, ...]) -> _DeviceLayout:
    # Cached: loading a map and encoding a SunSpec image take milliseconds, and a fleet has
    # thousands of meters of a handful of models. (A map file edited while a simulator runs is
    # not seen again; restart it.)
    model_id = _sunspec_model_id(model)
    scale_factors: dict[int, int] = {}
    if model_id is None:
        register_map = load_register_map(model, extra_dirs=map_dirs)
        blocks = plan_reads(register_map)
        first_address = min(block.address for block in blocks)
        initial = (0,) * (max(block.address + block.count for block in blocks) - first_address)
    else:
        model_address = sunspec_base_address + len(SUNS_MARKER) + 2 + COMMON_MODEL_LENGTH
        register_map = sunspec_register_map(model_id, model_address, extra_dirs=map_dirs)
        scale_factors = {
            q.scale_factor_address: SUNSPEC_SCALE_FACTORS_BY_UNIT.get(q.unit, 0)
            for q in register_map.quantities
            if q.scale_factor_address is not None
        }
        image = sunspec_image(
            model_id,
            {},
            base_address=sunspec_base_address,
            scale_factors={address - model_address: sf for address, sf in scale_factors.items()},
            extra_dirs=map_dirs,
        )
        if image.get(model_address) != model_id:
            raise RuntimeError(f"the SunSpec image has no model {model_id} at {model_address}")
        first_address = min(image)
        initial = tuple(image.get(address, 0) for address in range(first_address, max(image) + 1))
    return _DeviceLayout(
        register_map=register_map,
        first_address=first_address,
        initial=initial,
        positions=tuple(
            (name, STANDARD_QUANTITIES.index(name) if name in STANDARD_UNITS else _OTHER)
            for name in register_map.names
        ),
        writer=_RegisterWriter(register_map, first_address=first_address, scale_factors=scale_factors),
        phases=_phases_of(register_map),
    )


class SimulatedMeter:
    """One emulated meter: a model's registers filled from a profile at read time.

    Parameters
    ----------
    unit_id : int
        Its Modbus unit ID on the gateway (1 to 255).
    model : str
        One of :data:`SIMULATED_MODELS`, or a model with a user map in ``map_dirs``.
    profile : MeterProfile or SeriesProfile, optional
        What it measures; a single- or two-phase map overrides the profile's ``phases``.
    meter_id : str, optional
        A name for reports and endpoints; ``unit-<unit_id>`` by default.
    clock : callable
        The time the values are computed for, called on every request.
    fault : Fault, optional
        How it misbehaves from the start; settable at run time.
    late_s : float
        How long a :attr:`Fault.LATE` answer takes.
    sunspec_base_address : int
        Where a SunSpec device's 'SunS' marker is (40000, 0 or 50000).
    map_dirs : sequence of Path
        User map directories, as for :func:`metering.registers.load_register_map`.

    Attributes
    ----------
    fault : Fault or None
        Set it to make the meter misbehave from its next request.
    requests_received : int
        Every request that reached it, answered or not.
    """

    def __init__(
        self,
        unit_id: int,
        model: str,
        profile: Profile | None = None,
        *,
        meter_id: str | None = None,
        clock: Callable[[], datetime] = utc_now,
        fault: Fault | None = None,
        late_s: float = 0.5,
        sunspec_base_address: int = 40000,
        map_dirs: Sequence[Path] = (),
    ) -> None:
        if not (isinstance(unit_id, int) and 1 <= unit_id <= MAX_UNIT_ID):
            raise ValueError(f"unit_id must be 1 to {MAX_UNIT_ID}, got {unit_id!r}")
        if late_s < 0:
            raise ValueError(f"late_s must not be negative, got {late_s}")
        self.unit_id = unit_id
        self.model = model.strip().lower()
        self.meter_id = meter_id or f"unit-{unit_id}"
        self.clock = clock
        self.fault = fault
        self.late_s = late_s
        self.requests_received = 0
        self._import_offset_kwh = 0.0
        self._export_offset_kwh = 0.0
        layout = _device_layout(self.model, sunspec_base_address, tuple(Path(d) for d in map_dirs))
        self._register_map = layout.register_map
        self._first_address = layout.first_address
        self._initial = layout.initial
        self._positions = layout.positions
        self._writer = layout.writer
        base_profile = profile or MeterProfile(seed=unit_id)
        self.profile = (
            base_profile
            if base_profile.phases <= layout.phases
            else dataclasses.replace(base_profile, phases=layout.phases)
        )

    @property
    def register_map(self) -> RegisterMap:
        """The map a poller would read this meter with (absolute addresses for SunSpec)."""
        return self._register_map

    @property
    def first_address(self) -> int:
        """The device's first register; its registers are one block, read by function codes 3 and 4."""
        return self._first_address

    def blank_registers(self) -> list[int]:
        """A copy of the device's registers before any read (zeros, and SunSpec's fixed content)."""
        return list(self._initial)

    def _shown_values(self, at: datetime) -> list[float]:
        values = self.profile.standard_values(at)
        values[_IMPORT] -= self._import_offset_kwh
        values[_EXPORT] -= self._export_offset_kwh
        values.append(0.0)  # for quantities other than the standard ones
        return values

    def values_at(self, at: datetime) -> dict[str, float]:
        """What the meter shows at ``at``: its map's quantities, counters after any reset.

        Quantities a user map adds beyond the standard ones read 0.
        """
        values = self._shown_values(at)
        return {name: values[position] for name, position in self._positions}

    def reset_counters(self, at: datetime | None = None) -> None:
        """Restart both energy counters from zero at ``at`` (now, by the meter's clock, by default)."""
        imported, exported = self.profile.counters_kwh(at or self.clock())
        self._import_offset_kwh, self._export_offset_kwh = imported, exported

    def fill_registers(self, registers: list[int]) -> None:
        """Write the values at the clock's current time into the device's registers, in place.

        ``registers[0]`` is the device's first register; applies :attr:`Fault.COUNTER_RESET` and
        :attr:`Fault.NAN`.
        """
        at = self.clock()
        if self.fault is Fault.COUNTER_RESET:
            self.reset_counters(at)
            self.fault = None
        self._writer.write(registers, self._shown_values(at), counters_invalid=self.fault is Fault.NAN)

    def sim_data(self) -> SimData:
        """The device's registers as a pymodbus simulator block (shared by function codes 3 and 4)."""
        if not any(self._initial):  # one value repeated: pymodbus builds it far faster than a list
            return SimData(
                address=self._first_address, count=len(self._initial), values=0, datatype=DataType.REGISTERS
            )
        # count=1: SimData repeats a list of values ``count`` times.
        return SimData(
            address=self._first_address, count=1, values=list(self._initial), datatype=DataType.REGISTERS
        )

    def endpoint(self, *, host: str, port: int, framer: str = "socket") -> MeterEndpoint:
        """How a poller reaches this meter behind a gateway at ``host:port``."""
        return MeterEndpoint(
            meter_id=self.meter_id,
            host=host,
            port=port,
            unit_id=self.unit_id,
            model=self.model,
            transport="tcp" if framer == "socket" else "rtu-over-tcp",
        )

    def __repr__(self) -> str:
        fault = f", fault={self.fault.value}" if self.fault else ""
        return f"SimulatedMeter({self.meter_id!r}, unit {self.unit_id}, {self.model}{fault})"
