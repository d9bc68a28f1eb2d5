"""A batch held over stdio is held whole, as at the gateway
(``tests/proxy/test_mcp_batch_hold.py``): one approval showing every member, which only a
person allowed to approve each held member may grant; approved, the batch runs once."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.livesrv import LiveServer
from tests.mcpwrap.conftest import add_agent, pending_approvals, wrap_env
from tests.mcpwrap.wire import wire

pytestmark = pytest.mark.anyio

POLICY = """
name: stdio-transfers
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
    params = {"name": "transfer", "arguments": arguments}
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}


def approve_as_member(server: LiveServer, approval_id: str) -> httpx.Response:
    user = {"email": "stdio-member@example.com", "password": "password-1", "role": "member"}
    assert server.admin("POST", "/v1/users", json=user).status_code == 201
    with httpx.Client(base_url=server.api_url, timeout=30) as client:
        login = client.post("/v1/auth/login", json={k: user[k] for k in ("email", "password")})
        csrf = str(login.json()["csrf_token"])
        return client.post(f"/v1/approvals/{approval_id}/approve", json={},
                           headers={"X-CSRF-Token": csrf})  # fmt: skip


async def test_a_held_batch_is_shown_whole_and_needs_an_approver_for_each_member(
    server: LiveServer, tmp_path: Path
) -> None:
    agent = add_agent(server, "McpBatchHold", {"mcp.rpc.*": "allow", "mcp.tools.*": "allow"})
    answer = server.admin("POST", "/v1/policies", json={"document": POLICY})
    assert answer.status_code == 201, answer.text
    batch = [transfer(1, amount=5, memo="coffee " * 100), transfer(2, amount=1_000_000)]
    async with wire(tmp_path, agent, wrap_env(server)) as relay:
        await relay.send(batch)
        for _ in range(400):
            if found := pending_approvals(server, agent):
                break
            await asyncio.sleep(0.05)
        (approval,) = found
        assert approval["action_spec"]["type"] == "mcp.rpc.batch"
        assert "1000000" in json.dumps(approval["action_spec"])
        assert approval["required_approver_roles"] == ["admin"]
        refused = approve_as_member(server, approval["id"])
        assert refused.status_code == 403, refused.text
        server.admin("POST", f"/v1/approvals/{approval['id']}/approve", json={})
        answers = [await relay.receive(), await relay.receive()]  # (one line each)
        assert sorted(a["id"] for a in answers) == [1, 2]
    assert relay.received() == [batch]  # forwarded once, whole, as approved
