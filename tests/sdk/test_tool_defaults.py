"""A guarded LangChain tool is decided on what it runs with: an argument the model leaves out
is decided on with the default the tool's function gives it, whatever kind of tool it is.

Before, defaults were filled in only from a pydantic argument schema: a tool class without
one, a JSON-schema dict or a schema that leaves out a defaulted parameter ran with
``force=True`` past a policy denying ``force == true``, when the model left ``force`` out.
"""

from __future__ import annotations

from typing import Annotated, Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from langchain_core.callbacks import CallbackManagerForToolRun
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool, InjectedToolArg, StructuredTool, Tool, tool
from pydantic import BaseModel
from pydantic.v1 import BaseModel as BaseModelV1

from agentfirewall.integrations.langchain import firewall_tool, guard_tools
from agentfirewall.testing import FirewallTransport
from tests.fuzzscale import examples
from tests.sdk.liveagent import LiveAgent

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


def push(branch: str, force: bool = True, note: str | None = None) -> str:
    """Push a branch."""
    RECEIVED.append({"branch": branch, "force": force, "note": note})
    return "pushed"


async def apush(branch: str, force: bool = True, note: str | None = None) -> str:
    """Push a branch."""
    RECEIVED.append({"branch": branch, "force": force, "note": note})
    return "pushed"


def push_with_config(
    branch: str, config: RunnableConfig, force: bool = True, note: str | None = None
) -> str:
    """Push a branch (the caller's config is no argument of the model's)."""
    RECEIVED.append({"branch": branch, "force": force, "note": note})
    return "pushed"


class BranchOnly(BaseModel):
    """A schema that leaves out the function's defaulted parameters."""

    branch: str


class BranchOnlyV1(BaseModelV1):
    branch: str


class Push(BaseTool):
    """A toolkit's tool class without args_schema: LangChain reads its `_run`."""

    name: str = "push_class"
    description: str = "Push a branch."

    def _run(
        self,
        branch: str,
        force: bool = True,
        note: str | None = None,
        run_manager: CallbackManagerForToolRun | None = None,
    ) -> str:
        return push(branch, force, note)


class PushBranchOnly(Push):
    name: str = "push_branch_only"
    args_schema: type[BaseModel] = BranchOnly


class AsyncPush(BaseTool):
    name: str = "push_async_class"
    description: str = "Push a branch."

    def _run(self, branch: str) -> str:
        raise NotImplementedError("use ainvoke")

    async def _arun(self, branch: str, force: bool = True, note: str | None = None) -> str:
        return await apush(branch, force, note)


class PushOptions(BaseTool):
    """A body taking more keyword arguments than it names."""

    name: str = "push_options"
    description: str = "Push a branch."
    args_schema: dict[str, Any] = {
        "type": "object",
        "properties": {"branch": {"type": "string"}, "note": {"type": "string"}},
    }

    def _run(self, branch: str, force: bool = True, **options: Any) -> str:
        RECEIVED.append({"branch": branch, "force": force, **options})
        return "pushed"


JSON_SCHEMA = {
    "type": "object",
    "properties": {
        "branch": {"type": "string"},
        "force": {"type": "boolean", "default": True},
        "note": {"type": "string"},
    },
}

#: Every kind of tool, each running `push` (or `apush`) with defaults the model may leave out.
KINDS: dict[str, BaseTool] = {
    "function": tool(push),
    "async function": StructuredTool.from_function(coroutine=apush, name="apush"),
    "function taking the config": tool(push_with_config),
    "JSON schema": StructuredTool(
        name="push_json", description="Push a branch.", args_schema=JSON_SCHEMA, func=push
    ),
    "schema leaving them out": StructuredTool.from_function(
        push, name="push_subset", args_schema=BranchOnly
    ),
    "v1 schema leaving them out": StructuredTool.from_function(
        push, name="push_subset_v1", args_schema=BranchOnlyV1
    ),
    "async function, schema leaving them out": StructuredTool.from_function(
        coroutine=apush, name="apush_subset", args_schema=BranchOnly
    ),
    "class without a schema": Push(),
    "class whose schema leaves them out": PushBranchOnly(),
    "async-only class": AsyncPush(),
    "class taking **options": PushOptions(),
}
ASYNC_ONLY = {"async function", "async function, schema leaving them out", "async-only class"}
#: The model sees only `branch` (the schema leaves the defaulted parameters out).
BRANCH_ONLY = {
    "schema leaving them out",
    "v1 schema leaving them out",
    "async function, schema leaving them out",
    "class whose schema leaves them out",
}

BRANCH = st.text("abcdef/-", min_size=1, max_size=8)
CALLS = st.fixed_dictionaries(
    {"branch": BRANCH},
    optional={"force": st.booleans(), "note": st.none() | st.text("xyz", max_size=4)},
)


def run(guarded: BaseTool, call: dict[str, Any] | str, asynchronous: bool) -> Any:
    if asynchronous:
        return anyio.run(guarded.ainvoke, call)
    return guarded.invoke(call)


@pytest.mark.parametrize("kind", list(KINDS))
@settings(max_examples=examples(25), deadline=None)
@given(call=CALLS, asynchronous=st.booleans())
def test_what_the_firewall_decides_on_is_what_the_tool_runs_with(
    kind: str, call: dict[str, Any], asynchronous: bool
) -> None:
    """Before: {'branch': 'a'} decided, {'branch': 'a', 'force': True, 'note': None} run."""
    inner = KINDS[kind]
    if kind in BRANCH_ONLY:
        call = {"branch": call["branch"]}  # (the model sees no other argument)
    firewall = FirewallTransport()
    RECEIVED.clear()
    with firewall.client() as client:
        [guarded] = guard_tools([inner], client)
        assert run(guarded, call, asynchronous or kind in ASYNC_ONLY) == "pushed"
    [decided] = [action.spec.parameters for action in firewall.actions]
    assert [decided] == RECEIVED


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_default_the_model_leaves_out_is_decided_on(kind: str) -> None:
    """The tool ran `push(branch="main", force=True)` past a policy denying force pushes."""
    firewall = FirewallTransport(policies=[NO_FORCE])
    RECEIVED.clear()
    with firewall.client() as client:
        [guarded] = guard_tools([KINDS[kind]], client)
        if kind not in ASYNC_ONLY:
            assert guarded.invoke({"branch": "main"}) == DENIED
        assert anyio.run(guarded.ainvoke, {"branch": "main"}) == DENIED
    assert RECEIVED == []
    assert {action.spec.parameters["force"] for action in firewall.actions} == {True}


def push_one(branch: str, force: bool = True) -> str:
    """A `Tool`'s function: its one input is passed positionally."""
    RECEIVED.append({"branch": branch, "force": force})
    return "pushed"


@settings(max_examples=examples(25), deadline=None)
@given(branch=BRANCH, asynchronous=st.booleans())
def test_a_tool_of_one_input_is_decided_on_with_its_functions_defaults(
    branch: str, asynchronous: bool
) -> None:
    """The input keeps its name (`input`, or the schema's one field); the function's other
    parameters are decided on under theirs."""
    firewall = FirewallTransport()
    RECEIVED.clear()
    simple = Tool(name="push_simple", func=push_one, description="Push a branch.")
    with firewall.client() as client:
        [guarded] = guard_tools([simple], client)
        assert run(guarded, branch, asynchronous) == "pushed"
    [decided] = [action.spec.parameters for action in firewall.actions]
    assert decided == {"input": branch, "force": True}
    assert [{"branch": branch, "force": True}] == RECEIVED


class InjectedState(InjectedToolArg):
    """LangGraph's `InjectedState`, as it defines it."""


def test_injected_arguments_stay_out_whatever_their_default() -> None:
    """An injected argument with a default is no argument of the model's: not decided on."""

    @tool
    def lookup(
        order_id: str,
        state: Annotated[dict[str, Any] | None, InjectedState] = None,
        limit: int = 5,
    ) -> str:
        """Look up an order."""
        return f"{order_id} {limit} {state}"

    firewall = FirewallTransport()
    with firewall.client() as client:
        [guarded] = guard_tools([lookup], client)
        assert guarded.invoke({"order_id": "o1", "state": {"m": 1}}) == "o1 5 {'m': 1}"
        assert guarded.invoke({"order_id": "o2"}) == "o2 5 None"
    assert [a.spec.parameters for a in firewall.actions] == [
        {"order_id": "o1", "limit": 5},
        {"order_id": "o2", "limit": 5},
    ]


def test_firewall_tool_decides_on_the_functions_defaults() -> None:
    firewall = FirewallTransport(policies=[NO_FORCE])
    RECEIVED.clear()
    with firewall.client() as client:
        guarded = firewall_tool(client, action_type="git.push")(push)
        assert guarded.invoke({"branch": "main"}) == DENIED
        assert guarded.invoke({"branch": "main", "force": False}) == "pushed"
    assert RECEIVED == [{"branch": "main", "force": False, "note": None}]
    assert [a.spec.parameters for a in firewall.actions] == [
        {"branch": "main", "force": True, "note": None},
        {"branch": "main", "force": False, "note": None},
    ]


def test_arguments_the_function_cannot_take_are_refused_before_asking() -> None:
    """As unwrapped (the function's TypeError), but before an action is recorded."""
    firewall = FirewallTransport()
    with firewall.client() as client:
        [guarded] = guard_tools([KINDS["JSON schema"]], client)
        with pytest.raises(TypeError, match="tool `push_json` cannot take these arguments"):
            guarded.invoke({"branch": "main", "colour": "red"})
    assert firewall.actions == []


def test_a_default_the_model_leaves_out_is_decided_on_by_the_server(agent: LiveAgent) -> None:
    agent.policy(
        "  - name: force\n"
        "    conditions: {field: action_spec.parameters.force, operator: equals, value: true}\n"
        "    decision: deny\n"
        "    reason: force pushes are denied\n"
    )
    RECEIVED.clear()
    [guarded] = guard_tools([Push()], agent.firewall())
    assert guarded.invoke({"branch": "main"}) == DENIED
    assert guarded.invoke({"branch": "main", "force": False}) == "pushed"
    assert RECEIVED == [{"branch": "main", "force": False, "note": None}]
