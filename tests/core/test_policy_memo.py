"""The engine's memo: a remembered decision is always the one a fresh engine would build.

One long-lived engine sees a random sequence of requests; each answer must equal a fresh
engine's answer (no memo) for the same request, field for field, including the rules
that matched, the risk score and the errors of a rule that could not be evaluated.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from agentfirewall.actions import ActionSpec, parse_action_spec
from agentfirewall.policy import AccessRule, Engine, EvaluationContext, load_policy
from agentfirewall.policy.engine import _settled
from agentfirewall.policy.globs import dot_prefixes
from agentfirewall.policy.run import run_policies, settled_run
from tests.core.conftest import MakeContext
from tests.fuzzscale import examples


def _policy(name: str, actions: list[str], rules: list[dict[str, Any]], **scope: Any) -> Any:
    return load_policy({"name": name, "scope": {"action_types": actions, **scope}, "rules": rules})


POLICIES = [
    _policy(
        "big-charges",
        ["pay.*"],
        [
            {
                "name": "huge",
                "decision": "deny",
                "risk_score": 90,
                "conditions": [{"field": "parameters.amount", "operator": "gt", "value": 1000}],
            },
            {
                "name": "large",
                "decision": "require_approval",
                "risk_score": 60,
                "conditions": [{"field": "parameters.amount", "operator": "gt", "value": 100}],
            },
            {"name": "any", "decision": "allow", "risk_score": 10},
        ],
    ),
    _policy(
        "prod-only",
        ["pay.charge.create", "svc.*"],
        [{"name": "prod", "decision": "require_approval", "risk_score": 70}],
        environments=["prod"],
    ),
    _policy(
        # `matches` raises on a body over its input limit: sometimes a hit, sometimes a
        # failure of the same rule, for the same plan
        "bodies",
        ["svc.*", "pay.refund.create"],
        [
            {
                "name": "ok",
                "decision": "deny",
                "conditions": [{"field": "parameters.body", "operator": "matches", "value": "ok"}],
            },
            {
                "name": "later",
                "decision": "allow",
                "risk_score": 95,
                "conditions": [{"field": "parameters.body", "operator": "matches", "value": "x"}],
            },
        ],
    ),
    _policy(
        "bots",
        ["*"],
        [
            {
                "name": "ci",
                "decision": "allow",
                "risk_score": 5,
                "conditions": [
                    {"field": "context.agent", "operator": "starts_with", "value": "ci-"}
                ],
            }
        ],
    ),
]
ACCESS = [
    AccessRule("Bot", "pay", "pay.*", "allow"),
    AccessRule("*", "svc", "svc.x.*", "require_approval"),
    AccessRule("ci-1", "*", "*", "deny"),
]

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
ACTIONS = ["pay.charge.create", "pay.refund.create", "svc.x.run", "svc.y.get", "other.z.get"]
BODIES = [None, "ok", "x", "okx", "ok" * 2100, "x" * 4097, 7]


@st.composite
def requests(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    params: dict[str, Any] = {}
    amount = draw(st.sampled_from([None, 5, 100, 101, 1001, 2.5, "12"]))
    if amount is not None:
        params["amount"] = amount
    body = draw(st.sampled_from(BODIES))
    if body is not None:
        params["body"] = body
    spec = {
        "type": draw(st.sampled_from(ACTIONS)),
        "resource": {"environment": draw(st.sampled_from([None, "prod", "dev"]))},
        "parameters": params,
    }
    ctx = {
        "agent": draw(st.sampled_from(["Bot", "ci-1", "ci-2", "Other"])),
        "mode": draw(st.sampled_from(["sdk", "proxy"])),
        "connector": draw(st.sampled_from([None, "pay", "svc"])),
        "sdk_default": draw(st.sampled_from(["allow", "deny"])),
        "enforcement_level": draw(st.sampled_from(["full_enforce", "soft_enforce", "monitor"])),
        "risk": draw(st.sampled_from([None, "low", "high"])),
    }
    return spec, ctx


def _pair(request: tuple[dict[str, Any], dict[str, Any]]) -> tuple[ActionSpec, EvaluationContext]:
    spec, ctx = request
    return parse_action_spec(spec), EvaluationContext(now=NOW, **ctx)


@settings(max_examples=examples(150), deadline=None)
@given(st.lists(requests(), min_size=1, max_size=30), st.booleans())
def test_a_remembered_decision_equals_a_fresh_one(
    sequence: list[tuple[dict[str, Any], dict[str, Any]]], access: bool
) -> None:
    rules = ACCESS if access else []
    shared = Engine(access_rules=rules, policies=POLICIES)
    for request in sequence * 2:  # the second pass answers from the memo
        spec, ctx = _pair(request)
        fresh = Engine(access_rules=rules, policies=POLICIES).evaluate(spec, ctx)
        assert shared.evaluate(spec, ctx) == fresh
        assert shared.explain(spec, ctx).decision == fresh


def test_a_rule_that_fails_is_named_even_after_it_matched(make_ctx: MakeContext) -> None:
    engine = Engine(policies=POLICIES)
    ctx = make_ctx()
    short = parse_action_spec({"type": "svc.y.get", "parameters": {"body": "ok"}})
    long = parse_action_spec({"type": "svc.y.get", "parameters": {"body": "ok" * 2100}})
    assert engine.evaluate(short, ctx).errors == ()
    failed = engine.evaluate(long, ctx)
    assert failed.outcome == "deny"
    assert failed.errors[0].startswith("rule `bodies/ok` could not be evaluated")


@settings(max_examples=examples(200), deadline=None)
@given(requests(), st.sampled_from([0.0, 10.0, 50.0, 80.0]))
def test_the_settled_shortcut_agrees_with_the_full_run(
    request: tuple[dict[str, Any], dict[str, Any]], risk: float
) -> None:
    """`_settled` names the deciding rule only when the full run ends there, and the run
    `settled_run` builds from it is the full run's, field for field."""
    spec, ctx = _pair(request)
    index = Engine(policies=POLICIES)._index
    plan = index.plan(ctx.agent, spec.type, spec.resource.environment, dot_prefixes(spec.type))
    settled = _settled(plan, spec, ctx, risk)
    run = run_policies(plan, spec, ctx, risk)
    if settled is None:  # a rule raised, or a later rule may count: the full run decides
        return
    assert settled_run(plan, settled, risk) == run
    assert not run.errors
    assert run.matched == ()
