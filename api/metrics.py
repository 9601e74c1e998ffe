"""Prometheus metrics: ``GET /metrics``, the requests the API answers and what the jobs did.

Three sources, one exposition:

- **requests** (:class:`RequestMetrics`, every worker): count and latency by method, route
  template (``/v1/orders/{order_id}``, never the raw path) and status;
- **the jobs** (:func:`record_clearing`, :func:`record_poll`, :func:`record_settlement`,
  :func:`record_job_failure`, called by :mod:`api.scheduler` in the worker that leads): runs,
  their seconds, meters failing and breakers open, settlement runs and whether they balance;
- **the market's state** (:class:`MarketCollector`, read from the database at each scrape, so
  any worker answers the same): the last cleared interval and how far clearing lags behind the
  platform clock, the last settlement run and whether it balances.

Under ``smartbrum serve`` the workers share their figures through ``PROMETHEUS_MULTIPROC_DIR``
(made and removed by the command; a worker that exits is marked dead, so its live gauges go).
That variable must be set before this module is first imported: prometheus-client chooses
where values live at import. Without it (tests, the demo) the figures are the process's own.

``/metrics`` needs the operator's token unless ``SMARTBRUM_METRICS_PUBLIC=true``.

May import :mod:`api.deps`, :mod:`api.problems` and the market.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.security import HTTPAuthorizationCredentials
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlmodel import Session, col, func, select
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.clock import Clock
from api.deps import Platform, PlatformDep, bearer_token, current_participant, operator
from api.problems import PROBLEM_RESPONSES
from market.intervals import period_at
from market.rules import MarketRules
from market.settlement import pool_balance_cp
from market.tables import ClearingRunRow, SettlementRunRow

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

HTTP_REQUESTS = Counter(
    "smartbrum_http_requests",
    "HTTP requests answered, by method, route template and status.",
    ["method", "route", "status"],
)
HTTP_SECONDS = Histogram(
    "smartbrum_http_request_duration_seconds",
    "Seconds from a request's arrival to its answer's end, by method and route template.",
    ["method", "route"],
)
CLEARING_RUNS = Counter("smartbrum_clearing_runs", "Clearing runs made by the scheduler.")
CLEARING_SECONDS = Histogram(
    "smartbrum_clearing_seconds",
    "Seconds one interval's clearing took (gather, solve, store).",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
POLL_CYCLES = Counter("smartbrum_poll_cycles", "Meter polling cycles run.")
METER_POLLS = Counter(
    "smartbrum_meter_polls", "Meters polled, by result: read, failed or skipped (breaker open).", ["result"]
)
# Set only by the worker that leads; the others hold 0, and a dead worker's value goes.
METERS_FAILING = Gauge(
    "smartbrum_meters_failing",
    "Meters the latest polling cycle could not read (their breaker open included).",
    multiprocess_mode="livesum",
)
METER_BREAKERS_OPEN = Gauge(
    "smartbrum_meter_breakers_open",
    "Meters skipped by the latest polling cycle because their circuit breaker is open.",
    multiprocess_mode="livesum",
)
METERS_POLLED = Gauge(
    "smartbrum_meters_polled", "Active meters in the latest polling cycle.", multiprocess_mode="livesum"
)
SETTLEMENT_RUNS = Counter(
    "smartbrum_settlement_runs", "Settlement runs made by the jobs, by type.", ["run_type"]
)
SETTLEMENT_UNBALANCED = Counter(
    "smartbrum_settlement_unbalanced_runs",
    "Settlement runs whose ledger lines do not balance (the pool does not net to zero); 0 while "
    "every run balances.",
)
JOB_FAILURES = Counter("smartbrum_job_failures", "Job runs that failed, by job.", ["job"])
PLANNING_RUNS = Counter("smartbrum_planning_runs", "Automatic trading's planning runs.")
PLANNED_HOUSEHOLDS = Counter(
    "smartbrum_planned_households",
    "Households the planning runs bid for, by result: planned (orders made as planned), failed "
    "(skipped: its plan or orders failed) or not_reached (the gate came too close).",
    ["result"],
)
PLANNING_SECONDS = Histogram(
    "smartbrum_planning_seconds", "Seconds a planning run took.", buckets=(0.1, 0.5, 1, 5, 10, 30, 60, 120)
)

for _result in ("read", "failed", "skipped"):
    METER_POLLS.labels(result=_result)
for _job in ("clearing", "polling", "energy", "settlement", "planning"):
    JOB_FAILURES.labels(job=_job)
for _result in ("planned", "failed", "not_reached"):
    PLANNED_HOUSEHOLDS.labels(result=_result)
for _run_type in ("initial", "reconcile"):
    SETTLEMENT_RUNS.labels(run_type=_run_type)


def record_clearing(seconds: float) -> None:
    """Count one clearing run that took ``seconds``."""
    CLEARING_RUNS.inc()
    CLEARING_SECONDS.observe(seconds)


def record_poll(*, polled: int, read: int, failed: int, skipped: int) -> None:
    """Count one polling cycle and set the fleet's gauges from it."""
    POLL_CYCLES.inc()
    METER_POLLS.labels(result="read").inc(read)
    METER_POLLS.labels(result="failed").inc(failed)
    METER_POLLS.labels(result="skipped").inc(skipped)
    METERS_POLLED.set(polled)
    METERS_FAILING.set(failed + skipped)
    METER_BREAKERS_OPEN.set(skipped)


def record_settlement(*, run_type: str, balanced: bool) -> None:
    """Count one settlement run, and whether it balanced."""
    SETTLEMENT_RUNS.labels(run_type=run_type).inc()
    if not balanced:
        SETTLEMENT_UNBALANCED.inc()


def record_planning(*, seconds: float, planned: int, failed: int, not_reached: int) -> None:
    """Count one planning run and what came of its households."""
    PLANNING_RUNS.inc()
    PLANNING_SECONDS.observe(seconds)
    PLANNED_HOUSEHOLDS.labels(result="planned").inc(planned)
    PLANNED_HOUSEHOLDS.labels(result="failed").inc(failed)
    PLANNED_HOUSEHOLDS.labels(result="not_reached").inc(not_reached)


def record_job_failure(job: str) -> None:
    """Count one failed run of ``job`` (clearing, polling, energy, settlement, planning)."""
    JOB_FAILURES.labels(job=job).inc()


def mark_worker_dead(pid: int) -> None:
    """Drop a worker's live gauges (it has exited); a no-op outside multiprocess mode."""
    if os.environ.get(MULTIPROC_ENV):
        multiprocess.mark_process_dead(pid)


class RequestMetrics:
    """ASGI middleware counting every HTTP request by method, route template and status."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        root_path = scope.get("root_path", "")

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            # The router writes the matched route into the scope; an unmatched path is one label,
            # so a scan of made-up paths cannot grow the series without bound.
            route = _route_template(scope, root_path)
            method = scope["method"]
            HTTP_REQUESTS.labels(method=method, route=route, status=str(status)).inc()
            HTTP_SECONDS.labels(method=method, route=route).observe(time.perf_counter() - started)


def _route_template(scope: Scope, root_path: str) -> str:
    """The matched route's full template (``/v1/orders/{order_id}``), or ``unmatched``.

    The route in the scope knows its own path, without the prefix of the router it was included
    with (FastAPI keeps the original route); the prefix is the request path's leading segments
    that the route's own path does not cover.
    """
    route_path = getattr(scope.get("route"), "path", None)
    if not route_path:
        # A mounted app (the static files) sets no route; it extends the root path it serves
        # under instead: one series for the whole mount.
        mounted = scope.get("root_path", "")
        return f"{mounted}/{{path}}" if mounted != root_path else "unmatched"
    own = [segment for segment in route_path.split("/") if segment]
    requested = [segment for segment in scope["path"].split("/") if segment]
    prefix = requested[: max(0, len(requested) - len(own))]
    return "/" + "/".join([*prefix, *own]) + ("/" if route_path.endswith("/") and own else "")


class MarketCollector(Collector):
    """The market's state, read from the database when scraped (any worker answers the same)."""

    def __init__(self, engine: Any, rules: MarketRules, clock: Clock) -> None:
        self.engine = engine
        self.rules = rules
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        length = self.rules.interval_minutes
        with Session(self.engine) as session:
            latest = session.exec(
                select(func.max(ClearingRunRow.interval_start_utc)).where(
                    ClearingRunRow.length_minutes == length, col(ClearingRunRow.is_current)
                )
            ).one()
            settled = session.exec(
                select(SettlementRunRow).order_by(col(SettlementRunRow.id).desc()).limit(1)
            ).first()
            # One run's lines, by their index: cheap at every scrape.
            pool_cp = (
                None if settled is None or settled.id is None else pool_balance_cp(session, run_id=settled.id)
            )
        cleared = GaugeMetricFamily(
            "smartbrum_last_cleared_interval_start_timestamp_seconds",
            "Start (Unix time) of the latest interval with a current clearing run.",
        )
        lag = GaugeMetricFamily(
            "smartbrum_clearing_lag_seconds",
            "How long the gate of the first interval after the last cleared one has been closed "
            "by the platform clock without a clearing run; 0 when clearing is up to date.",
        )
        if latest is not None:
            start = _aware(latest)
            cleared.add_metric([], start.timestamp())
            following = period_at(start, length_minutes=length).next()
            overdue = (self.clock.now() - self.rules.gate_closure_utc(following)).total_seconds()
            lag.add_metric([], max(0.0, overdue))
        yield cleared
        yield lag
        run_time = GaugeMetricFamily(
            "smartbrum_last_settlement_run_timestamp_seconds",
            "When (Unix time) the latest settlement run was made.",
        )
        run_interval = GaugeMetricFamily(
            "smartbrum_last_settlement_run_interval_start_timestamp_seconds",
            "Start (Unix time) of the interval the latest settlement run settled.",
        )
        balanced = GaugeMetricFamily(
            "smartbrum_last_settlement_run_balanced",
            "1 when the latest settlement run (made by the jobs, the API or the command line) "
            "balances: its pool nets to zero.",
        )
        if settled is not None:
            run_time.add_metric([], _aware(settled.created_at).timestamp())
            run_interval.add_metric([], _aware(settled.interval_start_utc).timestamp())
            balanced.add_metric([], 1.0 if pool_cp == 0 else 0.0)
        yield run_time
        yield run_interval
        yield balanced


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


class _ProcessRegistry(Collector):
    """This process's own metrics (outside multiprocess mode)."""

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()


def exposition(platform: Platform) -> bytes:
    """Every metric in Prometheus's text format: all workers' (or this process's) and the
    market's state."""
    registry = CollectorRegistry(auto_describe=False)
    if os.environ.get(MULTIPROC_ENV):
        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(_ProcessRegistry())
    registry.register(MarketCollector(platform.engine, platform.settings.market_rules(), platform.clock))
    return generate_latest(registry)


async def metrics_reader(
    request: Request,
    platform: PlatformDep,
    declared: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_token)],
) -> None:
    """The operator's token, unless the metrics are public (``SMARTBRUM_METRICS_PUBLIC``)."""
    if platform.settings.metrics_public:
        return
    await operator(await current_participant(request, platform, declared))


router = APIRouter(tags=["operations"])


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={
        200: {"description": "Metrics in Prometheus's text format", "content": {CONTENT_TYPE_LATEST: {}}},
        **{status: PROBLEM_RESPONSES[status] for status in (401, 403, 429)},
    },
)
def get_metrics(platform: PlatformDep, _: Annotated[None, Depends(metrics_reader)]) -> Response:
    """Requests by route, status and latency; clearing, polling and settlement; the last cleared
    interval and the clearing lag; the last settlement run. Needs the operator's token unless
    ``SMARTBRUM_METRICS_PUBLIC=true``."""
    return Response(exposition(platform), media_type=CONTENT_TYPE_LATEST)
