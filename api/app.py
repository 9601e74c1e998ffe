"""The FastAPI application: households and the energy company, over one database.

:func:`create_app` builds the app around a :class:`Platform` (engine, settings, clock). Every
request authenticates with ``Authorization: Bearer <token>``: no or a bad token is 401, a
household on an operator route 403, and another household's data 404 (not its data). Every
state-changing request (POST, PUT, PATCH, DELETE), allowed or not, is written to the audit log:
who, what, when, from where, and the status it got.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any

import anyio.to_thread
import sqlalchemy as sa
from fastapi import Depends, FastAPI, Request
from sqlalchemy.engine import Engine
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.clock import Clock, SystemClock
from api.problems import ApiProblemError, install_problem_handlers
from api.settings import Settings
from market.access import authenticate, record_audit, token_hash
from market.database import transaction
from market.participants import HOUSEHOLD, OPERATOR, Participant

STATE_CHANGING = {"POST", "PUT", "PATCH", "DELETE"}
log = logging.getLogger("smartbrum.api")


#: How long a worker trusts a token it has checked. A token revoked, or a participant made
#: inactive, stops working at once on the worker that did it and within this on the others.
TOKEN_CACHE_SECONDS = 5.0
_TOKEN_CACHE_SIZE = 50_000


@dataclass
class Platform:
    """What the app runs on. ``jobs`` start with the app and stop with it (the scheduler)."""

    engine: Engine
    settings: Settings
    clock: Clock = field(default_factory=SystemClock)
    jobs: list = field(default_factory=list)  # objects with start() and shutdown()
    #: How long this worker trusts a token it has checked (0: ask the database every time).
    token_cache_seconds: float = TOKEN_CACHE_SECONDS
    #: token hash -> (the participant, when to check again: time.monotonic())
    tokens: dict[str, tuple[Participant, float]] = field(default_factory=dict)


def build_jobs(platform: Platform, *, on_polled: Callable[[list, int], None] | None = None) -> list:
    """The platform's jobs, in this order: clearing at gate closure (``MarketScheduler``), meter
    polling and meter energy (``MeterPolling``, telling ``on_polled`` of each cycle), settlement
    (``SettlementJobs``)."""
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
            on_polled=on_polled,
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
    # A connection kept for each of the worker's threads (create_app sets their number), so none
    # is opened and closed per request; the overflow covers a request holding two for a moment.
    threads = settings.worker_threads
    pool = {"pool_size": threads, "max_overflow": threads // 2 + 1}
    if not settings.database_url.startswith("postgresql"):
        pool = {}
    platform = Platform(engine=create_database_engine(settings.database_url, **pool), settings=settings)
    platform.jobs = [JobLeader(platform.engine, build_jobs(platform))]
    return create_app(platform)


def create_app(platform: Platform) -> FastAPI:
    """The API over ``platform``; its jobs run while the app does."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # As many threads for requests' database work as the pool keeps connections (anyio's
        # default of 40 outran a pool of 20 and reopened a connection per request under load).
        anyio.to_thread.current_default_thread_limiter().total_tokens = platform.settings.worker_threads
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


class AuditMiddleware:
    """Writes every state-changing request to the audit log once it is answered (a plain ASGI
    middleware: no extra task or threadpool hop per request).

    A route that writes its own audit row inside its change's transaction (:func:`audit_in`) is
    skipped, so the change and its audit row commit together; for the rest the row is written in
    the threadpool (a database write must not block the event loop), and a failure to write it is
    logged, not turned into an error for a change already committed. A state-changing request by
    the operator also forgets the worker's checked tokens, so a revocation there takes effect at
    once.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in STATE_CHANGING:
            await self.app(scope, receive, send)
            return
        status: list[int] = []

        async def send_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            state = scope.setdefault("state", {})
            platform: Platform = scope["app"].state.platform
            if state.get("participant_kind") == OPERATOR:
                platform.tokens.clear()
            if not state.get("audited"):
                client = scope.get("client")
                entry = {
                    "at": platform.clock.now(),
                    "actor": state.get("participant_id") or "anonymous",
                    "method": scope["method"],
                    "path": scope["path"],
                    "status_code": status[0] if status else 500,
                    "client": client[0] if client else "",
                }
                try:
                    await run_in_threadpool(_audit, platform.engine, entry)
                except Exception:
                    log.exception("could not write the audit entry %s", entry)


def audit_in(session: Session, request: Request, platform: Platform, status_code: int) -> None:
    """Write the request's audit row in ``session``'s transaction, with the change it audits (the
    middleware then leaves it). Only for a route that knows its status before it commits."""
    record_audit(
        session,
        at=platform.clock.now(),
        actor=getattr(request.state, "participant_id", None) or "anonymous",
        method=request.method,
        path=request.url.path,
        status_code=status_code,
        client=request.client.host if request.client else "",
    )
    # Marked once committed: a transaction that fails after this leaves the row to the middleware.
    sa.event.listen(session, "after_commit", lambda _: setattr(request.state, "audited", True), once=True)


def _audit(engine: Engine, entry: dict[str, Any]) -> None:
    with transaction(engine) as session:
        record_audit(session, **entry)


async def get_platform(request: Request) -> Platform:
    platform: Platform = request.app.state.platform
    return platform


def get_session(platform: Annotated[Platform, Depends(get_platform)]) -> Iterator[Session]:
    """A session for reads; writes use their own transaction."""
    with Session(platform.engine, expire_on_commit=False) as session:
        yield session


async def current_participant(
    request: Request, platform: Annotated[Platform, Depends(get_platform)]
) -> Participant:
    """The participant whose token the request carries; 401 without a live one.

    A worker remembers a token it has checked for ``platform.token_cache_seconds`` (only hashes
    are kept); the database is asked, off the event loop, when it has not or that has passed.
    """
    header = request.headers.get("authorization", "")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise ApiProblemError(401, "authentication required: send 'Authorization: Bearer <token>'")
    key = token_hash(secret.strip())
    now = time.monotonic()
    known = platform.tokens.get(key)
    if known is not None and known[1] > now:
        participant = known[0]
    else:
        found = await run_in_threadpool(_authenticate, platform.engine, secret.strip())
        if found is None:
            platform.tokens.pop(key, None)
            raise ApiProblemError(401, "the token is unknown, revoked, or its participant is inactive")
        if len(platform.tokens) >= _TOKEN_CACHE_SIZE:
            platform.tokens.clear()
        platform.tokens[key] = (found, now + platform.token_cache_seconds)
        participant = found
    request.state.participant_id = participant.id
    request.state.participant_kind = participant.kind
    return participant


def _authenticate(engine: Engine, secret: str) -> Participant | None:
    with Session(engine) as session:
        return authenticate(session, secret)


async def household(participant: Annotated[Participant, Depends(current_participant)]) -> Participant:
    if participant.kind != HOUSEHOLD:
        raise ApiProblemError(403, "this is a household's route")
    return participant


async def operator(participant: Annotated[Participant, Depends(current_participant)]) -> Participant:
    if participant.kind != OPERATOR:
        raise ApiProblemError(403, "this route is for the energy company")
    return participant


PlatformDep = Annotated[Platform, Depends(get_platform)]
SessionDep = Annotated[Session, Depends(get_session)]
ParticipantDep = Annotated[Participant, Depends(current_participant)]
HouseholdDep = Annotated[Participant, Depends(household)]
OperatorDep = Annotated[Participant, Depends(operator)]
