"""The access log never holds a secret a path carries: an invitation link's (``/invitations/...``
or ``?token=...``) is redacted from the ``http_request`` event, as text and as JSON, the rest of
the path kept."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from api.logs import REDACTED, JsonFormatter, TextFormatter, redact_path

SECRET = "Zx9-secret_part.of~the-link"
#: What uvicorn's access logger is given for each request (uvicorn.protocols.http.*_impl).
ACCESS_FORMAT = '%s - "%s %s HTTP/%s" %d'


@contextmanager
def access_log(log_format: str) -> Iterator[list[str]]:
    """The lines the ``uvicorn.access`` logger writes in ``log_format`` while the block runs."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    logger = logging.getLogger("uvicorn.access")
    level, propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    lines: list[str] = []
    try:
        yield lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate
        lines.extend(stream.getvalue().splitlines())


@pytest.mark.parametrize(
    ("path", "logged"),
    [
        (f"/invitation?token={SECRET}", f"/invitation?token={REDACTED}"),
        (f"/invitations/{SECRET}", f"/invitations/{REDACTED}"),
        (f"/invitations/{SECRET}/accept?next=/today", f"/invitations/{REDACTED}/accept?next=/today"),
        (f"/anything?a=1&token={SECRET}&b=2", f"/anything?a=1&token={REDACTED}&b=2"),
        (f"/anything?TOKEN={SECRET}", f"/anything?TOKEN={REDACTED}"),
        ("/today?date=2026-12-06", "/today?date=2026-12-06"),
        ("/v1/tokens/12", "/v1/tokens/12"),
        ("/orders?csrf_token_hint=1", "/orders?csrf_token_hint=1"),
    ],
)
def test_a_path_keeps_everything_but_its_secrets(path, logged):
    assert redact_path(path) == logged


@pytest.mark.parametrize("log_format", ["json", "text"])
@pytest.mark.parametrize("path", [f"/invitation?token={SECRET}", f"/invitations/{SECRET}"])
def test_the_http_request_event_never_holds_an_invitations_secret(log_format, path):
    with access_log(log_format) as lines:
        logging.getLogger("uvicorn.access").info(ACCESS_FORMAT, "127.0.0.1:50000", "GET", path, "1.1", 200)
    (line,) = lines
    assert SECRET not in line
    assert REDACTED in line
    if log_format == "json":
        event = json.loads(line)
        assert event["event"] == "http_request"
        assert event["path"] == redact_path(path)
        assert (event["method"], event["status"]) == ("GET", 200)
        assert redact_path(path) in event["message"]
    else:
        assert f'http_request: 127.0.0.1:50000 - "GET {redact_path(path)} HTTP/1.1" 200' in line


def test_other_handlers_still_get_the_record_as_it_came():
    """Redaction copies the record; the original is left for whatever else handles it."""
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        ACCESS_FORMAT,
        ("127.0.0.1:1", "GET", f"/invitation?token={SECRET}", "1.1", 200),
        None,
    )
    assert SECRET not in JsonFormatter().format(record)
    assert SECRET not in TextFormatter().format(record)
    assert record.args is not None
    assert SECRET in str(record.args[2])
