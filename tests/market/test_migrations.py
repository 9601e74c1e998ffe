"""The schema comes from the migrations, and the migrations match the table classes."""

from __future__ import annotations

import json

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlmodel import SQLModel

import market.tables  # noqa: F401  (registers the tables)
from market.database import alembic_config, head_revision, schema_revision, upgrade_database


def test_database_is_at_the_head_revision(engine):
    assert schema_revision(engine) == head_revision(engine) == "0011"


def test_migrations_match_the_table_classes(engine):
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, SQLModel.metadata) == []


def test_upgrading_again_is_harmless(engine):
    upgrade_database(engine)
    assert schema_revision(engine) == "0011"


def test_the_latest_migration_goes_down_and_up_again(engine):
    config = alembic_config(engine)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0007")
    assert schema_revision(engine) == "0007"
    upgrade_database(engine)
    test_migrations_match_the_table_classes(engine)


def test_sqlite_runs_in_wal_mode_with_foreign_keys(engine):
    if engine.dialect.name != "sqlite":
        return
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_an_open_read_does_not_block_a_write(database_url):
    """Reads never hold the write lock (on SQLite only writes begin IMMEDIATE)."""
    import time
    from datetime import UTC, datetime

    from sqlmodel import Session, select

    from market.database import create_database_engine, transaction
    from market.participants import register_operator
    from market.tables import ParticipantRow

    reader, writer = create_database_engine(database_url), create_database_engine(database_url)
    try:
        with Session(reader) as session:
            session.exec(select(ParticipantRow)).all()  # the read transaction is open from here
            started = time.monotonic()
            with transaction(writer) as write:
                register_operator(
                    write, participant_id="OPS", display_name="Brum Energy", now=datetime.now(UTC)
                )
            assert time.monotonic() - started < 5
    finally:
        reader.dispose()
        writer.dispose()


def test_settlement_standing_moves_to_its_table_and_back_with_its_runs(engine):
    """0010 moves each run's pending households (and their reasons) from the run's JSON text to
    settlement_standing and back again on the way down, a run that settled nobody included."""
    from datetime import UTC, datetime, timedelta

    import sqlalchemy as sa
    from sqlmodel import Session

    from market.intervals import period_at
    from market.settlement import INITIAL, SettlementConfig, get_settlement_run, settle
    from tests.factories import seed_cleared_interval

    now = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    period = period_at(now + timedelta(hours=1))
    seed_cleared_interval(engine, period, now=now)
    runs = [
        settle(
            engine, period=p, run_type=INITIAL, config=SettlementConfig(), now=p.end_utc, triggered_by="t"
        ).run
        for p in (period, period.next())  # the second interval was not cleared: nobody settled
    ]
    assert set(runs[0].pending) == {"H1", "H2", "H3"}
    assert runs[1].pending == {"*": "the interval has no clearing run yet"}
    config = alembic_config(engine)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0009")
    with engine.connect() as connection:
        texts = dict(connection.execute(sa.text("SELECT id, pending_json FROM settlement_run")).all())
    assert set(json.loads(texts[runs[0].id])) == {"H1", "H2", "H3"}
    assert json.loads(texts[runs[1].id]) == runs[1].pending
    upgrade_database(engine)
    with Session(engine) as session:
        assert [get_settlement_run(session, run.id) for run in runs] == runs
