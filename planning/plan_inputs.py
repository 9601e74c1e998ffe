"""What a household's plan is made from: the periods, the prices expected in them and the household.

Three frozen dataclasses, checked on construction (a :class:`PlanInputError` names the field):

- :class:`PlanPeriods`: the coming settlement periods, as UTC starts, their common length and
  the time zone the EV's wall-clock times are in (Europe/London); shared by every household;
- :class:`PriceOutlook`: per period the expected local price and the backstop's tariffs; shared
  by the households of a node;
- :class:`PlanRequest`: one household's strategy, its forecast demand and generation, its
  battery's state of charge and its EV's energy still needed by its next departure.

A perfect-foresight plan (the oracle) is the same request with the true demand, generation and
prices in place of the forecasts: nothing here knows the difference.

Quantities are exact :class:`~decimal.Decimal` (kWh, p/kWh), as everywhere money or energy is.

May import the standard library, pydantic (through :mod:`planning.strategy`) and :mod:`planning`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from planning.strategy import Strategy


class PlanInputError(ValueError):
    """An input a plan cannot be made from, naming its field (``demand_kwh[3]``, ``starts_utc``)."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


def _decimals(values: object, field: str, count: int, *, non_negative: bool = False) -> tuple[Decimal, ...]:
    if not isinstance(values, (tuple, list)):
        raise PlanInputError(field, "must be a sequence of Decimal")
    if len(values) != count:
        raise PlanInputError(field, f"has {len(values)} values for {count} periods")
    for t, value in enumerate(values):
        if not isinstance(value, Decimal) or not value.is_finite():
            raise PlanInputError(f"{field}[{t}]", f"must be a finite Decimal, not {value!r}")
        if non_negative and value < 0:
            raise PlanInputError(f"{field}[{t}]", f"must not be negative ({value})")
    return tuple(values)


@dataclass(frozen=True)
class PlanPeriods:
    """The coming settlement periods: consecutive, each ``length_hours`` long.

    Parameters
    ----------
    starts_utc : tuple of datetime
        Each period's start, timezone-aware (converted to UTC), consecutive.
    length_hours : Decimal
        Every period's length (0.5 for half-hour settlement periods).
    timezone : str
        The zone of the EV's wall-clock times.
    """

    starts_utc: tuple[datetime, ...]
    length_hours: Decimal = Decimal("0.5")
    timezone: str = "Europe/London"

    def __post_init__(self) -> None:
        if not self.starts_utc:
            raise PlanInputError("starts_utc", "must hold at least one period")
        if not isinstance(self.length_hours, Decimal) or not 0 < self.length_hours <= 24:
            raise PlanInputError("length_hours", "must be a Decimal number of hours in (0, 24]")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError) as error:
            raise PlanInputError("timezone", f"is not a known time zone ({self.timezone!r})") from error
        starts = []
        for t, start in enumerate(self.starts_utc):
            if not isinstance(start, datetime) or start.tzinfo is None:
                raise PlanInputError(f"starts_utc[{t}]", "must be a timezone-aware datetime")
            starts.append(start.astimezone(UTC))
        for t in range(1, len(starts)):
            if starts[t] - starts[t - 1] != self.length:
                raise PlanInputError(
                    f"starts_utc[{t}]", "must follow the previous period without gap or overlap"
                )
        object.__setattr__(self, "starts_utc", tuple(starts))

    @property
    def count(self) -> int:
        """How many periods."""
        return len(self.starts_utc)

    @property
    def length(self) -> timedelta:
        """A period's length."""
        return timedelta(seconds=float(self.length_hours * 3600))

    @property
    def end_utc(self) -> datetime:
        """When the last period ends: the horizon's end."""
        return self.starts_utc[-1] + self.length

    @classmethod
    def half_hours(
        cls, first_start_utc: datetime, count: int, timezone: str = "Europe/London"
    ) -> PlanPeriods:
        """``count`` consecutive half-hour periods from ``first_start_utc``."""
        step = timedelta(minutes=30)
        return cls(tuple(first_start_utc + step * t for t in range(count)), Decimal("0.5"), timezone)


@dataclass(frozen=True)
class PriceOutlook:
    """Per period, the local price the household expects and the backstop's tariffs, p/kWh.

    The backstop (the energy company) sells any energy at the import tariff and buys any at the
    export tariff, so the import tariff is never below the export tariff.
    """

    expected_p_per_kwh: tuple[Decimal, ...]
    import_tariff_p_per_kwh: tuple[Decimal, ...]
    export_tariff_p_per_kwh: tuple[Decimal, ...]

    def __post_init__(self) -> None:
        count = len(self.expected_p_per_kwh)
        if count == 0:
            raise PlanInputError("expected_p_per_kwh", "must hold at least one period")
        for name in ("expected_p_per_kwh", "import_tariff_p_per_kwh", "export_tariff_p_per_kwh"):
            object.__setattr__(self, name, _decimals(getattr(self, name), name, count))
        for t, (imports, exports) in enumerate(
            zip(self.import_tariff_p_per_kwh, self.export_tariff_p_per_kwh)
        ):
            if imports < exports:
                raise PlanInputError(
                    f"import_tariff_p_per_kwh[{t}]", f"({imports}) is below the export tariff ({exports})"
                )

    @property
    def count(self) -> int:
        """How many periods."""
        return len(self.expected_p_per_kwh)


@dataclass(frozen=True)
class PlanRequest:
    """One household's plan to be made.

    Parameters
    ----------
    periods : PlanPeriods
        The coming periods.
    prices : PriceOutlook
        The expected local price and the tariffs, one value per period.
    strategy : Strategy
        What the household stated.
    demand_kwh, generation_kwh : tuple of Decimal
        Its forecast (or, for the oracle, actual) demand and generation per period, >= 0; rounded
        to whole Wh, half to even.
    battery_soc_kwh : Decimal, optional
        The battery's state of charge now, between 0 and its capacity; required with a battery.
    ev_energy_needed_kwh : Decimal, optional
        The EV's energy still needed by its next departure (>= 0); the strategy's
        ``energy_needed_kwh`` when not given.
    later_price_p_per_kwh : Decimal, optional
        What energy is expected to cost after the horizon: it values what the battery keeps and
        what the EV may still receive later. By default the mean over the horizon of the expected
        price held within the tariffs, on the 0.01 p tick.
    stored_price_p_per_kwh : Decimal, optional
        What a kWh the battery still holds at the horizon's end is expected to fetch when it is
        discharged later (before the discharge loss): the dearest hours after the horizon, say,
        where the later price is an average. By default the later price.
    net_error_wh : tuple of tuple of int, optional
        Per period, a sample of how the household's net (demand - generation) has differed from
        its forecast, Wh (:attr:`planning.forecast.HouseholdForecast.net_error_wh`): the orders
        for its own use are sized from it (:mod:`planning.plan`). Empty: sized at the forecast.
    """

    periods: PlanPeriods
    prices: PriceOutlook
    strategy: Strategy
    demand_kwh: tuple[Decimal, ...]
    generation_kwh: tuple[Decimal, ...]
    battery_soc_kwh: Decimal | None = None
    ev_energy_needed_kwh: Decimal | None = None
    later_price_p_per_kwh: Decimal | None = None
    stored_price_p_per_kwh: Decimal | None = None
    net_error_wh: tuple[tuple[int, ...], ...] = ()

    def __post_init__(self) -> None:
        count = self.periods.count
        if self.prices.count != count:
            raise PlanInputError("prices", f"has {self.prices.count} periods for {count}")
        for name in ("demand_kwh", "generation_kwh"):
            object.__setattr__(self, name, _decimals(getattr(self, name), name, count, non_negative=True))
        battery = self.strategy.battery
        if battery is not None:
            soc = self.battery_soc_kwh
            if not isinstance(soc, Decimal) or not soc.is_finite():
                raise PlanInputError("battery_soc_kwh", "is required, as a Decimal, with a battery")
            if not 0 <= soc <= battery.capacity_kwh:
                raise PlanInputError("battery_soc_kwh", f"({soc}) must be within 0 and the capacity")
        needed = self.ev_energy_needed_kwh
        if needed is not None and (not isinstance(needed, Decimal) or not needed.is_finite() or needed < 0):
            raise PlanInputError("ev_energy_needed_kwh", f"must be a Decimal >= 0, not {needed!r}")
        errors = self.net_error_wh
        if errors and (len(errors) != count or not all(isinstance(e, tuple) for e in errors)):
            raise PlanInputError("net_error_wh", f"needs a tuple of Wh for each of the {count} periods")
        for name in ("later_price_p_per_kwh", "stored_price_p_per_kwh"):
            price = getattr(self, name)
            if price is not None and (not isinstance(price, Decimal) or not price.is_finite()):
                raise PlanInputError(name, f"must be a finite Decimal, not {price!r}")
