"""`equals NAME` and `in [NAMES]` on a content field ask whether that detection was found.

A content field's value is the list of the detections found (``content.pii``:
``["card_number", "email"]``), and a list never equals a name nor is in a list of names:
before, ``content.pii in [card_number, iban]`` (deny) let a real card number through, while
the redaction targets (``guard._targets``) already read the same leaf as naming
detectors. Now `equals`/`in` ask what `contains` asks, and their negations the opposite.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from agentfirewall.actions import ActionSpec
from agentfirewall.policy import Engine, EvaluationContext, load_policy
from agentfirewall.policy.guard import action_findings, guard_plan
from agentfirewall.policy.replay import evaluate_sdk, with_findings

NOW = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
PII = ["card_number", "email", "iban", "phone_number"]
SPEC = ActionSpec(type="demo.note.create", resource={"provider": "demo"}, parameters={})


def _engine(leaf: dict[str, Any]) -> Engine:
    rule = {"name": "r", "decision": "deny", "reason": "pii", "conditions": [leaf]}
    return Engine(policies=[load_policy({"name": "guard", "rules": [rule]})])


def _matches(leaf: dict[str, Any], found: list[str]) -> bool:
    ctx = EvaluationContext(agent="Bot", mode="sdk", now=NOW, connector="demo",
                            attributes={leaf["field"]: found})  # fmt: skip
    return _engine(leaf).evaluate(SPEC, ctx).outcome == "deny"


@given(st.lists(st.sampled_from(PII), unique=True), st.lists(st.sampled_from(PII), min_size=1))
def test_in_and_not_in_ask_whether_any_named_detection_was_found(
    found: list[str], names: list[str]
) -> None:
    hit = any(name in names for name in found)
    assert _matches({"field": "content.pii", "operator": "in", "value": names}, found) is hit
    leaf = {"field": "content.pii", "operator": "not_in", "value": names}
    assert _matches(leaf, found) is not hit


@given(st.lists(st.sampled_from(PII), unique=True), st.sampled_from(PII))
def test_equals_and_not_equals_ask_whether_the_named_detection_was_found(
    found: list[str], name: str
) -> None:
    leaf = {"field": "content.pii", "operator": "equals", "value": name}
    assert _matches(leaf, found) is (name in found)
    contains = {"field": "content.pii", "operator": "contains", "value": name}
    assert _matches(contains, found) is (name in found)
    leaf = {"field": "content.pii", "operator": "not_equals", "value": name}
    assert _matches(leaf, found) is (name not in found)


def test_a_deny_rule_on_in_card_number_denies_a_real_card_number() -> None:
    """Before: allowed (a list of names is never in a list of names)."""
    engine = _engine({"field": "content.pii", "operator": "in", "value": ["card_number", "iban"]})
    plan = guard_plan(engine.policies)
    spec = ActionSpec(type="demo.note.create", resource={"provider": "demo"},
                      parameters={"text": "card 4111 1111 1111 1111 exp 12/29"})  # fmt: skip
    ctx = EvaluationContext(agent="Bot", mode="sdk", now=NOW, connector="demo")
    ctx, found = with_findings(ctx, plan, action_findings(plan, spec, ()))
    assert evaluate_sdk(engine, spec, ctx, plan=plan, findings=found).outcome == "deny"
    clean = ActionSpec(type="demo.note.create", resource={"provider": "demo"},
                       parameters={"text": "nothing to see"})  # fmt: skip
    ctx = EvaluationContext(agent="Bot", mode="sdk", now=NOW, connector="demo")
    ctx, found = with_findings(ctx, plan, action_findings(plan, clean, ()))
    assert evaluate_sdk(engine, clean, ctx, plan=plan, findings=found).outcome == "allow"
