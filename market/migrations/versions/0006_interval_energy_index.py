"""Settlement reads one interval's energy for every meter: index it by interval.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-21 16:35:31.602404
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("interval_energy", schema=None) as batch_op:
        batch_op.create_index("ix_energy_interval", ["interval_start_utc", "length_minutes"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("interval_energy", schema=None) as batch_op:
        batch_op.drop_index("ix_energy_interval")
