"""What the benchmarks share: scratch databases, the seeded market, the report and the record.

Every benchmark in ``bench/`` measures one part of the platform against a target from the issues
and prints the same kind of report, so the parts that are not the measurement live here once:

- **the scratch database**: :func:`fresh_database` gives a migrated, empty market database on
  SQLite (a file in a temporary folder) or PostgreSQL (a new schema in the test database, dropped
  afterwards), and :func:`add_database_arguments` and :func:`chosen_backends` give the command
  line that picks them (:func:`fill_sizes` its ``--quick`` sizes);
- **the seeded market**: :func:`seed_market` registers the operator, a feeder network
  (:func:`feeder_network`, :func:`sunny_street_network`), the backstop tariff and the households,
  their meters and tokens through the market's bulk registration, each household with a valid
  MPAN (:func:`household_mpan`);
- **the report**: stdout carries the figures only (:func:`figures_console`), a table with a column
  per backend (:class:`BackendTable` of :class:`BackendRun`), the target checks under it
  (:class:`TargetChecks`, which also decide the exit status) and the conditions they were measured
  in (:func:`machine_notes`); progress goes to stderr (:func:`progress_logger`);
- **measuring aids**: :func:`percentile`, :func:`profiled`, and CPU time from ``/proc``
  (:func:`process_cpu_seconds`, :func:`machine_busy_seconds`).

Every benchmark is a script run by path (``.venv/bin/python bench/market.py``), so Python puts
``bench/`` at the head of ``sys.path``, where ``market.py``, ``api.py`` and ``metering.py`` would
shadow the packages they measure. Each script therefore starts, after its third-party imports,
by putting the repository root in that folder's place, then imports this module as
``from bench import harness`` and the project's packages as usual; this also measures the code of
the checkout the script is in, whatever the virtual environment's editable install points at.

May import anything of the project. The database stack (SQLite, SQLAlchemy, :mod:`market`,
:mod:`optimiser`) is imported inside the functions that use it, not at the top: the child
processes of ``bench/clear.py`` and the meter server of ``bench/metering.py`` import this module
too, and their start-up time and peak memory are among the figures.
"""

from __future__ import annotations

import argparse
import cProfile
import logging
import math
import os
import platform
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Generic, TypeVar

from rich.console import Console
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from market.access import IssuedToken
    from market.participants import NewMeter
    from optimiser import Network

REPOSITORY = Path(__file__).resolve().parent.parent
BACKENDS = ("sqlite", "postgresql")
POSTGRES_URL = os.environ.get(
    "SMARTBRUM_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
"""The test suite's PostgreSQL: each run makes a schema of its own there and drops it."""
OPERATOR_ID = "OPS"
IMPORT_P_PER_KWH = Decimal("24.5")
EXPORT_P_PER_KWH = Decimal("4.1")
FIGURES_WIDTH = 200
"""Columns of the report when stdout is a file or a pipe: wide enough that no table row wraps."""
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
"""Units of the CPU times in ``/proc``."""


# --- choosing the backends -----------------------------------------------------------------------


def add_database_arguments(parser: argparse.ArgumentParser, *, option: str = "--backend") -> None:
    """Add the backend choice (``sqlite``, ``postgresql`` or ``both``) and ``--postgres-url``.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The benchmark's parser.
    option : str
        The option's name: ``--backend`` where the backend is what is measured, ``--database``
        where storage is one measurement among others (which also allows ``none``).
    """
    choices = [*BACKENDS, "both"] + (["none"] if option == "--database" else [])
    parser.add_argument(option, choices=choices, default="both", help="the database(s) (both)")
    parser.add_argument(
        "--postgres-url",
        default=POSTGRES_URL,
        help="PostgreSQL for a scratch schema (SMARTBRUM_TEST_POSTGRES_URL or postgres@127.0.0.1:5432/test)",
    )


def fill_sizes(args: argparse.Namespace, sizes: Mapping[str, tuple[object, object]]) -> None:
    """Give every size option left unset its full-run default, or its smaller one with ``--quick``.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed command line, with ``quick``; the options in ``sizes`` default to None.
    sizes : mapping of str to (full, quick)
        Each option's destination name and its two defaults.
    """
    for name, (full, quick) in sizes.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)


def chosen_backends(choice: str, *, postgresql_first: bool = False) -> list[str]:
    """The backends ``choice`` names, in the order they run.

    Parameters
    ----------
    choice : str
        The command line's ``sqlite``, ``postgresql``, ``both`` or ``none``.
    postgresql_first : bool
        Run PostgreSQL first, where the target is checked on it (the API's), so its figures lead.
    """
    if choice == "none":
        return []
    if choice == "both":
        return list(reversed(BACKENDS)) if postgresql_first else list(BACKENDS)
    return [choice]


def postgres_problem(url: str) -> str | None:
    """Why PostgreSQL at ``url`` cannot be used, or None when it answers."""
    import sqlalchemy as sa

    engine = sa.create_engine(url, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")
    except Exception as error:  # any driver error means "not available here"
        return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
    finally:
        engine.dispose()
    return None


# --- the scratch database ------------------------------------------------------------------------


@dataclass(frozen=True)
class ScratchDatabase:
    """A fresh market database for one run: its URL for other processes and an engine on it."""

    backend: str
    url: str
    """What a server process is given; on PostgreSQL its connections carry ``application_name``."""
    engine: Engine
    """The benchmark's own engine (on PostgreSQL with ``application_name`` ``bench``)."""
    application_name: str | None = None
    """PostgreSQL: the name the server's connections carry, to find its backends; None on SQLite."""


def _with_options(url: str, options: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}{options}"


@contextmanager
def fresh_database(backend: str, postgres_url: str) -> Iterator[ScratchDatabase]:
    """A database built by the market's migrations, empty, removed afterwards.

    Parameters
    ----------
    backend : str
        ``"sqlite"`` (a file in a temporary folder) or ``"postgresql"`` (a new schema
        ``bench_<random>`` in the database at ``postgres_url``, dropped at the end, as the tests'
        fixtures do).
    postgres_url : str
        The PostgreSQL database, without a search path.

    Yields
    ------
    ScratchDatabase
        The URL and an engine from :func:`market.database.create_database_engine`.
    """
    import sqlalchemy as sa

    from market.database import create_database_engine, upgrade_database

    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="smartbrum-bench-") as folder:
            url = f"sqlite:///{Path(folder) / 'market.db'}"
            engine = create_database_engine(url)
            try:
                upgrade_database(engine)
                yield ScratchDatabase(backend, url, engine)
            finally:
                engine.dispose()
        return
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    search_path = f"options=-csearch_path%3D{schema}"
    admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        engine = create_database_engine(_with_options(postgres_url, f"{search_path}&application_name=bench"))
        try:
            upgrade_database(engine)
            url = _with_options(postgres_url, f"{search_path}&application_name={schema}")
            yield ScratchDatabase(backend, url, engine, application_name=schema)
        finally:
            engine.dispose()
            with admin.connect() as connection:
                connection.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
    finally:
        admin.dispose()


def database_version(database: ScratchDatabase) -> str:
    """``SQLite 3.x`` or ``PostgreSQL 15.x (...)``: the server the figures were measured on."""
    import sqlite3

    if database.backend == "sqlite":
        return f"SQLite {sqlite3.sqlite_version}"
    with database.engine.connect() as connection:
        return f"PostgreSQL {connection.exec_driver_sql('SHOW server_version').scalar()}"


# --- the seeded market ---------------------------------------------------------------------------


def household_mpan(serial: int) -> str:
    """The MPAN core of the ``serial``-th benchmark household: distributor 14 (West Midlands), the
    serial as the unique number, and the check digit, so that the market accepts it.

    Parameters
    ----------
    serial : int
        1 or more and below 10**10; distinct serials give distinct MPANs.
    """
    from market.participants import mpan_with_check_digit

    return mpan_with_check_digit(f"14{serial:010d}")


def feeder_network(
    feeders: Sequence[str], *, feeder_kwh: Decimal, export_kwh: Mapping[str, Decimal] | None = None
) -> Network:
    """The grid supply point ``GSP``, one primary ``P1`` (fee 0.4 p/kWh) and ``feeders`` under it
    (0.2 p/kWh each): the small radial network the database benchmarks trade on.

    Parameters
    ----------
    feeders : sequence of str
        The feeders' ids.
    feeder_kwh : Decimal
        Each feeder's import and export capacity per interval; the primary carries all of theirs.
    export_kwh : mapping of str to Decimal, optional
        Feeders whose export is tighter (sunny streets whose midday surplus the edge cannot carry,
        so that their price falls below the rest's).
    """
    from optimiser import Network, Node

    tight = export_kwh or {}
    primary_kwh = feeder_kwh * len(feeders)
    nodes = [Node("P1", "GSP", primary_kwh, primary_kwh, Decimal("0.4"))]
    nodes += [
        Node(feeder, "P1", feeder_kwh, tight.get(feeder, feeder_kwh), Decimal("0.2")) for feeder in feeders
    ]
    return Network("GSP", tuple(nodes))


def sunny_street_network(
    feeders: Sequence[str], households: int, *, sunny_feeders: Sequence[str], export_kwh_per_household: float
) -> Network:
    """A :func:`feeder_network` sized for ``households`` spread evenly over ``feeders``, where the
    sunny streets' export is tight: their midday surplus congests it, so their nodal price falls
    below the rest's in the middle of the day.

    Parameters
    ----------
    feeders : sequence of str
        The feeders' ids.
    households : int
        How many households the network serves: every capacity is 10 kWh per household of a
        feeder (at least 100 kWh), ample for anything they trade.
    sunny_feeders : sequence of str
        The sunny streets among ``feeders``.
    export_kwh_per_household : float
        A sunny feeder's export capacity per household of it (at least 1 kWh in all).
    """
    per_feeder = max(1, households // len(feeders))
    tight = Decimal(max(1, int(export_kwh_per_household * per_feeder)))
    return feeder_network(
        feeders,
        feeder_kwh=Decimal(max(100, 10 * per_feeder)),
        export_kwh=dict.fromkeys(sunny_feeders, tight),
    )


def seed_market(
    engine: Engine,
    households: Mapping[str, str],
    *,
    now: datetime,
    network: Network | None = None,
    effective_from_utc: datetime | None = None,
    meters: Sequence[NewMeter] = (),
    token_label: str | None = None,
) -> list[IssuedToken]:
    """Set up a market in one transaction, as the energy company's set-up does (not timed).

    With ``network``: the operator ``OPS``, the network and the backstop tariff (24.5 p/kWh import,
    4.1 export), in force from ``effective_from_utc``. Then every household through
    :func:`market.participants.register_households` (MPAN serials 1, 2, ... in the order given),
    ``meters`` through :func:`market.participants.register_meters`, and, with ``token_label``, a
    token for every household through :func:`market.access.issue_tokens`: the bulk paths a district
    joining takes, so seeding 10,000 homes takes seconds, not minutes.

    Parameters
    ----------
    engine : Engine
        A migrated, empty database.
    households : mapping of str to str
        Each household's id and its node, in registration order.
    now : datetime
        When everything is registered.
    network : Network, optional
        The network to publish; without it only the households (and meters) are registered.
    effective_from_utc : datetime, optional
        When the network and tariff come into force (default ``now``).
    meters : sequence of NewMeter
        Meters of the households.
    token_label : str, optional
        Issue every household a token with this label.

    Returns
    -------
    list of IssuedToken
        The tokens, in the households' order (none without ``token_label``).
    """
    from market.access import issue_tokens
    from market.database import transaction
    from market.network import publish_network, set_tariff
    from market.participants import NewHousehold, register_households, register_meters, register_operator

    effective = now if effective_from_utc is None else effective_from_utc
    with transaction(engine) as session:
        if network is not None:
            register_operator(session, participant_id=OPERATOR_ID, display_name="Brum Energy", now=now)
            publish_network(session, network=network, effective_from_utc=effective, now=now)
            set_tariff(
                session,
                import_p_per_kwh=IMPORT_P_PER_KWH,
                export_p_per_kwh=EXPORT_P_PER_KWH,
                effective_from_utc=effective,
                now=now,
            )
        register_households(
            session,
            [
                NewHousehold(household, f"Home {household}", household_mpan(serial), node)
                for serial, (household, node) in enumerate(households.items(), start=1)
            ],
            now=now,
        )
        register_meters(session, meters, now=now)
        if token_label is None:
            return []
        return issue_tokens(session, list(households), now=now, label=token_label)


# --- measuring -----------------------------------------------------------------------------------


def percentile(values: Sequence[float], share: float) -> float:
    """The ``share`` quantile of ``values`` by nearest rank (a value that occurred); NaN for none."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(share * len(ordered)) - 1))]


@contextmanager
def profiled(path: Path | None) -> Iterator[None]:
    """Run the block under cProfile and write the stats to ``path``; with no path, just run it."""
    if path is None:
        yield
        return
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        yield
    finally:
        profiler.disable()
        path.parent.mkdir(parents=True, exist_ok=True)
        profiler.dump_stats(path)


def process_cpu_seconds(pid: int) -> float | None:
    """User plus system CPU seconds of one process so far, from ``/proc``; None if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime and stime, fields 14 and 15


def machine_busy_seconds() -> float | None:
    """CPU seconds the whole machine has been busy (all but idle and iowait), from ``/proc/stat``:
    on a shared machine, what the neighbours took is this less the processes measured."""
    try:
        with Path("/proc/stat").open() as stat:
            values = [int(value) for value in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return (sum(values[:8]) - values[3] - values[4]) / CLOCK_TICKS  # guest time is already in user


def load_average() -> float:
    """The one-minute load average (NaN where the system has none): other work makes figures noisy."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else math.nan


# --- the report ----------------------------------------------------------------------------------


def figures_console() -> Console:
    """The console on stdout that carries a benchmark's figures and nothing else."""
    return Console() if sys.stdout.isatty() else Console(width=FIGURES_WIDTH)


def progress_logger() -> logging.Logger:
    """The ``bench`` logger: progress on stderr, one timed line per event, away from the figures."""
    logger = logging.getLogger("bench")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    return logger


def machine_notes(
    *, packages: Sequence[str] = (), backends: Sequence[str] = (), postgres_url: str | None = None
) -> str:
    """One line for the record: the code's commit, Python, CPUs, versions, databases and load.

    Parameters
    ----------
    packages : sequence of str
        The distributions whose versions matter to the figures.
    backends : sequence of str
        The backends measured: SQLite's version, and PostgreSQL's with its ``synchronous_commit``
        (every commit waits for the WAL flush when on).
    postgres_url : str, optional
        Where PostgreSQL is, when it is among ``backends``.
    """
    parts = [
        _commit(),
        f"Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs",
    ]
    if packages:
        parts.append(", ".join(f"{package} {metadata.version(package)}" for package in packages))
    if "sqlite" in backends:
        import sqlite3

        parts.append(f"SQLite {sqlite3.sqlite_version}")
    if "postgresql" in backends and postgres_url is not None:
        import sqlalchemy as sa

        admin = sa.create_engine(postgres_url)
        try:
            with admin.connect() as connection:
                version = connection.exec_driver_sql("SHOW server_version").scalar()
                synchronous = connection.exec_driver_sql("SHOW synchronous_commit").scalar()
        finally:
            admin.dispose()
        parts.append(f"PostgreSQL {version}, synchronous_commit={synchronous}")
    parts.append(f"load average {load_average():.2f}")
    return "; ".join(parts)


def _commit() -> str:
    """``commit abc1234``, noting uncommitted changes outside ``bench/`` (the code measured)."""

    def git(*arguments: str) -> str:
        command = ["git", "-C", str(REPOSITORY), *arguments]
        return subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip()

    try:
        head = git("rev-parse", "--short", "HEAD")
        changed = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)bench")
    except (OSError, subprocess.CalledProcessError):
        return "commit unknown"
    return f"commit {head}" + (" with uncommitted changes" if changed else "")


@dataclass(kw_only=True)
class BackendRun:
    """What one benchmark measured on one backend; each benchmark adds its figures to it."""

    backend: str
    households: int
    problems: list[str] = field(default_factory=list)
    """Inconsistencies found when checking the run afterwards; any fails the benchmark."""


Run = TypeVar("Run", bound=BackendRun)


class BackendTable(Generic[Run]):
    """A results table with a row per figure and a column per backend run.

    Parameters
    ----------
    title : str
        The table's title.
    runs : sequence of BackendRun
        One column each.
    header : callable, optional
        A column's heading (default the backend's name).
    """

    def __init__(self, title: str, runs: Sequence[Run], header: Callable[[Run], str] | None = None) -> None:
        self.runs = runs
        self.table = Table(title=title)
        self.table.add_column("")
        for run in runs:
            self.table.add_column(run.backend if header is None else header(run), justify="right")

    def row(self, label: str, cell: Callable[[Run], str]) -> None:
        """Add a figure: ``cell`` of every run under ``label``."""
        self.table.add_row(label, *(cell(run) for run in self.runs))

    def __rich__(self) -> Table:
        return self.table


class TargetChecks:
    """The lines under a benchmark's figures: each target's verdict, problems and notes.

    ``passed`` is what the exit status reports: false once a binding target is missed or a problem
    is found.
    """

    def __init__(self) -> None:
        self.lines: list[Text] = []
        self.passed = True

    def target(self, name: str, passed: bool, figures: str, *, binding: bool = True) -> None:
        """``name: PASS (figures)`` or ``FAIL``; a miss fails the run if ``binding`` (a run smaller
        than the target's size, or a benchmark that only reports its targets, passes ``False``)."""
        verdict = ("PASS", "green") if passed else ("FAIL", "red")
        self.lines.append(Text.assemble(f"{name}: ", verdict, f" ({figures})"))
        self.passed = self.passed and (passed or not binding)

    def not_run(self, name: str, why: str) -> None:
        """A target this run's sizes cannot check."""
        self.lines.append(Text(f"{name}: NOT RUN ({why})"))

    def problem(self, line: str) -> None:
        """Something that does not add up: the run fails."""
        self.lines.append(Text(line, style="red"))
        self.passed = False

    def note(self, line: str) -> None:
        """A line for the record that decides nothing."""
        self.lines.append(Text(line))

    def print(self, console: Console) -> None:
        """Every line, each on one line however long."""
        for line in self.lines:
            console.print(line, soft_wrap=True)
