"""Migration 0020 on grants an earlier version stored (SQLite and PostgreSQL).

Each live grant is given the maker its ``created_by`` names, as the upgrade finds them: a
user by email, ``slack:<email>``, ``token:<name>`` or ``admin-token``. A grant whose maker
stands still covers its requests; one whose maker was removed or demoted before the
upgrade, or whose token was revoked, covers nothing from then on and is revoked (audited)
when first consulted.
"""

from __future__ import annotations

import json
from typing import Any

from alembic import command
from sqlalchemy import inspect, select

from agentfirewall_server.identity import hash_password
from agentfirewall_server.store.db import Database
from agentfirewall_server.store.migrate import alembic_config, upgrade
from agentfirewall_server.store.schema import grants, settings_table, tokens, users
from tests.server.migrating import stored_at
from tests.server.test_grant_maker_authority import POLICY, Desk

_USERS = {"usr_ada": ("ada@example.com", "admin"), "usr_bob": ("bob@example.com", "viewer"),
          "usr_olga": ("olga@example.com", "owner")}  # fmt: skip
#: agent -> (created_by, the role it was made with) of its grant, as 0.1 stored it
_GRANTS = {
    "Signed-In": ("ada@example.com", "admin"),
    "Slack": ("slack:ada@example.com", "admin"),
    "Token": ("token:ci", "owner"),
    "Bootstrap": ("admin-token", "owner"),
    "Removed": ("gone@example.com", "admin"),
    "Demoted": ("bob@example.com", "admin"),
    "Revoked-Token": ("token:old", "owner"),
}
#: agent -> how its next request fares after the upgrade, and why its grant was revoked
_AFTER: dict[str, tuple[tuple[str, str], str | None]] = {
    "Signed-In": (("allowed", "approved"), None),
    "Slack": (("allowed", "approved"), None),
    "Token": (("allowed", "approved"), None),
    "Bootstrap": (("allowed", "approved"), None),
    "Removed": (("pending_approval", "pending"), "its maker is unknown"),
    "Demoted": (("pending_approval", "pending"), "its maker's role is now viewer"),
    "Revoked-Token": (("pending_approval", "pending"), "the token that made it was revoked"),
}


def _grant(agent: str, by: str, role: str) -> dict[str, Any]:
    return {"id": f"grt_{agent.lower()}", "approval_id": None, "agent": agent,
            "connector": "stripe", "action_type": "stripe.transfer.create",
            "constraints": "[]", "expires_at": None, "max_uses": None, "uses": 0,
            "created_by": by, "created_at": 100.0, "revoked_at": None, "revoked_by": None,
            "approver_role": role, "host": None}  # fmt: skip


def _store_at_0019(url: str) -> None:
    password = hash_password("password-1")
    stored_at(url, "0019", {
        users: [{"id": uid, "email": email, "password_hash": password, "role": role,
                 "created_at": 50.0} for uid, (email, role) in _USERS.items()],
        tokens: [{"token_hash": "0" * 64, "prefix": "tfa_ci00", "kind": "admin",
                  "user_id": "usr_olga", "role": "owner", "name": "ci", "created_at": 60.0}],
        settings_table: [{"key": "slack_approvers",
                          "value": json.dumps({"U0ADA": "ada@example.com"})}],
        grants: [_grant(agent, by, role) for agent, (by, role) in _GRANTS.items()],
    })  # fmt: skip


def test_each_stored_grant_stands_for_the_maker_it_names(
    database_url: str, harness_factory: Any
) -> None:
    _store_at_0019(database_url)
    h = harness_factory()  # the app migrates to the newest revision on start
    makers = h.state.db.read_sync(
        lambda c: {r.agent: (r.made_via, r.maker_user_id) for r in c.execute(select(grants))}
    )
    assert makers == {
        "Signed-In": ("session", "usr_ada"), "Slack": ("slack", "usr_ada"),
        "Token": ("token", "usr_olga"), "Bootstrap": ("token", None),
        "Removed": (None, None), "Demoted": ("session", "usr_bob"),
        "Revoked-Token": ("token", None)}  # fmt: skip
    assert h.admin("POST", "/v1/policies", json={"document": POLICY}).status_code == 201
    desks = {agent: Desk(h, agent) for agent in _GRANTS}
    fared = {agent: desk.covered() for agent, desk in desks.items()}
    assert fared == {agent: after for agent, (after, _) in _AFTER.items()}
    revoked = {
        e["subject"]: e["data"]["reason"] for e in desks["Signed-In"].events("grant.revoked")
    }
    assert revoked == {f"grt_{a.lower()}": why for a, (_, why) in _AFTER.items() if why}


def test_a_downgrade_drops_the_makers(database_url: str) -> None:
    _store_at_0019(database_url)
    db = Database(database_url)
    try:
        with db.writer_engine.connect() as conn:
            upgrade(conn)
            command.downgrade(alembic_config(conn), "0019")
            conn.commit()
            columns = {c["name"] for c in inspect(conn).get_columns("grants")}
            left = conn.execute(select(grants.c.id).where(grants.c.revoked_at.is_(None))).all()
    finally:
        db.close()
    assert {"maker_user_id", "made_via"}.isdisjoint(columns)
    assert len(left) == len(_GRANTS)
