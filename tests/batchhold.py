"""What the batch tests of the gateway (``tests/proxy/test_mcp_batch_hold.py``,
``tests/proxy/test_budget_batches_live.py``) and of ``tf mcp wrap``
(``tests/mcpwrap/test_wrap_batch_hold.py``) share: a policy holding every MCP ``transfer``
call, one an admin must approve past 1000, a call, a member's approval, the agent ``Payer``
allowed every batch and transfer, and its HTTPS client through a gateway."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import httpx

from tests.livesrv import LiveServer

__all__ = ["POLICY", "add_payer", "approve_as_member", "proxied", "transfer"]

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


def add_payer(server: LiveServer) -> str:
    """Agent ``Payer`` and an ``mcp`` connector for ``mcp.example.com``, every batch
    (``mcp.rpc.*``) and ``transfer`` call of it allowed: the agent's API key."""
    key = server.create_agent("Payer")
    body = {"type": "mcp", "name": "mcp", "domains": ["mcp.example.com"]}
    assert server.admin("POST", "/v1/connectors", json=body).status_code == 201
    for pattern in ("mcp.rpc.*", "mcp.tools.transfer"):
        grant = {"agent": "Payer", "connector": "mcp", "action_pattern": pattern,
                 "decision": "allow"}  # fmt: skip
        assert server.admin("POST", "/v1/permissions", json=grant).status_code in (200, 201)
    return key


def proxied(proxy: str, bundle: Path) -> httpx.Client:
    """A client whose requests go through the gateway at `proxy` (its URL, with the agent's
    name and key), trusting the CAs of `bundle` (the gateway's among them)."""
    verify = ssl.create_default_context(cafile=str(bundle))
    return httpx.Client(proxy=proxy, trust_env=False, verify=verify, timeout=30)
