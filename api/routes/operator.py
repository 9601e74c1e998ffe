"""The energy company's routes: participants and their tokens."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status
from fastapi.responses import PlainTextResponse
from sqlmodel import select

from api.deps import OperatorDep, ParticipantDep, PlatformDep, SessionDep
from api.problems import PROBLEM_RESPONSES
from api.schemas import (
    MAX_ROW_ID,
    NO_NUL,
    AuditPublic,
    AwareDateTime,
    ClearRequest,
    MeterCreate,
    MeterPublic,
    NetworkCreate,
    NetworkPublic,
    NodePublic,
    Page,
    ParticipantCreate,
    ParticipantPublic,
    RunPublic,
    SettlementDate,
    SettlementRunPublic,
    SettleRequest,
    TariffCreate,
    TariffPublic,
    TokenCreate,
    TokenIssued,
    page,
)
from market.access import issue_token, list_audit, revoke_token
from market.clearing import clear_interval
from market.database import transaction
from market.errors import MarketError, NotFoundError
from market.intervals import InvalidPeriodError, parse_period_key, periods_of_day, settlement_period
from market.network import (
    NetworkVersion,
    TariffVersion,
    network_in_force,
    publish_network,
    set_tariff,
    tariff_in_force,
)
from market.participants import (
    Participant,
    get_participant,
    list_meters,
    list_participants,
    register_household,
    register_meter,
)
from market.settlement import settle
from market.statements import export_runs_csv
from market.tables import SettlementRunRow
from optimiser import ClearingInputError, Network, Node

router = APIRouter(responses=PROBLEM_RESPONSES, tags=["operator"])


def participant_public(participant: Participant) -> ParticipantPublic:
    return ParticipantPublic(
        id=participant.id,
        kind=participant.kind,
        display_name=participant.display_name,
        mpan=participant.mpan,
        node=participant.node_id,
        active=participant.active,
    )


@router.post("/participants", status_code=status.HTTP_201_CREATED, response_model=ParticipantPublic)
def add_participant(body: ParticipantCreate, _: OperatorDep, platform: PlatformDep) -> ParticipantPublic:
    """Register a household (MPAN core with a valid check digit, on a node)."""
    with transaction(platform.engine) as session:
        created = register_household(
            session,
            participant_id=body.id,
            display_name=body.display_name,
            mpan=body.mpan,
            node_id=body.node,
            now=platform.clock.now(),
        )
    return participant_public(created)


@router.get("/participants", response_model=Page[ParticipantPublic])
def participants(
    _: OperatorDep,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> Page[ParticipantPublic]:
    everyone = list_participants(session)
    page = everyone[offset : offset + limit]
    return Page[ParticipantPublic](
        items=[participant_public(p) for p in page],
        offset=offset,
        limit=limit,
        next_offset=offset + limit if offset + limit < len(everyone) else None,
    )


@router.get("/participants/{participant_id}", response_model=ParticipantPublic)
def participant(
    participant_id: Annotated[str, Path(max_length=64, pattern=NO_NUL)], _: OperatorDep, session: SessionDep
) -> ParticipantPublic:
    return participant_public(get_participant(session, participant_id))


@router.post(
    "/participants/{participant_id}/tokens", status_code=status.HTTP_201_CREATED, response_model=TokenIssued
)
def add_token(
    participant_id: Annotated[str, Path(max_length=64, pattern=NO_NUL)],
    body: TokenCreate,
    _: OperatorDep,
    platform: PlatformDep,
) -> TokenIssued:
    """Issue a token; the response is the only time it is shown."""
    with transaction(platform.engine) as session:
        issued = issue_token(
            session, participant_id=participant_id, now=platform.clock.now(), label=body.label
        )
    return TokenIssued(
        id=issued.id,
        participant_id=issued.participant_id,
        label=issued.label,
        token=issued.secret,
        created_at=issued.created_at,
    )


@router.delete("/tokens/{token_id}", status_code=status.HTTP_204_NO_CONTENT)
def remove_token(
    token_id: Annotated[int, Path(ge=1, le=MAX_ROW_ID)], _: OperatorDep, platform: PlatformDep
) -> Response:
    """Revoke a token at once."""
    with transaction(platform.engine) as session:
        revoke_token(session, token_id=token_id, now=platform.clock.now())
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/meters", status_code=status.HTTP_201_CREATED, response_model=MeterPublic)
def add_meter(body: MeterCreate, _: OperatorDep, platform: PlatformDep) -> MeterPublic:
    """Register a household's meter and its Modbus address."""
    with transaction(platform.engine) as session:
        meter = register_meter(
            session,
            meter_id=body.id,
            participant_id=body.participant_id,
            host=body.host,
            port=body.port,
            unit_id=body.unit_id,
            transport=body.transport,
            model=body.model,
            now=platform.clock.now(),
            map_dirs=platform.settings.meter_map_dirs(),
        )
    return MeterPublic(**meter.__dict__)


@router.get("/meters", response_model=Page[MeterPublic])
def meters(
    _: OperatorDep,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> Page[MeterPublic]:
    everything = list_meters(session)
    items = [MeterPublic(**m.__dict__) for m in everything[offset : offset + limit + 1]]
    return page(items, limit, offset)


def network_public(version: NetworkVersion) -> NetworkPublic:
    tree = version.network
    return NetworkPublic(
        version_id=version.id,
        root=tree.root,
        effective_from_utc=version.effective_from_utc,
        nodes=[
            NodePublic(
                id=n.id,
                parent=n.parent,
                import_capacity_kwh=n.import_capacity_kwh,
                export_capacity_kwh=n.export_capacity_kwh,
                fee_p_per_kwh=n.fee_p_per_kwh,
            )
            for n in sorted(tree.nodes, key=lambda n: n.id)
        ],
    )


@router.post("/network", status_code=status.HTTP_201_CREATED, response_model=NetworkPublic)
def add_network(body: NetworkCreate, _: OperatorDep, platform: PlatformDep) -> NetworkPublic:
    """Publish a network version; the intervals already cleared keep theirs."""
    try:
        tree = Network(
            root=body.root,
            nodes=tuple(
                Node(n.id, n.parent, n.import_capacity_kwh, n.export_capacity_kwh, n.fee_p_per_kwh)
                for n in body.nodes
            ),
        )
    except ClearingInputError as error:
        raise MarketError(f"nodes ({error.subject})", f"{error.field} {error.reason}".strip()) from None
    with transaction(platform.engine) as session:
        version = publish_network(
            session,
            network=tree,
            effective_from_utc=body.effective_from_utc,
            now=platform.clock.now(),
            note=body.note,
        )
    return network_public(version)


@router.get("/network", response_model=NetworkPublic)
def network(
    _: ParticipantDep,
    platform: PlatformDep,
    session: SessionDep,
    at: Annotated[AwareDateTime | None, Query(description="In force at (default: now).")] = None,
) -> NetworkPublic:
    """The network version in force (public: households may see the tree)."""
    if at is not None and at.tzinfo is None:
        raise MarketError("at", "must carry a UTC offset")
    return network_public(network_in_force(session, at or platform.clock.now()))


def tariff_public(version: TariffVersion) -> TariffPublic:
    return TariffPublic(
        id=version.id,
        import_p_per_kwh=version.tariff.import_p_per_kwh,
        export_p_per_kwh=version.tariff.export_p_per_kwh,
        effective_from_utc=version.effective_from_utc,
    )


@router.post("/tariffs", status_code=status.HTTP_201_CREATED, response_model=TariffPublic)
def add_tariff(body: TariffCreate, _: OperatorDep, platform: PlatformDep) -> TariffPublic:
    with transaction(platform.engine) as session:
        tariff = set_tariff(
            session,
            import_p_per_kwh=body.import_p_per_kwh,
            export_p_per_kwh=body.export_p_per_kwh,
            effective_from_utc=body.effective_from_utc,
            now=platform.clock.now(),
        )
    return tariff_public(tariff)


@router.get("/tariffs/current", response_model=TariffPublic)
def tariff(_: ParticipantDep, platform: PlatformDep, session: SessionDep) -> TariffPublic:
    found = tariff_in_force(session, platform.clock.now())
    return tariff_public(found)


@router.post("/intervals/{day}/{period}/clear", response_model=RunPublic)
def clear(
    day: SettlementDate,
    period: Annotated[int, Path(ge=1, le=100)],
    body: ClearRequest,
    participant: OperatorDep,
    platform: PlatformDep,
) -> RunPublic:
    """Clear an interval whose gate has closed (once); with a reason, clear it again."""
    rules = platform.settings.market_rules()
    try:
        interval = settlement_period(day, period, length_minutes=rules.interval_minutes)
    except InvalidPeriodError as error:
        raise NotFoundError("period", str(error)) from None
    outcome = clear_interval(
        platform.engine,
        period=interval,
        rules=rules,
        now=platform.clock.now(),
        triggered_by=f"api:{participant.id}",
        reason=body.reason,
    )
    run = outcome.run
    return RunPublic(
        run_id=run.id,
        interval=run.period.key,
        sequence=run.sequence,
        created=outcome.created,
        orders=run.orders,
        welfare_p=run.welfare_p,
    )


@router.post("/settlement/runs", response_model=list[SettlementRunPublic])
def settle_runs(
    body: SettleRequest, participant: OperatorDep, platform: PlatformDep
) -> list[SettlementRunPublic]:
    """Settle one interval or a day: initial runs, or reconciliations."""
    rules = platform.settings.market_rules()
    if (body.interval is None) == (body.settlement_date is None):
        raise MarketError("interval", "give interval or date, not both or neither")
    if body.interval is not None:
        try:
            periods = [parse_period_key(body.interval, length_minutes=rules.interval_minutes)]
        except InvalidPeriodError as error:
            raise MarketError("interval", str(error)) from None
    else:
        assert body.settlement_date is not None
        periods = periods_of_day(body.settlement_date, length_minutes=rules.interval_minutes)
    config = platform.settings.settlement_config()
    results = []
    for interval in periods:
        outcome = settle(
            platform.engine,
            period=interval,
            run_type=body.run,
            config=config,
            now=platform.clock.now(),
            triggered_by=f"api:{participant.id}",
        )
        run = outcome.run
        results.append(
            SettlementRunPublic(
                run_id=run.id,
                interval=run.period.key,
                run_type=run.run_type,
                sequence=run.sequence,
                status=run.status,
                created=outcome.created,
                lines=run.lines,
                pending=run.pending,
                estimated=list(run.estimated),
            )
        )
    return results


@router.get(
    "/settlement/export", response_class=PlainTextResponse, responses={200: {"content": {"text/csv": {}}}}
)
def settlement_export(
    _: OperatorDep,
    session: SessionDep,
    on: Annotated[SettlementDate, Query(alias="date")],
) -> PlainTextResponse:
    """The day's settlement runs as CSV: one row per household per interval per run."""
    run_ids = [
        run.id
        for run in session.exec(select(SettlementRunRow).where(SettlementRunRow.settlement_date == on))
        if run.id is not None
    ]
    return PlainTextResponse(export_runs_csv(session, sorted(run_ids)), media_type="text/csv")


@router.get("/audit", response_model=Page[AuditPublic])
def audit(
    _: OperatorDep,
    session: SessionDep,
    actor: Annotated[str | None, Query(max_length=64, pattern=NO_NUL)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> Page[AuditPublic]:
    """Every state-changing request, newest first."""
    found = list_audit(session, actor=actor, limit=limit + 1, offset=offset)
    return page([AuditPublic(**event.__dict__) for event in found], limit, offset)
