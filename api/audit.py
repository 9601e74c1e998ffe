"""The audit log of every state-changing request: who, what, when, from where, and the status.

Every POST, PUT, PATCH and DELETE, allowed or not, is written, by the route inside its change's
transaction (:func:`audit_in`) or else by :class:`AuditMiddleware` once it is answered.
"""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa
from fastapi import Request
from sqlalchemy.engine import Engine
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.deps import Platform
from market.access import record_audit
from market.database import transaction
from market.participants import OPERATOR

STATE_CHANGING = {"POST", "PUT", "PATCH", "DELETE"}
log = logging.getLogger("smartbrum.api")


class AuditMiddleware:
    """Writes every state-changing request to the audit log once it is answered (a plain ASGI
    middleware: no extra task or threadpool hop per request).

    A route that writes its own audit row inside its change's transaction (:func:`audit_in`) is
    skipped, so the change and its audit row commit together; for the rest the row is written in
    the threadpool (a database write must not block the event loop), and a failure to write it is
    logged, not turned into an error for a change already committed. A state-changing request by
    the operator also forgets the worker's checked tokens, so a revocation there takes effect at
    once.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in STATE_CHANGING:
            await self.app(scope, receive, send)
            return
        status: list[int] = []

        async def send_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            state = scope.setdefault("state", {})
            platform: Platform = scope["app"].state.platform
            if state.get("participant_kind") == OPERATOR:
                platform.tokens.clear()
            if not state.get("audited"):
                client = scope.get("client")
                entry = {
                    "at": platform.clock.now(),
                    "actor": state.get("participant_id") or "anonymous",
                    "method": scope["method"],
                    "path": scope["path"],
                    "status_code": status[0] if status else 500,
                    "client": client[0] if client else "",
                }
                try:
                    await run_in_threadpool(_audit, platform.engine, entry)
                except Exception:
                    log.exception("could not write the audit entry %s", entry)


#: Where a session keeps the state of the request whose audit row it holds, until it commits.
_AUDITED_REQUEST = "smartbrum_audited_request"


def audit_in(session: Session, request: Request, platform: Platform, status_code: int) -> None:
    """Write the request's audit row in ``session``'s transaction, with the change it audits (the
    middleware then leaves it). Only for a route that knows its status before it commits."""
    record_audit(session, **audit_entry(request, platform, status_code))
    # Marked once committed (by the one listener below, not one added per request, which cost a
    # tenth of a placement's CPU): a transaction that fails after this leaves the row to the
    # middleware.
    session.info[_AUDITED_REQUEST] = request.state


def audit_entry(request: Request, platform: Platform, status_code: int) -> dict[str, Any]:
    """The audit row of ``request`` answered ``status_code`` (:func:`record_audit`'s arguments)."""
    scope = request.scope
    client = scope.get("client")
    return {
        "at": platform.clock.now(),
        "actor": getattr(request.state, "participant_id", None) or "anonymous",
        "method": scope["method"],
        "path": scope["path"],
        "status_code": status_code,
        "client": client[0] if client else "",
    }


@sa.event.listens_for(Session, "after_commit")
def _mark_audited(session: Session) -> None:
    state = session.info.pop(_AUDITED_REQUEST, None)
    if state is not None:
        state.audited = True


def _audit(engine: Engine, entry: dict[str, Any]) -> None:
    with transaction(engine) as session:
        record_audit(session, **entry)
