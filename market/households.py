"""A household leaving the market: deactivation, in one transaction.

May import :mod:`market` and SQLModel.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Session, col, select

from market.access import record_audit
from market.accounts import end_sessions
from market.errors import ConflictError, MarketError, NotFoundError
from market.orders import OPEN, cancel_order
from market.participants import HOUSEHOLD
from market.rules import MarketRules
from market.tables import ApiTokenRow, OrderRow, ParticipantRow


@dataclass(frozen=True)
class Deactivation:
    """What deactivating a household did."""

    participant_id: str
    tokens_revoked: int
    sessions_ended: int
    orders_cancelled: tuple[str, ...]
    orders_kept: tuple[str, ...]


def deactivate_household(
    session: Session,
    *,
    participant_id: str,
    rules: MarketRules,
    now: datetime,
    actor: str,
    reason: str = "",
    method: str = "CLI",
    path: str = "",
    client: str = "",
) -> Deactivation:
    """Deactivate a household: it can no longer sign in or trade.

    In the caller's one transaction: the household is marked inactive, every live token of it is
    revoked and every web session of it ended, every open order whose gate has not closed is
    cancelled (its history names ``actor``), and the audit log records it all. Orders past their
    gate stay in their book: they may already be cleared and must be settled. Its meters and its
    past stay, for settlement.

    The audit row says what was done and why, as the command line's (``method`` ``CLI``) unless
    a request passes its own ``method``, ``path`` and ``client`` (a web form, which then leaves
    its request unaudited a second time).

    Raises
    ------
    NotFoundError
        No such participant.
    ConflictError
        It is the operator, or already inactive.
    """
    if len(reason) > 300:
        raise MarketError("reason", "must be at most 300 characters")
    row = session.get(ParticipantRow, participant_id, with_for_update=True)
    if row is None:
        raise NotFoundError("participant_id", f"{participant_id!r} is not a participant")
    if row.kind != HOUSEHOLD:
        raise ConflictError("participant_id", f"{participant_id!r} is not a household")
    if not row.active:
        raise ConflictError("participant_id", f"{participant_id!r} is already inactive")
    tokens = ApiTokenRow.__table__  # type: ignore[attr-defined]
    live = (tokens.c.participant_id == participant_id) & tokens.c.revoked_at.is_(None)
    revoked = session.execute(sa.select(sa.func.count()).select_from(tokens).where(live)).scalar_one()
    session.execute(sa.update(tokens).where(live).values(revoked_at=now))
    sessions_ended = end_sessions(session, participant_id=participant_id, now=now)
    cancelled, kept = [], []
    open_ids = session.exec(
        select(OrderRow.id)
        .where(OrderRow.participant_id == participant_id, OrderRow.status == OPEN)
        .where(col(OrderRow.interval_start_utc) > now)
        .order_by(col(OrderRow.interval_start_utc), col(OrderRow.id))
    ).all()
    for order_id in open_ids:
        try:
            cancel_order(
                session, rules=rules, order_id=order_id, participant_id=participant_id, now=now, actor=actor
            )
        except ConflictError:  # its gate has closed: the book has it
            kept.append(order_id)
        else:
            cancelled.append(order_id)
    row.active = False  # after the cancellations, which only an active household's orders allow
    session.add(row)
    detail = (
        f"deactivated {participant_id}: {revoked} token(s) revoked, {sessions_ended} web session(s) ended, "
        f"{len(cancelled)} order(s) cancelled"
    )
    if reason:
        detail += f"; reason: {reason}"
    record_audit(
        session,
        at=now,
        actor=actor,
        method=method,
        path=path or f"participant deactivate {participant_id}",
        status_code=200,
        client=client,
        detail=detail,
    )
    session.flush()
    return Deactivation(participant_id, revoked, sessions_ended, tuple(cancelled), tuple(kept))
