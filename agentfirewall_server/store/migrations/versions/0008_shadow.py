"""shadow policies and permissions; the shadow verdict on traffic and action requests

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_VERDICT = ("shadow_decision", "shadow_rule", "shadow_diverged")


def upgrade() -> None:
    for table in ("traffic", "action_requests"):
        op.add_column(table, sa.Column("shadow_decision", sa.String(20), nullable=True))
        op.add_column(table, sa.Column("shadow_rule", sa.String(300), nullable=True))
        op.add_column(table, sa.Column("shadow_diverged", sa.Boolean(), nullable=True))
    op.create_table(
        "shadow_policies",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("document", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("created_by", sa.String(320), nullable=False),
    )
    op.create_table(
        "shadow_permissions",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("agent", sa.String(200), nullable=False),
        sa.Column("connector", sa.String(80), nullable=False),
        sa.Column("action_pattern", sa.String(300), nullable=False),
        sa.Column("decision", sa.String(20), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("shadow_permissions")
    op.drop_table("shadow_policies")
    for table in ("action_requests", "traffic"):
        with op.batch_alter_table(table) as batch:
            for column in reversed(_VERDICT):
                batch.drop_column(column)
