"""The energy company's Invite page: inviting a household (or another operator). Its home, the
Overview, is in :mod:`web.operator_console_pages`.

May import :mod:`api.deps`, :mod:`market` and :mod:`web`'s own modules.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import Response
from sqlmodel import Session

from api.deps import PlatformDep
from market.accounts import invite, participants_with_accounts
from market.database import transaction
from market.errors import MarketError
from market.participants import list_participants
from web.rendering import invitation_link, render
from web.sessions import OperatorPageDep, check_csrf, refuse_nul_in_forms

router = APIRouter(include_in_schema=False, dependencies=[Depends(refuse_nul_in_forms)])


def _invite_page(
    request: Request, platform: PlatformDep, *, status: int = 200, **context: object
) -> Response:
    with Session(platform.engine) as session:
        participants = [p for p in list_participants(session) if p.active]
        joined = participants_with_accounts(session)
    return render(
        request,
        "invite.html",
        {"title": "Invite", "nav": "invite", "participants": participants, "joined": joined, **context},
        status=status,
    )


@router.get("/operator/invite")
def invite_page(
    request: Request, platform: PlatformDep, found: OperatorPageDep, participant_id: str = ""
) -> Response:
    """The invitation form, ``participant_id`` chosen when given (the Households page links so)."""
    return _invite_page(request, platform, chosen=participant_id)


@router.post("/operator/invite")
def invite_form(
    request: Request,
    platform: PlatformDep,
    found: OperatorPageDep,
    csrf_token: Annotated[str, Form()] = "",
    participant_id: Annotated[str, Form()] = "",
) -> Response:
    """Invite a participant: the one-time link is shown once, to pass on."""
    check_csrf(found, csrf_token)
    try:
        with transaction(platform.engine) as session:
            issued = invite(
                session,
                participant_id=participant_id.strip(),
                invited_by=found.participant.id,
                now=platform.clock.now(),
                policy=platform.settings.account_policy(),
            )
    except MarketError as error:
        return _invite_page(request, platform, status=422, error=f"{participant_id}: {error.reason}.")
    return _invite_page(
        request,
        platform,
        invited=issued,
        link=invitation_link(platform.settings.public_url, issued.secret),
    )
