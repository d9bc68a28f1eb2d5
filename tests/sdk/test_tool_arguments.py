"""A guarded LangChain tool runs with exactly the arguments the firewall decided on, and
the wrapped tool behaves as it does unwrapped (in-process firewall: no server needed)."""

from __future__ import annotations

import math
import sqlite3
import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from fractions import Fraction
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
from pydantic.v1 import BaseModel as BaseModelV1

from agentfirewall import ActionSpecError
from agentfirewall.integrations._arguments import snapshot
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


class LimitsV1(BaseModelV1):
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
        (Fraction(40001, 2), "20000.5"),  # not "40001/2"
        (Fraction(10**6), 1000000),
        (Fraction(1, 3), "0." + "3" * 100),  # (no decimal ends it: as many digits as a rule reads)
        (LimitsV1(amount=Decimal("1E+4")), {"amount": 10000}),  # a v1 model, not its str()
        (deque([Fraction(1, 4)]), ["0.25"]),  # not "deque([Fraction(1, 4)])"
    ],
)
def test_numbers_are_sent_as_numbers_a_rule_compares(value: object, sent: object) -> None:
    _, data = snapshot({"value": value})
    assert data["value"] == sent


class DecimalRefund(BaseModel):
    amount: Decimal


class FractionRefund(BaseModel):
    amount: Fraction


@pytest.mark.parametrize("schema", [DecimalRefund, FractionRefund])
def test_a_decimal_or_a_fraction_meets_the_amount_cap(
    schema: type[DecimalRefund | FractionRefund],
) -> None:
    """Decimal("1E+4") was sent as "1E+4", Fraction("20000.5") as "40001/2": no number to a
    rule, so the cap's deny never matched."""
    fw = FirewallTransport(policies=[CAP])
    ran: list[object] = []

    def refund(amount: object) -> str:
        ran.append(amount)
        return "refunded"

    made = StructuredTool.from_function(refund, args_schema=schema, description="Refund.")
    with fw.client() as client:
        [guarded] = guard_tools([made], client)
        for given in ("1e4", "1E+4", 1e4, "10000.5", "5000.000001"):
            assert guarded.invoke({"amount": given}) == "Action blocked by policy: too big", given
        assert guarded.invoke({"amount": "4.9999e3"}) == "refunded"
    assert ran == [schema(amount="4.9999e3").amount]


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


class PayoutV1(BaseModelV1):  # (LangChain takes v1 models too)
    amount: int
    iban: str


class Handle:
    """A client, say: it cannot be copied; its text holds a secret."""

    def __init__(self) -> None:
        self.lock = threading.Lock()

    def __str__(self) -> str:
        return "Client(key=sk_live_secret)"


class PayoutArgs(BaseModel):
    p: Payout
    meta: dict[str, Any]
    h: Any = None


class PayoutArgsV1(BaseModelV1):
    p: PayoutV1
    meta: dict[str, Any]
    h: Any = None


@pytest.mark.anyio
@pytest.mark.parametrize(("schema", "model"), [(PayoutArgs, Payout), (PayoutArgsV1, PayoutV1)])
async def test_the_tool_runs_with_the_values_decided_not_those_changed_while_held(
    schema: type[PayoutArgs | PayoutArgsV1], model: type[Payout | PayoutV1]
) -> None:
    """0.1.0 ran the tool with the caller's objects: a model or nested dict changed while a
    human looked at the held action ran with values nobody approved. A v1 model was then
    still decided on its str() and not copied. A handle (an object that cannot be copied)
    is passed as it is and sent as its type's name, never its text."""
    fw = FirewallTransport(policies=[HOLD])
    ran: list[tuple[dict[str, Any], dict[str, Any], bool]] = []
    handle = Handle()

    async def payout(p: Any, meta: dict[str, Any], h: Any = None) -> str:
        ran.append(({"amount": p.amount, "iban": p.iban}, meta, h is handle))
        return "paid"

    made = StructuredTool.from_function(coroutine=payout, args_schema=schema, description="Pay.")
    async with fw.async_client() as client:
        [guarded] = guard_tools([made], client, approval_timeout=30)
        order, meta = model(amount=10, iban="DE00 1111"), {"refs": ["r1"]}
        async with anyio.create_task_group() as tg:
            tg.start_soon(guarded.ainvoke, {"p": order, "meta": meta, "h": handle})
            with anyio.fail_after(10):
                while not fw.pending:
                    await anyio.sleep(0.01)
            order.amount, order.iban = 990000, "XX99 ATTACKER"
            meta["refs"].append("r2")
            fw.approve()
    assert fw.actions[0].spec.parameters == {
        "p": {"amount": 10, "iban": "DE00 1111"},
        "meta": {"refs": ["r1"]},
        "h": "<tests.sdk.test_tool_arguments.Handle>",
    }
    assert ran == [({"amount": 10, "iban": "DE00 1111"}, {"refs": ["r1"]}, True)]


class PayV1(BaseModelV1):
    p: PayoutV1


def test_a_nested_v1_model_meets_a_rule_on_its_fields() -> None:
    fw = FirewallTransport(policies=[CAP.replace("parameters.amount", "parameters.p.amount")])
    ran: list[int] = []

    def pay(p: PayoutV1) -> str:
        ran.append(p.amount)
        return "paid"

    made = StructuredTool.from_function(pay, args_schema=PayV1, description="Pay.")
    with fw.client() as client:
        [guarded] = guard_tools([made], client)
        answer = guarded.invoke({"p": {"amount": 990000, "iban": "XX"}})
    assert (answer, ran) == ("Action blocked by policy: too big", [])


CYCLE: list[object] = []
CYCLE.append(CYCLE)


class Opaque:
    """No JSON form, but copied: a rule could not read it."""

    def __init__(self, amount: int) -> None:
        self.amount = amount


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (Opaque(990000), "argument `v.x` is a `tests.sdk.test_tool_arguments.Opaque`, which"),
        (complex(1, 2), "argument `v.x` is a complex number, which no rule compares"),
        (b"\xff\x00", "argument `v.x` is bytes that are not UTF-8 text"),
        (iter([1, 2]), "argument `v.x` is an iterator"),  # (read, it would reach the tool empty)
        ({"rows": [Opaque(1)]}, r"argument `v.x.rows\[0\]` is a `tests"),
        (CYCLE, "nest too deep"),
    ],
)
def test_an_argument_the_firewall_cannot_read_is_refused(value: object, error: str) -> None:
    """0.1.0 decided on such an argument's str() and passed it uncopied: a value a rule
    looks for hid in a string, and could change while the action was held."""
    with pytest.raises(ActionSpecError, match=error) as info:
        snapshot({"v": {"x": value}})
    assert info.value.field == "parameters"


def test_numpy_numbers_are_sent_as_numbers() -> None:
    numpy = pytest.importorskip("numpy")
    _, data = snapshot({"n": numpy.int64(10000), "f": numpy.float32(0.5)})
    assert data == {"n": 10000, "f": 0.5}
    with pytest.raises(ActionSpecError, match=r"`a` is a `numpy\.ndarray`"):
        snapshot({"a": numpy.array([1, 2])})  # (its text cuts values off: [0 0 ... 0])


def test_handles_are_passed_as_they_are() -> None:
    """Objects that cannot be copied (a connection, a lock, a file) are the tool's as
    given, sent as their type's name; a file is not read (though it iterates)."""
    connection, lock = sqlite3.connect(":memory:"), threading.Lock()
    with open(__file__) as file:
        args, data = snapshot({"db": connection, "locks": [lock], "file": file, "in": [file]})
        assert file.tell() == 0
    assert (args["db"], args["locks"][0], args["file"], args["in"][0]) == (
        connection, lock, file, file
    )  # fmt: skip
    assert data == {
        "db": "<sqlite3.Connection>",
        "locks": ["<_thread.lock>"],
        "file": "<_io.TextIOWrapper>",
        "in": ["<_io.TextIOWrapper>"],
    }
    connection.close()


def test_an_iterable_argument_is_decided_and_run_as_a_list() -> None:
    """An `Iterable[int]` argument (validated lazily by pydantic) could not be copied: the
    tool failed; a plain iterator was used up by the decision: the tool got none of it."""
    fw = FirewallTransport(policies=[CAP])
    ran: list[list[int]] = []
    with fw.client() as client:

        @firewall_tool(client)
        def pay_all(amounts: Iterable[int]) -> str:
            """Pay each amount."""
            ran.append(list(amounts))
            return "paid"

        for given in ([10, 20], iter([10, 20])):
            assert pay_all.invoke({"amounts": given}) == "paid"
            assert fw.actions[-1].spec.parameters == {"amounts": [10, 20]}
    assert ran == [[10, 20], [10, 20]]


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
