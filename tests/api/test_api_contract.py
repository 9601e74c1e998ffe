"""The OpenAPI document is the contract: schemathesis finds no server error and no response outside
the schema, as a household, as the energy company and as nobody, on SQLite and on PostgreSQL.

Driven through schemathesis's engine in-process (the same phases as ``schemathesis run``: examples,
coverage, fuzzing with positive and negative data, stateful sequences), every check on. How many
examples each operation gets is ``SMARTBRUM_CONTRACT_EXAMPLES`` (small by default, for
``make test``); ``make contract`` runs the large one and prints a table of cases and failures per
role and backend.

Requests that fit the schema but that the market refuses: the schema bounds every field it can
(patterns, lengths, ranges, dates from 2000 to 2100, a PATCH with at least one field, a settlement
request with exactly one of ``interval`` and ``date``), but some rules depend on the clock, on what
is stored or on arithmetic no schema states: a gate that has closed or not yet closed, a date
without that period (46, 48 or 50 a day), a 30th of February, an MPAN whose check digit is wrong,
a node that does not exist, a network with a cycle, limits the operator configures (price and
quantity bounds, open orders per household), an unknown meter model. Those are answered 422 with
the problem type ``MARKET_RULE``, documented on every operation; a schema-valid request refused
any other way (a 422 of type ``about:blank``, a 400) fails the check
:func:`refused_only_by_market_rules`. Custom formats give the generator valid MPANs and period keys
near the fixed clock, so that most generated orders reach the market rather than its refusals.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
import schemathesis
from hypothesis import strategies as st
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import Status, events, from_schema

from api.app import create_app
from api.deps import FailedAuthentications, Platform
from api.leader import JobLeader, leader_known
from api.problems import MARKET_RULE
from api.settings import Settings
from market.access import issue_token
from market.database import create_database_engine, transaction
from market.intervals import period_at
from market.orders import place_order
from market.participants import mpan_with_check_digit
from market.rules import MarketRules
from tests.factories import FixedClock, seed_market

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
#: Examples per operation and phase; ``make contract`` raises it to run 20,000 cases and more.
EXAMPLES = int(os.environ.get("SMARTBRUM_CONTRACT_EXAMPLES", "5"))
#: The generator's seed, so that make test sends the same cases on every run (empty: a new one).
SEED = os.environ.get("SMARTBRUM_CONTRACT_SEED", "15")
#: The fewest cases each role and backend must run (``make contract``: 20,000).
MIN_CASES = int(os.environ.get("SMARTBRUM_CONTRACT_MIN_CASES", "0"))
ROLES = {"household": "H1", "operator": "OPS", "anonymous": None}
ACCEPTED = ["2xx", "401", "403", "404", "409", "429"]
REJECTED = ["400", "401", "403", "404", "405", "406", "409", "415", "422", "428", "429", "5xx"]


# The generator's custom formats: valid MPANs, and period keys within a day of the fixed clock
# (most with their gate still open) or anywhere in the platform's range.
schemathesis.openapi.format("mpan", st.from_regex(r"\A14[0-9]{10}\Z").map(mpan_with_check_digit))
schemathesis.openapi.format(
    "settlement-period",
    st.one_of(
        st.integers(min_value=-2, max_value=48).map(lambda n: period_at(NOW + timedelta(minutes=30 * n)).key),
        st.dates(min_value=datetime(2000, 1, 1).date(), max_value=datetime(2100, 12, 31).date()).flatmap(
            lambda day: st.integers(min_value=1, max_value=46).map(lambda n: f"{day.isoformat()}/{n}")
        ),
    ),
)


@schemathesis.check
def refused_only_by_market_rules(ctx, response, case) -> bool | None:
    """A request generated to fit the schema is refused only by a market rule (422 of type
    ``MARKET_RULE``), never as invalid: the schema does not promise what the API refuses."""
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive or response.status_code not in (400, 422):
        return None
    problem = response.json()
    if response.status_code == 422 and problem.get("type") == MARKET_RULE:
        return None
    raise AssertionError(
        f"a request that fits the schema was refused {response.status_code} as invalid: "
        f"{problem.get('detail')}"
    )


@dataclass
class Figures:
    """One run's count: cases sent, and failing cases by kind."""

    cases: int = 0
    server_errors: int = 0
    violations: int = 0
    failures: Counter[str] = field(default_factory=Counter)


FIGURES: dict[tuple[str, str], Figures] = {}


class ContractSummary:
    """Prints the table of every run's figures at the end of the session (stdout)."""

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if not FIGURES:
            return
        terminalreporter.section("API contract (schemathesis)")
        terminalreporter.write_line(f"examples per operation and phase: {EXAMPLES}, seed: {SEED or 'random'}")
        row = "{:<10} {:<10} {:>8} {:>14} {:>15}".format
        terminalreporter.write_line(row("role", "backend", "cases", "server errors", "outside schema"))
        for (role, backend), figures in sorted(FIGURES.items()):
            terminalreporter.write_line(
                row(role, backend, figures.cases, figures.server_errors, figures.violations)
            )


@pytest.fixture(scope="module", autouse=True)
def contract_summary(request):
    plugin = ContractSummary()
    if not request.config.pluginmanager.has_plugin("smartbrum-contract"):
        request.config.pluginmanager.register(plugin, "smartbrum-contract")
    return plugin


def contract_app(database_url: str):
    """The API over a seeded market: an operator, households H1 to H3, the street network and
    tariff, an order of H1's, and the tokens of OPS and H1."""
    engine = create_database_engine(database_url)
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
    # The throttle on failed authentications is tested on its own (test_failed_authentications);
    # here it would answer the probes with bad tokens 429 rather than 401.
    platform = Platform(
        engine=engine,
        settings=Settings(database_url=database_url),
        clock=FixedClock(NOW),
        failed_authentications=FailedAuthentications(limit=1_000_000),
    )
    app = create_app(platform)
    return app, tokens, engine


def run_contract(app, headers: dict[str, str]) -> Figures:
    config = SchemathesisConfig.from_dict(
        {
            "suppress-health-check": ["all"],
            **({"seed": int(SEED)} if SEED else {}),
            "headers": headers,
            "generation": {"max-examples": EXAMPLES, "mode": "all", "database": "none"},
            # 422 is a market rule's answer to a request that fits the schema; that it is one, and
            # not a refusal of the request as invalid, is refused_only_by_market_rules's to check.
            # 413: a body over the documented limit, whatever it holds. 5xx: not_a_server_error's.
            "checks": {
                "positive_data_acceptance": {"expected-statuses": [*ACCEPTED, "422", "413", "5xx"]},
                "negative_data_rejection": {"expected-statuses": [*REJECTED, "413"]},
                # DELETE /v1/orders/{id} cancels an order, which keeps it and its history for the
                # household and the audit (documented on the operation): a GET after it is 200 by
                # design, not a use after free.
                "use_after_free": {"enabled": False},
            },
        }
    )
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=config)
    figures = Figures()
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            figures.cases += len(event.recorder.cases)
            for case_id, checks in event.recorder.checks.items():
                for check in checks:
                    if check.status != Status.FAILURE:
                        continue
                    if check.name == "not_a_server_error":
                        figures.server_errors += 1
                    else:
                        figures.violations += 1
                    interaction = event.recorder.interactions.get(case_id)
                    answer = ""
                    if interaction is not None and interaction.response is not None:
                        answer = (
                            f" -> {interaction.response.status_code} {interaction.response.content[:300]!r}"
                        )
                    sample = check.failure_info.code_sample if check.failure_info else ""
                    figures.failures[f"{event.recorder.label}: {check.name}: {sample}{answer}"] += 1
        elif isinstance(event, events.NonFatalError):
            figures.failures[f"{event.label}: error: {event.info.message}"] += 1
        elif isinstance(event, events.FatalError):
            raise event.exception
    return figures


@pytest.mark.parametrize("role", ROLES)
def test_every_operation_keeps_the_contract(database_url, role, request):
    backend = database_url.split(":", 1)[0].split("+", 1)[0]
    app, tokens, engine = contract_app(database_url)
    who = ROLES[role]
    headers = {} if who is None else {"Authorization": f"Bearer {tokens[who]}"}
    # As in service, a process leads the jobs (here with none to run, so nothing moves under the
    # run), and /readyz answers ready; its 503 is tested in test_observability.
    leader = JobLeader(engine, [], retry_s=0.05)
    leader.start()
    try:
        deadline = time.monotonic() + 30
        while not leader_known(engine):
            assert time.monotonic() < deadline, "the job lock was never taken"
            time.sleep(0.05)
        figures = run_contract(app, headers)
    finally:
        leader.shutdown()
        engine.dispose()
    FIGURES[(role, backend)] = figures
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:  # as each run ends too, for a long make contract
        with capture.global_and_fixture_disabled():
            reporter.write_line(
                f"{role} on {backend}: {figures.cases} cases, {figures.server_errors} server errors, "
                f"{figures.violations} outside the schema"
            )
    assert not figures.failures, "\n".join(
        f"{count} x {failure}" for failure, count in figures.failures.items()
    )
    assert figures.cases >= max(25 * EXAMPLES, MIN_CASES), figures.cases  # 25 operations at least


# --- what the run relies on, each shown once -------------------------------------------------


@pytest.fixture
def api(engine, database_url):
    from tests.factories import api_client

    with api_client(engine, database_url, now=NOW) as client:
        yield client


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("body", [b'{"interval": ', b"\xff\xfe", b"not json"])
def test_a_body_that_is_not_json_is_a_documented_400(api, body):
    from tests.factories import auth

    response = api.post(
        "/v1/orders", content=body, headers={**auth(api, "H1"), "Content-Type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"] == [{"field": "body", "reason": "must be a JSON document in UTF-8"}]
    document = api.get("/openapi.json").json()
    with_body = [
        (path, method)
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
        if "requestBody" in operation
    ]
    assert len(with_body) >= 10
    for path, method in with_body:
        assert "400" in document["paths"][path][method]["responses"], (method, path)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PUT", "/v1/orders", "GET, POST"),
        ("POST", "/v1/orders/0b8f2c3e-4a5d-4e6f-8a9b-0c1d2e3f4a5b", "DELETE, GET, PATCH"),
        ("OPTIONS", "/v1/network", "GET, POST"),
        ("OPTIONS", "/v1/orders/batch", "POST"),  # not /v1/orders/{order_id}: a concrete path first
        ("POST", "/docs", "GET"),  # not documented: its routes say
        ("DELETE", "/v1/meters", "GET, POST"),
    ],
)
def test_a_method_the_path_lacks_is_405_naming_every_one_it_has(api, method, path, allowed):
    from tests.factories import auth

    response = api.request(method, path, headers=auth(api, "OPS"))
    assert response.status_code == 405, response.text
    assert response.headers["allow"] == allowed
    assert response.headers["content-type"] == "application/problem+json"
    paths = api.get("/openapi.json").json()["paths"]
    template = path.replace("0b8f2c3e-4a5d-4e6f-8a9b-0c1d2e3f4a5b", "{order_id}")
    if template in paths:
        assert set(allowed.split(", ")) == {method.upper() for method in paths[template]}


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    ("path", "body", "field", "type_"),
    [
        ("/v1/orders/{order}", {}, "body", "about:blank"),  # the schema asks for one field at least
        ("/v1/orders/{order}", {"quantity_kwh": None}, "quantity_kwh", "about:blank"),
        ("/v1/orders/{order}", {"quantity_kwh": 0.25}, "quantity_kwh", "about:blank"),  # a binary float
        ("/v1/orders/{order}", {"quantity_kwh": "1000"}, "quantity_kwh", MARKET_RULE),  # over the rules' 100
    ],
)
def test_a_refusal_says_whether_the_schema_or_a_market_rule_refused(api, path, body, field, type_):
    from tests.factories import auth

    placed = api.post(
        "/v1/orders",
        json={
            "interval": period_at(NOW + timedelta(hours=1)).key,
            "side": "buy",
            "quantity_kwh": "1",
            "price_p_per_kwh": "10",
        },
        headers=auth(api, "H1"),
    )
    assert placed.status_code == 201, placed.text
    response = api.patch(path.format(order=placed.json()["id"]), json=body, headers=auth(api, "H1"))
    assert response.status_code == 422, response.text
    problem = response.json()
    assert (problem["type"], [e["field"] for e in problem["errors"]]) == (type_, [field])
    assert (
        api.patch(
            path.format(order=placed.json()["id"]), json={"quantity_kwh": 2.0}, headers=auth(api, "H1")
        ).json()["quantity_kwh"]
        == "2"
    )  # a whole number may be written as a JSON number


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("at", ["1881389745", "2026-12-06 12:00:00Z", "2026-12-06T12:00:00"])
def test_an_instant_is_iso_8601_text_with_its_offset_as_published(api, at):
    """What the schema's date-time pattern refuses is refused (pydantic alone would read seconds
    since 1970 from a number), naming the field; the published form is taken."""
    from tests.factories import auth

    refused = api.get("/v1/network", params={"at": at}, headers=auth(api, "H1"))
    assert refused.status_code == 422, refused.text
    assert [error["field"] for error in refused.json()["errors"]] == ["at"]
    assert (
        api.get("/v1/network", params={"at": "2026-12-06T12:00:00Z"}, headers=auth(api, "H1")).status_code
        == 200
    )
