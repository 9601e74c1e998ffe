"""The platform's latest plan for each household's strategy (where it leaves the battery and the
EV, so that the next plan starts from there).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 23:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import market.tables

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "strategy_plan",
        sa.Column("participant_id", sa.String(length=64), nullable=False),
        sa.Column("planned_at", market.tables.UtcDateTime(), nullable=False),
        sa.Column("first_start_utc", market.tables.UtcDateTime(), nullable=False),
        sa.Column("battery_soc_wh", sa.BigInteger(), nullable=True),
        sa.Column("ev_needed_wh", sa.BigInteger(), nullable=True),
        sa.Column("periods_json", sa.Text(), nullable=False),
        sa.Column("expected_cost_p", market.tables.ExactDecimal(), nullable=False),
        sa.ForeignKeyConstraint(["participant_id"], ["participant.id"]),
        sa.PrimaryKeyConstraint("participant_id"),
    )


def downgrade() -> None:
    op.drop_table("strategy_plan")
