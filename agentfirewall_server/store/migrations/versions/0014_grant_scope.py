"""a grant records its approver's role and its request's host: it covers only what that
role could approve, on that host

Revision ID: 0014
Revises: 0013

A grant let through every later request of its action, whatever approver roles the rule
holding that request asked for: a member's "approve for an hour" on a small transfer
passed a large one whose rule needs an admin. A grant now keeps the role of the person
who made it and covers a held request only when that role could approve it. Grants made
before this revision have no recorded role and are read as a member's.

A grant made on a held proxy request (or a `tf mcp wrap` call) also covered the same action
on every other host of the connector type: a grant for one MCP server's `create_issue`
passed another server's. It now keeps the request's host (none for an SDK approval, or
before this revision: any host, as before).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("grants", sa.Column("approver_role", sa.String(20), nullable=True))
    op.add_column("grants", sa.Column("host", sa.String(300), nullable=True))


def downgrade() -> None:
    op.drop_column("grants", "host")
    op.drop_column("grants", "approver_role")
