"""A guarded CrewAI tool is decided on what it runs with (crewai extra): a parameter its
argument schema leaves out is decided on with the default the tool's function gives it.

CrewAI fills in the defaults of the schema's fields (the one it infers from a function or
``_run`` has every parameter), but a schema of the author's that leaves out a defaulted
parameter made the tool run ``push(branch="main", force=True)`` past a policy denying
``force == true``.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("crewai")

from crewai.tools import BaseTool, tool
from crewai.tools.base_tool import Tool
from pydantic import BaseModel

from agentfirewall.integrations.crewai import firewall_tool, guard_tools
from agentfirewall.testing import FirewallTransport
from tests.fuzzscale import examples
from tests.sdk.scripted_crewai import CREWAI_WARNINGS, QUIET_ENV

pytestmark = [pytest.mark.crewai, *CREWAI_WARNINGS]

NO_FORCE = """
name: no-force
rules:
  - name: force
    conditions: {field: action_spec.parameters.force, operator: equals, value: true}
    decision: deny
    reason: force pushes are denied
"""
DENIED = "Action blocked by policy: force pushes are denied"

#: What each tool's function was called with, in order.
RECEIVED: list[dict[str, Any]] = []


@pytest.fixture(autouse=True)
def quiet_crewai(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in QUIET_ENV.items():
        monkeypatch.setenv(name, value)


def push(branch: str, force: bool = True, note: str | None = None) -> str:
    """Push a branch."""
    RECEIVED.append({"branch": branch, "force": force, "note": note})
    return "pushed"


async def apush(branch: str, force: bool = True, note: str | None = None) -> str:
    """Push a branch."""
    RECEIVED.append({"branch": branch, "force": force, "note": note})
    return "pushed"


class BranchOnly(BaseModel):
    """A schema that leaves out the function's defaulted parameters."""

    branch: str


class Push(BaseTool):  # type: ignore[misc]
    """A tool class without args_schema: CrewAI infers one from its `_run`."""

    name: str = "push_class"
    description: str = "Push a branch."

    def _run(self, branch: str, force: bool = True, note: str | None = None) -> str:
        return push(branch, force, note)


class PushBranchOnly(Push):
    name: str = "push_branch_only"
    args_schema: type[BaseModel] = BranchOnly


class AsyncPushBranchOnly(PushBranchOnly):
    name: str = "push_async_branch_only"

    async def _arun(self, branch: str, force: bool = True, note: str | None = None) -> str:
        return await apush(branch, force, note)


def kinds() -> dict[str, BaseTool]:
    """Every kind of tool, each running `push` (or `apush`) with defaults it may not be given."""
    return {
        "function": tool("push")(push),
        "async function": tool("apush")(apush),
        "function, schema leaving them out": Tool(
            name="push_subset", description="Push a branch.", func=push, args_schema=BranchOnly
        ),
        "class without a schema": Push(),
        "class whose schema leaves them out": PushBranchOnly(),
        "async class whose schema leaves them out": AsyncPushBranchOnly(),
    }


KINDS = list(kinds())
BRANCH_ONLY = {kind for kind in KINDS if "leav" in kind}
CALLS = st.fixed_dictionaries(
    {"branch": st.text("abcdef/-", min_size=1, max_size=8)},
    optional={"force": st.booleans(), "note": st.none() | st.text("xyz", max_size=4)},
)
HOW = st.sampled_from(["run", "arun", "the structured tool an agent calls"])


def call(guarded: Any, how: str, arguments: dict[str, Any]) -> Any:
    if how == "run":
        return guarded.run(**arguments)
    if how == "arun":
        return anyio.run(lambda: guarded.arun(**arguments))
    return guarded.to_structured_tool().invoke(arguments)


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=examples(20), deadline=None)
@given(arguments=CALLS, how=HOW)
def test_what_the_firewall_decides_on_is_what_the_tool_runs_with(
    kind: str, arguments: dict[str, Any], how: str
) -> None:
    """Before: {'branch': 'a'} decided, {'branch': 'a', 'force': True, 'note': None} run."""
    if kind in BRANCH_ONLY:
        arguments = {"branch": arguments["branch"]}  # (the agent sees no other argument)
    firewall = FirewallTransport()
    RECEIVED.clear()
    with firewall.client() as client:
        [guarded] = guard_tools([kinds()[kind]], client)
        assert call(guarded, how, arguments) == "pushed"
    [decided] = [action.spec.parameters for action in firewall.actions]
    assert [decided] == RECEIVED


@pytest.mark.parametrize("kind", sorted(BRANCH_ONLY))
def test_a_default_the_schema_leaves_out_is_decided_on(kind: str) -> None:
    firewall = FirewallTransport(policies=[NO_FORCE])
    RECEIVED.clear()
    with firewall.client() as client:
        [guarded] = guard_tools([kinds()[kind]], client)
        for how in ("run", "arun", "the structured tool an agent calls"):
            assert call(guarded, how, {"branch": "main"}) == DENIED
        assert guarded.run("main") == DENIED  # (positional: bound to the schema's fields)
    assert RECEIVED == []
    assert [action.spec.parameters for action in firewall.actions] == [
        {"branch": "main", "force": True, "note": None}
    ] * 4


def test_firewall_tool_decides_on_the_functions_defaults() -> None:
    firewall = FirewallTransport(policies=[NO_FORCE])
    RECEIVED.clear()
    with firewall.client() as client:
        guarded = firewall_tool(client, "push", action_type="git.push")(push)
        assert guarded.run(branch="main") == DENIED
        assert guarded.run(branch="main", force=False) == "pushed"
    assert RECEIVED == [{"branch": "main", "force": False, "note": None}]
