"""The service ``smartbrum serve`` runs: the JSON API and the web app's pages, in one app.

:func:`create_service` builds the API (:func:`api.app.create_app`) and adds the pages' routers
(left out of the OpenAPI document), their static files and their error pages;
:func:`service_from_settings` is the factory ``smartbrum serve`` hands to uvicorn.
"""

from __future__ import annotations

import inspect
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.app import app_from_settings, create_app
from api.deps import Platform
from web.account_pages import router as account_router
from web.bill_pages import router as bill_router
from web.energy_pages import router as energy_router
from web.household_pages import router as household_router
from web.operator_console_pages import router as operator_console_router
from web.operator_market_pages import router as operator_market_router
from web.operator_pages import router as operator_router
from web.rendering import render
from web.sessions import PageRefusedError, SignInNeededError, sign_in_path
from web.settings_pages import router as settings_router

STATIC = Path(__file__).parent / "static"
#: The pages' content security policy: their own stylesheet and images, forms posted to this site
#: only, no scripts, framed by nobody.
PAGE_CSP = (
    b"content-security-policy",
    b"default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    b"frame-ancestors 'none'; base-uri 'none'",
)
_API_PATHS = ("/v1/", "/docs", "/redoc", "/openapi.json")
_PAGE_ERRORS = {404: "There is no page at this address. Check it, or go to your home page."}


class PageSecurityPolicy:
    """Gives the pages their policy in place of the API's (which loads nothing at all)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(_API_PATHS):
            await self.app(scope, receive, send)
            return

        async def send_with_policy(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k != PAGE_CSP[0]]
                message["headers"] = [*headers, PAGE_CSP]
            await send(message)

        await self.app(scope, receive, send_with_policy)


def create_service(platform: Platform, *, freeze_heap: bool = False) -> FastAPI:
    """The API over ``platform`` with the web app's pages at ``/`` (``freeze_heap``: as
    :func:`api.app.create_app`)."""
    return add_pages(create_app(platform, freeze_heap=freeze_heap))


def service_from_settings() -> FastAPI:
    """What ``smartbrum serve`` runs in each worker: the API with its jobs, as
    :func:`api.app.app_from_settings` builds it, and the pages."""
    return add_pages(app_from_settings())


def add_pages(app: FastAPI) -> FastAPI:
    """Add the web app to an API app: its pages, static files and error pages."""
    app.add_middleware(PageSecurityPolicy)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.include_router(account_router)
    app.include_router(household_router)
    app.include_router(energy_router)
    app.include_router(bill_router)
    app.include_router(settings_router)
    app.include_router(operator_router)
    app.include_router(operator_console_router)
    app.include_router(operator_market_router)

    @app.exception_handler(SignInNeededError)
    async def to_sign_in(_: Request, error: SignInNeededError) -> Response:
        return RedirectResponse(sign_in_path(error.next_path), status_code=303)

    @app.exception_handler(PageRefusedError)
    async def refused(request: Request, error: PageRefusedError) -> Response:
        return render(request, "refused.html", {"message": error.message}, status=error.status)

    # A path that is no page (nor an API route) is answered as a page, the API's as a problem.
    api_error = app.exception_handlers[StarletteHTTPException]

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, StarletteHTTPException)
        if request.url.path.startswith(_API_PATHS) or error.status_code not in _PAGE_ERRORS:
            answer = api_error(request, error)
            return await answer if inspect.isawaitable(answer) else answer
        return render(
            request,
            "refused.html",
            {"title": "Not found", "message": _PAGE_ERRORS[error.status_code]},
            status=404,
        )

    return app
