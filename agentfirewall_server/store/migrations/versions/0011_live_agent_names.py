"""one live agent per name: a removed (revoked) agent's name can be registered again

Revision ID: 0011
Revises: 0010

The table-wide ``UNIQUE (name)`` becomes a partial unique index over the agents that are not
revoked. A revoked agent keeps its row, id and name (its audit trail and actions point at
the id); a new agent may take the name. SQLite cannot drop an unnamed constraint in place,
so the table is rebuilt (``Database.migrate`` turns foreign keys off around it).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_LIVE = sa.text("status != 'revoked'")
#: How the unnamed ``UNIQUE (name)`` of 0001 is addressed (PostgreSQL's default name; the
#: batch rebuild on SQLite names the reflected constraint by this convention).
_UNIQUE_NAME = "agents_name_key"


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        convention = {"uq": "%(table_name)s_%(column_0_name)s_key"}
        with op.batch_alter_table("agents", recreate="always", naming_convention=convention) as b:
            b.drop_constraint(_UNIQUE_NAME, type_="unique")
    else:
        op.drop_constraint(_UNIQUE_NAME, "agents", type_="unique")
    op.create_index(
        "uq_agents_live_name",
        "agents",
        ["name"],
        unique=True,
        sqlite_where=_LIVE,
        postgresql_where=_LIVE,
    )


def downgrade() -> None:
    op.drop_index("uq_agents_live_name", table_name="agents")
    with op.batch_alter_table("agents") as batch:
        batch.create_unique_constraint(_UNIQUE_NAME, ["name"])
