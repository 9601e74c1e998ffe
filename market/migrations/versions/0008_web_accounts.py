"""Web accounts: passwords (argon2id hashes), one-time invitations, server-side browser sessions and
failed sign-ins for throttling.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 19:55:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import market.tables

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "account",
        sa.Column("participant_id", sa.String(length=64), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("password_changed_at", market.tables.UtcDateTime(), nullable=False),
        sa.Column("created_at", market.tables.UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["participant_id"], ["participant.id"]),
        sa.PrimaryKeyConstraint("participant_id"),
    )
    op.create_table(
        "invitation",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("participant_id", sa.String(length=64), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("invited_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", market.tables.UtcDateTime(), nullable=False),
        sa.Column("expires_at", market.tables.UtcDateTime(), nullable=False),
        sa.Column("used_at", market.tables.UtcDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["participant_id"], ["participant.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("secret_hash"),
    )
    with op.batch_alter_table("invitation", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_invitation_participant_id"), ["participant_id"], unique=False)
    op.create_table(
        "web_session",
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("participant_id", sa.String(length=64), nullable=False),
        sa.Column("csrf_token", sa.String(length=64), nullable=False),
        sa.Column("created_at", market.tables.UtcDateTime(), nullable=False),
        sa.Column("last_seen_at", market.tables.UtcDateTime(), nullable=False),
        sa.Column("ended_at", market.tables.UtcDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["participant_id"], ["participant.id"]),
        sa.PrimaryKeyConstraint("secret_hash"),
    )
    with op.batch_alter_table("web_session", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_web_session_participant_id"), ["participant_id"], unique=False)
    op.create_table(
        "sign_in_failure",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("client", sa.String(length=100), nullable=False),
        sa.Column("at", market.tables.UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("sign_in_failure", schema=None) as batch_op:
        batch_op.create_index("ix_sign_in_failure_name_at", ["name", "at"], unique=False)
        batch_op.create_index("ix_sign_in_failure_client_at", ["client", "at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("sign_in_failure", schema=None) as batch_op:
        batch_op.drop_index("ix_sign_in_failure_client_at")
        batch_op.drop_index("ix_sign_in_failure_name_at")
    op.drop_table("sign_in_failure")
    with op.batch_alter_table("web_session", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_web_session_participant_id"))
    op.drop_table("web_session")
    with op.batch_alter_table("invitation", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_invitation_participant_id"))
    op.drop_table("invitation")
    op.drop_table("account")
