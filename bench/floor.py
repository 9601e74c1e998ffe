"""The request path's floor on this machine: the least one order placement could cost here.

Issue 19 asks for 1,000 single-order placements a second (with the benchmark's reads, cancels and
replays beside them) on two cores shared by the service, PostgreSQL and the benchmark's client.
This measures what no version of the platform's request path could go below, in two parts:

- **the framework**: FastAPI under uvicorn as ``smartbrum serve`` runs it (2 workers, uvloop,
  httptools, no access log), one route that takes the order route's own body (``OrderCreate``),
  checks a bearer token against hashes in memory and answers an order: no database, no
  middleware, no audit. ``bench/api.py``'s raw client drives it with ``--concurrency`` tasks for
  ``--seconds``; the server's and the client's CPU a request are read from ``/proc``.
- **the database**: ``pgbench`` (C, prepared statements, so its client costs next to nothing)
  runs the statements one placement sends on PostgreSQL, as :func:`market.orders.place_order`
  and :func:`market.access.record_audits` send them (captured from a real placement on a seeded
  scratch schema, not written out here): the household's and the book's locks, the checks, the
  order with its event, the audit row, then ``COMMIT``. One placement a transaction with
  ``--clients`` connections, then ``G`` placements a transaction with 2 connections (the group
  writer's, one a worker), their audit rows in one statement. PostgreSQL's CPU (every
  ``postgres`` process, and those ended) a placement.

The sum is what the target asks of the two cores before any of the platform's own work (the
token's lookup, the market's checks in Python, SQLAlchemy, the audit, the reads' queries).

    .venv/bin/python bench/floor.py [--seconds 10] [--concurrency 50] [--clients 16] [--groups 1,8]

Needs ``pgbench`` (Debian's ``postgresql-client``) and the PostgreSQL at ``--postgres-url``.
"""

# ruff: noqa: E402 (the project's imports must come after the sys.path fix below)

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, Header, HTTPException, status
from pydantic import BaseModel
from rich.table import Table

_BENCH = Path(__file__).resolve().parent  # run by path, bench/ heads sys.path: see bench/harness.py
sys.path[:] = [str(_BENCH.parent), *(entry for entry in sys.path if Path(entry or ".").resolve() != _BENCH)]
_ROOT = str(_BENCH.parent)

from api.schemas import OrderCreate
from bench import harness

log = harness.progress_logger()

#: The issue's mix: requests a placement (placements, cancels, replays, reads), from bench/api.py's
#: runs (437 requests for 287 placements a second).
REQUESTS_PER_PLACEMENT = 1.52
HOUSEHOLDS = 1000
#: The floor app served as ``smartbrum serve`` serves the platform (2 workers, uvloop, httptools).
UVICORN = (sys.executable, "-m", "uvicorn", "bench.floor:app", "--workers", "2", "--loop", "uvloop")
UVICORN += ("--http", "httptools", "--no-access-log", "--log-level", "warning")


# --- the framework's floor -----------------------------------------------------------------------

#: Token hashes of the floor app's households: ``Bearer t<i>``.
_TOKENS = {hashlib.sha256(f"t{i}".encode()).hexdigest(): f"H{i:05d}" for i in range(HOUSEHOLDS)}
app = FastAPI()


class PlacedOrder(BaseModel):
    id: str
    participant_id: str
    interval: str
    side: str
    quantity_kwh: Decimal
    price_p_per_kwh: Decimal
    status: str
    created_at: datetime


@app.post("/v1/orders", status_code=status.HTTP_201_CREATED, response_model=PlacedOrder)
async def place(body: OrderCreate, authorization: Annotated[str, Header()]) -> PlacedOrder:
    """The order route's shape and nothing else."""
    secret = authorization.removeprefix("Bearer ").encode()
    who = _TOKENS.get(hashlib.sha256(secret).hexdigest())
    if who is None:
        raise HTTPException(401)
    return PlacedOrder(
        id=str(uuid.uuid4()),
        participant_id=who,
        interval=body.interval,
        side=body.side,
        quantity_kwh=body.quantity_kwh,
        price_p_per_kwh=body.price_p_per_kwh,
        status="open",
        created_at=datetime.now(UTC),
    )


def framework_floor(seconds: float, concurrency: int) -> dict[str, float]:
    """Requests/s and CPU ms a request (server, client) of the floor app under the raw client."""
    from bench.api import RawClient, cpu_seconds, free_port

    port = free_port()
    server = subprocess.Popen(
        [*UVICORN, "--port", str(port)],
        cwd=_ROOT,
        stdout=subprocess.DEVNULL,
    )
    body = {"interval": "2026-12-08/20", "side": "buy", "quantity_kwh": "1.5", "price_p_per_kwh": "12.5"}

    async def household(i: int, until: float, counted: list[int]) -> None:
        client = RawClient(f"http://127.0.0.1:{port}")
        headers = {"Authorization": f"Bearer t{i % HOUSEHOLDS}"}
        while time.monotonic() < until:
            answer = await client.request("POST", "/v1/orders", headers=headers, json=body)
            if answer.status_code != 201:
                raise RuntimeError(f"the floor app answered {answer.status_code}: {answer.text}")
            counted[0] += 1
        await client.aclose()

    async def ready() -> None:
        deadline = time.monotonic() + 60
        while True:
            try:
                await RawClient(f"http://127.0.0.1:{port}").request("GET", "/openapi.json", headers={})
                return
            except Exception:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("the floor app did not start") from None
                await asyncio.sleep(0.05)

    async def run() -> dict[str, float]:
        await ready()
        warm = [0]
        await asyncio.gather(*(household(i, time.monotonic() + 2, warm) for i in range(concurrency)))
        pids = [server.pid, *_children(server.pid)]
        server_before, client_before = cpu_seconds(pids), time.process_time()
        counted, started = [0], time.monotonic()
        await asyncio.gather(*(household(i, started + seconds, counted) for i in range(concurrency)))
        elapsed = time.monotonic() - started
        served = counted[0]
        return {
            "requests_per_s": served / elapsed,
            "server_ms": 1000 * (cpu_seconds(pids) - server_before) / served,
            "client_ms": 1000 * (time.process_time() - client_before) / served,
        }

    try:
        return asyncio.run(run())
    finally:
        server.terminate()
        server.wait(timeout=30)


def _children(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(child) for child in found]


# --- the database's floor ------------------------------------------------------------------------


def placement_statements(database: harness.ScratchDatabase) -> tuple[list[str], str]:
    """The statements a real placement sends, and its audit row's, captured on ``database``, as
    a pgbench script's lines: the household ``:h`` (``H`` and five digits), the period ``:p``
    (0 to 5) half-hours after the first, a new order id each time; the rest as captured."""
    from sqlalchemy import event

    from bench.api import future_intervals
    from market.access import record_audits
    from market.database import transaction
    from market.orders import place_order
    from market.rules import MarketRules

    captured: list[tuple[str, dict[str, Any]]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        captured.append((statement, dict(parameters or {})))

    now = datetime.now(UTC)
    first = future_intervals(now)[0]
    event.listen(database.engine, "before_cursor_execute", capture)
    try:
        with transaction(database.engine) as session:
            place_order(
                session,
                rules=MarketRules(),
                participant_id="H00001",
                period=first,
                side="buy",
                quantity_kwh=Decimal("1.5"),
                price_p_per_kwh=Decimal("12.5"),
                now=now,
            )
            record_audits(
                session,
                [{"at": now, "actor": "H00001", "method": "POST", "path": "/v1/orders", "status_code": 201}],
            )
    finally:
        event.remove(database.engine, "before_cursor_execute", capture)
    start = f"(timestamptz '{first.start_utc.isoformat()}' + :p * interval '30 minutes')"
    household = "('H' || lpad(:h::text, 5, '0'))"
    instead = {
        "participant_id": household,
        "actor": household,
        "start": start,
        "interval_start_utc": start,
        "id": "gen_random_uuid()::text",
        "period": f"({first.period} + :p)",
        "name": "('book' || :p::text)",
    }
    lines = []
    for statement, parameters in captured:
        if statement.strip().upper().startswith(("BEGIN", "COMMIT", "SAVEPOINT", "RELEASE")):
            continue

        def value(match: re.Match[str], parameters: dict[str, Any] = parameters) -> str:
            name = match.group(1)
            return instead.get(name) or _literal(parameters[name])

        lines.append(re.sub(r"%\((\w+)\)s", value, " ".join(statement.split())) + ";")
    *placing, audit = lines
    return placing, audit


def _literal(value: object) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool | int | Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return f"'{value.isoformat()}'"
    return "'" + str(value).replace("'", "''").replace("\x1f", "") + "'"


def database_floor(
    database: harness.ScratchDatabase,
    statements: tuple[list[str], str],
    group: int,
    clients: int,
    seconds: float,
) -> dict[str, float]:
    """pgbench running ``group`` placements a transaction on ``clients`` connections, their audit
    rows in one statement (as the group writer writes them)."""
    schema = re.search(r"search_path%3D(\w+)", database.url)
    assert schema is not None
    placing, audit = statements
    script = [f"\\set h random(1, {HOUSEHOLDS - group + 1})", "\\set p random(0, 5)", "BEGIN;"]
    for offset in range(group):  # households in id order, as the group writer locks them
        script += [line.replace(":h::text", f"(:h + {offset})::text") for line in placing]
    audit_row = re.fullmatch(r"(.* VALUES )(\(.*\))( RETURNING .*)?;", audit)
    assert audit_row is not None, audit
    head, row, returning = audit_row.groups()
    rows = ", ".join(row.replace(":h::text", f"(:h + {offset})::text") for offset in range(group))
    script += [f"{head}{rows}{returning or ''};", "COMMIT;"]
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as file:
        file.write("\n".join(script) + "\n")
    url = database.url.split("?")[0].replace("postgresql+psycopg://", "postgresql://")
    before = _postgres_cpu()
    done = subprocess.run(
        [
            "pgbench",
            "-n",
            "-M",
            "prepared",
            "-c",
            str(clients),
            "-j",
            str(min(clients, 2)),
            "-T",
            str(int(seconds)),
            "-f",
            file.name,
            url,
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PGOPTIONS": f"-c search_path={schema.group(1)}"},
    )
    cpu = _postgres_cpu() - before
    Path(file.name).unlink()
    processed = re.search(r"actually processed: (\d+)", done.stdout)
    latency = re.search(r"latency average = ([\d.]+)", done.stdout)
    if done.returncode != 0 or processed is None or latency is None:
        raise RuntimeError(f"pgbench failed: {done.stderr[-2000:]}")
    placed = int(processed.group(1)) * group
    return {
        "placements_per_s": placed / seconds,
        "database_ms": 1000 * cpu / placed,
        "transaction_ms": float(latency.group(1)),
    }


def _postgres_cpu() -> float:
    """CPU seconds of every ``postgres`` process so far, with the ended backends' (which the
    postmaster has reaped into its children's time)."""
    total = 0.0
    found = subprocess.run(["pgrep", "-x", "postgres"], capture_output=True, text=True).stdout.split()
    for pid in found:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        total += sum(int(ticks) for ticks in fields[11:15]) / harness.CLOCK_TICKS
    return total


# --- the report ----------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="each measurement's length")
    parser.add_argument("--concurrency", type=int, default=50, help="the raw client's tasks")
    parser.add_argument(
        "--clients", type=int, default=16, help="pgbench's connections, one placement a transaction"
    )
    parser.add_argument("--groups", default="1,8", help="placements a transaction on 2 connections")
    parser.add_argument("--postgres-url", default=harness.POSTGRES_URL)
    args = parser.parse_args(argv)
    if shutil.which("pgbench") is None:
        print("bench/floor.py needs pgbench (Debian's postgresql-client)", file=sys.stderr)
        return 2
    console = harness.figures_console()
    console.print(
        harness.machine_notes(
            packages=("fastapi", "uvicorn"), backends=("postgresql",), postgres_url=args.postgres_url
        )
    )
    log.info("the framework's floor: %d clients, %.0f s", args.concurrency, args.seconds)
    framework = framework_floor(args.seconds, args.concurrency)
    runs: list[tuple[str, dict[str, float]]] = []
    with harness.fresh_database("postgresql", args.postgres_url) as database:
        from bench.api import seed

        seed(database, HOUSEHOLDS)
        statements = placement_statements(database)
        log.info("a placement sends %d statements and an audit row, then COMMIT", len(statements[0]))
        runs.append(
            (
                f"1 a transaction, {args.clients} connections",
                database_floor(database, statements, 1, args.clients, args.seconds),
            )
        )
        for group in (int(g) for g in args.groups.split(",")):
            log.info("pgbench: %d placements a transaction", group)
            runs.append(
                (
                    f"{group} a transaction, 2 connections",
                    database_floor(database, statements, group, 2, args.seconds),
                )
            )
    table = Table(title="The request path's floor")
    table.add_column("part")
    table.add_column("throughput", justify="right")
    table.add_column("CPU ms", justify="right")
    table.add_column("note")
    table.add_row(
        "framework (FastAPI, 2 workers, no database)",
        f"{framework['requests_per_s']:,.0f} requests/s",
        f"{framework['server_ms']:.3f} server, {framework['client_ms']:.3f} client",
        "a request",
    )
    for label, run in runs:
        table.add_row(
            f"database: a placement's {len(statements[0])} statements + its audit row, {label}",
            f"{run['placements_per_s']:,.0f} placements/s",
            f"{run['database_ms']:.3f} PostgreSQL",
            f"a placement; {run['transaction_ms']:.1f} ms a transaction",
        )
    console.print(table)
    from bench.api import TARGET_PLACEMENTS_PER_SECOND as TARGET_PLACEMENTS

    least_database = min(run["database_ms"] for _, run in runs)
    requests = TARGET_PLACEMENTS * REQUESTS_PER_PLACEMENT
    cores = (
        TARGET_PLACEMENTS * least_database + requests * (framework["server_ms"] + framework["client_ms"])
    ) / 1000
    console.print(
        f"{TARGET_PLACEMENTS:,} placements/s ({requests:,.0f} requests/s at the issue's mix) ask at least "
        f"{cores:.2f} of 2 cores: PostgreSQL {TARGET_PLACEMENTS * least_database / 1000:.2f} for the "
        f"placements alone, the framework {requests * framework['server_ms'] / 1000:.2f}, this client "
        f"{requests * framework['client_ms'] / 1000:.2f}; before the platform's own work and the reads' and "
        "cancels' queries"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
