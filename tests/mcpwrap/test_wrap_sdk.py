"""`tf mcp wrap` end to end: the official MCP Python SDK as client and as server, the real
control plane deciding, holding and recording."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest
from mcp.shared.exceptions import MCPError

from tests.livesrv import LiveServer
from tests.mcpwrap.conftest import add_agent, pending_approvals, wrap_args, wrap_env, wrapped

pytestmark = pytest.mark.anyio


def _text(result: object) -> str:
    return "".join(getattr(c, "text", "") for c in getattr(result, "content", []))


async def _until(check: object, what: str, seconds: float = 45.0) -> object:
    """Poll `check()` until it returns something truthy (a bounded wait, not a timing test)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = check()  # type: ignore[operator]
        if found:
            return found
        await anyio.sleep(0.05)
    raise AssertionError(f"gave up waiting for {what}")


async def test_allowed_denied_listed_large_and_cancelled(
    server: LiveServer, tmp_path: Path
) -> None:
    """One session (each session costs two interpreter starts): allowed and denied calls,
    tools/list filtered, 5 MiB both ways, and cancellation of a running and a held call."""
    agent = add_agent(server, "McpMain")
    marker = tmp_path / "slow.txt"
    size = 5 * 1024 * 1024
    with anyio.fail_after(90):
        async with wrapped(server, agent, tmp_path) as session:
            tools = sorted(t.name for t in (await session.list_tools()).tools)
            # delete_repo is denied: not even shown; merge_pr (held) is shown
            assert tools == ["big", "crash", "echo", "merge_pr", "show_token", "slow"]
            assert _text(await session.call_tool("echo", {"text": "héllo"})) == "héllo"
            with pytest.raises(MCPError) as denied:
                await session.call_tool("delete_repo", {"name": "prod"})

            sent = "é" * (size // 2)  # 5 MiB of UTF-8 in one request, and 5 MiB back
            assert _text(await session.call_tool("echo", {"text": sent})) == sent
            assert len(_text(await session.call_tool("big", {"size": size}))) == size

            with anyio.CancelScope() as scope:

                async def cancel_when_started() -> None:
                    await _until(marker.exists, "the slow call to start")
                    scope.cancel()

                async with anyio.create_task_group() as tg:
                    tg.start_soon(cancel_when_started)
                    await session.call_tool("slow", {"marker": str(marker)})
            await _until(lambda: marker.read_text() == "cancelled", "the server to see the cancel")

            with anyio.CancelScope() as held:

                async def cancel_when_held() -> None:
                    await _until(lambda: pending_approvals(server, agent), "the approval")
                    held.cancel()

                async with anyio.create_task_group() as tg:
                    tg.start_soon(cancel_when_held)
                    await session.call_tool("merge_pr", {"number": 9})
            # the session goes on after both cancellations
            assert _text(await session.call_tool("echo", {"text": "next"})) == "next"
    error = denied.value.error
    assert error.code == -32001
    assert "TameFlare denied `mcp.tools.delete_repo`" in error.message
    assert error.data["rule"].startswith("perm_")  # the permission that denied it
    assert error.data["action"] == "mcp.tools.delete_repo"
    traffic = server.admin("GET", f"/v1/traffic?agent={agent}&limit=100").json()
    rows = traffic.get("traffic") or traffic.get("records") or traffic.get("items") or []
    actions = {(r["action"], r["decision"]) for r in rows}
    assert ("mcp.tools.echo", "allow") in actions
    assert ("mcp.tools.delete_repo", "deny") in actions


async def test_held_calls_approved_and_denied_from_another_process(
    server: LiveServer, tmp_path: Path
) -> None:
    agent = add_agent(server, "McpHeld")
    progress: list[str] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append(message or "")

    with anyio.fail_after(90):
        async with wrapped(server, agent, tmp_path) as session:
            async with anyio.create_task_group() as tg:

                async def approve() -> None:
                    found = await _until(lambda: pending_approvals(server, agent), "the approval")
                    approval = found[0]  # type: ignore[index]
                    assert approval["action_spec"]["type"] == "mcp.tools.merge_pr"
                    assert approval["action_spec"]["parameters"]["number"] == 7
                    await _until(lambda: progress, "a progress notification")
                    r = server.admin("POST", f"/v1/approvals/{approval['id']}/approve", json={})
                    assert r.status_code == 200, r.text

                tg.start_soon(approve)
                result = await session.call_tool(
                    "merge_pr", {"number": 7}, progress_callback=on_progress
                )
            assert _text(result) == "merged #7"
            assert "waiting for approval" in progress[0]

            async with anyio.create_task_group() as tg:

                async def deny() -> None:
                    found = await _until(lambda: pending_approvals(server, agent), "the approval")
                    approval_id = found[0]["id"]  # type: ignore[index]
                    server.admin("POST", f"/v1/approvals/{approval_id}/deny", json={})

                tg.start_soon(deny)
                with pytest.raises(MCPError) as refused:
                    await session.call_tool("merge_pr", {"number": 8})
            assert _text(await session.call_tool("echo", {"text": "still here"})) == "still here"
    assert refused.value.error.code == -32002
    assert "approval denied" in refused.value.error.message


async def test_kill_switch_cuts_the_session(server: LiveServer, tmp_path: Path) -> None:
    agent = add_agent(server, "McpKilled")
    marker = tmp_path / "slow.txt"
    with anyio.fail_after(60):
        async with wrapped(server, agent, tmp_path) as session:
            assert _text(await session.call_tool("echo", {"text": "before"})) == "before"
            async with anyio.create_task_group() as tg:

                async def activate() -> None:
                    await _until(marker.exists, "the slow call to reach the server")
                    body = {"active": True, "scope": f"agent:{agent}", "reason": "incident"}
                    server.admin("POST", "/v1/kill-switch", json=body).raise_for_status()

                tg.start_soon(activate)
                with pytest.raises(MCPError) as cut:
                    await session.call_tool("slow", {"marker": str(marker)})
            with pytest.raises(MCPError):  # the session is over
                await session.call_tool("echo", {"text": "after"})
    server.admin("POST", "/v1/kill-switch", json={"active": False, "scope": f"agent:{agent}"})
    assert cut.value.error.code == -32001
    assert cut.value.error.data["kill_switch"] is True
    assert "kill switch" in cut.value.error.message


async def test_server_crash_is_reported(server: LiveServer, tmp_path: Path) -> None:
    agent = add_agent(server, "McpCrash")
    with anyio.fail_after(60):
        async with wrapped(server, agent, tmp_path) as session:
            with pytest.raises(MCPError) as crashed:
                await session.call_tool("crash", {})
    assert crashed.value.error.code == -32003
    assert "exited with code 3" in crashed.value.error.message
    assert crashed.value.error.data == {"server": "tests", "exit_code": 3}


async def test_vault_credential_in_env_and_scrubbed_show_denied(
    server: LiveServer, tmp_path: Path
) -> None:
    agent = add_agent(server, "McpVault")
    secret = "ghp_" + "S3cretTokenValue" * 2
    body = {"type": "github", "name": "gh-mcp", "token": secret}
    server.admin("POST", "/v1/connectors", json=body).raise_for_status()
    flags = ("--env", "GITHUB_TOKEN=connector:gh-mcp", "--show-denied")
    with anyio.fail_after(60):
        async with wrapped(server, agent, tmp_path, *flags) as session:
            names = {t.name for t in (await session.list_tools()).tools}
            text = _text(await session.call_tool("show_token", {}))
    assert "delete_repo" in names  # --show-denied keeps denied tools listed
    assert text.startswith("token: [REDACTED by TameFlare]")  # the server had it; the client not
    assert secret not in text
    assert len(text) == len("token: ") + len(secret)


async def test_budgets_count_stdio_tool_calls(server: LiveServer, tmp_path: Path) -> None:
    """A `count` budget on connector `mcp` counts calls through `tf mcp wrap` as over HTTP:
    past a `deny` budget the call is refused (never forwarded); past a `require_approval`
    one it is held, and goes once approved."""
    agent = add_agent(server, "McpBudget")
    for name, action, outcome in (("mcp-echo", "mcp.tools.echo", "deny"),
                                  ("mcp-big", "mcp.tools.big", "require_approval")):  # fmt: skip
        budget = {"agents": [agent], "connector": "mcp", "action": action, "measure": "count",
                  "limit": 2, "outcome": outcome}  # fmt: skip
        answer = server.admin("PUT", f"/v1/budgets/{name}", json=budget)
        assert answer.status_code in (200, 201), answer.text
    with anyio.fail_after(90):
        async with wrapped(server, agent, tmp_path) as session:
            for text in ("one", "two"):
                assert _text(await session.call_tool("echo", {"text": text})) == text
            with pytest.raises(MCPError) as refused:
                await session.call_tool("echo", {"text": "three"})
            for size in (1, 2):
                assert len(_text(await session.call_tool("big", {"size": size}))) == size
            async with anyio.create_task_group() as tg:

                async def approve() -> None:
                    found = await _until(lambda: pending_approvals(server, agent), "the approval")
                    approval_id = found[0]["id"]  # type: ignore[index]
                    r = server.admin("POST", f"/v1/approvals/{approval_id}/approve", json={})
                    assert r.status_code == 200, r.text

                tg.start_soon(approve)
                held = await session.call_tool("big", {"size": 3})
            assert len(_text(held)) == 3
    error = refused.value.error
    assert error.code == -32001
    assert "budget `mcp-echo` exceeded" in error.message
    assert error.data["error"] == "budget_exceeded"
    usage = server.admin("GET", "/v1/budgets").json()
    used = {b["name"]: b["state"]["used"] for b in usage["budgets"]}  # the session ended: exact
    assert used["mcp-echo"] == 2  # the refused third was never counted
    assert used["mcp-big"] == 3  # the approved one counts


def test_lines_refused_before_they_are_read_are_recorded_too(
    server: LiveServer, tmp_path: Path
) -> None:
    """A line that is not JSON, or over `--max-message`, is answered and recorded: every
    client message is a traffic record (they left none)."""
    agent = add_agent(server, "McpUnread")
    args = wrap_args(agent, "--max-message", "1000")
    lines = b"{not json\n" + b'{"jsonrpc":"2.0","id":3,"method":"ping","params":"' + (
        b"x" * 3000) + b'"}\n'  # fmt: skip
    done = subprocess.run([sys.executable, *args], input=lines, capture_output=True,
                          env={**os.environ, **wrap_env(server)}, cwd=tmp_path,
                          timeout=60)  # fmt: skip
    answers = [json.loads(line) for line in done.stdout.splitlines()]
    assert [a["error"]["code"] for a in answers] == [-32700, -32600]
    deadline = time.monotonic() + 15
    rows: list[dict[str, object]] = []
    while len(rows) < 2 and time.monotonic() < deadline:
        rows = server.admin("GET", f"/v1/traffic?agent={agent}").json()["traffic"]
        time.sleep(0.1)
    assert sorted((r["path"], r["decision"], r["status_code"]) for r in rows) == [
        ("/not-json", "deny", 400), ("/too-large", "deny", 400)]  # fmt: skip
