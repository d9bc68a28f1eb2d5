"""each traffic record stored once: a unique index on (request_id, created_at)

Revision ID: 0013
Revises: 0012

A gateway (or ``tf mcp wrap``) resends a batch of traffic records whose answer it did not
get: the control plane timed out, failed over, or the sender was stopping while the batch
was in flight. Until now each resend stored the records again. A record's request id and
the time it was made (both set by the sender, unchanged by a resend) now identify it, and
the route inserts with ``ON CONFLICT DO NOTHING``. Copies already stored are removed here,
keeping the first ingested; a temporary index makes that one pass, not one per row.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

_REMOVE_COPIES = """
DELETE FROM traffic WHERE EXISTS (
    SELECT 1 FROM traffic kept
    WHERE kept.request_id = traffic.request_id AND kept.created_at = traffic.created_at
      AND kept.id < traffic.id)
"""


def upgrade() -> None:
    op.create_index("ix_traffic_copies", "traffic", ["request_id", "created_at"])
    op.execute(sa.text(_REMOVE_COPIES))
    op.drop_index("ix_traffic_copies", table_name="traffic")
    op.create_index("uq_traffic_record", "traffic", ["request_id", "created_at"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_traffic_record", table_name="traffic")
