"""The service's edge: a limit on request bodies, and the security headers on every response.

Both are plain ASGI middleware (no task or threadpool hop per request).
"""

from __future__ import annotations

import json
from http import HTTPStatus

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.problems import PROBLEM_JSON

#: Headers every response carries. The API serves JSON only, so its pages may load nothing and
#: be framed by nobody; the interactive documentation keeps the framing rule alone.
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]
API_CSP = (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'")
#: The documentation page runs the app's own scripts and no inline one (:mod:`api.docs`); Swagger UI
#: sets inline styles and draws its icons from data: URLs, and "Try it out" calls the API itself.
DOCS_CSP = (
    b"content-security-policy",
    b"default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    b"connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
)
DOCS_PATHS = ("/docs",)


class SecurityHeaders:
    """Adds :data:`SECURITY_HEADERS` and a content security policy to every HTTP response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        csp = DOCS_CSP if scope["path"].startswith(DOCS_PATHS) else API_CSP

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS, csp]
            await send(message)

        await self.app(scope, receive, send_with_headers)


class BodySizeLimit:
    """Answers 413 to a request whose body is larger than ``max_bytes``, before reading it all.

    A declared ``Content-Length`` over the limit is refused at once; a body sent without one is
    counted as it arrives and refused as soon as it passes the limit. ``by_path`` gives some
    paths a limit of their own (the meter data upload: a file, not a JSON request).
    """

    def __init__(self, app: ASGIApp, max_bytes: int, by_path: dict[str, int] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.by_path = dict(by_path or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.by_path.get(scope["path"], self.max_bytes)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._refuse(scope, send, limit)
            return
        received = 0
        started = refused = False

        async def counting_receive() -> Message:
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request" and not refused:
                received += len(message.get("body", b""))
                if received > limit and not started:
                    # Answer now and tell the app the client is gone: it stops reading, and
                    # whatever it answers is dropped.
                    refused = True
                    await self._refuse(scope, send, limit)
                    return {"type": "http.disconnect"}
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if refused:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        await self.app(scope, counting_receive, tracking_send)

    async def _refuse(self, scope: Scope, send: Send, limit: int) -> None:
        status = HTTPStatus.REQUEST_ENTITY_TOO_LARGE
        body = json.dumps(
            {
                "type": "about:blank",
                "title": status.phrase,
                "status": status.value,
                "detail": f"the request body is larger than {limit} bytes",
                "instance": scope["path"],
                "errors": [{"field": "body", "reason": f"must be at most {limit} bytes"}],
            }
        ).encode()
        headers = [(b"content-type", PROBLEM_JSON.encode()), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status.value, "headers": headers})
        await send({"type": "http.response.body", "body": body})
