"""Sunshine and temperature: clear-sky irradiance from pvlib, a seeded cloud process, roof PV output.

Irradiance is pvlib's Ineichen clear-sky model at the scenario's location, with the Linke turbidity
from pvlib's bundled monthly climatology (``LinkeTurbidities.h5``, read offline through h5py) unless
the scenario fixes a constant. Plane-of-array irradiance is pvlib's isotropic-sky transposition for
a roof at the scenario's tilt and azimuth (35 degrees, due south, by default). Clouds are one
clear-sky index process for the whole scenario (every roof on the street sees the same clouds): a
seeded AR(1) process at one-minute steps with the configured mean, standard deviation and
correlation time, clipped to [0.05, 1.2]; each roof then gets a small seeded AR(1) deviation of its
own (``home_noise``). PV output is ``kWp x POA / 1000 W/m2 x performance ratio x clear-sky index``,
which at a clear Birmingham summer noon gives about 0.7-0.8 kW per kWp.

Every time here is UTC; the arrays are indexed by minutes from the scenario's start.

May import numpy, pandas, pvlib and :mod:`simulation.scenario`.
"""

from __future__ import annotations

import functools
import warnings
from datetime import UTC, datetime, timedelta

import numpy as np
import numpy.typing as npt
import pandas as pd
import pvlib

from simulation.scenario import LocationSpec, SolarSpec, WeatherSpec

__all__ = [
    "clear_sky_at",
    "clear_sky_index_minutes",
    "clear_sky_minutes",
    "heating_weights",
    "home_deviation",
    "plane_of_array_minutes",
    "temperature_c",
]

FloatArray = npt.NDArray[np.float64]
CLEAR_SKY_INDEX_BOUNDS = (0.05, 1.2)


def _turbidity(times: pd.DatetimeIndex, linke_turbidity: float | None) -> dict[str, pd.Series]:
    """pvlib's own climatology lookup unless the scenario fixes a constant."""
    if linke_turbidity is None:
        return {}
    return {"linke_turbidity": pd.Series(linke_turbidity, index=times)}


@functools.lru_cache(maxsize=64)
def _clear_sky_frame(
    start_utc: datetime, minutes: int, location: LocationSpec, linke_turbidity: float | None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Clear-sky irradiance and solar position at the middle of each minute."""
    times = pd.date_range(start_utc + timedelta(seconds=30), periods=minutes, freq="1min", tz=UTC)
    site = pvlib.location.Location(
        location.latitude, location.longitude, tz="UTC", altitude=location.altitude_m
    )
    with warnings.catch_warnings():  # pvlib and pandas deprecation chatter is not ours to fix
        warnings.simplefilter("ignore")
        position = site.get_solarposition(times)
        clear = site.get_clearsky(
            times, model="ineichen", solar_position=position, **_turbidity(times, linke_turbidity)
        )
    return clear, position


def clear_sky_minutes(
    start_utc: datetime, minutes: int, location: LocationSpec, weather: WeatherSpec
) -> FloatArray:
    """Clear-sky global horizontal irradiance, W/m2, one value per minute from ``start_utc``.

    Parameters
    ----------
    start_utc : datetime
        Aware UTC start.
    minutes : int
        How many minutes.
    location : LocationSpec
        Latitude, longitude and altitude.
    weather : WeatherSpec
        Gives the optional constant Linke turbidity.

    Returns
    -------
    ndarray
        GHI at each minute's midpoint, never negative.
    """
    clear, _ = _clear_sky_frame(start_utc, minutes, location, weather.linke_turbidity)
    return np.clip(clear["ghi"].to_numpy(dtype=np.float64), 0.0, None)


def plane_of_array_minutes(
    start_utc: datetime, minutes: int, location: LocationSpec, weather: WeatherSpec, solar: SolarSpec
) -> FloatArray:
    """Clear-sky plane-of-array irradiance on the scenario's roof, W/m2, one value per minute.

    Parameters
    ----------
    start_utc, minutes, location, weather
        As for :func:`clear_sky_minutes`.
    solar : SolarSpec
        The roof's tilt and azimuth.

    Returns
    -------
    ndarray
        Isotropic-sky POA global irradiance, never negative, zero when the sun is down.
    """
    clear, position = _clear_sky_frame(start_utc, minutes, location, weather.linke_turbidity)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        poa = pvlib.irradiance.get_total_irradiance(
            surface_tilt=solar.tilt_deg,
            surface_azimuth=solar.azimuth_deg,
            solar_zenith=position["apparent_zenith"],
            solar_azimuth=position["azimuth"],
            dni=clear["dni"],
            ghi=clear["ghi"],
            dhi=clear["dhi"],
            model="isotropic",
        )
    values = np.nan_to_num(poa["poa_global"].to_numpy(dtype=np.float64), nan=0.0)
    values[position["apparent_elevation"].to_numpy() <= 0.0] = 0.0
    return np.clip(values, 0.0, None)


def _ar1(rng: np.random.Generator, shape: tuple[int, ...], phi: float) -> FloatArray:
    """A stationary AR(1) process with unit variance along the last axis."""
    shocks = rng.standard_normal(shape)
    out = np.empty(shape)
    out[..., 0] = shocks[..., 0]
    scale = np.sqrt(1.0 - phi * phi)
    for t in range(1, shape[-1]):
        out[..., t] = phi * out[..., t - 1] + scale * shocks[..., t]
    return out


def clear_sky_index_minutes(minutes: int, weather: WeatherSpec, seed: int) -> FloatArray:
    """The scenario's clear-sky index, one value per minute: seeded AR(1), clipped to [0.05, 1.2].

    Parameters
    ----------
    minutes : int
        How many minutes.
    weather : WeatherSpec
        Mean, standard deviation and correlation time of the index.
    seed : int
        The scenario seed.

    Returns
    -------
    ndarray
        The clear-sky index at each minute.
    """
    rng = np.random.default_rng([seed, 101])
    phi = float(np.exp(-1.0 / weather.cloud_time_constant_minutes))
    process = _ar1(rng, (minutes,), phi)
    index = weather.clear_sky_index_mean + weather.clear_sky_index_std * process
    return np.clip(index, *CLEAR_SKY_INDEX_BOUNDS)


def home_deviation(homes: int, steps: int, step_s: int, weather: WeatherSpec, seed: int) -> FloatArray:
    """Each roof's own relative deviation from the street's sunshine, shape (homes, steps).

    A seeded AR(1) per roof with standard deviation ``home_noise`` and a 10-minute correlation time,
    clipped so that the factor ``1 + deviation`` stays within [0.5, 1.5].
    """
    if homes == 0 or weather.home_noise == 0:
        return np.zeros((homes, steps))
    rng = np.random.default_rng([seed, 102])
    phi = float(np.exp(-step_s / 600.0))
    return np.clip(weather.home_noise * _ar1(rng, (homes, steps), phi), -0.5, 0.5)


def temperature_c(local_hours: FloatArray, weather: WeatherSpec) -> FloatArray:
    """Outdoor temperature: a daily cosine around the mean, warmest at 15:00 local time."""
    return weather.temperature_mean_c + weather.temperature_amplitude_c * np.cos(
        2 * np.pi * (local_hours - 15.0) / 24.0
    )


HEATING_BASE_C = 18.0
"""Below this outdoor temperature a heat pump's output rises linearly (degree-minutes)."""
SETBACK_HOURS = (22.0, 5.0)
"""Local hours of the night set-back, when heating runs at :data:`SETBACK_FACTOR`."""
SETBACK_FACTOR = 0.6


def heating_weights(local_hours: FloatArray, weather: WeatherSpec) -> FloatArray:
    """A heat pump's relative demand: (heating degrees + 1) times a night set-back factor.

    The ``+ 1`` keeps a floor (hot water, circulation) on mild days; the weights are normalised per
    day by the caller, so only their shape matters.
    """
    degrees = np.clip(HEATING_BASE_C - temperature_c(local_hours, weather), 0.0, None) + 1.0
    night = (local_hours >= SETBACK_HOURS[0]) | (local_hours < SETBACK_HOURS[1])
    return degrees * np.where(night, SETBACK_FACTOR, 1.0)


def clear_sky_at(times_utc: list[datetime], location: LocationSpec, weather: WeatherSpec) -> FloatArray:
    """Clear-sky global horizontal irradiance, W/m2, at arbitrary UTC instants."""
    times = pd.DatetimeIndex(times_utc)
    site = pvlib.location.Location(
        location.latitude, location.longitude, tz="UTC", altitude=location.altitude_m
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clear = site.get_clearsky(times, model="ineichen", **_turbidity(times, weather.linke_turbidity))
    return np.clip(clear["ghi"].to_numpy(dtype=np.float64), 0.0, None)
