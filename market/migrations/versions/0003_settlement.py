"""Settlement: runs (initial and reconciliations) and the double-entry ledger.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21 14:59:47.378875
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import market.tables

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "settlement_run",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("interval_start_utc", market.tables.UtcDateTime(), nullable=False),
        sa.Column("length_minutes", sa.Integer(), nullable=False),
        sa.Column("settlement_date", sa.Date(), nullable=False),
        sa.Column("period", sa.Integer(), nullable=False),
        sa.Column("run_type", sa.String(length=16), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("clearing_run_id", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("inputs_digest", sa.String(length=64), nullable=False),
        sa.Column("import_p_per_kwh", market.tables.ExactDecimal(), nullable=True),
        sa.Column("export_p_per_kwh", market.tables.ExactDecimal(), nullable=True),
        sa.Column("vat_rate", market.tables.ExactDecimal(), nullable=False),
        sa.Column("platform_fee_p_per_kwh", market.tables.ExactDecimal(), nullable=False),
        sa.Column("pending_json", sa.Text(), nullable=False),
        sa.Column("estimated", sa.Text(), nullable=False),
        sa.Column("lines", sa.Integer(), nullable=False),
        sa.Column("created_at", market.tables.UtcDateTime(), nullable=False),
        sa.Column("triggered_by", sa.String(length=100), nullable=False),
        sa.ForeignKeyConstraint(
            ["clearing_run_id"],
            ["clearing_run.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint(
            "interval_start_utc", "length_minutes", "sequence", name="uq_settlement_sequence"
        ),
    )
    with op.batch_alter_table("settlement_run", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_settlement_run_settlement_date"), ["settlement_date"], unique=False
        )
        batch_op.create_index(
            "uq_settlement_initial",
            ["interval_start_utc", "length_minutes"],
            unique=True,
            sqlite_where=sa.text("run_type = 'initial'"),
            postgresql_where=sa.text("run_type = 'initial'"),
        )

    op.create_table(
        "ledger_line",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("interval_start_utc", market.tables.UtcDateTime(), nullable=False),
        sa.Column("length_minutes", sa.Integer(), nullable=False),
        sa.Column("settlement_date", sa.Date(), nullable=False),
        sa.Column("period", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("debit", sa.String(length=80), nullable=False),
        sa.Column("credit", sa.String(length=80), nullable=False),
        sa.Column("amount_cp", sa.BigInteger(), nullable=False),
        sa.Column("participant_id", sa.String(length=64), nullable=True),
        sa.Column("energy_wh", sa.BigInteger(), nullable=False),
        sa.Column("price_p_per_kwh", market.tables.ExactDecimal(), nullable=True),
        sa.Column("memo", sa.String(length=200), nullable=False),
        sa.Column("corrects_run_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["corrects_run_id"],
            ["settlement_run.id"],
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["settlement_run.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("ledger_line", schema=None) as batch_op:
        batch_op.create_index("ix_ledger_interval", ["interval_start_utc", "length_minutes"], unique=False)
        batch_op.create_index(
            "ix_ledger_participant_date", ["participant_id", "settlement_date"], unique=False
        )
        batch_op.create_index("ix_ledger_run", ["run_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("ledger_line", schema=None) as batch_op:
        batch_op.drop_index("ix_ledger_run")
        batch_op.drop_index("ix_ledger_participant_date")
        batch_op.drop_index("ix_ledger_interval")

    op.drop_table("ledger_line")
    with op.batch_alter_table("settlement_run", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_settlement_initial",
            sqlite_where=sa.text("run_type = 'initial'"),
            postgresql_where=sa.text("run_type = 'initial'"),
        )
        batch_op.drop_index(batch_op.f("ix_settlement_run_settlement_date"))

    op.drop_table("settlement_run")
