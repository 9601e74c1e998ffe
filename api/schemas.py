"""The API's request and response bodies: ``...Create`` in, ``...Public`` out.

Money and energy are exact decimals written as JSON strings; times are ISO 8601 UTC, with the
settlement date and period (Europe/London) alongside.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, WithJsonSchema

from market.intervals import SettlementPeriod

T = TypeVar("T")

#: A decimal that travels as a string, so no float ever touches money or energy.
DecimalText = Annotated[
    Decimal,
    PlainSerializer(lambda value: format(value, "f"), return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "pattern": r"^-?\d+(\.\d+)?$", "examples": ["12.50"]}),
]
DecimalInput = Annotated[
    Decimal,
    Field(allow_inf_nan=False, max_digits=18, decimal_places=6),
    WithJsonSchema(
        {"anyOf": [{"type": "string", "pattern": r"^-?\d{1,12}(\.\d{1,6})?$"}, {"type": "number"}]}
    ),
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

    interval: Annotated[str, Field(min_length=12, max_length=14, pattern=r"^\d{4}-\d{2}-\d{2}/\d{1,3}$")]
    side: Literal["buy", "sell"]
    quantity_kwh: DecimalInput
    price_p_per_kwh: DecimalInput
    node: Annotated[str | None, Field(max_length=64)] = None


class OrderAmend(BaseModel):
    """New quantity and/or price for an open order."""

    model_config = ConfigDict(extra="forbid")

    quantity_kwh: DecimalInput | None = None
    price_p_per_kwh: DecimalInput | None = None


class OrderPublic(BaseModel):
    id: str
    participant_id: str
    node: str
    interval: IntervalPublic
    side: str
    quantity_kwh: DecimalText
    price_p_per_kwh: DecimalText
    status: str
    version: int
    priority_at: datetime
    created_at: datetime
    updated_at: datetime


class OrderEventPublic(BaseModel):
    version: int
    kind: str
    quantity_kwh: DecimalText
    price_p_per_kwh: DecimalText
    status: str
    at: datetime
    actor: str


class Page(BaseModel, Generic[T]):
    """One page of a list: ``items``, and where the next page starts (``null`` at the end)."""

    items: list[T]
    offset: int
    limit: int
    next_offset: int | None


class ParticipantCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: Annotated[str, Field(min_length=1, max_length=64)]
    display_name: Annotated[str, Field(min_length=1, max_length=200)]
    mpan: Annotated[str, Field(min_length=13, max_length=13)]
    node: Annotated[str, Field(min_length=1, max_length=64)]


class ParticipantPublic(BaseModel):
    id: str
    kind: str
    display_name: str
    mpan: str | None
    node: str | None
    active: bool


class TokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    label: Annotated[str, Field(max_length=100)] = ""


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
