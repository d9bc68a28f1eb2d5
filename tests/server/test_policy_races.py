"""A policy edited, enabled, disabled or deleted while it is being deleted: 404, never 500.

The routes find the policy in the in-memory snapshot; a delete on another replica (or one
of this replica's still being written) may remove its row before their write runs. The
write checks the row it changes: gone is 404, and nothing is recorded for it (no new
version, no audit event). A rename to a name another replica has just taken is 409.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import delete, select

from agentfirewall.policy import load_policy
from agentfirewall_server.routes.policies import _create
from agentfirewall_server.store.schema import audit_events, policies, policy_versions
from tests.server.conftest import Harness
from tests.server.test_agent_status_races import _race

DOC = """name: {name}
rules:
  - name: r
    conditions:
      field: action_spec.type
      operator: equals
      value: github.repo.delete
    decision: deny
"""

#: Every write on an existing policy: (method, path suffix, body).
WRITES = [
    pytest.param("PUT", "", {"document": DOC.format(name="p1")}, id="put"),
    pytest.param("PUT", "", {"document": DOC.format(name="renamed")}, id="put-rename"),
    pytest.param("POST", "/enable", None, id="enable"),
    pytest.param("POST", "/disable", None, id="disable"),
    pytest.param("DELETE", "", None, id="delete"),
]


def _recorded(h: Harness, pid: str) -> tuple[int, list[str]]:
    """The policy's stored versions and the audit events about it."""

    def read(conn: Any) -> tuple[int, list[str]]:
        versions = conn.execute(
            select(policy_versions.c.version).where(policy_versions.c.policy_id == pid)
        ).all()
        events = conn.execute(
            select(audit_events.c.event_type)
            .where(audit_events.c.subject == pid)
            .order_by(audit_events.c.id)
        ).all()
        return len(versions), [e.event_type for e in events]

    result: tuple[int, list[str]] = h.state.db.read_sync(read)
    return result


def _delete_unseen(h: Harness, pid: str) -> None:
    """Delete the policy's row as another replica does, leaving this server's snapshot
    as it was (it still lists the policy)."""
    h.state.db.write_sync(lambda conn: conn.execute(delete(policies).where(policies.c.id == pid)))
    assert any(p["id"] == pid for p in h.state.snapshot.policies)


@pytest.mark.parametrize(("method", "suffix", "body"), WRITES)
def test_a_write_on_a_policy_deleted_unseen_is_404(
    harness: Harness, method: str, suffix: str, body: dict[str, Any] | None
) -> None:
    h = harness
    created = h.admin("POST", "/v1/policies", json={"document": DOC.format(name="p1")})
    assert created.status_code == 201, created.text
    pid = created.json()["id"]
    before = _recorded(h, pid)
    _delete_unseen(h, pid)
    r = h.admin(method, f"/v1/policies/{pid}{suffix}", json=body)
    assert r.status_code == 404, r.text
    assert r.json()["error"] == "not_found"
    assert _recorded(h, pid) == before  # no version, no audit event for a policy gone


def _put_while_deleting(h: Harness, name: str) -> None:
    doc = DOC.format(name=name)
    assert h.admin("POST", "/v1/policies", json={"document": doc}).status_code == 201
    deleted, put = _race(
        lambda: h.admin("DELETE", f"/v1/policies/{name}"),
        lambda: h.admin("PUT", f"/v1/policies/{name}", json={"document": doc}),
    )
    assert deleted.status_code == 204, deleted.text
    assert put.status_code in (200, 404), put.text  # before the delete, or after it


def test_concurrent_put_and_delete_never_500(harness: Harness) -> None:
    for i in range(15):
        _put_while_deleting(harness, f"p{i}")


def test_a_rename_to_a_name_taken_unseen_is_409(harness: Harness) -> None:
    h = harness
    created = h.admin("POST", "/v1/policies", json={"document": DOC.format(name="p1")})
    pid = created.json()["id"]
    other = DOC.format(name="p2")  # created on another replica: not in this snapshot yet
    h.state.db.write_sync(_create(other, load_policy(other), "user:other-replica"))
    assert not any(p["name"] == "p2" for p in h.state.snapshot.policies)
    r = h.admin("PUT", f"/v1/policies/{pid}", json={"document": other})
    assert r.status_code == 409, r.text
    assert r.json()["field"] == "name"
    assert _recorded(h, pid)[0] == 1
