"""Real databases for the market's tests: a SQLite file and a PostgreSQL schema, both built by the
migrations. PostgreSQL is the machine's (127.0.0.1:5432, database ``test``, override with
``SMARTBRUM_TEST_POSTGRES_URL``); each test gets a schema of its own, dropped afterwards."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from market.database import create_database_engine, upgrade_database

POSTGRES_URL = os.environ.get(
    "SMARTBRUM_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path) -> Iterator[str]:
    """A migrated, empty database's URL, on each backend in turn."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'smartbrum.db'}"
        engine = create_database_engine(url)
        upgrade_database(engine)
        engine.dispose()
        yield url
        return
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    url = f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    engine = create_database_engine(url)
    upgrade_database(engine)
    engine.dispose()
    try:
        yield url
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


@pytest.fixture
def engine(database_url) -> Iterator[Engine]:
    engine = create_database_engine(database_url)
    yield engine
    engine.dispose()
