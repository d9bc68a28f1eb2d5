"""an approval's Slack post is claimed in its row: one replica posts it, and a post given up
is tried again later

Revision ID: 0023
Revises: 0022

``approvals.slack_claim`` names who may post the approval's message now: a server's random
id (with ``slack_claimed_at``, the time of its last try; the claim lapses some minutes after
it), ``refused:<settings>`` (Slack refused it under those Slack settings) or NULL (no one:
the next sweep of any replica posts it). ``notify/claims.py`` takes and releases it with
conditional updates. Rows stored before get NULL: a pending approval with no message yet
(``slack_ts``) is posted by the first start of this version.

Downgrading drops both columns: an earlier version never reads them.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("approvals", sa.Column("slack_claim", sa.String(length=80), nullable=True))
    op.add_column("approvals", sa.Column("slack_claimed_at", sa.Float(), nullable=True))


def downgrade() -> None:
    op.drop_column("approvals", "slack_claimed_at")
    op.drop_column("approvals", "slack_claim")
