"""Benchmark of half-hourly meter data imports (:mod:`market.meter_files`): 100,000 rows from a
file into interval energy, on PostgreSQL and SQLite.

What it measures
----------------
On each backend a fresh market with ``--households`` households on ten feeders (no meters: the
first import makes each household's data-service meter). A day of half-hourly rows for every
household (2,084 x 48 = 100,032 rows by default; a tenth of them ``estimated``) is written as the
CSV the data service sends, then imported three times with
:func:`market.meter_files.import_meter_file`, each the whole path from the file's text (parse,
check every row, read what is stored, write, commit):

1. **first**: every row new (and 2,084 meters made);
2. **again**: the same file, every row unchanged (nothing written);
3. **corrected**: every value changed and every estimate made actual, so every row is a new
   revision that retires the current one.

Printed per backend: seconds and rows/s of each import, the parse alone (no database) beside
them, and a check afterwards that the database holds what the summaries said (two revisions per
row, one current). The target (issue 18) is 100,000 rows in under 10 s on PostgreSQL: checked on
the first import and on the corrected one, binding with at least 100,000 rows.

Usage
-----
::

    .venv/bin/python bench/meter_files.py                       # both backends, about a minute
    .venv/bin/python bench/meter_files.py --backend postgresql
    .venv/bin/python bench/meter_files.py --quick               # 200 households
"""

# ruff: noqa: E402 (the project's imports must come after the sys.path fix below)

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import sqlalchemy as sa

_BENCH = Path(__file__).resolve().parent  # run by path, bench/ heads sys.path: see bench/harness.py
sys.path[:] = [str(_BENCH.parent), *(entry for entry in sys.path if Path(entry or ".").resolve() != _BENCH)]

from bench import harness
from market.meter_files import HEADER, ImportSummary, import_meter_file, parse_meter_file
from market.tables import IntervalEnergyRow, MeterRow

TARGET_ROWS = 100_000
TARGET_S = 10.0
DAY = date(2026, 11, 20)
NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
FEEDERS = [f"F{n:02d}" for n in range(1, 11)]
log = harness.progress_logger()


@dataclass(kw_only=True)
class ImportRun(harness.BackendRun):
    """One backend's three imports."""

    rows: int = 0
    parse_s: float = 0.0
    seconds: dict[str, float] = field(default_factory=dict)
    summaries: dict[str, ImportSummary] = field(default_factory=dict)


def day_file(households: int, *, corrected: bool) -> str:
    """A day of half-hourly rows for every household: import 0.1 to 1.5 kWh, export in the middle
    of the day, every tenth household-period estimated (all actual when ``corrected``, and every
    value 7 Wh more)."""
    lines = [",".join(HEADER)]
    extra = 7 if corrected else 0
    for serial in range(1, households + 1):
        mpan = harness.household_mpan(serial)
        for period in range(1, 49):
            import_wh = 100 + (serial * 37 + period * 101) % 1400 + extra
            export_wh = (serial * 13 + period * 29) % 900 + extra if 18 <= period <= 34 else 0
            estimated = not corrected and (serial + period) % 10 == 0
            lines.append(
                f"{mpan},{DAY},{period},{import_wh / 1000:.3f},{export_wh / 1000:.3f},"
                f"{'estimated' if estimated else 'actual'}"
            )
    return "\n".join(lines) + "\n"


def run_backend(backend: str, args: argparse.Namespace, files: dict[str, str]) -> ImportRun:
    run = ImportRun(backend=backend, households=args.households)
    with harness.fresh_database(backend, args.postgres_url) as database:
        households = {
            f"H{serial:05d}": FEEDERS[serial % len(FEEDERS)] for serial in range(1, args.households + 1)
        }
        network = harness.feeder_network(FEEDERS, feeder_kwh=Decimal(1000))
        harness.seed_market(database.engine, households, now=NOW - timedelta(days=30), network=network)
        started = time.perf_counter()
        run.rows = len(parse_meter_file(files["first"], now=NOW).rows)
        run.parse_s = time.perf_counter() - started
        for name in ("first", "again", "corrected"):
            log.info("%s: %s import of %d rows", backend, name, run.rows)
            started = time.perf_counter()
            run.summaries[name] = import_meter_file(database.engine, files[name], now=NOW)
            run.seconds[name] = time.perf_counter() - started
        check(run, database.engine)
    return run


def check(run: ImportRun, engine: sa.Engine) -> None:
    """The database holds what the summaries said."""
    first, again, corrected = (run.summaries[name] for name in ("first", "again", "corrected"))
    expected = {
        "first": (first.new, first.bad, first.meters_created),
        "again": (again.unchanged, again.stored),
        "corrected": (corrected.revised, corrected.stored),
    }
    wanted = {
        "first": (run.rows, 0, run.households),
        "again": (run.rows, 0),
        "corrected": (run.rows, run.rows),
    }
    for name, figures in expected.items():
        if figures != wanted[name]:
            run.problems.append(
                f"{run.backend}: the {name} import's summary is {figures}, not {wanted[name]}"
            )
    energy = IntervalEnergyRow.__table__.c  # type: ignore[attr-defined]
    with engine.connect() as connection:
        total = connection.execute(
            sa.select(sa.func.count()).select_from(IntervalEnergyRow.__table__)
        ).scalar()  # type: ignore[attr-defined]
        current = connection.execute(sa.select(sa.func.count()).where(energy.is_current)).scalar()
        estimated = connection.execute(
            sa.select(sa.func.count()).where(energy.is_current, energy.estimated)
        ).scalar()
        meters = connection.execute(sa.select(sa.func.count()).select_from(MeterRow.__table__)).scalar()  # type: ignore[attr-defined]
    if (total, current, estimated, meters) != (2 * run.rows, run.rows, 0, run.households):
        run.problems.append(
            f"{run.backend}: stored {total} revisions ({current} current, {estimated} estimated) and "
            f"{meters} meters; expected {2 * run.rows} ({run.rows} current, 0 estimated), {run.households}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    harness.add_database_arguments(parser)
    parser.add_argument(
        "--households", type=int, default=None, help="households, 48 rows each (2,084; --quick 200)"
    )
    parser.add_argument("--quick", action="store_true", help="a small run: 200 households")
    args = parser.parse_args()
    harness.fill_sizes(args, {"households": (2084, 200)})
    backends = harness.chosen_backends(args.backend, postgresql_first=True)
    console = harness.figures_console()
    checks = harness.TargetChecks()
    if "postgresql" in backends and (problem := harness.postgres_problem(args.postgres_url)):
        checks.not_run("PostgreSQL", problem)
        backends.remove("postgresql")
    log.info("writing the files: %d households x 48 periods", args.households)
    files = {"first": day_file(args.households, corrected=False)}
    files["again"] = files["first"]
    files["corrected"] = day_file(args.households, corrected=True)
    runs = [run_backend(backend, args, files) for backend in backends]
    console.print(
        harness.machine_notes(
            packages=("SQLAlchemy", "psycopg"), backends=backends, postgres_url=args.postgres_url
        )
    )
    table = harness.BackendTable(
        f"Half-hourly meter data: {args.households:,} households x 48 periods, "
        f"{len(files['first']) / 1e6:.1f} MB a file",
        runs,
    )
    table.row("rows a file", lambda run: f"{run.rows:,}")
    table.row("parse and check alone (no database), s", lambda run: f"{run.parse_s:.2f}")
    for name, label in (
        ("first", "first import (all new)"),
        ("again", "same file again (all unchanged)"),
        ("corrected", "corrected file (all revised)"),
    ):
        table.row(f"{label}, s", lambda run, name=name: f"{run.seconds[name]:.2f}")
        table.row(f"{label}, rows/s", lambda run, name=name: f"{run.rows / run.seconds[name]:,.0f}")
    console.print(table)
    for run in runs:
        for problem in run.problems:
            checks.problem(problem)
        if run.backend != "postgresql":
            continue
        binding = run.rows >= TARGET_ROWS
        for name in ("first", "corrected"):
            seconds = run.seconds[name]
            checks.target(
                f"{run.rows:,} rows imported ({name}) on PostgreSQL under {TARGET_S:.0f} s",
                seconds < TARGET_S,
                f"{seconds:.2f} s, {run.rows / seconds:,.0f} rows/s"
                + ("" if binding else "; fewer rows than the target's"),
                binding=binding,
            )
    checks.print(console)
    return 0 if checks.passed else 1


if __name__ == "__main__":
    sys.exit(main())
