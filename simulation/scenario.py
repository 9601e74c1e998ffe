"""Scenario files: a simulated neighbourhood described in TOML, validated on load.

A scenario says where and when (location, first settlement date, days), what the market charges
(the backstop tariff, the platform fee), the network tree the market clears over, the weather, and
groups of households with their assets and bidding strategies. :func:`load_scenario` reads one and
raises :class:`ScenarioError` naming the file, the dotted key (``households[2].pv.kwp``) and the
reason for anything wrong, TOML syntax errors included (with their line).

Keys
----
Top level:

``name`` (str), ``description`` (str, default ""), ``seed`` (int)
    What the scenario is called; ``seed`` seeds every random draw of the simulation.
``date`` (ISO date, e.g. ``2026-06-20`` bare or quoted), ``days`` (int >= 1, default 1)
    The first Europe/London settlement date and how many settlement days are simulated.
``history_days`` (int 0-28, default 14)
    Days before ``date`` simulated for the same homes and stored as their metered interval
    energy before the run starts (:func:`simulation.simulate_history`): the history a platform
    that had run for a while would forecast from. 0: none (a platform on its first day).
``market_history_days`` (int 0-14, at most ``history_days``; default 0)
    The last of those days on which the market also traded before the run: the history's agents'
    orders placed and each period cleared at its gate closure, then settled
    (``demo.scenario_run``), so the platform has a price history. 0: the day is the market's first.
``interval_minutes`` (15, 30 or 60; default 30)
    The settlement period length the orders are for.
``step_seconds`` (60, 300 or 900 ... any divisor of 900; default 60)
    The resolution of the realised power series (one value per step).

``[location]``: ``latitude`` (default 52.48), ``longitude`` (default -1.90), ``altitude_m`` (default 140).

``[tariff]``: ``import_p_per_kwh``, ``export_p_per_kwh`` (decimals, p/kWh): the energy company's
backstop; import must not be below export. ``[fees]``: ``platform_p_per_kwh`` (decimal >= 0, default 0).

``[weather]`` (all optional):
    ``clear_sky_index_mean`` (0.05-1.2, default 0.8) and ``clear_sky_index_std`` (default 0.15): the
    scenario-wide cloud process, a seeded AR(1) clear-sky index shared by every roof;
    ``cloud_time_constant_minutes`` (default 20): its correlation time; ``home_noise`` (default 0.03):
    relative std of each roof's own small deviation; ``linke_turbidity`` (optional): a constant instead
    of pvlib's monthly climatology lookup; ``temperature_mean_c`` (default 12) and
    ``temperature_amplitude_c`` (default 4): outdoor temperature, a daily cosine peaking at 15:00
    local time, which shapes heat-pump demand.

``[solar]``: ``tilt_deg`` (default 35), ``azimuth_deg`` (default 180, south), ``performance_ratio``
(default 0.8): every roof's array.

``[demand]``: ``pool_size`` (1-64, default 12): CREST day profiles per occupant count;
``max_shift_minutes`` (0-60, default 5): the largest seeded time shift of a household's profile.

``[price_forecast]``: ``night_level`` (default 0.55), ``day_level`` (0.75), ``peak_level`` (1.0),
``solar_depth`` (0.9): the agents' time-of-day price forecast, as fractions of the way from the
export to the import tariff (see :mod:`simulation.strategies`).

``[network]``: the network tree in the one network format (:mod:`market.network_format`, the keys
of ``scenarios/sample-network.toml`` and of the API's ``POST /v1/network``): ``root`` (str, the grid
supply point) and ``[[network.nodes]]`` tables, each ``id``, ``parent``, ``import_capacity_kwh``
and ``export_capacity_kwh`` (decimal >= 0 kWh per settlement interval) and ``fee_p_per_kwh``
(decimal >= 0, default 0).

``[[households]]``: a group of ``count`` homes on node ``feeder``, named ``"<name_prefix> <n>"``:
    ``annual_kwh`` (number or ``[lo, hi]``, drawn uniformly), ``occupants`` (1-5 or ``[lo, hi]``),
    ``meter_model`` (a model of :data:`metering.emulator.SIMULATED_MODELS`, or a list cycled through),
    ``strategy`` (``auto``, ``consumer``, ``pv``, ``battery``, ``ev``; default ``auto``: battery, else
    ev, else pv, else consumer by the home's assets), ``strategy_params`` (a table of that strategy's
    parameters, see :mod:`simulation.strategies`), ``forecast_error`` (relative std of the
    home's demand and PV forecast error, default 0.1), ``trading`` (``agents``, the default: the
    simulation's agents bid for the homes; ``platform``: each home states a strategy through the
    API and the platform bids for it, its battery and EV following the platform's plan; ``both``:
    as ``platform``, and each home also has an identical twin trading through the agents, for the
    report's comparison).
    Assets, each a table with ``share`` (0-1) or ``count`` (not both) of the group's homes:
    ``[households.pv]`` ``kwp`` (range); ``[households.battery]`` ``kwh``, ``kw`` (ranges),
    ``round_trip_efficiency`` (default 0.9), ``initial_soc`` (fraction, default 0.3);
    ``[households.ev]`` ``kwh_per_day``, ``arrival_hour``, ``departure_hour`` (local hours, ranges),
    ``charger_kw`` (default 7); ``[households.heat_pump]`` ``kwh_per_day`` (range: the day's electricity
    at this scenario's season).

A range is either one number or a two-element ``[lo, hi]`` array with ``lo <= hi``.

May import the standard library, pydantic, :mod:`optimiser`'s network, :mod:`market.intervals`,
:mod:`market.network_format` and :mod:`metering.emulator`'s
model list; nothing that touches a database, HTTP or Modbus I/O.
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from market.intervals import ALLOWED_LENGTHS_MINUTES
from market.network_format import DocumentError, NetworkFormatError, parse_network
from metering.emulator import SIMULATED_MODELS
from optimiser import Network
from simulation.strategies import check_strategy_params

__all__ = [
    "STRATEGY_NAMES",
    "BatterySpec",
    "DemandSpec",
    "EvSpec",
    "FeesSpec",
    "HeatPumpSpec",
    "HouseholdGroup",
    "LocationSpec",
    "PriceForecastSpec",
    "PvSpec",
    "Scenario",
    "ScenarioError",
    "SolarSpec",
    "TariffSpec",
    "WeatherSpec",
    "load_scenario",
    "parse_scenario",
]

STRATEGY_NAMES = ("auto", "consumer", "pv", "battery", "ev")


class ScenarioError(DocumentError):
    """A scenario file that cannot be simulated (its key e.g. ``"households[2].pv_kwp"``)."""


def _as_range(value: Any) -> Any:
    """One number means [x, x]; a two-element list stays as it is (checked by the type)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float | Decimal):
        return (value, value)
    if isinstance(value, list):
        return tuple(value)
    return value


def _check_range(value: tuple[float, float]) -> tuple[float, float]:
    low, high = value
    if low > high:
        raise ValueError(f"the range [{low}, {high}] has lo above hi")
    return value


def _check_positive_range(value: tuple[float, float]) -> tuple[float, float]:
    _check_range(value)
    if value[0] <= 0:
        raise ValueError("must be positive")
    return value


FloatRange = Annotated[tuple[float, float], BeforeValidator(_as_range), AfterValidator(_check_range)]
PositiveRange = Annotated[
    tuple[float, float], BeforeValidator(_as_range), AfterValidator(_check_positive_range)
]
IntRange = Annotated[tuple[int, int], BeforeValidator(_as_range)]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LocationSpec(_Strict):
    """Where the neighbourhood is (Birmingham by default)."""

    latitude: Annotated[float, Field(ge=-90, le=90)] = 52.48
    longitude: Annotated[float, Field(ge=-180, le=180)] = -1.90
    altitude_m: Annotated[float, Field(ge=-500, le=9000)] = 140.0


class TariffSpec(_Strict):
    """The energy company's backstop tariff, p/kWh."""

    import_p_per_kwh: Decimal
    export_p_per_kwh: Decimal

    @model_validator(mode="after")
    def _import_not_below_export(self) -> TariffSpec:
        if self.import_p_per_kwh < self.export_p_per_kwh:
            raise ValueError("import_p_per_kwh is below export_p_per_kwh; the backstop would be a money pump")
        return self


class FeesSpec(_Strict):
    """Platform fee per kWh traded, charged to each side."""

    platform_p_per_kwh: Annotated[Decimal, Field(ge=0)] = Decimal(0)


class WeatherSpec(_Strict):
    """Cloud and temperature model parameters (see the module docstring)."""

    clear_sky_index_mean: Annotated[float, Field(ge=0.05, le=1.2)] = 0.8
    clear_sky_index_std: Annotated[float, Field(ge=0.0, le=1.0)] = 0.15
    cloud_time_constant_minutes: Annotated[float, Field(gt=0, le=1440)] = 20.0
    home_noise: Annotated[float, Field(ge=0.0, le=0.5)] = 0.03
    linke_turbidity: Annotated[float, Field(ge=1.0, le=10.0)] | None = None
    temperature_mean_c: Annotated[float, Field(ge=-30, le=45)] = 12.0
    temperature_amplitude_c: Annotated[float, Field(ge=0, le=20)] = 4.0


class SolarSpec(_Strict):
    """Every roof's array: orientation and performance ratio."""

    tilt_deg: Annotated[float, Field(ge=0, le=90)] = 35.0
    azimuth_deg: Annotated[float, Field(ge=0, lt=360)] = 180.0
    performance_ratio: Annotated[float, Field(gt=0, le=1)] = 0.8


class DemandSpec(_Strict):
    """The CREST profile pool's size and the households' jitter."""

    pool_size: Annotated[int, Field(ge=1, le=64)] = 12
    max_shift_minutes: Annotated[int, Field(ge=0, le=60)] = 5


class PriceForecastSpec(_Strict):
    """The agents' time-of-day price forecast (fractions of the export-to-import spread)."""

    night_level: Fraction = 0.55
    day_level: Fraction = 0.75
    peak_level: Fraction = 1.0
    solar_depth: Fraction = 0.9


class _AssetShare(_Strict):
    share: Fraction | None = None
    count: Annotated[int, Field(ge=0)] | None = None

    @model_validator(mode="after")
    def _share_or_count(self) -> _AssetShare:
        if self.share is not None and self.count is not None:
            raise ValueError("give share or count, not both")
        return self


class PvSpec(_AssetShare):
    """Rooftop PV on some of the group's homes."""

    kwp: PositiveRange


class BatterySpec(_AssetShare):
    """Home batteries on some of the group's homes."""

    kwh: PositiveRange
    kw: PositiveRange
    round_trip_efficiency: Annotated[float, Field(gt=0.5, le=1.0)] = 0.9
    initial_soc: Fraction = 0.3


class EvSpec(_AssetShare):
    """Electric vehicles charged at home overnight."""

    kwh_per_day: PositiveRange
    arrival_hour: FloatRange = (17.0, 19.0)
    departure_hour: FloatRange = (7.0, 8.5)
    charger_kw: Annotated[float, Field(gt=0, le=50)] = 7.0

    @field_validator("arrival_hour", "departure_hour")
    @classmethod
    def _hours(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not (value[0] >= 0 and value[1] < 24):
            raise ValueError("hours must be in [0, 24)")
        return value

    @model_validator(mode="after")
    def _feasible(self) -> EvSpec:
        if self.arrival_hour[0] <= self.departure_hour[1]:
            raise ValueError("arrival_hour must be after departure_hour (cars arrive in the evening)")
        shortest_h = min(self.departure_hour[0], 24 - self.arrival_hour[1] + self.departure_hour[0])
        # Whole periods only: leave an hour for rounding to period boundaries.
        if self.kwh_per_day[1] > self.charger_kw * max(shortest_h - 1.0, 0.0):
            raise ValueError(
                f"kwh_per_day up to {self.kwh_per_day[1]} cannot be charged at {self.charger_kw} kW "
                f"in the shortest plug-in window ({shortest_h} h less an hour for period rounding)"
            )
        return self


class HeatPumpSpec(_AssetShare):
    """Heat pumps: extra demand with a cold-weather shape."""

    kwh_per_day: PositiveRange


def _meter_models(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


class HouseholdGroup(_Strict):
    """A group of similar homes on one node of the network."""

    count: Annotated[int, Field(ge=1, le=100_000)]
    feeder: Annotated[str, Field(min_length=1)]
    name_prefix: Annotated[str, Field(min_length=1, max_length=60)] = "Home"
    annual_kwh: FloatRange = (2500.0, 4500.0)
    occupants: IntRange = (1, 5)
    meter_model: Annotated[tuple[str, ...], BeforeValidator(_meter_models), Field(min_length=1)] = ("sdm120",)
    strategy: Literal["auto", "consumer", "pv", "battery", "ev"] = "auto"
    strategy_params: dict[str, float] = Field(default_factory=dict)
    forecast_error: Annotated[float, Field(ge=0, le=1)] = 0.1
    trading: Literal["agents", "platform", "both"] = "agents"
    pv: PvSpec | None = None
    battery: BatterySpec | None = None
    ev: EvSpec | None = None
    heat_pump: HeatPumpSpec | None = None

    @field_validator("annual_kwh")
    @classmethod
    def _annual(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not (value[0] >= 100 and value[1] <= 50_000):
            raise ValueError("annual_kwh must be within [100, 50000]")
        return value

    @field_validator("occupants")
    @classmethod
    def _occupants(cls, value: tuple[int, int]) -> tuple[int, int]:
        _check_range((float(value[0]), float(value[1])))
        if not (value[0] >= 1 and value[1] <= 5):
            raise ValueError("occupants must be within [1, 5] (the CREST model's range)")
        return value

    @field_validator("meter_model")
    @classmethod
    def _models(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for model in value:
            if model not in SIMULATED_MODELS:
                raise ValueError(f"{model!r} is not a simulated meter model ({', '.join(SIMULATED_MODELS)})")
        return value

    @model_validator(mode="after")
    def _counts_and_params(self) -> HouseholdGroup:
        for name in ("pv", "battery", "ev", "heat_pump"):
            asset = getattr(self, name)
            if asset is not None and asset.count is not None and asset.count > self.count:
                raise ValueError(
                    f"{name}.count ({asset.count}) is more than the group's count ({self.count})"
                )
        check_strategy_params(self.strategy, self.strategy_params)
        return self

    def asset_count(self, name: str) -> int:
        """How many of the group's homes have the asset ``name`` (0 if the table is absent)."""
        asset: _AssetShare | None = getattr(self, name)
        if asset is None:
            return 0
        if asset.count is not None:
            return asset.count
        share = 1.0 if asset.share is None else asset.share
        return round(share * self.count)


class Scenario(_Strict):
    """A validated scenario; build one with :func:`load_scenario` or :func:`parse_scenario`."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    name: Annotated[str, Field(min_length=1, max_length=100)]
    description: str = ""
    seed: int
    date: date
    days: Annotated[int, Field(ge=1, le=366)] = 1
    history_days: Annotated[int, Field(ge=0, le=28)] = 14
    market_history_days: Annotated[int, Field(ge=0, le=14)] = 0
    interval_minutes: int = 30
    step_seconds: int = 60
    location: LocationSpec = Field(default_factory=LocationSpec)
    tariff: TariffSpec
    fees: FeesSpec = Field(default_factory=FeesSpec)
    weather: WeatherSpec = Field(default_factory=WeatherSpec)
    solar: SolarSpec = Field(default_factory=SolarSpec)
    demand: DemandSpec = Field(default_factory=DemandSpec)
    price_forecast: PriceForecastSpec = Field(default_factory=PriceForecastSpec)
    network: Network
    households: Annotated[list[HouseholdGroup], Field(min_length=1)]

    @field_validator("date", mode="before")
    @classmethod
    def _plain_date(cls, value: Any) -> Any:
        if isinstance(value, datetime):
            raise ValueError("must be a date (e.g. 2026-06-20), not a date and time")
        if isinstance(value, str):
            try:
                return date.fromisoformat(value)
            except ValueError:
                raise ValueError(f"{value!r} is not an ISO date (YYYY-MM-DD)") from None
        return value

    @field_validator("interval_minutes")
    @classmethod
    def _interval(cls, value: int) -> int:
        if value not in ALLOWED_LENGTHS_MINUTES:
            raise ValueError(f"must be one of {', '.join(map(str, ALLOWED_LENGTHS_MINUTES))}")
        return value

    @field_validator("step_seconds")
    @classmethod
    def _step(cls, value: int) -> int:
        if value <= 0 or 900 % value or value % 60:
            raise ValueError("must be a whole number of minutes dividing 900 s (60, 180, 300, 900)")
        return value

    @model_validator(mode="after")
    def _market_history_within_history(self) -> Scenario:
        if self.market_history_days > self.history_days:
            raise ValueError(
                f"market_history_days ({self.market_history_days}) must not exceed history_days "
                f"({self.history_days}): the market's past days trade on the homes' history"
            )
        return self

    @property
    def household_count(self) -> int:
        """How many homes the scenario has."""
        return sum(group.count for group in self.households)


def _check_feeders(scenario: Scenario) -> tuple[str, str] | None:
    """The first household group on a node the network lacks, as (key, reason), or None."""
    nodes = set(scenario.network.node_ids)
    for i, group in enumerate(scenario.households):
        if group.feeder not in nodes:
            return f"households[{i}].feeder", f"{group.feeder!r} is not a node of the network"
    return None


def _dotted(location: Sequence[int | str]) -> str:
    text = ""
    for part in location:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def _model_keys(location: Sequence[int | str]) -> list[int | str]:
    # Pydantic adds the tagged-union and function-validator names; the file has neither.
    return [part for part in location if not (isinstance(part, str) and ("[" in part or "function-" in part))]


def parse_scenario(document: dict[str, Any], *, path: str = "<scenario>") -> Scenario:
    """Validate a parsed TOML document as a scenario.

    Parameters
    ----------
    document : dict
        The document, as :func:`tomllib.loads` returns it (decimals may be :class:`~decimal.Decimal`).
    path : str
        What to call the document in error messages.

    Returns
    -------
    Scenario
        The validated scenario.

    Raises
    ------
    ScenarioError
        Naming the first wrong key and the reason.
    """
    if not isinstance(document.get("network"), dict):
        raise ScenarioError(
            path, "network", "missing key" if "network" not in document else "must be a table"
        )
    try:
        network = parse_network(document["network"], path=path, prefix="network.", keys=("root", "nodes"))
    except NetworkFormatError as error:
        raise ScenarioError(path, error.key, error.reason) from None
    try:
        scenario = Scenario.model_validate({**document, "network": network.network})
    except ValidationError as error:
        first = error.errors()[0]
        key = _dotted(_model_keys(first["loc"]))
        reason = first["msg"]
        if first["type"] == "extra_forbidden":
            reason = "unknown key"
        elif first["type"] == "missing":
            reason = "missing key"
        reason = reason.removeprefix("Value error, ")
        raise ScenarioError(path, key, reason) from None
    problem = _check_feeders(scenario)
    if problem is not None:
        raise ScenarioError(path, *problem)
    return scenario


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file.

    Parameters
    ----------
    path : str or Path
        The TOML file.

    Returns
    -------
    Scenario
        The validated scenario.

    Raises
    ------
    ScenarioError
        If the file cannot be read, is not TOML (the message gives the line), or any key is wrong
        (the message gives the dotted key, e.g. ``households[2].pv.kwp``, and the reason).
    """
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise ScenarioError(name, "", f"cannot be read ({error.strerror or error})") from None
    except UnicodeDecodeError:
        raise ScenarioError(name, "", "is not UTF-8 text") from None
    try:
        document = tomllib.loads(text, parse_float=Decimal)
    except tomllib.TOMLDecodeError as error:
        raise ScenarioError(name, "", f"is not valid TOML ({error})") from None
    return parse_scenario(document, path=name)
