"""The ledger's household index leads with the interval, so settling an interval appends to it.

``(participant_id, settlement_date)`` put each interval's lines (one to four per household) on as
many index pages as there are households: settling 10,000 households dirtied about 10,000 pages
per interval, which cost more than inserting the lines themselves. ``(interval_start_utc,
participant_id)`` keeps an interval's entries together; a statement looks up its household in
each settled interval of the range, and reading an interval's lines uses the same index's
prefix, so the interval-only index goes.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-21 20:05:00
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("ledger_line", schema=None) as batch_op:
        batch_op.drop_index("ix_ledger_participant_date")
        batch_op.drop_index("ix_ledger_interval")
        batch_op.create_index(
            "ix_ledger_interval_participant", ["interval_start_utc", "participant_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("ledger_line", schema=None) as batch_op:
        batch_op.drop_index("ix_ledger_interval_participant")
        batch_op.create_index("ix_ledger_interval", ["interval_start_utc", "length_minutes"], unique=False)
        batch_op.create_index(
            "ix_ledger_participant_date", ["participant_id", "settlement_date"], unique=False
        )
