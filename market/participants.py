"""Households, the operator and their meters: registering and finding them.

May import :mod:`market` and SQLModel.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from market.database import chunks
from market.errors import ConflictError, MarketError, NotFoundError
from market.network import node_sets_from
from market.tables import IntervalEnergyRow, MeterEventRow, MeterReadingRow, MeterRow, ParticipantRow
from metering.polling import check_meter_model
from metering.registers import MapError

HOUSEHOLD = "household"
OPERATOR = "operator"
TRANSPORTS = ("tcp", "rtu", "rtu-over-tcp")
#: The transport of a meter read through the national data service: its energy arrives in
#: half-hourly files (:mod:`market.meter_files`), never by polling.
DATA_SERVICE = "data-service"
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


def data_service_meter_id(mpan: str) -> str:
    """The id of the data-service meter of the household with ``mpan`` (made on its first import)."""
    return f"hh-{mpan}"


def register_household(
    session: Session, *, participant_id: str, display_name: str, mpan: str, node_id: str, now: datetime
) -> Participant:
    """Add a household; its id and MPAN must be new and the MPAN a valid 13-digit core, and its
    node must be in the network from ``now`` on (:func:`check_nodes`)."""
    _check_household(NewHousehold(participant_id, display_name, mpan, node_id))
    check_nodes(session, {node_id: "node"}, now=now)
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
    # The columns, not ORM rows: building 10,000 households' SQLModel rows took over half a
    # second under load, their tuples a fifth of that (the operator's pages, bench/web.py).
    query = sa.select(
        col(ParticipantRow.id),
        col(ParticipantRow.kind),
        col(ParticipantRow.display_name),
        col(ParticipantRow.mpan),
        col(ParticipantRow.node_id),
        col(ParticipantRow.active),
    ).order_by(col(ParticipantRow.id))
    if kind is not None:
        query = query.where(col(ParticipantRow.kind) == kind)
    return [Participant(*row) for row in session.execute(query)]


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
    map_dirs: Sequence[Path] = (),
) -> Meter:
    """Add a meter for a household; one Modbus address (host, port, unit) holds one meter.

    ``model`` must be one the poller can read: a register map's (``map_dirs`` holds the user's
    maps) or a SunSpec device's.
    """
    _check_meter(NewMeter(meter_id, participant_id, host, port, unit_id, transport, model), map_dirs)
    participant = get_participant(session, participant_id)
    if participant.kind != HOUSEHOLD:
        raise MarketError("participant_id", f"{participant_id!r} is not a household")
    if session.get(MeterRow, meter_id) is not None:
        raise MarketError("meter_id", f"{meter_id!r} is already registered")
    _refuse_data_service_households(session, [participant_id], lambda _: "participant_id")
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


@dataclass(frozen=True)
class NewHousehold:
    """A household to register (:func:`register_households`)."""

    participant_id: str
    display_name: str
    mpan: str
    node_id: str


@dataclass(frozen=True)
class NewMeter:
    """A meter to register (:func:`register_meters`)."""

    meter_id: str
    participant_id: str
    host: str
    port: int
    unit_id: int
    transport: str
    model: str


def register_households(session: Session, households: Sequence[NewHousehold], *, now: datetime) -> int:
    """Add many households at once (a street or a district joining), all or none; returns how many.

    Each is checked as :func:`register_household` checks one, against what is stored and against
    the others in the batch; an error names the item and field (``households[3].mpan``) and adds
    nothing. The rows are then written in one statement.
    """
    for index, household in enumerate(households):
        with _item("households", index):
            _check_household(household)
    first_on: dict[str, str] = {}
    for index, household in enumerate(households):
        first_on.setdefault(household.node_id, f"households[{index}].node")
    check_nodes(session, first_on, now=now)
    ids = _first_repeat(
        [household.participant_id for household in households], "households", "participant_id"
    )
    mpans = _first_repeat([household.mpan for household in households], "households", "mpan")
    if (clash := _first_stored(session, ParticipantRow.id, ids)) is not None:
        raise MarketError(
            f"households[{clash}].participant_id",
            f"{households[clash].participant_id!r} is already registered",
        )
    if (clash := _first_stored(session, ParticipantRow.mpan, mpans)) is not None:
        raise MarketError(
            f"households[{clash}].mpan", f"{households[clash].mpan} already belongs to another participant"
        )
    if households:
        session.execute(
            sa.insert(ParticipantRow.__table__),  # type: ignore[attr-defined]
            [
                {
                    "id": household.participant_id,
                    "kind": HOUSEHOLD,
                    "display_name": household.display_name.strip(),
                    "mpan": household.mpan,
                    "node_id": household.node_id,
                    "active": True,
                    "created_at": now,
                }
                for household in households
            ],
        )
    return len(households)


def register_meters(
    session: Session, meters: Sequence[NewMeter], *, now: datetime, map_dirs: Sequence[Path] = ()
) -> int:
    """Add many meters at once, all or none, each checked as :func:`register_meter` checks one
    (errors name the item: ``meters[7].unit_id``); returns how many."""
    for index, meter in enumerate(meters):
        with _item("meters", index):
            _check_meter(meter, map_dirs)
    ids = _first_repeat([meter.meter_id for meter in meters], "meters", "meter_id")
    addresses = [(meter.host, meter.port, meter.unit_id) for meter in meters]
    _first_repeat(addresses, "meters", "unit_id")
    if (clash := _first_stored(session, MeterRow.id, ids)) is not None:
        raise MarketError(f"meters[{clash}].meter_id", f"{meters[clash].meter_id!r} is already registered")
    owners = {meter.participant_id for meter in meters}
    kinds: dict[str, str] = {}
    for chunk in chunks(sorted(owners)):
        kinds.update(
            session.exec(
                select(ParticipantRow.id, ParticipantRow.kind).where(col(ParticipantRow.id).in_(chunk))
            ).all()
        )
    for index, meter in enumerate(meters):
        kind = kinds.get(meter.participant_id)
        if kind is None:
            raise NotFoundError(
                f"meters[{index}].participant_id", f"{meter.participant_id!r} is not a participant"
            )
        if kind != HOUSEHOLD:
            raise MarketError(
                f"meters[{index}].participant_id", f"{meter.participant_id!r} is not a household"
            )
    _refuse_data_service_households(
        session,
        [meter.participant_id for meter in meters],
        lambda index: f"meters[{index}].participant_id",
    )
    wanted = {address: index for index, address in enumerate(addresses)}
    for chunk in chunks(sorted({meter.host for meter in meters})):
        stored = session.exec(
            select(MeterRow.id, MeterRow.host, MeterRow.port, MeterRow.unit_id).where(
                col(MeterRow.host).in_(chunk)
            )
        )
        for meter_id, host, port, unit_id in stored:
            taken = wanted.get((host, port, unit_id))
            if taken is not None:
                raise MarketError(
                    f"meters[{taken}].unit_id", f"{host}:{port} unit {unit_id} is already meter {meter_id!r}"
                )
    if meters:
        session.execute(
            sa.insert(MeterRow.__table__),  # type: ignore[attr-defined]
            [
                {
                    "id": meter.meter_id,
                    "participant_id": meter.participant_id,
                    "host": meter.host,
                    "port": meter.port,
                    "unit_id": meter.unit_id,
                    "transport": meter.transport,
                    "model": meter.model,
                    "active": True,
                    "created_at": now,
                }
                for meter in meters
            ],
        )
    return len(meters)


def _refuse_data_service_households(
    session: Session, participant_ids: Sequence[str], field: Callable[[int], str]
) -> None:
    """Refuse a Modbus meter for a household read through the data service (an active meter of
    :data:`DATA_SERVICE`): both meters' energy would be counted. ``field`` names the item."""
    columns = MeterRow.__table__.c  # type: ignore[attr-defined]
    read: dict[str, str] = {}
    for chunk in chunks(sorted(set(participant_ids))):
        query = sa.select(columns.participant_id, columns.id).where(
            columns.participant_id.in_(chunk), columns.active, columns.transport == DATA_SERVICE
        )
        read.update((participant, meter) for participant, meter in session.execute(query))
    for index, participant_id in enumerate(participant_ids):
        if participant_id in read:
            raise MarketError(
                field(index),
                f"{participant_id!r} is read through the national data service (meter "
                f"{read[participant_id]!r}); remove that meter first, so no energy is counted twice",
            )


def check_nodes(session: Session, fields: dict[str, str], *, now: datetime) -> None:
    """Refuse a household's node that the network lacks, from ``now`` on.

    A household may trade from the moment it is registered, so its node must be in the network
    version in force at ``now`` and in every version published to start later.

    Parameters
    ----------
    fields:
        Each node to check, to the field an error names (``"node"``, ``"households[3].node"``).

    Raises
    ------
    ConflictError
        No network is published at all (the API's 409): load one first.
    MarketError
        A node is not in the network (422), naming the known nodes.
    """
    node_sets = node_sets_from(session, now)
    if not node_sets:
        field = next(iter(fields.values()), "node")
        raise ConflictError(
            field, "no network is published yet; load one first ('smartbrum network load FILE')"
        )
    for node_id, field in fields.items():
        for effective_from_utc, nodes in node_sets:
            if node_id not in nodes:
                known = sorted(nodes)
                listed = ", ".join(known[:20]) + (f" and {len(known) - 20} more" if len(known) > 20 else "")
                when = "" if effective_from_utc <= now else f" from {effective_from_utc.isoformat()}"
                raise MarketError(
                    field, f"{node_id!r} is not a node of the network{when} (its nodes: {listed})"
                )


def _check_household(household: NewHousehold) -> None:
    _check_id(household.participant_id, "participant_id")
    if not household.display_name.strip() or len(household.display_name) > 200:
        raise MarketError("display_name", "must be 1 to 200 characters")
    if not mpan_check_digit_ok(household.mpan):
        raise MarketError("mpan", f"{household.mpan!r} is not a 13-digit MPAN core with a valid check digit")
    _check_id(household.node_id, "node_id")


def _check_meter(meter: NewMeter, map_dirs: Sequence[Path]) -> None:
    _check_id(meter.meter_id, "meter_id")
    _check_id(meter.participant_id, "participant_id")
    if not meter.host or len(meter.host) > 255:
        raise MarketError("host", "must be 1 to 255 characters")
    if not 1 <= meter.port <= 65535:
        raise MarketError("port", f"{meter.port} is not a TCP port (1 to 65535)")
    if not 1 <= meter.unit_id <= 247:
        raise MarketError("unit_id", f"{meter.unit_id} is not a Modbus unit id (1 to 247)")
    if meter.transport not in TRANSPORTS:
        raise MarketError("transport", f"must be one of {', '.join(TRANSPORTS)}, not {meter.transport!r}")
    _check_id(meter.model, "model")
    try:
        check_meter_model(meter.model, map_dirs=map_dirs)
    except MapError as error:
        raise MarketError("model", error.reason) from None


@contextmanager
def _item(name: str, index: int) -> Iterator[None]:
    """Re-raise a field's error as the batch item's (``households[3].mpan``)."""
    try:
        yield
    except MarketError as error:
        raise MarketError(f"{name}[{index}].{error.field}", error.reason) from None


def _first_repeat(keys: Sequence[Hashable], name: str, field: str) -> dict[Hashable, int]:
    """Each key's index; an error at the first key the batch repeats."""
    seen: dict[Hashable, int] = {}
    for index, key in enumerate(keys):
        if key in seen:
            raise MarketError(f"{name}[{index}].{field}", f"repeats {name}[{seen[key]}]")
        seen[key] = index
    return seen


def _first_stored(session: Session, column: Any, keys: dict[Hashable, int]) -> int | None:
    """The lowest batch index of a key already stored in ``column``, if any."""
    found: list[int] = []
    for chunk in chunks(list(keys)):
        found += [keys[key] for key in session.exec(select(column).where(col(column).in_(chunk)))]
    return min(found, default=None)


def list_meters(
    session: Session,
    *,
    participant_id: str | None = None,
    active: bool | None = None,
    polled: bool | None = None,
) -> list[Meter]:
    """Meters by id, a household's or all, active or not or both (plain rows: a city has many);
    ``polled`` keeps the Modbus meters (True) or the data-service ones (False)."""
    columns = MeterRow.__table__.c  # type: ignore[attr-defined]
    query = sa.select(
        columns.id,
        columns.participant_id,
        columns.host,
        columns.port,
        columns.unit_id,
        columns.transport,
        columns.model,
        columns.active,
    ).order_by(columns.id)
    if participant_id is not None:
        query = query.where(columns.participant_id == participant_id)
    if active is not None:
        query = query.where(columns.active == active)
    if polled is not None:
        query = query.where(
            (columns.transport != DATA_SERVICE) if polled else (columns.transport == DATA_SERVICE)
        )
    return [Meter(*row) for row in session.execute(query)]


def remove_meter(session: Session, *, meter_id: str) -> tuple[Meter, bool]:
    """Stop polling a meter; returns it and whether its row was deleted.

    A meter with no data (no readings, counter events or interval energy) is deleted, and its
    Modbus address (host, port, unit) is free for another meter. One with data is deactivated
    instead: settlement needs its history, which names it, so the row stays and so does its
    address, which the schema keeps unique over every meter, active or not: another meter cannot
    be registered there while it is stored. Removing a deactivated meter again changes nothing.
    """
    row = session.get(MeterRow, meter_id, with_for_update=True)
    if row is None:
        raise NotFoundError("meter_id", f"{meter_id!r} is not a meter")
    has_data = any(
        session.exec(select(table.id).where(table.meter_id == meter_id).limit(1)).first() is not None
        for table in (MeterReadingRow, MeterEventRow, IntervalEnergyRow)
    )
    if has_data:
        row.active = False
        session.add(row)
        session.flush()
        return _meter(row), False
    meter = _meter(row)
    session.delete(row)
    session.flush()
    return Meter(**{**meter.__dict__, "active": False}), True


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
