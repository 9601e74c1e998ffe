"""The open-order count per household and interval gets an index that covers it.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-21 15:41:36.474252
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("market_order", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_order_participant_interval"))
        batch_op.create_index(
            "ix_order_participant_open",
            ["participant_id", "interval_start_utc", "length_minutes", "status"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("market_order", schema=None) as batch_op:
        batch_op.drop_index("ix_order_participant_open")
        batch_op.create_index(
            batch_op.f("ix_order_participant_interval"),
            ["participant_id", "interval_start_utc"],
            unique=False,
        )
