"""The energy company's routes: participants and their tokens."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status

from api.app import OperatorDep, PlatformDep, SessionDep
from api.schemas import Page, ParticipantCreate, ParticipantPublic, TokenCreate, TokenIssued
from market.access import issue_token, revoke_token
from market.database import transaction
from market.participants import Participant, get_participant, list_participants, register_household

router = APIRouter(tags=["operator"])


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
    participant_id: Annotated[str, Path(max_length=64)], _: OperatorDep, session: SessionDep
) -> ParticipantPublic:
    return participant_public(get_participant(session, participant_id))


@router.post(
    "/participants/{participant_id}/tokens", status_code=status.HTTP_201_CREATED, response_model=TokenIssued
)
def add_token(
    participant_id: Annotated[str, Path(max_length=64)],
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
    token_id: Annotated[int, Path(ge=1, le=2**62)], _: OperatorDep, platform: PlatformDep
) -> Response:
    """Revoke a token at once."""
    with transaction(platform.engine) as session:
        revoke_token(session, token_id=token_id, now=platform.clock.now())
    return Response(status_code=status.HTTP_204_NO_CONTENT)
