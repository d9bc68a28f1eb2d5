"""A batch held over stdio is held whole, as at the gateway
(``tests/proxy/test_mcp_batch_hold.py``): one approval showing every member, which only a
person allowed to approve each held member may grant; approved, the batch runs once."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from tests.batchhold import POLICY, approve_as_member, transfer
from tests.livesrv import LiveServer
from tests.mcpwrap.conftest import add_agent, pending_approvals, wrap_env
from tests.mcpwrap.wire import wire

pytestmark = pytest.mark.anyio


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
