"""The API's request and response bodies: ``...Create`` in, ``...Public`` out.

Money and energy are exact decimals written as JSON strings; times are ISO 8601 UTC, with the
settlement date and period (Europe/London) alongside.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from market.intervals import (
    FIRST_SETTLEMENT_DATE,
    LAST_SETTLEMENT_DATE,
    InvalidPeriodError,
    SettlementPeriod,
    parse_period_key,
)
from market.orders import MAX_BATCH_ORDERS
from market.rules import MarketRules
from market.statements import INTERVAL_STATUSES, IntervalFigures, Statement, StatementFigures
from market.units import CP_PER_PENNY, WH_PER_KWH

T = TypeVar("T")
FIRST_DATE, LAST_DATE = FIRST_SETTLEMENT_DATE, LAST_SETTLEMENT_DATE
#: The largest row id a route accepts: the integer primary keys are 32-bit on PostgreSQL, so a
#: larger id names no row (a 404 if in range, a 422 here, never the database's overflow error).
MAX_ROW_ID = 2**31 - 1


def _in_range(value: date) -> date:
    moment = value.date() if isinstance(value, datetime) else value
    if not FIRST_DATE <= moment <= LAST_DATE:
        raise ValueError(f"must be between {FIRST_DATE} and {LAST_DATE}")
    return value


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("must carry a UTC offset (for example 'Z')")
    _in_range(value.date())
    return value


#: No field of the platform may hold a NUL character (PostgreSQL cannot store one in text).
NO_NUL = r"^[^\x00]*$"


def text(max_length: int, *, min_length: int = 0) -> Any:
    """A free-text field's bounds: its length, and no NUL character."""
    return Field(min_length=min_length, max_length=max_length, pattern=NO_NUL)


#: A date the market can hold, 2000-01-01 to 2100-12-31 (:data:`market.intervals.FIRST_SETTLEMENT_DATE`
#: and ``LAST_SETTLEMENT_DATE``): each month's days, and 29 February in leap years alone (2000 is
#: one, 2100 is not), so that a request that fits the pattern names a real date.
_DATE = (
    r"(?:(?:20[0-9]{2}|2100)-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])"
    r"|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)|02-(?:0[1-9]|1[0-9]|2[0-8]))"
    r"|20(?:0[048]|[2468][048]|[13579][26])-02-29)"
)
_TIME = r"([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])"
#: A settlement period's key, ``DATE/PERIOD`` (periods 1 to 100: a day of 15-minute periods
#: with the autumn clock change has 100).
PERIOD_KEY = rf"^{_DATE}/([1-9]|[1-9][0-9]|100)$"
#: A settlement date the market can hold (2000 to 2100).
SettlementDate = Annotated[
    date,
    AfterValidator(_in_range),
    WithJsonSchema({"type": "string", "format": "date", "pattern": rf"^{_DATE}$"}),
]
_DATE_TIME_RE = re.compile(rf"{_DATE}T{_TIME}", re.ASCII)


def _date_time_text(value: object) -> object:
    """Only the published form: ISO 8601 text with its offset (pydantic would also take a number
    of seconds since 1970, ``"1881389745"``, which the schema does not allow)."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _DATE_TIME_RE.fullmatch(value):
        raise ValueError("must be an ISO 8601 date and time with its UTC offset, e.g. 2026-12-06T12:00:00Z")
    return value


#: An instant with its UTC offset, 2000 to 2100.
AwareDateTime = Annotated[
    datetime,
    BeforeValidator(_date_time_text),
    AfterValidator(_aware),
    WithJsonSchema({"type": "string", "format": "date-time", "pattern": rf"^{_DATE}T{_TIME}$"}),
]
_PERIOD_KEY_RE = re.compile(PERIOD_KEY, re.ASCII)


def _period_key_shape(value: object) -> object:
    """Refuse a key outside the published pattern, saying why as the market would."""
    if isinstance(value, str) and not _PERIOD_KEY_RE.fullmatch(value):
        try:
            parse_period_key(value, length_minutes=15)  # the longest day: up to period 100
        except InvalidPeriodError as error:
            raise ValueError(str(error)) from None
        raise ValueError("must be DATE/PERIOD, for example '2026-11-21/27'")
    return value


#: A settlement period's key as a request names it. Whether the date has that many periods (46,
#: 48 or 50 at 30 minutes) and whether its gate is still open are the market's to say (422).
PeriodKey = Annotated[
    str,
    BeforeValidator(_period_key_shape),
    WithJsonSchema(
        {
            "type": "string",
            "format": "settlement-period",
            "pattern": PERIOD_KEY,
            "examples": ["2026-11-21/27"],
        }
    ),
]


#: A decimal that travels as a string, so no float ever touches money or energy.
DecimalText = Annotated[
    Decimal,
    PlainSerializer(lambda value: format(value, "f"), return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "pattern": r"^-?\d+(\.\d+)?$", "examples": ["12.50"]}),
]
#: What a decimal written as text may look like: ASCII digits only (Python's Decimal alone would
#: take "1_000" and other scripts' digits such as "١"), at most 12 before the point and 6 after.
_DECIMAL_TEXT = r"-?[0-9]{1,12}(\.[0-9]{1,6})?"
_DECIMAL_TEXT_RE = re.compile(_DECIMAL_TEXT, re.ASCII)
#: The largest whole number a decimal may be written as (12 digits).
_MAX_WHOLE = 10**12 - 1


def _plain_decimal(value: object) -> object:
    """A decimal as text, or a whole JSON number; never a fraction as a binary float, which may
    already have been rounded on its way (write ``"0.25"``, not ``0.25``)."""
    if isinstance(value, str):
        if not _DECIMAL_TEXT_RE.fullmatch(value):
            raise ValueError(
                "must be a decimal number in ASCII digits, at most 12 before the point and 6 after "
                "(for example '12.50')"
            )
        return value
    if isinstance(value, float) and value.is_integer() and abs(value) <= _MAX_WHOLE:
        value = int(value)  # JSON's 2.0 is a whole number too, and exact at this size
    if isinstance(value, int) and not isinstance(value, bool):
        if abs(value) > _MAX_WHOLE:
            raise ValueError(f"must be between -{_MAX_WHOLE} and {_MAX_WHOLE}")
        return value
    if isinstance(value, Decimal):  # from Python callers, not JSON
        return value
    raise ValueError("must be a decimal written as a string (for example '12.50') or a whole number")


_DECIMAL_INPUT_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "string", "pattern": f"^{_DECIMAL_TEXT}$"},
        {"type": "integer", "minimum": -_MAX_WHOLE, "maximum": _MAX_WHOLE},
    ],
    "examples": ["12.50"],
}
DecimalInput = Annotated[
    Decimal,
    BeforeValidator(_plain_decimal),
    Field(allow_inf_nan=False, max_digits=18, decimal_places=6),
    WithJsonSchema(_DECIMAL_INPUT_SCHEMA),
]


class IntervalPublic(BaseModel):
    """A settlement period: its key, local date and number, exact UTC times, gate closure."""

    key: str
    settlement_date: date
    period: int
    start_utc: datetime
    end_utc: datetime
    gate_closure_utc: datetime

    @classmethod
    def of(cls, period: SettlementPeriod, gate_closure_utc: datetime) -> IntervalPublic:
        return cls(
            key=period.key,
            settlement_date=period.settlement_date,
            period=period.period,
            start_utc=period.start_utc,
            end_utc=period.end_utc,
            gate_closure_utc=gate_closure_utc,
        )


class OrderCreate(BaseModel):
    """A new order for one interval (``interval`` as ``DATE/PERIOD``, e.g. ``2026-11-21/27``)."""

    model_config = ConfigDict(extra="forbid")

    interval: PeriodKey
    side: Literal["buy", "sell"]
    quantity_kwh: DecimalInput
    price_p_per_kwh: DecimalInput
    node: Annotated[str | None, text(64)] = None


def _leave_out_rather_than_null(schema: dict[str, Any], names: tuple[str, ...]) -> None:
    """The schema of fields that may be left out but not sent as null."""
    for name in names:
        field = schema["properties"][name]
        options = [option for option in field.pop("anyOf", []) if option != {"type": "null"}]
        field.pop("default", None)
        field.update(options[0] if len(options) == 1 else {"anyOf": options})


def _refuse_null(value: object) -> object:
    if value is None:
        raise ValueError("leave the field out rather than send null")
    return value


def _one_or_both_amounts(schema: dict[str, Any]) -> None:
    _leave_out_rather_than_null(schema, ("quantity_kwh", "price_p_per_kwh"))
    schema["minProperties"] = 1


class OrderAmend(BaseModel):
    """New quantity and/or price for an open order: one of them, or both."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_one_or_both_amounts)

    quantity_kwh: DecimalInput | None = None
    price_p_per_kwh: DecimalInput | None = None

    _not_null = field_validator("quantity_kwh", "price_p_per_kwh", mode="before")(_refuse_null)

    @model_validator(mode="after")
    def _something(self) -> OrderAmend:
        if self.quantity_kwh is None and self.price_p_per_kwh is None:
            raise ValueError("give quantity_kwh, price_p_per_kwh or both")
        return self


#: An order's status: :data:`market.orders.ORDER_STATUSES`.
OrderStatus = Literal["open", "cancelled", "filled", "partly_filled", "unfilled"]


class OrderPublic(BaseModel):
    id: str
    participant_id: str
    node: str
    interval: IntervalPublic
    side: str
    quantity_kwh: DecimalText
    price_p_per_kwh: DecimalText
    status: OrderStatus = Field(
        description="open (in the book), cancelled, or once the interval has been cleared: filled, "
        "partly_filled or unfilled."
    )
    filled_kwh: DecimalText | None = Field(
        description="Energy traded in the interval's current clearing run; null until it is cleared."
    )
    fill_price_p_per_kwh: DecimalText | None = Field(
        description="The node's clearing price the filled energy traded at; null if nothing was filled."
    )
    version: int
    priority_at: datetime
    created_at: datetime
    updated_at: datetime
    source: Literal["manual", "strategy"] = Field(
        description="Who placed it: manual (the household) or strategy (the platform, for the "
        "household's strategy). An order of the strategy's that the household amends becomes manual."
    )


class OrderEventPublic(BaseModel):
    version: int
    kind: str
    quantity_kwh: DecimalText
    price_p_per_kwh: DecimalText
    status: str
    at: datetime
    actor: str = Field(
        description="Who made the change: the household's id, 'strategy' (the platform, for its "
        "strategy), or the operator's (a deactivation, a paused strategy)."
    )


class OrderBatchCreate(BaseModel):
    """A household's orders placed together (its day, or one period): all of them, or none.

    Each order has the fields of a single placement; a refusal names the order, as
    ``orders[3].price_p_per_kwh``.
    """

    model_config = ConfigDict(extra="forbid")

    orders: Annotated[list[OrderCreate], Field(min_length=1, max_length=MAX_BATCH_ORDERS)]


class OrderBatchPublic(BaseModel):
    """The orders a batch placed, in the order they were sent."""

    orders: list[OrderPublic]


class Page(BaseModel, Generic[T]):
    """One page of a list: ``items``, and where the next page starts (``null`` at the end)."""

    items: list[T]
    offset: int
    limit: int
    next_offset: int | None


class ParticipantCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: Annotated[str, text(64, min_length=1)]
    display_name: Annotated[str, text(200, min_length=1)]
    mpan: Annotated[
        str,
        Field(
            pattern=r"^[0-9]{13}$",
            json_schema_extra={
                "format": "mpan",
                "description": "An MPAN core; its last digit checks the rest.",
            },
        ),
    ]
    node: Annotated[str, text(64, min_length=1)]


class ParticipantPublic(BaseModel):
    id: str
    kind: str
    display_name: str
    mpan: str | None
    node: str | None
    active: bool


class TokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    label: Annotated[str, text(100)] = ""


class TokenIssued(BaseModel):
    """A new token. ``token`` is shown here once; only its hash is stored."""

    id: int
    participant_id: str
    label: str
    token: str
    created_at: datetime


class NodePricePublic(BaseModel):
    node: str
    price_p_per_kwh: DecimalText
    net_import_kwh: DecimalText | None


class ClearingPublic(BaseModel):
    """An interval's current clearing: prices and volumes per node (no household's orders)."""

    interval: IntervalPublic
    run_id: int
    sequence: int
    orders: int
    traded_kwh: DecimalText
    grid_import_kwh: DecimalText
    grid_export_kwh: DecimalText
    prices: list[NodePricePublic]


class TradePublic(BaseModel):
    interval: IntervalPublic
    run_id: int
    order_id: str
    participant_id: str
    node: str
    side: str
    accepted_kwh: DecimalText
    price_p_per_kwh: DecimalText


class ReadingPublic(BaseModel):
    meter_id: str
    polled_at: datetime
    quality: str
    import_kwh: DecimalText | None
    export_kwh: DecimalText | None
    values: dict[str, float]


class EnergyPublic(BaseModel):
    meter_id: str
    interval: IntervalPublic
    import_kwh: DecimalText
    export_kwh: DecimalText
    estimated: bool
    revision: int


class IntervalCounts(BaseModel):
    """How many intervals stand how, by their latest settlement run."""

    settled: int = Field(description="Settled on the household's metered energy.")
    estimated: int = Field(description="Settled, with some of the meter energy estimated.")
    awaiting_meter_data: int = Field(description="Trades settled; the imbalance waits for meter data.")
    not_settled: int = Field(description="No settlement run yet, or nothing cleared to settle.")


class StatementLine(BaseModel):
    """An interval's, a day's or a total's figures. Energy in kWh. Money in pence with one sign
    convention, the household's: positive it pays, negative it is paid (so ``sold_p`` and
    ``exported_p`` are negative). ``total_p`` is the sum of bought, sold, imported, exported,
    fees and VAT. ``corrections_p`` is how much of those came from reconciliation runs (already in
    them, not added again). ``baseline_p`` (the same metered energy on the tariffs alone) and
    ``saving_p`` are null until the figures are ``final``: every interval settled on metered
    energy."""

    bought_kwh: DecimalText
    bought_p: DecimalText
    sold_kwh: DecimalText
    sold_p: DecimalText
    imported_kwh: DecimalText
    imported_p: DecimalText
    exported_kwh: DecimalText
    exported_p: DecimalText
    fees_p: DecimalText
    vat_p: DecimalText
    total_p: DecimalText
    baseline_p: DecimalText | None
    saving_p: DecimalText | None
    corrections_p: DecimalText
    final: bool
    intervals: IntervalCounts

    @classmethod
    def of(cls, figures: StatementFigures) -> StatementLine:
        kwh = lambda wh: Decimal(wh) / WH_PER_KWH  # noqa: E731
        pence = lambda cp: Decimal(cp) / CP_PER_PENNY  # noqa: E731
        return cls(
            bought_kwh=kwh(figures.bought_wh),
            bought_p=pence(figures.bought_cp),
            sold_kwh=kwh(figures.sold_wh),
            sold_p=pence(figures.sold_cp),
            imported_kwh=kwh(figures.imported_wh),
            imported_p=pence(figures.imported_cp),
            exported_kwh=kwh(figures.exported_wh),
            exported_p=pence(figures.exported_cp),
            fees_p=pence(figures.fees_cp),
            vat_p=pence(figures.vat_cp),
            total_p=pence(figures.total_cp),
            baseline_p=pence(figures.baseline_cp) if figures.final else None,
            saving_p=None if figures.saving_cp is None else pence(figures.saving_cp),
            corrections_p=pence(figures.corrections_cp),
            final=figures.final,
            intervals=IntervalCounts(**{status: figures.intervals[status] for status in INTERVAL_STATUSES}),
        )


class StatementPublic(BaseModel):
    """A month: a line per day with any settlement, the month's total, and the total over the
    ``settled_days`` days settled on metered energy (``settled``, whose saving is the month's)."""

    participant_id: str
    month: str
    days: dict[date, StatementLine]
    total: StatementLine
    settled: StatementLine
    settled_days: int

    @classmethod
    def of(cls, month: str, found: Statement) -> StatementPublic:
        return cls(
            participant_id=found.participant_id,
            month=month,
            days={day: StatementLine.of(figures) for day, figures in found.days.items()},
            total=StatementLine.of(found.total),
            settled=StatementLine.of(found.settled),
            settled_days=found.settled_days,
        )


class StatementIntervalPublic(BaseModel):
    interval: IntervalPublic
    status: Literal["settled", "estimated", "awaiting_meter_data", "not_settled"]
    reason: str = Field(description="Why the interval is not settled on metered energy; empty when it is.")
    figures: StatementLine


class DayStatementPublic(BaseModel):
    """A settlement date, a line per interval (46, 48 or 50 half-hours) and the day's total."""

    participant_id: str
    settlement_date: date
    intervals: list[StatementIntervalPublic]
    total: StatementLine

    @classmethod
    def of(
        cls, participant_id: str, day: date, rows: list[IntervalFigures], rules: MarketRules
    ) -> DayStatementPublic:
        total = StatementFigures()
        for row in rows:
            total.add(row.figures)
        return cls(
            participant_id=participant_id,
            settlement_date=day,
            intervals=[
                StatementIntervalPublic(
                    interval=IntervalPublic.of(row.period, rules.gate_closure_utc(row.period)),
                    status=row.status,
                    reason=row.reason,
                    figures=StatementLine.of(row.figures),
                )
                for row in rows
            ],
            total=StatementLine.of(total),
        )


class MeterCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: Annotated[str, text(64, min_length=1)]
    participant_id: Annotated[str, text(64, min_length=1)]
    host: Annotated[str, text(255, min_length=1)]
    port: Annotated[int, Field(ge=1, le=65535)] = 502
    unit_id: Annotated[int, Field(ge=1, le=247)] = 1
    transport: Literal["tcp", "rtu", "rtu-over-tcp"] = "tcp"
    model: Annotated[str, text(32, min_length=1)] = "sdm630"


class MeterPublic(BaseModel):
    id: str
    participant_id: str
    host: str
    port: int
    unit_id: int
    transport: str
    model: str
    active: bool


class NodeCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: Annotated[str, text(64, min_length=1)]
    parent: Annotated[str, text(64, min_length=1)]
    import_capacity_kwh: DecimalInput
    export_capacity_kwh: DecimalInput
    fee_p_per_kwh: DecimalInput = Decimal(0)


class NetworkCreate(BaseModel):
    """A new network version, in force from ``effective_from_utc``."""

    model_config = ConfigDict(extra="forbid")

    root: Annotated[str, text(64, min_length=1)]
    nodes: Annotated[list[NodeCreate], Field(max_length=20_000)]
    effective_from_utc: AwareDateTime
    note: Annotated[str, text(500)] = ""


class NodePublic(BaseModel):
    id: str
    parent: str
    import_capacity_kwh: DecimalText
    export_capacity_kwh: DecimalText
    fee_p_per_kwh: DecimalText


class NetworkPublic(BaseModel):
    version_id: int
    root: str
    effective_from_utc: datetime
    nodes: list[NodePublic]


class TariffCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    import_p_per_kwh: DecimalInput
    export_p_per_kwh: DecimalInput
    effective_from_utc: AwareDateTime


class TariffPublic(BaseModel):
    id: int
    import_p_per_kwh: DecimalText
    export_p_per_kwh: DecimalText
    effective_from_utc: datetime


class ClearRequest(BaseModel):
    """Clear an interval whose gate has closed; with a ``reason``, clear it again."""

    model_config = ConfigDict(extra="forbid")

    reason: Annotated[str | None, text(500, min_length=1)] = None


class RunPublic(BaseModel):
    run_id: int
    interval: str
    sequence: int
    created: bool
    orders: int
    welfare_p: DecimalText


def _interval_or_date(schema: dict[str, Any]) -> None:
    _leave_out_rather_than_null(schema, ("interval", "date"))
    schema["oneOf"] = [{"required": ["interval"]}, {"required": ["date"]}]


class SettleRequest(BaseModel):
    """Settle one interval (``interval``) or a whole settlement date (``date``): one, not both."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_interval_or_date)

    interval: PeriodKey | None = None
    settlement_date: Annotated[SettlementDate | None, Field(alias="date")] = None
    run: Literal["initial", "reconcile"] = "initial"

    _not_null = field_validator("interval", "settlement_date", mode="before")(_refuse_null)

    @model_validator(mode="after")
    def _one_of_them(self) -> SettleRequest:
        if (self.interval is None) == (self.settlement_date is None):
            raise ValueError("give interval or date, not both or neither")
        return self


class SettlementRunPublic(BaseModel):
    run_id: int
    interval: str
    run_type: str
    sequence: int
    status: str
    created: bool
    lines: int
    pending: dict[str, str]
    estimated: list[str]


class AuditPublic(BaseModel):
    at: datetime
    actor: str
    method: str
    path: str
    status_code: int
    client: str


def page(items: list, limit: int, offset: int) -> Page:
    """A page from ``limit + 1`` items fetched: the extra one says there is a next page."""
    more = len(items) > limit
    return Page(items=items[:limit], offset=offset, limit=limit, next_offset=offset + limit if more else None)


#: A wall-clock time of day in Europe/London, ``HH:MM``.
LOCAL_TIME = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"
LocalTime = Annotated[str, Field(pattern=LOCAL_TIME, examples=["18:00"])]


class PvArrayUpdate(BaseModel):
    """The household's PV array (defaults: 35° tilt, facing south, central Birmingham)."""

    model_config = ConfigDict(extra="forbid")

    kwp: DecimalInput = Field(description="Peak power, kWp (more than 0, at most 100).")
    tilt_deg: DecimalInput = Field(Decimal(35), description="Tilt from horizontal, degrees (0 to 90).")
    azimuth_deg: DecimalInput = Field(
        Decimal(180), description="Direction faced, degrees clockwise from north (0 to under 360)."
    )
    latitude: DecimalInput = Field(Decimal("52.4862"), description="Degrees north.")
    longitude: DecimalInput = Field(Decimal("-1.8904"), description="Degrees east.")


class HomeBatteryUpdate(BaseModel):
    """A home battery: what it holds and how fast, the charge it keeps within, and a reserve."""

    model_config = ConfigDict(extra="forbid")

    capacity_kwh: DecimalInput = Field(description="Usable capacity, kWh.")
    charge_kw: DecimalInput = Field(description="Most power it charges at, kW.")
    discharge_kw: DecimalInput = Field(description="Most power it discharges at, kW.")
    min_soc_percent: DecimalInput = Field(Decimal(10), description="Lowest state of charge, %.")
    max_soc_percent: DecimalInput = Field(Decimal(100), description="Highest state of charge, %.")
    round_trip_efficiency_percent: DecimalInput = Field(Decimal(90), description="Round trip, %.")
    reserve_kwh: DecimalInput = Field(Decimal(0), description="Kept for the household's own use, kWh.")


class ElectricVehicleUpdate(BaseModel):
    """An EV charged at home, plugged in from ``plugged_in_from`` until ``departure`` each day."""

    model_config = ConfigDict(extra="forbid")

    charge_kw: DecimalInput = Field(description="The charger's power, kW.")
    plugged_in_from: LocalTime = Field(description="When it is plugged in, HH:MM Europe/London.")
    departure: LocalTime = Field(description="When it leaves, charged, HH:MM Europe/London.")
    energy_needed_kwh: DecimalInput = Field(description="Energy to add by departure, kWh.")


class StrategyUpdate(BaseModel):
    """What the household wants the platform to trade for it: the least it sells at, the most it
    buys at, and its devices (null or left out: none). Whether it is paused is kept: pause and
    resume have routes of their own. Bounds the schema cannot state (a kWp above 100, a maximum
    charge below the minimum, an EV needing more than its charger delivers in its hours, a price
    outside the market's range or off its 0.01 p tick) are refused 422 naming the field, as
    ``battery.max_soc_percent``."""

    model_config = ConfigDict(extra="forbid")

    sell_floor_p_per_kwh: DecimalInput = Field(description="Least price it sells at, p/kWh.")
    buy_ceiling_p_per_kwh: DecimalInput = Field(description="Most price it buys at, p/kWh.")
    pv: PvArrayUpdate | None = None
    battery: HomeBatteryUpdate | None = None
    ev: ElectricVehicleUpdate | None = None


class PvArrayPublic(BaseModel):
    kwp: DecimalText
    tilt_deg: DecimalText
    azimuth_deg: DecimalText
    latitude: DecimalText
    longitude: DecimalText


class HomeBatteryPublic(BaseModel):
    capacity_kwh: DecimalText
    charge_kw: DecimalText
    discharge_kw: DecimalText
    min_soc_percent: DecimalText
    max_soc_percent: DecimalText
    round_trip_efficiency_percent: DecimalText
    reserve_kwh: DecimalText


class ElectricVehiclePublic(BaseModel):
    charge_kw: DecimalText
    plugged_in_from: str = Field(description="HH:MM, Europe/London.")
    departure: str = Field(description="HH:MM, Europe/London.")
    energy_needed_kwh: DecimalText


class PlanPeriodPublic(BaseModel):
    """One period of the platform's latest plan for a household."""

    settlement_date: date
    period: int
    start: datetime
    end: datetime
    battery_soc_kwh: DecimalText | None = Field(
        description="The battery's state of charge the plan leaves at the period's end (null without one)."
    )
    ev_charge_kwh: DecimalText = Field(description="What the plan charges the EV in the period.")


class StrategyPlanPublic(BaseModel):
    """The platform's latest plan for a household's strategy: made before a gate closure for the
    periods to come, its orders in the market (``source`` ``strategy``). The platform cannot see a
    battery or an EV: it assumes they follow this plan, less what its orders did not trade."""

    participant_id: str
    planned_at: datetime
    expected_cost_p: DecimalText = Field(
        description="What the plan expects the periods to cost at the expected prices, p (negative: earns)."
    )
    battery_start_kwh: DecimalText | None = Field(
        description="The battery's state of charge the plan started from (null without one)."
    )
    periods: list[PlanPeriodPublic]


class StrategyPublic(BaseModel):
    """One version of a household's strategy. Every change is a new version (``created_by`` made
    it); a version that removed the strategy has ``removed`` true and no prices or devices."""

    participant_id: str
    version: int
    paused: bool = Field(description="Paused: the platform places no orders for it.")
    removed: bool
    sell_floor_p_per_kwh: DecimalText | None
    buy_ceiling_p_per_kwh: DecimalText | None
    pv: PvArrayPublic | None
    battery: HomeBatteryPublic | None
    ev: ElectricVehiclePublic | None
    created_at: datetime
    created_by: str


class MeterDataRowProblem(BaseModel):
    """A bad row of a meter data file: its number (the header is row 1), the column and why."""

    row: int
    field: str
    reason: str


class MeterDataImportPublic(BaseModel):
    """What a half-hourly meter data import did (:class:`market.meter_files.ImportSummary`)."""

    rows_read: int
    stored: int = Field(description="Rows stored: new plus revised.")
    new: int
    revised: int
    estimates_replaced: int = Field(description="Revisions that replaced an estimate by an actual.")
    unchanged: int = Field(description="Rows already stored as they are.")
    bad: int = Field(description="Rows refused (with skip_bad, left out; without, nothing was stored).")
    meters_created: int
    skip_bad: bool
    problems: list[MeterDataRowProblem] = Field(description="The first 1,000 problems, by row.")
    problems_listed: int
    problems_total: int
