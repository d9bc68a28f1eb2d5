"""a `tf run` key holds a lease: it stops working when the run stops renewing it

Revision ID: 0018
Revises: 0017

``POST /api/v1/agents/ensure`` with ``lease_seconds`` gives the run key it issues an
``expires_at``; `tf run` renews it while its agent runs and revokes it when it ends, so a
credential that outlives the run (a child left behind, a saved environment) stops working
within the lease, also when `tf run` itself was killed. Every key stored before has no lease
(NULL) and keeps working as it did.
"""

from __future__ import annotations

import time

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

#: Downgrading: a key with a lease is revoked (an earlier version would let it in for good).
_END_LEASED = """
UPDATE api_keys SET revoked_at = :now WHERE expires_at IS NOT NULL AND revoked_at IS NULL
"""


def upgrade() -> None:
    op.add_column("api_keys", sa.Column("expires_at", sa.Float(), nullable=True))


def downgrade() -> None:
    op.get_bind().execute(sa.text(_END_LEASED), {"now": time.time()})
    op.drop_column("api_keys", "expires_at")
