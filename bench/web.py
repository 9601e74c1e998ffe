"""Benchmark of the web app: each page's server time with 10,000 households and a month of data.

What it measures
----------------
On each backend (a fresh SQLite file, or a fresh schema in the local PostgreSQL, dropped
afterwards), built by the Alembic migrations:

1. Setup, not timed (its seconds are reported). The operator, a feeder tree of the grid supply
   point ``GSP``, four primaries ``P1`` ... ``P4`` and 100 feeders ``F001`` ... ``F100`` under them
   (25 a primary; two sunny streets a primary whose export congests at midday), the backstop
   tariff, and ``--households`` households round-robin over the feeders, each with a meter,
   through the market's bulk registration (:func:`bench.harness.seed_market`); half of them have
   joined (an account row each, bulk-inserted with one argon2id hash: hashing 5,000 passwords
   would take minutes and is not what a page reads). Then ``--days`` days up to today
   (30 June 2026; the platform clock stands still at 12:00 BST, period 25):

   - the **measured households** (``--measured``, the first N) trade on every day: each
     household's day of orders through :func:`market.orders.place_orders` (the day-ahead batch
     ``POST /v1/orders/batch`` makes, with its ``placed`` events, so an order's page has a
     history), the day before, as bench/settlement.py generates them (a forecast of the metered
     position, 35% of households in two price steps); tomorrow's orders too, open;
   - **every household** trades on yesterday only, its orders bulk-inserted as bench/settlement.py
     inserts them (seeding a month for 10,000 households would clear 1,440 intervals of 10,000
     households and take hours: the report says which households have a month);
   - every interval whose gate has closed is cleared with the real
     :func:`market.clearing.clear_interval` at its gate closure (so trades and node prices are
     real), its interval energy bulk-inserted as :func:`market.meter_data.store_meter_energy`
     stores it, and every day before today settled with
     :func:`market.settlement.settle_periods` (initial runs, VAT 5%, platform fee 0.1 p/kWh), so
     the statements' ledger lines exist.

   A session is opened (:func:`market.accounts.open_session`) for every measured household and
   the operator, as signing in does.

2. **The pages, timed**: every page of :data:`PAGES` (one line each: every page on main, the
   household's and the operator's), ``--requests`` GETs each after ``--warmup`` untimed ones (at
   most ``--page-seconds`` a page), the measured households taking turns (an order page shows one
   of that household's orders of yesterday), the operator's pages as the operator. Requests go
   to the real composed service, :func:`web.app.create_service` (the API's middlewares, the
   session check, the page, its template), in process through httpx2's ASGI transport, one at a
   time. The server time of a request is measured by a thin ASGI wrapper around the service:
   from the request reaching the app to its last body message, so it leaves out the client and
   the transport; every answer must have the page's status (200, or 303 for the page that sends
   to the last cleared interval).

   Why in process rather than against ``smartbrum serve``: the service sends no
   ``Server-Timing`` header, and timing at the client over loopback would add the client's own
   CPU on this 2-core machine to every figure; uvicorn's HTTP parsing, the one layer left out, is
   well under a millisecond per request. One request at a time gives the page's own time, without
   queueing behind other requests (bench/api.py measures the service under concurrent load).

The target (issue 16): each page's p95 server time under 150 ms, binding at 10,000 households
or more and 28 days or more.

Usage
-----
::

    .venv/bin/python bench/web.py                     # both backends, 10,000 households, 30 days
    .venv/bin/python bench/web.py --quick             # 300 households, 3 days, 5 measured
    .venv/bin/python bench/web.py --backend postgresql --households 2000 --days 7
    .venv/bin/python bench/web.py --profile var/profiles   # cProfile each page's timed requests

With ``--profile DIR`` each page's timed requests run under cProfile, stats written to
``DIR/<backend>-<page>.prof``; the figures then include the profiler's overhead.
"""

# ruff: noqa: E402 (the project's imports must come after the sys.path fix below)

from __future__ import annotations

import argparse
import asyncio
import cProfile
import re
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx2
import numpy as np
import sqlalchemy as sa
from rich.table import Table
from sqlalchemy.engine import Engine
from sqlmodel import col, func, select
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_BENCH = Path(__file__).resolve().parent  # run by path, bench/ heads sys.path: see bench/harness.py
sys.path[:] = [str(_BENCH.parent), *(entry for entry in sys.path if Path(entry or ".").resolve() != _BENCH)]

from api.clock import SystemClock
from api.deps import Platform
from api.settings import Settings
from bench import harness
from bench.settlement import Homes, energy_rows, generate_energy, order_rows, table
from market.accounts import _HASHER, open_session
from market.clearing import clear_interval
from market.database import transaction
from market.intervals import SettlementPeriod, periods_of_day
from market.orders import OrderRequest, place_orders
from market.participants import NewMeter
from market.rules import MarketRules
from market.settlement import INITIAL, SettlementConfig, settle_periods
from market.tables import (
    AccountRow,
    IntervalEnergyRow,
    LedgerLineRow,
    OrderRow,
    SettlementRunRow,
    TradeRow,
)
from market.units import TICKS_PER_P, WH_PER_KWH
from optimiser import Network, Node
from web.app import create_service
from web.sessions import SESSION_COOKIE

TODAY = date(2026, 6, 30)
#: The platform clock: 12:00 BST on :data:`TODAY` (period 25), standing still while pages are timed.
NOW = datetime(2026, 6, 30, 11, 0, tzinfo=UTC)
PRIMARIES = ("P1", "P2", "P3", "P4")
FEEDERS = tuple(f"F{i:03d}" for i in range(1, 101))
#: Two sunny streets under each primary: their midday export congests.
SUNNY_FEEDERS = tuple(f"F{25 * p + k:03d}" for p in range(4) for k in (1, 2))
TARGET_MS = 150.0
TARGET_HOUSEHOLDS = 10_000
TARGET_DAYS = 28
SETTLEMENT = SettlementConfig(vat_rate=Decimal("0.05"), platform_fee_p_per_kwh=Decimal("0.1"))
_TITLE = re.compile(r"<title>([^<]*)</title>")
log = harness.progress_logger()


@dataclass(frozen=True)
class Page:
    """A page to time: its name, its path (``{order}``, ``{yesterday}`` filled per household) and
    who asks for it (``household`` or ``operator``), and its status."""

    name: str
    path: str
    role: str = "household"
    #: What the page answers: 303 for a page that sends to another (the last cleared interval's).
    status: int = 200


#: Every page of the web app, one line each: add a page here to time it. ``{yesterday}`` (the day
#: every household traded), ``{order}`` (one of the household's orders of it), ``{household}``
#: (the first measured household) and ``{run}`` (a settlement run of it) are filled in.
PAGES = (
    Page("Today", "/today"),
    Page("Orders (today)", "/orders"),
    Page("Orders (yesterday, cleared)", "/orders?date={yesterday}"),
    Page("One order", "/orders/{order}"),
    Page("Energy (yesterday)", "/energy?date={yesterday}"),
    Page("Bill (the month)", "/bill"),
    Page("Bill CSV (the month)", "/bill.csv"),
    Page("Bill (yesterday)", "/bill/days/{yesterday}"),
    Page("Settings", "/settings"),
    Page("Account (household)", "/account"),
    Page("Overview", "/operator", "operator"),
    Page("Households", "/operator/households", "operator"),
    Page("Households (search)", "/operator/households?q=H0004", "operator"),
    Page("Deactivate (confirm)", "/operator/households/{household}/deactivate", "operator"),
    Page("Network", "/operator/network", "operator"),
    Page("Intervals (to the last cleared)", "/operator/intervals", "operator", 303),
    Page("An interval (yesterday)", "/operator/intervals/{yesterday}/26", "operator"),
    Page("Settlement runs", "/operator/settlement", "operator"),
    Page("A settlement run", "/operator/settlement/{run}", "operator"),
    Page("Meters", "/operator/meters", "operator"),
    Page("Audit log", "/operator/audit", "operator"),
    Page("Invite", "/operator/invite", "operator"),
    Page("Account (operator)", "/account", "operator"),
)


# --- the seeded month ----------------------------------------------------------------------------


def bench_network(households: int) -> Network:
    """The feeder tree: ``GSP``, four primaries (0.4 p/kWh), 25 feeders under each (0.2 p/kWh).

    Every feeder carries 10 kWh per household of it each way (ample), each primary its feeders'
    sum; the sunny feeders' export is 0.3 kWh per household, well below their midday surplus.
    """
    per_feeder = max(1, households // len(FEEDERS))
    feeder_kwh = Decimal(max(100, 10 * per_feeder))
    tight_kwh = Decimal(max(1, int(0.3 * per_feeder)))
    nodes = [Node(p, "GSP", feeder_kwh * 25, feeder_kwh * 25, Decimal("0.4")) for p in PRIMARIES]
    nodes += [
        Node(
            feeder,
            PRIMARIES[i // 25],
            feeder_kwh,
            tight_kwh if feeder in SUNNY_FEEDERS else feeder_kwh,
            Decimal("0.2"),
        )
        for i, feeder in enumerate(FEEDERS)
    ]
    return Network("GSP", tuple(nodes))


def generate_homes(households: int, rng: np.random.Generator) -> Homes:
    """Households ``H00001`` ... round-robin over the feeders, with meters ``M00001`` ..., their
    load, solar panels (70% on sunny streets, 25% elsewhere) and order habits."""
    feeders = [FEEDERS[i % len(FEEDERS)] for i in range(households)]
    sunny = np.array([feeder in SUNNY_FEEDERS for feeder in feeders])
    solar = rng.random(households) < np.where(sunny, 0.7, 0.25)
    return Homes(
        ids=[f"H{i + 1:05d}" for i in range(households)],
        meter_ids=[f"M{i + 1:05d}" for i in range(households)],
        feeders=feeders,
        solar=solar,
        load_factor=rng.uniform(0.5, 1.8, households),
        kwp=np.where(solar, rng.uniform(2.5, 5.0, households), 0.0),
        splits=rng.random(households) < 0.35,
    )


def first(homes: Homes, count: int) -> Homes:
    """The first ``count`` households, as a :class:`Homes` of their own."""
    return Homes(
        homes.ids[:count],
        homes.meter_ids[:count],
        homes.feeders[:count],
        homes.solar[:count],
        homes.load_factor[:count],
        homes.kwp[:count],
        homes.splits[:count],
    )


def order_requests(rows: Sequence[dict[str, Any]], period: SettlementPeriod) -> dict[str, list[OrderRequest]]:
    """Generated order rows (bench/settlement.py's) as :func:`place_orders` requests, per household."""
    requests: dict[str, list[OrderRequest]] = {}
    for row in rows:
        requests.setdefault(row["participant_id"], []).append(
            OrderRequest(
                period,
                row["side"],
                Decimal(row["quantity_wh"]) / WH_PER_KWH,
                Decimal(row["price_ticks"]) / TICKS_PER_P,
            )
        )
    return requests


@dataclass
class Seeded:
    """What the setup made: counts, seconds, and the measured households' sessions and orders."""

    households: int = 0
    measured: int = 0
    days: int = 0
    orders: int = 0
    trades: int = 0
    energy_rows: int = 0
    ledger_lines: int = 0
    intervals_cleared: int = 0
    intervals_settled: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    #: participant id -> (the session's secret, the values filling its pages' paths)
    sessions: dict[str, tuple[str, dict[str, str]]] = field(default_factory=dict)


def seed(engine: Engine, homes: Homes, args: argparse.Namespace, label: str) -> Seeded:
    """Build the market, the month of trading, clearing, energy and settlement (not timed).

    Parameters
    ----------
    engine : Engine
        A migrated, empty database.
    homes : Homes
        Every household; the first ``args.measured`` trade on every day.
    args : argparse.Namespace
        The command line (``days``, ``measured``, ``seed``).
    label : str
        The backend's name, for the progress lines.

    Returns
    -------
    Seeded
        Counts, seconds, and a session per measured household and the operator.
    """
    seeded = Seeded(households=len(homes), measured=args.measured, days=args.days)
    rng = np.random.default_rng(args.seed)
    rules = MarketRules()
    sample = first(homes, args.measured)
    sample_ids = set(sample.ids)
    days = [TODAY - timedelta(days=k) for k in range(args.days - 1, -1, -1)]
    yesterday = TODAY - timedelta(days=1)
    clock = time.perf_counter()
    harness.seed_market(
        engine,
        dict(zip(homes.ids, homes.feeders)),
        now=datetime.combine(days[0] - timedelta(days=3), datetime.min.time(), UTC),
        network=bench_network(len(homes)),
        meters=[
            NewMeter(meter, home, f"gw{i // 200:03d}.meters.brum", 502, i % 200 + 1, "tcp", "sdm630")
            for i, (meter, home) in enumerate(zip(homes.meter_ids, homes.ids))
        ],
    )
    joined_at = datetime.combine(days[0] - timedelta(days=2), datetime.min.time(), UTC)
    password_hash = _HASHER.hash("a benchmark's password")
    joined = [harness.OPERATOR_ID, *homes.ids[: max(args.measured, len(homes) // 2)]]
    with engine.begin() as connection:
        connection.execute(
            sa.insert(table(AccountRow)),
            [
                {
                    "participant_id": who,
                    "password_hash": password_hash,
                    "password_changed_at": joined_at,
                    "created_at": joined_at,
                }
                for who in joined
            ],
        )
    seeded.seconds["households and accounts"] = time.perf_counter() - clock
    log.info(f"{label}: {len(homes):,} households registered, {len(joined):,} joined")

    placing = clearing = inserting = 0.0
    for day in [*days, TODAY + timedelta(days=1)]:
        everyone = day == yesterday
        trading = homes if everyone else sample
        placed_at = datetime.combine(day - timedelta(days=1), datetime.min.time(), UTC) + timedelta(hours=11)
        day_requests: dict[str, list[OrderRequest]] = {}
        closed: list[SettlementPeriod] = []
        started = time.perf_counter()
        for period in periods_of_day(day, length_minutes=rules.interval_minutes):
            energy = generate_energy(trading, period.period, rng)
            rows = order_rows(trading, period, energy, rng)
            with engine.begin() as connection:
                if everyone:  # the rest's orders in bulk; the measured households' placed below
                    rest = [row for row in rows if row["participant_id"] not in sample_ids]
                    connection.execute(sa.insert(table(OrderRow)), rest)
                    seeded.orders += len(rest)
                if period.end_utc <= NOW:
                    connection.execute(
                        sa.insert(table(IntervalEnergyRow)), energy_rows(trading, period, energy)
                    )
                    seeded.energy_rows += len(trading)
            mine = [row for row in rows if row["participant_id"] in sample_ids]
            for household, requests in order_requests(mine, period).items():
                day_requests.setdefault(household, []).extend(requests)
            if rules.gate_closure_utc(period) <= NOW:
                closed.append(period)
        inserting += time.perf_counter() - started
        started = time.perf_counter()
        for household, requests in day_requests.items():
            with transaction(engine) as session:
                orders, _ = place_orders(
                    session, rules=rules, participant_id=household, requests=requests, now=placed_at
                )
            seeded.orders += len(orders)
        placing += time.perf_counter() - started
        started = time.perf_counter()
        for period in closed:
            clear_interval(
                engine, period=period, rules=rules, now=rules.gate_closure_utc(period), triggered_by="bench"
            )
        seeded.intervals_cleared += len(closed)
        clearing += time.perf_counter() - started
        log.info(
            f"{label}: {day}: {len(trading):,} households' orders, {len(closed)} intervals cleared "
            f"({time.perf_counter() - started:.1f} s)"
        )
    seeded.seconds["orders placed (measured)"] = placing
    seeded.seconds["orders and energy inserted"] = inserting
    seeded.seconds["clearing"] = clearing

    started = time.perf_counter()
    past = [period for day in days if day < TODAY for period in periods_of_day(day, length_minutes=30)]
    outcomes = settle_periods(
        engine, past, run_type=INITIAL, config=SETTLEMENT, now=NOW - timedelta(hours=4), triggered_by="bench"
    )
    seeded.intervals_settled = sum(1 for outcome in outcomes if outcome.created)
    seeded.seconds["settlement"] = time.perf_counter() - started
    log.info(f"{label}: {seeded.intervals_settled} intervals settled ({seeded.seconds['settlement']:.1f} s)")

    with transaction(engine) as session:
        seeded.trades = session.exec(select(func.count()).select_from(TradeRow)).one()
        seeded.ledger_lines = session.exec(select(func.count()).select_from(LedgerLineRow)).one()
        run = session.exec(
            select(func.max(SettlementRunRow.id)).where(SettlementRunRow.settlement_date == yesterday)
        ).one()
        for who in [*sample.ids, harness.OPERATOR_ID]:
            opened = open_session(session, participant_id=who, now=NOW)
            order = session.exec(
                select(OrderRow.id)
                .where(OrderRow.participant_id == who, OrderRow.settlement_date == yesterday)
                .order_by(col(OrderRow.period))
                .offset(20)
                .limit(1)
            ).first()
            seeded.sessions[who] = (
                opened.secret,
                {
                    "order": order or "none",
                    "yesterday": yesterday.isoformat(),
                    "household": sample.ids[0],
                    "run": str(run),
                },
            )
    return seeded


# --- the timed pages -----------------------------------------------------------------------------


class ServerTimer:
    """An ASGI wrapper that times each HTTP request from reaching the app to its last body
    message: the server's time, without the client or the transport."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.seconds: float | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()

        async def timed_send(message: Message) -> None:
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                self.seconds = time.perf_counter() - started

        await self.app(scope, receive, timed_send)


@contextmanager
def inline_threadpool(enabled: bool) -> Iterator[None]:
    """With ``enabled``, run the app's blocking work (sync routes and dependencies, the session
    check) on the event loop's thread instead of a worker thread, so that cProfile, which sees one
    thread, sees it; the figures then include the profiler's overhead anyway."""
    if not enabled:
        yield
        return
    import fastapi.dependencies.utils
    import fastapi.routing

    import api.audit
    import api.deps
    import web.sessions

    async def inline(func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        return func(*args, **kwargs)

    modules = (fastapi.routing, fastapi.dependencies.utils, web.sessions, api.deps, api.audit)
    originals = [module.run_in_threadpool for module in modules]
    for module in modules:
        module.run_in_threadpool = inline  # type: ignore[attr-defined]
    try:
        yield
    finally:
        for module, original in zip(modules, originals):
            module.run_in_threadpool = original  # type: ignore[attr-defined]


@dataclass
class Timed:
    """One page's timed requests: milliseconds each."""

    page: Page
    milliseconds: list[float] = field(default_factory=list)

    def quantile(self, share: float) -> float:
        return harness.percentile(self.milliseconds, share)


async def time_pages(
    app: ASGIApp, seeded: Seeded, args: argparse.Namespace, label: str
) -> tuple[list[Timed], list[str]]:
    """GET every page ``args.warmup`` times untimed, then ``args.requests`` times timed.

    Returns
    -------
    tuple of (list of Timed, list of str)
        Per page the server times, and the problems found (an answer other than the page's status).
    """
    timer = ServerTimer(app)
    problems: list[str] = []
    households = [who for who in seeded.sessions if who != harness.OPERATOR_ID]
    results = []
    transport = httpx2.ASGITransport(app=timer)
    # The service's start and stop around the requests, as uvicorn runs them (the transport alone
    # would skip them).
    async with (
        app.router.lifespan_context(app),
        httpx2.AsyncClient(transport=transport, base_url="http://testserver") as client,
    ):
        for page in PAGES:
            timed = Timed(page)
            whose = households if page.role == "household" else [harness.OPERATOR_ID]
            profiler = cProfile.Profile() if args.profile else None
            deadline = time.monotonic() + args.page_seconds
            for n in range(args.warmup + args.requests):
                if time.monotonic() > deadline:  # a slow page must not hold up the rest
                    break
                who = whose[n % len(whose)]
                secret, values = seeded.sessions[who]
                path = page.path.format(**values)
                if profiler is not None and n >= args.warmup:
                    profiler.enable()
                response = await client.get(path, headers={"cookie": f"{SESSION_COOKIE}={secret}"})
                if profiler is not None:
                    profiler.disable()
                if response.status_code != page.status:
                    problems.append(f"{page.name}: {path} answered {response.status_code} for {who}")
                    break
                if n >= args.warmup and timer.seconds is not None:
                    timed.milliseconds.append(timer.seconds * 1000)
            if profiler is not None:
                Path(args.profile).mkdir(parents=True, exist_ok=True)
                profiler.dump_stats(Path(args.profile) / f"{label}-{_slug(page.name)}.prof")
            title = _TITLE.search(response.text)
            log.info(
                f"{label}: {page.name}: p95 {timed.quantile(0.95):.1f} ms over {len(timed.milliseconds)} "
                f"requests ({title.group(1) if title else 'no title'})"
            )
            results.append(timed)
    return results, problems


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


# --- one backend ---------------------------------------------------------------------------------


@dataclass(kw_only=True)
class WebRun(harness.BackendRun):
    """Everything measured on one backend."""

    seeded: Seeded
    timed: list[Timed]


def run_backend(backend: str, homes: Homes, args: argparse.Namespace) -> WebRun:
    """Seed the month on one backend and time every page against the composed service."""
    with harness.fresh_database(backend, args.postgres_url) as database:
        seeded = seed(database.engine, homes, args, backend)
        platform = Platform(
            engine=database.engine,
            settings=Settings(database_url=database.url),
            clock=StoppedClock(NOW),
        )
        app = create_service(platform, freeze_heap=True)  # as `smartbrum serve` builds it
        log.info(f"{backend}: timing {len(PAGES)} pages, {args.requests} requests each")
        with inline_threadpool(args.profile is not None):
            timed, problems = asyncio.run(time_pages(app, seeded, args, backend))
    return WebRun(backend=backend, households=len(homes), seeded=seeded, timed=timed, problems=problems)


class StoppedClock(SystemClock):
    """The platform clock standing at one moment: the pages see the same 'now' on every request."""

    def __init__(self, moment: datetime) -> None:
        self.moment = moment

    def now(self) -> datetime:
        return self.moment


# --- the report ----------------------------------------------------------------------------------


def report(runs: Sequence[WebRun], args: argparse.Namespace) -> bool:
    """Print the seeding table, the pages' table and the target checks; whether all passed."""
    console = harness.figures_console()
    setup = harness.BackendTable(
        f"The month seeded: {args.households:,} households, {args.days} days to {TODAY} "
        f"(a month for the {args.measured} measured households, yesterday only for the rest)",
        runs,
    )
    setup.row(
        "households / with a month of data", lambda r: f"{r.seeded.households:,} / {r.seeded.measured:,}"
    )
    setup.row("orders", lambda r: f"{r.seeded.orders:,}")
    setup.row(
        "intervals cleared / settled",
        lambda r: f"{r.seeded.intervals_cleared:,} / {r.seeded.intervals_settled:,}",
    )
    setup.row("trades", lambda r: f"{r.seeded.trades:,}")
    setup.row("interval energy rows", lambda r: f"{r.seeded.energy_rows:,}")
    setup.row("ledger lines", lambda r: f"{r.seeded.ledger_lines:,}")

    def seconds_of(name: str) -> Callable[[WebRun], str]:
        return lambda run: f"{run.seeded.seconds[name]:.1f}"

    for name in runs[0].seeded.seconds if runs else ():
        setup.row(f"setup: {name} s", seconds_of(name))
    console.print(setup)

    table = Table(
        title=f"Server time per page ({args.requests} requests each, one at a time, "
        f"after {args.warmup} untimed)"
    )
    for heading in ("backend", "page", "path", "requests", "p50 ms", "p95 ms", "p99 ms", "target p95", ""):
        table.add_column(heading, justify="left" if heading in ("backend", "page", "path") else "right")
    for run in runs:
        for timed in run.timed:
            p95 = timed.quantile(0.95)
            table.add_row(
                run.backend,
                timed.page.name,
                timed.page.path,
                f"{len(timed.milliseconds):,}",
                f"{timed.quantile(0.5):.1f}",
                f"{p95:.1f}",
                f"{timed.quantile(0.99):.1f}",
                f"< {TARGET_MS:.0f}",
                "pass" if p95 < TARGET_MS else "FAIL",
            )
    console.print(table)

    checks = harness.TargetChecks()
    full = args.households >= TARGET_HOUSEHOLDS and args.days >= TARGET_DAYS
    scale = "" if full else f"; run with {args.households:,} households and {args.days} days"
    for run in runs:
        slowest = max(run.timed, key=lambda t: t.quantile(0.95), default=None)
        if slowest is None:
            checks.not_run(f"{run.backend}: every page p95 < {TARGET_MS:.0f} ms", "no page timed")
        else:
            checks.target(
                f"{run.backend}: every page's p95 server time < {TARGET_MS:.0f} ms",
                all(t.quantile(0.95) < TARGET_MS for t in run.timed),
                f"slowest {slowest.page.name} {slowest.quantile(0.95):.1f} ms{scale}",
                binding=full,
            )
        for problem in run.problems:
            checks.problem(f"{run.backend}: problem: {problem}")
    checks.print(console)
    console.print(f"load average at the end: {harness.load_average():.2f}")
    return checks.passed


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line; ``--quick`` sets the small sizes of the options not given."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    harness.add_database_arguments(parser)
    parser.add_argument("--households", type=int, default=None, help="default 10,000 (300 with --quick)")
    parser.add_argument(
        "--days", type=int, default=None, help="days up to today, default 30 (3 with --quick)"
    )
    parser.add_argument(
        "--measured", type=int, default=None, help="households with the whole month and a session (50; 5)"
    )
    parser.add_argument("--requests", type=int, default=None, help="timed requests per page (300; 40)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed requests per page first (20; 5)")
    parser.add_argument(
        "--page-seconds",
        type=float,
        default=120.0,
        help="stop a page's requests after this many seconds (120): the table shows how many ran",
    )
    parser.add_argument(
        "--quick", action="store_true", help="300 households, 3 days, 5 measured, 40 requests"
    )
    parser.add_argument("--seed", type=int, default=20260630)
    parser.add_argument(
        "--profile", metavar="DIR", help="write cProfile stats of each page's timed requests here"
    )
    args = parser.parse_args(argv)
    harness.fill_sizes(
        args,
        {
            "households": (TARGET_HOUSEHOLDS, 300),
            "days": (30, 3),
            "measured": (50, 5),
            "requests": (300, 40),
            "warmup": (20, 5),
        },
    )
    if not 1 <= args.measured <= args.households or args.days < 2 or args.requests < 1 or args.warmup < 0:
        parser.error("--measured must be 1 to --households, --days at least 2, --requests at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; the exit status is 1 if a check fails or the target is missed at scale."""
    args = parse_args(argv)
    backends = harness.chosen_backends(args.backend)
    harness.figures_console().print(
        harness.machine_notes(
            packages=("fastapi", "starlette", "Jinja2", "SQLAlchemy"),
            backends=backends,
            postgres_url=args.postgres_url,
        ),
        soft_wrap=True,
    )
    homes = generate_homes(args.households, np.random.default_rng(args.seed))
    log.info(
        f"{len(homes):,} households on {len(FEEDERS)} feeders, {args.measured} measured, {args.days} days"
    )
    runs = [run_backend(backend, homes, args) for backend in backends]
    return 0 if report(runs, args) else 1


if __name__ == "__main__":
    sys.exit(main())
