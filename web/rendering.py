"""The pages' templates (Jinja2, autoescaped) and how a route renders one.

May import :mod:`web.format` and the market's pure parts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from web.format import FILTERS

TEMPLATES = Jinja2Templates(directory=Path(__file__).parent / "templates")
TEMPLATES.env.filters.update(FILTERS)


def render(
    request: Request,
    name: str,
    context: dict[str, Any],
    *,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    """The template ``name`` with ``context``, and ``me`` (the signed-in session, if any)."""
    context = {"me": getattr(request.state, "web_session", None), **context}
    return TEMPLATES.TemplateResponse(request, name, context, status_code=status, headers=headers)


def invitation_link(public_url: str, secret: str) -> str:
    """The one-time link an invitation's secret opens, on the service's public address."""
    return f"{public_url.rstrip('/')}/invitation?{urlencode({'token': secret})}"
