"""The operator's upload of half-hourly meter data files (:mod:`market.meter_files`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from api.deps import OperatorDep, PlatformDep
from api.problems import MARKET_RULE, PROBLEM_JSON, PROBLEM_RESPONSES, ApiProblemError, FieldProblem, Problem
from api.schemas import MeterDataImportPublic
from market.meter_files import (
    HEADER,
    MAX_LISTED_PROBLEMS,
    MeterFileError,
    decode_meter_file,
    import_meter_file,
)

router = APIRouter(responses=PROBLEM_RESPONSES, tags=["operator"])
#: The upload's path: the body size limit gives it its own (``max_meter_data_bytes``).
METER_DATA_PATH = "/v1/meter-data"
#: Problems a 422 lists (all are counted in its detail).
LISTED_IN_PROBLEM = 100

_CSV_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "text/csv": {
                "schema": {"type": "string"},
                "example": ",".join(HEADER) + "\n1400000000010,2026-11-20,27,0.412,0.000,actual\n",
            }
        },
    }
}


@router.post(
    "/meter-data",
    response_model=MeterDataImportPublic,
    openapi_extra=_CSV_BODY,
    responses={
        415: {"description": "The body is not text/csv", "model": Problem, "content": {PROBLEM_JSON: {}}}
    },
)
async def upload_meter_data(
    request: Request,
    _: OperatorDep,
    platform: PlatformDep,
    skip_bad: Annotated[bool, Query(description="Store the good rows even if some are bad.")] = False,
) -> MeterDataImportPublic:
    """Import a half-hourly meter data file (``Content-Type: text/csv``): a header line naming
    ``mpan, settlement_date, settlement_period, import_kwh, export_kwh, quality``, then a row per
    MPAN and settlement period (Europe/London). Every row is checked; with any bad row nothing
    is stored (422, listing the first rows at fault by number, the header being row 1), unless
    ``skip_bad``: then the good rows are stored and the answer (200) lists the bad ones. Stored
    energy is a new revision where it changed, reconciled as a late reading is."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "text/csv":
        raise ApiProblemError(
            415,
            f"the body must be text/csv, not {media_type or 'untyped'}",
            errors=[FieldProblem(field="Content-Type", reason="must be text/csv")],
        )
    try:
        text = decode_meter_file(await request.body())
        summary = await run_in_threadpool(
            import_meter_file,
            platform.engine,
            text,
            now=platform.clock.now(),
            skip_bad=skip_bad,
            interval_minutes=platform.settings.interval_minutes,
        )
    except MeterFileError as error:
        raise ApiProblemError(
            422, str(error), errors=[FieldProblem(field=error.field, reason=error.reason)]
        ) from None
    if summary.bad and not skip_bad:
        listed = summary.problems[:LISTED_IN_PROBLEM]
        first = summary.problems[0]
        raise ApiProblemError(
            422,
            f"{summary.bad} of {summary.rows_read} rows are bad (first: row {first.row}, {first.field}: "
            f"{first.reason}); nothing was stored (skip_bad=true stores the good rows)",
            errors=[FieldProblem(field=f"row[{p.row}].{p.field}", reason=p.reason) for p in listed],
            type_=MARKET_RULE,
        )
    answer = summary.as_dict()
    answer["problems"] = answer["problems"][:MAX_LISTED_PROBLEMS]
    return MeterDataImportPublic(**answer)
