"""`POST /v1/meter-data`: the operator's CSV upload, 200 with the summary or 422 with the bad rows
and nothing stored, its own body limit, and what a household then sees (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.deps import Platform
from api.problems import MARKET_RULE
from api.settings import Settings
from market.meter_files import HEADER
from market.tables import IntervalEnergyRow
from tests.factories import FixedClock, api_client, auth, count_rows, mpan

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
CSV = {"Content-Type": "text/csv"}


@pytest.fixture
def api(engine, database_url):
    with api_client(engine, database_url, now=NOW) as client:
        yield client


def body(*rows: str) -> bytes:
    return ("\n".join([",".join(HEADER), *rows]) + "\n").encode()


def upload(api, content: bytes, *, who: str = "OPS", **params):
    return api.post("/v1/meter-data", content=content, headers={**auth(api, who), **CSV}, params=params)


def test_the_operator_uploads_a_file_and_the_household_sees_its_energy(api, engine):
    answer = upload(
        api, body(f"{mpan(1)},2026-11-20,27,0.412,0,estimated", f"{mpan(2)},2026-11-20,27,1,0.5,actual")
    )
    assert answer.status_code == 200, answer.text
    summary = answer.json()
    assert (summary["rows_read"], summary["stored"], summary["new"], summary["bad"]) == (2, 2, 2, 0)
    assert summary["meters_created"] == 2
    again = upload(api, body(f"{mpan(1)},2026-11-20,27,0.412,0,estimated"))
    assert (again.json()["stored"], again.json()["unchanged"]) == (0, 1)
    # H1 sees its own energy, as its meter's; H2's is not in its view.
    seen = api.get("/v1/energy?date=2026-11-20", headers=auth(api, "H1"))
    assert seen.status_code == 200, seen.text
    items = seen.json()["items"]
    assert [(item["meter_id"], item["import_kwh"], item["estimated"]) for item in items] == [
        (f"hh-{mpan(1)}", "0.412", True)
    ]


def test_a_bad_row_is_a_422_naming_each_row_and_nothing_is_stored(api, engine):
    content = body(
        f"{mpan(1)},2026-11-20,27,0.412,0,actual",
        f"{mpan(2)},2026-11-20,27,0.4121,0,actual",
        f"{mpan(3)},2026-11-21,30,0.2,0,actual",  # 14:30 UTC: not ended at noon
    )
    refused = upload(api, content)
    assert refused.status_code == 422
    assert refused.headers["content-type"] == "application/problem+json"
    problem = refused.json()
    assert problem["type"] == MARKET_RULE  # the body fits the schema (text); the rows break the rules
    assert [error["field"] for error in problem["errors"]] == [
        "row[3].import_kwh",
        "row[4].settlement_period",
    ]
    assert "has not ended" in problem["errors"][1]["reason"]
    assert "2 of 3 rows are bad" in problem["detail"]
    assert "nothing was stored" in problem["detail"]
    assert count_rows(engine, IntervalEnergyRow) == 0
    skipped = upload(api, content, skip_bad="true")
    assert skipped.status_code == 200
    assert (skipped.json()["stored"], skipped.json()["bad"]) == (1, 2)
    assert [(p["row"], p["field"]) for p in skipped.json()["problems"]] == [
        (3, "import_kwh"),
        (4, "settlement_period"),
    ]
    assert count_rows(engine, IntervalEnergyRow) == 1


def test_a_wrong_header_or_content_type_is_refused(api):
    header = upload(api, b"mpan;settlement_date\n")
    assert header.status_code == 422
    assert header.json()["errors"] == [
        {"field": "header", "reason": header.json()["errors"][0]["reason"]},
    ]
    assert "unknown column" in header.json()["errors"][0]["reason"]
    as_json = api.post("/v1/meter-data", json={"rows": []}, headers=auth(api, "OPS"))
    assert as_json.status_code == 415
    assert as_json.json()["errors"] == [{"field": "Content-Type", "reason": "must be text/csv"}]
    not_utf8 = upload(api, b"\xff\xfe\x00m")
    assert not_utf8.status_code == 422
    assert not_utf8.json()["errors"][0]["field"] == "file"


def test_a_household_cannot_upload(api, engine):
    assert upload(api, body(f"{mpan(1)},2026-11-20,27,0.4,0,actual"), who="H1").status_code == 403
    assert count_rows(engine, IntervalEnergyRow) == 0


def test_uploads_have_their_own_body_limit(engine, database_url, api):
    """100,000 rows are about 5 MB: over the JSON routes' 1 MiB, within the upload's limit."""
    settings = Settings(database_url=database_url, max_body_bytes=2048, max_meter_data_bytes=8192)
    app = create_app(Platform(engine=engine, settings=settings, clock=FixedClock(NOW)))
    rows = [f"{mpan(1)},2026-11-20,{n},0.{n:03d},0,actual" for n in range(1, 49)]
    content = body(*rows)
    assert 2048 < len(content) < 8192
    with TestClient(app) as client:
        fits = client.post("/v1/meter-data", content=content, headers={**auth(api, "OPS"), **CSV})
        assert fits.status_code == 200, fits.text
        assert fits.json()["unchanged"] + fits.json()["stored"] == 48
        too_big = client.post("/v1/meter-data", content=content * 4, headers={**auth(api, "OPS"), **CSV})
        assert too_big.status_code == 413
        assert too_big.json()["errors"] == [{"field": "body", "reason": "must be at most 8192 bytes"}]
        # Other routes keep theirs.
        order = client.post("/v1/orders", content=b"{" + b" " * 4096 + b"}", headers=auth(api, "H1"))
        assert order.status_code == 413
