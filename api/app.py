"""The FastAPI application: households and the energy company, over one database.

:func:`create_app` builds the app around a :class:`Platform` (engine, settings, clock). Every
request authenticates with ``Authorization: Bearer <token>``: no or a bad token is 401, a
household on an operator route 403, and another household's data 404 (not its data). Every
state-changing request (POST, PUT, PATCH, DELETE), allowed or not, is written to the audit log:
who, what, when, from where, and the status it got.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request, Response
from sqlalchemy.engine import Engine
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint

from api.clock import Clock, SystemClock
from api.problems import ApiProblemError, install_problem_handlers
from api.settings import Settings
from market.access import authenticate, record_audit
from market.database import transaction
from market.participants import HOUSEHOLD, OPERATOR, Participant

STATE_CHANGING = {"POST", "PUT", "PATCH", "DELETE"}
log = logging.getLogger("smartbrum.api")


@dataclass
class Platform:
    """What the app runs on. ``jobs`` start with the app and stop with it (the scheduler)."""

    engine: Engine
    settings: Settings
    clock: Clock = field(default_factory=SystemClock)
    jobs: list = field(default_factory=list)  # objects with start() and shutdown()


def build_jobs(platform: Platform) -> list:
    """The platform's jobs: clearing at gate closure, meter polling, meter energy, settlement."""
    from datetime import timedelta

    from api.scheduler import MarketScheduler, MeterPolling, SettlementJobs

    settings = platform.settings
    rules = settings.market_rules()
    maps = () if settings.meter_maps_dir is None else (settings.meter_maps_dir,)
    return [
        MarketScheduler(platform.engine, rules, platform.clock),
        MeterPolling(
            platform.engine,
            rules,
            platform.clock,
            poll_settings=settings.poll_settings(),
            poll_seconds=settings.poll_seconds,
            meter_data_delay=timedelta(minutes=settings.meter_data_delay_minutes),
            map_dirs=maps,
        ),
        SettlementJobs(
            platform.engine,
            rules,
            platform.clock,
            config=settings.settlement_config(),
            delay=timedelta(minutes=settings.settlement_delay_minutes),
        ),
    ]


def app_from_settings() -> FastAPI:
    """The app ``smartbrum serve`` runs (also in each ``--workers`` process): settings from the
    environment, the jobs led by whichever worker holds the job lock."""
    from api.leader import JobLeader
    from api.settings import get_settings
    from market.database import create_database_engine

    settings = get_settings()
    # One connection for each of the worker's threads (40 by default), so none is opened per request.
    pool = {"pool_size": 20, "max_overflow": 30} if settings.database_url.startswith("postgresql") else {}
    platform = Platform(engine=create_database_engine(settings.database_url, **pool), settings=settings)
    platform.jobs = [JobLeader(platform.engine, build_jobs(platform))]
    return create_app(platform)


def create_app(platform: Platform) -> FastAPI:
    """The API over ``platform``; its jobs run while the app does."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        started = []
        try:
            for job in platform.jobs:
                job.start()
                started.append(job)
            yield
        finally:
            for job in reversed(started):
                job.shutdown()

    app = FastAPI(
        title="smartbrum",
        version="1",
        summary="Local energy trading: households' orders, the market's clearing, meters and settlement.",
        lifespan=lifespan,
    )
    app.state.platform = platform
    install_problem_handlers(app)
    app.add_middleware(AuditMiddleware)

    from api.routes_households import router as households_router
    from api.routes_market import router as market_router
    from api.routes_operator import router as operator_router
    from api.routes_orders import router as orders_router

    app.include_router(market_router, prefix="/v1")
    app.include_router(orders_router, prefix="/v1")
    app.include_router(households_router, prefix="/v1")
    app.include_router(operator_router, prefix="/v1")
    return app


class AuditMiddleware(BaseHTTPMiddleware):
    """Writes every state-changing request to the audit log after it is answered.

    The write runs in the threadpool (a database write must not block the event loop), and a
    failure to write it is logged, not turned into an error for a change already committed.
    """

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        response = await call_next(request)
        if request.method in STATE_CHANGING:
            platform: Platform = request.app.state.platform
            actor = getattr(request.state, "participant_id", None) or "anonymous"
            client = request.client.host if request.client else ""
            entry = {
                "at": platform.clock.now(),
                "actor": actor,
                "method": request.method,
                "path": request.url.path,
                "status_code": response.status_code,
                "client": client,
            }
            try:
                await run_in_threadpool(_audit, platform.engine, entry)
            except Exception:
                log.exception("could not write the audit entry %s", entry)
        return response


def _audit(engine: Engine, entry: dict[str, Any]) -> None:
    with transaction(engine) as session:
        record_audit(session, **entry)


def get_platform(request: Request) -> Platform:
    platform: Platform = request.app.state.platform
    return platform


def get_session(platform: Annotated[Platform, Depends(get_platform)]) -> Iterator[Session]:
    """A session for reads; writes use their own transaction."""
    with Session(platform.engine, expire_on_commit=False) as session:
        yield session


def current_participant(
    request: Request, platform: Annotated[Platform, Depends(get_platform)]
) -> Participant:
    """The participant whose token the request carries; 401 without a live one."""
    header = request.headers.get("authorization", "")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise ApiProblemError(401, "authentication required: send 'Authorization: Bearer <token>'")
    with Session(platform.engine) as session:
        participant = authenticate(session, secret.strip())
    if participant is None:
        raise ApiProblemError(401, "the token is unknown, revoked, or its participant is inactive")
    request.state.participant_id = participant.id
    return participant


def household(participant: Annotated[Participant, Depends(current_participant)]) -> Participant:
    if participant.kind != HOUSEHOLD:
        raise ApiProblemError(403, "this is a household's route")
    return participant


def operator(participant: Annotated[Participant, Depends(current_participant)]) -> Participant:
    if participant.kind != OPERATOR:
        raise ApiProblemError(403, "this route is for the energy company")
    return participant


PlatformDep = Annotated[Platform, Depends(get_platform)]
SessionDep = Annotated[Session, Depends(get_session)]
ParticipantDep = Annotated[Participant, Depends(current_participant)]
HouseholdDep = Annotated[Participant, Depends(household)]
OperatorDep = Annotated[Participant, Depends(operator)]
