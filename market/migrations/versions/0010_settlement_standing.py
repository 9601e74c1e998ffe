"""Settlement standing: the households a run could not settle on metered energy (awaiting meter
data, with why, or estimated), a row each indexed by household, instead of two texts on the run
(a JSON object and a comma-separated list) that every statement had to read whole and parse.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 23:10:00
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_STANDING = sa.table(
    "settlement_standing",
    sa.column("run_id", sa.Integer),
    sa.column("participant_id", sa.String),
    sa.column("standing", sa.String),
    sa.column("reason", sa.String),
)
_RUNS = sa.table(
    "settlement_run",
    sa.column("id", sa.Integer),
    sa.column("status", sa.String),
    sa.column("pending_json", sa.Text),
    sa.column("estimated", sa.Text),
)


def upgrade() -> None:
    op.create_table(
        "settlement_standing",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("participant_id", sa.String(length=64), nullable=False),
        sa.Column("standing", sa.String(length=24), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["settlement_run.id"]),
        sa.PrimaryKeyConstraint("run_id", "participant_id"),
    )
    with op.batch_alter_table("settlement_standing", schema=None) as batch_op:
        batch_op.create_index("ix_settlement_standing_household", ["participant_id", "run_id"], unique=False)
    connection = op.get_bind()
    for run_id, pending_json, estimated in connection.execute(
        sa.select(_RUNS.c.id, _RUNS.c.pending_json, _RUNS.c.estimated)
    ):
        pending = {who: why for who, why in json.loads(pending_json).items() if who != "*"}
        rows = [
            {"run_id": run_id, "participant_id": who, "standing": "awaiting_meter_data", "reason": why[:500]}
            for who, why in pending.items()
        ] + [
            {"run_id": run_id, "participant_id": who, "standing": "estimated", "reason": ""}
            for who in estimated.split(",")
            if who
        ]
        if rows:
            connection.execute(_STANDING.insert(), rows)
    # Not in a batch: on SQLite a batch would copy settlement_run to a new table and drop the old,
    # which the ledger's and the standing's foreign keys refuse. SQLite (3.35 and newer) drops a
    # column in place, as PostgreSQL does.
    op.drop_column("settlement_run", "estimated")
    op.drop_column("settlement_run", "pending_json")


def downgrade() -> None:
    with op.batch_alter_table("settlement_run", schema=None) as batch_op:
        batch_op.add_column(sa.Column("pending_json", sa.Text(), nullable=False, server_default="{}"))
        batch_op.add_column(sa.Column("estimated", sa.Text(), nullable=False, server_default=""))
    connection = op.get_bind()
    pending: dict[int, dict[str, str]] = {}
    estimated: dict[int, list[str]] = {}
    for run_id, who, standing, why in connection.execute(sa.select(_STANDING)):
        if standing == "estimated":
            estimated.setdefault(run_id, []).append(who)
        else:
            pending.setdefault(run_id, {})[who] = why
    for run_id, status in connection.execute(sa.select(_RUNS.c.id, _RUNS.c.status)):
        found = (
            {"*": "the interval has no clearing run yet"} if status == "pending" else pending.get(run_id, {})
        )
        connection.execute(
            _RUNS.update()
            .where(_RUNS.c.id == run_id)
            .values(
                pending_json=json.dumps(found, sort_keys=True),
                estimated=",".join(sorted(estimated.get(run_id, []))),
            )
        )
    with op.batch_alter_table("settlement_standing", schema=None) as batch_op:
        batch_op.drop_index("ix_settlement_standing_household")
    op.drop_table("settlement_standing")
