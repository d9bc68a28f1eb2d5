"""Replay decides a stored record as live decided it; suggest grants nothing unseen (task H2).

The property behind replay: for a decision of any kind (a gateway request, one decided as
several actions ``"x"``, one whose body was not inspected whole, an SDK action with its
build alias and content detections, one a budget refused or held), the stored record,
read back (``record_input`` -> ``replaystore.input_text`` -> ``restore_input``), decides
as the live input did under any configuration, unless the record withheld a value
(``partial``: then a rule reading it may differ, and is counted so).

The property behind suggest: a suggested allow or hold never covers an action of the
connector's catalogue that was not observed with that decision, and never a connector the
calls were not observed on.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from agentfirewall.actions import ActionSpec, Risk, parse_action_spec
from agentfirewall.connectors import performed_as
from agentfirewall.policy import AccessRule, Engine, EvaluationContext, load_policy
from agentfirewall.policy.globs import compile_glob
from agentfirewall.policy.guard import action_findings, guard_plan
from agentfirewall.policy.record import record_input, restore_also, restore_input
from agentfirewall.policy.replay import (
    Recorded,
    recorded_budget,
    replay_one,
    with_budget,
    with_findings,
)
from agentfirewall.policy.suggest import suggest_rules
from agentfirewall_server.replaystore import input_text
from tests.fuzzscale import examples

BASE = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
ACTIONS = ("stripe.transfer.create", "stripe.balance.get", "github.pr.merge",
           "payment.transfer.initiate", "slack.chat.post")  # fmt: skip
NAMES = ("amount", "currency", "base", "note", "n", "tags", "email")
_LEAF = (
    "{field: action_spec.parameters.amount, operator: gt, value: 1000}",
    "{field: action_spec.parameters.amount, operator: equals, value: 1.5}",
    '{field: action_spec.parameters.currency, operator: in, value: [usd, eur, "é"]}',
    "{field: action_spec.parameters.base, operator: matches, value: '^rel'}",
    "{field: action_spec.parameters.note, operator: exists, value: true}",
    "{field: action_spec.parameters.tags, operator: contains, value: prod}",
    "{field: action_spec.parameters.n, operator: lt, value: 0}",
    "{field: action_spec.resource.target, operator: starts_with, value: [acme/]}",
    "{field: action_spec.resource.environment, operator: equals, value: production}",
    "{field: context.risk, operator: equals, value: high}",
    "{field: content.pii, operator: contains, value: email}",
    "{field: context.time, operator: time_window, value: {start: '09:00', end: '17:00'}}",
)
_DECISIONS = ("deny", "require_approval", "allow", "redact")
scalars = st.one_of(
    st.integers(-(2**70), 2**70), st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(), st.none(), st.text(max_size=12),
    st.sampled_from(["usd", "é", "release/1", "prod", "a@b.example", "ghp_" + "a1" * 18]),
)  # fmt: skip
values = st.one_of(scalars, st.lists(scalars, max_size=3),
                   st.dictionaries(st.sampled_from(["k", "v"]), scalars, max_size=2))  # fmt: skip


@st.composite
def engines(draw: st.DrawFn) -> Engine:
    rules = []
    for index in range(draw(st.integers(0, 4))):
        leaf = draw(st.sampled_from(_LEAF))
        decision = draw(st.sampled_from(_DECISIONS))
        rules.append(f"  - name: r{index}\n    decision: {decision}\n    conditions: [{leaf}]\n")
    policies = [load_policy("name: p\nrules:\n" + "".join(rules))] if rules else []
    access = [AccessRule("Bot", c, p, d, id=f"a{i}") for i, (c, p, d) in enumerate(draw(
        st.lists(st.tuples(st.sampled_from(["stripe", "github", "slack", "*"]),
                           st.sampled_from(["*", "stripe.*", "github.pr.merge", "payment.*"]),
                           st.sampled_from(["allow", "deny", "require_approval"])),
                 max_size=3)))]  # fmt: skip
    return Engine(access_rules=access, policies=policies)


def _spec(draw: st.DrawFn, action: str) -> ActionSpec:
    params = draw(st.dictionaries(st.sampled_from(NAMES), values, max_size=4))
    resource = {"provider": action.split(".")[0],
                "target": draw(st.sampled_from(["acme/api", "other/x", "acme/é"])),
                "environment": draw(st.sampled_from(["production", "dev"]))}  # fmt: skip
    return parse_action_spec({"type": action, "resource": resource, "parameters": params})


@st.composite
def decisions(draw: st.DrawFn) -> tuple[Engine, Recorded, Recorded, bool]:
    """An engine, a live input (as a Recorded, never stored), the same read back from its
    stored record, and whether the record withheld a value."""
    engine = draw(engines())
    action = draw(st.sampled_from(ACTIONS))
    spec = _spec(draw, action)
    mode = draw(st.sampled_from(["proxy", "sdk"]))
    ctx = EvaluationContext(
        agent="Bot", mode=mode, connector=action.split(".")[0],
        now=BASE + timedelta(minutes=draw(st.integers(0, 60 * 24 * 7)),
                             microseconds=draw(st.integers(0, 999_999))),
        enforcement_level=draw(st.sampled_from(["full_enforce", "monitor", "soft_enforce"])),
        sdk_default=draw(st.sampled_from(["allow", "deny"])),
        risk=draw(st.sampled_from([None, "low", "high"])) if mode == "proxy" else None,
    )  # fmt: skip
    plan = guard_plan(engine.policies)
    if mode == "sdk":  # the content step on what the live policies' detectors found
        ctx, _ = with_findings(ctx, plan, action_findings(plan, spec))
    also: list[tuple[ActionSpec, Risk]] = []
    if mode == "proxy" and draw(st.booleans()):  # a request decided as several
        risks = st.sampled_from(["low", "high"])
        also = [(_spec(draw, draw(st.sampled_from(ACTIONS))), draw(risks))
                for _ in range(draw(st.integers(1, 2)))]  # fmt: skip
    unseen = mode == "proxy" and draw(st.booleans())
    data = record_input(spec, ctx, unseen=unseen, also=also)
    budget = draw(st.sampled_from([None, "deny", "require_approval"]))
    if budget is not None:
        data = with_budget(data, budget, "spend")
    text = input_text(data)  # as the control plane stores it (orjson, or json)
    if text is None:  # longer than a record may be: not stored, not replayable
        text = json.dumps(data, ensure_ascii=False)
    stored = json.loads(text)
    again, again_ctx = restore_input(stored, "Bot")
    performed = performed_as(spec) if mode == "sdk" else None
    live = Recorded("live", mode, spec, ctx, unseen=unseen, performed=performed,
                    budget=recorded_budget(data),
                    also=tuple((o, dataclasses.replace(ctx, risk=r))
                               for o, r in also))  # fmt: skip
    replayed = Recorded("stored", mode, again, again_ctx, unseen=bool(stored.get("u")),
                        performed=performed_as(again) if mode == "sdk" else None,
                        budget=recorded_budget(stored),
                        also=restore_also(stored, again, again_ctx))  # fmt: skip
    return engine, live, replayed, bool(stored.get("w"))


@settings(max_examples=examples(300), deadline=None)
@given(decisions())
def test_a_stored_record_replays_to_the_live_decision(
    found: tuple[Engine, Recorded, Recorded, bool],
) -> None:
    engine, live, replayed, partial = found
    before, after = replay_one(engine, live), replay_one(engine, replayed)
    if not partial:
        assert after.to_dict() == before.to_dict()


observed_calls = st.lists(
    st.tuples(st.sampled_from(["stripe", "github", "custom"]),
              st.sampled_from((*ACTIONS, "stripe.unknown.post", "custom.thing.do")),
              st.sampled_from([None, "low", "medium", "high"])),
    max_size=20,
)  # fmt: skip
CATALOGUES: dict[str, dict[str, Risk]] = {
    "stripe": {"stripe.transfer.create": "high", "stripe.balance.get": "low",
               "stripe.balance.list": "low", "stripe.refund.create": "high"},
    "github": {"github.pr.merge": "high", "github.pr.get": "low"},
}  # fmt: skip


@settings(max_examples=examples(300), deadline=None)
@given(observed_calls)
def test_a_suggested_rule_grants_no_catalogued_action_unseen(
    calls: list[tuple[str, str, Risk | None]],
) -> None:
    rules = suggest_rules("Bot", calls, CATALOGUES)
    assert (rules[-1].connector, rules[-1].action_pattern, rules[-1].decision) == ("*", "*", "deny")
    seen = {(c, a) for c, a, _ in calls}
    for rule in rules[:-1]:
        assert rule.connector in {c for c, _, _ in calls}
        glob = compile_glob(rule.action_pattern)
        granted = [a for a in CATALOGUES.get(rule.connector, {}) if glob.matches(a)]
        for action in granted:
            assert (rule.connector, action) in seen, (rule, action)
        covered = {(rule.connector, x) for x in rule.actions}
        risks = {r or CATALOGUES.get(c, {}).get(a) for c, a, r in calls if (c, a) in covered}
        if "high" in risks:  # the route's risk, else the catalogue's
            assert rule.decision == "require_approval"
