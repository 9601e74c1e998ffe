"""Forecasts of each household's demand and generation for the coming settlement periods, from
its own metered interval energy.

The platform bids for a household from what it expects the household to use (demand) and to
generate (PV) in each coming half-hour. A meter sees only the net flows, ``import - export =
demand - generation``, so the history is first split with a PV model, then each part is
forecast on its own.

PV: clear sky scaled by a cloudiness
-------------------------------------
Clear-sky generation is pvlib's **simplified Solis** model (aerosol optical depth at 700 nm 0.1,
precipitable water 1 cm, sea-level pressure: pvlib's defaults, no data file and no download),
with the sun's position from pvlib's analytical Spencer (1971) formulas, transposed onto the
declared array by pvlib's isotropic-sky model, and turned into energy as
``kWp x POA / 1000 W/m2 x PERFORMANCE_RATIO`` averaged over six 5-minute steps of each period.
(Ineichen would need the Linke turbidity climatology, which pvlib reads through pandas; the
cloudiness estimate below rescales whichever clear-sky model is used, so its absolute level
matters little.) Generation is exactly zero when the sun is below the horizon for the whole
period.

The **clear-sky index** ``k`` (the measured share of clear-sky generation) is estimated from
the metered export, which is at most the generation. In each daylight period (clear-sky
generation ``C > 0``) the generation is estimated as ``g = export + max(0, b - import)``: what
was exported plus what the house used itself, taking its use as its **base demand** ``b`` (the
median net import over the history's dark periods) less what it imported. Then ::

    k = sum(w g) / sum(w C),  w = 0.5 ** (age_hours / CLOUDINESS_HALF_LIFE_HOURS)

over the last :attr:`ForecastSettings.cloudiness_days` days, clipped to ``[0, 1.2]``: a ratio
estimator weighted towards bright periods (where the split is most certain) and recent ones
(clouds persist). Without daylight history ``k`` is :data:`DEFAULT_CLEAR_SKY_INDEX`. The
forecast generation is ``k x C``. To split the history itself, each local day gets its own
``k_d`` from the same estimator (unweighted by age) and each period's generation is
``max(k_d C, export)``, so that the demand ``import - export + generation`` is never below the
import, as it cannot be.

Demand: same weekday blended with the last days
------------------------------------------------
Profiles are keyed by the **local wall-clock half-hour** (Europe/London), never by the period
number, so that 07:00 is 07:00 on clock-change days (46 or 50 periods); the repeated hour of the
autumn change is averaged into its slot, the skipped hour of spring is missing. For a target
period in slot ``s`` of local date ``D``:

- the **recent** mean: demand in slot ``s`` on the :attr:`~ForecastSettings.recent_days` (7)
  days before ``D`` (optionally with its neighbours ``s-1, s+1`` weighted
  :attr:`~ForecastSettings.neighbour_slot_weight` each, rolling over midnight: off by default,
  as smoothing raised the error on the simulated homes);
- the **same-weekday** mean: the same, on the :attr:`~ForecastSettings.same_weekday_weeks` (4)
  days 7, 14, 21, 28 days before ``D``;
- their blend, ``0.5 x same weekday + 0.5 x recent`` (:attr:`~ForecastSettings.same_weekday_weight`; either
  alone when the other has no data);
- shrunk towards the default profile scaled to the household's own level, as if the default were
  :attr:`~ForecastSettings.prior_days` (1) more days of history: ``(n F + n0 P) / (n + n0)``
  with ``n`` the days with data in slot ``s``. A household with a day of history is half
  default; with a month, it costs about 0.01 of nMAE, a price paid for the new households.

Estimated periods (the meter's extrapolation over a gap) are treated as missing: an estimate is
the rate before the gap, itself a forecast, and carries no shape. ``bench/forecast.py`` measures
these choices against others (recent days or same weekday alone, 3 recent days, smoothing, no
default blend, other cloudiness half-lives, yesterday's persistence); see ``bench/README.md``.

The default household
---------------------
With no actual history a household gets :func:`default_demand_kwh`: Ofgem's typical domestic
consumption value for electricity (2,700 kWh a year, "medium", profile class 1, since April 2024)
spread over the day by :data:`DEFAULT_DAY_SHAPE`, a hand-drawn 48-point approximation of the
average-day shape of Elexon's profile class 1 (domestic unrestricted) load profile as charted in
Elexon's guidance "Load Profiles and their use in Electricity Settlement": a night trough near
04:00 about half the day's mean, a morning rise, a flat day and an evening peak at 17:30-18:30
about 1.4 times the mean. It is not Elexon's published coefficients. A seasonal factor
``1 + 0.15 cos(2 pi (day_of_year - 15) / 365)`` (an assumption, winter about 1.35 times summer,
close to profile class 1's swing) scales it over the year. Its PV (if it declares an array) is
clear sky times :data:`DEFAULT_CLEAR_SKY_INDEX`.

Exact results
-------------
The model works in floats; what leaves it is whole Wh, rounded half to even (``numpy.rint``) and
never negative: :attr:`HouseholdForecast.demand_wh` and ``generation_wh`` (ints), with
:attr:`HouseholdForecast.demand_kwh` and ``generation_kwh`` as exact Decimals of those Wh.

May import numpy, pvlib, pydantic (through :mod:`planning.strategy`) and the standard library.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt
from pvlib import clearsky, irradiance, solarposition

from planning.strategy import PvArray

__all__ = [
    "DEFAULT_ANNUAL_KWH",
    "DEFAULT_CLEAR_SKY_INDEX",
    "DEFAULT_DAY_SHAPE",
    "DEFAULT_SETTINGS",
    "LONDON",
    "PERIOD_MINUTES",
    "ForecastError",
    "ForecastSettings",
    "HouseholdForecast",
    "HouseholdHistory",
    "MeterHistory",
    "clear_sky_generation_kwh",
    "default_demand_kwh",
    "forecast_error",
    "forecast_household",
    "forecast_households",
    "net_forecast_error",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

LONDON = ZoneInfo("Europe/London")
PERIOD_MINUTES = 30
PERIOD_S = PERIOD_MINUTES * 60
SLOTS_PER_DAY = 24 * 60 // PERIOD_MINUTES
WH_PER_KWH = 1000

#: Ofgem's typical domestic consumption value, electricity, profile class 1, "medium" (from April 2024).
DEFAULT_ANNUAL_KWH = 2700.0
#: The clear-sky index assumed without daylight history: a cautious round figure for a UK sky,
#: somewhat below the long-run share of clear-sky irradiation, so a new household's PV is not oversold.
DEFAULT_CLEAR_SKY_INDEX = 0.6
#: Relative load in each local half-hour from 00:00 (a hand-drawn approximation of the average day of
#: Elexon's profile class 1, see the module docstring); normalised to a sum of 1 below.
_SHAPE = (
    *(0.36, 0.32, 0.29, 0.27, 0.26, 0.25, 0.25, 0.24, 0.24, 0.24, 0.25, 0.26),  # 00:00-05:30
    *(0.29, 0.33, 0.38, 0.42, 0.44, 0.44, 0.43, 0.42, 0.41, 0.41, 0.41, 0.42),  # 06:00-11:30
    *(0.43, 0.43, 0.42, 0.41, 0.40, 0.40, 0.41, 0.43, 0.47, 0.53, 0.58, 0.62),  # 12:00-17:30
    *(0.63, 0.62, 0.60, 0.58, 0.56, 0.54, 0.52, 0.50, 0.48, 0.45, 0.42, 0.39),  # 18:00-23:30
)
DEFAULT_DAY_SHAPE: tuple[float, ...] = tuple(value / sum(_SHAPE) for value in _SHAPE)
SEASONAL_AMPLITUDE = 0.15
#: Minutes per step of the PV integration over a period (six steps a half-hour, at their midpoints).
PV_STEP_MINUTES = 5
#: Degrees: a location is rounded to this for the shared solar-position cache (about 1 km), far
#: below what a forecast can resolve.
LOCATION_ROUNDING_DEG = 0.01
#: Tilt and azimuth are modelled to the nearest whole degree: half a degree changes a clear-sky
#: day by under 2% (the worst, a 10-degree array in December), and the cloudiness estimate,
#: fitted through the same model, takes up most of that. A city's roofs share a few thousand
#: orientations, each transposed once a run under the sky its location shares.
ORIENTATION_ROUNDING_DEG = 1.0
#: The fewest past errors of a period's net that make its sample (below it, none: a new household).
MIN_ERROR_SAMPLES = 6


@dataclass(frozen=True)
class ForecastSettings:
    """The forecast's windows and weights (the defaults are the method the platform uses).

    Attributes
    ----------
    recent_days : int
        Days before the target's date whose same slot makes the recent mean.
    same_weekday_weeks : int
        Weeks back whose same weekday makes the same-weekday mean.
    same_weekday_weight : float
        The same-weekday mean's share in the blend, 0 to 1.
    neighbour_slot_weight : float
        Weight of each neighbouring half-hour (the slot itself has ``1 - 2 x`` this): smooths the
        spiky half-hours of one home.
    prior_days : float
        How many days of history the default profile counts as when blended in.
    cloudiness_days : int
        Days of history the forecast clear-sky index looks at.
    cloudiness_half_life_hours : float
        Age at which a period counts half in the clear-sky index.
    performance_ratio : float
        AC energy over the array's nameplate times plane-of-array irradiation (losses: inverter,
        temperature, wiring, soiling).
    max_clear_sky_index : float
        Upper clip of the index (cloud edges can briefly brighten beyond clear sky).
    min_daylight_share : float
        A day's clear-sky generation observed below this share of the history's brightest day
        gives no index of its own (the split is too uncertain); the household's whole-history
        index is used for it.
    """

    recent_days: int = 7
    same_weekday_weeks: int = 4
    same_weekday_weight: float = 0.5
    neighbour_slot_weight: float = 0.0
    prior_days: float = 1.0
    cloudiness_days: int = 3
    cloudiness_half_life_hours: float = 24.0
    performance_ratio: float = 0.8
    max_clear_sky_index: float = 1.2
    min_daylight_share: float = 0.1

    def __post_init__(self) -> None:
        checks = {
            "recent_days": self.recent_days >= 0,
            "same_weekday_weeks": self.same_weekday_weeks >= 0,
            "same_weekday_weight": 0 <= self.same_weekday_weight <= 1,
            "neighbour_slot_weight": 0 <= self.neighbour_slot_weight < 0.5,
            "prior_days": self.prior_days >= 0,
            "cloudiness_days": self.cloudiness_days >= 1,
            "cloudiness_half_life_hours": self.cloudiness_half_life_hours > 0,
            "performance_ratio": 0 < self.performance_ratio <= 1,
            "max_clear_sky_index": self.max_clear_sky_index > 0,
            "min_daylight_share": 0 <= self.min_daylight_share < 1,
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"{name}: {getattr(self, name)!r} is out of range")

    @property
    def history_days(self) -> int:
        """How many days before the first target the forecast can use."""
        return max(self.recent_days, 7 * self.same_weekday_weeks, self.cloudiness_days) + 1

    @property
    def lag_days(self) -> tuple[int, ...]:
        """The days before a target's date whose slots the demand forecast reads."""
        recent = range(1, self.recent_days + 1)
        weekly = range(7, 7 * self.same_weekday_weeks + 1, 7)
        return tuple(sorted({*recent, *weekly}))


DEFAULT_SETTINGS = ForecastSettings()


@dataclass(frozen=True, eq=False)
class MeterHistory:
    """A household's metered interval energy, as columns (one entry a settlement period).

    Attributes
    ----------
    start_s : ndarray of int64
        Each period's start, seconds since the Unix epoch (UTC), a multiple of 1,800.
    import_wh, export_wh : ndarray of int64
        The meter's net flows in the period, whole Wh.
    estimated : ndarray of bool
        Whether the period's energy is an estimate (the meter's extrapolation over a gap).
    """

    start_s: IntArray
    import_wh: IntArray
    export_wh: IntArray
    estimated: BoolArray

    def __post_init__(self) -> None:
        sizes = {len(self.start_s), len(self.import_wh), len(self.export_wh), len(self.estimated)}
        if len(sizes) != 1:
            raise ValueError("start_s, import_wh, export_wh and estimated must have the same length")
        if np.any(self.start_s % PERIOD_S):
            raise ValueError(f"start_s: every period starts on a {PERIOD_MINUTES}-minute boundary")
        if np.any(self.import_wh < 0) or np.any(self.export_wh < 0):
            raise ValueError("import_wh and export_wh are never negative")

    @classmethod
    def from_periods(cls, periods: Iterable[tuple[datetime, int, int, bool]]) -> MeterHistory:
        """From ``(start_utc, import_wh, export_wh, estimated)`` tuples (aware start instants)."""
        rows = list(periods)
        return cls(
            np.array([int(_epoch_s(start)) for start, *_ in rows], dtype=np.int64),
            np.array([row[1] for row in rows], dtype=np.int64),
            np.array([row[2] for row in rows], dtype=np.int64),
            np.array([bool(row[3]) for row in rows], dtype=np.bool_),
        )

    @classmethod
    def empty(cls) -> MeterHistory:
        """No history: a new household."""
        none = np.zeros(0, dtype=np.int64)
        return cls(none, none, none, np.zeros(0, dtype=np.bool_))

    def __len__(self) -> int:
        return len(self.start_s)


@dataclass(frozen=True, eq=False)
class HouseholdHistory:
    """What the forecast knows of a household: its meter history and its declared PV array."""

    household_id: str
    history: MeterHistory = field(default_factory=MeterHistory.empty)
    pv: PvArray | None = None


@dataclass(frozen=True)
class HouseholdForecast:
    """A household's expected demand and generation in each coming period, whole Wh.

    Attributes
    ----------
    household_id : str
        Whose.
    period_starts_utc : tuple of datetime
        The periods forecast, aware UTC starts, in order.
    demand_wh, generation_wh : tuple of int
        Expected consumption and PV generation per period, whole Wh (half to even), >= 0.
    clear_sky_index : float or None
        The cloudiness the PV forecast used; None without a declared array.
    from_history : bool
        False when the household had no usable history and got the default.
    net_error_wh : tuple of tuple of int
        The spread of the net around the forecast, per period (see the attribute).
    """

    household_id: str
    period_starts_utc: tuple[datetime, ...]
    demand_wh: tuple[int, ...]
    generation_wh: tuple[int, ...]
    clear_sky_index: float | None
    from_history: bool
    #: Per period, how the net (demand - generation) of the recent days at its slot and the two
    #: beside it differed from this forecast, Wh, sorted; empty with fewer than
    #: :data:`MIN_ERROR_SAMPLES` (the plan sizes its orders from it: :mod:`planning.plan`).
    net_error_wh: tuple[tuple[int, ...], ...] = ()

    @property
    def demand_kwh(self) -> tuple[Decimal, ...]:
        """Demand per period as exact kWh (three decimal places)."""
        return tuple(Decimal(wh) / WH_PER_KWH for wh in self.demand_wh)

    @property
    def generation_kwh(self) -> tuple[Decimal, ...]:
        """Generation per period as exact kWh (three decimal places)."""
        return tuple(Decimal(wh) / WH_PER_KWH for wh in self.generation_wh)

    @property
    def net_import_wh(self) -> tuple[int, ...]:
        """Demand less generation per period: what the meter should see (negative: export)."""
        return tuple(d - g for d, g in zip(self.demand_wh, self.generation_wh))


# --- time -----------------------------------------------------------------------------------------


def _epoch_s(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError(f"times must be aware, not {moment!r}")
    return int(moment.timestamp())


def _local_days_and_slots(starts_s: IntArray) -> tuple[IntArray, IntArray]:
    """Each period start's Europe/London date (proleptic ordinal) and wall-clock half-hour slot.

    Offsets are looked up once per distinct hour (a few hundred for a month), not per period.
    """
    if len(starts_s) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    hours, inverse = np.unique(starts_s // 3600, return_inverse=True)
    offsets = np.array(
        [datetime.fromtimestamp(int(h) * 3600, UTC).astimezone(LONDON).utcoffset().seconds for h in hours],  # type: ignore[union-attr]
        dtype=np.int64,
    )
    local_s = starts_s + offsets[inverse.reshape(-1)]
    days = local_s // 86400 + date(1970, 1, 1).toordinal()
    slots = (local_s % 86400) // PERIOD_S
    return days.astype(np.int64), slots.astype(np.int64)


def _seasonal_factor(day_ordinals: IntArray) -> FloatArray:
    day_of_year = np.array(
        [date.fromordinal(int(o)).timetuple().tm_yday for o in day_ordinals], dtype=np.float64
    )
    return 1.0 + SEASONAL_AMPLITUDE * np.cos(2 * np.pi * (day_of_year - 15) / 365.0)


# --- the default household ------------------------------------------------------------------------


def _default_kwh_at(starts_s: IntArray, annual_kwh: float = DEFAULT_ANNUAL_KWH) -> FloatArray:
    days, slots = _local_days_and_slots(starts_s)
    shape = np.asarray(DEFAULT_DAY_SHAPE)[slots]
    unique_days, inverse = np.unique(days, return_inverse=True)
    season = _seasonal_factor(unique_days)[inverse.reshape(-1)]
    return annual_kwh / 365.0 * season * shape


def default_demand_kwh(
    period_starts_utc: Sequence[datetime], *, annual_kwh: float = DEFAULT_ANNUAL_KWH
) -> FloatArray:
    """The default household's demand in each period, kWh (floats: a model's value, not an order's).

    Parameters
    ----------
    period_starts_utc : sequence of datetime
        Aware period starts.
    annual_kwh : float
        The year's consumption the profile is scaled to (Ofgem's typical 2,700 kWh by default).

    Returns
    -------
    ndarray
        ``annual_kwh / 365 x seasonal factor x DEFAULT_DAY_SHAPE[local slot]`` per period.
    """
    return _default_kwh_at(np.array([_epoch_s(s) for s in period_starts_utc], dtype=np.int64), annual_kwh)


# --- PV -------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _Sky:
    """The sun and the clear sky at one location over some periods' 5-minute steps: what every
    array there shares (the arrays differ only in how they face it)."""

    shape: tuple[int, int]  # (periods, steps a period)
    up: npt.NDArray[np.bool_]  # the sun above the horizon, by step
    zenith_deg: FloatArray  # at the steps where it is up
    azimuth_deg: FloatArray
    dni: FloatArray
    ghi: FloatArray
    dhi: FloatArray


def _sky(starts_s: IntArray, *, latitude: float, longitude: float) -> _Sky:
    """The sun's position and the clear-sky irradiance at each 5-minute step of each period."""
    steps = PERIOD_MINUTES // PV_STEP_MINUTES
    offsets = (np.arange(steps) + 0.5) * PV_STEP_MINUTES * 60
    moments = starts_s[:, None].astype(np.float64) + offsets[None, :]
    days = np.floor(moments / 86400.0)
    # Day of year (1-based, fractional) from the UTC date: the Spencer formulas' argument.
    year_start = _year_start_days(days)
    day_of_year = days - year_start + 1 + (moments / 86400.0 - days)
    declination = solarposition.declination_spencer71(day_of_year)
    equation_of_time_min = solarposition.equation_of_time_spencer71(day_of_year)
    utc_hours = (moments % 86400.0) / 3600.0
    hour_angle_deg = 15.0 * (utc_hours - 12.0) + longitude + equation_of_time_min / 4.0
    zenith = solarposition.solar_zenith_analytical(
        np.radians(latitude), np.radians(hour_angle_deg), declination
    )
    azimuth = solarposition.solar_azimuth_analytical(
        np.radians(latitude), np.radians(hour_angle_deg), declination, zenith
    )
    zenith_deg, azimuth_deg = np.degrees(zenith), np.degrees(azimuth)
    up = (90.0 - zenith_deg) > 0.0
    empty = np.zeros(0)
    if not np.any(up):
        return _Sky(moments.shape, up, empty, empty, empty, empty, empty)
    sky = clearsky.simplified_solis(
        90.0 - zenith_deg[up], dni_extra=irradiance.get_extra_radiation(day_of_year[up])
    )
    return _Sky(
        moments.shape,
        up,
        zenith_deg[up],
        azimuth_deg[up],
        np.asarray(sky["dni"], dtype=np.float64),
        np.asarray(sky["ghi"], dtype=np.float64),
        np.asarray(sky["dhi"], dtype=np.float64),
    )


def _clear_sky_kwh_per_kwp(sky: _Sky, *, tilt_deg: float, azimuth_deg: float, ratio: float) -> FloatArray:
    """Clear-sky AC energy of 1 kWp facing ``tilt_deg``/``azimuth_deg`` over each period of
    ``sky``, kWh (see the module docstring)."""
    poa = np.zeros(sky.shape)
    if np.any(sky.up):
        total = irradiance.get_total_irradiance(
            tilt_deg,
            azimuth_deg,
            sky.zenith_deg,
            sky.azimuth_deg,
            sky.dni,
            sky.ghi,
            sky.dhi,
            model="isotropic",
        )
        poa[sky.up] = np.clip(np.nan_to_num(np.asarray(total["poa_global"], dtype=np.float64)), 0.0, None)
    return poa.mean(axis=1) / 1000.0 * ratio * PERIOD_MINUTES / 60.0


def _year_start_days(days: FloatArray) -> FloatArray:
    """Days since the epoch of 1 January of each UTC day's year."""
    unique, inverse = np.unique(days, return_inverse=True)
    epoch = date(1970, 1, 1).toordinal()
    starts = np.array(
        [date(date.fromordinal(int(d) + epoch).year, 1, 1).toordinal() - epoch for d in unique],
        dtype=np.float64,
    )
    return starts[inverse].reshape(days.shape)


def _geometry(pv: PvArray) -> tuple[float, float, float, float]:
    """The array's location and orientation as the model takes them: latitude and longitude to
    :data:`LOCATION_ROUNDING_DEG`, tilt and azimuth to :data:`ORIENTATION_ROUNDING_DEG`."""
    where, facing = LOCATION_ROUNDING_DEG, ORIENTATION_ROUNDING_DEG
    return (
        round(float(pv.latitude) / where) * where,
        round(float(pv.longitude) / where) * where,
        round(float(pv.tilt_deg) / facing) * facing,
        round(float(pv.azimuth_deg) / facing) * facing,
    )


def clear_sky_generation_kwh(
    pv: PvArray, period_starts_utc: Sequence[datetime], *, settings: ForecastSettings = DEFAULT_SETTINGS
) -> FloatArray:
    """What ``pv`` generates under a clear sky in each period, kWh.

    Parameters
    ----------
    pv : PvArray
        The declared array (peak power, tilt, azimuth, location).
    period_starts_utc : sequence of datetime
        Aware starts of 30-minute periods.
    settings : ForecastSettings
        Gives the performance ratio.

    Returns
    -------
    ndarray
        ``kWp x mean plane-of-array clear-sky irradiance / 1000 x performance ratio x 0.5 h``; zero
        when the sun is down throughout the period.
    """
    starts = np.array([_epoch_s(s) for s in period_starts_utc], dtype=np.int64)
    latitude, longitude, tilt, azimuth = _geometry(pv)
    sky = _sky(starts, latitude=latitude, longitude=longitude)
    per_kwp = _clear_sky_kwh_per_kwp(
        sky, tilt_deg=tilt, azimuth_deg=azimuth, ratio=settings.performance_ratio
    )
    return float(pv.kwp) * per_kwp


# --- the forecast ---------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _Frame:
    """What every household of one forecast shares: the history's time grid and the targets."""

    targets_s: IntArray
    grid_s: IntArray  # every period start from the history window's first to the first target
    grid_cells: IntArray  # each grid period's (local day - day0) * SLOTS_PER_DAY + slot
    day_bounds: IntArray  # where each local day starts in the grid (for reduceat)
    target_days: IntArray  # local day - day0
    target_slots: IntArray
    cell_count: int
    default_grid_kwh: FloatArray
    default_target_kwh: FloatArray
    pv_cache: dict[tuple[float, float, float, float], tuple[FloatArray, FloatArray]]
    sky_cache: dict[tuple[float, float], _Sky]


def _frame(targets_s: IntArray, settings: ForecastSettings) -> _Frame:
    first = int(targets_s[0])
    grid0 = (first // 86400 - settings.history_days - 1) * 86400
    grid = np.arange(grid0, first, PERIOD_S, dtype=np.int64)
    grid_days, grid_slots = _local_days_and_slots(grid)
    target_days, target_slots = _local_days_and_slots(targets_s)
    day0 = int(grid_days[0])
    cell_count = (int(max(grid_days[-1], target_days[-1])) - day0 + 1) * SLOTS_PER_DAY
    return _Frame(
        targets_s=targets_s,
        grid_s=grid,
        grid_cells=(grid_days - day0) * SLOTS_PER_DAY + grid_slots,
        day_bounds=np.concatenate(([0], np.flatnonzero(np.diff(grid_days)) + 1)).astype(np.int64),
        target_days=target_days - day0,
        target_slots=target_slots,
        cell_count=cell_count,
        default_grid_kwh=_default_kwh_at(grid),
        default_target_kwh=_default_kwh_at(targets_s),
        pv_cache={},
        sky_cache={},
    )


def _pv_per_kwp(frame: _Frame, pv: PvArray, settings: ForecastSettings) -> tuple[FloatArray, FloatArray]:
    """Clear-sky kWh per kWp on the history grid and at the targets, once per geometry (the sun
    and the clear sky once per location)."""
    key = _geometry(pv)
    if key not in frame.pv_cache:
        latitude, longitude, tilt, azimuth = key
        if (latitude, longitude) not in frame.sky_cache:
            frame.sky_cache[(latitude, longitude)] = _sky(
                np.concatenate((frame.grid_s, frame.targets_s)), latitude=latitude, longitude=longitude
            )
        both = _clear_sky_kwh_per_kwp(
            frame.sky_cache[(latitude, longitude)],
            tilt_deg=tilt,
            azimuth_deg=azimuth,
            ratio=settings.performance_ratio,
        )
        frame.pv_cache[key] = (both[: len(frame.grid_s)], both[len(frame.grid_s) :])
    return frame.pv_cache[key]


def _weighted_mean(values: FloatArray, weights: FloatArray, axes: tuple[int, ...]) -> FloatArray:
    """Mean of ``values`` over ``axes`` with ``weights``, skipping NaN; NaN where nothing is left."""
    present = ~np.isnan(values)
    total = np.where(present, values, 0.0) * weights
    weight = present * weights
    numerator, denominator = total.sum(axis=axes), weight.sum(axis=axes)
    return _ratio(numerator, denominator, np.nan)


def _ratio(numerator: FloatArray, denominator: FloatArray, fallback: float | FloatArray) -> FloatArray:
    """``numerator / denominator`` where the denominator is positive, ``fallback`` elsewhere."""
    positive = denominator > 0
    return np.where(positive, numerator / np.where(positive, denominator, 1.0), fallback)


def _row_medians(values: FloatArray) -> FloatArray:
    """Each row's median over its non-NaN entries; NaN for a row with none (without a warning)."""
    out = np.full(values.shape[0], np.nan)
    rows = np.flatnonzero((~np.isnan(values)).any(axis=1))
    if rows.size:
        out[rows] = np.nanmedian(values[rows], axis=1)
    return out


def _to_wh(kwh: FloatArray) -> IntArray:
    """kWh to whole Wh, half to even, never negative."""
    return np.clip(np.rint(np.nan_to_num(kwh) * WH_PER_KWH), 0, None).astype(np.int64)


def _forecast_chunk(
    households: Sequence[HouseholdHistory],
    frame: _Frame,
    starts: tuple[datetime, ...],
    settings: ForecastSettings,
) -> list[HouseholdForecast]:
    n, size = len(households), len(frame.grid_s)
    first = int(frame.targets_s[0])
    imported = np.full((n, size), np.nan)
    exported = np.full((n, size), np.nan)
    clear = np.zeros((n, size))
    clear_ahead = np.zeros((n, len(frame.targets_s)))
    for row, household in enumerate(households):
        history = household.history
        keep = (history.start_s >= frame.grid_s[0]) & (history.start_s < first) & ~history.estimated
        columns = (history.start_s[keep] - frame.grid_s[0]) // PERIOD_S
        imported[row, columns] = history.import_wh[keep] / WH_PER_KWH
        exported[row, columns] = history.export_wh[keep] / WH_PER_KWH
        if household.pv is not None:
            grid_kwh, ahead_kwh = _pv_per_kwp(frame, household.pv, settings)
            clear[row] = float(household.pv.kwp) * grid_kwh
            clear_ahead[row] = float(household.pv.kwp) * ahead_kwh
    present = ~np.isnan(imported)
    from_history = present.any(axis=1)
    net = imported - exported

    # Base demand: the median net import in the dark, else the default profile's.
    base = _row_medians(np.where(present & (clear == 0), net, np.nan))
    base_kwh = np.where(
        np.isnan(base)[:, None], frame.default_grid_kwh[None, :], np.clip(base, 0, None)[:, None]
    )
    daylight = present & (clear > 0)
    generated = np.where(daylight, exported + np.clip(base_kwh - imported, 0, None), 0.0)
    seen_clear = np.where(daylight, clear, 0.0)

    # Each local day's clear-sky index, for splitting the history.
    day_generated = np.add.reduceat(generated, frame.day_bounds, axis=1)
    day_clear = np.add.reduceat(seen_clear, frame.day_bounds, axis=1)
    day_potential = np.add.reduceat(clear, frame.day_bounds, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        overall = np.where(
            day_clear.sum(axis=1) > 0,
            day_generated.sum(axis=1) / day_clear.sum(axis=1),
            DEFAULT_CLEAR_SKY_INDEX,
        )
        enough = (day_clear > 0) & (
            day_clear >= settings.min_daylight_share * day_potential.max(axis=1, keepdims=True)
        )
        day_index = np.where(enough, day_generated / np.where(enough, day_clear, 1.0), overall[:, None])
    day_index = np.clip(day_index, 0.0, settings.max_clear_sky_index)
    day_lengths = np.diff(np.concatenate((frame.day_bounds, [size])))
    index_by_period = np.repeat(day_index, day_lengths, axis=1)
    generation = np.maximum(index_by_period * clear, exported)
    demand = net + generation  # NaN where nothing was metered

    # The forecast clear-sky index: recent bright periods count most.
    age_h = (first - (frame.grid_s + PERIOD_S / 2)) / 3600.0
    recent = age_h <= settings.cloudiness_days * 24
    weight = np.where(recent, 0.5 ** (age_h / settings.cloudiness_half_life_hours), 0.0)[None, :]
    numerator, denominator = (weight * generated).sum(axis=1), (weight * seen_clear).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        index_ahead = np.where(
            denominator > 0, numerator / np.where(denominator > 0, denominator, 1.0), overall
        )
    index_ahead = np.clip(
        np.where(from_history, index_ahead, DEFAULT_CLEAR_SKY_INDEX), 0, settings.max_clear_sky_index
    )

    # Demand by local day and wall-clock slot (the autumn change's repeated hour averaged).
    cells = np.full((n, frame.cell_count), np.nan)
    unique, first_column, counts = np.unique(frame.grid_cells, return_index=True, return_counts=True)
    single = counts == 1
    cells[:, unique[single]] = demand[:, first_column[single]]
    for cell in unique[~single]:
        columns = np.flatnonzero(frame.grid_cells == cell)
        cells[:, cell] = _weighted_mean(demand[:, columns], np.ones(len(columns)), (1,))

    lags = np.array(settings.lag_days, dtype=np.int64)
    neighbour = settings.neighbour_slot_weight
    slot_weights = np.array([neighbour, 1.0 - 2.0 * neighbour, neighbour])
    target_cells = (frame.target_days * SLOTS_PER_DAY + frame.target_slots)[:, None, None]
    index = target_cells - lags[None, :, None] * SLOTS_PER_DAY + np.array([-1, 0, 1])[None, None, :]
    inside = (index >= 0) & (index < frame.cell_count)
    values = np.where(inside[None], cells[:, np.clip(index, 0, frame.cell_count - 1)], np.nan)
    is_recent = (lags <= settings.recent_days).astype(np.float64)
    is_weekly = ((lags % 7 == 0) & (lags <= 7 * settings.same_weekday_weeks)).astype(np.float64)
    recent_mean = _weighted_mean(values, (is_recent[:, None] * slot_weights)[None, None], (2, 3))
    weekly_mean = _weighted_mean(values, (is_weekly[:, None] * slot_weights)[None, None], (2, 3))
    share = settings.same_weekday_weight
    blend = np.where(
        np.isnan(recent_mean),
        weekly_mean,
        np.where(np.isnan(weekly_mean), recent_mean, share * weekly_mean + (1 - share) * recent_mean),
    )
    days_seen = (~np.isnan(values[..., 1])).sum(axis=2)

    # The default profile at the household's own level (its history over the default's, same periods).
    own = np.where(present, demand, 0.0).sum(axis=1)
    typical = np.where(present, frame.default_grid_kwh[None, :], 0.0).sum(axis=1)
    level = np.where(present.sum(axis=1) >= SLOTS_PER_DAY, _ratio(own, typical, 1.0), 1.0)
    prior = level[:, None] * frame.default_target_kwh[None, :]
    prior_days = settings.prior_days
    blended = np.nan_to_num(blend)
    shrunk = _ratio(days_seen * blended + prior_days * prior, days_seen + prior_days, blended)
    demand_ahead = np.where(np.isnan(blend), prior, shrunk)
    generation_ahead = index_ahead[:, None] * clear_ahead

    demand_wh, generation_wh = _to_wh(demand_ahead), _to_wh(generation_ahead)
    errors = _net_errors(values, lags, settings, demand_ahead, day_index, frame, index_ahead, clear_ahead)
    return [
        HouseholdForecast(
            household_id=household.household_id,
            period_starts_utc=starts,
            demand_wh=tuple(int(v) for v in demand_wh[row]),
            generation_wh=tuple(int(v) for v in generation_wh[row]),
            clear_sky_index=None if household.pv is None else float(index_ahead[row]),
            from_history=bool(from_history[row]),
            net_error_wh=errors[row],
        )
        for row, household in enumerate(households)
    ]


def _net_errors(
    values: FloatArray,
    lags: IntArray,
    settings: ForecastSettings,
    demand_ahead: FloatArray,
    day_index: FloatArray,
    frame: _Frame,
    index_ahead: FloatArray,
    clear_ahead: FloatArray,
) -> list[tuple[tuple[int, ...], ...]]:
    """Each household's sample of net errors per target (see :attr:`HouseholdForecast.net_error_wh`).

    On each of the recent days (lags up to :attr:`ForecastSettings.recent_days`), at the target's
    slot and the two beside it: that day's demand less the forecast demand, less that day's
    cloudiness less the forecast's times the target's clear-sky generation. So the sample holds
    both the spikes of a home's demand and the days' weather.
    """
    recent = np.flatnonzero(lags <= settings.recent_days)
    if recent.size == 0:
        return [() for _ in range(values.shape[0])]
    demand_error = values[:, :, recent, :] - demand_ahead[:, :, None, None]  # (n, T, days, 3)
    days = frame.target_days[:, None] - lags[recent][None, :]  # (T, days): local day - day0
    inside = (days >= 0) & (days < day_index.shape[1])
    seen_index = np.where(inside[None], day_index[:, np.clip(days, 0, day_index.shape[1] - 1)], np.nan)
    generation_error = np.where(  # (n, T, days); none without a clear-sky generation
        clear_ahead[:, :, None] > 0, (seen_index - index_ahead[:, None, None]) * clear_ahead[:, :, None], 0.0
    )
    error_wh = np.rint((demand_error - generation_error[..., None]) * WH_PER_KWH)
    n, targets = error_wh.shape[:2]
    flat = error_wh.reshape(n, targets, -1)
    found: list[tuple[tuple[int, ...], ...]] = []
    for row in range(n):
        per_target = []
        for t in range(targets):
            sample = flat[row, t][~np.isnan(flat[row, t])]
            per_target.append(
                tuple(int(v) for v in np.sort(sample)) if sample.size >= MIN_ERROR_SAMPLES else ()
            )
        found.append(tuple(per_target))
    return found


def forecast_households(
    households: Sequence[HouseholdHistory],
    period_starts_utc: Sequence[datetime],
    *,
    settings: ForecastSettings = DEFAULT_SETTINGS,
    chunk_size: int = 1000,
) -> list[HouseholdForecast]:
    """Forecast the demand and generation of many households for the same coming periods.

    Parameters
    ----------
    households : sequence of HouseholdHistory
        Each household's meter history and declared PV. History at or after the first target is
        ignored (it is not yet known when the forecast is made); so is history older than
        :attr:`ForecastSettings.history_days` days.
    period_starts_utc : sequence of datetime
        The periods to forecast: aware, 30-minute aligned, increasing (usually the next 12).
    settings : ForecastSettings
        The method's windows and weights.
    chunk_size : int
        Households worked on together (bounds memory: a chunk's arrays are about
        ``chunk_size x history periods`` floats each).

    Returns
    -------
    list of HouseholdForecast
        One per household, in the order given.

    Raises
    ------
    ValueError
        If a start is naive, not on a period boundary, or out of order.
    """
    starts = tuple(period_starts_utc)
    targets = np.array([_epoch_s(start) for start in starts], dtype=np.int64)
    if np.any(targets % PERIOD_S):
        raise ValueError(f"period_starts_utc: every period starts on a {PERIOD_MINUTES}-minute boundary")
    if np.any(np.diff(targets) <= 0):
        raise ValueError("period_starts_utc: periods must be in increasing order, each once")
    starts = tuple(start.astimezone(UTC) for start in starts)
    if not starts:
        return [HouseholdForecast(h.household_id, (), (), (), None, False) for h in households]
    frame = _frame(targets, settings)
    forecasts: list[HouseholdForecast] = []
    for begin in range(0, len(households), chunk_size):
        forecasts += _forecast_chunk(households[begin : begin + chunk_size], frame, starts, settings)
    return forecasts


def forecast_household(
    household: HouseholdHistory,
    period_starts_utc: Sequence[datetime],
    *,
    settings: ForecastSettings = DEFAULT_SETTINGS,
) -> HouseholdForecast:
    """:func:`forecast_households` for one household."""
    return forecast_households([household], period_starts_utc, settings=settings)[0]


# --- the error ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ForecastError:
    """How far forecasts ``periods_ahead`` periods ahead were from what happened.

    Attributes
    ----------
    periods_ahead : int
        1 for the first period forecast.
    count : int
        Forecasts compared (those with a measured value).
    mae_kwh : float
        Mean absolute error, kWh per period.
    mean_actual_kwh : float
        Mean absolute measured value, kWh per period.
    """

    periods_ahead: int
    count: int
    mae_kwh: float
    mean_actual_kwh: float

    @property
    def nmae(self) -> float:
        """The MAE over the mean absolute measured value (NaN when that is zero)."""
        return self.mae_kwh / self.mean_actual_kwh if self.mean_actual_kwh > 0 else math.nan


def forecast_error(forecast_wh: npt.ArrayLike, actual_wh: npt.ArrayLike) -> list[ForecastError]:
    """MAE and normalised MAE per period ahead.

    Parameters
    ----------
    forecast_wh, actual_wh : array-like, shape (forecasts, periods ahead)
        A row per forecast (a household at one forecast time), a column per period ahead, Wh;
        NaN in ``actual_wh`` where nothing was measured (skipped).

    Returns
    -------
    list of ForecastError
        One per column. nMAE is ``sum |forecast - actual| / sum |actual|``.
    """
    forecast = np.asarray(forecast_wh, dtype=np.float64)
    actual = np.asarray(actual_wh, dtype=np.float64)
    if forecast.shape != actual.shape or forecast.ndim != 2:
        raise ValueError("forecast_wh and actual_wh must be 2-D and of the same shape")
    errors = []
    for column in range(forecast.shape[1]):
        measured = ~np.isnan(actual[:, column])
        count = int(measured.sum())
        if count == 0:
            errors.append(ForecastError(column + 1, 0, math.nan, math.nan))
            continue
        difference = np.abs(forecast[measured, column] - actual[measured, column])
        errors.append(
            ForecastError(
                column + 1,
                count,
                float(difference.mean()) / WH_PER_KWH,
                float(np.abs(actual[measured, column]).mean()) / WH_PER_KWH,
            )
        )
    return errors


def net_forecast_error(
    forecasts: Sequence[HouseholdForecast], measured: Mapping[str, MeterHistory]
) -> list[ForecastError]:
    """The error of the forecast net import (demand - generation) against what the meters then
    measured (import - export), per period ahead; estimated or missing periods are skipped.

    Parameters
    ----------
    forecasts : sequence of HouseholdForecast
        Forecasts, from one or several forecast times, all for the same number of periods.
    measured : mapping of household id to MeterHistory
        What each household's meter measured over (at least) the forecast periods.
    """
    if not forecasts:
        return []
    horizon = len(forecasts[0].period_starts_utc)
    predicted = np.full((len(forecasts), horizon), np.nan)
    actual = np.full((len(forecasts), horizon), np.nan)
    for row, forecast in enumerate(forecasts):
        if len(forecast.period_starts_utc) != horizon:
            raise ValueError("every forecast must cover the same number of periods")
        predicted[row] = forecast.net_import_wh
        history = measured.get(forecast.household_id)
        if history is None or len(history) == 0:
            continue
        actual_by_start = {
            int(start): int(imported) - int(exported)
            for start, imported, exported, estimated in zip(
                history.start_s, history.import_wh, history.export_wh, history.estimated
            )
            if not estimated
        }
        for column, start in enumerate(forecast.period_starts_utc):
            value = actual_by_start.get(_epoch_s(start))
            if value is not None:
                actual[row, column] = value
    return forecast_error(predicted, actual)
