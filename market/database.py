"""Connecting to the market's database and bringing its schema up to date.

SQLite (the default, a file such as ``var/smartbrum.db``) runs in WAL mode with foreign keys on,
and every write transaction (:func:`transaction`) takes the write lock at its start
(``BEGIN IMMEDIATE``), so two processes never interleave a read-then-write; PostgreSQL
(production) is reached by URL. The schema is made only by the Alembic migrations in
``market/migrations``, never by ``create_all``.

The caller (:mod:`api`, or a test) decides the URL; nothing here reads the environment.

May import SQLAlchemy, Alembic and :mod:`market`.
"""

from __future__ import annotations

import itertools
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine
from sqlmodel import Session

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
#: Execution option marking a write transaction (SQLite then begins it IMMEDIATE).
WRITE_OPTION = "smartbrum_write"
SQLITE_BUSY_TIMEOUT_MS = 30_000
T = TypeVar("T")


def create_database_engine(url: str, **options: Any) -> Engine:
    """An engine for ``url``, set up for the market's transactions.

    For a SQLite file its folder is created if missing.
    """
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
            **options,
        )
        sa.event.listen(engine, "connect", _sqlite_connect)
        sa.event.listen(engine, "begin", _sqlite_begin)
        return engine
    engine = sa.create_engine(url, **options)
    sa.event.listen(engine, "checkin", _note_checkin)
    sa.event.listen(engine, "checkout", _pinging_if_idle(engine.dialect))
    return engine


#: A pooled PostgreSQL connection idle longer than this is pinged before it is handed out.
PING_AFTER_IDLE_SECONDS = 5.0


def _note_checkin(_dbapi_connection: Any, record: Any) -> None:
    record.info["checked_in_at"] = time.monotonic()


def _pinging_if_idle(dialect: sa.Dialect) -> Callable[[Any, Any, Any], None]:
    """A checkout listener: see :func:`_ping_if_idle`."""

    def listener(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        _ping_if_idle(dialect, dbapi_connection, record)

    return listener


def _ping_if_idle(dialect: sa.Dialect, dbapi_connection: Any, record: Any) -> None:
    """Ping a connection that has waited in the pool for a while; a dead one is replaced.

    SQLAlchemy's ``pool_pre_ping`` pings at every checkout: a round trip per request (over a
    tenth of a placement's) for connections that were in use a moment ago. Only a connection
    that sat idle (overnight, across a database restart) is asked here. One that died while busy
    fails its request as it would have under pre-ping had it died a moment later, and that error
    invalidates the whole pool (SQLAlchemy does so on a disconnect), so the other connections of
    that time are replaced at their next checkout instead of failing in turn.
    """
    idle_since = record.info.get("checked_in_at")
    if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE_SECONDS:
        return
    try:
        alive = dialect.do_ping(dbapi_connection)
    except dialect.loaded_dbapi.Error:  # a dead connection's ping raises rather than answering
        alive = False
    if not alive:
        raise sa.exc.DisconnectionError("the pooled connection did not answer a ping")


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # Hand transaction control to SQLAlchemy's "begin" event (the pysqlite driver would
    # otherwise begin lazily, after the first read, too late to take the lock up front).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_begin(connection: sa.Connection) -> None:
    # A write transaction takes the write lock at its start, so two never interleave a
    # read-then-write; a read waits for nothing (WAL readers do not block the writer) and must
    # not hold the lock, or a request reading while it waits for a pooled connection would stall
    # every writer behind it.
    write = connection.get_execution_options().get(WRITE_OPTION, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def alembic_config(engine: Engine) -> Config:
    """Alembic's configuration for ``engine``, pointing at the packaged migrations."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    # ConfigParser reads "%" as interpolation; a URL may hold %-escapes (a search_path option).
    config.set_main_option(
        "sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%")
    )
    return config


def upgrade_database(engine: Engine, revision: str = "head") -> None:
    """Apply the migrations up to ``revision`` on ``engine``'s database."""
    config = alembic_config(engine)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def schema_revision(engine: Engine) -> str | None:
    """The revision the database is at, or ``None`` if no migration has run."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision(engine: Engine) -> str | None:
    """The newest revision the packaged migrations know."""
    return ScriptDirectory.from_config(alembic_config(engine)).get_current_head()


@contextmanager
def transaction(engine: Engine) -> Iterator[Session]:
    """A write session whose work commits together at the end, or not at all.

    On SQLite it takes the database's write lock at its start (``BEGIN IMMEDIATE``); a plain
    ``Session`` (for reads) does not.
    """
    with Session(engine, expire_on_commit=False) as session, session.begin():
        session.connection(execution_options={WRITE_OPTION: True})
        yield session


#: Values per ``IN (...)`` list: well under every backend's bound-parameter limit (SQLite's is
#: 32,766; psycopg's 65,535 per statement).
IN_LIST_SIZE = 5000


def chunks(values: Sequence[T], size: int = IN_LIST_SIZE) -> Iterator[Sequence[T]]:
    """``values`` in pieces of at most ``size``: one statement's ``IN (...)`` list each."""
    for first in range(0, len(values), size):
        yield values[first : first + size]


def lock_key(*parts: object) -> int:
    """A stable signed 64-bit key for a PostgreSQL advisory lock on ``parts``."""
    text = "\x1f".join(str(part) for part in parts).encode()
    high, low = zlib.crc32(text), zlib.adler32(text)
    value = (high << 32) | low
    return value - (1 << 64) if value >= 1 << 63 else value


#: SQL for a PostgreSQL advisory lock's key on the text ``:name`` in this database and schema: a
#: signed 64-bit hash the server computes from its own identity (``current_database()``,
#: ``current_schema()``), so every URL that reaches one market shares its locks and no two
#: markets on one server do.
ADVISORY_LOCK_KEY = (
    "hashtextextended(concat_ws(chr(31), current_database(), current_schema(), CAST(:name AS text)), 0)"
)

#: The statements taking one lock, shared or not (built once: every order change takes one).
_ADVISORY_LOCKS = {
    shared: sa.text(f"SELECT {function}({ADVISORY_LOCK_KEY})")
    for shared, function in ((True, "pg_advisory_xact_lock_shared"), (False, "pg_advisory_xact_lock"))
}


def lock_for_transaction(session: Session, *parts: object, shared: bool = False) -> None:
    """Serialise transactions that touch the same thing, until this one ends.

    On PostgreSQL a transaction-level advisory lock: ``shared`` holders do not wait for each other,
    only for an exclusive holder (and it for them). On SQLite the transaction already holds the
    database's write lock (``BEGIN IMMEDIATE``), which serialises everything.
    """
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        # Advisory locks are per database server: the key joins the database's identity, asked of
        # the server (not the URL's text, which two spellings of one database would not share),
        # so markets in different databases or schemas never wait on each other.
        name = "\x1f".join(str(part) for part in parts)
        connection.execute(_ADVISORY_LOCKS[shared], {"name": name})


def lock_all_for_transaction(
    session: Session, keys: Sequence[Sequence[object]], *, shared: bool = False
) -> None:
    """:func:`lock_for_transaction` for many things at once, in one statement rather than one each
    (a household's day of orders takes 48 books' locks): each of ``keys`` is the ``parts`` of one
    lock, taken in the order given (PostgreSQL evaluates a select list from left to right).
    """
    if not keys or session.get_bind().dialect.name != "postgresql":
        return
    function = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
    calls = ", ".join(
        f"{function}({ADVISORY_LOCK_KEY.replace(':name', f':name_{i}')})" for i in range(len(keys))
    )
    names = {f"name_{i}": "\x1f".join(str(part) for part in parts) for i, parts in enumerate(keys)}
    session.execute(sa.text(f"SELECT {calls}"), names)


def bulk_insert(
    session: Session,
    table: sa.Table,
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    constants: Mapping[str, Any] | None = None,
) -> int:
    """Insert many rows in the session's transaction, fast: ``COPY`` on PostgreSQL, the driver's
    ``executemany`` on SQLite. Returns how many rows were inserted.

    Each row is a tuple of values for ``columns``; ``constants`` are columns with the same value
    in every row (a run's id and interval, say). Each value goes through its column type's own
    bind processing (the same conversion an ORM or Core insert applies), so what is stored is
    exactly what a normal insert stores; only the per-row statement overhead is gone. A constant
    is processed once, and a value object met again (a price shared by many lines) is processed
    once per object. For tables written tens of thousands of rows at a time (the ledger).
    """
    constants = dict(constants or {})
    connection = session.connection()
    dialect = connection.dialect

    def processor(name: str) -> Callable[[Any], Any] | None:
        process = table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
        if process is None:
            return None
        seen: dict[int, tuple[Any, Any]] = {}  # id -> (the object, kept alive; its bound value)

        def bind(value: Any) -> Any:
            known = seen.get(id(value))
            if known is None:
                known = seen[id(value)] = (value, process(value))
            return known[1]

        return bind

    fixed = [
        value if (process := processor(name)) is None else process(value) for name, value in constants.items()
    ]
    listed = list(rows)
    if not listed:
        return 0
    # Column by column: one map() per column that needs processing, then the rows zipped back.
    by_column: list[Iterable[Any]] = [
        values if (process := processor(name)) is None else list(map(process, values))
        for name, values in zip(columns, zip(*listed, strict=True), strict=True)
    ]
    by_column += [itertools.repeat(value, len(listed)) for value in fixed]
    values = list(zip(*by_column))
    column_list = ", ".join([*columns, *constants])
    if dialect.name == "postgresql":
        driver = connection.connection.driver_connection
        assert driver is not None
        with driver.cursor() as cursor, cursor.copy(f"COPY {table.name} ({column_list}) FROM STDIN") as copy:
            for value in values:
                copy.write_row(value)
    else:
        marks = ", ".join("?" for _ in range(len(columns) + len(constants)))
        connection.exec_driver_sql(f"INSERT INTO {table.name} ({column_list}) VALUES ({marks})", values)
    return len(values)
