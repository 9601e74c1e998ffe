"""Health for orchestrators and load balancers: ``GET /healthz`` and ``GET /readyz``, no token.

``/healthz`` answers 200 while the process serves (a liveness probe: restart it when this
fails). ``/readyz`` answers 200 when the service can do its work, and 503 with an RFC 9457
problem naming each check that failed (``errors[].field``) otherwise:

- ``database``: the database answers;
- ``migrations``: its schema is at the newest revision this release knows (``smartbrum db
  upgrade`` fixes it);
- ``job_leader``: some process holds the job lock, so clearing, polling and settlement run.

May import :mod:`api.deps`, :mod:`api.leader`, :mod:`api.problems` and the market.
"""

from __future__ import annotations

import functools
import logging
from typing import Any, Literal

import sqlalchemy as sa
from fastapi import APIRouter
from pydantic import BaseModel
from sqlalchemy.engine import Engine

from api.deps import Platform, PlatformDep
from api.leader import JobLeader, leader_known
from api.problems import PROBLEM_JSON, ApiProblemError, FieldProblem, Problem
from market.database import head_revision, schema_revision

log = logging.getLogger("smartbrum.health")

router = APIRouter(tags=["operations"])


class Alive(BaseModel):
    status: Literal["alive"] = "alive"


class Ready(BaseModel):
    status: Literal["ready"] = "ready"
    #: Each check's result ("ok").
    checks: dict[str, Literal["ok"]]


@router.get("/healthz", summary="Liveness", response_model=Alive)
async def healthz() -> Alive:
    """200 while the process serves requests; no token needed."""
    return Alive()


_NOT_READY: dict[int | str, dict[str, Any]] = {
    503: {
        "description": "Not ready: the problem's errors name each check that failed "
        "(database, migrations, job_leader)",
        "model": Problem,
        "content": {PROBLEM_JSON: {}},
    }
}


@router.get("/readyz", summary="Readiness", response_model=Ready, responses=_NOT_READY)
def readyz(platform: PlatformDep) -> Ready:
    """200 when the database answers, its migrations are current and a job leader is known;
    503 naming the checks that failed otherwise. No token needed."""
    failed = readiness_problems(platform)
    if failed:
        detail = "not ready: " + "; ".join(f"{problem.field}: {problem.reason}" for problem in failed)
        raise ApiProblemError(503, detail, errors=failed, headers={"Retry-After": "5"})
    return Ready(checks={"database": "ok", "migrations": "ok", "job_leader": "ok"})


def readiness_problems(platform: Platform) -> list[FieldProblem]:
    """The readiness checks that fail, each named (none: ready)."""
    engine = platform.engine
    try:
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
    except Exception as error:
        return [FieldProblem(field="database", reason=f"does not answer ({type(error).__name__})")]
    problems = []
    try:
        current, head = schema_revision(engine), _head_revision(engine)
        if current != head:
            problems.append(
                FieldProblem(
                    field="migrations",
                    reason=f"the schema is at {current or 'no revision'}, this release needs {head}: "
                    "run 'smartbrum db upgrade'",
                )
            )
    except Exception as error:
        problems.append(
            FieldProblem(field="migrations", reason=f"could not be read ({type(error).__name__})")
        )
    if not _leads(platform):
        try:
            known = leader_known(engine)
        except Exception as error:
            problems.append(
                FieldProblem(field="job_leader", reason=f"could not be checked ({type(error).__name__})")
            )
        else:
            if not known:
                problems.append(
                    FieldProblem(
                        field="job_leader", reason="no process holds the job lock: nothing clears or settles"
                    )
                )
    if problems:
        log.warning("not ready: %s", "; ".join(f"{p.field}: {p.reason}" for p in problems))
    return problems


def _leads(platform: Platform) -> bool:
    return any(isinstance(job, JobLeader) and job.leading for job in platform.jobs)


@functools.lru_cache(maxsize=16)
def _head_revision(engine: Engine) -> str | None:
    # The packaged migrations do not change while the process runs.
    return head_revision(engine)
