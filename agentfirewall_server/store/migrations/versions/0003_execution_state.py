"""execution state of an action request (claimed atomically: executes at most once)

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "action_requests", sa.Column("execution_state", sa.String(length=20), nullable=True)
    )
    # actions executed before this revision: failed when their execution records an error
    op.execute(
        "UPDATE action_requests SET execution_state = CASE WHEN execution LIKE '%\"error\"%' "
        "THEN 'failed' ELSE 'executed' END WHERE status = 'executed'"
    )


def downgrade() -> None:
    with op.batch_alter_table("action_requests") as batch:
        batch.drop_column("execution_state")
