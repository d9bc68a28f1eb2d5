"""`tf policy explain` decides with the route risk the gateway decides with, and prints it.

The gateway decides a request with the risk its connector gives it (``ParsedAction.risk``):
an MCP tool call's from the words of the tool's name, a request no route names
(``<type>.unknown.<method>``) from its method and, for some connectors, its path (Slack's
admin API is high). Explain looked the risk up among the catalogue's named routes only, so it
decided those actions with no risk at all: a policy on `context.risk` that denies a
high-risk tool call at the gateway was explained as allowing it. Each case here is asked of
both, against the same control plane: the gateway's decision of a real request, and
explain's, which must report the gateway's risk and reach the gateway's outcome.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from starlette.testclient import TestClient

from agentfirewall.connectors import HttpRequest
from agentfirewall_proxy.cli.app import main as tf_main
from agentfirewall_proxy.snapshot import compile_snapshot
from agentfirewall_server.routes.gateway import build_config
from tests.cli import test_policy_explain_as_gateway as explained

app = explained.app  # a control plane in process, as `tf policy explain`'s tests use

MCP_URL = "https://mcp.example.com/mcp"


def _tool_call(name: str) -> HttpRequest:
    call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": name, "arguments": {"repo": "o/r"}}}  # fmt: skip
    headers = (("Content-Type", "application/json"),)
    return HttpRequest.from_url("POST", MCP_URL, headers=headers, body=json.dumps(call).encode())


def _rpc(method: str) -> HttpRequest:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method}).encode()
    headers = (("Content-Type", "application/json"),)
    return HttpRequest.from_url("POST", MCP_URL, headers=headers, body=body)


#: (connector, the request, the action the gateway names it, the --param flags of explain)
CASES: list[tuple[str, HttpRequest, str, list[str]]] = [
    ("mcp", _tool_call("delete_repo"), "mcp.tools.delete_repo", []),  # high
    ("mcp", _tool_call("create_issue"), "mcp.tools.create_issue", []),  # medium
    ("mcp", _tool_call("read_file"), "mcp.tools.read_file", []),  # low
    ("mcp", _tool_call("deleteRepo"), "mcp.tools.deleterepo", ["tool=deleteRepo"]),  # high
    ("mcp", _rpc("resources/read"), "mcp.rpc.resources_read", []),  # low
    ("mcp", HttpRequest.from_url("PUT", MCP_URL), "mcp.unknown.put", []),  # medium
    ("github", HttpRequest.from_url("DELETE", "https://api.github.com/nothing/here"),
     "github.unknown.delete", []),  # high
    ("github", HttpRequest.from_url("PUT", "https://api.github.com/nothing/here"),
     "github.unknown.put", []),  # medium
    ("github", HttpRequest.from_url("GET", "https://api.github.com/nothing/here"),
     "github.unknown.get", []),  # low
    ("slack", HttpRequest.from_url("POST", "https://slack.com/api/admin.things.purge"),
     "slack.unknown.post", ["path=/api/admin.things.purge"]),  # high: the admin API
    ("slack", HttpRequest.from_url("POST", "https://slack.com/api/things.purge"),
     "slack.unknown.post", ["path=/api/things.purge"]),  # medium
]  # fmt: skip


def _gateway(app: TestClient, agent: str, request: HttpRequest) -> tuple[str, str | None, str]:
    """The gateway's reading of `request`: the action, its risk, the outcome."""
    config = compile_snapshot(build_config(app.app.state.af))  # type: ignore[attr-defined]
    entry = next(a for a in config.agents.values() if a.name == agent)
    connector = config.route(request.host)
    assert connector is not None
    parsed, decision, _ = config.decide(entry, connector, request, datetime.now(UTC))
    assert parsed is not None
    return parsed.spec.type, parsed.risk, decision.outcome


@pytest.fixture
def risky(app: TestClient) -> TestClient:
    """Bot may do anything on three connectors; a policy decides by the route's risk."""
    explained._admin(app, "POST", "/v1/agents", {"name": "Bot"})
    explained._connector(app, "mcp", domains=["mcp.example.com"])
    explained._connector(app, "github")
    explained._connector(app, "slack")
    explained._rule(app, "Bot", "*", "*", "allow")
    for kind in ("mcp", "github", "slack"):  # no wildcard grants a name no route gives
        explained._rule(app, "Bot", kind, f"{kind}.unknown.*", "allow")
    explained._admin(app, "POST", "/v1/policies", {"document": explained.RISKY})
    return app


@pytest.mark.parametrize(
    ("connector", "request_", "action", "params"),
    CASES,
    ids=[" ".join([c[2], *c[3]]) for c in CASES],
)
def test_explain_reports_the_gateways_risk_and_outcome(
    risky: TestClient,
    capsys: pytest.CaptureFixture[str],
    connector: str,
    request_: HttpRequest,
    action: str,
    params: list[str],
) -> None:
    named, risk, outcome = _gateway(risky, "Bot", request_)
    assert named == action  # the request is the one the action names
    code = tf_main(["policy", "explain", "--gateway", "Bot", "--connector", connector,
                    "--action", action, *(f for p in params for f in ("--param", p)),
                    "--json"])  # fmt: skip
    shown: dict[str, Any] = json.loads(capsys.readouterr().out)
    assert shown["decision"]["outcome"] == outcome
    assert shown["route_risk"]["risk"] == risk
    assert code == {"allow": 0, "deny": 3, "require_approval": 4}[outcome]


def test_the_risk_is_printed_with_where_it_comes_from(
    risky: TestClient, capsys: pytest.CaptureFixture[str]
) -> None:
    code = tf_main(["policy", "explain", "--gateway", "Bot", "--connector", "mcp",
                    "--action", "mcp.tools.delete_repo"])  # fmt: skip
    shown = capsys.readouterr().out
    assert code == 3, shown  # denied: a high-risk tool, as the gateway denies it
    assert "route risk: high (the tool `delete_repo`" in shown


def test_an_unknown_action_without_its_path_is_explained_at_its_riskiest(
    risky: TestClient, capsys: pytest.CaptureFixture[str]
) -> None:
    """Which Slack request no route names is high depends on its path: without one, explain
    decides at the riskiest the gateway can give it, and says how to give the path."""
    code = tf_main(["policy", "explain", "--gateway", "Bot", "--connector", "slack",
                    "--action", "slack.unknown.post", "--json"])  # fmt: skip
    shown = json.loads(capsys.readouterr().out)
    assert (code, shown["route_risk"]["risk"]) == (3, "high")
    assert "--param path=PATH" in shown["route_risk"]["from"]


def test_a_tool_name_that_is_another_action_is_refused(
    risky: TestClient, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--param tool` is the tool's name as its server spells it: one the gateway names as
    another action would explain a request that cannot exist."""
    code = tf_main(["policy", "explain", "--gateway", "Bot", "--connector", "mcp",
                    "--action", "mcp.tools.delete_repo", "--param", "tool=readFile"])  # fmt: skip
    assert code == 2
    assert "`mcp.tools.readfile`, not `mcp.tools.delete_repo`" in capsys.readouterr().err
