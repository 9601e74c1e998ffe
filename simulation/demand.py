"""Household electricity demand from the CREST model (richardsonpy), through a seeded profile pool.

The CREST domestic model (Richardson, Thomson, Infield and others, Loughborough University; the
Python port ``richardsonpy``) draws a household's active occupancy from time-use-survey Markov
chains and switches its appliances and lights on and off minute by minute. It is the realistic part
of a simulated home, and it is slow-ish: about 50 ms per household-day, pure Python. A district of
10,000 homes would take minutes, so homes do not get a CREST run each.

The profile pool
----------------
For each settlement date and occupant count (1 to 5) a **pool** of ``pool_size`` CREST day
profiles is drawn (one-minute resolution, 1440 local wall-clock minutes), seeded by the scenario
seed, the date, the occupant count and the profile's number, and kept in process by
:func:`functools.lru_cache` (never on disk). Each home takes one profile of its occupant count's
pool, chosen by its own seeded draw, and makes it its own:

- **scaling**: the profile is multiplied by ``annual_kwh / 365 x seasonal_factor(date) / pool_mean``,
  where ``pool_mean`` is the mean daily energy of that pool. A home's expected daily energy is
  therefore ``annual_kwh / 365 x seasonal_factor``, while the profile's own deviation from the pool
  mean (a busy day, a quiet day) survives. The seasonal factor is
  ``1 + 0.15 cos(2 pi (day_of_year - 15) / 365)``: 1.15 in mid January, 0.85 in mid July, so a
  winter day uses about 1.35 times a summer day's energy, close to Elexon's profile class 1;
- **jitter**: the profile is shifted in time by a seeded number of minutes within
  ``+-max_shift_minutes`` (wrapping round the day), so that homes sharing a pool profile do not
  switch their kettles on in the same minute.

The pool is only ``5 x pool_size`` CREST runs per date whatever the number of homes (a pool of 12
costs about 3 s), which keeps the demo's street and the 10,000-home district fast while every home
still has a realistic, spiky, occupancy-driven load.

Local time: CREST runs on the wall clock from local midnight. A home's UTC minute takes the value
at its local wall-clock minute, so on the autumn clock change the repeated hour replays (the
household does 01:00-02:00 twice, as people do), and in spring the skipped hour is skipped.

richardsonpy uses the global :mod:`random` state (and could use NumPy's legacy one): both are saved,
seeded for each profile and restored afterwards, and its warnings are silenced only around the
call. The global state makes pool building not thread-safe; the cache makes it happen once.

May import numpy, richardsonpy and :mod:`simulation.weather`.
"""

from __future__ import annotations

import contextlib
import functools
import random
import warnings
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import numpy as np
import numpy.typing as npt

__all__ = ["MINUTES_PER_DAY", "SEASONAL_AMPLITUDE", "WEEKEND_DAYS", "crest_pool", "seasonal_factor"]

MINUTES_PER_DAY = 1440
SEASONAL_AMPLITUDE = 0.15
"""Relative swing of daily demand over the year (see :func:`seasonal_factor`)."""
WEEKEND_DAYS = (5, 6)  # date.weekday() of Saturday and Sunday


def seasonal_factor(day: date) -> float:
    """How much more (or less) than the annual average a home uses on ``day``.

    ``1 + 0.15 cos(2 pi (day_of_year - 15) / 365)``: highest in mid January, lowest in mid July.
    """
    day_of_year = day.timetuple().tm_yday
    return 1.0 + SEASONAL_AMPLITUDE * float(np.cos(2 * np.pi * (day_of_year - 15) / 365.0))


@contextlib.contextmanager
def _isolated_global_random(seed: int) -> Iterator[None]:
    """Seed :mod:`random` and NumPy's legacy generator for a block, then put both back."""
    python_state = random.getstate()
    numpy_state = np.random.get_state()
    random.seed(seed)
    np.random.seed(seed % 2**32)  # richardsonpy may use the legacy generator; isolated here
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)


def _one_profile(
    occupants: int, day: date, irradiance_w_m2: npt.NDArray[np.float64], seed: int
) -> list[float]:
    import richardsonpy.classes.appliance as appliance_model
    import richardsonpy.classes.lighting as lighting_model
    import richardsonpy.classes.occupancy as occupancy_model
    import richardsonpy.classes.stochastic_el_load_wrapper as load_wrapper
    from richardsonpy.classes.electric_load import ElectricLoad

    inputs = Path(appliance_model.__file__).resolve().parent.parent / "inputs"
    weekend = day.weekday() in WEEKEND_DAYS
    with _isolated_global_random(seed):
        occupancy = occupancy_model.Occupancy(
            number_occupants=occupants, initial_day=7 if weekend else 1, nb_days=1
        )
        # CREST calibrates appliance use to an annual demand; take its own reference for the
        # household size (lighting is the other 9 %), then rescale: only the shape and the
        # profile-to-profile variation are used.
        annual_kwh = ElectricLoad.standard_consumption["SFH"][occupants]
        appliances = appliance_model.Appliances(
            str(inputs / "Appliances.csv"), annual_consumption=0.91 * annual_kwh, randomize_appliances=True
        )
        bulbs = lighting_model.load_lighting_profile(
            filename=str(inputs / "LightBulbs.csv"), index=random.randrange(100)
        )
        wrapper = load_wrapper.ElectricityProfile(appliances, bulbs)
        total_w, _, _ = wrapper.power_sim(
            irradiation=irradiance_w_m2,
            weekend=weekend,
            day=day.timetuple().tm_yday,
            occupancy=occupancy.occupancy,
        )
    return [float(value) for value in total_w]


@functools.lru_cache(maxsize=64)
def crest_pool(
    seed: int, occupants: int, day: date, pool_size: int, irradiance_w_m2: tuple[float, ...]
) -> npt.NDArray[np.float64]:
    """The pool of CREST day profiles for one occupant count and one date.

    Parameters
    ----------
    seed : int
        The scenario seed.
    occupants : int
        Household size, 1 to 5.
    day : date
        The local date: picks weekday or weekend behaviour and the month's appliance use.
    pool_size : int
        How many profiles.
    irradiance_w_m2 : tuple of float
        1440 values of outdoor global horizontal irradiance on the local wall clock, for lighting
        (a tuple so that it can be part of the cache key).

    Returns
    -------
    ndarray
        Shape (pool_size, 1440), watts per local minute; read-only, as it is shared.
    """
    irradiance = np.asarray(irradiance_w_m2, dtype=np.float64)
    rows = []
    for number in range(pool_size):
        profile_seed = int(
            np.random.SeedSequence([seed, 201, day.toordinal(), occupants, number]).generate_state(1)[0]
        )
        rows.append(_one_profile(occupants, day, irradiance, profile_seed))
    pool = np.array(rows, dtype=np.float64)
    pool.setflags(write=False)
    return pool
