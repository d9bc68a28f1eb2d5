"""A guarded LangChain tool runs with exactly the arguments the firewall decided on, and
the wrapped tool behaves as it does unwrapped (in-process firewall: no server needed)."""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Annotated, Any

import anyio
import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import ToolMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import (
    BaseTool,
    InjectedToolCallId,
    StructuredTool,
    Tool,
    ToolException,
    tool,
)
from pydantic import BaseModel, ConfigDict

from agentfirewall import ActionSpecError
from agentfirewall.integrations._common import snapshot
from agentfirewall.integrations.langchain import firewall_tool, guard_tools
from agentfirewall.testing import FirewallTransport
from tests.sdk.toolargs import CAP, Dollars

HOLD = """
name: hold
rules:
  - name: human
    conditions: {field: action_spec.type, operator: matches, value: "^langchain"}
    decision: require_approval
    reason: a human looks first
"""


class PayTool(BaseTool):
    """A tool class of its own (a toolkit's), not made from a function."""

    name: str = "pay_class"
    description: str = "Pay."
    args_schema: type[BaseModel] = Dollars
    ran: Any

    def _run(self, amount: int, to: str) -> str:
        self.ran.append(amount)
        return "paid"


def dollar_tools(ran: list[int]) -> list[BaseTool]:
    """The same tool as a function, an `async def` and a class of its own."""

    def pay(amount: int, to: str) -> str:
        ran.append(amount)
        return "paid"

    async def apay(amount: int, to: str) -> str:
        ran.append(amount)
        return "paid"

    return [
        StructuredTool.from_function(pay, args_schema=Dollars, name="pay", description="Pay."),
        PayTool(ran=ran),
        StructuredTool.from_function(
            coroutine=apay, args_schema=Dollars, name="apay", description="Pay."
        ),
    ]


DECIDED = {"amount": 4000, "to": "acct_1"}  # $40 in cents


def test_the_tool_runs_with_the_arguments_validated_once() -> None:
    """0.1.0 validated the input three times and ran the tool on the third: $40 was decided
    as 4,000 cents and sent as 400,000; $60 ran as 600,000 cents past a 5,000 cap."""
    fw = FirewallTransport(policies=[CAP])
    ran: list[int] = []
    with fw.client() as client:
        for guarded in guard_tools(dollar_tools(ran)[:2], client):  # (not the `async def`)
            assert guarded.invoke({"amount": 40, "to": "acct_1"}) == "paid"
            assert fw.actions[-1].spec.parameters == DECIDED
            assert guarded.invoke({"amount": 60, "to": "a"}) == "Action blocked by policy: too big"
    assert ran == [4000, 4000]


@pytest.mark.anyio
async def test_the_tool_runs_with_the_arguments_validated_once_under_ainvoke() -> None:
    fw = FirewallTransport(policies=[CAP])
    ran: list[int] = []
    async with fw.async_client() as client:
        for guarded in guard_tools(dollar_tools(ran), client):
            assert await guarded.ainvoke({"amount": 40, "to": "acct_1"}) == "paid"
            assert fw.actions[-1].spec.parameters == DECIDED
            denied = await guarded.ainvoke({"amount": 60, "to": "a"})
            assert denied == "Action blocked by policy: too big"
    assert ran == [4000, 4000, 4000]


class Limits(BaseModel):
    model_config = ConfigDict(allow_inf_nan=True)
    amount: Decimal = Decimal(0)
    ttl: timedelta = timedelta(0)


@dataclass
class Row:
    amount: Decimal


@pytest.mark.parametrize(
    ("value", "sent"),
    [
        (Decimal("1E+4"), 10000),  # pydantic writes "1E+4": no number to a rule
        (Decimal("10000.00"), 10000),
        (Decimal("0.25"), "0.25"),  # a plain decimal string, compared exactly
        (Decimal("1E-5"), "0.00001"),
        (Decimal("-2.5E+3"), -2500),
        (Decimal("1E+150"), 1e150),  # past the 100 digits a rule reads: a float
        (Decimal("1E-150"), 1e-150),
        (Decimal("1E+999999999"), math.inf),  # (never built as an int: refused, see below)
        (timedelta(hours=2), 7200),  # not "PT2H"
        (timedelta(seconds=1, microseconds=500000), "1.5"),
        (Limits(amount=Decimal("1E+4"), ttl=timedelta(days=1)), {"amount": 10000, "ttl": 86400}),
        (Row(Decimal("1E+4")), {"amount": 10000}),
        ([Decimal("1E+1")], [10]),
    ],
)
def test_numbers_are_sent_as_numbers_a_rule_compares(value: object, sent: object) -> None:
    _, data = snapshot({"value": value})
    assert data["value"] == sent


def test_a_decimal_written_with_an_exponent_meets_the_amount_cap() -> None:
    fw = FirewallTransport(policies=[CAP])
    ran: list[Decimal] = []
    with fw.client() as client:

        @firewall_tool(client, action_type="payment.refund.create")
        def refund(amount: Decimal) -> str:
            """Refund."""
            ran.append(amount)
            return "refunded"

        for given in ("1e4", "1E+4", 1e4, "10000.5", "5000.000001"):
            assert refund.invoke({"amount": given}) == "Action blocked by policy: too big", given
        assert refund.invoke({"amount": "4.9999e3"}) == "refunded"
    assert ran == [Decimal("4.9999e3")]


@pytest.mark.parametrize("value", ["NaN", "sNaN", "Infinity", "-Infinity", "1e999999999"])
def test_a_decimal_that_is_no_finite_number_is_refused_before_asking(value: str) -> None:
    fw = FirewallTransport(policies=[CAP])
    ran: list[object] = []

    def limit(amount: Decimal, ttl: timedelta) -> str:
        ran.append(amount)
        return "set"

    with fw.client() as client:
        [guarded] = guard_tools(
            [StructuredTool.from_function(limit, args_schema=Limits, description="Limit.")],
            client,
        )
        with pytest.raises(ActionSpecError, match="amount` must be a finite number"):
            guarded.invoke({"amount": value})
    assert (fw.actions, ran) == ([], [])


class Payout(BaseModel):
    amount: int
    iban: str


class Handle:
    """An object JSON cannot write (a client, a store): decided on by name, passed as is."""

    def __init__(self) -> None:
        self.lock = threading.Lock()  # (cannot be copied)

    def __str__(self) -> str:
        return "handle"


@pytest.mark.anyio
async def test_the_tool_runs_with_the_values_decided_not_those_changed_while_held() -> None:
    """0.1.0 ran the tool with the caller's objects: a model or nested dict changed while a
    human looked at the held action ran with values nobody approved."""
    fw = FirewallTransport(policies=[HOLD])
    ran: list[tuple[dict[str, Any], dict[str, Any], bool]] = []
    handle = Handle()
    async with fw.async_client() as client:

        @firewall_tool(client, approval_timeout=30)
        async def payout(p: Payout, meta: dict[str, Any], h: Any = None) -> str:
            """Pay out."""
            ran.append((p.model_dump(), meta, h is handle))
            return "paid"

        order, meta = Payout(amount=10, iban="DE00 1111"), {"refs": ["r1"]}
        async with anyio.create_task_group() as tg:
            tg.start_soon(payout.ainvoke, {"p": order, "meta": meta, "h": handle})
            with anyio.fail_after(10):
                while not fw.pending:
                    await anyio.sleep(0.01)
            order.amount, order.iban = 990000, "XX99 ATTACKER"
            meta["refs"].append("r2")
            fw.approve()
    assert fw.actions[0].spec.parameters == {
        "p": {"amount": 10, "iban": "DE00 1111"},
        "meta": {"refs": ["r1"]},
        "h": "handle",
    }
    assert ran == [({"amount": 10, "iban": "DE00 1111"}, {"refs": ["r1"]}, True)]


def call(name: str, **args: Any) -> dict[str, Any]:
    return {"name": name, "args": args, "id": "call_1", "type": "tool_call"}


@tool
def lookup(query: str, tool_call_id: Annotated[str, InjectedToolCallId]) -> str:
    """Look something up."""
    return f"{query} (call {tool_call_id})"


@tool(response_format="content_and_artifact")
def search(query: str) -> tuple[str, dict[str, Any]]:
    """Search."""
    return f"found {query}", {"rows": [1, 2, 3]}


def test_tools_langgraph_agents_use_work_as_unwrapped() -> None:
    """0.1.0 recorded an InjectedToolCallId tool's call allowed, then failed to run it, and
    dropped a content_and_artifact tool's artifact."""
    fw = FirewallTransport()
    with fw.client() as client:
        for plain in (lookup, search):
            [guarded] = guard_tools([plain], client)
            got, want = (
                guarded.invoke(call(plain.name, query="q")),
                plain.invoke(call(plain.name, query="q")),
            )
            assert isinstance(got, ToolMessage)
            assert (got.content, got.artifact, got.tool_call_id) == (
                want.content, want.artifact, want.tool_call_id
            )  # fmt: skip
        with pytest.raises(ValueError, match="InjectedToolCallId"):  # not a tool call
            guard_tools([lookup], client)[0].invoke({"query": "q"})
        fw_deny = FirewallTransport(sdk_default="deny")
        with fw_deny.client() as denying:
            refused = guard_tools([search], denying)[0].invoke(call("search", query="q"))
        assert refused.content.startswith("Action blocked by policy")
        assert refused.artifact is None
    assert [(a.spec.type, a.status) for a in fw.actions] == [
        ("langchain.tool.lookup", "allowed"),
        ("langchain.tool.search", "allowed"),
    ]


class Seen(BaseCallbackHandler):
    def __init__(self) -> None:
        self.tools: list[str] = []

    def on_tool_start(self, serialized: dict[str, Any], input_str: str, **kwargs: Any) -> None:
        self.tools.append(serialized["name"])


@pytest.mark.anyio
@pytest.mark.parametrize("client", ["sync", "async"])
async def test_config_callbacks_and_error_handling_reach_the_tool(client: str) -> None:
    """The wrapped tool's body gets the caller's config; the callbacks see one tool run
    (not the guarded one and the wrapped one); the wrapped tool's error handling holds."""
    fw = FirewallTransport()
    seen = Seen()
    users: list[object] = []

    def echo(text: str, config: RunnableConfig) -> str:
        users.append(config["configurable"]["user"])
        if text == "fail":
            raise ToolException("no such thing")
        return text

    tools: list[BaseTool] = [
        StructuredTool.from_function(echo, description="Echo.", handle_tool_error=True),
        Tool(name="simple", func=lambda text: f"simple {text}", description="Simple."),
    ]
    config: RunnableConfig = {"callbacks": [seen], "configurable": {"user": "ana"}}
    calls = [(0, {"text": "hi"}), (0, {"text": "fail"}), (1, "x")]
    if client == "sync":
        with fw.client() as firewall:
            guarded = guard_tools(tools, firewall)
            answers = [guarded[i].invoke(given, config) for i, given in calls]
    else:
        async with fw.async_client() as firewall:
            guarded = guard_tools(tools, firewall)
            answers = [await guarded[i].ainvoke(given, config) for i, given in calls]
    assert isinstance(guarded[1], Tool)
    assert answers == ["hi", "no such thing", "simple x"]
    assert users == ["ana", "ana"]
    assert seen.tools == ["echo", "echo", "simple"]  # one tool run each, not two
