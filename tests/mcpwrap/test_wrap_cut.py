"""A session is cut short as the gateway cuts its exchanges, and goes on: when its agent is
suspended (its call in flight is refused at once, never answered by the server later),
and when the control plane says nothing for longer than `--max-config-age` (its config may
miss a kill switch: every call is refused, held ones too, until it answers again)."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agentfirewall_proxy.cli.app import main
from agentfirewall_proxy.options import MAX_CONFIG_AGE_HELP
from tests.livesrv import LiveServer
from tests.mcpwrap.conftest import add_agent, pending_approvals, wrap_env
from tests.mcpwrap.wire import Wire, wire

pytestmark = pytest.mark.anyio
DOC = (Path(__file__).resolve().parents[2] / "docs" / "mcp.md").read_text(encoding="utf-8")


async def _until(found: Callable[[], Any], what: str, seconds: float = 20) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if value := found():
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what}: not in {seconds} s")


async def _answered_again(relay: Wire, first: int) -> int:
    """Call `echo` until it is answered (not refused); the id of that call."""
    for number in range(first, first + 400):
        answer = await relay.call(number, "echo", n=number)
        assert answer["id"] == number  # (no late answer to another call slips in)
        if "result" in answer:
            return number
        await asyncio.sleep(0.05)
    raise AssertionError("never answered again")


async def test_suspending_the_agent_cuts_its_call_in_flight(
    server: LiveServer, tmp_path: Path
) -> None:
    agent = add_agent(server, "McpSuspended", {"mcp.rpc.*": "allow", "mcp.tools.*": "allow"})
    async with wire(tmp_path, agent, wrap_env(server)) as relay:
        slow = {"name": "slow", "arguments": {"seconds": 2}}
        await relay.send({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": slow})
        await _until(relay.received, "the call reached the server")
        assert server.admin("POST", f"/v1/agents/{agent}/suspend", json={}).status_code == 200
        cut = await relay.receive(15)
        assert cut["id"] == 1
        assert cut["error"]["code"] == -32001
        assert cut["error"]["data"]["error"] == "agent_inactive"
        assert "no longer active" in cut["error"]["message"]
        denied = await relay.call(2, "echo")
        assert "unknown or not active" in denied["error"]["message"]
        assert server.admin("POST", f"/v1/agents/{agent}/activate", json={}).status_code == 200
        await _answered_again(relay, 3)  # the server's late answer to 1 was dropped
    cancelled = [m for m in relay.received() if m.get("method") == "notifications/cancelled"]
    assert [m["params"]["requestId"] for m in cancelled] == [1]


async def test_past_max_config_age_every_call_is_refused_until_the_control_plane_answers(
    server: LiveServer, tmp_path: Path
) -> None:
    """The control plane's process stopped (SIGSTOP: it accepts and never answers, a long
    poll in flight hangs) for longer than the bound: a held call ends, a new one is
    refused, both naming the reason; once it runs again, calls pass again."""
    rules = {
        "mcp.rpc.*": "allow",
        "mcp.tools.echo": "allow",
        "mcp.tools.merge_pr": "require_approval",
    }
    agent = add_agent(server, "McpOutage", rules)
    assert server.process is not None
    async with wire(tmp_path, agent, wrap_env(server), "--max-config-age", "1") as relay:
        assert "result" in await relay.call(1, "echo")
        merge = {"name": "merge_pr", "arguments": {"number": 7}}
        await relay.send({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": merge})
        await _until(lambda: pending_approvals(server, agent), "the approval")
        server.process.send_signal(signal.SIGSTOP)
        try:
            held = await relay.receive(15)
            refused = await relay.call(3, "echo")
        finally:
            server.process.send_signal(signal.SIGCONT)
        await _answered_again(relay, 4)
    for answer, number in ((held, 2), (refused, 3)):
        assert answer["id"] == number
        assert answer["error"]["code"] == -32001
        assert answer["error"]["data"]["error"] == "control_plane_unreachable"
        assert "--max-config-age 1" in answer["error"]["message"]
    assert not [m for m in relay.received() if m.get("id") in (2, 3)]  # neither was sent


def test_max_config_age_is_the_gateways_option(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["mcp", "wrap", "--help"]) == 0
    helped = " ".join(capsys.readouterr().out.split())
    assert "--max-config-age SECONDS" in helped
    assert (MAX_CONFIG_AGE_HELP % {"default": 60.0}) in helped
    assert "--max-config-age" in DOC
    for value in ("-1", "nan"):
        assert main(["mcp", "wrap", "--name", "Bot", "--max-config-age", value, "--", "x"]) == 2
        assert "--max-config-age must be 0 (no bound)" in capsys.readouterr().err
