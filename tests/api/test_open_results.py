"""``GET /open/v1/results`` through real HTTP, on both databases: public, JSON and CSV from the
same figures, suppressed cells marked and empty, a day not over refused naming ``date``."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from api.app import create_app
from api.deps import Platform
from api.problems import MARKET_RULE
from api.settings import Settings
from market.intervals import settlement_period
from market.open_results import CELL_FIELDS, TOTAL_FIELDS
from tests.factories import FixedClock, api_client, auth, seed_open_results_day

DAY = date(2026, 11, 21)
TRADED = settlement_period(DAY, 27)
NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
PATH = f"/open/v1/results?date={DAY.isoformat()}"


@pytest.fixture
def api(engine, database_url):
    with api_client(engine, database_url, now=NOW) as client:
        seed_open_results_day(engine, TRADED, registered_at=datetime(2026, 11, 1, tzinfo=UTC))
        yield client


def test_the_day_as_json_needs_no_token(api):
    response = api.get(PATH)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "public, max-age=300"
    body = response.json()
    assert (body["settlement_date"], body["interval_minutes"], body["min_households"]) == (
        "2026-11-21",
        30,
        5,
    )
    assert body["licence"]["name"] == "OGL-UK-3.0"
    assert len(body["cells"]) == 2 * 48
    cells = {(cell["feeder"], cell["period"]): cell for cell in body["cells"]}
    traded = cells[("F1", 27)]
    assert traded["status"] == "published"
    # Five households contributed, but each energy figure is fewer households' own: withheld.
    assert (traded["households"], traded["meter_data_complete"]) == (5, True)
    energy = (
        "bought_kwh",
        "sold_kwh",
        "backstop_import_kwh",
        "backstop_export_kwh",
        "local_self_consumption_kwh",
    )
    assert [traded[name] for name in energy] == [None] * 5
    assert traded["withheld"] == " ".join(energy)
    assert traded["start_utc"] == TRADED.start_utc.isoformat().replace("+00:00", "Z")
    assert traded["price_p_per_kwh"] is not None
    hidden = cells[("F2", 27)]  # H3 alone on F2
    assert hidden["status"] == "suppressed"
    assert all(hidden[field.name] is None for field in CELL_FIELDS if not field.required)
    day = next(total for total in body["totals"] if total["scope"] == "day")
    # Period 28 (nobody traded) publishes its zeros; period 27's purchase is withheld.
    assert (day["cells_published"], day["cells_suppressed"], day["bought_kwh"]) == (2, 94, "0.000")
    assert (day["figures_withheld"], day["backstop_import_kwh"]) == (8, None)
    # A token changes nothing: the same public answer.
    assert api.get(PATH, headers=auth(api, "H1")).json()["cells"] == body["cells"]


def test_the_day_as_csv_tables(api):
    cells = api.get(PATH + "&format=csv")
    assert cells.status_code == 200, cells.text
    assert cells.headers["content-type"] == "text/csv; charset=utf-8"
    assert 'filename="market-results-2026-11-21.csv"' in cells.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(cells.text)))
    assert rows[0] == [field.name for field in CELL_FIELDS]
    assert len(rows) == 1 + 2 * 48
    table = [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]
    published = [row for row in table if row["status"] == "published"]
    assert [(row["feeder"], row["period"]) for row in published] == [("F1", "27"), ("F1", "28")]
    assert published[1]["meter_data_complete"] == "false"  # H7's meter unread in period 28
    suppressed = next(row for row in table if (row["feeder"], row["period"]) == ("F2", "27"))
    assert (suppressed["status"], suppressed["bought_kwh"], suppressed["households"]) == (
        "suppressed",
        "",
        "",
    )
    totals = api.get(PATH + "&format=csv&table=totals")
    assert totals.status_code == 200
    header, *lines = list(csv.reader(io.StringIO(totals.text)))
    assert header == [field.name for field in TOTAL_FIELDS]
    assert len(lines) == 2 + 48 + 1  # two feeders, 48 periods, the day
    json_cells = api.get(PATH).json()["cells"]
    assert [row["bought_kwh"] or None for row in table] == [cell["bought_kwh"] for cell in json_cells]


@pytest.mark.parametrize(
    ("query", "field", "problem_type"),
    [
        ("date=2026-11-22", "date", MARKET_RULE),  # today by the platform's clock
        ("date=2027-01-01", "date", MARKET_RULE),
        ("date=1999-12-31", "date", "about:blank"),
        ("date=2026-02-30", "date", "about:blank"),
        ("date=yesterday", "date", "about:blank"),
        ("", "date", "about:blank"),
        (f"date={DAY}&format=xml", "format", "about:blank"),
        (f"date={DAY}&format=csv&table=everything", "table", "about:blank"),
    ],
)
def test_bad_requests_are_problems_naming_the_field(api, query, field, problem_type):
    response = api.get(f"/open/v1/results?{query}")
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"] == problem_type
    assert field in [error["field"] for error in problem["errors"]]


def test_a_day_under_way_says_when_it_will_be_published(api):
    api.clock.moment = TRADED.end_utc  # type: ignore[attr-defined]
    response = api.get(PATH)
    assert response.status_code == 422
    assert "2026-11-21 is not over yet" in response.json()["detail"]
    api.clock.moment = NOW  # type: ignore[attr-defined]
    assert api.get(PATH).status_code == 200


def test_the_threshold_and_licence_are_settings(engine, database_url, api):
    settings = Settings(
        database_url=database_url,
        open_data_min_households=6,
        open_data_licence_name="CC-BY-4.0",
        open_data_licence_title="Creative Commons Attribution 4.0",
        open_data_licence_path="https://creativecommons.org/licenses/by/4.0/",
    )
    app = create_app(Platform(engine=engine, settings=settings, clock=FixedClock(NOW + timedelta(days=1))))
    with TestClient(app) as client:
        body = client.get(PATH).json()
    assert body["min_households"] == 6
    assert body["licence"]["name"] == "CC-BY-4.0"
    assert {cell["status"] for cell in body["cells"]} == {"suppressed"}  # F1 had 5 households
    for below_the_floor in (0, 1, 2):
        with pytest.raises(ValidationError):
            Settings(database_url=database_url, open_data_min_households=below_the_floor)
