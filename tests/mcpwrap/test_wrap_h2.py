"""Hunt H2's findings on `tf mcp wrap`, each a guarantee that holds now:

- a ``tools/list`` the client cancelled is still filtered when the server answers it (and
  its id is not reused while it may), so no denied tool is disclosed;
- a request whose id is ``null`` gets -32600 and is never forwarded (docs/mcp.md: its
  answer could not be matched to it);
- an identical retry that takes the approval of a held call leaves the original refused
  for what happened (the approval was used), never as "control plane unreachable".

In process where the relay alone is concerned; the approval race against a real control
plane."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Any

import pytest

from agentfirewall_proxy.control import StaticControl
from agentfirewall_proxy.mcpwrap import messages as rpc
from agentfirewall_proxy.mcpwrap.gate import Gate, server_entry
from agentfirewall_proxy.mcpwrap.pending import CANCELLED_KEPT, Pending
from agentfirewall_proxy.mcpwrap.relay import Relay
from agentfirewall_proxy.snapshot import compile_snapshot
from tests.livesrv import LiveServer
from tests.mcpwrap.conftest import add_agent, pending_approvals, wrap_env
from tests.mcpwrap.inproc import StandInServer, in_process
from tests.mcpwrap.wire import wire

pytestmark = pytest.mark.anyio

SNAPSHOT = {
    "agents": [{"name": "Bot", "api_keys": ["k"]}],
    "permissions": [
        {"agent": "Bot", "connector": "mcp", "action_pattern": p, "decision": d}
        for p, d in [
            ("mcp.rpc.*", "allow"),
            ("mcp.tools.list", "allow"),
            ("mcp.tools.echo", "allow"),
            ("mcp.tools.delete_repo", "deny"),
        ]
    ],
}
TOOLS = {"tools": [{"name": "echo", "inputSchema": {}}, {"name": "delete_repo", "inputSchema": {}}]}


def _relay() -> tuple[Relay, list[Any], StandInServer]:
    control = StaticControl(SNAPSHOT)
    gate = Gate("Bot", server_entry("tests", None), compile_snapshot(control.snapshot))
    return in_process(gate, control=control)


def _line(message: object) -> bytes:
    return json.dumps(message).encode()


def _list(request_id: object) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/list"}


def _cancel(request_id: object) -> dict[str, Any]:
    params = {"requestId": request_id, "reason": "no longer needed"}
    return {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": params}


def _tools(out: list[Any]) -> list[str]:
    return [t["name"] for m in out for a in (m if isinstance(m, list) else [m])
            for t in a["result"]["tools"]]  # fmt: skip


@pytest.mark.parametrize(
    "client",
    [
        pytest.param([_list(2), _cancel(2)], id="cancelled-after"),
        pytest.param([[_list(2), _cancel(2)]], id="cancelled-in-the-same-batch"),
        pytest.param([_list("2"), _cancel("2")], id="string-id"),
    ],
)
async def test_a_cancelled_tools_list_is_still_filtered(client: list[Any]) -> None:
    relay, to_client, server = _relay()
    for message in client:
        await relay.from_client.receive(_line(message))
    assert [m["method"] for s in server.sent for m in (s if isinstance(s, list) else [s])] == [
        "tools/list", "notifications/cancelled"
    ]  # fmt: skip
    request_id = _cancel(2)["params"]["requestId"] if isinstance(client[0], list) else None
    request_id = client[0]["id"] if request_id is None else request_id
    # the id the server may still answer is not given to another request meanwhile
    assert relay.pending.untrackable({**_list(request_id), "method": "tools/call"}) is not None
    await relay.from_server.receive(_line({"jsonrpc": "2.0", "id": request_id, "result": TOOLS}))
    assert _tools(to_client) == ["echo"]  # the denied tool is not disclosed
    assert relay.pending.untrackable(_list(request_id)) is None  # answered: free again


async def test_an_answer_to_a_cancelled_request_in_a_server_batch_is_filtered() -> None:
    relay, to_client, _ = _relay()
    await relay.from_client.receive(_line(_list(5)))
    await relay.from_client.receive(_line(_cancel(5)))
    answer = {"jsonrpc": "2.0", "id": 5, "result": json.loads(json.dumps(TOOLS))}
    await relay.from_server.receive(_line([answer]))
    assert _tools(to_client) == ["echo"]


def test_past_the_cancelled_kept_the_oldest_answer_is_dropped_never_unfiltered() -> None:
    pending = Pending()
    for number in range(CANCELLED_KEPT + 1):
        pending.sent(_list(number), None)
        pending.sent(_cancel(number))
    first = {"jsonrpc": "2.0", "id": 0, "result": TOOLS}
    assert pending.answering(first) is None
    assert pending.too_late(first)  # dropped: the client cancelled it
    last = {"jsonrpc": "2.0", "id": CANCELLED_KEPT, "result": TOOLS}
    assert pending.answering(last) == ("tools/list", None)  # still matched: filtered


NULL_IDS = {
    "tools/call": b'{"jsonrpc":"2.0","id":null,"method":"tools/call",'
    b'"params":{"name":"echo","arguments":{"n":1}}}',
    "tools/list": b'{"jsonrpc":"2.0","id":null,"method":"tools/list"}',
    "ping": b'{"jsonrpc":"2.0","id":null,"method":"ping"}',
    "batch-member": b'[{"jsonrpc":"2.0","id":1,"method":"ping"},'
    b'{"jsonrpc":"2.0","id":null,"method":"tools/list"}]',
}


@pytest.mark.parametrize("line", NULL_IDS.values(), ids=NULL_IDS.keys())
async def test_a_null_request_id_is_refused_never_forwarded(line: bytes) -> None:
    relay, to_client, server = _relay()
    records: list[dict[str, Any]] = []
    relay.shipper.record = records.append  # type: ignore[method-assign]
    for _ in range(2):  # a second one too (it would duplicate the first)
        await relay.from_client.receive(line)
    assert server.sent == []
    assert [(a["id"], a["error"]["code"]) for a in to_client] == [(None, rpc.INVALID)] * 2
    assert "string or an integer" in to_client[0]["error"]["message"]
    assert [r["path"] for r in records] == ["/bad-id", "/bad-id"]


def _merge(request_id: int) -> dict[str, Any]:
    params = {"name": "merge_pr", "arguments": {"number": 7}}
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}


async def test_a_retry_that_takes_the_approval_leaves_the_original_refused_truthfully(
    server: LiveServer, tmp_path: Path
) -> None:
    """The race made certain: the session holding the original is stopped (SIGSTOP) while
    the call is approved and an identical retry (another session, same server name) takes
    the approval; then it goes on, and its use of the approval is refused (409)."""
    agent = add_agent(server, "H2RaceBot")  # merge_pr: require_approval
    env = wrap_env(server)
    async with wire(tmp_path, agent, env) as original, wire(tmp_path, agent, env) as retry:
        await original.send(_merge(1))
        for _ in range(600):  # (bounded: until the approval is recorded)
            if pending := pending_approvals(server, agent):
                break
            await asyncio.sleep(0.05)
        original.process.send_signal(signal.SIGSTOP)
        try:
            approved = server.admin("POST", f"/v1/approvals/{pending[0]['id']}/approve", json={})
            assert approved.status_code == 200, approved.text
            passed = await retry.call(2, "merge_pr", number=7)  # identical but for its id
        finally:
            original.process.send_signal(signal.SIGCONT)
        refused = await original.receive()
        ran = [m["id"] for m in original.received() if m.get("method") == "tools/call"]
    assert "result" in passed
    assert ran == [2]  # at most once: the retry ran, on the one approval
    assert refused["id"] == 1
    error = refused["error"]
    assert error["code"] == rpc.APPROVAL
    assert error["data"]["error"] == "approval_used"
    assert "already used" in error["message"]
    assert "unreachable" not in error["message"]
    rows: list[dict[str, Any]] = []
    for _ in range(100):  # (bounded: the records are shipped once a second)
        rows = server.admin("GET", f"/v1/traffic?agent={agent}&limit=50").json()["traffic"]
        if any(r["status_code"] == 409 for r in rows):
            break
        await asyncio.sleep(0.1)
    assert not any("unreachable" in (r.get("reason") or "") for r in rows), rows
    assert any(r["status_code"] == 409 and "already used" in r["reason"] for r in rows), rows
