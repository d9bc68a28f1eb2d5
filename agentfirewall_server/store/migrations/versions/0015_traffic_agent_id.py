"""traffic rows carry their agent's id, not only its name

Revision ID: 0015
Revises: 0014

A traffic row named its agent only. A removed (revoked) agent's name may be registered
again (0011), so the new agent was shown the old one's traffic: in `GET /api/v1/traffic?agent=`,
on its dashboard page, in rule suggestions and replays. Rows now carry ``agent_id`` and the
filters match it.

Rows stored before keep their name and are given the id of the agent of that name that was
registered most recently at or before the row's time (the one whose key made the request:
agents of one name follow each other, one live at a time); a row older than every agent of
its name (a gateway clock behind the server's) goes to the oldest of them. A name no agent
has keeps NULL. A temporary index makes that one lookup per row, not a scan of the agents.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

_FILL = """
UPDATE traffic SET agent_id = coalesce(
    (SELECT a.id FROM agents a
     WHERE a.name = traffic.agent AND a.created_at <= traffic.created_at
     ORDER BY a.created_at DESC, a.id DESC LIMIT 1),
    (SELECT a.id FROM agents a
     WHERE a.name = traffic.agent
     ORDER BY a.created_at, a.id LIMIT 1))
WHERE traffic.agent IS NOT NULL
"""


def upgrade() -> None:
    op.add_column("traffic", sa.Column("agent_id", sa.String(40), nullable=True))
    op.create_index("ix_agents_name_created", "agents", ["name", "created_at"])
    op.execute(sa.text(_FILL))
    op.drop_index("ix_agents_name_created", table_name="agents")


def downgrade() -> None:
    op.drop_column("traffic", "agent_id")
