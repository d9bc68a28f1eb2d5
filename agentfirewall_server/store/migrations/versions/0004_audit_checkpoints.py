"""signed audit checkpoints (the chain head: sequence number, hash, time)

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_checkpoints",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("head_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("kid", sa.String(length=100), nullable=False),
        sa.Column("reason", sa.String(length=20), nullable=False),
        sa.Column("token", sa.Text(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("audit_checkpoints")
