"""The energy company's console: Households (search, invite, deactivate), Meters, Settlement runs
and the Audit log, each paged with its filters kept in the query string.

Each page calls the market functions the JSON API (or the command line) calls for the same thing:
:func:`market.households.deactivate_household` as ``smartbrum participant deactivate``,
:func:`market.access.list_audit` as ``GET /v1/audit``, and :mod:`market.monitoring`'s reads.
May import :mod:`api.deps`, :mod:`market` and :mod:`web`'s own modules.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Path, Request
from fastapi.responses import Response
from sqlmodel import Session

from api.deps import PlatformDep
from market.access import list_audit
from market.accounts import participants_with_accounts
from market.database import transaction
from market.errors import MarketError, NotFoundError
from market.households import deactivate_household
from market.monitoring import find_households, invited_participants
from market.participants import HOUSEHOLD, Participant, get_participant
from web.rendering import render
from web.sessions import OperatorPageDep, PageRefusedError, check_csrf, refuse_nul_in_forms

router = APIRouter(include_in_schema=False, dependencies=[Depends(refuse_nul_in_forms)])

#: Rows per page on every list of the console.
PAGE_SIZE = 50
_MAX_PAGE = 1_000_000
_MAX_QUERY = 64


@dataclass(frozen=True)
class Pager:
    """Where one page of a list sits: its number, whether there are others, and their links
    (which keep the list's filters)."""

    number: int
    total: int | None
    first_row: int
    last_row: int
    previous_href: str | None
    next_href: str | None


def page_number(text: str) -> int:
    """A ``page=`` value as a page number: 1 when it is missing or no number."""
    try:
        number = int(text)
    except ValueError:
        return 1
    return min(max(number, 1), _MAX_PAGE)


def pager(
    path: str, filters: dict[str, str], number: int, shown: int, total: int | None, *, more: bool = False
) -> Pager:
    """The pager of page ``number`` of a list at ``path`` filtered by ``filters`` (empty ones
    left out of the links), showing ``shown`` of ``total`` rows (None: not counted, and ``more``
    says whether a next page has any)."""
    kept = {key: value for key, value in filters.items() if value}

    def href(to: int) -> str:
        query = urlencode({**kept, "page": str(to)} if to > 1 else kept)
        return f"{path}?{query}" if query else path

    first = (number - 1) * PAGE_SIZE
    return Pager(
        number=number,
        total=total,
        first_row=first + 1 if shown else 0,
        last_row=first + shown,
        previous_href=href(number - 1) if number > 1 else None,
        next_href=href(number + 1) if (more if total is None else first + shown < total) else None,
    )


# --- households ------------------------------------------------------------------------------------


@router.get("/operator/households")
def households_page(
    request: Request, platform: PlatformDep, found: OperatorPageDep, q: str = "", page: str = "1"
) -> Response:
    """Households found by id, name, MPAN or node: active or not, with an account or invited."""
    query = q.strip()[:_MAX_QUERY]
    number = page_number(page)
    with Session(platform.engine) as session:
        households, total = find_households(
            session, query=query, limit=PAGE_SIZE, offset=(number - 1) * PAGE_SIZE
        )
        ids = [h.id for h in households]
        joined = participants_with_accounts(session)
        invited = invited_participants(session, participant_ids=ids, now=platform.clock.now())
    return render(
        request,
        "operator_households.html",
        {
            "title": "Households",
            "nav": "households",
            "q": query,
            "households": households,
            "joined": joined,
            "invited": invited,
            "pager": pager("/operator/households", {"q": query}, number, len(households), total),
        },
    )


def _household(platform: PlatformDep, participant_id: str) -> Participant:
    with Session(platform.engine) as session:
        try:
            household = get_participant(session, participant_id)
        except NotFoundError:
            household = None
    if household is None or household.kind != HOUSEHOLD:
        raise PageRefusedError(404, f"There is no household {participant_id}.")
    return household


@router.get("/operator/households/{participant_id}/deactivate")
def deactivate_page(
    request: Request,
    platform: PlatformDep,
    found: OperatorPageDep,
    participant_id: Annotated[str, Path(max_length=64)],
) -> Response:
    """Ask before deactivating a household, with a reason."""
    household = _household(platform, participant_id)
    return render(
        request,
        "operator_deactivate.html",
        {"title": f"Deactivate {household.id}", "nav": "households", "household": household, "errors": {}},
    )


@router.post("/operator/households/{participant_id}/deactivate")
def deactivate_form(
    request: Request,
    platform: PlatformDep,
    found: OperatorPageDep,
    participant_id: Annotated[str, Path(max_length=64)],
    csrf_token: Annotated[str, Form()] = "",
    reason: Annotated[str, Form()] = "",
) -> Response:
    """Deactivate a household (it can no longer sign in or trade; its sessions end at once) and
    show what was done."""
    check_csrf(found, csrf_token)
    household = _household(platform, participant_id)
    reason = reason.strip()
    context: dict[str, object] = {
        "title": f"Deactivate {household.id}",
        "nav": "households",
        "household": household,
        "reason": reason,
    }
    try:
        with transaction(platform.engine) as session:
            done = deactivate_household(
                session,
                participant_id=household.id,
                rules=platform.settings.market_rules(),
                now=platform.clock.now(),
                actor=found.participant.id,
                reason=reason,
            )
    except MarketError as error:
        if error.field == "reason":
            errors = {"reason": "The reason is too long: keep it to 300 characters."}
        elif "already inactive" in error.reason:
            errors = {"household": f"{household.id} is already inactive: nothing was done."}
        else:
            errors = {"household": f"{household.id} was not deactivated: {error.reason}."}
        return render(request, "operator_deactivate.html", {**context, "errors": errors}, status=422)
    return render(request, "operator_deactivate.html", {**context, "done": done, "errors": {}})


# --- audit log -------------------------------------------------------------------------------------


@router.get("/operator/audit")
def audit_page(
    request: Request, platform: PlatformDep, found: OperatorPageDep, actor: str = "", page: str = "1"
) -> Response:
    """Every state-changing request, newest first, as ``GET /v1/audit`` lists them."""
    who = actor.strip()[:_MAX_QUERY]
    number = page_number(page)
    with Session(platform.engine) as session:
        events = list_audit(session, actor=who or None, limit=PAGE_SIZE + 1, offset=(number - 1) * PAGE_SIZE)
    shown = events[:PAGE_SIZE]
    return render(
        request,
        "operator_audit.html",
        {
            "title": "Audit log",
            "nav": "audit",
            "actor": who,
            "events": shown,
            "pager": pager(
                "/operator/audit", {"actor": who}, number, len(shown), None, more=len(events) > PAGE_SIZE
            ),
        },
    )
