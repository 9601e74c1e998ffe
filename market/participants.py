"""Households, the operator and their meters: registering and finding them.

May import :mod:`market` and SQLModel.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, select

from market.errors import MarketError, NotFoundError
from market.tables import MeterRow, ParticipantRow

HOUSEHOLD = "household"
OPERATOR = "operator"
TRANSPORTS = ("tcp", "rtu", "rtu-over-tcp")
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
# The MPAN core's check digit: the first 12 digits weighted by these primes, summed, mod 11, mod 10.
_MPAN_WEIGHTS = (3, 5, 7, 13, 17, 19, 23, 29, 31, 37, 41, 43)


@dataclass(frozen=True)
class Participant:
    """A household (with its supply point and node) or the operator."""

    id: str
    kind: str
    display_name: str
    mpan: str | None
    node_id: str | None
    active: bool


@dataclass(frozen=True)
class Meter:
    """A meter and its Modbus address."""

    id: str
    participant_id: str
    host: str
    port: int
    unit_id: int
    transport: str
    model: str
    active: bool


def mpan_with_check_digit(first_twelve: str) -> str:
    """The 13-digit MPAN core whose first twelve digits are ``first_twelve`` (distributor id, then
    the unique number): appends the check digit."""
    if not re.fullmatch(r"[0-9]{12}", first_twelve):
        raise ValueError(f"an MPAN core starts with 12 digits, got {first_twelve!r}")
    total = sum(int(digit) * weight for digit, weight in zip(first_twelve, _MPAN_WEIGHTS))
    return first_twelve + str(total % 11 % 10)


def mpan_check_digit_ok(mpan: str) -> bool:
    """Whether a 13-digit MPAN core's last digit is its check digit."""
    if not re.fullmatch(r"[0-9]{13}", mpan):
        return False
    total = sum(int(digit) * weight for digit, weight in zip(mpan[:12], _MPAN_WEIGHTS))
    return total % 11 % 10 == int(mpan[12])


def register_household(
    session: Session, *, participant_id: str, display_name: str, mpan: str, node_id: str, now: datetime
) -> Participant:
    """Add a household; its id and MPAN must be new and the MPAN a valid 13-digit core."""
    _check_id(participant_id, "participant_id")
    if not display_name.strip() or len(display_name) > 200:
        raise MarketError("display_name", "must be 1 to 200 characters")
    if not mpan_check_digit_ok(mpan):
        raise MarketError("mpan", f"{mpan!r} is not a 13-digit MPAN core with a valid check digit")
    _check_id(node_id, "node_id")
    if session.get(ParticipantRow, participant_id) is not None:
        raise MarketError("participant_id", f"{participant_id!r} is already registered")
    if session.exec(select(ParticipantRow).where(ParticipantRow.mpan == mpan)).first() is not None:
        raise MarketError("mpan", f"{mpan} already belongs to another participant")
    row = ParticipantRow(
        id=participant_id,
        kind=HOUSEHOLD,
        display_name=display_name.strip(),
        mpan=mpan,
        node_id=node_id,
        created_at=now,
    )
    session.add(row)
    session.flush()
    return _participant(row)


def register_operator(
    session: Session, *, participant_id: str, display_name: str, now: datetime
) -> Participant:
    """Add the operator's account (the energy company)."""
    _check_id(participant_id, "participant_id")
    if session.get(ParticipantRow, participant_id) is not None:
        raise MarketError("participant_id", f"{participant_id!r} is already registered")
    row = ParticipantRow(id=participant_id, kind=OPERATOR, display_name=display_name, created_at=now)
    session.add(row)
    session.flush()
    return _participant(row)


def get_participant(session: Session, participant_id: str) -> Participant:
    row = session.get(ParticipantRow, participant_id)
    if row is None:
        raise NotFoundError("participant_id", f"{participant_id!r} is not a participant")
    return _participant(row)


def list_participants(session: Session, *, kind: str | None = None) -> list[Participant]:
    query = select(ParticipantRow).order_by(ParticipantRow.id)
    if kind is not None:
        query = query.where(ParticipantRow.kind == kind)
    return [_participant(row) for row in session.exec(query)]


def register_meter(
    session: Session,
    *,
    meter_id: str,
    participant_id: str,
    host: str,
    port: int,
    unit_id: int,
    transport: str,
    model: str,
    now: datetime,
) -> Meter:
    """Add a meter for a household; one Modbus address (host, port, unit) holds one meter."""
    _check_id(meter_id, "meter_id")
    participant = get_participant(session, participant_id)
    if participant.kind != HOUSEHOLD:
        raise MarketError("participant_id", f"{participant_id!r} is not a household")
    if not host or len(host) > 255:
        raise MarketError("host", "must be 1 to 255 characters")
    if not 1 <= port <= 65535:
        raise MarketError("port", f"{port} is not a TCP port (1 to 65535)")
    if not 1 <= unit_id <= 247:
        raise MarketError("unit_id", f"{unit_id} is not a Modbus unit id (1 to 247)")
    if transport not in TRANSPORTS:
        raise MarketError("transport", f"must be one of {', '.join(TRANSPORTS)}, not {transport!r}")
    _check_id(model, "model")
    if session.get(MeterRow, meter_id) is not None:
        raise MarketError("meter_id", f"{meter_id!r} is already registered")
    clash = session.exec(
        select(MeterRow).where(MeterRow.host == host, MeterRow.port == port, MeterRow.unit_id == unit_id)
    ).first()
    if clash is not None:
        raise MarketError("unit_id", f"{host}:{port} unit {unit_id} is already meter {clash.id!r}")
    row = MeterRow(
        id=meter_id,
        participant_id=participant_id,
        host=host,
        port=port,
        unit_id=unit_id,
        transport=transport,
        model=model,
        created_at=now,
    )
    session.add(row)
    session.flush()
    return _meter(row)


def list_meters(session: Session, *, participant_id: str | None = None) -> list[Meter]:
    query = select(MeterRow).order_by(MeterRow.id)
    if participant_id is not None:
        query = query.where(MeterRow.participant_id == participant_id)
    return [_meter(row) for row in session.exec(query)]


def _check_id(value: str, field: str) -> None:
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise MarketError(
            field, f"{value!r} must be 1 to 64 letters, digits or . _ : - (starting alphanumeric)"
        )


def _participant(row: ParticipantRow) -> Participant:
    return Participant(row.id, row.kind, row.display_name, row.mpan, row.node_id, row.active)


def _meter(row: MeterRow) -> Meter:
    return Meter(
        row.id, row.participant_id, row.host, row.port, row.unit_id, row.transport, row.model, row.active
    )
