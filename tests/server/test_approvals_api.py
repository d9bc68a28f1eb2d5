"""Approvals: decided once, by the right roles, expiring, auto-denied by the kill switch."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

from agentfirewall_server.clock import parse_time
from tests.server.conftest import SPEC, Harness

POLICY = """
name: merges-need-admins
scope: {action_types: ["github.pr.*"]}
rules:
  - name: merge
    conditions:
      all:
        - {field: action_spec.type, operator: equals, value: github.pr.merge}
    decision: requires_approval
    reason: merges need an admin
    risk_score: 70
    approval: {timeout_seconds: 3600, approver_roles: [admin, owner]}
"""


def _hold(h: Harness, agent: str = "Bot") -> tuple[str, dict[str, Any]]:
    key = h.create_agent(agent)
    h.admin(
        "POST",
        "/v1/permissions",
        json={
            "agent": agent,
            "connector": "github",
            "action_pattern": "github.pr.merge",
            "decision": "require_approval",
        },
    )
    body: dict[str, Any] = h.agent(key, "POST", "/v1/actions", json={"action_spec": SPEC}).json()
    assert body["status"] == "pending_approval"
    return key, body


def test_approve_once_then_wait_returns_a_fresh_token(harness: Harness) -> None:
    key, body = _hold(harness)
    apv = body["approval"]["id"]
    pending = harness.admin("GET", "/v1/approvals?status=pending").json()["approvals"]
    assert [a["id"] for a in pending] == [apv]
    assert pending[0]["action_request_id"] == body["action_request_id"]
    still = harness.agent(key, "GET", f"/v1/actions/{body['action_request_id']}/wait?timeout=0")
    assert still.json()["status"] == "pending_approval"
    assert still.json()["decision_token"] is None
    r = harness.admin("POST", f"/v1/approvals/{apv}/approve", json={"note": "looks fine"})
    assert r.status_code == 200
    assert r.json()["status"] == "approved"
    assert r.json()["decided_by"] == "admin-token"
    assert r.json()["note"] == "looks fine"
    again = harness.admin("POST", f"/v1/approvals/{apv}/deny")
    assert again.status_code == 409
    done = harness.agent(key, "GET", f"/v1/actions/{body['action_request_id']}/wait?timeout=5")
    assert done.json()["status"] == "allowed"
    assert done.json()["decision_token"]
    recent = harness.admin("GET", "/v1/approvals?status=recent").json()["approvals"]
    assert recent[0]["status"] == "approved"
    events = harness.admin("GET", "/v1/audit?event_type=approval.responded").json()["events"]
    assert events[0]["data"]["note"] == "looks fine"


def test_deny_makes_the_action_denied(harness: Harness) -> None:
    key, body = _hold(harness)
    harness.admin("POST", f"/v1/approvals/{body['approval']['id']}/deny", json={})
    done = harness.agent(key, "GET", f"/v1/actions/{body['action_request_id']}/wait")
    assert done.json()["status"] == "denied"
    assert done.json()["decision_token"] is None


def test_approvals_expire_after_the_timeout(harness: Harness) -> None:
    assert (
        harness.admin("PATCH", "/v1/settings", json={"approval_timeout_seconds": 1}).json()[
            "approval_timeout_seconds"
        ]
        == 1
    )
    key, body = _hold(harness)
    done = harness.agent(key, "GET", f"/v1/actions/{body['action_request_id']}/wait?timeout=20")
    assert done.json()["status"] == "expired"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        row = harness.admin("GET", f"/v1/approvals/{body['approval']['id']}").json()
        if row["status"] == "expired":
            break
        time.sleep(0.2)
    assert row["status"] == "expired"
    late = harness.admin("POST", f"/v1/approvals/{body['approval']['id']}/approve")
    assert late.status_code == 409


def test_kill_switch_auto_denies_matching_pending_approvals(harness: Harness) -> None:
    _, first = _hold(harness, "Bot")
    _, second = _hold(harness, "Other")
    r = harness.admin(
        "POST", "/v1/kill-switch", json={"active": True, "scope": "Bot", "reason": "incident"}
    )
    assert r.status_code == 200
    assert r.json()["approvals_denied"] == 1
    assert (
        harness.admin("GET", f"/v1/approvals/{first['approval']['id']}").json()["status"]
        == "denied"
    )
    assert (
        harness.admin("GET", f"/v1/approvals/{second['approval']['id']}").json()["status"]
        == "pending"
    )
    kinds = [e["event_type"] for e in harness.admin("GET", "/v1/audit").json()["events"]]
    assert "kill_switch.activated" in kinds
    off = harness.admin("POST", "/v1/kill-switch", json={"active": False})
    assert off.json()["active"] == []
    assert "kill_switch.deactivated" in [
        e["event_type"] for e in harness.admin("GET", "/v1/audit").json()["events"]
    ]


def test_rule_approver_roles_are_enforced(harness: Harness) -> None:
    created = harness.admin("POST", "/v1/policies", json={"document": POLICY})
    assert created.status_code == 201, created.text
    key = harness.create_agent("Bot")
    body = harness.agent(key, "POST", "/v1/actions", json={"action_spec": SPEC}).json()
    assert body["status"] == "pending_approval"
    assert body["approval"]["required_approver_roles"] == ["admin", "owner"]
    harness.admin(
        "POST", "/v1/users", json={"email": "m@x.io", "password": "password-1", "role": "member"}
    )
    login = harness.call(
        "POST", "/v1/auth/login", json={"email": "m@x.io", "password": "password-1"}
    ).json()
    r = harness.call(
        "POST",
        f"/v1/approvals/{body['approval']['id']}/approve",
        json={},
        headers={"X-CSRF-Token": login["csrf_token"]},
    )
    assert r.status_code == 403
    assert r.json()["your_role"] == "member"
    assert r.json()["required_role"] == "admin"
    harness.client.cookies.clear()
    ok = harness.admin("POST", f"/v1/approvals/{body['approval']['id']}/approve")
    assert ok.json()["status"] == "approved"


def test_viewers_cannot_approve_and_unknown_ids_are_404(harness: Harness) -> None:
    _, body = _hold(harness)
    harness.admin(
        "POST", "/v1/users", json={"email": "v@x.io", "password": "password-1", "role": "viewer"}
    )
    login = harness.call(
        "POST", "/v1/auth/login", json={"email": "v@x.io", "password": "password-1"}
    ).json()
    r = harness.call(
        "POST",
        f"/v1/approvals/{body['approval']['id']}/approve",
        json={},
        headers={"X-CSRF-Token": login["csrf_token"]},
    )
    assert r.status_code == 403
    assert r.json()["required_role"] == "member"
    harness.client.cookies.clear()
    assert harness.admin("POST", "/v1/approvals/apv_nope/approve").status_code == 404


def test_pending_approvals_survive_a_restart(harness_factory: Any) -> None:
    h: Harness = harness_factory("restart")
    key, body = _hold(h)
    h.client.__exit__(None, None, None)
    again: Harness = harness_factory("restart")
    pending = again.admin("GET", "/v1/approvals").json()["approvals"]
    assert [a["id"] for a in pending] == [body["approval"]["id"]]
    again.admin("POST", f"/v1/approvals/{body['approval']['id']}/approve")
    done = again.agent(key, "GET", f"/v1/actions/{body['action_request_id']}/wait")
    assert done.json()["status"] == "allowed"
    assert again.admin("GET", "/v1/audit/verify").json()["ok"] is True


def test_ids_by_unique_prefix_like_git(harness: Harness) -> None:
    _, first = _hold(harness)
    one = first["approval"]["id"]
    short = harness.admin("GET", f"/v1/approvals/{one[:6]}")  # unique, but 2 chars after apv_
    assert (short.status_code, short.json()["field"]) == (400, "id")
    assert "too short" in short.json()["message"]
    _, second = _hold(harness, "Other Bot")
    two = second["approval"]["id"]
    size = next(n for n in range(8, len(one)) if one[:n] != two[:n])
    shown = harness.admin("GET", f"/v1/approvals/{two[:size]}")
    assert (shown.status_code, shown.json()["id"]) == (200, two)
    approved = harness.admin("POST", f"/v1/approvals/{one[:size]}/approve")
    assert (approved.status_code, approved.json()["id"]) == (200, one)
    ambiguous = harness.admin("POST", f"/v1/approvals/{one[: size - 1]}/deny")
    assert (ambiguous.status_code, ambiguous.json()["field"]) == (409, "id")
    assert one in ambiguous.json()["message"]
    assert two in ambiguous.json()["message"]
    for wildcard in ("apv_%", "apv__", "%"):  # LIKE wildcards are literal characters here
        assert harness.admin("GET", f"/v1/approvals/{quote(wildcard)}").status_code == 404
    assert harness.admin("GET", f"/v1/approvals/{two}").json()["status"] == "pending"


def test_a_rules_own_approval_timeout_holds_even_when_it_equals_the_default(
    harness: Harness,
) -> None:
    """`approval: {timeout_seconds: 300}` is the rule's word, though 300 is also the model's
    default: the server's `approval_timeout_seconds` applies only to rules without one."""
    set_to = harness.admin("PATCH", "/v1/settings", json={"approval_timeout_seconds": 7200})
    assert set_to.status_code == 200
    policy = POLICY.replace("{timeout_seconds: 3600, approver_roles: [admin, owner]}",
                            "{timeout_seconds: 300}")  # fmt: skip
    assert harness.admin("POST", "/v1/policies", json={"document": policy}).status_code == 201
    key, body = _hold(harness)
    by_rule = harness.admin("GET", f"/v1/approvals/{body['approval']['id']}").json()
    waits = parse_time(by_rule["expires_at"]) - parse_time(by_rule["created_at"])
    assert round(waits) == 300
    # a permission that requires approval has no terms of its own: the setting's
    other = {"type": "github.issue.create", "resource": {"provider": "github"}}
    rule = {"agent": "Bot", "connector": "github", "action_pattern": "github.issue.create",
            "decision": "require_approval"}  # fmt: skip
    assert harness.admin("POST", "/v1/permissions", json=rule).status_code in (200, 201)
    held = harness.agent(key, "POST", "/v1/actions", json={"action_spec": other}).json()
    by_setting = harness.admin("GET", f"/v1/approvals/{held['approval']['id']}").json()
    waits = parse_time(by_setting["expires_at"]) - parse_time(by_setting["created_at"])
    assert round(waits) == 7200
