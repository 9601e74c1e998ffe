"""A household's Settings: its API tokens for programs, listed (never their secrets), issued (the
secret shown once) and revoked.

The same market functions as the operator's token routes (``POST
/v1/participants/{id}/tokens``, ``DELETE /v1/tokens/{id}``) and ``smartbrum token``: a household
sees and revokes only its own tokens; another's is answered as not found.

May import :mod:`api.deps`, :mod:`market` and :mod:`web`'s own modules.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response
from sqlmodel import Session

from api.deps import PlatformDep
from market.access import IssuedToken, issue_token, list_tokens, revoke_token
from market.database import transaction
from market.errors import MarketError
from web.rendering import render
from web.sessions import HouseholdPageDep, PageRefusedError, check_csrf, refuse_nul_in_forms

router = APIRouter(include_in_schema=False, dependencies=[Depends(refuse_nul_in_forms)])
FormText = Annotated[str, Form()]
#: A token label's longest (the market's limit).
LABEL_CHARACTERS = 100
_NO_SUCH_TOKEN = "There is no such token among yours."


def _settings_page(
    request: Request,
    platform: PlatformDep,
    found: HouseholdPageDep,
    *,
    status: int = 200,
    issued: IssuedToken | None = None,
    **context: Any,
) -> Response:
    with Session(platform.engine) as session:
        tokens = list_tokens(session, participant_id=found.participant.id)
    return render(
        request,
        "settings.html",
        {
            "title": "Settings",
            "nav": "settings",
            "tokens": tokens,
            "issued": issued,
            "label_characters": LABEL_CHARACTERS,
            "form": {"label": ""},
            "errors": {},
            **context,
        },
        status=status,
        # A new token's secret is in this page once: no cache may keep it.
        headers={"cache-control": "no-store"} if issued is not None else None,
    )


@router.get("/settings")
def settings_page(
    request: Request, platform: PlatformDep, found: HouseholdPageDep, revoked: str = ""
) -> Response:
    """My API tokens, a form to issue one and a button to revoke each."""
    return _settings_page(request, platform, found, revoked=revoked[:20])


@router.post("/settings/tokens")
def issue_token_form(
    request: Request,
    platform: PlatformDep,
    found: HouseholdPageDep,
    csrf_token: FormText = "",
    label: FormText = "",
) -> Response:
    """Issue a token for my programs (as ``POST /v1/participants/{id}/tokens`` does); its secret
    is shown in the answer and never again."""
    check_csrf(found, csrf_token)
    label = label.strip()
    errors = {}
    if len(label) > LABEL_CHARACTERS:
        errors["label"] = f"The label is too long: use at most {LABEL_CHARACTERS} characters."
    else:
        try:
            with transaction(platform.engine) as session:
                issued = issue_token(
                    session, participant_id=found.participant.id, now=platform.clock.now(), label=label
                )
        except MarketError as error:
            errors["label"] = error.reason[:1].upper() + error.reason[1:] + "."
        else:
            return _settings_page(request, platform, found, status=201, issued=issued)
    return _settings_page(request, platform, found, status=422, form={"label": label}, errors=errors)


@router.post("/settings/tokens/{token_id}/revoke")
def revoke_token_form(
    platform: PlatformDep, found: HouseholdPageDep, token_id: str, csrf_token: FormText = ""
) -> Response:
    """Revoke one of my tokens at once (as ``DELETE /v1/tokens/{id}`` does)."""
    check_csrf(found, csrf_token)
    if not token_id.isascii() or not token_id.isdigit() or len(token_id) > 18:
        raise PageRefusedError(404, _NO_SUCH_TOKEN)
    with transaction(platform.engine) as session:
        mine = list_tokens(session, participant_id=found.participant.id, include_revoked=True)
        if int(token_id) not in {token.id for token in mine}:
            raise PageRefusedError(404, _NO_SUCH_TOKEN)
        revoke_token(session, token_id=int(token_id), now=platform.clock.now())
    # This worker forgets the tokens it has checked, so the revocation holds here at once (as an
    # operator's revocation does).
    platform.tokens.clear()
    return RedirectResponse(f"/settings?revoked={int(token_id)}", status_code=303)
