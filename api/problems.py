"""Errors in one shape: RFC 9457 problem details, each naming the field at fault and why.

Every error the API returns is ``application/problem+json`` with ``type``, ``title``, ``status``,
``detail`` and, where inputs are at fault, ``errors``: a list of ``{"field", "reason"}``.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from market.errors import ConflictError, MarketError, NotFoundError

PROBLEM_JSON = "application/problem+json"


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
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.errors = errors or []
        self.headers = headers or {}


def problem_response(
    request: Request, status: int, detail: str, errors: list[FieldProblem] | None = None, headers: Any = None
) -> JSONResponse:
    document = Problem(
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
        return problem_response(request, error.status, error.detail, error.errors, headers or None)

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
            request, 422, str(error), [FieldProblem(field=error.field, reason=error.reason)]
        )

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        errors = [FieldProblem(field=_field(tuple(e["loc"])), reason=e["msg"]) for e in error.errors()]
        detail = "; ".join(f"{e.field}: {e.reason}" for e in errors) or "the request is not valid"
        return problem_response(request, 422, detail, errors)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        return problem_response(request, error.status_code, str(error.detail), headers=error.headers)


def _problem(description: str) -> dict[str, Any]:
    return {"description": description, "model": Problem, "content": {PROBLEM_JSON: {}}}


#: The problem responses every route may give, for the OpenAPI document (the contract).
PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: _problem("No token, or an unknown or revoked one"),
    403: _problem("The route is not for this participant's role"),
    404: _problem("Not found (another household's data is not found either)"),
    409: _problem("Clashes with what is stored (a reused Idempotency-Key, a frozen order)"),
    413: _problem("The request body is larger than the service reads"),
    422: _problem("A field out of range or the market's rules refuse it; nothing is stored"),
    429: _problem("Too many failed authentications from this client; see Retry-After"),
}
