"""The engine: evaluation order, specificity, indexing, explain, context checks, purity."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime

import pytest

from agentfirewall.actions import parse_action_spec
from agentfirewall.decisions import apply_enforcement
from agentfirewall.policy import (
    AccessRule,
    Engine,
    EvaluationContext,
    KillSwitch,
    Policy,
    load_policy,
    preset_rules,
)
from agentfirewall.policy.permissions import AccessIndex
from tests.core.conftest import MakeContext

MERGE = parse_action_spec(
    {"type": "github.pr.merge", "resource": {"provider": "github"}, "parameters": {"base": "main"}}
)


def _policy(name: str, action: str, decision: str, agent: str = "*", **extra: object) -> Policy:
    return load_policy(
        {
            "name": name,
            "scope": {"action_types": [action], "agents": [agent]},
            "rules": [{"name": "r", "decision": decision, **extra}],
        }
    )


def test_access_rule_normalizes_and_validates() -> None:
    rule = AccessRule("Bot", "github", "github.pr.*", "requires_approval")  # type: ignore[arg-type]
    assert rule.decision == "require_approval"
    assert rule.label == "Bot:github:github.pr.*"
    assert AccessRule("Bot", "github", "*", "allow", id="perm_1").label == "perm_1"
    with pytest.raises(ValueError, match="unknown decision"):
        AccessRule("Bot", "github", "*", "yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="invalid action pattern"):
        AccessRule("Bot", "github", "GitHub.*", "allow")


def test_kill_switch_validation() -> None:
    assert KillSwitch("all").label == "kill_switch:all"
    with pytest.raises(ValueError, match="needs a target"):
        KillSwitch("agent")
    with pytest.raises(ValueError, match="unknown kill switch scope"):
        KillSwitch("everything")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"mode": "cloud"}, "unknown mode"),
        ({"now": datetime(2026, 1, 1)}, "timezone-aware"),
        ({"sdk_default": "require_approval"}, "sdk default"),
        ({"risk": "extreme"}, "unknown risk"),
        ({"enforcement_level": "L9"}, "enforcement level"),
    ],
)
def test_context_is_checked(
    make_ctx: MakeContext, overrides: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        make_ctx(**overrides)


def test_context_accepts_level_aliases(make_ctx: MakeContext) -> None:
    assert make_ctx(enforcement_level="L1").enforcement_level == "soft_enforce"


def test_presets() -> None:
    index = AccessIndex(preset_rules("Bot", "github", "read-only"))
    prefixes = ("github.pr.", "github.", "")
    assert index.lookup("Bot", "github", "github.pr.list", prefixes).decision == "allow"  # type: ignore[union-attr]
    assert index.lookup("Bot", "github", "github.pr.merge", prefixes).decision == "deny"  # type: ignore[union-attr]
    assert [r.decision for r in preset_rules("A", "slack", "allow-all")] == ["allow"]
    assert preset_rules("A", "slack", "require-approval")[0].decision == "require_approval"
    with pytest.raises(ValueError, match="unknown preset"):
        preset_rules("A", "slack", "everything")  # type: ignore[arg-type]


def test_index_keeps_unrelated_policies_out(make_ctx: MakeContext) -> None:
    policies = [
        _policy(f"p{i}", f"svc{i}.thing.*", "deny", agent=f"agent-{i}") for i in range(5000)
    ]
    policies.append(_policy("mine", "github.pr.*", "require_approval", agent="Bot"))
    policies.append(_policy("global", "github.*", "allow"))
    engine = Engine(policies=policies)
    decision = engine.evaluate(MERGE, make_ctx())
    assert decision.outcome == "require_approval"
    assert decision.matched_policies == ("mine", "global")  # same priority: given order
    candidates = engine._index.candidates("Bot", "github.pr.merge", ("github.pr.", "github.", ""))
    assert [p.name for p in candidates] == ["mine", "global"]


def test_disabled_policies_are_not_compiled() -> None:
    disabled = load_policy(
        {"name": "off", "enabled": False, "rules": [{"name": "r", "decision": "deny"}]}
    )
    assert Engine(policies=[disabled])._index.compiled == []


def test_full_enforce_matches_apply_enforcement(make_ctx: MakeContext) -> None:
    engine = Engine(
        access_rules=[AccessRule("Bot", "github", "github.pr.*", "allow")],
        policies=[_policy("hold", "github.pr.merge", "require_approval")],
    )
    for level in ("monitor", "soft_enforce", "full_enforce"):
        for mode in ("sdk", "proxy"):
            ctx = make_ctx(mode=mode, enforcement_level=level)
            decision = engine.evaluate(MERGE, ctx)
            assert decision == apply_enforcement(decision, level)
            assert decision.enforcement_level == level
            assert engine.explain(MERGE, ctx).decision == decision


def test_explain_names_each_step(make_ctx: MakeContext) -> None:
    engine = Engine(
        access_rules=[AccessRule("Bot", "github", "github.pr.*", "allow")],
        policies=[
            _policy("hold", "github.pr.merge", "require_approval"),
            load_policy(
                {
                    "name": "prod-only",
                    "scope": {"environments": ["production"]},
                    "rules": [{"name": "r", "decision": "deny"}],
                }
            ),
        ],
    )
    explanation = engine.explain(MERGE, make_ctx(mode="proxy", connector="github"))
    steps = [(s.step, s.result) for s in explanation.steps]
    assert steps[0] == ("kill_switch", "inactive")
    assert steps[1] == ("access_rules", "allow")
    assert ("policies", "prod-only: out of scope") in steps
    assert ("policies", "hold: matched") in steps
    assert steps[-2] == ("policies", "require_approval")
    assert steps[-1] == ("enforcement", "require_approval")
    data = explanation.to_dict()
    assert data["decision"]["outcome"] == "require_approval"
    assert {"step", "result", "detail"} == set(data["explanation"][0])
    assert "=> require_approval" in explanation.render()


def test_a_failing_rule_fails_closed_even_for_an_allow_rule(make_ctx: MakeContext) -> None:
    policy = load_policy(
        {
            "name": "allow-short",
            "rules": [
                {
                    "name": "r",
                    "decision": "allow",
                    "conditions": [
                        {"field": "parameters.body", "operator": "matches", "value": "ok"}
                    ],
                }
            ],
        }
    )
    spec = parse_action_spec({"type": "webhook.post", "parameters": {"body": "ok" * 5000}})
    decision = Engine(policies=[policy]).evaluate(spec, make_ctx())
    assert decision.outcome == "deny"
    assert decision.matched_rules == ("allow-short/r",)
    assert "allow-short/r" in decision.errors[0]


def test_kill_switch_beats_everything(make_ctx: MakeContext) -> None:
    engine = Engine(
        access_rules=[AccessRule("*", "*", "*", "allow")],
        kill_switches=[KillSwitch("connector", "github", reason="incident")],
    )
    decision = engine.evaluate(MERGE, make_ctx(enforcement_level="monitor", risk="high"))
    assert (decision.outcome, decision.reason, decision.kill_switch) == (
        "deny",
        "kill_switch_active",
        True,
    )
    assert decision.risk_score == 80
    assert decision.status == "denied"


def test_many_evaluations_are_stable(make_ctx: MakeContext) -> None:
    engine = Engine(policies=[_policy("hold", "github.pr.merge", "require_approval")])
    ctx = make_ctx()
    first = engine.evaluate(MERGE, ctx)
    for index in range(20_000):  # beyond the memo caches' limits
        spec = parse_action_spec({"type": f"svc.x{index}.get"}) if index % 1000 == 0 else MERGE
        engine.evaluate(spec, ctx)
    assert engine.evaluate(MERGE, ctx) == first


def test_importing_the_engine_loads_no_io_stack() -> None:
    code = (
        "import sys, agentfirewall.policy, agentfirewall.policy.casefile\n"
        "bad = {'httpx', 'anyio', 'starlette', 'uvicorn'} & set(sys.modules)\n"
        "print(sorted(bad))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_evaluation_context_defaults(now: datetime) -> None:
    ctx = EvaluationContext(agent="Bot", mode="proxy", now=now)
    assert (ctx.connector, ctx.enforcement_level, ctx.sdk_default, ctx.risk) == (
        None,
        "full_enforce",
        "allow",
        None,
    )
    assert dict(ctx.attributes) == {}


def test_memoised_decisions_never_mix_up_rules(make_ctx: MakeContext) -> None:
    same_names = [
        load_policy(
            {
                "name": "dup",
                "scope": {"action_types": [action]},
                "rules": [{"name": "r", "decision": "deny", "reason": f"no {action}"}],
            }
        )
        for action in ("svc.a.run", "svc.b.run")
    ]
    engine = Engine(policies=same_names)
    ctx = make_ctx()
    for _ in range(3):
        for action in ("svc.a.run", "svc.b.run"):
            decision = engine.evaluate(parse_action_spec({"type": action}), ctx)
            assert decision.reason == f"no {action}"


def test_static_conditions_are_decided_per_plan(make_ctx: MakeContext) -> None:
    policy = load_policy(
        {
            "name": "p",
            "rules": [
                {
                    "name": "prod-merge",
                    "decision": "deny",
                    "conditions": {
                        "all": [
                            {"field": "action_spec.type", "operator": "equals", "value": "a.b.c"},
                            {"field": "resource.environment", "operator": "in", "value": ["prod"]},
                            {"field": "context.agent", "operator": "starts_with", "value": "ci-"},
                            {"field": "parameters.n", "operator": "gt", "value": 5},
                        ]
                    },
                }
            ],
        }
    )
    engine = Engine(policies=[policy])
    spec = parse_action_spec(
        {"type": "a.b.c", "resource": {"environment": "prod"}, "parameters": {"n": 9}}
    )
    assert engine.evaluate(spec, make_ctx(agent="ci-1")).outcome == "deny"
    assert engine.evaluate(spec, make_ctx(agent="dev")).outcome == "allow"
    small = parse_action_spec(
        {"type": "a.b.c", "resource": {"environment": "prod"}, "parameters": {"n": 1}}
    )
    assert engine.evaluate(small, make_ctx(agent="ci-1")).outcome == "allow"
    staging = parse_action_spec(
        {"type": "a.b.c", "resource": {"environment": "staging"}, "parameters": {"n": 9}}
    )
    assert engine.evaluate(staging, make_ctx(agent="ci-1")).outcome == "allow"
    prefixes = ("a.b.", "a.", "")
    assert engine._index.plan("dev", "a.b.c", "prod", prefixes).rules == ()  # decided statically
    live = engine._index.plan("ci-1", "a.b.c", "prod", prefixes).rules
    assert len(live) == 1
    assert live[0].test is not engine._index.compiled[0].rules[0].test


def test_a_rules_own_approval_terms_are_marked_as_its_own(make_ctx: MakeContext) -> None:
    """The gateway, `tf mcp wrap` and the control plane use a rule's approval timeout only
    when the rule wrote one: marked `explicit`, even when equal to the defaults, also after
    the document's round trip to a gateway (`to_document`, loaded as stored)."""
    written = _policy("own", "github.pr.*", "require_approval",
                      approval={"timeout_seconds": 300})  # fmt: skip
    unwritten = _policy("none", "github.pr.*", "require_approval")
    shipped = load_policy(written.to_document(), stored=True)
    permission = AccessRule("Bot", "github", "github.pr.merge", "require_approval")
    ctx = make_ctx(agent="Bot")
    cases = [([written], [], True), ([shipped], [], True), ([unwritten], [], False),
             ([], [permission], False)]  # fmt: skip
    for policies, rules, explicit in cases:
        approval = Engine(access_rules=rules, policies=policies).evaluate(MERGE, ctx).approval
        assert approval is not None
        assert (approval.timeout_seconds, approval.explicit) == (300, explicit)
