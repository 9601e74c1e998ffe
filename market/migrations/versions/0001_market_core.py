"""Market core: participants, meters, network versions, tariffs, orders and their history, clearing runs.

Revision ID: 0001
Revises:
Create Date: 2026-11-21 14:18:33.894974
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import market.tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "network_version",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("root", sa.String(length=64), nullable=False),
        sa.Column("effective_from_utc", market.tables.UtcDateTime(), nullable=False),
        sa.Column("note", sa.String(length=500), nullable=False),
        sa.Column("created_at", market.tables.UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("effective_from_utc"),
    )
    op.create_table(
        "participant",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("display_name", sa.String(length=200), nullable=False),
        sa.Column("mpan", sa.String(length=13), nullable=True),
        sa.Column("node_id", sa.String(length=64), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", market.tables.UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("mpan"),
    )
    op.create_table(
        "tariff",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("effective_from_utc", market.tables.UtcDateTime(), nullable=False),
        sa.Column("import_p_per_kwh", market.tables.ExactDecimal(), nullable=False),
        sa.Column("export_p_per_kwh", market.tables.ExactDecimal(), nullable=False),
        sa.Column("created_at", market.tables.UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("effective_from_utc"),
    )
    op.create_table(
        "clearing_run",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("interval_start_utc", market.tables.UtcDateTime(), nullable=False),
        sa.Column("length_minutes", sa.Integer(), nullable=False),
        sa.Column("settlement_date", sa.Date(), nullable=False),
        sa.Column("period", sa.Integer(), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("is_current", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=True),
        sa.Column("supersedes_id", sa.Integer(), nullable=True),
        sa.Column("superseded_at", market.tables.UtcDateTime(), nullable=True),
        sa.Column("inputs_digest", sa.String(length=64), nullable=False),
        sa.Column("network_version_id", sa.Integer(), nullable=False),
        sa.Column("tariff_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("welfare_p", market.tables.ExactDecimal(), nullable=False),
        sa.Column("grid_import_wh", sa.BigInteger(), nullable=False),
        sa.Column("grid_export_wh", sa.BigInteger(), nullable=False),
        sa.Column("orders", sa.Integer(), nullable=False),
        sa.Column("excluded_orders", sa.Integer(), nullable=False),
        sa.Column("price_levels", sa.Integer(), nullable=False),
        sa.Column("rounds", sa.Integer(), nullable=False),
        sa.Column("solve_seconds", sa.Float(), nullable=False),
        sa.Column("total_seconds", sa.Float(), nullable=False),
        sa.Column("started_at", market.tables.UtcDateTime(), nullable=False),
        sa.Column("finished_at", market.tables.UtcDateTime(), nullable=False),
        sa.Column("triggered_by", sa.String(length=100), nullable=False),
        sa.ForeignKeyConstraint(
            ["network_version_id"],
            ["network_version.id"],
        ),
        sa.ForeignKeyConstraint(
            ["supersedes_id"],
            ["clearing_run.id"],
        ),
        sa.ForeignKeyConstraint(
            ["tariff_id"],
            ["tariff.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("interval_start_utc", "length_minutes", "sequence", name="uq_run_sequence"),
    )
    with op.batch_alter_table("clearing_run", schema=None) as batch_op:
        batch_op.create_index(
            "uq_run_current",
            ["interval_start_utc", "length_minutes"],
            unique=True,
            sqlite_where=sa.text("is_current"),
            postgresql_where=sa.text("is_current"),
        )

    op.create_table(
        "market_order",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("participant_id", sa.String(length=64), nullable=False),
        sa.Column("node_id", sa.String(length=64), nullable=False),
        sa.Column("interval_start_utc", market.tables.UtcDateTime(), nullable=False),
        sa.Column("length_minutes", sa.Integer(), nullable=False),
        sa.Column("settlement_date", sa.Date(), nullable=False),
        sa.Column("period", sa.Integer(), nullable=False),
        sa.Column("side", sa.String(length=4), nullable=False),
        sa.Column("quantity_wh", sa.BigInteger(), nullable=False),
        sa.Column("price_ticks", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("priority_at", market.tables.UtcDateTime(), nullable=False),
        sa.Column("created_at", market.tables.UtcDateTime(), nullable=False),
        sa.Column("updated_at", market.tables.UtcDateTime(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=128), nullable=True),
        sa.ForeignKeyConstraint(
            ["participant_id"],
            ["participant.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("participant_id", "idempotency_key", name="uq_order_idempotency"),
    )
    with op.batch_alter_table("market_order", schema=None) as batch_op:
        batch_op.create_index(
            "ix_order_interval", ["interval_start_utc", "length_minutes", "status"], unique=False
        )
        batch_op.create_index(
            "ix_order_participant_interval", ["participant_id", "interval_start_utc"], unique=False
        )

    op.create_table(
        "meter",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("participant_id", sa.String(length=64), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("unit_id", sa.Integer(), nullable=False),
        sa.Column("transport", sa.String(length=16), nullable=False),
        sa.Column("model", sa.String(length=32), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", market.tables.UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["participant_id"],
            ["participant.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("host", "port", "unit_id", name="uq_meter_address"),
    )
    with op.batch_alter_table("meter", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_meter_participant_id"), ["participant_id"], unique=False)

    op.create_table(
        "network_node",
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("node_id", sa.String(length=64), nullable=False),
        sa.Column("parent_id", sa.String(length=64), nullable=False),
        sa.Column("import_capacity_wh", sa.BigInteger(), nullable=False),
        sa.Column("export_capacity_wh", sa.BigInteger(), nullable=False),
        sa.Column("fee_p_per_kwh", market.tables.ExactDecimal(), nullable=False),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["network_version.id"],
        ),
        sa.PrimaryKeyConstraint("version_id", "node_id"),
    )
    op.create_table(
        "node_price",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("node_id", sa.String(length=64), nullable=False),
        sa.Column("price_p_per_kwh", market.tables.ExactDecimal(), nullable=False),
        sa.Column("lowest_p_per_kwh", market.tables.ExactDecimal(), nullable=True),
        sa.Column("highest_p_per_kwh", market.tables.ExactDecimal(), nullable=True),
        sa.Column("net_import_wh", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["clearing_run.id"],
        ),
        sa.PrimaryKeyConstraint("run_id", "node_id"),
    )
    op.create_table(
        "order_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("order_id", sa.String(length=36), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("quantity_wh", sa.BigInteger(), nullable=False),
        sa.Column("price_ticks", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("at", market.tables.UtcDateTime(), nullable=False),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["market_order.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("order_id", "version", name="uq_order_event_version"),
    )
    op.create_table(
        "trade",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("order_id", sa.String(length=36), nullable=False),
        sa.Column("participant_id", sa.String(length=64), nullable=False),
        sa.Column("node_id", sa.String(length=64), nullable=False),
        sa.Column("side", sa.String(length=4), nullable=False),
        sa.Column("accepted_wh", sa.BigInteger(), nullable=False),
        sa.Column("price_p_per_kwh", market.tables.ExactDecimal(), nullable=False),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["market_order.id"],
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["clearing_run.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("run_id", "order_id", name="uq_trade_order"),
    )
    with op.batch_alter_table("trade", schema=None) as batch_op:
        batch_op.create_index("ix_trade_participant", ["participant_id", "run_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("trade", schema=None) as batch_op:
        batch_op.drop_index("ix_trade_participant")

    op.drop_table("trade")
    op.drop_table("order_event")
    op.drop_table("node_price")
    op.drop_table("network_node")
    with op.batch_alter_table("meter", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_meter_participant_id"))

    op.drop_table("meter")
    with op.batch_alter_table("market_order", schema=None) as batch_op:
        batch_op.drop_index("ix_order_participant_interval")
        batch_op.drop_index("ix_order_interval")

    op.drop_table("market_order")
    with op.batch_alter_table("clearing_run", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_run_current", sqlite_where=sa.text("is_current"), postgresql_where=sa.text("is_current")
        )

    op.drop_table("clearing_run")
    op.drop_table("tariff")
    op.drop_table("participant")
    op.drop_table("network_version")
