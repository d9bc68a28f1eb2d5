"""budgets (definitions and usage reservations) and grants (constrained approvals)

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "budgets",
        sa.Column("id", sa.String(length=40), primary_key=True),
        sa.Column("name", sa.String(length=100), nullable=False, unique=True),
        sa.Column("definition", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
    )
    op.create_table(
        "budget_usage",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("budget_id", sa.String(length=40), nullable=False),
        sa.Column("reservation", sa.String(length=40), nullable=False),
        sa.Column("agent", sa.String(length=200), nullable=False),
        sa.Column("amount", sa.Float(), nullable=False),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("request_id", sa.String(length=100), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("settled_at", sa.Float(), nullable=True),
    )
    op.create_index("ix_budget_usage_reservation", "budget_usage", ["reservation"])
    op.create_index("ix_budget_usage_window", "budget_usage", ["budget_id", "created_at"])
    op.create_table(
        "grants",
        sa.Column("id", sa.String(length=40), primary_key=True),
        sa.Column("approval_id", sa.String(length=40), nullable=True),
        sa.Column("agent", sa.String(length=200), nullable=False),
        sa.Column("connector", sa.String(length=80), nullable=True),
        sa.Column("action_type", sa.String(length=600), nullable=False),
        sa.Column("constraints", sa.Text(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=True),
        sa.Column("max_uses", sa.Integer(), nullable=True),
        sa.Column("uses", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.String(length=320), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("revoked_at", sa.Float(), nullable=True),
        sa.Column("revoked_by", sa.String(length=320), nullable=True),
    )
    op.create_index("ix_grants_agent_action", "grants", ["agent", "action_type"])


def downgrade() -> None:
    op.drop_table("grants")
    op.drop_table("budget_usage")
    op.drop_table("budgets")
