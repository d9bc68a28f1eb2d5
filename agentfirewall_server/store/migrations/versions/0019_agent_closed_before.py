"""an agent keeps when it was closed: nothing decided before a suspension runs after it

Revision ID: 0019
Revises: 0018

``agents.closed_before``: the agent's actions decided before this moment never start (the
execute claim refuses them, ``routes/execute.py``). It is stamped when the agent is
suspended or removed, and again when it is activated after a suspension (what a replica
that had not heard of the suspension decided meanwhile is closed too). An action the rules
allowed has no approval to close: before, it was executed (Mode A) once its agent was active
again. Nothing is rewritten: an agent that acts itself (Mode B) reads its history unchanged.

Every agent stored before is given the time of its last suspension, activation or removal
that its audit log records (NULL: none).

Downgrading: an earlier version reads no such column, so the actions it closes, allowed and
not executed, are denied instead (the earlier version's own way to close an action), not
left to run after the suspension.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

_FILL = """
UPDATE agents SET closed_before = (
    SELECT max(e.created_at) FROM audit_events e
    WHERE e.subject = agents.id
      AND e.event_type IN ('agent.suspended', 'agent.activated', 'agent.revoked'))
"""

_DENY_CLOSED = """
UPDATE action_requests SET status = 'denied'
WHERE status = 'allowed' AND execution_state IS NULL
  AND created_at <= (SELECT a.closed_before FROM agents a WHERE a.id = action_requests.agent_id)
"""


def upgrade() -> None:
    op.add_column("agents", sa.Column("closed_before", sa.Float(), nullable=True))
    op.execute(sa.text(_FILL))


def downgrade() -> None:
    op.execute(sa.text(_DENY_CLOSED))
    op.drop_column("agents", "closed_before")
