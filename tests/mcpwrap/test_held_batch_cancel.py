"""A batch is held whole: when the client cancels one of its requests, every other request
of it is answered (-32002: the batch is never forwarded), none is left waiting for ever,
and the relay stops waiting for the approval, as for one cancelled request.

In process: the relay over a snapshot, a stand-in server stdin, the client's side a list."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from agentfirewall_proxy.control import StaticControl
from agentfirewall_proxy.mcpwrap import messages as rpc
from agentfirewall_proxy.mcpwrap.gate import Gate, server_entry
from agentfirewall_proxy.mcpwrap.relay import Relay, RelayOptions
from agentfirewall_proxy.snapshot import compile_snapshot
from tests.mcpwrap.inproc import StandInServer, in_process

pytestmark = pytest.mark.anyio

SNAPSHOT = {
    "agents": [{"name": "Bot", "api_keys": ["k"]}],
    "permissions": [
        {"agent": "Bot", "connector": "mcp", "action_pattern": p, "decision": d}
        for p, d in [("mcp.rpc.*", "allow"), ("mcp.tools.merge_pr", "require_approval")]
    ],
}


def _merge(request_id: object) -> dict[str, Any]:
    params = {"name": "merge_pr", "arguments": {"pr": request_id}}
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}


def _cancel(request_id: object) -> bytes:
    params = {"requestId": request_id, "reason": "stop"}
    message = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": params}
    return json.dumps(message).encode()


def _relay() -> tuple[Relay, list[Any], StandInServer]:
    control = StaticControl(SNAPSHOT)
    gate = Gate("Bot", server_entry("tests", None), compile_snapshot(control.snapshot))
    return in_process(gate, RelayOptions(progress_interval=60), control)


async def _held(relay: Relay) -> None:
    for _ in range(500):  # (bounded: until the approval is recorded and awaited)
        if relay.holds.held:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the batch was never held")


@pytest.mark.parametrize("cancelled", [1, "b"])
async def test_cancelling_one_request_of_a_held_batch_answers_the_others(
    cancelled: object,
) -> None:
    relay, to_client, server = _relay()
    batch = [_merge(1), _merge("b"), _merge(3)]
    await relay.from_client.receive(json.dumps(batch).encode())
    await _held(relay)

    await relay.from_client.receive(_cancel(cancelled))
    await asyncio.gather(*relay.holding.running, return_exceptions=True)

    others = sorted(str(m["id"]) for m in batch if m["id"] != cancelled)
    assert sorted(str(a["id"]) for a in to_client) == others  # each once; not the cancelled
    for answer in to_client:
        assert answer["error"]["code"] == rpc.APPROVAL
        assert answer["error"]["data"] == {"error": "batch_cancelled", "cancelled": cancelled}
    assert not relay.holds.held  # the approval is no longer awaited
    assert not relay.holding.running
    assert server.sent == []  # nothing of the batch reached the server
    assert relay.pending.untrackable(batch) is None  # every id is free again
    # a second cancel (another member's) finds nothing held: it goes on to the server
    await relay.from_client.receive(_cancel(3))
    assert len(to_client) == 2
    assert [m["method"] for m in server.sent] == ["notifications/cancelled"]


async def test_cancelling_a_single_held_request_answers_nothing() -> None:
    relay, to_client, server = _relay()
    await relay.from_client.receive(json.dumps(_merge(7)).encode())
    await _held(relay)
    await relay.from_client.receive(_cancel(7))
    await asyncio.gather(*relay.holding.running, return_exceptions=True)
    assert to_client == []  # (the client cancelled it: JSON-RPC owes it no answer)
    assert not relay.holds.held
    assert server.sent == []
