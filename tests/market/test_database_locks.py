"""market.database's transaction locks taken many at once (lock_all_for_transaction): the very
locks lock_for_transaction takes one at a time, shared or not, held until the transaction ends."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import OperationalError

from market.database import lock_all_for_transaction, lock_for_transaction, transaction


def try_lock(engine, *parts: object, shared: bool) -> None:
    with transaction(engine) as session:
        if engine.dialect.name == "postgresql":
            session.execute(sa.text("SET LOCAL lock_timeout = '200ms'"))
        lock_for_transaction(session, *parts, shared=shared)


def test_many_locks_in_one_statement_are_the_same_locks_as_one_at_a_time(engine):
    statements: list[str] = []
    with transaction(engine) as held:

        def record(*args):
            statements.append(args[2])

        sa.event.listen(engine, "before_cursor_execute", record)
        keys = [("book", "2026-12-07T09:30", 30), ("book", "2026-12-07T10:00", 30)]
        lock_all_for_transaction(held, keys, shared=True)
        sa.event.remove(engine, "before_cursor_execute", record)
        taken = len(statements)
        if engine.dialect.name == "sqlite":  # the write lock serialises everything already
            assert taken == 0
            return
        assert taken == 1
        try_lock(engine, "book", "2026-12-07T10:00", 30, shared=True)  # shared holders share
        with pytest.raises(OperationalError, match="lock timeout"):
            try_lock(engine, "book", "2026-12-07T10:00", 30, shared=False)
        try_lock(engine, "book", "2026-12-07T10:30", 30, shared=False)  # not among them
    try_lock(engine, "book", "2026-12-07T10:00", 30, shared=False)  # released at the end
