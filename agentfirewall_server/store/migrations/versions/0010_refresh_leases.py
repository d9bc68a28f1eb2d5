"""refresh leases: one process at a time refreshes a connector's rotating OAuth2 grant

Revision ID: 0010
Revises: 0009

A row per connector whose grant is being refreshed (``refreshleases.py``): who holds it and
until when; deleted when the rotation is stored or the lease released.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "refresh_leases",
        sa.Column("connector_id", sa.String(length=120), primary_key=True),
        sa.Column("lease", sa.String(length=40), nullable=False),
        sa.Column("holder", sa.String(length=200), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("refresh_leases")
