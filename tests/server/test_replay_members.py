"""A request the gateway decides as several actions replays as several: its record keeps
every action it was decided on, and replay and shadow mode take the strictest, as live.

The security review's case: a GitHub GraphQL document with a comment and a merge was
recorded as the merge alone, so a candidate denying ``github.issue.comment`` showed no
change (nor a divergence in shadow mode) while the gateway under it refused the request.
The guarantee, for GraphQL documents and JSON-RPC batches under random candidate
permissions: the verdict replayed from the stored record is the one the gateway gives
live under the candidate. A record too large to store is not replayable, never replayed
as something else.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from agentfirewall.connectors import HttpRequest
from agentfirewall.policy.record import restore_also, restore_input
from agentfirewall.policy.replay import Recorded, replay_one, verdict
from agentfirewall_proxy import pipeline
from agentfirewall_proxy.flow import Flow
from agentfirewall_proxy.snapshot import CompiledConfig, compile_snapshot
from agentfirewall_server.replaystore import input_text
from agentfirewall_server.shadow import ShadowConfig, judge_input
from tests.fuzzscale import examples
from tests.proxy.support import KEY, connector, key_hash, rule, snapshot

_MUTATIONS = {
    "comment": 'addComment(input: {subjectId: "I_1", body: "hi"})',
    "merge": 'mergePullRequest(input: {pullRequestId: "PR_1"})',
    "close": 'closeIssue(input: {issueId: "I_2"})',
    "delete_ref": 'deleteRef(input: {refId: "R_1"})',
}
_TOOLS = ("search_issues", "delete_repo", "pay", "tools/list")
_GITHUB_PATTERNS = ("github.*", "github.issue.*", "github.issue.comment", "github.pr.merge",
                    "github.branch.delete")  # fmt: skip
_MCP_PATTERNS = ("mcp.*", "mcp.tools.*", "mcp.tools.delete_repo", "mcp.rpc.batch", "mcp.rpc.*")
_BASELINE = compile_snapshot(
    snapshot([rule("github.*", "allow"), rule("mcp.*", "allow")],
             connectors=[connector("github"), connector("mcp")])
)  # fmt: skip


def _config(permissions: list[dict[str, Any]]) -> CompiledConfig:
    return compile_snapshot(snapshot(permissions, connectors=[connector("github"),
                                                              connector("mcp")]))  # fmt: skip


def _graphql(names: list[str]) -> tuple[str, str, bytes]:
    fields = " ".join(f"m{i}: {_MUTATIONS[n]} {{ clientMutationId }}" for i, n in enumerate(names))
    return "api.github.com", "/graphql", json.dumps({"query": f"mutation {{ {fields} }}"}).encode()


def _batch(tools: list[str]) -> tuple[str, str, bytes]:
    messages: list[dict[str, Any]] = []
    for i, tool in enumerate(tools):
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": i, "method": "tools/list"}
        if tool != "tools/list":
            message = {**message, "method": "tools/call",
                       "params": {"name": tool, "arguments": {"n": i}}}  # fmt: skip
        messages.append(message)
    return "mcp.example.com", "/mcp", json.dumps(messages).encode()


def _live(config: CompiledConfig, target: tuple[str, str, bytes]) -> Flow:
    """`target` (host, path, body) decided by the gateway's own ``decide``."""
    host, path, body = target
    agent = config.agent_for_key(key_hash(KEY))
    routed = config.route(host)
    assert agent is not None
    assert routed is not None
    flow = Flow(request_id="req_1", method="POST", scheme="https", host=host, port=443,
                path=path, agent=agent, connector=routed)  # fmt: skip
    headers = (("Host", host), ("Content-Type", "application/json"))
    request = HttpRequest("POST", "https", host, 443, path, "", headers, body, True)
    pipeline.decide(config, flow, request)
    return flow


def _stored(flow: Flow) -> str | None:
    """The record as the control plane stores it (None: not stored, not replayable)."""
    return input_text(flow.input)


def _replayed(config: CompiledConfig, text: str) -> str:
    """The verdict a replay under `config` gives the stored record `text`."""
    data = json.loads(text)
    spec, ctx = restore_input(data, "Bot")
    item = Recorded("r1", "proxy", spec, ctx, also=restore_also(data, spec, ctx))
    return verdict(replay_one(config.engine, item))


_decisions = st.sampled_from(["allow", "deny", "require_approval", None])


@settings(max_examples=examples(150), deadline=None)
@given(
    st.one_of(
        st.tuples(
            st.just("graphql"),
            st.lists(st.sampled_from(sorted(_MUTATIONS)), min_size=1, max_size=4),
        ),
        st.tuples(st.just("mcp"), st.lists(st.sampled_from(_TOOLS), min_size=1, max_size=4)),
    ),
    st.lists(_decisions, min_size=len(_MCP_PATTERNS), max_size=len(_MCP_PATTERNS)),
)
def test_a_request_of_several_actions_replays_as_the_gateway_decides_it_live(
    request_of: tuple[str, list[str]], chosen: list[str | None]
) -> None:
    kind, names = request_of
    target = _graphql(names) if kind == "graphql" else _batch(names)
    patterns = _GITHUB_PATTERNS if kind == "graphql" else _MCP_PATTERNS
    permissions = [rule(p, d) for p, d in zip(patterns, chosen, strict=True) if d is not None]
    candidate = _config(permissions)
    text = _stored(_live(_BASELINE, target))  # recorded under the live configuration
    assert text is not None
    live = _live(candidate, target).decision  # what the gateway does under the candidate
    assert live is not None
    assert _replayed(candidate, text) == verdict(live)
    shadow = ShadowConfig(candidate.engine, [], [])
    judged = judge_input(_BASELINE.engine, shadow, "Bot", text)
    assert judged is not None
    assert judged.shadow == verdict(live)


def test_the_review_case_a_comment_beside_a_merge() -> None:
    target = _graphql(["comment", "merge"])
    text = _stored(_live(_BASELINE, target))
    assert text is not None
    stored = json.loads(text)
    assert stored["t"] == "github.pr.merge"
    assert [m["t"] for m in stored["x"]] == ["github.issue.comment"]
    assert "x0.body" in stored["w"]  # (a member's parameters are withheld alike)
    candidate = _config([rule("github.*", "allow"), rule("github.issue.comment", "deny")])
    assert _replayed(candidate, text) == "deny"
    assert _live(candidate, target).decision.outcome == "deny"  # type: ignore[union-attr]


def test_a_batch_decided_as_a_member_keeps_the_batch_its_permission_decides() -> None:
    """A batch needs its own permission (``mcp.rpc.batch``): held by one member live, it
    is recorded as that member, and the batch is still replayed."""
    held = _config([rule("mcp.*", "allow"), rule("mcp.tools.pay", "require_approval")])
    target = _batch(["search_issues", "pay"])
    text = _stored(_live(held, target))
    assert text is not None
    stored = json.loads(text)
    assert stored["t"] == "mcp.tools.pay"
    assert [m["t"] for m in stored["x"]] == ["mcp.rpc.batch", "mcp.tools.search_issues"]
    no_batches = _config([rule("mcp.tools.*", "allow")])
    assert _live(no_batches, target).decision.outcome == "deny"  # type: ignore[union-attr]
    assert _replayed(no_batches, text) == "deny"


def test_a_record_too_large_to_store_is_not_replayable() -> None:
    """A batch of 100 members with long tool names (their arguments are never stored): its
    record is past the store's bound, so it is not stored and not judged, rather than
    replayed as one of its members."""
    messages = [{"jsonrpc": "2.0", "id": i, "method": "tools/call",
                 "params": {"name": f"tool_{i}_" + "x" * 50, "arguments": {"q": "x" * 200}}}
                for i in range(100)]  # fmt: skip
    target = ("mcp.example.com", "/mcp", json.dumps(messages).encode())
    flow = _live(_BASELINE, target)
    assert flow.input is not None
    assert len(flow.input["x"]) == 100
    assert _stored(flow) is None
    shadow = ShadowConfig(_BASELINE.engine, [], [])
    assert judge_input(_BASELINE.engine, shadow, "Bot", _stored(flow)) is None
