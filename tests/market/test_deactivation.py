"""Deactivating a household: tokens revoked, open orders cancelled, audited, all in one transaction;
on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlmodel import Session, select

from market.access import authenticate, issue_token, list_audit, list_tokens
from market.accounts import open_session, secret_hash
from market.database import transaction
from market.errors import ConflictError, NotFoundError
from market.households import deactivate_household
from market.intervals import period_at
from market.network import publish_network
from market.orders import get_order, order_history, place_order
from market.participants import get_participant
from market.rules import MarketRules
from market.tables import AuditEventRow, WebSessionRow
from optimiser import Network
from tests.factories import count_rows, node, seed_market

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
SOON = period_at(NOW + timedelta(minutes=31))  # 12:30, its gate at 12:25
LATER = period_at(NOW + timedelta(hours=2))
AT = NOW + timedelta(minutes=27)  # after SOON's gate, before LATER's


def test_deactivation_revokes_cancels_and_audits(engine):
    rules = MarketRules()
    with transaction(engine) as session:
        seed_market(session, now=NOW)
        secret = issue_token(session, participant_id="H1", now=NOW).secret
        issue_token(session, participant_id="H1", now=NOW, label="phone")
        browser = open_session(session, participant_id="H1", now=NOW).secret
        orders = {
            period.key: place_order(
                session,
                rules=rules,
                participant_id="H1",
                period=period,
                side="buy",
                quantity_kwh=Decimal(1),
                price_p_per_kwh=Decimal(20),
                now=NOW,
            )[0].id
            for period in (SOON, LATER)
        }
    with transaction(engine) as session:
        done = deactivate_household(
            session, participant_id="H1", rules=rules, now=AT, actor="cli", reason="moved away"
        )
    assert (done.tokens_revoked, done.sessions_ended, done.orders_cancelled, done.orders_kept) == (
        2,
        1,
        (orders[LATER.key],),
        (orders[SOON.key],),
    )
    with Session(engine) as session:
        assert not get_participant(session, "H1").active
        assert authenticate(session, secret) is None
        browser_row = select(WebSessionRow).where(WebSessionRow.secret_hash == secret_hash(browser))
        assert session.exec(browser_row).one().ended_at is not None
        assert list_tokens(session, participant_id="H1") == []
        assert len(list_tokens(session, participant_id="H1", include_revoked=True)) == 2
        assert get_order(session, orders[LATER.key]).status == "cancelled"
        assert order_history(session, orders[LATER.key])[-1].actor == "cli"
        assert get_order(session, orders[SOON.key]).status == "open"  # in its book, past the gate
        [event] = list_audit(session, actor="cli")
        assert event.path == "participant deactivate H1"
        detail = session.exec(select(AuditEventRow.detail)).one()
        assert detail == (
            "deactivated H1: 2 token(s) revoked, 1 web session(s) ended, 1 order(s) cancelled; "
            "reason: moved away"
        )
    with pytest.raises(ConflictError, match="already inactive"), transaction(engine) as session:
        deactivate_household(session, participant_id="H1", rules=rules, now=AT, actor="cli")
    with pytest.raises(ConflictError, match="not a household"), transaction(engine) as session:
        deactivate_household(session, participant_id="OPS", rules=rules, now=AT, actor="cli")
    with pytest.raises(NotFoundError), transaction(engine) as session:
        deactivate_household(session, participant_id="H9", rules=rules, now=AT, actor="cli")
    assert count_rows(engine, AuditEventRow) == 1


def test_a_deactivated_households_node_may_leave_the_network(engine):
    with transaction(engine) as session:
        seed_market(session, now=NOW)  # H3 alone on F2
        deactivate_household(session, participant_id="H3", rules=MarketRules(), now=NOW, actor="cli")
        without_f2 = Network("GSP", (node("P1", "GSP", 500, 500), node("F1", "P1", 100, 100)))
        publish_network(session, network=without_f2, effective_from_utc=NOW + timedelta(days=1), now=NOW)
