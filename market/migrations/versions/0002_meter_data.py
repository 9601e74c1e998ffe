"""Meter data: raw readings, counter events and interval energy (with revisions).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21 14:34:34.296083
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import market.tables

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "interval_energy",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("meter_id", sa.String(length=64), nullable=False),
        sa.Column("interval_start_utc", market.tables.UtcDateTime(), nullable=False),
        sa.Column("length_minutes", sa.Integer(), nullable=False),
        sa.Column("settlement_date", sa.Date(), nullable=False),
        sa.Column("period", sa.Integer(), nullable=False),
        sa.Column("import_wh", sa.BigInteger(), nullable=False),
        sa.Column("export_wh", sa.BigInteger(), nullable=False),
        sa.Column("estimated", sa.Boolean(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("is_current", sa.Boolean(), nullable=False),
        sa.Column("computed_at", market.tables.UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["meter_id"],
            ["meter.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint(
            "meter_id", "interval_start_utc", "length_minutes", "revision", name="uq_energy_rev"
        ),
    )
    with op.batch_alter_table("interval_energy", schema=None) as batch_op:
        batch_op.create_index(
            "uq_energy_current",
            ["meter_id", "interval_start_utc", "length_minutes"],
            unique=True,
            sqlite_where=sa.text("is_current"),
            postgresql_where=sa.text("is_current"),
        )

    op.create_table(
        "meter_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("meter_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("counter", sa.String(length=16), nullable=False),
        sa.Column("previous_at", market.tables.UtcDateTime(), nullable=False),
        sa.Column("at", market.tables.UtcDateTime(), nullable=False),
        sa.Column("before_wh", sa.BigInteger(), nullable=False),
        sa.Column("after_wh", sa.BigInteger(), nullable=False),
        sa.Column("recorded_at", market.tables.UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["meter_id"],
            ["meter.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("meter_id", "at", "counter", "kind", name="uq_meter_event"),
    )
    op.create_table(
        "meter_reading",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("meter_id", sa.String(length=64), nullable=False),
        sa.Column("polled_at", market.tables.UtcDateTime(), nullable=False),
        sa.Column("meter_time", market.tables.UtcDateTime(), nullable=True),
        sa.Column("quality", sa.String(length=16), nullable=False),
        sa.Column("import_wh", sa.BigInteger(), nullable=True),
        sa.Column("export_wh", sa.BigInteger(), nullable=True),
        sa.Column("values_json", sa.Text(), nullable=False),
        sa.Column("problems", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["meter_id"],
            ["meter.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("meter_id", "polled_at", name="uq_reading_poll"),
    )


def downgrade() -> None:
    op.drop_table("meter_reading")
    op.drop_table("meter_event")
    with op.batch_alter_table("interval_energy", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_energy_current", sqlite_where=sa.text("is_current"), postgresql_where=sa.text("is_current")
        )

    op.drop_table("interval_energy")
