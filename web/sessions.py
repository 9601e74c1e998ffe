"""Who is asking, for the pages: the session cookie, its checks, and CSRF on every form.

A page's route takes :data:`SignedInDep`, :data:`HouseholdPageDep` or :data:`OperatorPageDep`.
Without a live session a page answers 303 to the sign-in page; a household on the operator's
pages (or the operator on a household's) is refused (403). Every form posted with a session must
carry the session's synchronizer token (:func:`check_csrf`); the forms used before there is a
session (signing in, accepting an invitation) carry a random token that must equal the one in a
short-lived cookie set with the form (a double-submit token, as no session exists to hold one).

May import :mod:`api.deps`, :mod:`api.settings` and :mod:`market`.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, Request
from fastapi.responses import Response
from sqlalchemy.engine import Engine
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from api.deps import PlatformDep
from market.accounts import AccountPolicy, WebSession, keep_alive, live_session
from market.database import transaction
from market.participants import HOUSEHOLD, OPERATOR

#: The session cookie: its value is the session's secret (the database keeps only its hash).
SESSION_COOKIE = "smartbrum_session"
#: The token the forms used before signing in must repeat.
FORM_COOKIE = "smartbrum_form"
_FORM_COOKIE_SECONDS = 3600


class SignInNeededError(Exception):
    """No live session: the page answers with the way to the sign-in page."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


class PageRefusedError(Exception):
    """A page or form refused: an HTML page with ``status`` and ``message`` in plain words."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def secure_cookies(request: Request) -> bool:
    """Whether cookies are marked Secure: when the public URL is https."""
    platform = request.app.state.platform
    return bool(platform.settings.public_url.startswith("https://"))


async def page_session(request: Request, platform: PlatformDep) -> WebSession | None:
    """The request's live session, or None; it stays alive by being used."""
    secret = request.cookies.get(SESSION_COOKIE)
    if not secret:
        return None
    found = await run_in_threadpool(
        _live, platform.engine, secret, platform.clock.now(), platform.settings.account_policy()
    )
    request.state.web_session = found
    if found is not None:
        # For the audit log, as a token's participant is.
        request.state.participant_id = found.participant.id
        request.state.participant_kind = found.participant.kind
    return found


def _live(engine: Engine, secret: str, now: datetime, policy: AccountPolicy) -> WebSession | None:
    # A read; the write that keeps the session alive only once a minute (on SQLite every write
    # transaction takes the database's write lock).
    with Session(engine) as session:
        found = live_session(session, secret=secret, now=now, policy=policy)
    if found is not None and found.stale:
        with transaction(engine) as session:
            keep_alive(session, secret=secret, now=now)
    return found


async def signed_in(
    request: Request, found: Annotated[WebSession | None, Depends(page_session)]
) -> WebSession:
    """The live session; without one, the way to the sign-in page (then back here)."""
    if found is None:
        raise SignInNeededError(request.url.path if request.method == "GET" else "/")
    return found


async def household_page(found: Annotated[WebSession, Depends(signed_in)]) -> WebSession:
    if found.participant.kind != HOUSEHOLD:
        raise PageRefusedError(
            403, "This page is for households. The energy company's pages start at Overview."
        )
    return found


async def operator_page(found: Annotated[WebSession, Depends(signed_in)]) -> WebSession:
    if found.participant.kind != OPERATOR:
        raise PageRefusedError(403, "This page is for the energy company.")
    return found


async def refuse_nul_in_forms(request: Request) -> None:
    """Refuse (422) a form with a NUL character in any field: no field of the platform may hold
    one (as :func:`api.deps.refuse_nul_characters` does for the API's JSON)."""
    if request.method == "POST":
        form = await request.form()
        if any(isinstance(value, str) and "\x00" in value for _, value in form.multi_items()):
            raise PageRefusedError(422, "A field of this form holds a character that is not allowed.")


SessionOrNoneDep = Annotated[WebSession | None, Depends(page_session)]
SignedInDep = Annotated[WebSession, Depends(signed_in)]
HouseholdPageDep = Annotated[WebSession, Depends(household_page)]
OperatorPageDep = Annotated[WebSession, Depends(operator_page)]

_FORGED = "This form did not come from this site, or it has expired. Go back, reload the page and try again."


def check_csrf(found: WebSession, token: str) -> None:
    """Refuse (403) a form without the session's synchronizer token."""
    if not token or not secrets.compare_digest(token.encode(), found.csrf_token.encode()):
        raise PageRefusedError(403, _FORGED)


def form_token(request: Request) -> str:
    """The token a form used before signing in carries: the cookie's, or a new one
    (:func:`keep_form_token` sets it on the response)."""
    return request.cookies.get(FORM_COOKIE) or secrets.token_urlsafe(32)


def keep_form_token(request: Request, response: Response, token: str) -> None:
    response.set_cookie(
        FORM_COOKIE,
        token,
        max_age=_FORM_COOKIE_SECONDS,
        httponly=True,
        samesite="strict",
        secure=secure_cookies(request),
    )


def check_form_token(request: Request, token: str) -> None:
    """Refuse (403) a form used before signing in whose token is not the cookie's."""
    expected = request.cookies.get(FORM_COOKIE, "")
    if not token or not expected or not secrets.compare_digest(token.encode(), expected.encode()):
        raise PageRefusedError(403, _FORGED)


def set_session_cookie(request: Request, response: Response, secret: str) -> None:
    """The session cookie: HttpOnly, SameSite=Lax, Secure behind https; it lasts as long as the
    browser (the server ends the session)."""
    response.set_cookie(
        SESSION_COOKIE, secret, httponly=True, samesite="lax", secure=secure_cookies(request), path="/"
    )


def sign_in_path(next_path: str) -> str:
    """The sign-in page, coming back to ``next_path`` (a local path only) afterwards."""
    return "/sign-in" if next_path in ("", "/") else f"/sign-in?next={quote(next_path, safe='/')}"


def safe_next(next_path: str) -> str:
    """Where to go after signing in: a path on this site, never another site."""
    if next_path.startswith("/") and not next_path.startswith("//") and "\\" not in next_path:
        return next_path
    return "/"
