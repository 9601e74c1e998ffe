"""Who may call the API: tokens (random, stored only as hashes, revocable) and the audit log.

May import :mod:`market` and SQLModel.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from market.database import chunks
from market.errors import MarketError, NotFoundError
from market.participants import Participant, get_participant
from market.tables import ApiTokenRow, AuditEventRow, ParticipantRow

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


def issue_tokens(
    session: Session, participant_ids: Sequence[str], *, now: datetime, label: str = ""
) -> list[IssuedToken]:
    """A new token for each of many active participants (a district's households joining), all or
    none, in the order given; errors name the item (``participant_ids[4]``)."""
    if len(label) > 100:
        raise MarketError("label", "must be at most 100 characters")
    active: dict[str, bool] = {}
    for chunk in chunks(participant_ids):
        active.update(
            session.exec(
                select(ParticipantRow.id, ParticipantRow.active).where(col(ParticipantRow.id).in_(chunk))
            ).all()
        )
    for index, participant_id in enumerate(participant_ids):
        if participant_id not in active:
            raise NotFoundError(f"participant_ids[{index}]", f"{participant_id!r} is not a participant")
        if not active[participant_id]:
            raise MarketError(f"participant_ids[{index}]", f"{participant_id!r} is not active")
    if not participant_ids:
        return []
    new_secrets = ["sbm_" + secrets.token_urlsafe(TOKEN_BYTES) for _ in participant_ids]
    table = ApiTokenRow.__table__  # type: ignore[attr-defined]
    ids = (
        session.execute(
            sa.insert(table).returning(table.c.id, sort_by_parameter_order=True),
            [
                {
                    "participant_id": participant_id,
                    "token_hash": token_hash(secret),
                    "label": label,
                    "created_at": now,
                }
                for participant_id, secret in zip(participant_ids, new_secrets, strict=True)
            ],
        )
        .scalars()
        .all()
    )
    return [
        IssuedToken(token_id, participant_id, secret, label, now)
        for token_id, participant_id, secret in zip(ids, participant_ids, new_secrets, strict=True)
    ]


def revoke_token(session: Session, *, token_id: int, now: datetime) -> None:
    """Revoke a token; revoking twice is harmless."""
    row = session.get(ApiTokenRow, token_id)
    if row is None:
        raise NotFoundError("token_id", f"{token_id} is not a token")
    if row.revoked_at is None:
        row.revoked_at = now
        session.add(row)
        session.flush()


_PARTICIPANTS = ParticipantRow.__table__.c  # type: ignore[attr-defined]
_TOKENS = ApiTokenRow.__table__  # type: ignore[attr-defined]
#: Built once: the lookup runs for every request whose token a worker has not checked lately.
_AUTHENTICATE = (
    sa.select(
        _PARTICIPANTS.id,
        _PARTICIPANTS.kind,
        _PARTICIPANTS.display_name,
        _PARTICIPANTS.mpan,
        _PARTICIPANTS.node_id,
        _PARTICIPANTS.active,
    )
    .join(_TOKENS, _TOKENS.c.participant_id == _PARTICIPANTS.id)
    .where(
        _TOKENS.c.token_hash == sa.bindparam("token_hash"),
        _TOKENS.c.revoked_at.is_(None),
        _PARTICIPANTS.active,
    )
)


def authenticate(session: Session, secret: str) -> Participant | None:
    """The active participant a live token belongs to, or ``None`` (one query)."""
    row = session.connection().execute(_AUTHENTICATE, {"token_hash": token_hash(secret)}).first()
    return None if row is None else Participant(*row)


_INSERT_AUDIT = AuditEventRow.__table__.insert()  # type: ignore[attr-defined]


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
    session.connection().execute(
        _INSERT_AUDIT,
        _audit_row(
            at=at,
            actor=actor,
            method=method,
            path=path,
            status_code=status_code,
            client=client,
            detail=detail,
        ),
    )


def record_audits(session: Session, entries: Sequence[Mapping[str, Any]]) -> None:
    """Several :func:`record_audit` entries (its keyword arguments each) in one statement."""
    if entries:
        session.connection().execute(_INSERT_AUDIT, [_audit_row(**entry) for entry in entries])


def _audit_row(
    *, at: datetime, actor: str, method: str, path: str, status_code: int, client: str = "", detail: str = ""
) -> dict[str, Any]:
    return {
        "at": at,
        "actor": actor[:64],
        "method": method[:8],
        "path": path[:500],
        "status_code": status_code,
        "client": client[:100],
        "detail": detail[:500],
    }


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


@dataclass(frozen=True)
class TokenInfo:
    """A stored token, without its secret (only the hash is kept)."""

    id: int
    participant_id: str
    label: str
    created_at: datetime
    revoked_at: datetime | None


def list_tokens(
    session: Session, *, participant_id: str | None = None, include_revoked: bool = False
) -> list[TokenInfo]:
    """Tokens by id, a participant's or everyone's; live ones only unless ``include_revoked``."""
    query = select(ApiTokenRow).order_by(col(ApiTokenRow.id))
    if participant_id is not None:
        query = query.where(ApiTokenRow.participant_id == participant_id)
    if not include_revoked:
        query = query.where(col(ApiTokenRow.revoked_at).is_(None))
    return [
        TokenInfo(row.id, row.participant_id, row.label, row.created_at, row.revoked_at)
        for row in session.exec(query)
        if row.id is not None
    ]
