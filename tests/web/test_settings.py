"""The household's Settings on both databases: its API tokens listed without their secrets, a new
one shown once and working on the API, revoked at once, and another household's refused."""

from __future__ import annotations

import re

from sqlmodel import Session

from market.access import issue_token, list_tokens
from market.database import transaction
from market.tables import ApiTokenRow
from tests.factories import count_rows
from tests.web.conftest import NOW


def _h1_token(engine) -> int:  # type: ignore[no-untyped-def]
    with transaction(engine) as session:
        return issue_token(session, participant_id="H1", now=NOW, label="heat pump").id


def _secret(html: str) -> str:
    found = re.search(r'id="new-token" type="text" readonly value="(sbm_[^"]+)"', html)
    assert found is not None
    return found.group(1)


def test_the_settings_page_and_its_forms_for_each_role(web, engine):
    """A visitor is sent to sign in, the operator refused, another household's token not found."""
    token = _h1_token(engine)
    wrong = []
    for who, status in {"none": 303, "H2": 200, "H1": 200, "OPS": 403}.items():
        response = web[who].client.get("/settings")
        if response.status_code != status:
            wrong.append((who, "GET", response.status_code, status))
    forms = [
        ("/settings/tokens", {"label": "a"}, {"none": 303, "OPS": 403, "H2": 201, "H1": 201}),
        (f"/settings/tokens/{token}/revoke", {}, {"none": 303, "OPS": 403, "H2": 404, "H1": 303}),
        ("/settings/tokens/x/revoke", {}, {"H1": 404}),
        ("/settings/tokens/99999999999999999999/revoke", {}, {"H1": 404}),
    ]
    for path, data, expected in forms:
        for who, status in expected.items():
            response = web[who].client.post(path, data={**data, "csrf_token": web[who].csrf})
            if response.status_code != status:
                wrong.append((who, "POST", path, response.status_code, status))
    assert wrong == []
    with Session(engine) as session:
        assert [t.label for t in list_tokens(session, participant_id="H1")] == ["a"]
        assert [t.label for t in list_tokens(session, participant_id="H2")] == ["a"]


def test_a_new_token_is_shown_once_works_and_stops_working_once_revoked(web, engine):
    h1, api = web["H1"], web["none"].client
    issued = h1.client.post("/settings/tokens", data={"label": "home battery", "csrf_token": h1.csrf})
    assert issued.status_code == 201
    assert issued.headers["cache-control"] == "no-store"
    assert "Copy it now." in issued.text
    secret = _secret(issued.text)
    bearer = {"Authorization": f"Bearer {secret}"}
    assert api.get("/v1/orders", headers=bearer).status_code == 200
    page = h1.client.get("/settings").text
    assert "home battery" in page
    assert secret not in page
    assert "Copy it now" not in page
    with Session(engine) as session:
        (token,) = list_tokens(session, participant_id="H1")
    # Another household cannot see it or revoke it.
    assert "home battery" not in web["H2"].client.get("/settings").text
    assert (
        web["H2"]
        .client.post(f"/settings/tokens/{token.id}/revoke", data={"csrf_token": web["H2"].csrf})
        .status_code
        == 404
    )
    assert api.get("/v1/orders", headers=bearer).status_code == 200
    # Its owner can, and the API refuses it at once.
    revoked = h1.client.post(f"/settings/tokens/{token.id}/revoke", data={"csrf_token": h1.csrf})
    assert (revoked.status_code, revoked.headers["location"]) == (303, f"/settings?revoked={token.id}")
    assert api.get("/v1/orders", headers=bearer).status_code == 401
    assert "You have no tokens in use." in h1.client.get("/settings").text


def test_token_forms_refuse_a_forged_request_and_say_what_is_wrong_beside_the_field(web, engine):
    h1 = web["H1"]
    token = _h1_token(engine)
    for path in ("/settings/tokens", f"/settings/tokens/{token}/revoke"):
        assert h1.client.post(path, data={"label": "x", "csrf_token": "forged"}).status_code == 403
    assert count_rows(engine, ApiTokenRow) == 1
    too_long = h1.client.post("/settings/tokens", data={"label": "x" * 101, "csrf_token": h1.csrf})
    assert too_long.status_code == 422
    assert re.search(r'class="error" id="label-error">The label is too long', too_long.text)
    assert 'aria-invalid="true"' in too_long.text
    assert count_rows(engine, ApiTokenRow) == 1
