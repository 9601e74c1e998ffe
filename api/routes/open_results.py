"""Open market results for the city (issue 18): public, no token, one finished day a request.

``GET /open/v1/results?date=D`` answers the day's results per feeder and period as JSON (cells and
totals), or with ``format=csv`` one table as CSV (``table=cells``, the default, or ``totals``),
the same files ``smartbrum open-data export`` writes. The figures, the privacy threshold and the
suppression are :mod:`market.open_results`'; this module only serves them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, Response

from api.deps import PlatformDep, SessionDep
from api.problems import PROBLEM_RESPONSES
from api.schemas import SettlementDate
from market.open_results import (
    cells_csv,
    open_results,
    results_file_names,
    results_json,
    results_json_schema,
    totals_csv,
)

router = APIRouter(tags=["open data"])

#: Public: no token, so neither 401 nor 403; the rest as every route.
_PROBLEMS: dict[int | str, dict[str, Any]] = {status: PROBLEM_RESPONSES[status] for status in (413, 422)}
#: A finished day changes only when a reading is corrected or an interval re-cleared.
_CACHE = "public, max-age=300"


@router.get(
    "/results",
    response_model=None,
    responses={
        **_PROBLEMS,
        200: {
            "description": "The day's results (JSON), or one of its tables (CSV)",
            "content": {
                "application/json": {"schema": results_json_schema()},
                "text/csv": {"schema": {"type": "string"}},
            },
        },
    },
)
def results(
    platform: PlatformDep,
    session: SessionDep,
    on: Annotated[SettlementDate, Query(alias="date", description="A settlement date that is over.")],
    as_format: Annotated[Literal["json", "csv"], Query(alias="format", description="json or csv.")] = "json",
    table: Annotated[
        Literal["cells", "totals"],
        Query(description="For CSV: the cells (per feeder and period) or the totals over published cells."),
    ] = "cells",
) -> Response:
    """A finished settlement date's market results per feeder and period, with households
    protected: a cell where fewer than the threshold of households contributed is suppressed
    (marked, its figures empty), and totals cover published cells only. A date not yet over is
    a 422 naming ``date``."""
    settings = platform.settings
    found = open_results(
        session,
        settlement_date=on,
        length_minutes=settings.interval_minutes,
        min_households=settings.open_data_min_households,
        licence=settings.open_data_licence(),
        now=platform.clock.now(),
    )
    headers = {"Cache-Control": _CACHE}
    if as_format == "json":
        return JSONResponse(results_json(found), headers=headers)
    cells_file, totals_file = results_file_names(on)
    name, text = (cells_file, cells_csv(found)) if table == "cells" else (totals_file, totals_csv(found))
    headers["Content-Disposition"] = f'attachment; filename="{name}"'
    return Response(text, media_type="text/csv; charset=utf-8", headers=headers)
