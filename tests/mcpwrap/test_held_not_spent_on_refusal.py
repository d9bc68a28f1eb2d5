"""`tf mcp wrap`: a held call refused for what is known once it is approved (its agent no
longer active in the config in force, the control plane lost) is refused before its approval
is spent: the approval stays approved and unused, as at the gateway
(tests/proxy/test_approval_not_spent_on_refusal.py).

In process: the relay over a ``StaticControl`` whose approvals the test decides; the change
is put in force the moment before the approval is decided (a config the follower applied, or
the watchdog's verdict, not yet acted on: the race this closes)."""

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


def _snapshot(status: str) -> dict[str, Any]:
    rules = [("mcp.rpc.*", "allow"), ("mcp.tools.merge_pr", "require_approval")]
    return {
        "version": 1,
        "agents": [{"name": "Bot", "api_keys": ["k"], "status": status}],
        "permissions": [
            {"agent": "Bot", "connector": "mcp", "action_pattern": p, "decision": d}
            for p, d in rules
        ],
    }


MERGE = {"jsonrpc": "2.0", "id": 7, "method": "tools/call",
         "params": {"name": "merge_pr", "arguments": {"pr": 1}}}  # fmt: skip


def _relay() -> tuple[Relay, list[Any], StandInServer, StaticControl]:
    control = StaticControl(_snapshot("active"))
    gate = Gate("Bot", server_entry("tests", None), compile_snapshot(control.snapshot))
    relay, to_client, server = in_process(gate, RelayOptions(progress_interval=60), control)
    return relay, to_client, server, control


async def _held(relay: Relay, control: StaticControl) -> str:
    for _ in range(500):  # (bounded: until the approval is recorded and awaited)
        if relay.holds.held and control.pending():
            return str(control.pending()[0]["id"])
        await asyncio.sleep(0.01)
    raise AssertionError("the call was never held")


def _suspended(relay: Relay) -> None:
    relay.gate.config = compile_snapshot(_snapshot("suspended"))


def _lost(relay: Relay) -> None:
    relay.follower.contact.lost = True


@pytest.mark.parametrize(
    ("change", "error", "code"),
    [(_suspended, "agent_inactive", rpc.DENIED), (_lost, "control_plane_unreachable", rpc.DENIED)],
    ids=["agent suspended", "control plane lost"],
)
async def test_a_held_call_refused_once_approved_leaves_its_approval_unused(
    change: Any, error: str, code: int
) -> None:
    relay, to_client, server, control = _relay()
    await relay.from_client.receive(json.dumps(MERGE).encode())
    approval_id = await _held(relay, control)

    change(relay)
    control.approve(approval_id)
    await asyncio.gather(*relay.holding.running, return_exceptions=True)

    (answer,) = to_client
    assert answer["id"] == 7
    assert answer["error"]["code"] == code
    assert answer["error"]["data"]["error"] == error
    assert server.sent == []  # never forwarded
    approval = control.approvals[approval_id]
    assert (approval["status"], approval["used"]) == ("approved", False)


async def test_an_approved_call_that_is_sent_spends_its_approval() -> None:
    relay, to_client, server, control = _relay()
    await relay.from_client.receive(json.dumps(MERGE).encode())
    approval_id = await _held(relay, control)

    control.approve(approval_id)
    await asyncio.gather(*relay.holding.running, return_exceptions=True)

    assert [m["id"] for m in server.sent] == [7]
    assert to_client == []  # (the server answers it)
    assert control.approvals[approval_id]["used"] is True
