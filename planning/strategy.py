"""What a household states once for the platform to trade on its behalf: a strategy.

A strategy describes what the household wants rather than orders: sell its PV surplus at no less
than a floor price, buy its demand up to a ceiling price, and the devices whose use can move in
time (a home battery, an EV). Each model refuses what cannot be right, naming the field: a
pydantic ``ValidationError`` whose errors' ``loc`` is the field's path (``battery``,
``max_soc_percent``). What depends on the market's rules (the price range, the tick) is checked
where the strategy is stored, by :mod:`market`.

Quantities carry their unit; decimals are exact (no floats), as everywhere money or energy is.
Local times (the EV's window) are Europe/London wall-clock times.

May import pydantic and the standard library.
"""

from __future__ import annotations

from datetime import time
from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

#: Where a PV array is when the household does not say: central Birmingham.
BIRMINGHAM_LATITUDE = Decimal("52.4862")
BIRMINGHAM_LONGITUDE = Decimal("-1.8904")

Kilowatts = Annotated[Decimal, Field(gt=0, le=100, max_digits=9, decimal_places=3)]
Percent = Annotated[Decimal, Field(ge=0, le=100, max_digits=6, decimal_places=2)]
Degrees = Annotated[Decimal, Field(max_digits=9, decimal_places=6)]
Efficiency = Annotated[Decimal, Field(gt=0, le=100, max_digits=6, decimal_places=2)]
Price = Annotated[Decimal, Field(ge=-1000, le=1000, max_digits=9, decimal_places=2)]


class _Part(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PvArray(_Part):
    """The household's PV array, as declared: its peak power, its orientation and where it is."""

    kwp: Annotated[Decimal, Field(gt=0, le=100, max_digits=9, decimal_places=3)] = Field(
        description="Peak power (kWp) under standard test conditions."
    )
    tilt_deg: Annotated[Decimal, Field(ge=0, le=90, max_digits=5, decimal_places=2)] = Field(
        Decimal(35), description="Tilt from horizontal, degrees (0 flat, 90 a wall)."
    )
    azimuth_deg: Annotated[Decimal, Field(ge=0, lt=360, max_digits=5, decimal_places=2)] = Field(
        Decimal(180), description="Direction the panels face, degrees clockwise from north (180 south)."
    )
    latitude: Degrees = Field(BIRMINGHAM_LATITUDE, ge=-90, le=90, description="Degrees north.")
    longitude: Degrees = Field(BIRMINGHAM_LONGITUDE, ge=-180, le=180, description="Degrees east.")


class HomeBattery(_Part):
    """A home battery: how much it holds, how fast it charges and discharges, the state of charge
    it keeps within, what a round trip loses, and a reserve it never trades away (for an outage)."""

    capacity_kwh: Annotated[Decimal, Field(gt=0, le=1000, max_digits=9, decimal_places=3)] = Field(
        description="Usable capacity, kWh."
    )
    charge_kw: Kilowatts = Field(description="Most power it charges at, kW.")
    discharge_kw: Kilowatts = Field(description="Most power it discharges at, kW.")
    min_soc_percent: Percent = Field(Decimal(10), description="Lowest state of charge, % of capacity.")
    max_soc_percent: Percent = Field(Decimal(100), description="Highest state of charge, % of capacity.")
    round_trip_efficiency_percent: Efficiency = Field(
        Decimal(90), description="Energy out over energy in for a full cycle, %."
    )
    reserve_kwh: Annotated[Decimal, Field(ge=0, le=1000, max_digits=9, decimal_places=3)] = Field(
        Decimal(0), description="Energy kept for the household's own use, never sold or planned away, kWh."
    )

    # Checked on the later field, so that the error names it (a model's own check names no field).
    @field_validator("max_soc_percent")
    @classmethod
    def _above_min(cls, value: Decimal, info: ValidationInfo) -> Decimal:
        if "min_soc_percent" in info.data and value <= info.data["min_soc_percent"]:
            raise ValueError("must be above min_soc_percent")
        return value

    @field_validator("reserve_kwh")
    @classmethod
    def _within_capacity(cls, value: Decimal, info: ValidationInfo) -> Decimal:
        known = {"capacity_kwh", "max_soc_percent"} <= info.data.keys()
        if known and value > info.data["capacity_kwh"] * info.data["max_soc_percent"] / 100:
            raise ValueError("must be at most the energy the battery holds at max_soc_percent")
        return value

    @property
    def floor_kwh(self) -> Decimal:
        """The least energy the plan may leave in the battery: its minimum charge or its reserve."""
        return max(self.capacity_kwh * self.min_soc_percent / 100, self.reserve_kwh)

    @property
    def ceiling_kwh(self) -> Decimal:
        """The most energy the plan may put in the battery."""
        return self.capacity_kwh * self.max_soc_percent / 100


class ElectricVehicle(_Part):
    """An EV charged at home: the energy it needs by its departure each day, its charger's power
    and the hours it is plugged in (from ``plugged_in_from`` to ``departure``, across midnight
    when ``departure`` is the earlier time)."""

    charge_kw: Kilowatts = Field(description="The charger's power, kW.")
    plugged_in_from: time = Field(description="When it is plugged in each day, Europe/London.")
    departure: time = Field(description="When it leaves each day, charged, Europe/London.")
    energy_needed_kwh: Annotated[Decimal, Field(gt=0, le=200, max_digits=9, decimal_places=3)] = Field(
        description="Energy to add between plugging in and departure, kWh."
    )

    @field_validator("plugged_in_from", "departure")
    @classmethod
    def _wall_clock(cls, value: time) -> time:
        if value.tzinfo is not None:
            raise ValueError("is a wall-clock time in Europe/London, without an offset")
        return value

    @field_validator("departure")
    @classmethod
    def _not_at_once(cls, value: time, info: ValidationInfo) -> time:
        if info.data.get("plugged_in_from") == value:
            raise ValueError("must differ from plugged_in_from")
        return value

    @field_validator("energy_needed_kwh")
    @classmethod
    def _deliverable(cls, value: Decimal, info: ValidationInfo) -> Decimal:
        if {"charge_kw", "plugged_in_from", "departure"} <= info.data.keys():
            hours = window_hours(info.data["plugged_in_from"], info.data["departure"])
            if value > info.data["charge_kw"] * hours:
                raise ValueError("is more than the charger delivers between plugged_in_from and departure")
        return value

    def window_hours(self) -> Decimal:
        """Hours from plugging in to departure (across midnight when departure comes first)."""
        return window_hours(self.plugged_in_from, self.departure)


class Strategy(_Part):
    """A household's strategy: the platform bids for it every interval while it is not paused.

    ``sell_floor_p_per_kwh`` is the least it sells at (its PV surplus and battery discharge);
    ``buy_ceiling_p_per_kwh`` the most it pays (its demand and what its devices need). The plan
    never bids above the ceiling nor offers below the floor.
    """

    sell_floor_p_per_kwh: Price = Field(description="Least price it sells at, p/kWh.")
    buy_ceiling_p_per_kwh: Price = Field(description="Most price it buys at, p/kWh.")
    pv: PvArray | None = None
    battery: HomeBattery | None = None
    ev: ElectricVehicle | None = None
    paused: bool = Field(False, description="Paused, it places no orders and cancels its open ones.")


def window_hours(start: time, end: time) -> Decimal:
    """Hours from ``start`` to ``end`` on a wall clock, across midnight when ``end`` comes first."""
    minutes = (end.hour * 60 + end.minute) - (start.hour * 60 + start.minute)
    return Decimal(minutes % (24 * 60)) / 60
