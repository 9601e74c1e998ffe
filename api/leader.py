"""One scheduler for many API workers: whoever holds the job lock runs the jobs.

On PostgreSQL the lock is a session-level advisory lock on a connection held for as long as the
process leads; on SQLite, an exclusive lock on a file beside the database. A worker that does not
get it tries again every ``retry_s`` and takes over if the leader dies (the database or the OS
releases its lock), so clearing and settlement never stop and never run twice at once (they are
also exactly-once on their own).
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from pathlib import Path
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from market.database import lock_key

log = logging.getLogger("smartbrum.leader")
JOB_LOCK = lock_key("smartbrum", "jobs")


class Job(Protocol):
    def start(self) -> Any: ...

    def shutdown(self) -> None: ...


class JobLeader:
    """Starts ``jobs`` once this process holds the job lock; see the module docstring."""

    def __init__(self, engine: Engine, jobs: list[Job], *, retry_s: float = 5.0) -> None:
        self.engine = engine
        self.jobs = jobs
        self.retry_s = retry_s
        self.leading = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="job-leader", daemon=True)
        self._connection: sa.Connection | None = None
        self._file: int | None = None

    def start(self) -> None:
        self._thread.start()

    def shutdown(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)
        if self.leading:
            for job in reversed(self.jobs):
                job.shutdown()
        self._release()

    def _run(self) -> None:
        while not self._stop.is_set():
            if self._acquire():
                self.leading = True
                log.info("this process runs the jobs")
                for job in self.jobs:
                    job.start()
                return
            self._stop.wait(self.retry_s)

    def _acquire(self) -> bool:
        try:
            if self.engine.dialect.name == "postgresql":
                connection = self.engine.connect()
                got = connection.execute(
                    sa.text("SELECT pg_try_advisory_lock(:key)"), {"key": JOB_LOCK}
                ).scalar()
                connection.commit()
                if got:
                    self._connection = connection
                    return True
                connection.close()
                return False
            path = Path(self.engine.url.database or "smartbrum.db").with_suffix(".jobs.lock")
            path.parent.mkdir(parents=True, exist_ok=True)
            handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(handle)
                return False
            self._file = handle
            return True
        except Exception:
            log.exception("could not try the job lock; trying again")
            return False

    def _release(self) -> None:
        if self._connection is not None:
            try:
                self._connection.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": JOB_LOCK})
                self._connection.commit()
            finally:
                # Really close it: back in the pool, its session (and so the lock) would live on.
                self._connection.invalidate()
                self._connection.close()
                self._connection = None
        if self._file is not None:
            os.close(self._file)  # the OS releases the lock
            self._file = None
