"""Emulated meters on loopback: households that draw and export power, served over real Modbus.

A :class:`MeterProfile` says what one household's meter measures over time: demand with a morning
and an evening peak, optional PV export at midday, voltages and frequency around nominal. Net
power is constant over each step (five minutes by default), so the import and export counters
are the exact integrals of the power the meter shows, computed at read time from an injectable
clock: an accelerated clock runs a day in seconds and the counters keep up. Everything is drawn
from a seeded generator, so a meter's values depend only on its seed and the time. A
:class:`SeriesProfile` does the same for an explicit series of net power (a scenario's household,
from :mod:`simulation`).

A :class:`SimulatedMeter` puts a profile into a meter model's registers (``sdm630``, ``sdm120``,
``sdm72``, ``em24``, or a SunSpec device ``sunspec201`` ... ``sunspec214``) and can be told to
misbehave (:class:`Fault`). A :class:`Gateway` is one pymodbus server on one TCP port answering
for all its meters' unit IDs, as an RS485 gateway does; :class:`MeterFleet` describes many
gateways from a few numbers, for the CLI and benchmarks.

Only for tests, demonstrations and benchmarks: nothing in production polls a simulator.

May import: the standard library, numpy, pymodbus, and :mod:`metering` (registers, sunspec,
polling for :class:`~metering.polling.MeterEndpoint`). Never :mod:`market`, :mod:`optimiser` or
:mod:`api`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import math
import struct
from array import array
from collections import deque
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import NamedTuple, Self

import numpy as np
from pymodbus.constants import ExcCodes
from pymodbus.framer import FramerType
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

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

__all__ = [
    "CLASSIC_MODELS",
    "SIMULATED_MODELS",
    "STANDARD_QUANTITIES",
    "Fault",
    "Gateway",
    "GatewaySpec",
    "MeterFleet",
    "MeterProfile",
    "MeterSpec",
    "Profile",
    "RequestRecord",
    "SeriesProfile",
    "SimulatedMeter",
    "serve_fleet",
    "utc_now",
]

CLASSIC_MODELS = ("sdm630", "sdm120", "sdm72", "em24")
"""Models with a shipped register map at fixed addresses."""

SUNSPEC_PREFIX = "sunspec"
SIMULATED_MODELS = (*CLASSIC_MODELS, *(f"{SUNSPEC_PREFIX}{model_id}" for model_id in METER_MODEL_IDS))
"""Every model a :class:`SimulatedMeter` can be (``sunspec203`` is a SunSpec device with model 203)."""

SECONDS_PER_DAY = 86_400
SECONDS_PER_KWH_PER_W = 3_600_000.0
"""Watt-seconds in a kWh: energy_kwh = power_w * duration_s / this."""

SUNSPEC_SCALE_FACTORS_BY_UNIT: Mapping[str, int] = {"V": -1, "A": -2, "W": 0, "Hz": -2, "kWh": 0}
"""The SunSpec power-of-ten scale factor a simulated integer model uses for each unit.

Fixed rather than chosen per value, as real devices do: 0.1 V, 0.01 A, 1 W, 0.01 Hz and 1 Wh
steps, each fitting an int16 (or acc32) for any household value.
"""

UNANSWERED_HOLD_S = 300.0
"""How long a request that gets no answer is held before the simulator forgets it: beyond any
client's timeout, yet bounded, so that a meter polled every minute for days does not pile them up."""

MAX_UNIT_ID = 255
"""The highest unit ID a gateway serves (the Modbus TCP header's byte; serial buses stop at 247)."""


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


# --- profiles ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _DayTable:
    """One day of a profile: net power per step and the counters' cumulative energy at step starts.

    ``array`` rather than numpy: indexing one gives a Python float in a few tens of nanoseconds,
    and every simulated request reads several.
    """

    net_power_w: array[float]
    import_kwh: array[float]  # steps + 1 entries: energy from midnight to each step's start
    export_kwh: array[float]


@dataclass(frozen=True)
class _Constants:
    phase_shares: tuple[float, float, float]
    voltage_phases_rad: tuple[float, float, float]
    voltage_offsets_v: tuple[float, float, float]
    frequency_phase_rad: float


STANDARD_QUANTITIES = tuple(STANDARD_UNITS)
"""The order of :meth:`MeterProfile.standard_values`: the standard quantity names."""

_IMPORT = STANDARD_QUANTITIES.index("import_kwh")
_EXPORT = STANDARD_QUANTITIES.index("export_kwh")
_OTHER = len(STANDARD_QUANTITIES)
"""Where a map's non-standard quantities take their value from: a constant 0."""


@dataclass(frozen=True)
class MeterProfile:
    """What one household's meter measures over time: seeded, deterministic, exact counters.

    Net power (demand minus PV) is constant over each ``step_s`` of the UTC day and the same every
    day. Demand is ``base_load_w`` plus a morning and an evening peak reaching ``peak_load_w``
    (their times drawn from the seed), times seeded noise; PV is a half sine from 06:00 to 18:00
    UTC peaking at ``pv_peak_w``, times seeded cloud cover. The import counter integrates the
    positive part of net power, the export counter the negative part, exactly, from
    ``commissioned_at`` (before which they read their starting values).

    Attributes
    ----------
    seed : int
        Seeds peak times, noise, cloud cover, phase split and voltage wobble.
    base_load_w, peak_load_w : float
        Demand at night and at the day's highest peak (before noise). Equal values and
        ``noise=0`` give constant demand.
    pv_peak_w : float
        PV output at noon under a clear sky; 0 for no PV.
    noise : float
        Relative standard deviation of demand from step to step (0 to 1); also enables cloud cover.
    phases : int
        1, 2 or 3: how many phases carry the power (a single-phase meter forces 1).
    nominal_voltage_v, nominal_frequency_hz : float
        Voltage and frequency the readings wobble around (within about 1.5 % and 0.04 Hz).
    step_s : int
        Seconds over which net power is constant; divides a day.
    commissioned_at : datetime
        When the counters start counting (timezone-aware).
    import_kwh_at_commissioning, export_kwh_at_commissioning : float
        The counters' readings then.
    """

    seed: int = 0
    base_load_w: float = 250.0
    peak_load_w: float = 2500.0
    pv_peak_w: float = 0.0
    noise: float = 0.25
    phases: int = 3
    nominal_voltage_v: float = 230.0
    nominal_frequency_hz: float = 50.0
    step_s: int = 300
    commissioned_at: datetime = datetime(2025, 1, 1, tzinfo=UTC)
    import_kwh_at_commissioning: float = 0.0
    export_kwh_at_commissioning: float = 0.0

    def __post_init__(self) -> None:
        if self.phases not in (1, 2, 3):
            raise ValueError(f"phases must be 1, 2 or 3, got {self.phases}")
        if not (isinstance(self.step_s, int) and self.step_s > 0 and SECONDS_PER_DAY % self.step_s == 0):
            raise ValueError(f"step_s must be a whole number of seconds dividing a day, got {self.step_s}")
        if not 0 <= self.base_load_w <= self.peak_load_w:
            raise ValueError("need 0 <= base_load_w <= peak_load_w")
        if not (self.pv_peak_w >= 0 and 0 <= self.noise <= 1):
            raise ValueError("need pv_peak_w >= 0 and 0 <= noise <= 1")
        if self.commissioned_at.tzinfo is None:
            raise ValueError("commissioned_at must be timezone-aware")
        if self.import_kwh_at_commissioning < 0 or self.export_kwh_at_commissioning < 0:
            raise ValueError("counters start at zero or above")

    @functools.cached_property
    def _origin(self) -> datetime:
        """UTC midnight starting the commissioning day: the day grid's zero."""
        moment = self.commissioned_at.astimezone(UTC)
        return moment.replace(hour=0, minute=0, second=0, microsecond=0)

    @functools.cached_property
    def _commissioned_s(self) -> float:
        return (self.commissioned_at - self._origin).total_seconds()

    @functools.cached_property
    def _energy_at_commissioning_kwh(self) -> tuple[float, float]:
        return self._energy_kwh(self._commissioned_s)

    @functools.cached_property
    def _constants(self) -> _Constants:
        return _profile_constants(self.seed, self.phases)

    @functools.cached_property
    def _day(self) -> _DayTable:
        steps = SECONDS_PER_DAY // self.step_s
        rng = np.random.default_rng([self.seed, 2])
        hours = (np.arange(steps) + 0.5) * (self.step_s / 3600.0)
        morning_h, evening_h = rng.uniform(6.5, 8.5), rng.uniform(17.5, 20.0)
        shape = 0.55 * np.exp(-0.5 * ((hours - morning_h) / 1.2) ** 2) + np.exp(
            -0.5 * ((hours - evening_h) / 2.0) ** 2
        )
        demand = self.base_load_w + (self.peak_load_w - self.base_load_w) * shape / shape.max()
        noise = rng.standard_normal(steps)
        clouds = rng.uniform(0.6, 1.0, steps)
        if self.noise > 0:
            demand = demand * np.clip(1.0 + self.noise * noise, 0.3, None)
        else:
            clouds[:] = 1.0
        pv = self.pv_peak_w * np.clip(np.sin(np.pi * (hours - 6.0) / 12.0), 0.0, None) * clouds
        net = demand - pv
        per_step_kwh = self.step_s / SECONDS_PER_KWH_PER_W
        import_kwh = np.concatenate(([0.0], np.cumsum(np.clip(net, 0.0, None) * per_step_kwh)))
        export_kwh = np.concatenate(([0.0], np.cumsum(np.clip(-net, 0.0, None) * per_step_kwh)))
        return _DayTable(
            net_power_w=array("d", net.tolist()),
            import_kwh=array("d", import_kwh.tolist()),
            export_kwh=array("d", export_kwh.tolist()),
        )

    def _seconds(self, at: datetime) -> float:
        if at.tzinfo is None:
            raise ValueError(f"the clock must give timezone-aware times, got {at!r}")
        return (at - self._origin).total_seconds()

    def _energy_kwh(self, seconds: float) -> tuple[float, float]:
        """Import and export from the day grid's zero to ``seconds`` (after commissioning)."""
        day = self._day
        days, rest_s = divmod(seconds, SECONDS_PER_DAY)
        step = min(int(rest_s // self.step_s), len(day.net_power_w) - 1)
        into_step_s = rest_s - step * self.step_s
        net = day.net_power_w[step]
        partial_kwh = abs(net) * into_step_s / SECONDS_PER_KWH_PER_W
        imported = days * day.import_kwh[-1] + day.import_kwh[step]
        exported = days * day.export_kwh[-1] + day.export_kwh[step]
        if net > 0:
            imported += partial_kwh
        else:
            exported += partial_kwh
        return imported, exported

    def _counters_at_s(self, seconds: float) -> tuple[float, float]:
        imported, exported = self._energy_kwh(max(seconds, self._commissioned_s))
        start_import, start_export = self._energy_at_commissioning_kwh
        return (
            self.import_kwh_at_commissioning + (imported - start_import),
            self.export_kwh_at_commissioning + (exported - start_export),
        )

    def net_power_w(self, at: datetime) -> float:
        """Net power at ``at``: positive imports, negative exports."""
        step = int(self._seconds(at) % SECONDS_PER_DAY) // self.step_s
        return self._day.net_power_w[step]

    def counters_kwh(self, at: datetime) -> tuple[float, float]:
        """The import and export counters at ``at``, in kWh.

        Exactly the integrals of :meth:`net_power_w`'s positive and negative parts since
        ``commissioned_at``, plus the starting values.
        """
        return self._counters_at_s(self._seconds(at))

    def standard_values(self, at: datetime) -> list[float]:
        """Every standard quantity at ``at``, in the order of :data:`STANDARD_QUANTITIES`.

        Phases that carry no power read 0 W and 0 A.
        """
        seconds = self._seconds(at)
        net = self._day.net_power_w[int(seconds % SECONDS_PER_DAY) // self.step_s]
        import_kwh, export_kwh = self._counters_at_s(seconds)
        return _standard_values(
            self._constants,
            self.nominal_voltage_v,
            self.nominal_frequency_hz,
            seconds,
            net,
            import_kwh,
            export_kwh,
        )

    def values_at(self, at: datetime) -> dict[str, float]:
        """Every standard quantity at ``at``, by name (see :meth:`standard_values`)."""
        return dict(zip(STANDARD_QUANTITIES, self.standard_values(at)))


def _profile_constants(seed: int, phases: int) -> _Constants:
    """A meter's fixed electrical character, drawn from its seed: phase split and voltage wobble."""
    rng = np.random.default_rng([seed, 1])
    shares = rng.uniform(0.2, 0.5, 3)
    shares[phases:] = 0.0
    shares /= shares.sum()
    angles = rng.uniform(0.0, 2 * math.pi, 3)
    offsets = rng.uniform(-1.0, 1.0, 3)
    return _Constants(
        phase_shares=(float(shares[0]), float(shares[1]), float(shares[2])),
        voltage_phases_rad=(float(angles[0]), float(angles[1]), float(angles[2])),
        voltage_offsets_v=(float(offsets[0]), float(offsets[1]), float(offsets[2])),
        frequency_phase_rad=float(rng.uniform(0.0, 2 * math.pi)),
    )


def _standard_values(
    constants: _Constants,
    nominal_v: float,
    nominal_hz: float,
    seconds: float,
    net: float,
    import_kwh: float,
    export_kwh: float,
) -> list[float]:
    """The standard quantities for net power ``net`` split over the phases, ``seconds`` into the
    profile's day grid (which drives the voltage and frequency wobble), and the two counters."""
    day_angle = 2 * math.pi * seconds / SECONDS_PER_DAY
    shares, angles, offsets = (
        constants.phase_shares,
        constants.voltage_phases_rad,
        constants.voltage_offsets_v,
    )
    v1 = nominal_v * (1 + 0.01 * math.sin(day_angle + angles[0])) + offsets[0] * nominal_v / 230.0
    v2 = nominal_v * (1 + 0.01 * math.sin(day_angle + angles[1])) + offsets[1] * nominal_v / 230.0
    v3 = nominal_v * (1 + 0.01 * math.sin(day_angle + angles[2])) + offsets[2] * nominal_v / 230.0
    p1, p2, p3 = net * shares[0], net * shares[1], net * shares[2]
    frequency = nominal_hz + 0.04 * math.sin(2 * math.pi * seconds / 900.0 + constants.frequency_phase_rad)
    return [
        v1,
        v2,
        v3,
        abs(p1) / v1,
        abs(p2) / v2,
        abs(p3) / v3,
        p1,
        p2,
        p3,
        net,
        frequency,
        import_kwh,
        export_kwh,
    ]


@dataclass(frozen=True, eq=False)
class SeriesProfile:
    """What one household's meter measures, given as an explicit series of net power.

    For scenarios whose households come from a demand and PV model (:mod:`simulation`): net power
    ``net_power_w[k]`` (positive imports, negative exports) holds over
    ``[start + k * step_s, start + (k + 1) * step_s)``; before ``start`` and after the series ends it
    is zero, so the counters stand still there. The import counter is the exact integral of the
    positive part of net power from ``start``, plus ``import_kwh_at_start``; likewise export.

    Attributes
    ----------
    start : datetime
        Timezone-aware start of the series.
    step_s : int
        Seconds each value holds.
    net_power_w : array of float
        The series, W.
    seed : int
        Seeds the phase split and the voltage and frequency wobble.
    phases, nominal_voltage_v, nominal_frequency_hz
        As for :class:`MeterProfile`.
    import_kwh_at_start, export_kwh_at_start : float
        The counters' readings at (and before) ``start``.
    """

    start: datetime
    step_s: int
    net_power_w: array[float]
    seed: int = 0
    phases: int = 3
    nominal_voltage_v: float = 230.0
    nominal_frequency_hz: float = 50.0
    import_kwh_at_start: float = 0.0
    export_kwh_at_start: float = 0.0

    def __post_init__(self) -> None:
        if self.start.tzinfo is None:
            raise ValueError("start must be timezone-aware")
        if not (isinstance(self.step_s, int) and self.step_s > 0):
            raise ValueError(f"step_s must be a positive whole number of seconds, got {self.step_s}")
        if self.phases not in (1, 2, 3):
            raise ValueError(f"phases must be 1, 2 or 3, got {self.phases}")
        if self.import_kwh_at_start < 0 or self.export_kwh_at_start < 0:
            raise ValueError("counters start at zero or above")
        if not all(math.isfinite(value) for value in self.net_power_w):
            raise ValueError("net_power_w must be finite")

    @functools.cached_property
    def _constants(self) -> _Constants:
        return _profile_constants(self.seed, self.phases)

    @functools.cached_property
    def _cumulative(self) -> tuple[array[float], array[float]]:
        """Import and export energy from ``start`` to each step's start (len(series) + 1 entries)."""
        net = np.asarray(self.net_power_w, dtype=np.float64)
        per_step_kwh = self.step_s / SECONDS_PER_KWH_PER_W
        imported = np.concatenate(([0.0], np.cumsum(np.clip(net, 0.0, None) * per_step_kwh)))
        exported = np.concatenate(([0.0], np.cumsum(np.clip(-net, 0.0, None) * per_step_kwh)))
        return array("d", imported.tolist()), array("d", exported.tolist())

    def _seconds(self, at: datetime) -> float:
        if at.tzinfo is None:
            raise ValueError(f"the clock must give timezone-aware times, got {at!r}")
        return (at - self.start).total_seconds()

    def _step(self, seconds: float) -> int | None:
        if seconds < 0:
            return None
        step = int(seconds // self.step_s)
        return step if step < len(self.net_power_w) else None

    def _counters_at_s(self, seconds: float) -> tuple[float, float]:
        imported, exported = self._cumulative
        steps = len(self.net_power_w)
        if seconds <= 0:
            return self.import_kwh_at_start, self.export_kwh_at_start
        step = int(seconds // self.step_s)
        if step >= steps:
            return self.import_kwh_at_start + imported[steps], self.export_kwh_at_start + exported[steps]
        net = self.net_power_w[step]
        partial_kwh = abs(net) * (seconds - step * self.step_s) / SECONDS_PER_KWH_PER_W
        import_kwh = imported[step] + (partial_kwh if net > 0 else 0.0)
        export_kwh = exported[step] + (partial_kwh if net < 0 else 0.0)
        return self.import_kwh_at_start + import_kwh, self.export_kwh_at_start + export_kwh

    def net_power_w_at(self, at: datetime) -> float:
        """Net power at ``at``: positive imports, negative exports, zero outside the series."""
        step = self._step(self._seconds(at))
        return 0.0 if step is None else self.net_power_w[step]

    def counters_kwh(self, at: datetime) -> tuple[float, float]:
        """The import and export counters at ``at``, in kWh."""
        return self._counters_at_s(self._seconds(at))

    def standard_values(self, at: datetime) -> list[float]:
        """Every standard quantity at ``at``, in the order of :data:`STANDARD_QUANTITIES`."""
        seconds = self._seconds(at)
        step = self._step(seconds)
        net = 0.0 if step is None else self.net_power_w[step]
        import_kwh, export_kwh = self._counters_at_s(seconds)
        return _standard_values(
            self._constants,
            self.nominal_voltage_v,
            self.nominal_frequency_hz,
            seconds,
            net,
            import_kwh,
            export_kwh,
        )

    def values_at(self, at: datetime) -> dict[str, float]:
        """Every standard quantity at ``at``, by name."""
        return dict(zip(STANDARD_QUANTITIES, self.standard_values(at)))


Profile = MeterProfile | SeriesProfile
"""What a :class:`SimulatedMeter` measures."""


# --- register images -----------------------------------------------------------------------------


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


# --- meters --------------------------------------------------------------------------------------


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


# --- gateways ------------------------------------------------------------------------------------


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


async def serve_fleet(
    gateways: Sequence[Gateway],
    *,
    ready: Callable[[Sequence[Gateway]], object] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Run gateways until ``stop`` is set (or the task is cancelled), then stop them all.

    Parameters
    ----------
    gateways : sequence of Gateway
        Started together; if one cannot start, those started are stopped and the error raised.
    ready : callable, optional
        Called with the gateways once all listen (their ports are then known).
    stop : asyncio.Event, optional
        Set it to stop serving; without it, serve until cancelled.
    """
    try:
        await asyncio.gather(*(gateway.start() for gateway in gateways))
        if ready is not None:
            ready(gateways)
        if stop is None:
            await asyncio.Future()
        else:
            await stop.wait()
    finally:
        await asyncio.gather(*(gateway.stop() for gateway in gateways), return_exceptions=True)


# --- fleets --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MeterSpec:
    """One simulated meter of a fleet: its name, unit ID, model and profile."""

    meter_id: str
    unit_id: int
    model: str
    profile: Profile


@dataclass(frozen=True)
class GatewaySpec:
    """One simulated gateway of a fleet: where it listens and the meters behind it."""

    host: str
    port: int
    framer: str
    meters: tuple[MeterSpec, ...]


@dataclass(frozen=True)
class MeterFleet:
    """A fleet of simulated gateways and meters, as data; :meth:`build_gateways` brings it to life.

    Attributes
    ----------
    gateways : tuple of GatewaySpec
    """

    gateways: tuple[GatewaySpec, ...] = field(default_factory=tuple)

    @classmethod
    def build(
        cls,
        *,
        gateways: int = 1,
        meters_per_gateway: int = 10,
        models: Sequence[str] = ("sdm630",),
        host: str = "127.0.0.1",
        first_port: int = 0,
        framer: str = "socket",
        seed: int = 0,
        pv_share: float = 0.3,
        pv_peak_w: float = 3000.0,
        commissioned_at: datetime = datetime(2025, 1, 1, tzinfo=UTC),
    ) -> MeterFleet:
        """A fleet from a few numbers: meters take ``models`` in turn, unit IDs from 1.

        Parameters
        ----------
        gateways : int
            How many gateways (ports).
        meters_per_gateway : int
            Meters behind each, 1 to 255.
        models : sequence of str
            Models assigned round-robin (:data:`SIMULATED_MODELS`).
        host : str
            Where every gateway listens.
        first_port : int
            Gateway ``g`` listens on ``first_port + g``; 0 gives every gateway a free port.
        framer : str
            ``"socket"`` or ``"rtu"``, for every gateway.
        seed : int
            Seeds every meter's profile (each meter gets its own seed from it) and who has PV.
        pv_share : float
            Fraction of meters with PV (0 to 1).
        pv_peak_w : float
            PV peak of those that have it.
        commissioned_at : datetime
            When every meter's counters started (each starts from a seeded reading).
        """
        if gateways < 1 or not 1 <= meters_per_gateway <= MAX_UNIT_ID:
            raise ValueError(f"need gateways >= 1 and 1 <= meters_per_gateway <= {MAX_UNIT_ID}")
        if not models:
            raise ValueError("give at least one model")
        if not 0 <= pv_share <= 1:
            raise ValueError(f"pv_share must be 0 to 1, got {pv_share}")
        for model in models:
            if model not in SIMULATED_MODELS:
                raise ValueError(f"unknown model {model!r}; expected one of {', '.join(SIMULATED_MODELS)}")
        rng = np.random.default_rng([seed, 3])
        total = gateways * meters_per_gateway
        has_pv = rng.random(total) < pv_share
        peaks = rng.uniform(1500.0, 5000.0, total)
        starts = rng.uniform(0.0, 20_000.0, total)
        specs: list[GatewaySpec] = []
        for g in range(gateways):
            meters = []
            for u in range(meters_per_gateway):
                i = g * meters_per_gateway + u
                profile = MeterProfile(
                    seed=seed * 1_000_003 + i,
                    peak_load_w=float(peaks[i]),
                    pv_peak_w=pv_peak_w if has_pv[i] else 0.0,
                    commissioned_at=commissioned_at,
                    import_kwh_at_commissioning=round(float(starts[i]), 1),
                )
                meters.append(
                    MeterSpec(
                        meter_id=f"sim-{g + 1:02d}-{u + 1:03d}",
                        unit_id=u + 1,
                        model=models[i % len(models)],
                        profile=profile,
                    )
                )
            port = first_port + g if first_port else 0
            specs.append(GatewaySpec(host=host, port=port, framer=framer, meters=tuple(meters)))
        return cls(gateways=tuple(specs))

    @property
    def meter_count(self) -> int:
        """How many meters the fleet has."""
        return sum(len(gateway.meters) for gateway in self.gateways)

    def build_gateways(self, *, clock: Callable[[], datetime] = utc_now) -> list[Gateway]:
        """Live (not yet started) gateways and meters for this fleet, all on ``clock``."""
        return [
            Gateway(
                spec.host,
                spec.port,
                [
                    SimulatedMeter(m.unit_id, m.model, m.profile, meter_id=m.meter_id, clock=clock)
                    for m in spec.meters
                ],
                framer=spec.framer,
            )
            for spec in self.gateways
        ]
