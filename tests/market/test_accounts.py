"""Web accounts on both databases: invitations, passwords, sessions and throttled sign-ins."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import Session, select

from market.accounts import (
    AccountPolicy,
    NewWebSession,
    SignInRefusal,
    accept_invitation,
    change_password,
    end_session,
    end_sessions,
    household_counts,
    invite,
    invited_participant,
    keep_alive,
    live_session,
    open_session,
    sign_in,
)
from market.database import transaction
from market.errors import MarketError, NotFoundError
from market.tables import AccountRow, InvitationRow, ParticipantRow, WebSessionRow
from tests.factories import seed_market

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
POLICY = AccountPolicy()
PASSWORD = "correct horse battery"


@pytest.fixture
def market(engine):
    with transaction(engine) as session:
        seed_market(session, now=NOW)
    return engine


def _invite(engine, who: str = "H1", now: datetime = NOW) -> str:
    with transaction(engine) as session:
        return invite(session, participant_id=who, invited_by="OPS", now=now, policy=POLICY).secret


def _accept(engine, secret: str, password: str = PASSWORD, now: datetime = NOW) -> None:
    with transaction(engine) as session:
        accept_invitation(session, secret=secret, password=password, now=now, policy=POLICY)


def _sign_in(engine, name="H1", password=PASSWORD, client="10.0.0.1", now=NOW):
    with transaction(engine) as session:
        return sign_in(session, name=name, password=password, client=client, now=now, policy=POLICY)


def _live(engine, secret: str, now: datetime):
    """The session as a request finds it, kept alive as the web app keeps it."""
    with Session(engine) as session:
        found = live_session(session, secret=secret, now=now, policy=POLICY)
    if found is not None and found.stale:
        with transaction(engine) as session:
            keep_alive(session, secret=secret, now=now)
    return found


def test_an_invitation_sets_a_password_once_and_only_hashes_are_stored(market):
    secret = _invite(market)
    with Session(market) as session:
        assert invited_participant(session, secret=secret, now=NOW).id == "H1"
    _accept(market, secret)
    with Session(market) as session:
        stored = session.exec(select(InvitationRow)).one()
        account = session.get(AccountRow, "H1")
        assert stored.secret_hash != secret
        assert len(stored.secret_hash) == 64
        assert account is not None
        assert account.password_hash.startswith("$argon2id$")
        assert PASSWORD not in account.password_hash
    with pytest.raises(MarketError, match="already been used") as refused:
        _accept(market, secret, "another good password")
    assert refused.value.field == "invitation"
    opened = _sign_in(market)
    assert isinstance(opened, NewWebSession)
    assert opened.participant.id == "H1"


def test_an_invitation_expires_and_a_new_one_replaces_the_old(market):
    first = _invite(market)
    with pytest.raises(MarketError, match="expired"):
        _accept(market, first, now=NOW + POLICY.invitation_valid)
    second = _invite(market, now=NOW + timedelta(minutes=1))
    with pytest.raises(MarketError, match="expired"):
        _accept(market, first, now=NOW + timedelta(minutes=2))
    _accept(market, second, now=NOW + timedelta(minutes=2))
    with pytest.raises(NotFoundError, match="not valid"):
        _accept(market, "made-up", now=NOW)


@pytest.mark.parametrize(("password", "reason"), [("short", "at least 10"), ("x" * 257, "at most 256")])
def test_a_bad_password_is_refused_and_the_invitation_stays_usable(market, password, reason):
    secret = _invite(market)
    with pytest.raises(MarketError, match=reason) as refused:
        _accept(market, secret, password)
    assert refused.value.field == "password"
    _accept(market, secret)


def test_an_inactive_participant_cannot_be_invited(market):
    with transaction(market) as session:
        row = session.get(ParticipantRow, "H2")
        assert row is not None
        row.active = False
        session.add(row)
    with pytest.raises(MarketError, match="not active"):
        _invite(market, "H2")


def test_sessions_end_when_idle_too_old_signed_out_or_everywhere(market):
    _accept(market, _invite(market))
    first, second = _sign_in(market), _sign_in(market)
    assert isinstance(first, NewWebSession)
    assert isinstance(second, NewWebSession)
    # Kept alive by use, it still ends at the absolute limit.
    moment = NOW
    while moment + POLICY.session_idle < NOW + POLICY.session_absolute:
        moment += POLICY.session_idle - timedelta(minutes=1)
        assert _live(market, first.secret, moment) is not None
    assert _live(market, first.secret, NOW + POLICY.session_absolute + timedelta(seconds=1)) is None
    # Left alone, it ends after the idle time.
    assert _live(market, second.secret, NOW + POLICY.session_idle + timedelta(seconds=1)) is None
    third, fourth = _sign_in(market), _sign_in(market)
    assert isinstance(third, NewWebSession)
    assert isinstance(fourth, NewWebSession)
    with transaction(market) as session:
        end_session(session, secret=third.secret, now=NOW)
    assert _live(market, third.secret, NOW) is None
    assert _live(market, fourth.secret, NOW) is not None
    with transaction(market) as session:
        assert end_sessions(session, participant_id="H1", now=NOW) == 3  # first, second, fourth
    assert _live(market, fourth.secret, NOW) is None


def test_changing_the_password_ends_every_session(market):
    _accept(market, _invite(market))
    opened = _sign_in(market)
    assert isinstance(opened, NewWebSession)
    with transaction(market) as session, pytest.raises(MarketError) as refused:
        change_password(
            session, participant_id="H1", current="wrong one!", new="a new password", now=NOW, policy=POLICY
        )
    assert refused.value.field == "current_password"
    with transaction(market) as session:
        change_password(
            session, participant_id="H1", current=PASSWORD, new="a new password", now=NOW, policy=POLICY
        )
    assert _live(market, opened.secret, NOW) is None
    assert _sign_in(market) == SignInRefusal("wrong")
    assert isinstance(_sign_in(market, password="a new password"), NewWebSession)


def test_failed_sign_ins_are_throttled_then_locked_per_name(market):
    _accept(market, _invite(market))
    moment = NOW
    for _ in range(POLICY.throttle_after):
        assert _sign_in(market, password="wrong", now=moment) == SignInRefusal("wrong")
    # From now on each attempt waits 1 s, 2 s, 4 s... after the last failure.
    assert _sign_in(market, now=moment) == SignInRefusal("throttled", moment + timedelta(seconds=1))
    for failure in range(POLICY.throttle_after, POLICY.lock_after):
        moment += timedelta(seconds=2 ** (failure - POLICY.throttle_after))
        assert _sign_in(market, password="wrong", now=moment) == SignInRefusal("wrong")
    locked = SignInRefusal("locked", moment + POLICY.lock_for)
    assert _sign_in(market, now=moment + timedelta(minutes=5)) == locked
    # Another name is not locked by this one's failures; the right password works once the lock ends.
    assert isinstance(_sign_in(market, name="OPS", password="x"), SignInRefusal)
    assert isinstance(_sign_in(market, now=moment + POLICY.lock_for + timedelta(seconds=1)), NewWebSession)


def test_a_client_failing_on_many_names_is_locked(market):
    policy = AccountPolicy(client_lock_after=5)
    with transaction(market) as session:
        for i in range(5):
            sign_in(session, name=f"guess{i}", password="x", client="10.9.9.9", now=NOW, policy=policy)
        refusal = sign_in(session, name="H2", password="x", client="10.9.9.9", now=NOW, policy=policy)
        assert refusal == SignInRefusal("client_locked", NOW + policy.lock_for)
        other = sign_in(session, name="H2", password="x", client="10.0.0.2", now=NOW, policy=policy)
        assert other == SignInRefusal("wrong")


def test_a_session_of_a_deactivated_participant_is_refused(market):
    with transaction(market) as session:
        opened = open_session(session, participant_id="H1", now=NOW)
    with transaction(market) as session:
        row = session.get(ParticipantRow, "H1")
        assert row is not None
        row.active = False
        session.add(row)
    assert _live(market, opened.secret, NOW) is None
    with Session(market) as session:
        assert len(session.exec(select(WebSessionRow)).all()) == 1


def test_household_counts_count_households_active_and_joined_but_not_the_operator(market):
    for who in ("OPS", "H1", "H2"):
        _accept(market, _invite(market, who))
    with transaction(market) as session:
        row = session.get(ParticipantRow, "H2")
        assert row is not None
        row.active = False
        session.add(row)
    with Session(market) as session:
        counts = household_counts(session)
    assert (counts.households, counts.active, counts.joined) == (3, 2, 2)
