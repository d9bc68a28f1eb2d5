"""The gate decides stdio messages exactly as the gateway decides MCP over HTTP: the same
names (one table), enforcement levels, kill switches; failures deny."""

from __future__ import annotations

import json
from typing import Any

import pytest

from agentfirewall.connectors import HttpRequest
from agentfirewall.connectors.mcp import CONNECTOR
from agentfirewall_proxy.control import normalize_snapshot
from agentfirewall_proxy.mcpwrap.gate import Gate, server_entry
from agentfirewall_proxy.snapshot import compile_snapshot

RULES = [
    ("mcp.rpc.*", "allow"),
    ("mcp.tools.list", "allow"),
    ("mcp.tools.search_issues", "allow"),
    ("mcp.tools.delete_repo", "deny"),
    ("mcp.tools.merge_pr", "require_approval"),
]


def _gate(level: str = "full_enforce", kill: list[dict[str, Any]] | None = None) -> Gate:
    snapshot = {
        "agents": [{"name": "Bot", "api_keys": ["k"], "enforcement_level": level}],
        "permissions": [
            {"agent": "Bot", "connector": "mcp", "action_pattern": p, "decision": d}
            for p, d in RULES
        ],
        "kill_switches": kill or [],
    }
    return Gate("Bot", server_entry("github", None), compile_snapshot(normalize_snapshot(snapshot)))


def _call(tool: str, **arguments: Any) -> dict[str, Any]:
    params = {"name": tool, "arguments": arguments}
    return {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params}


MESSAGES: list[Any] = [
    _call("search_issues", q="bug"),
    _call("Delete-Repo", name="x"),
    _call("list"),
    {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
    {"jsonrpc": "2.0", "id": 3, "method": "resources/read", "params": {"uri": "file:///a"}},
    {"jsonrpc": "2.0", "method": "notifications/initialized"},
    {"jsonrpc": "2.0", "id": "s1", "result": {}},
    [_call("search_issues"), _call("delete_repo", name="x")],
    [{"jsonrpc": "2.0", "id": 4, "method": "ping"}],
]


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: json.dumps(m)[:60])
def test_stdio_and_http_name_and_decide_alike(message: Any) -> None:
    gate = _gate()
    request = HttpRequest.from_url(
        "POST",
        "https://mcp.example.com/mcp",
        headers=(("Content-Type", "application/json"),),
        body=json.dumps(message).encode(),
    )
    over_http = CONNECTOR.parse(request)
    parsed, decision = gate.decide(message)
    assert parsed is not None
    deciding = [over_http, *over_http.also]
    assert parsed.spec.type in {p.spec.type for p in deciding}
    assert parsed.spec.parameters in [p.spec.parameters for p in deciding]
    assert parsed.spec.resource.target == "github"  # the server name, not a host
    if isinstance(message, list) and len(message) > 1:
        assert decision.outcome == "deny"  # the denied member decides the batch


def test_enforcement_levels() -> None:
    for level, outcome, visible in [
        ("full_enforce", "deny", False),
        ("soft_enforce", "allow", True),
        ("monitor", "allow", True),
    ]:
        gate = _gate(level)
        _, decision = gate.decide(_call("delete_repo", name="x"))
        assert (decision.outcome, decision.would_outcome) == (
            outcome,
            "would_deny" if visible else None,
        )
        assert gate.tool_visible("delete_repo") is visible
    _, held = _gate("monitor").decide(_call("merge_pr"))
    assert held.outcome == "allow"  # monitor holds nothing either


@pytest.mark.parametrize(
    "switch",
    [
        {"scope": "all"},
        {"scope": "agent", "target": "Bot"},
        {"scope": "connector", "target": "mcp"},
        {"scope": "connector", "target": "github"},  # the server name
    ],
)
def test_kill_switches_that_cover_the_session(switch: dict[str, Any]) -> None:
    gate = _gate("monitor", kill=[switch])  # enforced at every level
    assert gate.kill_switch() is not None
    _, decision = gate.decide(_call("search_issues"))
    assert (decision.outcome, decision.reason) == ("deny", "kill_switch_active")


def test_an_unreadable_configuration_denies_with_its_own_reason() -> None:
    """The server's stop for stored configuration it cannot read says which and what to do
    (as at the gateway), not the bare `kill_switch_active` a person's switch gives."""
    said = "stored policy `p` cannot be read by this version of TameFlare (x): ..."
    gate = _gate("monitor", kill=[{"scope": "all", "reason": said, "unreadable": True}])
    _, decision = gate.decide(_call("merge_pr"))
    assert (decision.outcome, decision.reason) == ("deny", said)


def test_other_kill_switches_do_not() -> None:
    gate = _gate(kill=[{"scope": "agent", "target": "Other"},
                       {"scope": "connector", "target": "stripe"}])  # fmt: skip
    assert gate.kill_switch() is None


@pytest.mark.parametrize(
    "message",
    [
        {"jsonrpc": "2.0", "id": 1, "Method": "tools/call"},
        {"jsonrpc": "1.0", "id": 1, "method": "ping"},
        _call(""),
        [],
        "tools/call",
    ],
    ids=str,
)
def test_what_cannot_be_named_is_denied(message: Any) -> None:
    parsed, decision = _gate("monitor").decide(message)
    assert parsed is None
    assert decision.outcome == "deny"
    assert "not understood" in decision.reason


def test_unknown_agent_is_denied() -> None:
    gate = _gate()
    gate.agent_name = "Nobody"
    _, decision = gate.decide(_call("search_issues"))
    assert decision.outcome == "deny"
    assert not gate.tool_visible("search_issues")


def test_env_credentials_come_from_the_vault_snapshot() -> None:
    from agentfirewall_proxy.mcpwrap.launch import WrapError, parse_env_specs, resolve_env

    snapshot = {
        "connectors": [
            {"id": "c1", "type": "github", "name": "gh", "credential": "ghp_one"},
            {"id": "c2", "type": "slack", "name": "sl", "credential": None},
            {"id": "c3", "type": "stripe", "name": "s1", "credential": "sk_a"},
            {"id": "c4", "type": "stripe", "name": "s2", "credential": "sk_b"},
        ]
    }
    specs = parse_env_specs(["GITHUB_TOKEN=connector:github", "ALSO=connector:c1"])
    assert resolve_env(snapshot, specs) == {"GITHUB_TOKEN": "ghp_one", "ALSO": "ghp_one"}
    assert resolve_env(snapshot, {"K": "s2"}) == {"K": "sk_b"}
    for bad, problem in [
        ({"K": "gitlab"}, "is not configured"),
        ({"K": "stripe"}, "names several connectors"),
        ({"K": "sl"}, "has no credential"),
    ]:
        with pytest.raises(WrapError, match=problem):
            resolve_env(snapshot, bad)
    for flag in ["GITHUB_TOKEN=ghp_literal", "=connector:github", "X=connector:", "1A=connector:x"]:
        with pytest.raises(WrapError):
            parse_env_specs([flag])
