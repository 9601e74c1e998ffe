"""Household profiles for emulated meters: what a meter measures at any moment.

A :class:`MeterProfile` draws demand with a morning and an evening peak, optional PV export at
midday, voltages and frequency around nominal, from a seeded generator; a :class:`SeriesProfile`
follows an explicit series of net power (a scenario's household). Net power is constant over each
step, so the import and export counters are the exact integrals of the power the meter shows,
computed at read time from the clock.
"""

from __future__ import annotations

import functools
import math
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from metering.registers import (
    STANDARD_UNITS,
)

SECONDS_PER_DAY = 86_400
SECONDS_PER_KWH_PER_W = 3_600_000.0
"""Watt-seconds in a kWh: energy_kwh = power_w * duration_s / this."""


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

    def set_power_w(self, first_step: int, values: Sequence[float]) -> None:
        """Replace the series from ``first_step`` on with ``values`` (a device whose use is only
        decided as the day goes on: a scenario's battery following a plan); the counters follow.

        Only steps not yet begun may change, or the counters would move back: the caller's rule.
        Not thread-safe: call it where the meter is read (the gateways' event loop).
        """
        if first_step < 0 or first_step + len(values) > len(self.net_power_w):
            raise ValueError("the values must fall within the series")
        if not all(math.isfinite(value) for value in values):
            raise ValueError("net power must be finite")
        self.net_power_w[first_step : first_step + len(values)] = array("d", values)
        self.__dict__.pop("_cumulative", None)  # the cached integral, recomputed on the next read

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
