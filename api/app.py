"""The FastAPI application: households and the energy company, over one database.

:func:`create_app` builds the app around a :class:`api.deps.Platform` (engine, settings, clock)
and its routers; :func:`app_from_settings` builds it from the environment, with the jobs
(:func:`build_jobs`) led by one worker. Authentication is in :mod:`api.deps`, the audit log in
:mod:`api.audit`.
"""

from __future__ import annotations

import gc
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import Depends, FastAPI

from api.audit import AuditMiddleware
from api.deps import FailedAuthentications, Platform, refuse_nul_characters
from api.docs import install_docs
from api.edges import BodySizeLimit, SecurityHeaders
from api.group_commit import GroupCommit
from api.metrics import RequestMetrics, mark_worker_dead
from api.metrics import router as metrics_router
from api.observability import router as observability_router
from api.problems import install_problem_handlers
from api.routes.households import router as households_router
from api.routes.market import router as market_router
from api.routes.meter_data import METER_DATA_PATH
from api.routes.meter_data import router as meter_data_router
from api.routes.open_prices import FeedCacheHits
from api.routes.open_prices import router as open_prices_router
from api.routes.open_results import router as open_results_router
from api.routes.operator import router as operator_router
from api.routes.orders import router as orders_router
from api.routes.strategies import router as strategies_router


def build_jobs(platform: Platform, *, on_polled: Callable[[list, int], None] | None = None) -> list:
    """The platform's jobs, in this order: clearing at gate closure (``MarketScheduler``), meter
    polling and meter energy (``MeterPolling``, telling ``on_polled`` of each cycle), settlement
    (``SettlementJobs``), automatic trading (``StrategyPlanning``)."""
    from datetime import timedelta

    from api.scheduler import MarketScheduler, MeterPolling, SettlementJobs, StrategyPlanning

    settings = platform.settings
    rules = settings.market_rules()
    return [
        MarketScheduler(platform.engine, rules, platform.clock),
        MeterPolling(
            platform.engine,
            rules,
            platform.clock,
            poll_settings=settings.poll_settings(),
            poll_seconds=settings.poll_seconds,
            meter_data_delay=timedelta(minutes=settings.meter_data_delay_minutes),
            map_dirs=settings.meter_map_dirs(),
            on_polled=on_polled,
        ),
        SettlementJobs(
            platform.engine,
            rules,
            platform.clock,
            config=settings.settlement_config(),
            delay=timedelta(minutes=settings.settlement_delay_minutes),
        ),
        StrategyPlanning(platform.engine, rules, platform.clock),
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
    platform = Platform(
        engine=create_database_engine(settings.database_url, **pool),
        settings=settings,
        failed_authentications=FailedAuthentications(
            limit=settings.auth_failure_limit, window_s=settings.auth_failure_window_s
        ),
    )
    # Jobs built afresh each time this worker comes to lead (it may lose and regain the lock).
    platform.jobs = [JobLeader(platform.engine, lambda: build_jobs(platform))]
    return create_app(platform, freeze_heap=True)


def create_app(platform: Platform, *, freeze_heap: bool = False) -> FastAPI:
    """The API over ``platform``; its jobs run while the app does. ``freeze_heap``: a service's
    process, which lives as long as the app (see the lifespan)."""

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
            if freeze_heap:
                # What is alive once the service has started (modules, the app, caches) stays for
                # its life: frozen, the collector's full passes no longer walk it, so a request
                # that happens to trigger one pays for what requests allocate, not for the whole
                # heap (bench/web.py saw full passes of about 0.3 s at the busiest page's tail).
                # Not for an app a test builds and drops: what it froze would never be collected.
                gc.collect()
                gc.freeze()
            yield
        finally:
            for job in reversed(started):
                job.shutdown()
            mark_worker_dead(os.getpid())  # its live gauges leave /metrics with it

    app = FastAPI(
        title="smartbrum",
        version="1",
        summary="Local energy trading: households' orders, the market's clearing, meters and settlement.",
        lifespan=lifespan,
        docs_url=None,  # served by install_docs, from the package rather than a CDN
        redoc_url=None,
        dependencies=[Depends(refuse_nul_characters)],
    )
    app.state.platform = platform
    app.state.group_commit = GroupCommit(platform)
    install_problem_handlers(app)
    install_docs(app)
    # Outermost last: security headers on every answer, every state-changing request audited
    # (a refused one too), a body over the limit refused before it is read.
    app.add_middleware(FeedCacheHits)  # innermost: a repeated feed request answered from its cache
    app.add_middleware(
        BodySizeLimit,
        max_bytes=platform.settings.max_body_bytes,
        by_path={METER_DATA_PATH: platform.settings.max_meter_data_bytes},
    )
    app.add_middleware(AuditMiddleware)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(RequestMetrics)  # outermost: every answer counted, as the client saw it

    app.include_router(market_router, prefix="/v1")
    app.include_router(orders_router, prefix="/v1")
    app.include_router(strategies_router, prefix="/v1")
    app.include_router(households_router, prefix="/v1")
    app.include_router(operator_router, prefix="/v1")
    app.include_router(open_prices_router, prefix="/open/v1")
    app.include_router(open_results_router, prefix="/open/v1")  # public: no token
    app.include_router(meter_data_router, prefix="/v1")
    app.include_router(observability_router)
    app.include_router(metrics_router)
    return app
