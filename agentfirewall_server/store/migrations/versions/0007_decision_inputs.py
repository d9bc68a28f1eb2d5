"""replayable decision inputs on traffic and action requests (agentfirewall.policy.record)

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("traffic", sa.Column("decision_input", sa.Text(), nullable=True))
    op.add_column("action_requests", sa.Column("decision_input", sa.Text(), nullable=True))
    op.create_index("ix_action_requests_created_at", "action_requests", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_action_requests_created_at", "action_requests")
    with op.batch_alter_table("action_requests") as batch:
        batch.drop_column("decision_input")
    with op.batch_alter_table("traffic") as batch:
        batch.drop_column("decision_input")
