"""The shadow judgement (agentfirewall_server.shadow), property-tested on the replay suite's
decisions: an unchanged shadow never diverges, the live verdict it reports is the live
decision's whatever the shadow says, and a shadow policy replaces the live one by name."""

from __future__ import annotations

import json

from hypothesis import given, settings

from agentfirewall.actions import ActionSpec, parse_action_spec
from agentfirewall.policy import Engine, EvaluationContext, KillSwitch, load_policy
from agentfirewall.policy.record import record_input
from agentfirewall.policy.replay import responsible, verdict
from agentfirewall_server.shadow import (
    ShadowConfig,
    judge_action,
    judge_input,
    shadow_columns,
    shadow_engine,
)
from tests.core.test_policy_replay import BASE, DENY_BIG, ENGINE, RULES, _policies, decisions
from tests.fuzzscale import examples

DENY_ALL = "name: deny-everything\nrules:\n  - {name: all, decision: deny}\n"
LIVE = [(p.name, True, p) for p in _policies()]


def _shadow(*texts: str, rules: tuple[object, ...] = ()) -> ShadowConfig:
    loaded = [load_policy(t) for t in texts]
    engine = shadow_engine(LIVE, loaded, RULES, list(rules), [])  # type: ignore[arg-type]
    return ShadowConfig(engine, [], [])


def _stored(spec: ActionSpec, ctx: EvaluationContext) -> str:
    return json.dumps(record_input(spec, ctx))


UNCHANGED = _shadow()
DENY = _shadow(DENY_ALL)


@settings(max_examples=examples(100), deadline=None)
@given(decisions())
def test_an_unchanged_shadow_never_diverges(found: tuple[ActionSpec, EvaluationContext]) -> None:
    spec, ctx = found
    live = ENGINE.evaluate(spec, ctx)
    by_sdk = judge_action(UNCHANGED, spec, ctx, live)
    by_input = judge_input(ENGINE, UNCHANGED, ctx.agent, _stored(spec, ctx))
    assert by_sdk is not None
    assert by_input is not None
    assert not by_sdk.diverged
    assert not by_input.diverged
    assert by_sdk.live == verdict(live)


@settings(max_examples=examples(100), deadline=None)
@given(decisions())
def test_the_live_verdict_is_reported_unchanged_under_a_shadow_deny_all(
    found: tuple[ActionSpec, EvaluationContext],
) -> None:
    spec, ctx = found
    live = ENGINE.evaluate(spec, ctx)
    before = live.to_dict()
    judged = judge_action(DENY, spec, ctx, live)
    assert judged is not None
    assert live.to_dict() == before  # the live decision object is not touched
    assert (judged.live, judged.shadow) == (verdict(live), "deny")
    assert judged.diverged == (verdict(live) != "deny")
    assert judged.rule == responsible(DENY.engine.evaluate(spec, ctx))


def test_a_shadow_policy_replaces_the_live_one_of_its_name() -> None:
    off = DENY_BIG.replace("name: no-big-transfers", "name: no-big-transfers\nenabled: false")
    engine = _shadow(off).engine
    assert "no-big-transfers" not in {p.name for p in engine.policies}
    assert len(engine.policies) == len(LIVE) - 1
    assert engine.access_rules == tuple(RULES)  # no shadow permission set: the live rules


def test_kill_switches_stay_live_and_nothing_installed_judges_nothing() -> None:
    switch = [KillSwitch("all", None, "stop")]
    engine = shadow_engine(LIVE, [], RULES, [], switch)
    assert engine.kill_switches == tuple(switch)
    spec = parse_action_spec({"type": "stripe.balance.get", "resource": {"provider": "stripe"}})
    ctx = EvaluationContext(agent="Bot", mode="proxy", now=BASE, connector="stripe")
    assert judge_action(None, spec, ctx, Engine().evaluate(spec, ctx)) is None
    assert judge_input(ENGINE, None, "Bot", _stored(spec, ctx)) is None
    assert judge_input(ENGINE, UNCHANGED, "Bot", "{not json") is None  # never guessed
    assert shadow_columns(None) == dict.fromkeys(
        ("shadow_decision", "shadow_rule", "shadow_diverged")
    )
