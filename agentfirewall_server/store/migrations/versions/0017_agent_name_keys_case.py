"""agents' name keys again: a letter that shows as another is mapped in both its cases

Revision ID: 0017
Revises: 0016

``agentnames.name_key`` left a letter unmapped when its other case showed as the same
prototype: `admin-bot` with a Cherokee small v (U+AB75) for its `i`, or `finance-agent` with
a Cherokee capital v (U+13A5), had keys of their own and were registered beside `admin-bot`
and `finance-agent`. Only a letter whose prototype is its own other case keeps itself now;
a composed letter's own line applies too (`ǵ` shows as `ģ`), and a prototype is read and
mapped again until it settles (`%` shows as `º/₀`, read `o/0`). Keys change: every agent is
given its key again, under 0016's rule. Of live agents of one key the oldest keeps it; a
younger one (a look-alike an earlier version stored) keeps working, with no key (NULL is
outside the unique index), and the route's check still refuses any new name that shows as
one of them. A younger one whose older look-alikes were all revoked since is given its key.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from agentfirewall_server.agentnames import name_key

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

_LIVE = sa.text("status != 'revoked'")

#: A live agent with an older live one of its key gives the key up (ties: the smaller id).
_YOUNGER_TWINS = """
UPDATE agents SET name_key = NULL
WHERE status != 'revoked' AND EXISTS (
    SELECT 1 FROM agents older
    WHERE older.name_key = agents.name_key AND older.status != 'revoked'
      AND (older.created_at < agents.created_at
           OR (older.created_at = agents.created_at AND older.id < agents.id)))
"""


def upgrade() -> None:
    op.drop_index("uq_agents_live_name_key", table_name="agents")
    conn = op.get_bind()
    names = conn.execute(sa.text("SELECT id, name FROM agents")).all()
    if names:
        keys = [{"id": ident, "key": name_key(name)} for ident, name in names]
        conn.execute(sa.text("UPDATE agents SET name_key = :key WHERE id = :id"), keys)
    conn.execute(sa.text(_YOUNGER_TWINS))
    op.create_index(
        "uq_agents_live_name_key",
        "agents",
        ["name_key"],
        unique=True,
        sqlite_where=_LIVE,
        postgresql_where=_LIVE,
    )


def downgrade() -> None:
    """Nothing to undo: 0016's schema is unchanged, the keys stay as 0017 gave them."""
