"""An MCP tool's arguments are never stored in a decision input (hunt H2, defect 2).

docs/policies.md ("What is recorded") lists MCP `arguments` among the content whose values are
never stored. The connector flattens a ``tools/call``'s arguments into the parameters of
``mcp.tools.<name>`` (``{**arguments, "tool": name}``), so the listed name `arguments` never
matched and every argument (a patient's diagnosis, an address) was stored for 30 days and
shown to any viewer by ``GET /api/v1/traffic``. Now every parameter of an ``mcp.tools.*``
action but ``tool`` is withheld (its name kept under ``"w"``: a replay counts it partial),
on the gateway and for SDK actions of provider ``mcp``, in a batch's members too, and a
record an earlier version stored is shown without them. Approvers still see what they
approve (docs/mcp.md): the approval keeps the whole action.

The gateway's own record is checked through a real gateway in
``tests/proxy/test_mcp_gateway_h7.py``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from agentfirewall.actions import parse_action_spec
from agentfirewall.connectors import HttpRequest, get_connector
from agentfirewall.policy import EvaluationContext
from agentfirewall.policy.record import record_input, restore_input, shown_input
from agentfirewall_server.store.schema import action_requests
from tests.fuzzscale import examples
from tests.server.conftest import Harness

MCP = get_connector("mcp")
NOW = datetime(2026, 12, 7, tzinfo=UTC)
MEMO = "Patient Jane Roe, diagnosis: HIV positive"
EMAIL = "jane.roe@example.org"
ARGUMENTS = {"to": EMAIL, "memo": MEMO, "amount": 5}


def _context(mode: str = "proxy", connector: str | None = "mcp") -> EvaluationContext:
    return EvaluationContext(agent="Bot", mode=mode, now=NOW, connector=connector, risk="medium")


def _post(message: object) -> HttpRequest:
    body = json.dumps(message).encode()
    headers = (("Content-Type", "application/json"),)
    return HttpRequest.from_url("POST", "https://mcp.example.com/mcp", headers=headers, body=body)


def _call(name: str, arguments: object, id_: int = 1) -> dict[str, object]:
    params = {"name": name, "arguments": arguments}
    return {"jsonrpc": "2.0", "id": id_, "method": "tools/call", "params": params}


#: argument values the test can find again: unique, of every JSON kind a value may be
_MARKS = st.integers(0, 10**6).map(lambda n: f"arg-value-{n:07d}")
_VALUES = _MARKS | _MARKS.map(lambda m: [m]) | _MARKS.map(lambda m: {"inner": m})
_NAMES = st.sampled_from(["to", "memo", "query", "path", "n", "tool_input", "x", "Tool", "id"])


@settings(max_examples=examples(100), deadline=None)
@given(
    st.sampled_from(["transfer", "read_file", "list", "Delete-Repo", "search"]),
    st.dictionaries(_NAMES, _VALUES, max_size=5),
    st.booleans(),
)
def test_no_argument_of_a_tool_call_is_recorded(
    tool: str, arguments: dict[str, object], batched: bool
) -> None:
    """A tool call alone, or a member of a batch beside another call (each decided and
    recorded under ``"x"``): only the tool's name is kept; every argument's name is listed
    as withheld."""
    messages: object = _call(tool, arguments)
    if batched:
        messages = [_call("ping", {"note": "arg-value-9999999"}, 2), messages]
    parsed = MCP.parse(_post(messages))
    also = [(a.spec, a.risk) for a in parsed.also]
    stored = record_input(parsed.spec, _context(), also=also)
    text = json.dumps(stored)
    assert "arg-value-" not in text, text
    actions = [stored, *stored.get("x", [])]
    for action in actions:
        if action["t"].startswith("mcp.tools."):
            assert action.get("p") == {"tool": action["p"]["tool"]}
    prefix = "x1." if batched else ""  # (the batch first, its members after it)
    assert {f"{prefix}{name}" for name in arguments} <= set(stored.get("w", []))


def test_sdk_actions_of_provider_mcp_are_recorded_alike() -> None:
    spec = parse_action_spec({"type": "mcp.tools.transfer", "resource": {"provider": "mcp"},
                              "parameters": {**ARGUMENTS, "tool": "transfer"}})  # fmt: skip
    stored = record_input(spec, _context("sdk", connector=None))
    assert (stored["p"], sorted(stored["w"])) == ({"tool": "transfer"}, ["amount", "memo", "to"])
    replayed, _ = restore_input(stored, "Bot")
    assert replayed.parameters == {"tool": "transfer"}  # (a rule on `memo` sees it absent)


def test_the_other_ways_arguments_reach_a_message() -> None:
    """A prompt's `arguments`, a completion's `argument` and its `context`'s arguments."""
    messages = [
        {"jsonrpc": "2.0", "id": 1, "method": "prompts/get",
         "params": {"name": "summary", "arguments": {"patient": MEMO}}},
        {"jsonrpc": "2.0", "id": 2, "method": "completion/complete",
         "params": {"ref": {"type": "ref/prompt", "name": "summary"},
                    "argument": {"name": "patient", "value": MEMO},
                    "context": {"arguments": {"email": EMAIL}}}},
    ]  # fmt: skip
    for message in messages:
        parsed = MCP.parse(_post(message))
        stored = json.dumps(record_input(parsed.spec, _context()))
        assert MEMO not in stored, stored
        assert EMAIL not in stored, stored


def test_a_record_stored_before_is_shown_without_arguments() -> None:
    """What an earlier version stored (the arguments in ``"p"``, in a batch's ``"x"`` too)
    is shown as it would be recorded now."""
    earlier = {
        "v": 1, "t": "mcp.rpc.batch", "m": "proxy",
        "r": {"provider": "mcp", "target": "mcp.example.com"},
        "p": {"actions": ["mcp.tools.transfer", "mcp.tools.search"]},
        "x": [{"t": "mcp.tools.transfer", "k": "medium", "p": {**ARGUMENTS, "tool": "transfer"}},
              {"t": "mcp.tools.search", "k": "low", "p": {"q": EMAIL, "tool": "search"}}],
        "w": ["members"], "c": "mcp", "l": "full_enforce", "k": "medium", "n": 1.0,
    }  # fmt: skip
    shown = shown_input(earlier)
    assert MEMO not in json.dumps(shown)
    assert EMAIL not in json.dumps(shown)
    assert [m["p"] for m in shown["x"]] == [{"tool": "transfer"}, {"tool": "search"}]
    assert shown["p"] == earlier["p"]  # (the batch's list of actions is no argument)
    assert sorted(shown["w"]) == ["members", "x0.amount", "x0.memo", "x0.to", "x1.q"]
    single = {"v": 1, "t": "mcp.tools.transfer", "m": "sdk", "r": {"provider": "mcp"},
              "p": {**ARGUMENTS, "tool": "transfer"}, "l": "full_enforce", "n": 1.0}  # fmt: skip
    assert shown_input(single)["p"] == {"tool": "transfer"}


def test_other_connectors_keep_their_parameters() -> None:
    """Only MCP tool calls: a GitHub action's parameters are knobs a replay reads."""
    spec = parse_action_spec({"type": "github.pr.merge", "resource": {"provider": "github"},
                              "parameters": {"pull_number": 1, "base": "main"}})  # fmt: skip
    stored = record_input(spec, _context(connector="github"))
    assert stored["p"] == {"pull_number": 1, "base": "main"}
    assert "w" not in stored


HOLD = """\
name: transfers-need-a-human
scope: {action_types: ["mcp.tools.transfer"]}
rules:
  - {name: hold, conditions: [{field: action_spec.type, operator: equals,
     value: mcp.tools.transfer}], decision: require_approval}
"""


def test_the_control_plane_keeps_no_argument_but_the_approver_sees_them(
    harness: Harness,
) -> None:
    """An SDK action of provider mcp, on SQLite and PostgreSQL: its stored decision input
    and the traffic log hold no argument; the approval it waits on shows them all."""
    h = harness
    assert h.admin("POST", "/v1/policies", json={"document": HOLD}).status_code == 201
    key = h.create_agent("Bot", sdk_default="allow")
    spec = {"type": "mcp.tools.transfer", "resource": {"provider": "mcp", "target": "payments"},
            "parameters": {**ARGUMENTS, "tool": "transfer"}}  # fmt: skip
    answer = h.agent(key, "POST", "/v1/actions", json={"action_spec": spec})
    assert answer.json()["status"] == "pending_approval", answer.text

    stored = h.state.db.read_sync(
        lambda c: c.execute(select(action_requests.c.decision_input)).scalar_one()
    )
    assert MEMO not in stored, stored
    assert EMAIL not in stored, stored
    assert json.loads(stored)["p"] == {"tool": "transfer"}

    (approval,) = h.admin("GET", "/v1/approvals?status=pending").json()["approvals"]
    assert approval["action_spec"]["parameters"]["memo"] == MEMO  # what the approver decides


def test_an_earlier_gateways_record_is_listed_without_arguments(harness: Harness) -> None:
    """A gateway of an earlier version ships a tool call's arguments in its record's input:
    ``GET /api/v1/traffic`` shows that input as it would be recorded now."""
    earlier = {"v": 1, "t": "mcp.tools.transfer", "m": "proxy",
               "r": {"provider": "mcp", "target": "mcp.example.com"},
               "p": {**ARGUMENTS, "tool": "transfer"}, "c": "mcp", "l": "full_enforce",
               "k": "medium", "n": 1796601600.0}  # fmt: skip
    record = {"request_id": "r1", "agent": "Bot", "connector": "mcp",
              "action": "mcp.tools.transfer", "method": "POST", "host": "mcp.example.com",
              "path": "/mcp", "decision": "allow", "would_outcome": None, "status_code": 200,
              "latency_ms": 1.5, "bytes_in": 10, "bytes_out": 20, "reason": "ok",
              "input": earlier, "created_at": "2026-12-07T09:00:00.000000Z"}  # fmt: skip
    sent = harness.gateway("POST", "/v1/gateway/traffic", json={"records": [record]})
    assert sent.json() == {"accepted": 1}
    listed = harness.admin("GET", "/v1/traffic")
    (row,) = listed.json()["traffic"]
    assert (row["input"]["p"], sorted(row["input"]["w"])) == (
        {"tool": "transfer"}, ["amount", "memo", "to"],
    )  # fmt: skip
    assert MEMO not in listed.text
    assert EMAIL not in listed.text
