"""`tf policy explain` answers what the live gateway answers.

Explain read only the access rules named for its agent (`GET /v1/permissions?agent=NAME`, an
exact match), so a `*` rule was left out: a repository delete every agent is denied was
explained as allowed (exit 0), an issue every agent may create as denied. It decided under
the name given to `--connector` (a configured connector's name, which it accepts) where the
gateway decides under the connector's type, and it missed a kill switch set on that name,
which the gateway honours. Explain now compiles the live configuration with the gateway's
own `compile_snapshot` and checks its kill switches as `CompiledConfig.kill_switch_for`
does; each case here is asked of both, in process, against the same control plane. The
core's `python -m agentfirewall policy explain --rule` compiles its rules as the gateway too.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from agentfirewall.__main__ import main as core_main
from agentfirewall.connectors import HttpRequest
from agentfirewall_proxy.cli.app import main as tf_main
from agentfirewall_proxy.cli.client import AdminClient
from agentfirewall_proxy.cli.context import Context
from agentfirewall_proxy.cli.state import Target
from agentfirewall_proxy.snapshot import compile_snapshot
from agentfirewall_server.app import create_app
from agentfirewall_server.routes.gateway import build_config
from agentfirewall_server.settings import Settings

_EXIT = {0: "allow", 3: "deny", 4: "require_approval"}
#: action -> the request the gateway names so (method, URL, JSON body)
REQUESTS: dict[str, tuple[str, str, Any]] = {
    "github.issue.create": ("POST", "https://api.github.com/repos/o/r/issues", {"title": "x"}),
    "github.repo.delete": ("DELETE", "https://api.github.com/repos/o/r", None),
    "github.repo.get": ("GET", "https://api.github.com/repos/o/r", None),
    "http.get": ("GET", "https://api.stripe.com/v1/balance", None),
    "http.post": ("POST", "https://api.stripe.com/v1/refunds", {"charge": "ch_1"}),
}


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    """A control plane in process; `tf` commands talk to it."""
    data_dir = tmp_path / "tf"
    with TestClient(create_app(Settings(data_dir=data_dir))) as client:
        token = (data_dir / "admin.token").read_text().strip()
        client.headers["Authorization"] = f"Bearer {token}"
        target = Target("http://testserver", token, "", None, "--server")

        @contextlib.contextmanager
        def admin(self: Context, *, offline: bool = False) -> Iterator[AdminClient]:
            yield AdminClient(client, target, offline=True)  # type: ignore[arg-type]

        monkeypatch.setattr(Context, "client", admin)
        monkeypatch.setenv("COLUMNS", "200")
        yield client


def _admin(app: TestClient, method: str, path: str, body: Any) -> None:
    response = app.request(method, "/api" + path, json=body)
    assert response.status_code in (200, 201), response.text


def _rule(app: TestClient, agent: str, connector: str, pattern: str, decision: str) -> None:
    rule = {"agent": agent, "connector": connector, "action_pattern": pattern,
            "decision": decision}  # fmt: skip
    _admin(app, "POST", "/v1/permissions", rule)


def _connector(app: TestClient, kind: str, **fields: Any) -> None:
    _admin(app, "POST", "/v1/connectors", {"type": kind, "token": "tok_0123456789abcdef",
                                           **fields})  # fmt: skip


def gateway(app: TestClient, agent: str, action: str) -> str:
    """The gateway's answer to the request named `action`: its config compiled from the
    snapshot the control plane serves it, a kill switch checked first, then decided."""
    config = compile_snapshot(build_config(app.app.state.af))  # type: ignore[attr-defined]
    entry = next(a for a in config.agents.values() if a.name == agent)
    method, url, body = REQUESTS[action]
    request = HttpRequest.from_url(method, url, body=json.dumps(body).encode() if body else b"")
    connector = config.route(request.host)
    assert connector is not None
    if config.kill_switch_for(entry, connector) is not None:
        return "deny"
    parsed, decision, _ = config.decide(entry, connector, request, datetime.now(UTC))
    assert parsed is not None
    assert parsed.spec.type == action  # the table names truly
    return decision.outcome


def explain(agent: str, connector: str, action: str, capsys: pytest.CaptureFixture[str]) -> str:
    args = ["policy", "explain", "--gateway", agent, "--connector", connector,
            "--action", action, "--target", "o/r", "--json"]  # fmt: skip
    code = tf_main(args)
    shown = json.loads(capsys.readouterr().out)
    assert _EXIT[code] == shown["decision"]["outcome"]
    return str(shown["decision"]["outcome"])


def test_rules_for_every_agent_are_explained(
    app: TestClient, capsys: pytest.CaptureFixture[str]
) -> None:
    _admin(app, "POST", "/v1/agents", {"name": "Bot"})
    _connector(app, "github")
    _rule(app, "*", "github", "github.*", "allow")  # every agent may use GitHub
    _rule(app, "*", "*", "github.repo.delete", "deny")  # nobody deletes a repository
    _rule(app, "Bot", "github", "github.repo.*", "allow")  # Bot: repository admin
    for action, expected in [("github.issue.create", "allow"), ("github.repo.delete", "deny"),
                             ("github.repo.get", "allow")]:  # fmt: skip
        assert gateway(app, "Bot", action) == expected
        assert explain("Bot", "github", action, capsys) == expected, action


def test_a_connector_is_explained_by_its_type_and_its_kill_switches(
    app: TestClient, capsys: pytest.CaptureFixture[str]
) -> None:
    _admin(app, "POST", "/v1/agents", {"name": "Bot"})
    _connector(app, "github", name="gh-prod")
    _rule(app, "Bot", "github", "github.*", "allow")
    assert gateway(app, "Bot", "github.issue.create") == "allow"
    for name in ("github", "gh-prod"):  # the type, and the configured connector's name
        assert explain("Bot", name, "github.issue.create", capsys) == "allow", name
    _admin(app, "POST", "/v1/kill-switch", {"active": True, "scope": "connector:gh-prod"})
    assert gateway(app, "Bot", "github.issue.create") == "deny"
    for name in ("github", "gh-prod"):
        assert explain("Bot", name, "github.issue.create", capsys) == "deny", name
    shown = tf_main(["policy", "explain", "--gateway", "Bot", "--connector", "github",
                     "--action", "github.issue.create"])  # fmt: skip
    assert shown == 3
    assert "kill_switch:connector:gh-prod" in capsys.readouterr().out  # the switch, named


def test_the_guides_generic_rules_are_explained_under_either_name(
    app: TestClient, capsys: pytest.CaptureFixture[str]
) -> None:
    _admin(app, "POST", "/v1/agents", {"name": "Finance Bot"})
    _connector(app, "generic", domains=["api.stripe.com"])
    _rule(app, "Finance Bot", "generic", "generic.get", "allow")
    _rule(app, "Finance Bot", "generic", "generic.post", "require_approval")
    for action, expected in [("http.get", "allow"), ("http.post", "require_approval")]:
        assert gateway(app, "Finance Bot", action) == expected
        assert explain("Finance Bot", "generic", action, capsys) == expected, action


def test_the_cores_explain_compiles_rules_as_the_gateway(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`python -m agentfirewall policy explain --rule` reads a rule as the gateway does."""
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"type": "http.get", "resource": {"provider": "generic"}}))
    core_main(["policy", "explain", str(spec), "--mode", "proxy", "--agent", "Finance Bot",
               "--rule", "Finance Bot:generic:generic.get=allow", "--json"])  # fmt: skip
    assert json.loads(capsys.readouterr().out)["decision"]["outcome"] == "allow"


RISKY = """\
name: by-route-risk
rules:
  - name: high-risk-denied
    conditions: [{field: context.risk, operator: equals, value: high}]
    decision: deny
  - name: medium-risk-held
    conditions: [{field: context.risk, operator: equals, value: medium}]
    decision: require_approval
"""


def test_a_policy_on_the_route_risk_is_explained_as_the_gateway_decides(
    app: TestClient, capsys: pytest.CaptureFixture[str]
) -> None:
    """`context.risk` is the risk of the route the gateway names the action by (explain
    decided with none: a policy on it never matched)."""
    _admin(app, "POST", "/v1/agents", {"name": "Bot"})
    _connector(app, "github")
    _connector(app, "generic", domains=["api.stripe.com"])
    _rule(app, "*", "*", "*", "allow")
    _admin(app, "POST", "/v1/policies", {"document": RISKY})
    for connector, action, expected in [
        ("github", "github.repo.delete", "deny"),  # high
        ("github", "github.issue.create", "allow"),  # low
        ("generic", "http.post", "require_approval"),  # medium, by its method
    ]:
        assert gateway(app, "Bot", action) == expected, action
        assert explain("Bot", connector, action, capsys) == expected, action
