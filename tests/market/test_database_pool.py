"""market.database's pooled PostgreSQL connections: pinged only after waiting idle in the pool, a
dead one replaced rather than handed to a request."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import OperationalError

import market.database
from market.database import create_database_engine

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


def backend_pid(engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(sa.text("SELECT pg_backend_pid()")).scalar_one())


def terminate(admin, pid: int) -> None:
    with admin.connect() as connection:
        assert connection.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar()


def test_a_connection_back_from_a_request_a_moment_ago_is_not_pinged(database_url, monkeypatch):
    engine = create_database_engine(database_url, pool_size=1, max_overflow=0)
    pinged: list[object] = []
    ping = engine.dialect.do_ping
    monkeypatch.setattr(
        engine.dialect, "do_ping", lambda connection: pinged.append(connection) or ping(connection)
    )
    try:
        first = backend_pid(engine)  # a new connection: nothing to ping
        assert [backend_pid(engine) for _ in range(3)] == [first] * 3
        assert pinged == []
        monkeypatch.setattr(market.database, "PING_AFTER_IDLE_SECONDS", 0.0)  # now every wait is long
        assert backend_pid(engine) == first
        assert len(pinged) == 1
    finally:
        engine.dispose()


def test_an_idle_connection_that_died_is_replaced_before_a_request_gets_it(database_url, monkeypatch):
    engine = create_database_engine(database_url, pool_size=1, max_overflow=0)
    admin = create_database_engine(database_url)
    try:
        dead = backend_pid(engine)
        terminate(admin, dead)
        monkeypatch.setattr(market.database, "PING_AFTER_IDLE_SECONDS", 0.0)  # it has waited long enough
        assert backend_pid(engine) != dead  # pinged, found dead, replaced: the request never saw it
    finally:
        engine.dispose()
        admin.dispose()


def test_a_busy_connection_that_died_fails_once_and_the_pool_is_renewed(database_url):
    engine = create_database_engine(database_url, pool_size=2, max_overflow=0)
    admin = create_database_engine(database_url)
    try:
        with engine.connect() as one, engine.connect() as two:  # both pooled connections in use
            pids = [c.execute(sa.text("SELECT pg_backend_pid()")).scalar_one() for c in (one, two)]
        for pid in pids:  # a database restart: every connection gone
            terminate(admin, pid)
        with pytest.raises(OperationalError):  # in use a moment ago: not pinged, its request fails
            backend_pid(engine)
        # The disconnect invalidated the pool: the other dead connection is not handed out.
        assert backend_pid(engine) not in pids
        assert backend_pid(engine) not in pids
    finally:
        engine.dispose()
        admin.dispose()
