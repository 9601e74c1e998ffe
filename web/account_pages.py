"""Signing in and out, accepting an invitation, and the account page (change password, sign out
everywhere); ``/`` sends each visitor to the right place.

May import :mod:`api.deps`, :mod:`market` and :mod:`web`'s own modules.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from api.deps import PlatformDep
from market.accounts import (
    NewWebSession,
    SignInRefusal,
    WebSession,
    accept_invitation,
    change_password,
    end_session,
    end_sessions,
    invited_participant,
    open_session,
    sign_in,
)
from market.database import transaction
from market.errors import MarketError, NotFoundError
from market.participants import HOUSEHOLD
from web.format import local_time
from web.rendering import render
from web.sessions import (
    SESSION_COOKIE,
    SessionOrNoneDep,
    SignedInDep,
    check_csrf,
    check_form_token,
    form_token,
    keep_form_token,
    refuse_nul_in_forms,
    safe_next,
    secure_cookies,
    set_session_cookie,
)

router = APIRouter(include_in_schema=False, dependencies=[Depends(refuse_nul_in_forms)])
FormText = Annotated[str, Form()]


@router.get("/")
def home(found: SessionOrNoneDep) -> Response:
    """The entry: the sign-in page for a visitor, a household's Today or the operator's home."""
    if found is None:
        return RedirectResponse("/sign-in", status_code=303)
    return RedirectResponse("/today" if found.participant.kind == HOUSEHOLD else "/operator", status_code=303)


def _sign_in_page(
    request: Request, *, next_path: str, name: str = "", error: str = "", status: int = 200, retry_s: int = 0
) -> HTMLResponse:
    token = form_token(request)
    headers = {"Retry-After": str(retry_s)} if retry_s else None
    response = render(
        request,
        "sign_in.html",
        {"title": "Sign in", "form_token": token, "next": next_path, "name": name, "error": error},
        status=status,
        headers=headers,
    )
    keep_form_token(request, response, token)
    return response


@router.get("/sign-in")
def sign_in_page(
    request: Request, found: SessionOrNoneDep, next_path: Annotated[str, Query(alias="next")] = "/"
) -> Response:
    if found is not None:
        return RedirectResponse(safe_next(next_path), status_code=303)
    return _sign_in_page(request, next_path=safe_next(next_path))


@router.post("/sign-in")
def sign_in_form(
    request: Request,
    platform: PlatformDep,
    name: FormText = "",
    password: FormText = "",
    token: Annotated[str, Form(alias="form_token")] = "",
    next_path: Annotated[str, Form(alias="next")] = "/",
) -> Response:
    """Open a session, or say in plain words why not (the name or password, or wait)."""
    check_form_token(request, token)
    next_path = safe_next(next_path)
    name = name.strip()
    if not name or not password:
        return _sign_in_page(
            request, next_path=next_path, name=name, error="Enter your name and password.", status=422
        )
    now = platform.clock.now()
    client = request.client.host if request.client else ""
    with transaction(platform.engine) as session:
        earlier = request.cookies.get(SESSION_COOKIE)
        if earlier:
            end_session(session, secret=earlier, now=now)
        outcome = sign_in(
            session,
            name=name,
            password=password,
            client=client,
            now=now,
            policy=platform.settings.account_policy(),
        )
    if isinstance(outcome, SignInRefusal):
        message, status = _refusal_words(outcome, now)
        retry_s = (
            0 if outcome.retry_at is None else max(1, math.ceil((outcome.retry_at - now).total_seconds()))
        )
        return _sign_in_page(
            request, next_path=next_path, name=name, error=message, status=status, retry_s=retry_s
        )
    return _signed_in(request, outcome, next_path)


def _refusal_words(refusal: SignInRefusal, now: datetime) -> tuple[str, int]:
    if refusal.reason == "wrong" or refusal.retry_at is None:
        return "That name and password do not match an account. Check them and try again.", 401
    wait_s = max(1, math.ceil((refusal.retry_at - now).total_seconds()))
    if refusal.reason == "throttled":
        return f"Too many failed sign-ins for this name: wait {wait_s} seconds, then try again.", 429
    when = local_time(refusal.retry_at)
    if refusal.reason == "locked":
        return f"This account is locked after too many failed sign-ins. Try again after {when}.", 429
    return f"Too many failed sign-ins from your network. Try again after {when}.", 429


def _signed_in(request: Request, opened: NewWebSession, next_path: str) -> Response:
    response = RedirectResponse(next_path, status_code=303)
    set_session_cookie(request, response, opened.secret)
    return response


@router.post("/sign-out")
def sign_out(
    request: Request, platform: PlatformDep, found: SessionOrNoneDep, csrf_token: FormText = ""
) -> Response:
    """End this browser's session."""
    if found is not None:
        check_csrf(found, csrf_token)
        with transaction(platform.engine) as session:
            end_session(session, secret=request.cookies.get(SESSION_COOKIE, ""), now=platform.clock.now())
    response = RedirectResponse("/sign-in", status_code=303)
    response.delete_cookie(SESSION_COOKIE, httponly=True, samesite="lax", secure=secure_cookies(request))
    return response


@router.post("/sign-out-everywhere")
def sign_out_everywhere(
    request: Request, platform: PlatformDep, found: SignedInDep, csrf_token: FormText = ""
) -> Response:
    """End every session of the participant, on every device."""
    check_csrf(found, csrf_token)
    with transaction(platform.engine) as session:
        end_sessions(session, participant_id=found.participant.id, now=platform.clock.now())
    response = RedirectResponse("/sign-in", status_code=303)
    response.delete_cookie(SESSION_COOKIE, httponly=True, samesite="lax", secure=secure_cookies(request))
    return response


@router.get("/account")
def account_page(request: Request, found: SignedInDep) -> Response:
    return render(request, "account.html", {"title": "Account", "nav": "account", "errors": {}})


@router.post("/account/password")
def change_password_form(
    request: Request,
    platform: PlatformDep,
    found: SignedInDep,
    csrf_token: FormText = "",
    current_password: FormText = "",
    new_password: FormText = "",
    confirm_password: FormText = "",
) -> Response:
    """Change the password: every other session ends, this browser gets a new one."""
    check_csrf(found, csrf_token)
    errors: dict[str, str] = {}
    if new_password != confirm_password:
        errors["confirm_password"] = "The two new passwords are not the same."
    else:
        now = platform.clock.now()
        try:
            with transaction(platform.engine) as session:
                change_password(
                    session,
                    participant_id=found.participant.id,
                    current=current_password,
                    new=new_password,
                    now=now,
                    policy=platform.settings.account_policy(),
                )
                opened = open_session(session, participant_id=found.participant.id, now=now)
        except MarketError as error:
            errors["new_password" if error.field == "password" else error.field] = _password_words(error)
        else:
            response = render(
                request,
                "account.html",
                {
                    "title": "Account",
                    "nav": "account",
                    "errors": {},
                    "me": WebSession(opened.participant, opened.csrf_token, now),
                    "notice": "Your password has been changed, and you have been signed out everywhere else.",
                },
            )
            set_session_cookie(request, response, opened.secret)
            return response
    return render(
        request, "account.html", {"title": "Account", "nav": "account", "errors": errors}, status=422
    )


def _password_words(error: MarketError) -> str:
    if error.field == "current_password":
        return "That is not your current password."
    if error.field == "password":
        return f"The new password {error.reason}."
    return error.reason


@router.get("/invitation")
def invitation_page(
    request: Request, platform: PlatformDep, token: Annotated[str, Query(max_length=100)] = ""
) -> Response:
    """The page an invitation link opens: set a password, or why the link no longer works."""
    try:
        with transaction(platform.engine) as session:
            participant = invited_participant(session, secret=token, now=platform.clock.now())
    except MarketError as error:
        status = 404 if isinstance(error, NotFoundError) else 410
        return render(
            request, "invitation.html", {"title": "Invitation", "dead": error.reason}, status=status
        )
    pre = form_token(request)
    response = render(
        request,
        "invitation.html",
        {
            "title": "Set your password",
            "invited": participant,
            "token": token,
            "form_token": pre,
            "errors": {},
        },
    )
    keep_form_token(request, response, pre)
    return response


@router.post("/invitation")
def accept_invitation_form(
    request: Request,
    platform: PlatformDep,
    token: FormText = "",
    password: FormText = "",
    confirm_password: FormText = "",
    pre: Annotated[str, Form(alias="form_token")] = "",
) -> Response:
    """Set the password an invitation asks for, then sign in."""
    check_form_token(request, pre)
    now = platform.clock.now()
    errors: dict[str, str] = {}
    try:
        with transaction(platform.engine) as session:
            participant = invited_participant(session, secret=token, now=now)
            if password != confirm_password:
                errors["confirm_password"] = "The two passwords are not the same."
            else:
                accept_invitation(
                    session,
                    secret=token,
                    password=password,
                    now=now,
                    policy=platform.settings.account_policy(),
                )
                opened = open_session(session, participant_id=participant.id, now=now)
    except MarketError as error:
        if error.field == "invitation":
            status = 404 if isinstance(error, NotFoundError) else 410
            return render(
                request, "invitation.html", {"title": "Invitation", "dead": error.reason}, status=status
            )
        errors[error.field] = _password_words(error)
    if errors:
        return render(
            request,
            "invitation.html",
            {
                "title": "Set your password",
                "invited": participant,
                "token": token,
                "form_token": pre,
                "errors": errors,
            },
            status=422,
        )
    return _signed_in(request, opened, "/")
