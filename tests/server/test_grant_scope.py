"""A grant covers only what its maker's role could approve, on the host it was made on.

0.1.0 let a grant cover every later request of its action: a member's "approve for an
hour" on a staging merge (a rule any member may approve) passed production merges whose
rule asks for an admin, on the SDK path, the Gateway API and Slack's "Approve for 1 h";
and a grant made on one MCP server's tool passed the same tool on every other server.
"""

from __future__ import annotations

import copy
import hashlib
from typing import Any

from agentfirewall.actions import parse_action_spec
from tests.server.conftest import SPEC, Harness
from tests.server.test_slack import _callback, _configure

POLICY = """
name: merges
scope: {action_types: ["github.pr.*"]}
rules:
  - name: prod-needs-admin
    conditions: {field: action_spec.resource.environment, operator: equals, value: production}
    decision: requires_approval
    approval: {timeout_seconds: 3600, approver_roles: [admin]}
  - name: staging-any-member
    conditions: {field: action_spec.resource.environment, operator: equals, value: staging}
    decision: requires_approval
    approval: {timeout_seconds: 3600, approver_roles: [member]}
"""


def _spec(environment: str) -> dict[str, Any]:
    spec = copy.deepcopy(SPEC)
    spec["resource"]["environment"] = environment
    return spec


def _sign_in(h: Harness, role: str) -> str:
    email = f"{role}@example.com"
    made = h.admin("POST", "/v1/users", json={"email": email, "password": "password-1",
                                             "role": role})  # fmt: skip
    assert made.status_code == 201, made.text
    login = h.call("POST", "/v1/auth/login", json={"email": email, "password": "password-1"})
    return str(login.json()["csrf_token"])


def _approve(h: Harness, csrf: str, approval_id: str, **body: Any) -> Any:
    return h.call("POST", f"/v1/approvals/{approval_id}/approve", json=body,
                  headers={"X-CSRF-Token": csrf})  # fmt: skip


def test_a_members_grant_does_not_pass_what_needs_an_admin(harness: Harness) -> None:
    h = harness
    assert h.admin("POST", "/v1/policies", json={"document": POLICY}).status_code == 201
    key = h.create_agent("Bot")
    prod = h.agent(key, "POST", "/v1/actions", json={"action_spec": _spec("production")}).json()
    csrf = _sign_in(h, "member")
    assert _approve(h, csrf, prod["approval"]["id"]).status_code == 403
    staging = h.agent(key, "POST", "/v1/actions", json={"action_spec": _spec("staging")}).json()
    granted = _approve(h, csrf, staging["approval"]["id"], grant={"for_seconds": 3600})
    assert granted.status_code == 200, granted.text
    assert granted.json()["grant"]["approver_role"] == "member"
    again = h.agent(key, "POST", "/v1/actions", json={"action_spec": _spec("staging")}).json()
    assert again["status"] == "allowed"  # what the member could approve: covered
    prod = h.agent(key, "POST", "/v1/actions", json={"action_spec": _spec("production")}).json()
    assert prod["status"] == "pending_approval"  # what needs an admin: held for one
    h.client.cookies.clear()
    csrf = _sign_in(h, "owner")  # (an owner approves what an admin may)
    granted = _approve(h, csrf, prod["approval"]["id"], grant={"for_seconds": 3600})
    assert granted.status_code == 200, granted.text
    prod = h.agent(key, "POST", "/v1/actions", json={"action_spec": _spec("production")}).json()
    assert prod["status"] == "allowed"


def test_a_members_grant_does_not_pass_a_held_gateway_request_that_needs_an_admin(
    harness: Harness,
) -> None:
    h = harness
    h.create_agent("Bot")

    def held(environment: str, roles: list[str]) -> dict[str, Any]:
        spec = _spec(environment)
        digest = parse_action_spec(spec).action_hash
        body = {"agent": "Bot", "connector": "github", "action_spec": spec, "reason": "held",
                "action_hash": digest, "approver_roles": roles}  # fmt: skip
        answer = h.gateway("POST", "/v1/gateway/approvals", json=body)
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    first = held("staging", ["member"])
    csrf = _sign_in(h, "member")
    assert _approve(h, csrf, first["id"], grant={"for_seconds": 3600}).status_code == 200
    assert held("staging", ["member"])["status"] == "approved"
    assert held("production", ["admin"])["status"] == "pending"


def test_a_slack_approve_for_an_hour_is_the_linked_users_role(harness: Harness) -> None:
    h = harness
    _configure(h, {"U0ALICE": "alice@example.com"})  # a member
    assert h.admin("POST", "/v1/policies", json={"document": POLICY}).status_code == 201
    key = h.create_agent("Bot")
    staging = h.agent(key, "POST", "/v1/actions", json={"action_spec": _spec("staging")}).json()
    clicked = _callback(h, staging["approval"]["id"], "approve_1h", member="U0ALICE").json()
    assert clicked == {"ok": True, "status": "approved"}
    prod = h.agent(key, "POST", "/v1/actions", json={"action_spec": _spec("production")}).json()
    assert prod["status"] == "pending_approval"


def test_a_grant_made_on_one_host_covers_no_other(harness: Harness) -> None:
    """The gateway names a tool `mcp.tools.create_issue` on every MCP server (the server is
    the request's host): a grant made on the `github` server's call passed the `jira`
    server's."""
    h = harness
    h.create_agent("Bot")
    spec = {"type": "mcp.tools.create_issue", "resource": {"provider": "mcp"},
            "parameters": {"title": "x"}}  # fmt: skip
    digest = parse_action_spec(spec).action_hash

    def held(host: str) -> dict[str, Any]:
        request = {"method": "POST", "host": host, "path": "/mcp",
                   "digest": hashlib.sha256(host.encode()).hexdigest()}  # fmt: skip
        body = {"agent": "Bot", "connector": "mcp", "action_spec": spec, "reason": "held",
                "action_hash": digest, "request": request}  # fmt: skip
        answer = h.gateway("POST", "/v1/gateway/approvals", json=body)
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    first = held("github.mcp.example.com")
    granted = h.admin("POST", f"/v1/approvals/{first['id']}/approve",
                      json={"grant": {"for_seconds": 3600}})  # fmt: skip
    assert granted.json()["grant"]["host"] == "github.mcp.example.com"
    assert held("jira.mcp.example.com")["status"] == "pending"
    assert held("GitHub.MCP.example.com.")["status"] == "approved"  # (the same host)
