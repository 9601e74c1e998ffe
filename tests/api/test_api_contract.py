"""The OpenAPI document is the contract: schemathesis finds no server error and no response that
breaks the schema, as a household and as the energy company.

Driven through schemathesis's Python API (each operation's Hypothesis strategy) rather than its
pytest plugin, whose collection hook does not support pytest 9. Every default check runs except
``positive_data_acceptance``: the market refuses some schema-valid requests by its rules (a gate
already closed, an MPAN whose check digit is wrong, too many open orders), which OpenAPI cannot
express, and answers them 422 with a problem document; that the problem is well-formed is checked.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from api.app import create_app
from api.deps import Platform
from api.settings import Settings
from market.access import issue_token
from market.database import create_database_engine, transaction, upgrade_database
from market.intervals import period_at
from market.orders import place_order
from market.rules import MarketRules
from tests.factories import FixedClock, seed_market

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
CONTRACT = settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck), database=None)


@pytest.fixture(scope="module")
def contract(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('contract') / 'smartbrum.db'}"
    engine = create_database_engine(url)
    upgrade_database(engine)
    with transaction(engine) as session:
        seed_market(session, now=NOW)
        tokens = {who: issue_token(session, participant_id=who, now=NOW).secret for who in ("OPS", "H1")}
        place_order(
            session,
            rules=MarketRules(),
            participant_id="H1",
            period=period_at(NOW + timedelta(hours=1)),
            side="buy",
            quantity_kwh=1,
            price_p_per_kwh=10,
            now=NOW,
        )
    app = create_app(Platform(engine=engine, settings=Settings(database_url=url), clock=FixedClock(NOW)))
    yield schemathesis.openapi.from_asgi("/openapi.json", app), tokens
    engine.dispose()


def operations(schema):
    return [result.ok() for result in schema.get_all_operations()]


@pytest.mark.parametrize("who", ["H1", "OPS"])
def test_every_operation_keeps_the_contract(contract, who):
    schema, tokens = contract
    headers = {"Authorization": f"Bearer {tokens[who]}"}
    checked = []
    for operation in operations(schema):

        @CONTRACT
        @given(case=operation.as_strategy())
        def check(case) -> None:
            case.call_and_validate(headers=headers, excluded_checks=[positive_data_acceptance])

        check()
        checked.append(f"{operation.method.upper()} {operation.path}")
    assert len(checked) >= 25, checked
