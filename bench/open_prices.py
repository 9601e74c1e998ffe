"""Benchmark of the public price feed: ``/open/v1/prices`` and its evcc form under load, served by
``smartbrum serve`` with 2 workers on PostgreSQL.

What it measures
----------------
1. Setup, not timed: a fresh database (a new schema in the local PostgreSQL, dropped afterwards;
   or a SQLite file with ``--backend sqlite``, one worker), the operator, a network (``GSP``, a
   primary ``P1``, ten feeders) and tariff, ``--households`` households, and ``--days`` days of
   cleared periods up to the real clock: for each period ``--orders`` orders from random
   households (buy or sell, 0.2 to 3 kWh, 3 to 30 p/kWh) placed before its gate and the period
   cleared with :func:`market.clearing.clear_interval`, as the scheduler would. Then the real
   service, started as ``bench/api.py`` starts it (a free loopback port, readiness polled with a
   deadline), with its jobs running (it clears each new period at its gate closure).
2. Load: ``--concurrency`` clients in a closed loop, each on one keep-alive connection, for
   ``--seconds`` after ``--warmup`` seconds not timed. Each request is drawn from a household's
   tools' mix: today and tomorrow as JSON (40%), a day as CSV (10%), evcc's ``grid`` (30%) and
   ``feedin`` (20%) forecast, at a random node of the twelve. The client is a minimal HTTP/1.1
   client on asyncio streams (a request's bytes written once, the answer read by its
   ``Content-Length``): httpx costs over a millisecond of CPU a request, which on a 2-core machine
   shared with the server would measure the client.
3. Freshness: after the load, a new import tariff from tomorrow's first period (inside the
   feed's window) is stored, as the operator's ``POST /v1/tariffs`` does, and the benchmark polls
   the feed (with a deadline) until answers from both workers carry it: the seconds that took.

Reported: requests per second, p50, p99 and the maximum latency, by kind and over all; answers
by status; the cache's freshness after the tariff. Checks: at least 1,000 requests/s (issue 18)
on PostgreSQL with 2 workers; every answer 200 with a body that parses; the new tariff seen
within the check interval (``SMARTBRUM_OPEN_FEED_CHECK_SECONDS``, 1 s) plus 5 s.

Usage
-----
::

    .venv/bin/python bench/open_prices.py                     # PostgreSQL, 2 workers, 20 s
    .venv/bin/python bench/open_prices.py --quick             # 1 day, 8 s
    .venv/bin/python bench/open_prices.py --backend sqlite    # one worker, no target

Exit status 1 if a check fails.
"""

# ruff: noqa: E402 (the project's imports must come after the sys.path fix below)

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

import httpx2

_BENCH = Path(__file__).resolve().parent  # run by path, bench/ heads sys.path: see bench/harness.py
sys.path[:] = [str(_BENCH.parent), *(entry for entry in sys.path if Path(entry or ".").resolve() != _BENCH)]

from bench import harness
from bench.api import FEEDERS, running_server

TARGET_REQUESTS_PER_SECOND = 1_000
NODES = ("GSP", "P1", *FEEDERS)
KINDS = ("json", "csv", "evcc-grid", "evcc-feedin")
MIX = (0.4, 0.1, 0.3, 0.2)
NEW_IMPORT_P_PER_KWH = Decimal("26.5")
FRESHNESS_DEADLINE_S = 6.0
log = harness.progress_logger()


# --- setup -------------------------------------------------------------------------------------------


def seed(database: harness.ScratchDatabase, households: int, days: int, orders: int, seed: int) -> int:
    """The market and ``days`` days of cleared periods up to now; returns the periods cleared."""
    from market.clearing import clear_interval
    from market.database import transaction
    from market.intervals import period_at
    from market.orders import place_order
    from market.rules import MarketRules

    now = datetime.now(UTC)
    homes = {f"H{serial:05d}": FEEDERS[serial % len(FEEDERS)] for serial in range(1, households + 1)}
    harness.seed_market(
        database.engine,
        homes,
        now=now - timedelta(days=days + 1),
        network=harness.feeder_network(FEEDERS, feeder_kwh=Decimal(200)),
        effective_from_utc=now - timedelta(days=days + 1),
    )
    rules = MarketRules()
    rng = random.Random(seed)
    ids = list(homes)
    period = period_at(now - timedelta(days=days))
    cleared = 0
    while rules.gate_closure_utc(period) <= now:
        placed_at = rules.gate_closure_utc(period) - timedelta(minutes=1)
        with transaction(database.engine) as session:
            for home in rng.sample(ids, min(orders, len(ids))):
                place_order(
                    session,
                    rules=rules,
                    participant_id=home,
                    period=period,
                    side=rng.choice(("buy", "sell")),
                    quantity_kwh=Decimal(rng.randint(2, 30)) / 10,
                    price_p_per_kwh=Decimal(rng.randint(300, 3000)) / 100,
                    now=placed_at,
                )
        clear_interval(
            database.engine, period=period, rules=rules, now=period.start_utc, triggered_by="bench"
        )
        cleared += 1
        period = period.next()
    return cleared


def store_new_tariff(database: harness.ScratchDatabase) -> datetime:
    """A new import tariff from tomorrow's first period (London): inside the feed's window."""
    from market.database import transaction
    from market.intervals import period_at, periods_of_day
    from market.network import set_tariff

    now = datetime.now(UTC)
    tomorrow = period_at(now).settlement_date + timedelta(days=1)
    start = periods_of_day(tomorrow)[0].start_utc
    with transaction(database.engine) as session:
        set_tariff(
            session,
            import_p_per_kwh=NEW_IMPORT_P_PER_KWH,
            export_p_per_kwh=harness.EXPORT_P_PER_KWH,
            effective_from_utc=start,
            now=now,
        )
    return start


# --- load --------------------------------------------------------------------------------------------


def request_path(kind: str, node: str) -> str:
    if kind == "json":
        return f"/open/v1/prices?node={node}"
    if kind == "csv":
        return f"/open/v1/prices?node={node}&format=csv&to={datetime.now(UTC).date().isoformat()}"
    return f"/open/v1/prices/evcc?node={node}&kind={kind.removeprefix('evcc-')}"


@dataclass
class Load:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: Counter = field(default_factory=Counter)
    bad_bodies: int = 0
    errors: list[str] = field(default_factory=list)
    timed: bool = False


async def client(host: str, port: int, load: Load, deadline: float, rng: random.Random) -> None:
    """One keep-alive connection in a closed loop until ``deadline`` (``time.monotonic``)."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.monotonic() < deadline:
            kind = rng.choices(KINDS, MIX)[0]
            path = request_path(kind, rng.choice(NODES))
            started = time.perf_counter()
            writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.lower() == b"content-length":
                    length = int(value)
            body = await reader.readexactly(length)
            elapsed = time.perf_counter() - started
            if not load.timed:
                continue
            load.latencies[kind].append(elapsed)
            load.statuses[status] += 1
            if status == 200 and rng.random() < 0.01:  # parse a sample: the bytes are a feed
                try:
                    if kind == "csv":
                        assert body.startswith(b"node,settlement_date")
                    else:
                        json.loads(body)
                except (AssertionError, ValueError):
                    load.bad_bodies += 1
    except (OSError, asyncio.IncompleteReadError) as error:
        load.errors.append(repr(error))
    finally:
        writer.close()


async def drive(
    base_url: str, concurrency: int, warmup_s: float, seconds: float, seed: int
) -> tuple[Load, float]:
    parts = urlsplit(base_url)
    if parts.hostname is None or parts.port is None:
        raise ValueError(f"not a host and port: {base_url}")
    load = Load()
    rng = random.Random(seed)
    start = time.monotonic()
    deadline = start + warmup_s + seconds
    tasks = [
        asyncio.create_task(client(parts.hostname, parts.port, load, deadline, random.Random(rng.random())))
        for _ in range(concurrency)
    ]
    await asyncio.sleep(warmup_s)  # the warm-up's length, not a wait for anything to happen
    load.timed = True
    timed_from = time.monotonic()
    await asyncio.gather(*tasks)
    return load, time.monotonic() - timed_from


def freshness_s(base_url: str, database: harness.ScratchDatabase, workers: int) -> float | None:
    """Store a new tariff, then poll the feed until ``workers`` answers in a row carry it; the
    seconds that took, or None past :data:`FRESHNESS_DEADLINE_S`."""
    start = store_new_tariff(database)
    stamp = start.strftime("%Y-%m-%dT%H:%M:%SZ")
    stored = time.monotonic()
    in_a_row = 0
    with httpx2.Client(base_url=base_url, timeout=5.0) as http:
        while time.monotonic() - stored < FRESHNESS_DEADLINE_S:
            periods = http.get("/open/v1/prices", params={"node": "F01"}).json()["periods"]
            tomorrow = next(p for p in periods if p["start"] == stamp)
            in_a_row = in_a_row + 1 if tomorrow["import_p_per_kwh"] == str(NEW_IMPORT_P_PER_KWH) else 0
            if in_a_row >= 4 * workers:  # connections land on either worker: several answers in a row
                return time.monotonic() - stored
            time.sleep(0.02)
    return None


# --- the run -----------------------------------------------------------------------------------------


@dataclass(kw_only=True)
class FeedRun(harness.BackendRun):
    workers: int
    periods_cleared: int = 0
    seconds: float = 0.0
    load: Load = field(default_factory=Load)
    fresh_s: float | None = None

    @property
    def requests(self) -> int:
        return sum(self.load.statuses.values())

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def run_backend(backend: str, args: argparse.Namespace) -> FeedRun:
    workers = args.workers if backend == "postgresql" else 1
    run = FeedRun(backend=backend, households=args.households, workers=workers)
    with (
        harness.fresh_database(backend, args.postgres_url) as database,
        tempfile.TemporaryDirectory() as folder,
    ):
        log.info(f"{backend}: seeding {args.days} day(s) of cleared periods")
        run.periods_cleared = seed(database, args.households, args.days, args.orders, args.seed)
        log.info(
            f"{backend}: {run.periods_cleared} periods cleared; starting smartbrum serve --workers {workers}"
        )
        with running_server(database, workers, Path(folder)) as server:
            log.info(
                f"{backend}: {args.concurrency} clients for {args.seconds:.0f} s after {args.warmup:.0f} s"
            )
            run.load, run.seconds = asyncio.run(
                drive(server.base_url, args.concurrency, args.warmup, args.seconds, args.seed)
            )
            run.fresh_s = freshness_s(server.base_url, database, workers)
    return run


def milliseconds(values: Sequence[float]) -> str:
    if not values:
        return "-"
    return (
        f"{harness.percentile(values, 0.5) * 1e3:.1f} / {harness.percentile(values, 0.99) * 1e3:.1f}"
        f" / {max(values) * 1e3:.1f}"
    )


def report(runs: Sequence[FeedRun], console) -> bool:  # type: ignore[no-untyped-def]
    table = harness.BackendTable("Public price feed", runs, lambda r: f"{r.backend}, {r.workers} worker(s)")
    table.row("periods cleared (seeded)", lambda r: f"{r.periods_cleared:,}")
    table.row("requests timed", lambda r: f"{r.requests:,} in {r.seconds:.1f} s")
    table.row("requests/s", lambda r: f"{r.per_second:,.0f}")
    everything = lambda r: [x for kind in KINDS for x in r.load.latencies[kind]]  # noqa: E731
    table.row("latency p50 / p99 / max, ms (all)", lambda r: milliseconds(everything(r)))
    for kind in KINDS:
        table.row(f"  {kind}", lambda r, kind=kind: milliseconds(r.load.latencies[kind]))
    table.row("answers", lambda r: ", ".join(f"{s}: {n:,}" for s, n in sorted(r.load.statuses.items())))
    table.row("new tariff in the feed after", lambda r: "-" if r.fresh_s is None else f"{r.fresh_s:.2f} s")
    console.print(table)
    checks = harness.TargetChecks()
    for run in runs:
        if set(run.load.statuses) - {200}:
            checks.problem(f"{run.backend}: answers other than 200: {dict(run.load.statuses)}")
        if run.load.bad_bodies or run.load.errors:
            checks.problem(f"{run.backend}: {run.load.bad_bodies} bad bodies, errors {run.load.errors[:3]}")
        if run.fresh_s is None:
            checks.problem(
                f"{run.backend}: the new tariff was not in the feed within {FRESHNESS_DEADLINE_S:.0f} s"
            )
        figures = f"{run.per_second:,.0f} requests/s, p99 {milliseconds(everything(run)).split(' / ')[1]} ms"
        if run.backend == "postgresql" and run.workers == 2:
            checks.target(
                f"feed >= {TARGET_REQUESTS_PER_SECOND:,} requests/s (PostgreSQL, 2 workers)",
                run.per_second >= TARGET_REQUESTS_PER_SECOND,
                figures,
            )
        else:
            checks.note(f"{run.backend}, {run.workers} worker(s): {figures} (no target)")
    checks.print(console)
    return checks.passed


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    harness.add_database_arguments(parser)
    parser.set_defaults(backend="postgresql")
    parser.add_argument("--quick", action="store_true", help="1 day seeded, 8 s of load")
    parser.add_argument("--households", type=int, default=1_000, help="households (1,000)")
    parser.add_argument("--days", type=int, default=None, help="days of cleared periods (3; --quick 1)")
    parser.add_argument("--orders", type=int, default=40, help="orders a period (40)")
    parser.add_argument("--workers", type=int, default=2, help="PostgreSQL's server workers (2)")
    parser.add_argument("--concurrency", type=int, default=16, help="clients (16)")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds not timed (3)")
    parser.add_argument("--seconds", type=float, default=None, help="seconds timed (20; --quick 8)")
    parser.add_argument("--seed", type=int, default=18)
    args = parser.parse_args(argv)
    harness.fill_sizes(args, {"days": (3, 1), "seconds": (20.0, 8.0)})
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    backends = harness.chosen_backends(args.backend, postgresql_first=True)
    console = harness.figures_console()
    console.print(
        harness.machine_notes(
            packages=("fastapi", "uvicorn"), backends=backends, postgres_url=args.postgres_url
        ),
        soft_wrap=True,
    )
    runs = [run_backend(backend, args) for backend in backends]
    return 0 if report(runs, console) else 1


if __name__ == "__main__":
    sys.exit(main())
