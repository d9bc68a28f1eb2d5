"""A policy update made on an old version is refused, never a silent overwrite (lost update).

`PUT /api/v1/policies/{id}` takes an optional `base_version`: the version the change was
made on. When someone saved the policy since, the answer is 409 `version_conflict` naming
the current version, and nothing is recorded. Callers that leave it out (`tf policy push`,
scripts) keep the old behaviour: the document becomes the next version.
"""

from __future__ import annotations

from typing import Any

from tests.server.conftest import Harness

DOC = """name: payments
rules:
  - name: r
    conditions:
      field: action_spec.type
      operator: equals
      value: {action}
    decision: deny
"""
V1, V2, V3 = (DOC.format(action=a) for a in ("a.b.c", "stripe.refund.create", "x.y.z"))


def _policy(h: Harness, pid: str) -> dict[str, Any]:
    policy: dict[str, Any] = h.admin("GET", f"/v1/policies/{pid}").json()
    versions = h.admin("GET", f"/v1/policies/{pid}/versions").json()["versions"]
    return {**policy, "versions": len(versions)}


def test_a_save_on_an_old_version_is_a_conflict_not_a_lost_update(harness: Harness) -> None:
    h = harness
    pid = h.admin("POST", "/v1/policies", json={"document": V1}).json()["id"]
    # A opened v1; meanwhile B saves v2 (on v1, as it should)
    second = h.admin("PUT", f"/v1/policies/{pid}", json={"document": V2, "base_version": 1})
    assert second.status_code == 200, second.text
    assert second.json()["version"] == 2
    before = h.audit_count()
    # A saves the edit of v1: refused, B's deny rule stays
    stale = h.admin("PUT", f"/v1/policies/{pid}", json={"document": V3, "base_version": 1})
    assert stale.status_code == 409, stale.text
    body = stale.json()
    assert body["error"] == "version_conflict"
    assert body["current_version"] == 2
    assert body["field"] == "base_version"
    assert "at version 2 now, not version 1" in body["message"]
    after = _policy(h, pid)
    assert (after["version"], after["document"], after["versions"]) == (2, V2, 2)
    assert h.audit_count() == before  # nothing recorded for the refused save


def test_a_save_without_a_base_version_still_makes_the_next_version(harness: Harness) -> None:
    """`tf policy push` and other callers that send only the document."""
    h = harness
    pid = h.admin("POST", "/v1/policies", json={"document": V1}).json()["id"]
    assert h.admin("PUT", f"/v1/policies/{pid}", json={"document": V2}).json()["version"] == 2
    answer = h.admin("PUT", f"/v1/policies/{pid}", json={"document": V3})
    assert answer.status_code == 200, answer.text
    assert _policy(h, pid)["version"] == 3


def test_a_base_version_that_is_not_a_version_number_is_422(harness: Harness) -> None:
    h = harness
    pid = h.admin("POST", "/v1/policies", json={"document": V1}).json()["id"]
    for bad in (0, "1", True, 1.5):
        answer = h.admin("PUT", f"/v1/policies/{pid}", json={"document": V2, "base_version": bad})
        assert answer.status_code == 422, (bad, answer.text)
        assert answer.json()["field"] == "base_version"
    assert _policy(h, pid)["version"] == 1


def test_a_save_keeps_a_policy_disabled_unless_its_document_says_otherwise(
    harness: Harness,
) -> None:
    """An owner disabled the policy (an emergency) while an admin edited it: the admin's
    save on the same version re-enabled it, although the document never says `enabled`."""
    h = harness
    pid = h.admin("POST", "/v1/policies", json={"document": V1}).json()["id"]
    assert h.admin("POST", f"/v1/policies/{pid}/disable").json()["enabled"] is False
    saved = h.admin("PUT", f"/v1/policies/{pid}", json={"document": V2, "base_version": 1})
    assert saved.status_code == 200, saved.text
    assert saved.json()["enabled"] is False
    assert _policy(h, pid)["enabled"] is False
    explicit = V3 + "enabled: true\n"
    again = h.admin("PUT", f"/v1/policies/{pid}", json={"document": explicit})
    assert again.json()["enabled"] is True  # a document that says so is obeyed
