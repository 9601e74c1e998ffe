"""Errors in one shape: RFC 9457 problem details, each naming the field at fault and why.

Every error the API returns is ``application/problem+json`` with ``type``, ``title``, ``status``,
``detail`` and, where inputs are at fault, ``errors``: a list of ``{"field", "reason"}``.

Two kinds of 422 are told apart by ``type``: a request that does not fit the published schema is
``about:blank``; one that fits it but that the market's rules refuse (a gate already closed, an
MPAN whose check digit is wrong, a network with a cycle) is :data:`MARKET_RULE`. A body that is
not JSON at all is 400; a method a path does not have is 405 with every method it does in
``Allow``.
"""

from __future__ import annotations

import re
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from market.errors import ConflictError, MarketError, NotFoundError

PROBLEM_JSON = "application/problem+json"
_METHODS = ("DELETE", "GET", "HEAD", "PATCH", "POST", "PUT")
#: The problem type of a request that fits the schema but that the market's rules refuse (422).
MARKET_RULE = "urn:smartbrum:problem:market-rule"


class FieldProblem(BaseModel):
    field: str
    reason: str


class Problem(BaseModel):
    """An RFC 9457 problem details document."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[FieldProblem] = []


class ApiProblemError(Exception):
    """Raise to answer with a problem document."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        errors: list[FieldProblem] | None = None,
        headers: dict[str, str] | None = None,
        type_: str = "about:blank",
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.errors = errors or []
        self.headers = headers or {}
        self.type = type_


def problem_response(
    request: Request,
    status: int,
    detail: str,
    errors: list[FieldProblem] | None = None,
    headers: Any = None,
    *,
    type_: str = "about:blank",
) -> JSONResponse:
    document = Problem(
        type=type_,
        title=HTTPStatus(status).phrase,
        status=status,
        detail=detail,
        instance=str(request.url.path),
        errors=errors or [],
    )
    return JSONResponse(
        document.model_dump(mode="json"), status_code=status, media_type=PROBLEM_JSON, headers=headers
    )


def _field(location: tuple[Any, ...]) -> str:
    parts = [str(part) for part in location if part not in ("body", "query", "path", "header")]
    return ".".join(parts) or str(location[-1] if location else "request")


def install_problem_handlers(app: FastAPI) -> None:
    """Answer every error the app can raise with a problem document."""

    @app.exception_handler(ApiProblemError)
    async def api_problem(request: Request, error: ApiProblemError) -> JSONResponse:
        headers = {**error.headers, **({"WWW-Authenticate": "Bearer"} if error.status == 401 else {})}
        return problem_response(
            request, error.status, error.detail, error.errors, headers or None, type_=error.type
        )

    @app.exception_handler(NotFoundError)
    async def not_found(request: Request, error: NotFoundError) -> JSONResponse:
        return problem_response(
            request, 404, str(error), [FieldProblem(field=error.field, reason=error.reason)]
        )

    @app.exception_handler(ConflictError)
    async def conflict(request: Request, error: ConflictError) -> JSONResponse:
        return problem_response(
            request, 409, str(error), [FieldProblem(field=error.field, reason=error.reason)]
        )

    @app.exception_handler(MarketError)
    async def refused(request: Request, error: MarketError) -> JSONResponse:
        return problem_response(
            request,
            422,
            str(error),
            [FieldProblem(field=error.field, reason=error.reason)],
            type_=MARKET_RULE,
        )

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        if any(e["type"] == "json_invalid" for e in error.errors()):
            return malformed_body(request)
        errors = [
            FieldProblem(field=_field(tuple(e["loc"])), reason=e["msg"].removeprefix("Value error, "))
            for e in error.errors()
        ]
        detail = "; ".join(f"{e.field}: {e.reason}" for e in errors) or "the request is not valid"
        return problem_response(request, 422, detail, errors)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        if error.status_code == 400 and error.detail == "There was an error parsing the body":
            return malformed_body(request)  # FastAPI's words for a body it cannot decode
        headers = dict(error.headers or {})
        if error.status_code == 405:
            headers["Allow"] = ", ".join(allowed_methods(request))
        return problem_response(request, error.status_code, str(error.detail), headers=headers or None)

    document_malformed_bodies(app)


def malformed_body(request: Request) -> JSONResponse:
    """400: the body is not JSON (or not text at all), so no field can be named but the body."""
    return problem_response(
        request,
        400,
        "the request body is not valid JSON",
        [FieldProblem(field="body", reason="must be a JSON document in UTF-8")],
    )


def allowed_methods(request: Request) -> list[str]:
    """Every method the request's path has (Starlette's own 405 names only the first route's).

    A documented path answers with its operations, a concrete path before a templated one as
    OpenAPI matches them (``/v1/orders/batch`` is not ``/v1/orders/{order_id}``); any other path
    (the documentation pages) with the methods its routes take.
    """
    path = request.url.path
    paths = request.app.openapi().get("paths", {})
    item = paths.get(path)
    if item is None:
        item = next(
            (
                operations
                for template, operations in paths.items()
                if "{" in template and re.fullmatch(re.sub(r"\{[^}/]+\}", "[^/]+", template), path)
            ),
            None,
        )
    if item is not None:
        return sorted(method.upper() for method in item if method.upper() in _METHODS)
    routes = request.app.router.routes
    return [
        method
        for method in _METHODS
        if any(route.matches({**request.scope, "method": method})[0] == Match.FULL for route in routes)
    ]


def document_malformed_bodies(app: FastAPI) -> None:
    """Document the 400 for a body that is not JSON on every operation that takes a body."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = build()
            for operations in document.get("paths", {}).values():
                for operation in operations.values():
                    if isinstance(operation, dict) and "requestBody" in operation:
                        operation["responses"].setdefault("400", _MALFORMED)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _problem(description: str) -> dict[str, Any]:
    return {"description": description, "model": Problem, "content": {PROBLEM_JSON: {}}}


_MALFORMED = {
    "description": "The body is not a JSON document",
    "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
}

#: The problem responses every route may give, for the OpenAPI document (the contract).
PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: _problem("No token, or an unknown or revoked one"),
    403: _problem("The route is not for this participant's role"),
    404: _problem("Not found (another household's data is not found either)"),
    409: _problem("Clashes with what is stored (a reused Idempotency-Key, a frozen order)"),
    413: _problem("The request body is larger than the service reads"),
    422: _problem(
        "Nothing is stored: a field does not fit the schema (type about:blank), or the request fits "
        f"it but the market's rules refuse it (type {MARKET_RULE}), each naming the field"
    ),
    429: _problem("Too many failed authentications from this client; see Retry-After"),
}
