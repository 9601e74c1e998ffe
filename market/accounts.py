"""Web accounts: invitations, passwords, server-side browser sessions and throttled sign-ins.

A participant gets an account by invitation: the operator invites it, which yields a one-time
secret (the link's token) stored only as its SHA-256 hash; the participant sets a password with it,
stored only as its argon2id hash. Signing in opens a session: its secret goes to the browser in a
cookie and is stored here only as its hash, with the synchronizer token its forms must carry.
A session ends when signed out, after ``session_idle`` without a request, ``session_absolute``
after it began, when the participant's password changes, and when :func:`end_sessions` is called
(deactivation). Failed sign-ins are counted per name tried and per client address: after
``throttle_after`` the next attempt must wait (1 s, 2 s, 4 s, ...), after ``lock_after`` the name is
locked for ``lock_for``; a client is locked after ``client_lock_after`` failures, whatever names.

May import :mod:`market`, SQLModel and argon2-cffi.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlmodel import Session, col, select

from market.errors import MarketError, NotFoundError
from market.participants import HOUSEHOLD, Participant, get_participant
from market.tables import AccountRow, InvitationRow, ParticipantRow, SignInFailureRow, WebSessionRow

#: Random bytes in an invitation's and a session's secret (256 bits).
SECRET_BYTES = 32
#: Longest password accepted: argon2 takes any length, but a megabyte is not a password.
MAX_PASSWORD_LENGTH = 256
#: How stale ``last_seen_at`` may be before a request writes it again (one write a minute at most).
_TOUCH_EVERY = timedelta(minutes=1)
#: argon2id with argon2-cffi's defaults (RFC 9106's second recommended option, low memory).
_HASHER = PasswordHasher()
#: A hash to verify against when the name is unknown, so a miss takes as long as a wrong password.
_DUMMY_HASH = _HASHER.hash("not a password of anybody's")


@dataclass(frozen=True)
class AccountPolicy:
    """How long invitations and sessions last, and when failed sign-ins are throttled or locked."""

    invitation_valid: timedelta = timedelta(days=3)
    session_idle: timedelta = timedelta(minutes=30)
    session_absolute: timedelta = timedelta(hours=12)
    min_password_length: int = 10
    #: Failures of one name after which each further attempt waits 1 s, 2 s, 4 s, ... (up to a minute).
    throttle_after: int = 3
    #: Failures of one name within ``lock_for`` that lock it for ``lock_for``.
    lock_after: int = 10
    #: Failures from one client address within ``lock_for`` that lock that client.
    client_lock_after: int = 50
    lock_for: timedelta = timedelta(minutes=15)


@dataclass(frozen=True)
class IssuedInvitation:
    """A new invitation: ``secret`` goes into the link once and is never stored."""

    participant_id: str
    secret: str
    expires_at: datetime


@dataclass(frozen=True)
class NewWebSession:
    """A session just opened: ``secret`` goes into the cookie and is never stored."""

    participant: Participant
    secret: str
    csrf_token: str


@dataclass(frozen=True)
class WebSession:
    """A live session, as a request finds it."""

    participant: Participant
    csrf_token: str
    created_at: datetime
    #: Whether the session's last request is more than a minute old (:func:`keep_alive` it).
    stale: bool = False


@dataclass(frozen=True)
class SignInRefusal:
    """Why a sign-in was refused: ``wrong`` (the name or password), ``throttled`` (wait a moment),
    ``locked`` (the name, for a while) or ``client_locked`` (this address); and when to try again."""

    reason: str
    retry_at: datetime | None = None


def secret_hash(secret: str) -> str:
    """The SHA-256 hex digest under which a secret is stored (a random 256-bit secret needs no salt)."""
    return hashlib.sha256(secret.encode()).hexdigest()


# --- invitations ---------------------------------------------------------------------------------


def invite(
    session: Session, *, participant_id: str, invited_by: str, now: datetime, policy: AccountPolicy
) -> IssuedInvitation:
    """A one-time invitation for an active participant to set its password (a household or the
    operator, new or resetting a forgotten password); it expires after ``policy.invitation_valid``.
    Earlier invitations of the participant not yet used stop working."""
    participant = get_participant(session, participant_id)
    if not participant.active:
        raise MarketError("participant_id", f"{participant_id!r} is not active")
    session.execute(
        sa.update(InvitationRow)
        .where(col(InvitationRow.participant_id) == participant_id, col(InvitationRow.used_at).is_(None))
        .values(expires_at=now)
    )
    secret = secrets.token_urlsafe(SECRET_BYTES)
    expires_at = now + policy.invitation_valid
    session.add(
        InvitationRow(
            participant_id=participant_id,
            secret_hash=secret_hash(secret),
            invited_by=invited_by,
            created_at=now,
            expires_at=expires_at,
        )
    )
    session.flush()
    return IssuedInvitation(participant_id, secret, expires_at)


def invited_participant(session: Session, *, secret: str, now: datetime) -> Participant:
    """The participant a live invitation is for; a used, expired or unknown one is refused
    (field ``invitation``), in words a person can act on."""
    row = _live_invitation(session, secret, now)
    return get_participant(session, row.participant_id)


def accept_invitation(
    session: Session, *, secret: str, password: str, now: datetime, policy: AccountPolicy
) -> Participant:
    """Set the invited participant's password; the invitation is then used up, and any session the
    participant had ends. Refused (nothing stored) when the invitation is not live or the password
    breaks :func:`check_password`."""
    row = _live_invitation(session, secret, now)
    check_password(password, policy)
    used = session.execute(
        sa.update(InvitationRow)
        .where(col(InvitationRow.id) == row.id, col(InvitationRow.used_at).is_(None))
        .values(used_at=now)
    )
    if used.rowcount != 1:  # type: ignore[attr-defined]  # another request used it first
        raise MarketError("invitation", "this invitation link has already been used")
    _store_password(session, row.participant_id, password, now)
    return get_participant(session, row.participant_id)


def _live_invitation(session: Session, secret: str, now: datetime) -> InvitationRow:
    row = session.exec(select(InvitationRow).where(InvitationRow.secret_hash == secret_hash(secret))).first()
    if row is None:
        raise NotFoundError("invitation", "this invitation link is not valid; ask for a new one")
    if row.used_at is not None:
        raise MarketError("invitation", "this invitation link has already been used; sign in instead")
    if row.expires_at <= now:
        raise MarketError("invitation", "this invitation link has expired; ask for a new one")
    participant = get_participant(session, row.participant_id)
    if not participant.active:
        raise MarketError("invitation", "this account is not active")
    return row


# --- passwords -----------------------------------------------------------------------------------


def check_password(password: str, policy: AccountPolicy) -> None:
    """Refuse a password that is too short or too long (field ``password``)."""
    if len(password) < policy.min_password_length:
        raise MarketError("password", f"must be at least {policy.min_password_length} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise MarketError("password", f"must be at most {MAX_PASSWORD_LENGTH} characters")


def change_password(
    session: Session, *, participant_id: str, current: str, new: str, now: datetime, policy: AccountPolicy
) -> None:
    """Change a password, given the current one; every session of the participant ends at once."""
    account = session.get(AccountRow, participant_id)
    if account is None or not _verify(account.password_hash, current):
        raise MarketError("current_password", "is not your current password")
    check_password(new, policy)
    _store_password(session, participant_id, new, now)


def _store_password(session: Session, participant_id: str, password: str, now: datetime) -> None:
    account = session.get(AccountRow, participant_id)
    if account is None:
        account = AccountRow(
            participant_id=participant_id, password_hash="", password_changed_at=now, created_at=now
        )
    account.password_hash = _HASHER.hash(password)
    account.password_changed_at = now
    session.add(account)
    session.flush()
    end_sessions(session, participant_id=participant_id, now=now)


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _HASHER.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def has_account(session: Session, participant_id: str) -> bool:
    """Whether the participant has set a password."""
    return session.get(AccountRow, participant_id) is not None


# --- signing in and sessions ----------------------------------------------------------------------


def sign_in(
    session: Session, *, name: str, password: str, client: str, now: datetime, policy: AccountPolicy
) -> NewWebSession | SignInRefusal:
    """Open a session for the participant ``name`` if the password is right and neither the name
    nor the client is throttled or locked. A failure is recorded in ``session`` (commit it: the
    refusal is an answer, not an error)."""
    name, client = name[:64], client[:100]
    refusal = _throttled(session, name=name, client=client, now=now, policy=policy)
    if refusal is not None:
        return refusal
    account = session.get(AccountRow, name)
    participant_row = session.get(ParticipantRow, name)
    right = _verify(account.password_hash if account else _DUMMY_HASH, password)
    if not right or account is None or participant_row is None or not participant_row.active:
        session.add(SignInFailureRow(name=name, client=client, at=now))
        session.flush()
        return SignInRefusal("wrong")
    session.execute(sa.delete(SignInFailureRow).where(col(SignInFailureRow.name) == name))
    if _HASHER.check_needs_rehash(account.password_hash):
        account.password_hash = _HASHER.hash(password)
        session.add(account)
    return open_session(session, participant_id=name, now=now)


def _throttled(
    session: Session, *, name: str, client: str, now: datetime, policy: AccountPolicy
) -> SignInRefusal | None:
    since = now - policy.lock_for
    by_name = list(
        session.exec(
            select(SignInFailureRow.at)
            .where(SignInFailureRow.name == name, col(SignInFailureRow.at) > since)
            .order_by(col(SignInFailureRow.at))
        )
    )
    if len(by_name) >= policy.lock_after:
        return SignInRefusal("locked", by_name[-1] + policy.lock_for)
    by_client = session.exec(
        select(sa.func.count(), sa.func.max(SignInFailureRow.at)).where(
            SignInFailureRow.client == client, col(SignInFailureRow.at) > since
        )
    ).one()
    if by_client[0] >= policy.client_lock_after:
        return SignInRefusal("client_locked", by_client[1] + policy.lock_for)
    if len(by_name) >= policy.throttle_after:
        wait = timedelta(seconds=min(2 ** (len(by_name) - policy.throttle_after), 60))
        if now < by_name[-1] + wait:
            return SignInRefusal("throttled", by_name[-1] + wait)
    return None


def open_session(session: Session, *, participant_id: str, now: datetime) -> NewWebSession:
    """A new session for an active participant (after signing in, or a password change)."""
    participant = get_participant(session, participant_id)
    secret, csrf_token = secrets.token_urlsafe(SECRET_BYTES), secrets.token_urlsafe(SECRET_BYTES)
    session.add(
        WebSessionRow(
            secret_hash=secret_hash(secret),
            participant_id=participant_id,
            csrf_token=csrf_token,
            created_at=now,
            last_seen_at=now,
        )
    )
    session.flush()
    return NewWebSession(participant, secret, csrf_token)


def live_session(session: Session, *, secret: str, now: datetime, policy: AccountPolicy) -> WebSession | None:
    """The live session a cookie's secret opens, or ``None`` (signed out, idle too long, too old,
    or its participant inactive). Only reads: a request keeps its session alive with
    :func:`keep_alive` when ``stale`` says so."""
    found = session.execute(
        sa.select(WebSessionRow, ParticipantRow)
        .join(ParticipantRow, col(ParticipantRow.id) == col(WebSessionRow.participant_id))
        .where(col(WebSessionRow.secret_hash) == secret_hash(secret), col(WebSessionRow.ended_at).is_(None))
    ).first()
    if found is None:
        return None
    row, participant_row = found
    if (
        not participant_row.active
        or now - row.last_seen_at > policy.session_idle
        or now - row.created_at > policy.session_absolute
    ):
        return None
    participant = Participant(
        participant_row.id,
        participant_row.kind,
        participant_row.display_name,
        participant_row.mpan,
        participant_row.node_id,
        participant_row.active,
    )
    return WebSession(
        participant, row.csrf_token, row.created_at, stale=now - row.last_seen_at >= _TOUCH_EVERY
    )


def keep_alive(session: Session, *, secret: str, now: datetime) -> None:
    """Note a request in a live session, so that it is not idle (at most once a minute is enough:
    :attr:`WebSession.stale`)."""
    session.execute(
        sa.update(WebSessionRow)
        .where(col(WebSessionRow.secret_hash) == secret_hash(secret), col(WebSessionRow.ended_at).is_(None))
        .values(last_seen_at=now)
    )


def end_session(session: Session, *, secret: str, now: datetime) -> None:
    """End one session (signing out); ending it twice is harmless."""
    session.execute(
        sa.update(WebSessionRow)
        .where(col(WebSessionRow.secret_hash) == secret_hash(secret), col(WebSessionRow.ended_at).is_(None))
        .values(ended_at=now)
    )


def end_sessions(session: Session, *, participant_id: str, now: datetime) -> int:
    """End every session of a participant ("sign out everywhere", a password change, deactivation);
    returns how many it ended (expired ones never signed out included)."""
    ended = session.execute(
        sa.update(WebSessionRow)
        .where(col(WebSessionRow.participant_id) == participant_id, col(WebSessionRow.ended_at).is_(None))
        .values(ended_at=now)
    )
    return int(ended.rowcount)  # type: ignore[attr-defined]


def participants_with_accounts(session: Session) -> set[str]:
    """The participants who have set a password."""
    return set(session.exec(select(AccountRow.participant_id)))


@dataclass(frozen=True)
class HouseholdCounts:
    """How many households there are, how many of them are active, and how many have set a password."""

    households: int
    active: int
    joined: int


def household_counts(session: Session) -> HouseholdCounts:
    """The households, active and joined, counted by the database in one query (the operator's
    home needs three numbers: loading 10,000 households to count them took over half a second)."""
    households, active, joined = session.execute(
        sa.select(
            sa.func.count(),
            sa.func.count().filter(col(ParticipantRow.active)),
            sa.func.count(col(AccountRow.participant_id)),
        )
        .select_from(ParticipantRow)
        .outerjoin(AccountRow, col(AccountRow.participant_id) == col(ParticipantRow.id))
        .where(col(ParticipantRow.kind) == HOUSEHOLD)
    ).one()
    return HouseholdCounts(int(households), int(active), int(joined))
