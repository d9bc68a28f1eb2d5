"""a grant records who made it and how: it ends with its maker's authority

Revision ID: 0020
Revises: 0019

A grant kept the role its maker had when it was made, and only that copy was checked: an
admin who approved with a 30-day grant, then was demoted to viewer or removed, kept
letting every later request of the action through under it. ``grants.maker_user_id``
(None: a token of no user) and ``grants.made_via`` (``session``, ``token``, ``slack``) now
name the maker, and a grant stands only while its maker holds the role it was made with,
the same way (``grants.lapsed``).

Every live grant stored before is given the maker its ``created_by`` names as this revision
finds it: a user by email (signed in), ``slack:<email>`` (a Slack click), ``token:<name>``
or ``admin-token`` (the user of the live admin tokens of that name; a token since revoked:
a token of no user). A grant whose actor names no user or token now, or more than one, is
left without a maker: it covers nothing, and is revoked (audited) the first time it is
consulted. Nothing else is rewritten.

Downgrading drops the two columns: an earlier version reads the recorded role only, so a
grant lapsed and not revoked yet (its maker's Slack link removed) passes there again.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

_grants = sa.table(
    "grants",
    sa.column("id", sa.String),
    sa.column("created_by", sa.String),
    sa.column("revoked_at", sa.Float),
    sa.column("maker_user_id", sa.String),
    sa.column("made_via", sa.String),
)
_users = sa.table("users", sa.column("id", sa.String), sa.column("email", sa.String))
_tokens = sa.table(
    "tokens",
    sa.column("user_id", sa.String),
    sa.column("name", sa.String),
    sa.column("kind", sa.String),
)
_BOOTSTRAP_ADMIN = "bootstrap admin token"  # (bootstrap.BOOTSTRAP_TOKEN_NAMES, as of 0020)


def upgrade() -> None:
    op.add_column("grants", sa.Column("maker_user_id", sa.String(40), nullable=True))
    op.add_column("grants", sa.Column("made_via", sa.String(10), nullable=True))
    conn = op.get_bind()
    emails = {email: uid for uid, email in conn.execute(sa.select(_users.c.id, _users.c.email))}
    owners: dict[str, set[str | None]] = {}  # a live admin token's name -> its users
    for name, uid in conn.execute(
        sa.select(_tokens.c.name, _tokens.c.user_id).where(_tokens.c.kind == "admin")
    ):
        owners.setdefault(name, set()).add(uid)
    live = sa.select(_grants.c.id, _grants.c.created_by).where(_grants.c.revoked_at.is_(None))
    for grant_id, by in conn.execute(live).all():
        found = _makers(by, emails, owners)
        if len(found) == 1:
            ((via, uid),) = found
            conn.execute(
                _grants.update()
                .where(_grants.c.id == grant_id)
                .values(made_via=via, maker_user_id=uid)
            )


def _makers(
    by: str, emails: dict[str, str], owners: dict[str, set[str | None]]
) -> set[tuple[str, str | None]]:
    """Every (made_via, user id) the actor `by` may be."""
    found: set[tuple[str, str | None]] = set()
    if by in emails:
        found.add(("session", emails[by]))
    if by.startswith("slack:") and by[len("slack:") :] in emails:
        found.add(("slack", emails[by[len("slack:") :]]))
    if by == "admin-token":
        found.add(("token", None))
    elif by.startswith("token:"):
        found.update(("token", uid) for uid in owners.get(by[len("token:") :], {None}))
    return found


def downgrade() -> None:
    op.drop_column("grants", "made_via")
    op.drop_column("grants", "maker_user_id")
