"""The interactive API documentation at ``/docs``: Swagger UI served by the app itself.

Its script and style (Swagger UI 5, which reads OpenAPI 3.1) come from the ``fastapi-offline``
package and its start-up script from
``api/static``, all under ``/docs/assets/``, so the page loads nothing from another origin and its
content security policy (:data:`api.edges.DOCS_CSP`) allows no inline script. ReDoc is not
served: one documentation page is enough, and it would need looser rules (blob: workers).

May import nothing from the project.
"""

from __future__ import annotations

import html
from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse
from starlette.exceptions import HTTPException

DOCS_PATH = "/docs"
ASSETS_PATH = f"{DOCS_PATH}/assets"
_STATIC = Path(__file__).with_name("static")
#: Where ``fastapi-offline`` keeps Swagger UI's files (its own code is not used).
_SWAGGER_UI = Path(str(files("fastapi_offline") / "static"))
#: Every file the page loads, by its name under :data:`ASSETS_PATH`: where it is and its type.
ASSETS: dict[str, tuple[Path, str]] = {
    "swagger-ui-bundle.js": (_SWAGGER_UI / "swagger-ui-bundle.js", "text/javascript"),
    "swagger-ui.css": (_SWAGGER_UI / "swagger-ui.css", "text/css"),
    "favicon.png": (_SWAGGER_UI / "favicon.png", "image/png"),
    "docs-init.js": (_STATIC / "docs-init.js", "text/javascript"),
}

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="stylesheet" href="{assets}/swagger-ui.css">
<link rel="icon" type="image/png" href="{assets}/favicon.png">
</head>
<body>
<div id="swagger-ui" data-openapi="{openapi}"></div>
<script src="{assets}/swagger-ui-bundle.js"></script>
<script src="{assets}/docs-init.js"></script>
</body>
</html>
"""


def install_docs(app: FastAPI) -> None:
    """Serve ``/docs`` and its assets on ``app`` (made with ``docs_url=None, redoc_url=None``)."""

    @app.get(DOCS_PATH, include_in_schema=False)
    async def docs(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        return HTMLResponse(
            _PAGE.format(
                title=html.escape(f"{app.title} API"),
                assets=html.escape(root + ASSETS_PATH),
                openapi=html.escape(root + (app.openapi_url or "/openapi.json")),
            )
        )

    @app.get(ASSETS_PATH + "/{name}", include_in_schema=False)
    async def asset(name: str) -> FileResponse:
        if name not in ASSETS:
            raise HTTPException(404, f"no documentation asset {name!r}")
        path, media_type = ASSETS[name]
        return FileResponse(path, media_type=media_type)
