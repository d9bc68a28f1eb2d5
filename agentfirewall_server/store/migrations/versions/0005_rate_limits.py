"""shared rate limits: one token bucket per agent, updated by one statement per request

Revision ID: 0005
Revises: 0004

On PostgreSQL the table is UNLOGGED: buckets are not records (a database crash refills
them), and updating them writes no WAL.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    op.create_table(
        "rate_limits",
        sa.Column("key", sa.String(length=100), primary_key=True),
        sa.Column("tokens", sa.Float(), nullable=False),
        sa.Column("stamp", sa.Float(), nullable=False),
        sa.Column("allowed", sa.Boolean(), nullable=False),
        prefixes=["UNLOGGED"] if postgres else [],
    )


def downgrade() -> None:
    op.drop_table("rate_limits")
