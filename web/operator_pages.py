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
from market.accounts import has_account, invite
from market.database import transaction
from market.errors import MarketError, NotFoundError
from market.participants import get_participant
from web.rendering import invitation_link, render
from web.sessions import OperatorPageDep, check_csrf, refuse_nul_in_forms

router = APIRouter(include_in_schema=False, dependencies=[Depends(refuse_nul_in_forms)])


def _invite_page(
    request: Request, platform: PlatformDep, *, status: int = 200, chosen: str = "", **context: object
) -> Response:
    """The form: a participant's id typed (a city has too many households for a list), with the
    chosen one's name and whether it has an account when the Households page chose it."""
    chosen_participant, joined = None, False
    if chosen and len(chosen) <= 64:
        with Session(platform.engine) as session:
            try:
                chosen_participant = get_participant(session, chosen)
            except NotFoundError:
                chosen_participant = None
            else:
                joined = has_account(session, chosen)
    return render(
        request,
        "invite.html",
        {
            "title": "Invite",
            "nav": "invite",
            "chosen": chosen,
            "chosen_participant": chosen_participant,
            "chosen_joined": joined,
            **context,
        },
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
        return _invite_page(
            request, platform, status=422, chosen=participant_id, error=f"{participant_id}: {error.reason}."
        )
    return _invite_page(
        request,
        platform,
        invited=issued,
        link=invitation_link(platform.settings.public_url, issued.secret),
    )
