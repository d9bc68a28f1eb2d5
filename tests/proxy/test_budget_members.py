"""A request of several actions spends what each of them spends alone (DESIGN.md section 7,
guarantee 1: fail closed).

Budgets matched only the name a request was decided as: a JSON-RPC batch is
``mcp.rpc.batch``, so five ``transfer`` calls in one batch passed a spent ``count`` and
``sum`` budget on ``mcp.tools.transfer`` and counted nothing, and a GitHub GraphQL document
of three mutations counted once. Now the gateway and ``tf mcp wrap`` measure every action
(``budgets.performed``), summed per budget, whichever action the request is decided or held
as, and send each to the control plane (``members``), which measures alike. The live run:
``test_budget_batches_live.py``.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentfirewall.budgets import BudgetDef, Refused, compile_budget, covering, covering_all
from agentfirewall.connectors import HttpRequest, ParsedAction, get_connector
from agentfirewall.connectors.github_graphql import MAX_ACTIONS
from agentfirewall.connectors.mcp import CONNECTOR as MCP
from agentfirewall.errors import ConnectorError
from agentfirewall_proxy.budgets import (
    Budgets,
    _covered,
    _local_amounts,
    compile_budgets,
    decided_as,
    performed,
)
from agentfirewall_proxy.control import normalize_snapshot
from agentfirewall_proxy.flow import Flow
from agentfirewall_proxy.mcpwrap.gate import Gate, server_entry
from agentfirewall_proxy.snapshot import CompiledConfig, compile_snapshot
from tests.batchhold import transfer
from tests.fuzzscale import examples
from tests.proxy.support import connector, rule, snapshot

BUDGETS: list[dict[str, Any]] = [
    {"name": "transfers", "connector": "mcp", "action": "mcp.tools.transfer"},
    {"name": "everything", "connector": "mcp", "action": "*"},
    {"name": "paid", "connector": "mcp", "action": "mcp.tools.pay", "measure": "sum"},
    {"name": "usd", "connector": "mcp", "action": "mcp.tools.transfer", "measure": "sum",
     "currency": "usd"},
    {"name": "graphql", "connector": "github", "action": "github.*"},
]  # fmt: skip
SCOPES = compile_budgets(BUDGETS)
COMPILED = [compile_budget(b["name"], BudgetDef(limit=1e12, **b)) for b in BUDGETS]


def _config() -> CompiledConfig:
    rules = [rule("mcp.*", "allow", "mcp"), rule("mcp.tools.pay", "require_approval", "mcp"),
             rule("github.*", "allow", "github")]  # fmt: skip
    return compile_snapshot(snapshot(rules, connectors=[connector("mcp"), connector("github")]))


CONFIG = _config()


def _post(body: object, url: str = "https://mcp.example.com/mcp") -> HttpRequest:
    return HttpRequest.from_url("POST", url, headers=(("Content-Type", "application/json"),),
                                body=json.dumps(body).encode())  # fmt: skip


def _flow(parsed: ParsedAction, kind: str = "mcp") -> Flow:
    agent = next(a for a in CONFIG.agents.values() if a.name == "Bot")
    entry = next(c for c in CONFIG.connectors.values() if c.type == kind)
    return Flow("r1", "POST", agent=agent, connector=entry, parsed=parsed,
                action=parsed.spec.type)  # fmt: skip


def _gateway(flow: Flow) -> dict[str, float] | None:
    """What the gateway debits from its slices per budget (None: the control plane decides)."""
    spent = _local_amounts(_covered(SCOPES, flow))
    return spent  # (keyed by budget id: the name here)


def _sent(flow: Flow) -> dict[str, Any]:
    """The body the gateway sends the control plane to reserve `flow`'s spend."""
    sent: list[dict[str, Any]] = []

    class Control:
        async def reserve_budget(self, payload: dict[str, Any]) -> dict[str, Any]:
            sent.append(payload)
            return {"reservation": "rsv_1", "refused": None}

    asyncio.run(Budgets(Control()).reserve(SCOPES, flow, force=True))  # type: ignore[arg-type]
    return sent[0] if sent else {}


def _control_plane(body: dict[str, Any]) -> dict[str, float] | Refused:
    """What the control plane reserves for `body` (``routes/budgets.covered_request``)."""
    if "members" in body:
        found = covering_all(COMPILED, body["agent"], body["connector"],
                             [(m["action"], m["parameters"]) for m in body["members"]])  # fmt: skip
    else:
        found = covering(COMPILED, body["agent"], body["connector"], body["action"],
                         body["parameters"])  # fmt: skip
    return found if isinstance(found, Refused) else {b.name: a for b, a in found}


def _summed(parts: list[dict[str, float]]) -> dict[str, float]:
    total: dict[str, float] = {}
    for part in parts:
        for name, amount in part.items():
            total[name] = total.get(name, 0.0) + amount
    return total


def _message(tool: str, amount: int, currency: str | None, ident: int) -> dict[str, Any]:
    if tool == "list":
        return {"jsonrpc": "2.0", "id": ident, "method": "tools/list"}
    if tool == "ping":
        return {"jsonrpc": "2.0", "method": "notifications/ping", "params": {"amount": amount}}
    arguments: dict[str, Any] = {"amount": amount}
    if currency is not None:
        arguments["currency"] = currency
    return {"jsonrpc": "2.0", "id": ident, "method": "tools/call",
            "params": {"name": tool, "arguments": arguments}}  # fmt: skip


MEMBER = st.tuples(
    st.sampled_from(["transfer", "pay", "list", "ping"]),
    st.integers(0, 10_000),
    st.sampled_from(["usd", "eur", None]),
)


@settings(max_examples=examples(150), deadline=None)
@given(st.lists(MEMBER, min_size=2, max_size=8), st.data())
def test_a_batch_spends_the_sum_of_what_each_member_spends_alone(
    members: list[tuple[str, int, str | None]], data: st.DataObject
) -> None:
    """Whichever member the batch is decided (held, recorded) as, at the gateway and on the
    control plane; a member that cannot say how much it spends refuses the whole batch."""
    messages = [_message(tool, amount, cur, i) for i, (tool, amount, cur) in enumerate(members)]
    whole = MCP.parse(_post(messages))
    which = data.draw(st.integers(0, len(whole.also)), label="decided as")
    batch = _flow(decided_as(whole, which))
    alone = [_flow(MCP.parse(_post(m))) for m in messages]

    singles = [_gateway(f) for f in alone]
    spent = _gateway(batch)
    if any(s is None for s in singles):
        assert spent is None  # (the control plane refuses it, below)
    else:
        assert spent == _summed([s for s in singles if s is not None])

    on_plane = [_control_plane(_sent(f)) for f in alone]
    reserved = _control_plane(_sent(batch))
    refusals = [r for r in on_plane if isinstance(r, Refused)]
    if refusals:
        assert reserved == refusals[0]  # the first member that says not how much
    else:
        assert reserved == _summed([r for r in on_plane if not isinstance(r, Refused)])
        if spent is not None:
            assert reserved == spent  # the gateway's slices and the control plane agree


def test_a_batch_held_as_one_member_still_spends_for_every_member() -> None:
    """`pay` is held, the transfers allowed: the batch is held as the `pay` call, and what is
    reserved before a person is asked counts the transfers too."""
    body = [transfer(1, amount=40, currency="usd"), transfer(2, amount=60, currency="usd"),
            {"jsonrpc": "2.0", "id": 3, "method": "tools/call",
             "params": {"name": "pay", "arguments": {"amount": 7}}}]  # fmt: skip
    agent = next(a for a in CONFIG.agents.values() if a.name == "Bot")
    entry = next(c for c in CONFIG.connectors.values() if c.type == "mcp")
    parsed, decision, _ = CONFIG.decide(agent, entry, _post(body), datetime.now(UTC))
    assert parsed is not None
    assert (parsed.spec.type, decision.outcome) == ("mcp.tools.pay", "require_approval")
    every = ["mcp.tools.pay", "mcp.tools.transfer", "mcp.tools.transfer"]
    assert sorted(a.spec.type for a in performed(parsed)) == every
    sent = _sent(_flow(parsed))
    assert [m["action"] for m in sent["members"]] == every
    assert _control_plane(sent) == {"transfers": 2, "everything": 3, "paid": 7, "usd": 100}


def test_a_graphql_document_of_three_mutations_counts_three() -> None:
    query = (
        'mutation { a: createIssue(input: {repositoryId: "r", title: "a"}) { clientMutationId }'
        ' b: createIssue(input: {repositoryId: "r", title: "b"}) { clientMutationId }'
        ' addComment(input: {subjectId: "s", body: "hi"}) { clientMutationId } }'
    )
    parsed = get_connector("github").parse(
        _post({"query": query}, url="https://api.github.com/graphql")
    )
    flow = _flow(parsed, "github")
    assert len(performed(parsed)) == 3
    assert _gateway(flow) == {"graphql": 3}
    assert _control_plane(_sent(flow)) == {"graphql": 3}


def test_over_stdio_a_batch_spends_for_every_member() -> None:
    """`tf mcp wrap` decides with its own gate, the members riding along as over HTTP."""
    rules = [{"agent": "Bot", "connector": "mcp", "action_pattern": p, "decision": d}
             for p, d in (("mcp.*", "allow"), ("mcp.tools.pay", "require_approval"))]  # fmt: skip
    config = compile_snapshot(normalize_snapshot({
        "agents": [{"name": "Bot", "api_keys": ["k"]}], "permissions": rules}))  # fmt: skip
    gate = Gate("Bot", server_entry("bank", None), config)
    for tail in ([], [_message("pay", 5, None, 9)]):  # allowed, then held as `pay`
        batch = [transfer(i, amount=1_000_000, currency="usd") for i in range(5)]
        parsed, decision = gate.decide(batch + tail)
        assert parsed is not None
        assert decision.outcome == ("require_approval" if tail else "allow")
        paid = {"paid": 5} if tail else {}
        assert _gateway(_flow(parsed)) == {"transfers": 5, "everything": 5 + len(tail),
                                           "usd": 5_000_000, **paid}  # fmt: skip


def _graphql(query: str) -> Flow:
    return _flow(get_connector("github").parse(
        _post({"query": query}, url="https://api.github.com/graphql")), "github")  # fmt: skip


def test_a_graphql_mutation_repeated_under_aliases_spends_for_each() -> None:
    """GitHub runs every aliased field: twenty `addComment` calls spend twenty (they spent
    one: the connector dropped a repeated call), one in an inline fragment and one beside
    it two, and two unknown mutations with other arguments two."""
    call = 'addComment(input: {subjectId: "s", body: "spam"}) { clientMutationId }'
    twenty = _graphql("mutation { " + " ".join(f"c{i}: {call}" for i in range(20)) + " }")
    assert _gateway(twenty) == _control_plane(_sent(twenty)) == {"graphql": 20}
    inline = _graphql(f"mutation {{ a: {call} ... on Mutation {{ b: {call} }} }}")
    assert _gateway(inline) == _control_plane(_sent(inline)) == {"graphql": 2}
    unknown = _graphql('mutation { enqueuePullRequest(input: {pullRequestId: "p1"}) { x }'
                       ' b: enqueuePullRequest(input: {pullRequestId: "p2"}) { x } }')  # fmt: skip
    assert _gateway(unknown) == _control_plane(_sent(unknown)) == {"graphql": 2}


#: The calls a generated document makes: a response key always names the same call (one
#: GitHub can execute; the same key twice is merged into one execution).
_CALLS = [
    ("addComment", '(input: {subjectId: "s", body: "b"})'),
    ("closePullRequest", '(input: {pullRequestId: "p"})'),
    ("enqueuePullRequest", '(input: {pullRequestId: "p"})'),
    ("addStar", ""),
]
_KEYS = [(f"k{i}" if i >= len(_CALLS) else None, *_CALLS[i % len(_CALLS)]) for i in range(8)]
#: A selection: a field (index into _KEYS), an inline fragment, or a fragment spread.
_SELECTION = st.recursive(
    st.tuples(st.just("field"), st.integers(0, len(_KEYS) - 1)),
    lambda inner: st.one_of(
        st.tuples(st.just("inline"), st.lists(inner, min_size=1, max_size=3)),
        st.tuples(st.just("spread"), st.lists(inner, min_size=1, max_size=3)),
    ),
    max_leaves=12,
)


def _document(selections: list[Any], fragments: list[str]) -> tuple[str, list[int]]:
    """The selections as GraphQL (each spread's fragment added to `fragments`), and the key
    of every field it executes, in order, each occurrence (fragments expanded)."""
    text, keys = [], []
    for kind, value in selections:
        if kind == "field":
            alias, field, args = _KEYS[value]
            text.append(f"{alias + ': ' if alias else ''}{field}{args} {{ clientMutationId }}")
            keys.append(value)
            continue
        inner, found = _document(value, fragments)
        keys.extend(found)
        if kind == "inline":
            text.append(f"... on Mutation {{ {inner} }}")
        else:
            fragments.append(f"fragment F{len(fragments)} on Mutation {{ {inner} }}")
            text.append(f"...F{len(fragments) - 1}")
    return " ".join(text), keys


@settings(max_examples=examples(100), deadline=None)
@given(st.lists(_SELECTION, min_size=1, max_size=6))
def test_a_graphql_document_spends_once_per_mutation_github_executes(
    selections: list[Any],
) -> None:
    """Spend == the number of mutation fields GitHub executes (one per response key: the
    same key twice is executed once), at the gateway and on the control plane, however
    they are aliased, repeated or spread through fragments."""
    fragments: list[str] = []
    body, keys = _document(selections, fragments)
    query = f"mutation {{ {body} }} {' '.join(fragments)}"
    if len(keys) > MAX_ACTIONS:  # every occurrence counts, merged or not
        with pytest.raises(ConnectorError, match="more than"):
            _graphql(query)
        return
    flow = _graphql(query)
    executed = len(set(keys))
    assert _gateway(flow) == _control_plane(_sent(flow)) == {"graphql": executed}
