"""The schema comes from the migrations, and the migrations match the table classes."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlmodel import SQLModel

import market.tables  # noqa: F401  (registers the tables)
from market.database import alembic_config, head_revision, schema_revision, upgrade_database


def test_database_is_at_the_head_revision(engine):
    assert schema_revision(engine) == head_revision(engine) == "0009"


def test_migrations_match_the_table_classes(engine):
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, SQLModel.metadata) == []


def test_upgrading_again_is_harmless(engine):
    upgrade_database(engine)
    assert schema_revision(engine) == "0009"


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
