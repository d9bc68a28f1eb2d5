"""A guarded LangChain tool looks and runs as the tool it wraps, whatever kind of tool that
is, and the firewall decides on what the model gave (in-process firewall: no server)."""

from __future__ import annotations

from typing import Annotated, Any

import pytest
from langchain_core.messages import ToolMessage
from langchain_core.tools import (
    BaseTool,
    InjectedToolArg,
    InjectedToolCallId,
    StructuredTool,
    Tool,
    tool,
)
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import BaseModel
from pydantic.v1 import BaseModel as BaseModelV1

from agentfirewall import AgentFirewallError
from agentfirewall.integrations.langchain import guard_tools
from agentfirewall.testing import FirewallTransport
from tests.sdk.toolargs import Dollars


class InjectedState(InjectedToolArg):
    """LangGraph's `InjectedState` (langgraph.prebuilt), as it defines it."""


class SearchInput(BaseModel):
    query: str


class SearchInputV1(BaseModelV1):
    query: str


def search(query: str) -> str:
    """Search."""
    return f"results for {query}"


class Weather(BaseTool):
    """A toolkit's tool class with no args_schema: LangChain reads its `_run`."""

    name: str = "weather"
    description: str = "Weather for a city."

    def _run(self, city: str, days: int = 1) -> str:
        return f"{city}: sunny for {days} day(s)"


class AsyncOnly(BaseTool):
    name: str = "async_only"
    description: str = "Runs only asynchronously."

    def _run(self, text: str) -> str:
        """No sync body."""
        raise NotImplementedError("use ainvoke")

    async def _arun(self, text: str) -> str:
        return f"async {text}"


class Both(AsyncOnly):
    def _run(self, text: str) -> str:
        if not text:
            raise NotImplementedError("no empty text")
        return f"sync {text}"


@tool
def lookup_order(
    order_id: str,
    state: Annotated[dict[str, Any], InjectedState],
    call_id: Annotated[str, InjectedToolCallId],
) -> str:
    """Look up an order."""
    return f"order {order_id} ({len(state['messages'])} messages, call {call_id})"


class Lookup(BaseTool):
    """The same tool as a class with no args_schema (LangChain reads `_run`)."""

    name: str = "lookup_order"
    description: str = "Look up an order."

    def _run(self, order_id: str, state: Annotated[dict[str, Any], InjectedState]) -> str:
        return f"order {order_id} ({len(state['messages'])} messages)"


@tool(response_format="content_and_artifact")
def rows(query: str) -> tuple[str, list[int]]:
    """Search rows."""
    return query, [1, 2]


TOOLS: dict[str, BaseTool] = {
    "function": tool(search),
    "injected": lookup_order,
    "artifact": rows,
    "v2 schema": StructuredTool.from_function(
        lambda amount, to: "paid", name="pay", description="Pay.", args_schema=Dollars
    ),
    "v1 schema": StructuredTool.from_function(
        search, name="search_v1", description="Search.", args_schema=SearchInputV1
    ),
    "JSON schema": StructuredTool(
        name="search_json",
        description="Search.",
        args_schema={"type": "object", "properties": {"query": {"type": "string"}}},
        func=search,
    ),
    "Tool": Tool(name="simple", func=search, description="Search."),
    "Tool with a schema": Tool(
        name="search_tool", func=search, description="Search.", args_schema=SearchInput
    ),
    "class without a schema": Weather(),
    "class with injected arguments": Lookup(),
    "async-only class": AsyncOnly(),
}


@pytest.mark.parametrize("kind", list(TOOLS))
def test_the_model_sees_a_guarded_tool_as_the_tool_it_wraps(kind: str) -> None:
    """A class without args_schema showed the model GuardedTool._run's `config`, `args`
    and `kwargs` instead of its own arguments."""
    inner = TOOLS[kind]
    with FirewallTransport().client() as client:
        [guarded] = guard_tools([inner], client)
    assert convert_to_openai_tool(guarded) == convert_to_openai_tool(inner)
    assert guarded.args == inner.args


@pytest.mark.anyio
async def test_a_tool_with_an_argument_schema_keeps_tools_calling_rule() -> None:
    """A `Tool` given an args_schema was called with its field as a keyword, after the
    action was recorded allowed: `search() got an unexpected keyword argument 'query'`."""
    fw = FirewallTransport(
        policies=[
            "name: no-secrets\n"
            "rules:\n"
            "  - name: secrets\n"
            "    conditions: {field: action_spec.parameters.query, operator: contains,"
            " value: secret}\n"
            "    decision: deny\n"
            "    reason: no searching for secrets\n"
        ]
    )
    with fw.client() as client:
        [guarded] = guard_tools([TOOLS["Tool with a schema"]], client)
        assert isinstance(guarded, Tool)
        assert guarded.invoke({"query": "cats"}) == "results for cats"
        assert guarded.invoke("dogs") == "results for dogs"
        assert await guarded.ainvoke("owls") == "results for owls"
        assert guarded.invoke("the secret") == "Action blocked by policy: no searching for secrets"
    assert [a.spec.parameters for a in fw.actions] == [
        {"query": "cats"},  # (the name the model sees)
        {"query": "dogs"},
        {"query": "owls"},
        {"query": "the secret"},
    ]


STATE = {"messages": ["my card is 4111 1111 1111 1111", "thanks"]}


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["injected", "class with injected arguments"])
async def test_injected_arguments_reach_the_tool_but_not_the_firewall(kind: str) -> None:
    """LangGraph's ToolNode puts the graph's state in the tool call's arguments: it was
    sent to the firewall (a conversation in the audit log, and past 1 MiB every call
    failed)."""
    fw = FirewallTransport()
    call = {
        "name": "lookup_order",
        "args": {"order_id": "o1", "state": STATE},
        "id": "c1",
        "type": "tool_call",
    }
    with fw.client() as client:
        [guarded] = guard_tools([TOOLS[kind]], client)
        answers = [guarded.invoke(call), await guarded.ainvoke(call)]
    want = TOOLS[kind].invoke(call)
    for answer in answers:
        assert isinstance(answer, ToolMessage)
        assert (answer.content, answer.tool_call_id) == (want.content, "c1")
    assert [a.spec.parameters for a in fw.actions] == [{"order_id": "o1"}] * 2


@pytest.mark.anyio
async def test_an_async_only_tool_class_called_synchronously_is_refused_before_asking() -> None:
    """It was recorded allowed, then raised NotImplementedError."""
    fw = FirewallTransport()
    with fw.client() as client:
        only, both = guard_tools([AsyncOnly(), Both()], client)
        with pytest.raises(AgentFirewallError, match="call it with `ainvoke`"):
            only.invoke({"text": "x"})
        assert fw.actions == []
        assert await only.ainvoke({"text": "x"}) == "async x"
        assert both.invoke({"text": "y"}) == "sync y"  # (a `_run` that can run, runs)
    assert len(fw.actions) == 2
