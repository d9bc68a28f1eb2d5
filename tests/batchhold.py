"""What the held-batch tests of the gateway (``tests/proxy/test_mcp_batch_hold.py``) and of
``tf mcp wrap`` (``tests/mcpwrap/test_wrap_batch_hold.py``) share: a policy holding every
MCP ``transfer`` call, one an admin must approve past 1000, a call, a member's approval."""

from __future__ import annotations

from typing import Any

import httpx

from tests.livesrv import LiveServer

__all__ = ["POLICY", "approve_as_member", "transfer"]

POLICY = """
name: transfers
scope: {action_types: ["mcp.tools.transfer"]}
rules:
  - name: big-needs-admin
    conditions: {field: action_spec.parameters.amount, operator: gt, value: 1000}
    decision: require_approval
    approval: {timeout_seconds: 600, approver_roles: [admin]}
  - name: small-any-member
    decision: require_approval
    approval: {timeout_seconds: 900, approver_roles: [member]}
"""


def transfer(request_id: int, **arguments: object) -> dict[str, Any]:
    """A JSON-RPC ``tools/call`` of ``transfer``."""
    params = {"name": "transfer", "arguments": arguments}
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}


def approve_as_member(server: LiveServer, approval_id: str) -> httpx.Response:
    """A signed-in person with role `member` approves (may approve what any member may)."""
    user = {"email": "member@example.com", "password": "password-1", "role": "member"}
    assert server.admin("POST", "/v1/users", json=user).status_code == 201
    with httpx.Client(base_url=server.api_url, timeout=30) as client:
        login = client.post("/v1/auth/login", json={k: user[k] for k in ("email", "password")})
        csrf = str(login.json()["csrf_token"])
        return client.post(f"/v1/approvals/{approval_id}/approve", json={},
                           headers={"X-CSRF-Token": csrf})  # fmt: skip
