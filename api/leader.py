"""One scheduler for many API workers: whoever holds the job lock runs the jobs.

On PostgreSQL the lock is a session-level advisory lock on a connection held for as long as the
process leads, keyed by the database's identity (``current_database()`` and
``current_schema()``, asked of the server, never the URL's text: two URLs for one database share
one lock, two schemas on one server do not); on SQLite, an exclusive lock on a file beside the
database. A worker that does not get it tries again every ``retry_s`` and takes over if the
leader dies (the database or the OS releases its lock). The leader checks its connection as
often: when it is lost (the server restarted, the session was killed) the lock is gone too, so
it stops its jobs and competes again. Clearing and settlement therefore never stop and never
run twice at once (they are also exactly-once on their own). Every change is logged
(``job_leader``).
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from api.logs import log_event
from market.database import ADVISORY_LOCK_KEY

log = logging.getLogger("smartbrum.leader")
#: The lock's name; the server joins its database's identity to it (ADVISORY_LOCK_KEY).
JOB_LOCK_NAME = "smartbrum\x1fjobs"


class Job(Protocol):
    def start(self) -> Any: ...

    def shutdown(self) -> None: ...


class JobLeader:
    """Starts the jobs once this process holds the job lock; see the module docstring.

    ``jobs`` is a list (started at most once, as a test's recorders) or a function that builds
    them afresh each time this process comes to lead (jobs cannot be restarted once stopped).
    """

    def __init__(
        self, engine: Engine, jobs: list[Job] | Callable[[], list[Job]], *, retry_s: float = 5.0
    ) -> None:
        self.engine = engine
        self._build = jobs if callable(jobs) else (lambda: jobs)
        self.jobs: list[Job] = [] if callable(jobs) else list(jobs)
        self.retry_s = retry_s
        self.leading = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="job-leader", daemon=True)
        self._connection: sa.Connection | None = None
        self._file: int | None = None
        self._unknown = False  # the lock could not be tried (logged once)

    def start(self) -> None:
        self._thread.start()

    def shutdown(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)
        if self.leading:
            self._stop_jobs()
            log_event(
                log,
                "job_leader",
                "this process stops leading the jobs: shutting down",
                role="stopped",
                pid=os.getpid(),
            )
        self._release()

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self.leading:
                if self._acquire():
                    self._lead()
            elif not self._still_held():
                log_event(
                    log,
                    "job_leader",
                    "this process lost the job lock (its database connection is gone); "
                    "stopping the jobs and competing again",
                    level=logging.WARNING,
                    role="lost",
                    pid=os.getpid(),
                )
                self._stop_jobs()
                self._release()
                continue  # compete again at once
            self._stop.wait(self.retry_s)

    def _lead(self) -> None:
        self.leading = True
        self._unknown = False
        log_event(log, "job_leader", "this process leads the jobs", role="leader", pid=os.getpid())
        self.jobs = []
        try:
            for job in self._build():
                job.start()  # a scheduler's start catches up first: it may fail (the database gone)
                self.jobs.append(job)
        except Exception:
            # Half the jobs running is worse than none: stop them, let the lock go and try again
            # (another worker may do better; this one tries after retry_s).
            log_event(
                log,
                "job_failed",
                "a job could not start; this process stops leading and competes again",
                level=logging.ERROR,
                job="start",
                exc_info=True,
            )
            self._stop_jobs()
            self._release()
            log_event(log, "job_leader", "this process gave up the job lock", role="stopped", pid=os.getpid())

    def _stop_jobs(self) -> None:
        self.leading = False
        for job in reversed(self.jobs):
            try:
                job.shutdown()
            except Exception:
                log.exception("stopping %s failed", type(job).__name__)

    def _acquire(self) -> bool:
        try:
            got = self._try_lock()
            self._unknown = False
            return got
        except Exception as error:
            if not self._unknown:  # once until it works again, not every retry
                self._unknown = True
                log_event(
                    log,
                    "job_leader",
                    f"could not try the job lock ({type(error).__name__}: {error}); trying again "
                    f"every {self.retry_s:g} s",
                    level=logging.WARNING,
                    role="unknown",
                    pid=os.getpid(),
                )
            return False

    def _try_lock(self) -> bool:
        if self.engine.dialect.name == "postgresql":
            connection = self.engine.connect()
            try:
                got = connection.execute(
                    sa.text(f"SELECT pg_try_advisory_lock({ADVISORY_LOCK_KEY})"), {"name": JOB_LOCK_NAME}
                ).scalar()
                connection.commit()
            except Exception:
                connection.invalidate()
                connection.close()
                raise
            if got:
                self._connection = connection
                return True
            connection.close()
            return False
        handle = os.open(job_lock_file(self.engine), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(handle)
            return False
        self._file = handle
        return True

    def _still_held(self) -> bool:
        """Whether this process still holds the lock (on PostgreSQL, its connection answers and
        its session holds the lock)."""
        if self._connection is None:
            return self._file is not None
        try:
            held = self._connection.execute(
                sa.text(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                    "AND pid = pg_backend_pid() AND mode = 'ExclusiveLock'"
                )
            ).scalar()
            self._connection.commit()
            return bool(held)
        except Exception:
            return False

    def _release(self) -> None:
        if self._connection is not None:
            try:
                self._connection.execute(
                    sa.text(f"SELECT pg_advisory_unlock({ADVISORY_LOCK_KEY})"), {"name": JOB_LOCK_NAME}
                )
                self._connection.commit()
            except Exception:
                pass  # the connection is gone, and its lock with it
            finally:
                # Really close it: back in the pool, its session (and so the lock) would live on.
                self._connection.invalidate()
                self._connection.close()
                self._connection = None
        if self._file is not None:
            os.close(self._file)  # the OS releases the lock
            self._file = None


def job_lock_file(engine: Engine) -> Path:
    """The SQLite database's job lock file (beside it), its folder made if missing."""
    path = Path(engine.url.database or "smartbrum.db").with_suffix(".jobs.lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def leader_known(engine: Engine) -> bool:
    """Whether some process (this one or another) holds ``engine``'s database's job lock."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as connection:
            # An advisory lock on a bigint key shows in pg_locks as classid (its high 32 bits),
            # objid (its low 32 bits) and objsubid 1.
            held = connection.execute(
                sa.text(
                    "WITH k AS (SELECT " + ADVISORY_LOCK_KEY + " AS key) "
                    "SELECT count(*) FROM pg_locks, k WHERE locktype = 'advisory' AND granted "
                    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
                    "AND objsubid = 1 AND classid::bigint = ((k.key >> 32) & 4294967295) "
                    "AND objid::bigint = (k.key & 4294967295)"
                ),
                {"name": JOB_LOCK_NAME},
            ).scalar()
        return bool(held)
    handle = os.open(job_lock_file(engine), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False
    finally:
        os.close(handle)
