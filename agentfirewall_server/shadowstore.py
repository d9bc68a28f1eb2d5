"""The shadow configuration in the store: install, remove, promote (``shadow.py`` judges).

Every job here runs inside ``AppState.change_config`` (one transaction, the version bumped,
every replica reloads) and appends its audit event in the same transaction. Promoting
writes the shadow policies as live ones (a new version of the live policy of the same
name, else a new policy), replaces the live access rules by the shadow permission set when
one is installed, and empties the shadow configuration, all in one transaction: a replica
reloads either the old configuration or the new one, never half of it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, delete, select, update

from agentfirewall.policy import AccessRule, load_policy
from agentfirewall_server.audit import append_event
from agentfirewall_server.clock import new_id, now
from agentfirewall_server.store.schema import (
    permissions,
    policies,
    policy_versions,
    shadow_permissions,
    shadow_policies,
)

__all__ = ["NothingToPromote", "promote", "put_policy", "remove_policy", "set_permissions"]


class NothingToPromote(Exception):
    """No shadow policy or permission set is installed."""


def put_policy(conn: Connection, name: str, document: str, actor: str) -> dict[str, Any]:
    """Install (or replace) the shadow policy named `name`."""
    stamp = now()
    found = conn.execute(select(shadow_policies).where(shadow_policies.c.name == name)).first()
    ident: str = found.id if found else new_id("shp_")
    row: dict[str, Any] = {"id": ident, "name": name, "document": document,
                           "created_at": stamp, "created_by": actor}  # fmt: skip
    if found is None:
        conn.execute(shadow_policies.insert().values(**row))
    else:
        conn.execute(update(shadow_policies).where(shadow_policies.c.id == found.id).values(**row))
    append_event(conn, "shadow.policy_set", actor=actor, now=stamp, subject=ident,
                 data={"name": name, "replaced": found is not None})  # fmt: skip
    return row


def remove_policy(conn: Connection, ident: str, name: str, actor: str) -> None:
    conn.execute(delete(shadow_policies).where(shadow_policies.c.id == ident))
    append_event(conn, "shadow.policy_removed", actor=actor, now=now(), subject=ident,
                 data={"name": name})  # fmt: skip


def set_permissions(conn: Connection, rules: list[AccessRule], actor: str) -> list[dict[str, Any]]:
    """Replace the shadow permission set (an empty list removes it)."""
    stamp = now()
    conn.execute(delete(shadow_permissions))
    rows = [
        {"id": new_id("shperm_"), "agent": r.agent, "connector": r.connector,
         "action_pattern": r.action_pattern, "decision": r.decision, "created_at": stamp + i * 1e-6}
        for i, r in enumerate(rules)
    ]  # fmt: skip
    if rows:
        conn.execute(shadow_permissions.insert(), rows)
    kind = "shadow.permissions_set" if rows else "shadow.permissions_removed"
    append_event(conn, kind, actor=actor, now=stamp, data={"rules": len(rows)})
    return rows


def _promote_policy(conn: Connection, row: Any, actor: str, stamp: float) -> dict[str, Any]:
    policy = load_policy(row.document, source=row.name, stored=True)
    live = conn.execute(select(policies).where(policies.c.name == policy.name)).first()
    values = {"name": policy.name, "enabled": policy.enabled, "priority": policy.priority,
              "document": row.document, "updated_at": stamp}  # fmt: skip
    if live is None:
        ident, version, event = new_id("pol_"), 1, "policy.created"
        conn.execute(policies.insert().values(id=ident, version=1, created_at=stamp, **values))
    else:
        ident, version, event = live.id, int(live.version) + 1, "policy.updated"
        conn.execute(
            update(policies).where(policies.c.id == ident).values(version=version, **values)
        )
    conn.execute(policy_versions.insert().values(policy_id=ident, version=version,
                 document=row.document, created_at=stamp, created_by=actor))  # fmt: skip
    append_event(conn, event, actor=actor, now=stamp, subject=ident,
                 data={"name": policy.name, "version": version, "from": "shadow"})  # fmt: skip
    return {"id": ident, "name": policy.name, "version": version}


def promote(conn: Connection, actor: str) -> dict[str, Any]:
    """Make the shadow configuration live (raises NothingToPromote)."""
    stamp = now()
    shadow = conn.execute(select(shadow_policies).order_by(shadow_policies.c.created_at)).all()
    rules = conn.execute(select(shadow_permissions).order_by(shadow_permissions.c.created_at)).all()
    if not shadow and not rules:
        raise NothingToPromote
    promoted = [_promote_policy(conn, row, actor, stamp) for row in shadow]
    if rules:
        conn.execute(delete(permissions))
        conn.execute(
            permissions.insert(),
            [{"id": new_id("perm_"), "agent": r.agent, "connector": r.connector,
              "action_pattern": r.action_pattern, "decision": r.decision,
              "created_at": r.created_at} for r in rules],
        )  # fmt: skip
    conn.execute(delete(shadow_policies))
    conn.execute(delete(shadow_permissions))
    summary: dict[str, Any] = {
        "policies": promoted,
        "permissions": None if not rules else len(rules),
    }
    append_event(conn, "shadow.promoted", actor=actor, now=stamp, data={
        **summary,
        "rules": [[r.agent, r.connector, r.action_pattern, r.decision] for r in rules],
    })  # fmt: skip
    return summary
