"""``/docs``: Swagger UI from the app itself, under a policy that allows no inline script."""

from __future__ import annotations

from datetime import UTC, datetime
from html.parser import HTMLParser
from urllib.parse import urlsplit

import pytest

from tests.factories import api_client

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
CONTENT_TYPES = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}


class References(HTMLParser):
    """Every URL a page loads (``src`` and ``href``) and the text of its inline scripts."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline_scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [value for name, value in attrs if name in ("src", "href") and value]
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline_scripts.append(data)


def policy(header: str) -> dict[str, list[str]]:
    directives = (part.split() for part in header.split(";") if part.strip())
    return {name: sources for name, *sources in directives}


@pytest.fixture
def api(engine, database_url):
    with api_client(engine, database_url, now=NOW) as client:
        yield client


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_docs_load_only_the_apps_own_assets_and_no_inline_script(api):
    page = api.get("/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    found = References()
    found.feed(page.text)
    assert found.inline_scripts == []
    assert len(found.urls) >= 3, found.urls  # Swagger UI's script and style, and its start-up script
    for url in found.urls:
        parts = urlsplit(url)
        assert (parts.scheme, parts.netloc) == ("", ""), f"{url} is not on the app's origin"
        asset = api.get(url)
        assert asset.status_code == 200, url
        suffix = url[url.rindex(".") :]
        assert asset.headers["content-type"].split(";")[0] == CONTENT_TYPES[suffix], url
        assert asset.headers["x-content-type-options"] == "nosniff"
    csp = policy(page.headers["content-security-policy"])
    assert csp["default-src"] == ["'none'"]
    assert csp["script-src"] == ["'self'"]  # no 'unsafe-inline', no 'unsafe-eval', no other origin
    assert csp["frame-ancestors"] == ["'none'"]
    assert all("http" not in source for sources in csp.values() for source in sources)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_docs_serve_no_other_file_and_redoc_is_off(api):
    assert api.get("/docs/assets/redoc.standalone.js").status_code == 404  # only what the page loads
    assert api.get("/docs/assets/..%2Fpyproject.toml").status_code == 404
    assert api.get("/redoc").status_code == 404
    assert "/docs" not in api.get("/openapi.json").json()["paths"]
