"""How simulated households bid: a price forecast, four bidding strategies, battery and EV plans.

Prices as positions
-------------------
Every price here is first a **position** between the backstop tariffs: 0 is the export tariff
``E``, 1 the import tariff ``I``, and a position ``x`` is the price ``E + x (I - E)`` p/kWh, rounded
to the 0.01 p tick and kept within ``[E, I]``. No agent ever bids above the import tariff (it could
buy from the energy company instead) or offers below the export tariff (it could sell to it).

The price forecast
------------------
Agents forecast the local price by time of day (local clock), as a position:
``band(hour) x (1 - solar_depth x sun)``, where ``band`` is ``night_level`` from 23:00 to 06:00,
``peak_level`` from 16:00 to 20:00 and ``day_level`` otherwise, and ``sun`` is the clear-sky
horizontal irradiance times the scenario's mean clear-sky index over 1000 W/m2 (at most 1). So
the forecast is cheap at a sunny midday (plenty of PV for sale), middling overnight, dear in the
evening peak; on a winter day the solar dip is shallow and night is the cheapest time.

Legs and netting
----------------
A household's position in a period is made of **legs**, each a signed energy (import positive)
with its own limit price: the *base* leg (forecast demand, heat pump included, less forecast PV),
the *battery* leg (its committed charge or discharge), and the EV's *urgent* and *flexible* legs.
The household bids its net: if it is a net buyer, its own supply (PV surplus, battery discharge)
first covers its own cheapest buy legs, and the buy legs left become buy orders at their prices;
a net seller's own demand first takes its dearest sell legs, and the rest become sell orders. So a
battery household with PV nets both, and one household never both buys and sells in a period.
Legs of one side and price are merged into one order; quantities are rounded to whole Wh and
anything under 1 Wh is dropped.

Strategies
----------
Each strategy prices the legs (positions, parameters in ``strategy_params``); every household
also gets a seeded offset, uniform in ``+-spread``, added to all its positions, so that a street
does not bid on one price:

``consumer`` (``buy_position`` 0.7, ``sell_position`` 0.2, ``spread`` 0.05)
    Bids forecast net demand at ``buy_position``, offers any surplus at ``sell_position``; its
    battery and EV legs, if any, are priced as the base leg.
``pv`` (``buy_position`` 0.65, ``sell_position`` 0.3, ``spread`` 0.05)
    The same rule with a PV owner's defaults: offers forecast surplus a little above the export
    tariff, bids forecast net demand when it has no surplus.
``battery`` (as ``pv``, plus ``charge_margin`` 0.05, ``discharge_margin`` 0.05)
    Its battery charges in the cheapest and discharges in the dearest forecast periods
    (:func:`plan_battery`); the charge is bid at the forecast position less ``charge_margin``
    (a low buy limit), the discharge offered at the forecast plus ``discharge_margin`` (a high
    sell limit). The dispatch is committed when it bids, accepted or not.
``ev`` (as ``pv``, plus ``flexible_position`` 0.35, ``urgent_position`` 1.0)
    The EV's plan (:func:`plan_ev`) fills the cheapest forecast periods between arrival and
    departure; in each period the energy that could not be moved to a later period of the window
    (what *must* be bought now to meet the deadline at full charger power) is bid at
    ``urgent_position``, the rest at ``flexible_position``. Its charging is its plan.

``auto`` picks ``battery`` for a home with a battery, else ``ev`` with an EV, else ``pv`` with PV,
else ``consumer``; its ``strategy_params`` go to whichever applies (unknown ones are refused).

Batteries and EVs follow their plans whatever a home's strategy; the strategy only sets prices.

May import numpy and the standard library.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import ClassVar

import numpy as np
import numpy.typing as npt

__all__ = [
    "STRATEGIES",
    "BatteryStrategy",
    "ConsumerStrategy",
    "EvStrategy",
    "PvStrategy",
    "Strategy",
    "check_strategy_params",
    "forecast_positions",
    "make_strategy",
    "net_legs",
    "plan_battery",
    "plan_ev",
]

FloatArray = npt.NDArray[np.float64]

NIGHT_HOURS = (23.0, 6.0)
PEAK_HOURS = (16.0, 20.0)
FULL_SUN_W_M2 = 1000.0


def forecast_positions(
    local_hours: FloatArray,
    clear_sky_ghi_w_m2: FloatArray,
    *,
    clear_sky_index_mean: float,
    night_level: float,
    day_level: float,
    peak_level: float,
    solar_depth: float,
) -> FloatArray:
    """The agents' price forecast for each period, as positions between the tariffs (0 to 1).

    Parameters
    ----------
    local_hours : ndarray
        Each period's midpoint in local hours since local midnight (0 to 24).
    clear_sky_ghi_w_m2 : ndarray
        Clear-sky horizontal irradiance at each period's midpoint.
    clear_sky_index_mean : float
        The scenario's expected clear-sky index.
    night_level, day_level, peak_level, solar_depth : float
        See the module docstring.

    Returns
    -------
    ndarray
        ``band(hour) x (1 - solar_depth x sun)``, within [0, 1].
    """
    night = (local_hours >= NIGHT_HOURS[0]) | (local_hours < NIGHT_HOURS[1])
    peak = (local_hours >= PEAK_HOURS[0]) & (local_hours < PEAK_HOURS[1])
    band = np.where(night, night_level, np.where(peak, peak_level, day_level))
    sun = np.clip(clear_sky_ghi_w_m2 * clear_sky_index_mean / FULL_SUN_W_M2, 0.0, 1.0)
    return np.clip(band * (1.0 - solar_depth * sun), 0.0, 1.0)


@dataclass(frozen=True)
class Strategy:
    """A bidding rule: the positions (0 = export tariff, 1 = import tariff) of a home's legs.

    Attributes
    ----------
    buy_position : float
        Where the base leg's buy limit sits.
    sell_position : float
        Where the base leg's sell limit sits.
    spread : float
        Half-width of the seeded per-household offset added to every position.
    """

    name: ClassVar[str] = "consumer"
    buy_position: float = 0.7
    sell_position: float = 0.2
    spread: float = 0.05

    def battery_positions(self, forecast: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Positions of the battery leg's charge (buy) and discharge (sell), per period."""
        return np.full_like(forecast, self.buy_position), np.full_like(forecast, self.sell_position)

    def ev_positions(self) -> tuple[float, float]:
        """Positions of the EV's urgent and flexible legs (both buys)."""
        return self.buy_position, self.buy_position


@dataclass(frozen=True)
class ConsumerStrategy(Strategy):
    """``consumer``: bids forecast net demand, offers any surplus; see the module docstring."""

    name: ClassVar[str] = "consumer"


@dataclass(frozen=True)
class PvStrategy(Strategy):
    """``pv``: offers forecast PV surplus above the export tariff; bids net demand otherwise."""

    name: ClassVar[str] = "pv"
    buy_position: float = 0.65
    sell_position: float = 0.3


@dataclass(frozen=True)
class BatteryStrategy(PvStrategy):
    """``battery``: charge bid below the forecast, discharge offered above it.

    Attributes
    ----------
    charge_margin : float
        How far below the forecast position the charge is bid.
    discharge_margin : float
        How far above the forecast position the discharge is offered.
    """

    name: ClassVar[str] = "battery"
    charge_margin: float = 0.05
    discharge_margin: float = 0.05

    def battery_positions(self, forecast: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Charge at the forecast less ``charge_margin``, discharge at it plus ``discharge_margin``."""
        return (
            np.clip(forecast - self.charge_margin, 0.0, 1.0),
            np.clip(forecast + self.discharge_margin, 0.0, 1.0),
        )


@dataclass(frozen=True)
class EvStrategy(PvStrategy):
    """``ev``: urgent charging at a high limit, flexible charging at a low one.

    Attributes
    ----------
    flexible_position : float
        Limit position for charging that could still wait.
    urgent_position : float
        Limit position for charging that must happen now to meet the deadline.
    """

    name: ClassVar[str] = "ev"
    flexible_position: float = 0.35
    urgent_position: float = 1.0

    def ev_positions(self) -> tuple[float, float]:
        """``urgent_position`` and ``flexible_position``."""
        return self.urgent_position, self.flexible_position


STRATEGIES: Mapping[str, type[Strategy]] = {
    cls.name: cls for cls in (ConsumerStrategy, PvStrategy, BatteryStrategy, EvStrategy)
}


def _parameter_names(cls: type[Strategy]) -> set[str]:
    return {f.name for f in fields(cls)}


def check_strategy_params(name: str, params: Mapping[str, float]) -> None:
    """Refuse parameters the strategy does not have, and positions outside [0, 1].

    Raises
    ------
    ValueError
        Naming the parameter.
    """
    if name == "auto":
        known = set().union(*(_parameter_names(cls) for cls in STRATEGIES.values()))
    else:
        known = _parameter_names(STRATEGIES[name])
    for key, value in params.items():
        if key not in known:
            raise ValueError(
                f"strategy_params.{key} is not a parameter of strategy {name!r} ({', '.join(sorted(known))})"
            )
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"strategy_params.{key} must be within [0, 1], got {value}")


def make_strategy(name: str, params: Mapping[str, float]) -> Strategy:
    """The strategy ``name`` (not ``auto``) with those of ``params`` it knows."""
    cls = STRATEGIES[name]
    known = _parameter_names(cls)
    return cls(**{key: float(value) for key, value in params.items() if key in known})


def plan_battery(
    forecast: FloatArray,
    day_of_period: npt.NDArray[np.int64],
    tie_break: FloatArray,
    *,
    capacity_kwh: float,
    power_kw: float,
    period_h: float,
    round_trip_efficiency: float,
    initial_soc_kwh: float,
) -> tuple[FloatArray, FloatArray]:
    """A battery's committed dispatch: charge in each day's cheapest periods, discharge in its dearest.

    Rule, per settlement day: the ``ceil(capacity / (power x period))`` cheapest forecast periods are
    charge periods and as many of the dearest are discharge periods, but only those whose forecast
    times the round-trip efficiency beats the dearest charge period (cycling must pay for its
    losses); ties are broken by ``tie_break`` (a seeded per-home key, so a street's batteries do not
    all start in the same period). The battery then runs through the periods in order, charging at
    full power in a charge period until full and discharging at full power in a discharge period
    until empty. Losses are split evenly: stored energy is grid energy times sqrt(efficiency) when
    charging and grid energy over sqrt(efficiency) when discharging.

    Parameters
    ----------
    forecast : ndarray
        Forecast price positions, one per period.
    day_of_period : ndarray of int
        Each period's settlement-day number (0, 1, ...).
    tie_break : ndarray
        A key per period breaking ties between equal forecasts (lower first among the cheapest).
    capacity_kwh, power_kw : float
        Usable energy and the most power either way.
    period_h : float
        Period length in hours.
    round_trip_efficiency : float
        Energy out over energy in (0.5 to 1).
    initial_soc_kwh : float
        Stored energy before the first period.

    Returns
    -------
    grid_kwh : ndarray
        Energy from the grid into the battery per period: positive charging, negative discharging.
    soc_kwh : ndarray
        Stored energy at every period boundary (one more value than periods).
    """
    periods = len(forecast)
    role = np.zeros(periods, dtype=np.int8)  # +1 charge, -1 discharge
    full_power_kwh = power_kw * period_h
    one_way = math.sqrt(round_trip_efficiency)
    count = math.ceil(capacity_kwh / full_power_kwh - 1e-9)
    for day in np.unique(day_of_period):
        members = np.flatnonzero(day_of_period == day)
        prices = forecast[members]
        cheap = members[np.lexsort((tie_break[members], prices))][:count]
        dear_order = members[np.lexsort((tie_break[members], -prices))]
        worst_charge = forecast[cheap].max()
        dear = [i for i in dear_order[:count] if forecast[i] * round_trip_efficiency > worst_charge]
        if not dear:
            continue
        role[cheap] = 1
        role[np.array(dear, dtype=np.int64)] = -1
    grid_kwh = np.zeros(periods)
    soc_kwh = np.empty(periods + 1)
    soc = min(max(initial_soc_kwh, 0.0), capacity_kwh)
    soc_kwh[0] = soc
    for i in range(periods):
        if role[i] == 1:
            energy = min(full_power_kwh, (capacity_kwh - soc) / one_way)
            grid_kwh[i] = energy
            soc = min(capacity_kwh, soc + energy * one_way)
        elif role[i] == -1:
            energy = min(full_power_kwh, soc * one_way)
            grid_kwh[i] = -energy
            soc = max(0.0, soc - energy / one_way)
        soc_kwh[i + 1] = soc
    return grid_kwh, soc_kwh


def plan_ev(
    forecast: FloatArray, tie_break: FloatArray, *, need_kwh: float, max_kwh_per_period: float
) -> tuple[FloatArray, FloatArray]:
    """An EV's charging plan over its plug-in window and the part of it that is urgent.

    The need is put into the cheapest forecast periods of the window (ties broken by ``tie_break``),
    each filled up to the charger's energy per period, the last one partly. In each period, the
    urgent part is what could not wait: ``max(0, need still to charge at its start - the most the
    charger can deliver in the later periods of the window)``, at most the period's plan.

    Parameters
    ----------
    forecast : ndarray
        Forecast price positions over the window's periods, in time order.
    tie_break : ndarray
        Per-period key breaking ties between equal forecasts.
    need_kwh : float
        Energy to deliver by the end of the window.
    max_kwh_per_period : float
        Charger power times period length.

    Returns
    -------
    plan_kwh : ndarray
        Energy charged in each period of the window (sums to ``need_kwh``, or to the window's
        capacity if that is less).
    urgent_kwh : ndarray
        The urgent part of each period's plan.
    """
    periods = len(forecast)
    plan = np.zeros(periods)
    left = need_kwh
    for i in np.lexsort((tie_break, forecast)):
        if left <= 0:
            break
        plan[i] = min(max_kwh_per_period, left)
        left -= plan[i]
    charged_before = np.concatenate(([0.0], np.cumsum(plan)[:-1]))
    still_needed = np.clip(min(need_kwh, max_kwh_per_period * periods) - charged_before, 0.0, None)
    capacity_after = max_kwh_per_period * (periods - 1 - np.arange(periods))
    urgent = np.clip(still_needed - capacity_after, 0.0, plan)
    return plan, urgent


def net_legs(energy_kwh: FloatArray, position: FloatArray) -> FloatArray:
    """What of each leg a household bids after netting its legs (see the module docstring).

    Parameters
    ----------
    energy_kwh : ndarray
        Shape (..., legs): signed energy of each leg, import positive.
    position : ndarray
        Same shape: each leg's limit position.

    Returns
    -------
    ndarray
        Same shape: the energy each leg still bids, with the leg's sign; a net buyer has only buy
        legs left, a net seller only sell legs.
    """
    buys = np.clip(energy_kwh, 0.0, None)
    sells = np.clip(-energy_kwh, 0.0, None)
    total_buy = buys.sum(axis=-1, keepdims=True)
    total_sell = sells.sum(axis=-1, keepdims=True)

    def covered(amounts: FloatArray, order_key: FloatArray, cover: FloatArray) -> FloatArray:
        # Remove ``cover`` from the legs taken in ``order_key`` order, ascending.
        order = np.argsort(order_key, axis=-1, kind="stable")
        ordered = np.take_along_axis(amounts, order, axis=-1)
        before = np.cumsum(ordered, axis=-1) - ordered
        left = ordered - np.clip(cover - before, 0.0, ordered)
        result = np.empty_like(amounts)
        np.put_along_axis(result, order, left, axis=-1)
        return result

    # A net buyer's supply covers its cheapest buys; a net seller's demand takes its dearest sells.
    buying = covered(buys, position, total_sell)
    selling = covered(sells, -position, total_buy)
    net_buyer = total_buy >= total_sell
    return np.where(net_buyer, buying, -selling)
