"""Registering many households, meters and tokens at once: all or none, each checked as one is,
errors naming the item; on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import Session

from market.access import authenticate, issue_tokens
from market.database import transaction
from market.errors import MarketError, NotFoundError
from market.network import publish_network
from market.participants import (
    HOUSEHOLD,
    NewHousehold,
    NewMeter,
    list_meters,
    list_participants,
    register_household,
    register_households,
    register_meter,
    register_meters,
)
from market.tables import ApiTokenRow, MeterRow, ParticipantRow
from tests.factories import count_rows, mpan, seed_market, street_network

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def homes(first: int, count: int, node: str = "F1") -> list[NewHousehold]:
    return [NewHousehold(f"B{i}", f"Home B{i}", mpan(1000 + i), node) for i in range(first, first + count)]


def meters_for(households: list[NewHousehold], host: str = "10.0.0.9") -> list[NewMeter]:
    return [
        NewMeter(f"MB{i}", household.participant_id, host, 502, i % 247 + 1, "tcp", "sdm630")
        for i, household in enumerate(households)
    ]


@pytest.fixture
def street(engine):
    with transaction(engine) as session:
        seed_market(session, now=NOW)  # H1, H2, H3 with MPANs 1 to 3
    return engine


def test_a_district_registers_in_one_call(street):
    households = homes(0, 1200)  # more than one lookup chunk
    with transaction(street) as session:
        assert register_households(session, households, now=NOW) == 1200
        assert register_meters(session, meters_for(households[:247]), now=NOW) == 247
        issued = issue_tokens(session, [h.participant_id for h in households[:5]], now=NOW, label="agent")
    with Session(street) as session:
        registered = {p.id: p for p in list_participants(session, kind=HOUSEHOLD)}
        assert {h.participant_id for h in households} <= set(registered)
        assert registered["B7"].mpan == mpan(1007)
        assert registered["B7"].node_id == "F1"
        assert registered["B7"].active
        assert {m.participant_id for m in list_meters(session)} == {
            h.participant_id for h in households[:247]
        }
        assert [token.participant_id for token in issued] == ["B0", "B1", "B2", "B3", "B4"]
        assert len({token.id for token in issued}) == 5
        for token in issued:
            participant = authenticate(session, token.secret)
            assert participant is not None
            assert participant.id == token.participant_id


@pytest.mark.parametrize(
    ("replaced", "field", "reason"),
    [
        (
            (2, NewHousehold("B2", "Home", "1400000000000", "F1")),
            "households[2].mpan",
            "check digit",
        ),
        (
            (3, NewHousehold("B 3", "Home", mpan(5003), "F1")),
            "households[3].participant_id",
            "letters",
        ),
        (
            (4, NewHousehold("B4", "  ", mpan(5004), "F1")),
            "households[4].display_name",
            "1 to 200",
        ),
        (
            (5, NewHousehold("B1", "Again", mpan(5005), "F1")),
            "households[5].participant_id",
            "repeats households[1]",
        ),
        (
            (6, NewHousehold("B6", "Same MPAN", mpan(1000), "F1")),
            "households[6].mpan",
            "repeats households[0]",
        ),
        (
            (7, NewHousehold("H2", "Stored", mpan(5007), "F1")),
            "households[7].participant_id",
            "already registered",
        ),
        (
            (8, NewHousehold("B8", "Stored MPAN", mpan(3), "F1")),
            "households[8].mpan",
            "another participant",
        ),
    ],
)
def test_a_bad_household_names_its_item_and_adds_nothing(street, replaced, field, reason):
    households = homes(0, 10)
    index, household = replaced
    households[index] = household
    before = count_rows(street, ParticipantRow)
    with pytest.raises(MarketError, match=re.escape(reason)) as raised, transaction(street) as session:
        register_households(session, households, now=NOW)
    assert raised.value.field == field
    assert count_rows(street, ParticipantRow) == before


@pytest.mark.parametrize(
    ("replaced", "field", "reason"),
    [
        (
            (1, NewMeter("MX", "B1", "10.0.0.9", 502, 248, "tcp", "sdm630")),
            "meters[1].unit_id",
            "1 to 247",
        ),
        (
            (2, NewMeter("MX", "B2", "10.0.0.9", 502, 77, "udp", "sdm630")),
            "meters[2].transport",
            "one of",
        ),
        (
            (3, NewMeter("MX", "NOPE", "10.0.0.9", 502, 77, "tcp", "sdm630")),
            "meters[3].participant_id",
            "not a participant",
        ),
        (
            (3, NewMeter("MX", "OPS", "10.0.0.9", 502, 77, "tcp", "sdm630")),
            "meters[3].participant_id",
            "not a household",
        ),
        (
            (4, NewMeter("MB0", "B4", "10.0.0.9", 502, 77, "tcp", "sdm630")),
            "meters[4].meter_id",
            "repeats meters[0]",
        ),
        (
            (5, NewMeter("MX", "B5", "10.0.0.9", 502, 1, "tcp", "sdm630")),
            "meters[5].unit_id",
            "repeats meters[0]",
        ),
        (
            (6, NewMeter("M1", "B6", "10.0.0.8", 502, 1, "tcp", "sdm630")),
            "meters[6].meter_id",
            "already registered",
        ),
        (
            (7, NewMeter("MX", "B7", "10.0.0.1", 502, 1, "tcp", "sdm630")),
            "meters[7].unit_id",
            "already meter 'M1'",
        ),
    ],
)
def test_a_bad_meter_names_its_item_and_adds_nothing(street, replaced, field, reason):
    households = homes(0, 10)
    with transaction(street) as session:
        register_households(session, households, now=NOW)
        register_meter(
            session,
            meter_id="M1",
            participant_id="H1",
            host="10.0.0.1",
            port=502,
            unit_id=1,
            transport="tcp",
            model="sdm630",
            now=NOW,
        )
    meters = meters_for(households)
    index, meter = replaced
    meters[index] = meter
    with pytest.raises(MarketError, match=re.escape(reason)) as raised, transaction(street) as session:
        register_meters(session, meters, now=NOW)
    assert raised.value.field == field
    assert count_rows(street, MeterRow) == 1


def test_tokens_for_unknown_or_inactive_participants_are_refused(street):
    with transaction(street) as session:
        session.get(ParticipantRow, "H2").active = False  # moved out
    with pytest.raises(NotFoundError) as unknown, transaction(street) as session:
        issue_tokens(session, ["H1", "NOPE"], now=NOW)
    assert unknown.value.field == "participant_ids[1]"
    with pytest.raises(MarketError, match="not active") as inactive, transaction(street) as session:
        issue_tokens(session, ["H1", "H3", "H2"], now=NOW)
    assert inactive.value.field == "participant_ids[2]"
    assert count_rows(street, ApiTokenRow) == 0


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    count=st.integers(0, 30), nodes=st.lists(st.sampled_from(["F1", "F2", "GSP"]), min_size=30, max_size=30)
)
def test_registering_at_once_stores_what_registering_one_by_one_stores(engine, count, nodes):
    households = [
        NewHousehold(f"P{i}", f"Home {i}", mpan(2000 + i), node) for i, node in enumerate(nodes[:count])
    ]

    def at_once(session):
        publish_network(session, network=street_network(), effective_from_utc=NOW, now=NOW)
        register_households(session, households, now=NOW)
        register_meters(session, meters_for(households), now=NOW)

    def one_by_one(session):
        publish_network(session, network=street_network(), effective_from_utc=NOW, now=NOW)
        for household in households:
            register_household(
                session,
                participant_id=household.participant_id,
                display_name=household.display_name,
                mpan=household.mpan,
                node_id=household.node_id,
                now=NOW,
            )
        for meter in meters_for(households):
            register_meter(
                session,
                meter_id=meter.meter_id,
                participant_id=meter.participant_id,
                host=meter.host,
                port=meter.port,
                unit_id=meter.unit_id,
                transport=meter.transport,
                model=meter.model,
                now=NOW,
            )

    def stored(register):
        with Session(engine) as session:  # rolled back: each way starts from the same empty market
            register(session)
            found = (list_participants(session), list_meters(session))
            session.rollback()
        return found

    assert stored(at_once) == stored(one_by_one)
