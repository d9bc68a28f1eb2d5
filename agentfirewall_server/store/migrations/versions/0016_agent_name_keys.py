"""one live agent per name as it shows: `Bot` with a Cyrillic o is never beside `Bot`

Revision ID: 0016
Revises: 0015

Agents carry ``name_key``, what their name shows as (``agentnames.name_key``: NFKC, blanks
made one, Unicode's confusables mapped, case kept), under a partial unique index over the
agents that are not revoked. The route's check of a new name, read in its own transaction,
is then held by the database too: two requests or replicas cannot both register a twin.

Every row is given its key, except a live agent an earlier version stored beside an older
live one of the same key (a full-width `Bot` registered when `Bot` was): it keeps working,
with no key (NULL is outside the index), and the route's check, which compares names, still
refuses any new name that shows as one of them.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from agentfirewall_server.agentnames import name_key

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

_LIVE = sa.text("status != 'revoked'")


def upgrade() -> None:
    op.add_column("agents", sa.Column("name_key", sa.String(64), nullable=True))
    conn = op.get_bind()
    rows = conn.execute(sa.text("SELECT id, name, status FROM agents ORDER BY created_at, id"))
    held: set[str] = set()
    keys = []
    for row in rows.all():
        key = name_key(row.name)
        if row.status != "revoked":
            if key in held:  # a younger live twin: keeps working, with no key
                continue
            held.add(key)
        keys.append({"id": row.id, "key": key})
    if keys:
        conn.execute(sa.text("UPDATE agents SET name_key = :key WHERE id = :id"), keys)
    op.create_index(
        "uq_agents_live_name_key",
        "agents",
        ["name_key"],
        unique=True,
        sqlite_where=_LIVE,
        postgresql_where=_LIVE,
    )


def downgrade() -> None:
    op.drop_index("uq_agents_live_name_key", table_name="agents")
    op.drop_column("agents", "name_key")
