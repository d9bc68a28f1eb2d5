"""an agent counts its closures: what was decided before one never runs after it, no clock read

Revision ID: 0021
Revises: 0020

``agents.closed_epoch`` (0: never closed) is incremented, in the same transaction, by the
agent's suspension, its removal, and the activation that ends a suspension.
``action_requests.agent_epoch`` is the epoch the SDK action was decided under (the one the
deciding replica's snapshot held), and the execute claim refuses an action whose epoch is
not the agent's stored one (``routes/execute.py``). 0019 compared the action's
``created_at`` with ``agents.closed_before``, two times two replicas' clocks may have
written: a replica ahead let an action decided before a suspension run after it, one behind
refused an action decided after the activation. ``closed_before`` stays, stamped as before,
as information only: nothing decides on it.

Every agent stored before is given epoch 1 if it was ever closed (``closed_before`` set),
else 0; each action, 1 if it was created after its agent's ``closed_before`` (what 0019 let
run), else 0 (at or before it, or its agent never closed). So exactly what 0019 refused is
refused, and exactly what it let run runs. A row an earlier version still running writes
gets 0: refused once its agent was ever closed; a row written with no epoch (NULL) is
always refused.

Downgrading: an earlier version reads no epoch, so the actions it closes, allowed and not
executed, are denied instead (the earlier version's own way to close an action), not left
to run after the suspension.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None

_FILL_AGENTS = """
UPDATE agents SET closed_epoch = 1 WHERE closed_before IS NOT NULL
"""

_FILL_ACTIONS = """
UPDATE action_requests SET agent_epoch = 1
WHERE created_at > (SELECT a.closed_before FROM agents a WHERE a.id = action_requests.agent_id)
"""

_DENY_CLOSED = """
UPDATE action_requests SET status = 'denied'
WHERE status = 'allowed' AND execution_state IS NULL
  AND (agent_epoch IS NULL OR agent_epoch <> coalesce(
    (SELECT a.closed_epoch FROM agents a WHERE a.id = action_requests.agent_id), -1))
"""


def upgrade() -> None:
    op.add_column(
        "agents", sa.Column("closed_epoch", sa.Integer(), nullable=False, server_default="0")
    )
    op.add_column(
        "action_requests",
        sa.Column("agent_epoch", sa.Integer(), nullable=True, server_default="0"),
    )
    op.execute(sa.text(_FILL_AGENTS))
    op.execute(sa.text(_FILL_ACTIONS))


def downgrade() -> None:
    op.execute(sa.text(_DENY_CLOSED))
    op.drop_column("action_requests", "agent_epoch")
    op.drop_column("agents", "closed_epoch")
