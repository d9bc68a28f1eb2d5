"""a partial index on the actions still executing (routes/stuck.py lists the stuck ones)

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_EXECUTING = sa.text("execution_state = 'executing'")


def upgrade() -> None:
    op.create_index(
        "ix_action_requests_executing",
        "action_requests",
        ["updated_at"],
        sqlite_where=_EXECUTING,
        postgresql_where=_EXECUTING,
    )


def downgrade() -> None:
    op.drop_index("ix_action_requests_executing", table_name="action_requests")
