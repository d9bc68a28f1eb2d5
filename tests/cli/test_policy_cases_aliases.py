"""Policy test cases decide an aliased access rule as the gateway decides it.

The integration guide grants its Finance Bot `generic.get` and `generic.post`; the gateway's
generic connector names those requests `http.get` and `http.post`, and compiles every access
rule under each spelling of its pattern (`agentfirewall.connectors.aliases.alias_rules`). The
YAML case runner (`python -m agentfirewall policy test`, `agentfirewall.policy.casefile`)
compiled the rules as written, so a case file of the guide's own rules reported a deny the
gateway never gives. Each case here is asked of the gateway too: a real request decided by the
configuration it compiles from the control plane's snapshot, or its compiled engine.
"""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from agentfirewall.__main__ import main as core_main
from agentfirewall.actions import parse_action_spec
from agentfirewall.connectors import HttpRequest
from agentfirewall.policy import EvaluationContext
from agentfirewall_proxy.snapshot import compile_snapshot
from agentfirewall_server.routes.gateway import build_config
from tests.cli import test_policy_explain_as_gateway as explained

app = explained.app  # a control plane in process, as `tf policy explain`'s tests use

#: The guide's "Multi-agent setup": Finance Bot reads Stripe through the generic connector.
GUIDE_RULES = [
    {"agent": "Finance Bot", "connector": "generic", "action_pattern": "generic.get",
     "decision": "allow"},
    {"agent": "Finance Bot", "connector": "generic", "action_pattern": "generic.post",
     "decision": "require_approval"},
]  # fmt: skip
#: action -> a request to Stripe the generic connector names so
REQUESTS = {
    "http.get": HttpRequest.from_url("GET", "https://api.stripe.com/v1/balance"),
    "http.post": HttpRequest.from_url("POST", "https://api.stripe.com/v1/refunds", body=b"{}"),
    "http.delete": HttpRequest.from_url("DELETE", "https://api.stripe.com/v1/customers/cus_1"),
}


def _gateway(app: TestClient, agent: str, action: str) -> str:
    """The gateway's answer to the request named `action`: decided by the configuration it
    compiles from the snapshot the control plane serves it."""
    config = compile_snapshot(build_config(app.app.state.af))  # type: ignore[attr-defined]
    entry = next(a for a in config.agents.values() if a.name == agent)
    request = REQUESTS[action]
    connector = config.route(request.host)
    assert connector is not None
    parsed, decision, _ = config.decide(entry, connector, request, datetime.now(UTC))
    assert parsed is not None
    assert parsed.spec.type == action  # the generic connector names it so
    return decision.outcome


def _run(path: Path) -> tuple[int, str]:
    """`python -m agentfirewall policy test PATH`: its exit code and what it printed."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = core_main(["policy", "test", str(path)])
    return code, printed.getvalue()


def _rule_text(rule: dict[str, str]) -> str:
    return f"{rule['agent']}:{rule['connector']}:{rule['action_pattern']}={rule['decision']}"


def test_a_case_file_of_the_guides_generic_rules_gets_the_gateways_verdict(
    app: TestClient, tmp_path: Path
) -> None:
    explained._admin(app, "POST", "/v1/agents", {"name": "Finance Bot"})
    explained._connector(app, "generic", domains=["api.stripe.com"])
    for rule in GUIDE_RULES:
        explained._admin(app, "POST", "/v1/permissions", rule)
    verdicts = {action: _gateway(app, "Finance Bot", action) for action in REQUESTS}
    assert verdicts == {"http.get": "allow", "http.post": "require_approval",
                        "http.delete": "deny"}  # fmt: skip
    cases = {
        "access_rules": [_rule_text(r) for r in GUIDE_RULES],  # as the guide writes them
        "context": {"agent": "Finance Bot", "mode": "proxy", "connector": "generic"},
        "cases": [
            {"name": f"{action} as the gateway decides it",
             "action": {"type": action, "resource": {"provider": "generic"}},
             "expect": {"outcome": outcome}}
            for action, outcome in verdicts.items()
        ],
    }  # fmt: skip
    (tmp_path / "finance.yaml").write_text(yaml.safe_dump(cases), encoding="utf-8")
    code, shown = _run(tmp_path / "finance.yaml")
    assert code == 0, shown
    assert "3 passed, 0 failed" in shown


SPELLINGS = st.sampled_from(["generic", "http"])
METHODS = st.sampled_from(["get", "post", "put", "delete", "*"])
DECISIONS = st.sampled_from(["allow", "deny", "require_approval"])
RULES = st.lists(
    st.tuples(st.sampled_from(["Bot", "*"]), st.sampled_from(["generic", "*"]), SPELLINGS,
              METHODS, DECISIONS),
    max_size=4,
    unique_by=lambda r: (r[0], r[1], r[2], r[3]),
)  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(
    rules=RULES,
    spelling=SPELLINGS,
    method=st.sampled_from(["get", "post", "put", "delete"]),
    mode=st.sampled_from(["proxy", "sdk"]),
)
def test_case_files_decide_every_spelling_as_the_gateways_engine(
    rules: list[tuple[str, str, str, str, str]], spelling: str, method: str, mode: str
) -> None:
    """Whichever spelling a rule and an action use, a case decides as the engine the gateway
    compiles from the same rules (`compile_snapshot`)."""
    permissions = [
        {"agent": agent, "connector": connector, "action_pattern": f"{kind}.{verb}",
         "decision": decision}
        for agent, connector, kind, verb, decision in rules
    ]  # fmt: skip
    action = {"type": f"{spelling}.{method}", "resource": {"provider": "generic"}}
    context: dict[str, Any] = {"agent": "Bot", "mode": mode, "connector": "generic"}
    engine = compile_snapshot({"permissions": permissions}).engine
    ctx = EvaluationContext(agent="Bot", mode=mode, connector="generic",  # type: ignore[arg-type]
                            now=datetime(2026, 1, 5, 12, tzinfo=UTC))  # fmt: skip
    decision = engine.evaluate(parse_action_spec(action), ctx)
    rule = decision.matched_rules[0] if decision.matched_rules else "default"
    case = {
        "name": "as the gateway",
        "access_rules": [_rule_text(p) for p in permissions],
        "context": context,
        "action": action,
        "expect": {"outcome": decision.outcome, "rule": rule},
    }
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "case.yaml"
        path.write_text(json.dumps(case), encoding="utf-8")  # (JSON is YAML)
        code, shown = _run(path)
    assert code == 0, shown
