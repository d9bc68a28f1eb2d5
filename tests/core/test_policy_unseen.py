"""Fail closed on unseen request data: the strictest outcome a rule reading it could give."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from agentfirewall.actions import ActionSpec, parse_action_spec
from agentfirewall.policy import AccessRule, Engine, EvaluationContext, Policy, load_policy
from agentfirewall.policy.unseen import UNSEEN_REASON, reads_request_data, unseen_decision

CTX = EvaluationContext(agent="Bot", mode="proxy", now=datetime(2026, 1, 1, tzinfo=UTC))
ALLOW = [AccessRule(agent="Bot", connector="*", action_pattern="openai.*", decision="allow")]


def _policy(decision: str, field: str = "action_spec.parameters.model") -> Policy:
    condition = {"field": field, "operator": "equals", "value": "gpt-forbidden"}
    rule = {"name": "r", "decision": decision, "reason": "because", "conditions": condition}
    return load_policy({"name": f"p-{decision}", "rules": [rule]})


def _spec(**parameters: object) -> ActionSpec:
    return parse_action_spec(
        {
            "type": "openai.chat.create",
            "resource": {"provider": "openai"},
            "parameters": parameters,
            "risk_hints": {"body_truncated": True},
        }
    )


@pytest.mark.parametrize(
    ("decisions", "expected"),
    [
        (["deny"], "deny"),
        (["require_approval"], "require_approval"),
        (["require_approval", "deny"], "deny"),
        (["allow"], "allow"),
        ([], "allow"),
    ],
)
def test_the_strictest_rule_reading_request_data_decides(
    decisions: list[str], expected: str
) -> None:
    engine = Engine(ALLOW, [_policy(d) for d in decisions])
    spec = _spec(model="gpt-4o")  # what was seen does not match the rule
    seen = engine.evaluate(spec, CTX)
    assert seen.outcome == "allow"
    decision = unseen_decision(engine, spec, CTX, seen)
    assert decision.outcome == expected
    if expected != "allow":
        assert decision.reason.startswith(UNSEEN_REASON)
        assert "p-" in decision.reason
    if expected == "require_approval":
        assert decision.approval is not None


def test_rules_on_static_fields_and_context_are_not_widened() -> None:
    static = _policy("deny", "action_spec.type")
    context = _policy("deny", "context.agent")
    engine = Engine(ALLOW, [static, context])
    spec = _spec()
    seen = engine.evaluate(spec, CTX)
    assert unseen_decision(engine, spec, CTX, seen) is seen


def test_a_decided_deny_and_enforcement_levels_are_kept() -> None:
    engine = Engine(ALLOW, [_policy("deny")])
    spec = _spec(model="gpt-forbidden")
    seen = engine.evaluate(spec, CTX)
    assert unseen_decision(engine, spec, CTX, seen) is seen
    monitor = EvaluationContext(agent="Bot", mode="proxy", now=CTX.now,
                                enforcement_level="monitor")  # fmt: skip
    relaxed = unseen_decision(engine, _spec(), monitor, engine.evaluate(_spec(), monitor))
    assert relaxed.outcome == "allow"
    assert relaxed.would_outcome == "would_deny"


@pytest.mark.parametrize(
    ("field", "reads"),
    [("action_spec.parameters.model", True), ("parameters.a.b", True),
     ("action_spec.resource.target", True), ("risk_hints.x", True), ("action_spec.type", False),
     ("resource.environment", False), ("context.agent", False), ("context.time", False)],
)  # fmt: skip
def test_which_fields_a_body_may_decide(field: str, reads: bool) -> None:
    assert reads_request_data(field) is reads
