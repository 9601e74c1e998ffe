"""Automatic trading: each household's strategy (every version kept) and each order's source
(manual, or placed by the platform for the household's strategy).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 22:55:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import market.tables

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "strategy_version",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("participant_id", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("created_at", market.tables.UtcDateTime(), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["participant_id"], ["participant.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("participant_id", "version", name="uq_strategy_version"),
    )
    with op.batch_alter_table("market_order", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("source", sa.String(length=16), server_default="manual", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("market_order", schema=None) as batch_op:
        batch_op.drop_column("source")
    op.drop_table("strategy_version")
