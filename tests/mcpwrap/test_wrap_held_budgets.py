"""`tf mcp wrap`: a held tool call and the budgets covering it, in the gateway's order.

A call a rule holds is reserved as if approved before it is held: past a `deny` budget it is
refused at once, before an approval is recorded or a grant's use is spent (the relay used to
reserve only after the approval: the grant's use was spent, or a person asked, for a call the
budget then refused). While a person decides the spend stays reserved; a denial or a
cancellation releases it, an approved call that was forwarded is settled.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp.shared.exceptions import MCPError

from tests.livesrv import LiveServer
from tests.mcpwrap.conftest import add_agent, pending_approvals, wrapped

pytestmark = pytest.mark.anyio


def _text(result: object) -> str:
    return "".join(getattr(c, "text", "") for c in getattr(result, "content", []))


async def _until(check: Any, what: str, seconds: float = 30.0) -> Any:
    """Poll `check()` until it returns something truthy (a bounded wait, not a timing test)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        await anyio.sleep(0.05)
    raise AssertionError(f"gave up waiting for {what}")


def _one_merge_budget(server: LiveServer, agent: str, name: str) -> None:
    """At most one `merge_pr` call for `agent`, past it refused (`deny`)."""
    budget = {"agents": [agent], "connector": "mcp", "action": "mcp.tools.merge_pr",
              "measure": "count", "limit": 1, "outcome": "deny"}  # fmt: skip
    answer = server.admin("PUT", f"/v1/budgets/{name}", json=budget)
    assert answer.status_code in (200, 201), answer.text


def _used(server: LiveServer, name: str) -> float:
    """What the budget counts now, reservations in flight included."""
    used: float = server.admin("GET", f"/v1/budgets/{name}").json()["state"]["used"]
    return used


def _grant_uses(server: LiveServer, agent: str) -> list[tuple[str, int]]:
    grants = server.admin("GET", "/v1/grants", params={"status": "all"}).json()["grants"]
    return [(g["id"], g["uses"]) for g in grants if g.get("agent") == agent]


async def test_a_deny_budget_refuses_a_held_call_before_a_grant_or_a_person(
    server: LiveServer, tmp_path: Path
) -> None:
    """Past a `deny` budget a held call is refused at once: a grant that covers it keeps its
    use (before the fix: `uses` 1 and a `grant.used` event for a refused call), and without
    a grant nobody is asked (before: an approval was recorded and waited for, and the call
    was refused only once approved)."""
    agent = add_agent(server, "McpHeldDenyBudget")
    _one_merge_budget(server, agent, "merge-once")
    asked: list[dict[str, Any]] = []

    async def deny_if_asked() -> None:
        """Record (and deny, so the call ends) any approval the refused call asks for."""
        while True:
            for approval in pending_approvals(server, agent):
                asked.append(approval)
                server.admin("POST", f"/v1/approvals/{approval['id']}/deny", json={})
            await anyio.sleep(0.05)

    with anyio.fail_after(90):
        async with wrapped(server, agent, tmp_path) as session:
            async with anyio.create_task_group() as tg:

                async def approve_with_grant() -> None:
                    found = await _until(lambda: pending_approvals(server, agent), "approval")
                    grant = {"for_seconds": 3600, "max_uses": 3}
                    r = server.admin("POST", f"/v1/approvals/{found[0]['id']}/approve",
                                     json={"grant": grant})  # fmt: skip
                    assert r.status_code == 200, r.text

                tg.start_soon(approve_with_grant)
                first = await session.call_tool("merge_pr", {"number": 1})
            assert _text(first) == "merged #1"  # the budget's one call
            [(grant_id, uses)] = _grant_uses(server, agent)
            assert uses == 0

            # the grant covers the next call, the budget does not
            with pytest.raises(MCPError) as with_grant:
                await session.call_tool("merge_pr", {"number": 2})

            # without the grant: refused before an approval is recorded
            server.admin("POST", f"/v1/grants/{grant_id}/revoke").raise_for_status()
            async with anyio.create_task_group() as tg:
                tg.start_soon(deny_if_asked)
                with pytest.raises(MCPError) as without:
                    await session.call_tool("merge_pr", {"number": 3})
                tg.cancel_scope.cancel()
            assert _text(await session.call_tool("echo", {"text": "on"})) == "on"
    assert _grant_uses(server, agent) == [(grant_id, 0)]  # no use spent on a refused call
    events = server.admin("GET", "/v1/audit", params={"limit": 1000}).json()["events"]
    assert [e for e in events if e["event_type"] == "grant.used" and e["subject"] == grant_id] == []
    assert asked == []  # nobody was asked about a call the budget refuses
    for refused in (with_grant.value.error, without.value.error):
        assert refused.code == -32001
        assert "budget `merge-once` exceeded" in refused.message
        assert refused.data["error"] == "budget_exceeded"
    assert _used(server, "merge-once") == 1


async def test_a_held_call_reserves_and_a_denial_or_a_cancel_releases(
    server: LiveServer, tmp_path: Path
) -> None:
    """A held call's spend is reserved while a person decides (so what is approved fits the
    budget); denied or cancelled, it is released (the next held call fits the budget of one
    again); approved and forwarded, it is counted."""
    agent = add_agent(server, "McpHeldRelease")
    _one_merge_budget(server, agent, "merge-one")
    with anyio.fail_after(120):
        async with wrapped(server, agent, tmp_path) as session:
            async with anyio.create_task_group() as tg:

                async def deny() -> None:
                    found = await _until(lambda: pending_approvals(server, agent), "approval")
                    assert _used(server, "merge-one") == 1  # reserved before it was held
                    server.admin("POST", f"/v1/approvals/{found[0]['id']}/deny", json={})

                tg.start_soon(deny)
                with pytest.raises(MCPError) as denied:
                    await session.call_tool("merge_pr", {"number": 1})
            assert denied.value.error.code == -32002
            await _until(lambda: _used(server, "merge-one") == 0, "the release after a denial")

            with anyio.CancelScope() as held:

                async def cancel_when_held() -> None:
                    await _until(lambda: pending_approvals(server, agent), "the approval")
                    assert _used(server, "merge-one") == 1
                    held.cancel()

                async with anyio.create_task_group() as tg:
                    tg.start_soon(cancel_when_held)
                    await session.call_tool("merge_pr", {"number": 2})
            await _until(lambda: _used(server, "merge-one") == 0, "the release after a cancel")
            for approval in pending_approvals(server, agent):  # the cancelled call's
                server.admin("POST", f"/v1/approvals/{approval['id']}/deny", json={})

            async with anyio.create_task_group() as tg:

                async def approve() -> None:
                    found = await _until(lambda: pending_approvals(server, agent), "approval")
                    r = server.admin("POST", f"/v1/approvals/{found[0]['id']}/approve", json={})
                    assert r.status_code == 200, r.text

                tg.start_soon(approve)
                approved = await session.call_tool("merge_pr", {"number": 3})
            assert _text(approved) == "merged #3"  # the room the releases left
    assert _used(server, "merge-one") == 1  # the session ended: settled, exact
