"""A guarded tool call its caller cancels never runs its action, whichever client it uses.

Before, a Mode A tool with a sync ``AgentFirewall`` under ``ainvoke`` asked, waited and
executed in one worker thread: the cancelled caller left, but the thread executed the action
once it was approved (a framework retrying the timed-out call ran it twice), and with an
anyio cancel scope the caller even waited for it. The ``AsyncAgentFirewall`` executed nothing.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Literal

import anyio
import anyio.to_thread
import httpx
import pytest
from langchain_core.tools import BaseTool

from agentfirewall import AgentFirewall, AsyncAgentFirewall
from agentfirewall.integrations.langchain import firewall_tool
from tests.sdk.liveagent import ExecutingServer, LiveAgent

pytestmark = pytest.mark.anyio

Client = Literal["AgentFirewall", "AsyncAgentFirewall"]
Cancel = Literal["task.cancel()", "cancel scope"]
#: How long an abandoned call is watched for an execution (or a poll) it must never make.
WATCH_SECONDS = 3.0


class Recorder(httpx.HTTPTransport):
    """The sync client's transport, recording the path of every request it sends."""

    def __init__(self) -> None:
        super().__init__()
        self.paths: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        return super().handle_request(request)


class AsyncRecorder(httpx.AsyncHTTPTransport):
    def __init__(self) -> None:
        super().__init__()
        self.paths: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        return await super().handle_async_request(request)


def issue_tool(firewall: AgentFirewall | AsyncAgentFirewall) -> BaseTool:
    @firewall_tool(
        firewall,
        action_type="github.issue.create",
        provider="github",
        target=lambda args: args["repo"],
        parameters=lambda args: {"title": args["title"], "body": "b"},
        execute=True,
        approval_timeout=60,
    )
    def create_issue(repo: str, title: str) -> str:
        """Create an issue."""
        raise AssertionError("Mode A: the server creates the issue")

    return create_issue


async def held(agent: LiveAgent) -> dict[str, Any]:
    """The agent's pending approval, once there is one (20 s at most)."""
    with anyio.fail_after(20):
        while not (pending := await anyio.to_thread.run_sync(agent.pending)):
            await anyio.sleep(0.05)
    found: dict[str, Any] = pending[0]
    return found


def call(agent: LiveAgent) -> dict[str, str]:
    """A tool call whose issue's title is the agent's own (the fake GitHub is shared)."""
    return {"repo": "acme/api", "title": agent.name}


async def cancel_while_held(tool: BaseTool, agent: LiveAgent, how: Cancel) -> str:
    """Call `tool`, cancel the call while its action waits for a human, then approve the
    action; the action's id."""
    cancelled = threading.Event()

    def approve_once_cancelled() -> None:
        if cancelled.wait(30):
            agent.decide_next("approve")

    approver = threading.Thread(target=approve_once_cancelled, daemon=True)
    approver.start()
    if how == "task.cancel()":  # asyncio.wait_for, a LangGraph step timeout
        task = asyncio.ensure_future(tool.ainvoke(call(agent)))
        approval = await held(agent)
        task.cancel()
        cancelled.set()
        with pytest.raises(asyncio.CancelledError):
            await task
    else:  # anyio: move_on_after, a task group cancelled
        async with anyio.create_task_group() as group:
            group.start_soon(tool.ainvoke, call(agent))
            approval = await held(agent)
            group.cancel_scope.cancel()
            cancelled.set()
    await anyio.to_thread.run_sync(approver.join, 30)
    action_id: str = approval["action_request_id"]
    return action_id


@pytest.mark.parametrize("how", ["task.cancel()", "cancel scope"])
@pytest.mark.parametrize("client", ["AgentFirewall", "AsyncAgentFirewall"])
async def test_a_cancelled_tool_call_never_executes_its_action(
    mode_a: ExecutingServer, client: Client, how: Cancel
) -> None:
    """Before, with an AgentFirewall: `action.executed` (201) after the caller gave up."""
    agent = mode_a.agent()
    agent.require_approval("github.issue.create")
    if client == "AgentFirewall":
        transport: Recorder | AsyncRecorder = Recorder()
        firewall: AgentFirewall | AsyncAgentFirewall = agent.firewall(transport=transport)
    else:
        transport = AsyncRecorder()
        firewall = agent.async_firewall(transport=transport)
    try:
        action_id = await cancel_while_held(issue_tool(firewall), agent, how)
        with anyio.move_on_after(WATCH_SECONDS):  # an abandoned thread would execute now
            while True:
                state = mode_a.server.admin("GET", f"/v1/actions/{action_id}").json()
                assert state["status"] == "allowed", "executed after its caller gave up"
                await anyio.sleep(0.1)
        assert not [path for path in transport.paths if path.endswith("/execute")]
        issues = mode_a.fake("github").received("POST", "/repos/acme/api/issues")
        assert not [issue for issue in issues if issue.json()["title"] == agent.name]
    finally:
        if isinstance(firewall, AsyncAgentFirewall):
            await firewall.aclose()


class EarlyAnswers(Recorder):
    """A server whose long-polls answer at once (a proxy cutting them short, say): the
    client polls again about every second until the action is decided."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/wait"):
            request = httpx.Request(
                request.method,
                request.url.copy_set_param("timeout", "0"),
                headers=request.headers,
                extensions=request.extensions,
            )
        return super().handle_request(request)


def polls(transport: Recorder) -> int:
    return sum(path.endswith("/wait") for path in transport.paths)


async def test_an_abandoned_wait_stops_at_its_next_poll(agent: LiveAgent) -> None:
    """Before, the worker thread kept polling until `approval_timeout` (300 s here) for a
    caller long gone, holding a thread all that time."""
    agent.require_approval("github.issue.create")
    transport = EarlyAnswers()

    @firewall_tool(agent.firewall(transport=transport), action_type="github.issue.create")
    def create_issue(repo: str, title: str) -> str:
        """Create an issue."""
        raise AssertionError("cancelled before it was approved")

    task = asyncio.ensure_future(create_issue.ainvoke(call(agent)))
    await held(agent)
    with anyio.fail_after(20):
        while polls(transport) < 2:  # waiting, poll after poll
            await anyio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    at_cancel = polls(transport)
    await anyio.sleep(WATCH_SECONDS)  # three poll intervals
    assert polls(transport) - at_cancel <= 1, "the abandoned wait kept polling"
