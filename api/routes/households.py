"""A household's own data: trades, meter readings, interval energy and statements.

The energy company sees any household's by naming it (``participant_id``); a household naming
another gets 404.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated

from fastapi import APIRouter, Path, Query

from api.deps import ParticipantDep, PlatformDep, SessionDep, read_in_thread
from api.problems import PROBLEM_RESPONSES
from api.schemas import (
    NO_NUL,
    AwareDateTime,
    DayStatementPublic,
    EnergyPublic,
    IntervalPublic,
    Page,
    ReadingPublic,
    SettlementDate,
    StatementPublic,
    TradePublic,
    page,
)
from market.clearing import list_trades
from market.errors import MarketError, NotFoundError
from market.meter_data import energy_of_meters, list_readings
from market.participants import OPERATOR, Participant, list_meters
from market.statements import day_statement, statement

router = APIRouter(responses=PROBLEM_RESPONSES, tags=["households"])
Limit = Annotated[int, Query(ge=1, le=1000)]
Offset = Annotated[int, Query(ge=0, le=10_000_000)]
Whose = Annotated[
    str | None, Query(max_length=64, pattern=NO_NUL, description="Operator only: the household.")
]


def whose(participant: Participant, participant_id: str | None) -> str | None:
    """The household a request is about: the caller's own, or for the operator the one named."""
    if participant.kind == OPERATOR:
        return participant_id
    if participant_id not in (None, participant.id):
        raise NotFoundError("participant_id", f"{participant_id!r} is not a participant")
    return participant.id


@router.get("/trades", response_model=Page[TradePublic])
async def trades(
    participant: ParticipantDep,
    platform: PlatformDep,
    on: Annotated[SettlementDate | None, Query(alias="date")] = None,
    participant_id: Whose = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> Page[TradePublic]:
    """Trades of the current clearing runs."""
    rules = platform.settings.market_rules()
    owner = whose(participant, participant_id)
    found = await read_in_thread(
        platform,
        lambda session: list_trades(
            session, participant_id=owner, settlement_date=on, limit=limit + 1, offset=offset
        ),
    )
    items = [
        TradePublic(
            interval=IntervalPublic.of(t.period, rules.gate_closure_utc(t.period)),
            run_id=t.run_id,
            order_id=t.order_id,
            participant_id=t.participant_id,
            node=t.node_id,
            side=t.side,
            accepted_kwh=t.accepted_kwh,
            price_p_per_kwh=t.price_p_per_kwh,
        )
        for t in found
    ]
    return page(items, limit, offset)


def _meters(session: SessionDep, owner: str | None) -> list[str]:
    return [meter.id for meter in list_meters(session, participant_id=owner)]


@router.get("/readings", response_model=Page[ReadingPublic])
def readings(
    participant: ParticipantDep,
    session: SessionDep,
    start: Annotated[AwareDateTime | None, Query(alias="from", description="ISO 8601 with offset")] = None,
    end: Annotated[AwareDateTime | None, Query(alias="to")] = None,
    participant_id: Whose = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> Page[ReadingPublic]:
    """Meter readings as polled, oldest first, in ``[from, to)``."""
    for name, moment in (("from", start), ("to", end)):
        if moment is not None and moment.tzinfo is None:
            raise MarketError(name, "must carry a UTC offset")
    found = list_readings(
        session,
        meter_ids=_meters(session, whose(participant, participant_id)),
        start=start,
        end=end,
        limit=limit + 1,
        offset=offset,
    )
    items = [ReadingPublic(**reading.__dict__) for reading in found]
    return page(items, limit, offset)


@router.get("/energy", response_model=Page[EnergyPublic])
def energy(
    participant: ParticipantDep,
    platform: PlatformDep,
    session: SessionDep,
    on: Annotated[SettlementDate | None, Query(alias="date")] = None,
    participant_id: Whose = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> Page[EnergyPublic]:
    """Each meter's energy per interval (current revision), with estimate flags."""
    rules = platform.settings.market_rules()
    meters = _meters(session, whose(participant, participant_id))
    found = energy_of_meters(session, meter_ids=meters, settlement_date=on, limit=limit + 1, offset=offset)
    items = [
        EnergyPublic(
            meter_id=e.meter_id,
            interval=IntervalPublic.of(e.period, rules.gate_closure_utc(e.period)),
            import_kwh=e.import_kwh,
            export_kwh=e.export_kwh,
            estimated=e.estimated,
            revision=e.revision,
        )
        for e in found
    ]
    return page(items, limit, offset)


@router.get("/statements/{month}", response_model=StatementPublic)
async def month_statement(
    month: Annotated[str, Path(pattern=r"^(20[0-9]{2}|2100)-(0[1-9]|1[0-2])$", description="YYYY-MM")],
    participant: ParticipantDep,
    platform: PlatformDep,
    participant_id: Whose = None,
) -> StatementPublic:
    """A household's statement for a month: per day, the total, and the saving over the days
    settled on metered energy."""
    owner = whose(participant, participant_id)
    if owner is None:
        raise NotFoundError("participant_id", "name the household")
    first = date.fromisoformat(f"{month}-01")
    last = (first.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)
    length = platform.settings.interval_minutes
    found = await read_in_thread(
        platform,
        lambda session: statement(session, owner, first_day=first, last_day=last, length_minutes=length),
    )
    return StatementPublic.of(month, found)


@router.get("/statements/days/{date}", response_model=DayStatementPublic)
def day_statement_route(
    on: Annotated[SettlementDate, Path(alias="date", description="The settlement date, YYYY-MM-DD.")],
    participant: ParticipantDep,
    platform: PlatformDep,
    session: SessionDep,
    participant_id: Whose = None,
) -> DayStatementPublic:
    """A household's statement for one settlement date, a line per interval with how it stands."""
    owner = whose(participant, participant_id)
    if owner is None:
        raise NotFoundError("participant_id", "name the household")
    rules = platform.settings.market_rules()
    rows = day_statement(session, owner, on, length_minutes=rules.interval_minutes)
    return DayStatementPublic.of(owner, on, rows, rules)
