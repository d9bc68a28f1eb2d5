"""Every evaluator of an SDK action answers as the control plane's dry-run does: the
dashboard's sandbox (`POST /dashboard/sandbox/evaluate`) and the SDK's in-memory server
(`agentfirewall.testing.FirewallTransport`). Both ran the bare engine: no content scan (a
private key in the parameters, or base64-encoded in a file, was allowed where the server
denies it), no ``redact`` refusal, no budgets, no build alias (the fake server)."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from agentfirewall.decisions import Outcome
from agentfirewall.policy import AccessRule
from agentfirewall.testing import FirewallTransport
from tests.sdk.test_testing_content import AWS_KEY, KEY_MATERIAL, PEM, POLICY
from tests.server.conftest import Harness

#: (connector, action pattern, decision): the agent `Bot`'s permissions
RULES: list[tuple[str, str, Outcome]] = [
    ("slack", "slack.*", "allow"),
    ("github", "github.file.*", "allow"),
    ("stripe", "stripe.transfer.*", "deny"),
]


def _slack(text: str) -> dict[str, Any]:
    return {"type": "slack.message.post", "resource": {"provider": "slack"},
            "parameters": {"channel": "C1", "text": text}}  # fmt: skip


FILE = {"type": "github.file.create", "resource": {"provider": "github", "target": "o/r"},
        "parameters": {"path": "id", "message": "m",
                       "content": base64.b64encode(PEM.encode()).decode()}}  # fmt: skip
TRANSFER = {"type": "payment.transfer.initiate", "resource": {"provider": "stripe"},
            "parameters": {"amount": 100, "destination": "acct_x"}}  # fmt: skip
#: spec -> the status the server gives it, and the rule that decides
CASES = [
    (_slack(f"key {PEM}"), "denied", "content/no-private-keys"),
    (_slack(f"id {AWS_KEY}"), "denied", "content/redact-aws-keys"),  # cannot be redacted
    (FILE, "denied", "content/no-private-keys"),  # found decoded
    (TRANSFER, "denied", None),  # as the action it runs as: `stripe.transfer.create`
    (_slack("hello"), "allowed", None),
]


@pytest.fixture
def guarded(harness: Harness) -> tuple[Harness, str, list[AccessRule]]:
    """The server configured with POLICY and RULES; RULES as the core's, the server's ids."""
    assert harness.admin("POST", "/v1/policies", json={"document": POLICY}).status_code == 201
    rules = []
    for connector, pattern, decision in RULES:
        rule = {"agent": "Bot", "connector": connector, "action_pattern": pattern,
                "decision": decision}  # fmt: skip
        created = harness.admin("POST", "/v1/permissions", json=rule)
        assert created.status_code in (200, 201), created.text
        rules.append(AccessRule("Bot", connector, pattern, decision, created.json()["id"]))
    return harness, harness.create_agent("Bot", sdk_default="allow"), rules


def _dry_run(h: Harness, key: str, spec: dict[str, Any]) -> dict[str, Any]:
    answer = h.agent(key, "POST", "/v1/actions/dry-run", json={"action_spec": spec})
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def _sandbox(h: Harness, spec: dict[str, Any], mode: str = "sdk") -> dict[str, Any]:
    body = {"agent": "Bot", "action_spec": spec, "mode": mode}
    answer = h.admin("POST", "/dashboard/sandbox/evaluate", json=body)
    assert answer.status_code == 200, answer.text
    assert KEY_MATERIAL not in answer.text  # where the detectors fired, never the text
    assert AWS_KEY not in answer.text
    result: dict[str, Any] = answer.json()
    return result


def test_the_sandbox_answers_as_dry_run(guarded: tuple[Harness, str, list[AccessRule]]) -> None:
    h, key, _ = guarded
    for spec, status, rule in CASES:
        live = _dry_run(h, key, spec)
        assert live["status"] == status, live
        assert rule is None or live["decision"]["matched_rules"][0] == rule
        assert _sandbox(h, spec) == live


def test_the_sandbox_in_proxy_mode_scans_the_spec(
    guarded: tuple[Harness, str, list[AccessRule]],
) -> None:
    """As the gateway scans a request's body: a deny rule denies; a redact rule lets the
    request through (the gateway redacts it), saying where the detector fired."""
    h, _, _ = guarded
    denied = _sandbox(h, _slack(f"key {PEM}"), "proxy")
    assert denied["status"] == "denied"
    assert denied["decision"]["matched_rules"][0] == "content/no-private-keys"
    redacted = _sandbox(h, _slack(f"id {AWS_KEY}"), "proxy")
    assert redacted["status"] == "allowed"
    assert "; content: aws_access_key at parameters.text+3" in redacted["decision"]["reason"]
    assert _sandbox(h, FILE, "proxy")["status"] == "denied"


def test_the_sandbox_reads_budgets(harness: Harness) -> None:
    policy = """\
name: hold-when-low
rules:
  - name: low-budget
    decision: require_approval
    conditions: [{field: budget.slack-daily.remaining, operator: lt, value: 2}]
"""
    assert harness.admin("POST", "/v1/policies", json={"document": policy}).status_code == 201
    budget = {"agents": ["Bot"], "connector": "slack", "action": "slack.*",
              "measure": "count", "limit": 1}  # fmt: skip
    assert harness.admin("PUT", "/v1/budgets/slack-daily", json=budget).status_code == 201
    key = harness.create_agent("Bot", sdk_default="allow")
    live = _dry_run(harness, key, _slack("hi"))
    assert live["status"] == "pending_approval"
    assert _sandbox(harness, _slack("hi")) == live


def test_firewall_transport_answers_as_the_server(
    guarded: tuple[Harness, str, list[AccessRule]],
) -> None:
    h, key, rules = guarded
    firewall = FirewallTransport(policies=[POLICY], access_rules=rules, agent="Bot")
    with firewall.client() as tf:
        for spec, _, _ in CASES:
            where, parameters = spec["resource"], spec["parameters"]
            fake = tf.dry_run(spec["type"], provider=where["provider"],
                              target=where.get("target"), parameters=parameters)  # fmt: skip
            assert fake.decision.to_dict() == _dry_run(h, key, spec)["decision"], spec["type"]
