"""Content rules decide the same locally as on the control plane.

`python -m agentfirewall policy test|explain` and `tf policy test|explain` decide with the
engine alone; content rules (``content.secrets``, ``content.pii``) read what the action's
strings hold, which the control plane scans before deciding. Locally they were never
scanned: every content rule was skipped and the tools answered "allow" where the server
denies or holds. Now every local tool decides through `explain_with_content`, the function
the server's SDK path uses.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from agentfirewall.__main__ import main
from agentfirewall.actions import parse_action_spec
from agentfirewall.policy import AccessRule, Engine, EvaluationContext, load_policy
from agentfirewall.policy.casefile import run_cases
from agentfirewall.policy.guard import explain_with_content, guard_plan

ROOT = Path(__file__).resolve().parents[2]
#: the content rules of docs/policies.md, as written there (a user pastes them)
DOCS_RULES = re.search(
    r"```yaml\n(rules:\n  - name: no-secrets-to-unknown-hosts.*?)```",
    (ROOT / "docs" / "policies.md").read_text(encoding="utf-8"),
    re.S,
).group(1)  # type: ignore[union-attr]
GUARD = "name: guard\n" + DOCS_RULES
PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7V8y\n-----END RSA PRIVATE KEY-----"
CASES = [
    ("openai.chat.create", {"messages": [{"role": "user", "content": PEM}]}, "deny"),
    ("openai.chat.create", {"messages": [{"role": "user", "content": "hello"}]}, "allow"),
    ("slack.message.send", {"text": "card 4111 1111 1111 1111 pls"}, "require_approval"),
    ("email.send", {"body": "mail bob@example.com"}, "deny"),  # SDK: a redact rule refuses
    ("email.send", {"body": "nothing to see"}, "allow"),
]


def _decide(action: str, parameters: dict[str, object], mode: str = "sdk") -> str:
    policy = load_policy(GUARD)
    everything = AccessRule("Bot", action.split(".")[0], "*", "allow", "perm_1")  # proxy mode
    engine = Engine(access_rules=[everything] if mode == "proxy" else [], policies=[policy])
    spec = parse_action_spec({"type": action, "parameters": parameters})
    ctx = EvaluationContext(agent="Bot", mode=mode, now=datetime.now(UTC),  # type: ignore[arg-type]
                            connector=action.split(".")[0])  # fmt: skip
    return explain_with_content(engine, guard_plan((policy,)), spec, ctx).decision.outcome


@pytest.mark.parametrize(("action", "parameters", "expected"), CASES)
def test_content_rules_decide_locally(action: str, parameters: dict, expected: str) -> None:
    assert _decide(action, parameters) == expected


def test_through_the_gateway_a_redact_rule_lets_the_redacted_body_through() -> None:
    assert _decide("email.send", {"body": "mail bob@example.com"}, mode="proxy") == "allow"


def test_case_files_and_explain_read_the_content(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "guard.yaml").write_text(GUARD, encoding="utf-8")
    cases = {"policies": ["guard.yaml"],
             "cases": [{"name": f"{a} {e}", "action": {"type": a, "parameters": p},
                        "expect": {"outcome": e}} for a, p, e in CASES]}  # fmt: skip
    (tmp_path / "cases.yaml").write_text(yaml.safe_dump(cases), encoding="utf-8")
    results = run_cases(tmp_path / "cases.yaml")
    assert [(r.name, r.passed, r.message) for r in results if not r.passed] == []
    assert len(results) == len(CASES)

    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"type": CASES[0][0], "parameters": CASES[0][1]}))
    code = main(["policy", "explain", str(spec), "--policy", str(tmp_path / "guard.yaml"),
                 "--fail-on-deny"])  # fmt: skip
    shown = capsys.readouterr().out
    assert code == 1, shown
    assert "guard/no-private-key-in-prompts" in shown
    assert "content: private_key at parameters.messages.0.content" in shown
    assert PEM not in shown  # where it was found, never the text
