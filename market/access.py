"""Who may call the API: tokens (random, stored only as hashes, revocable) and the audit log.

May import :mod:`market` and SQLModel.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, col, select

from market.errors import MarketError, NotFoundError
from market.participants import Participant, get_participant
from market.tables import ApiTokenRow, AuditEventRow

TOKEN_BYTES = 32


@dataclass(frozen=True)
class IssuedToken:
    """A new token: ``secret`` is shown once and never stored."""

    id: int
    participant_id: str
    secret: str
    label: str
    created_at: datetime


def token_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def issue_token(session: Session, *, participant_id: str, now: datetime, label: str = "") -> IssuedToken:
    """A new random token for an active participant."""
    participant = get_participant(session, participant_id)
    if not participant.active:
        raise MarketError("participant_id", f"{participant_id!r} is not active")
    if len(label) > 100:
        raise MarketError("label", "must be at most 100 characters")
    secret = "sbm_" + secrets.token_urlsafe(TOKEN_BYTES)
    row = ApiTokenRow(
        participant_id=participant_id, token_hash=token_hash(secret), label=label, created_at=now
    )
    session.add(row)
    session.flush()
    assert row.id is not None
    return IssuedToken(row.id, participant_id, secret, label, now)


def revoke_token(session: Session, *, token_id: int, now: datetime) -> None:
    """Revoke a token; revoking twice is harmless."""
    row = session.get(ApiTokenRow, token_id)
    if row is None:
        raise NotFoundError("token_id", f"{token_id} is not a token")
    if row.revoked_at is None:
        row.revoked_at = now
        session.add(row)
        session.flush()


def authenticate(session: Session, secret: str) -> Participant | None:
    """The active participant a live token belongs to, or ``None``."""
    row = session.exec(
        select(ApiTokenRow).where(
            ApiTokenRow.token_hash == token_hash(secret), col(ApiTokenRow.revoked_at).is_(None)
        )
    ).first()
    if row is None:
        return None
    participant = get_participant(session, row.participant_id)
    return participant if participant.active else None


def record_audit(
    session: Session,
    *,
    at: datetime,
    actor: str,
    method: str,
    path: str,
    status_code: int,
    client: str = "",
    detail: str = "",
) -> None:
    session.add(
        AuditEventRow(
            at=at,
            actor=actor[:64],
            method=method[:8],
            path=path[:500],
            status_code=status_code,
            client=client[:100],
            detail=detail[:500],
        )
    )
    session.flush()


@dataclass(frozen=True)
class AuditEvent:
    at: datetime
    actor: str
    method: str
    path: str
    status_code: int
    client: str


def list_audit(
    session: Session, *, actor: str | None = None, limit: int = 100, offset: int = 0
) -> list[AuditEvent]:
    """The audit log, newest first."""
    query = select(AuditEventRow)
    if actor is not None:
        query = query.where(AuditEventRow.actor == actor)
    query = query.order_by(col(AuditEventRow.id).desc()).offset(offset).limit(limit)
    return [AuditEvent(r.at, r.actor, r.method, r.path, r.status_code, r.client) for r in session.exec(query)]
