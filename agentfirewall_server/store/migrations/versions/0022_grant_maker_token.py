"""a grant is bound to the exact credential that made it: the API token's row, the Slack member

Revision ID: 0022
Revises: 0021

Revision 0020 named a grant's maker by its user and how it was made, and a token's grant
stood while any live token of the maker's with the same name did: a user holding two tokens
of the default name ("api token"), or the bootstrap admin token's rows after a rotation
(they share one name), kept a grant alive after the token that made it was revoked. And a
Slack grant stood while any Slack member linked to the maker's email did: a link removed
and added again brought it back. ``grants.maker_token_id`` (the token's ``token_hash``) and
``grants.maker_slack_member`` (the member id) now name the credential, and a grant stands
while that one does (``grants.lapsed``).

Every live grant stored before is bound to the credential its ``created_by`` names as this
revision finds it, any user's and revoked ones counted:
- ``token:<name>``: the token row of that name; ``admin-token``: the bootstrap admin token's
  row. Several: which made the grant cannot be told, so it is left without a maker (it
  covers nothing, and is revoked, audited, the first time it is consulted). None: the token
  is gone, and the grant lapses the same way (a database with no bootstrap admin token at
  all yet binds its ``admin-token`` grants to the one the server registers next, while it
  is the only one: ``grants.UNREGISTERED_BOOTSTRAP``).
- ``slack:<email>``: the member the ``slack_approvers`` setting links to that email. Several:
  left without a maker; none: the link is gone, and the grant lapses.

Downgrading drops the two columns: revision 0020 reads the maker's user and tokens' names
again.
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None

_grants = sa.table(
    "grants",
    sa.column("id", sa.String),
    sa.column("created_by", sa.String),
    sa.column("revoked_at", sa.Float),
    sa.column("made_via", sa.String),
    sa.column("maker_token_id", sa.String),
    sa.column("maker_slack_member", sa.String),
)
_tokens = sa.table(
    "tokens",
    sa.column("token_hash", sa.String),
    sa.column("user_id", sa.String),
    sa.column("name", sa.String),
    sa.column("kind", sa.String),
)
_settings = sa.table("settings", sa.column("key", sa.String), sa.column("value", sa.Text))
#: bootstrap.BOOTSTRAP_TOKEN_NAMES["admin"] and grants.UNREGISTERED_BOOTSTRAP, as of 0022
_BOOTSTRAP_ADMIN = "bootstrap admin token"
_UNREGISTERED_BOOTSTRAP = "unregistered bootstrap admin token"


def upgrade() -> None:
    op.add_column("grants", sa.Column("maker_token_id", sa.String(64), nullable=True))
    op.add_column("grants", sa.Column("maker_slack_member", sa.String(40), nullable=True))
    conn = op.get_bind()
    named = _tokens_by_name(conn)
    members = _members_by_email(conn)
    live = sa.select(_grants.c.id, _grants.c.created_by, _grants.c.made_via).where(
        _grants.c.revoked_at.is_(None), _grants.c.made_via.in_(("token", "slack"))
    )
    for grant_id, by, via in conn.execute(live).all():
        found = _tokens_of(by, named) if via == "token" else _members_of(by, members)
        column = "maker_token_id" if via == "token" else "maker_slack_member"
        if len(found) > 1:
            values: dict[str, Any] = {"made_via": None}  # which one cannot be told: no maker
        elif found:
            values = {column: found[0]}
        elif by == "admin-token" and not named.get(_BOOTSTRAP_ADMIN):
            values = {column: _UNREGISTERED_BOOTSTRAP}
        else:
            continue  # gone: it lapses when consulted
        conn.execute(_grants.update().where(_grants.c.id == grant_id).values(**values))


def _tokens_by_name(conn: sa.Connection) -> dict[str, list[tuple[str, str | None]]]:
    """Every admin token row, live or revoked: name -> [(token_hash, user id)]."""
    named: dict[str, list[tuple[str, str | None]]] = {}
    rows = sa.select(_tokens.c.name, _tokens.c.token_hash, _tokens.c.user_id).where(
        _tokens.c.kind != "gateway"
    )
    for name, token_hash, uid in conn.execute(rows):
        named.setdefault(name, []).append((token_hash, uid))
    return named


def _tokens_of(by: str, named: dict[str, list[tuple[str, str | None]]]) -> list[str]:
    """The token rows the actor `by` may have been."""
    if by == "admin-token":
        return [h for h, uid in named.get(_BOOTSTRAP_ADMIN, []) if uid is None]
    if by.startswith("token:"):
        return [h for h, _ in named.get(by[len("token:") :], [])]
    return []


def _members_by_email(conn: sa.Connection) -> dict[str, list[str]]:
    """The ``slack_approvers`` setting as email -> the member ids linked to it."""
    text = conn.execute(
        sa.select(_settings.c.value).where(_settings.c.key == "slack_approvers")
    ).scalar()
    try:
        linked = json.loads(text) if text else {}
    except ValueError:
        linked = {}
    members: dict[str, list[str]] = {}
    for member, email in linked.items() if isinstance(linked, dict) else ():
        if isinstance(member, str) and isinstance(email, str):
            members.setdefault(email, []).append(member)
    return members


def _members_of(by: str, members: dict[str, list[str]]) -> list[str]:
    """The Slack members the actor `by` (``slack:<email>``) may have been."""
    return members.get(by[len("slack:") :], []) if by.startswith("slack:") else []


def downgrade() -> None:
    op.drop_column("grants", "maker_slack_member")
    op.drop_column("grants", "maker_token_id")
