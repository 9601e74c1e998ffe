"""Alembic environment for the market's schema.

Run through :func:`market.database.upgrade_database` (or ``smartbrum db upgrade``), which hands
over an open connection; the URL in the configuration is used only when there is none.
"""

from __future__ import annotations

from typing import Any, Literal

import sqlalchemy as sa
from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlmodel import SQLModel

import market.tables  # noqa: F401  (registers the tables on SQLModel.metadata)

config = context.config
target_metadata = SQLModel.metadata


def render_item(kind: str, item: Any, autogen_context: AutogenContext) -> str | Literal[False]:
    """Write the market's own column types as ``market.tables.X()``, and SQLModel's strings as
    plain ``sa.String``, in generated migrations."""
    if kind == "type" and type(item).__name__ == "AutoString":
        return f"sa.String(length={item.length})" if item.length else "sa.String()"
    if kind == "type" and type(item).__module__ == "market.tables":
        autogen_context.imports.add("import market.tables")
        return f"market.tables.{type(item).__name__}()"
    return False


def run_migrations(connection: sa.Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_item=render_item,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    run_migrations(connection)
else:
    engine = sa.create_engine(config.get_main_option("sqlalchemy.url") or "", poolclass=sa.pool.NullPool)
    with engine.begin() as fresh:
        run_migrations(fresh)
