"""traffic times a listing can write: rows stored by 0.1.0 with an impossible time repaired

Revision ID: 0012
Revises: 0011

0.1.0 stored a gateway's ``created_at`` as sent, so a record with ``inf``, ``-inf``, ``NaN``
(PostgreSQL keeps it; SQLite cannot) or a time outside the years 1 to 9999 made every
traffic listing fail (``rfc3339`` cannot write it, and NaN breaks the page order). The
gateway route refuses such times since; this gives each such row the time of the nearest
sound row ingested before it (ids grow with ingestion), else after it, else the epoch.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

# the instants rfc3339 can write (agentfirewall_server.clock: years 1 to 9999, UTC); NaN is
# outside every range on PostgreSQL, and SQLite stores none
_REPAIR = """
UPDATE traffic SET created_at = COALESCE(
    (SELECT near.created_at FROM traffic near
     WHERE near.id < traffic.id AND near.created_at BETWEEN -62135596800.0 AND 253402300799.999
     ORDER BY near.id DESC LIMIT 1),
    (SELECT near.created_at FROM traffic near
     WHERE near.id > traffic.id AND near.created_at BETWEEN -62135596800.0 AND 253402300799.999
     ORDER BY near.id LIMIT 1),
    0.0)
WHERE NOT (traffic.created_at BETWEEN -62135596800.0 AND 253402300799.999)
"""


def upgrade() -> None:
    op.execute(sa.text(_REPAIR))


def downgrade() -> None:
    """Nothing to undo: the impossible times are not kept."""
