"""Recorded decision inputs replay to the live decision; a known change gives its diff."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from agentfirewall.actions import parse_action_spec
from agentfirewall.policy import (
    AccessRule,
    Engine,
    EvaluationContext,
    Policy,
    load_pack,
    load_policy,
)
from agentfirewall.policy.engine import Mode
from agentfirewall.policy.record import MAX_VALUE_BYTES, record_input, restore_input
from agentfirewall.policy.replay import Recorded, replay, replay_one
from tests.fuzzscale import examples

BASE = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
DENY_BIG = """\
name: no-big-transfers
rules:
  - name: big
    conditions:
      all:
        - {field: action_spec.parameters.amount, operator: gt, value: 1000}
    decision: deny
    reason: too much
"""
AFTER_HOURS = """\
name: office-hours
rules:
  - name: weekend
    conditions:
      all:
        - field: context.time
          operator: time_window
          value: {start: "00:00", end: "23:59", days: [sat, sun]}
    decision: require_approval
"""
ACTIONS = ("stripe.transfer.create", "stripe.balance.get", "github.pr.merge", "slack.message.send")
RULES = [
    AccessRule("Bot", "stripe", "stripe.*", "allow", id="r1"),
    AccessRule("Bot", "stripe", "stripe.transfer.create", "require_approval", id="r2"),
    AccessRule("Bot", "github", "github.*", "allow", id="r3"),
    AccessRule("Other", "*", "*", "deny", id="r4"),
    AccessRule("Bot", "slack", "slack.*", "allow", id="r5"),
]


def _policies() -> list[Policy]:
    texts = [DENY_BIG, AFTER_HOURS]
    return [load_policy(t) for t in texts] + [load_pack("slack-safe-defaults")]


ENGINE = Engine(access_rules=RULES, policies=_policies())
scalars = st.one_of(
    st.integers(-(10**6), 10**6), st.booleans(), st.none(), st.text(max_size=20),
    st.sampled_from(["main", "usd", "@channel hello", "acct_1"]),
)  # fmt: skip


@st.composite
def decisions(draw: st.DrawFn) -> tuple[object, EvaluationContext]:
    action = draw(st.sampled_from(ACTIONS))
    params = draw(
        st.dictionaries(
            st.sampled_from(["amount", "base", "currency", "channel", "text", "n"]),
            scalars,
            max_size=4,
        )
    )
    if draw(st.booleans()):  # a large value: withheld from the record
        params["blob"] = "x" * (MAX_VALUE_BYTES + 1)
    spec = parse_action_spec({"type": action, "resource": {"provider": action.split(".")[0],
                              "environment": draw(st.sampled_from(["production", "dev"]))},
                              "parameters": params})  # fmt: skip
    mode: Mode = draw(st.sampled_from(["proxy", "sdk"]))
    ctx = EvaluationContext(
        agent=draw(st.sampled_from(["Bot", "Other", "New"])),
        mode=mode,
        now=BASE + timedelta(minutes=draw(st.integers(0, 60 * 24 * 7)),
                             microseconds=draw(st.integers(0, 999_999))),
        connector=action.split(".")[0],
        enforcement_level=draw(st.sampled_from(["full_enforce", "monitor", "soft_enforce"])),
        sdk_default=draw(st.sampled_from(["allow", "deny"])),
        risk=draw(st.sampled_from([None, "low", "high"])) if mode == "proxy" else None,
    )  # fmt: skip
    return spec, ctx


@settings(max_examples=examples(200), deadline=None)
@given(decisions())
def test_replay_equals_the_live_decision(found: tuple[object, EvaluationContext]) -> None:
    spec, ctx = found
    engine = ENGINE
    live = engine.evaluate(spec, ctx)  # type: ignore[arg-type]
    stored = json.loads(json.dumps(record_input(spec, ctx)))  # type: ignore[arg-type]
    assert "blob" not in stored.get("p", {})
    again_spec, again_ctx = restore_input(stored, ctx.agent)
    item = Recorded("r", ctx.mode, again_spec, again_ctx)
    assert replay_one(engine, item).to_dict() == live.to_dict()


def test_content_parameters_are_withheld() -> None:
    spec = parse_action_spec({"type": "slack.message.send", "resource": {"provider": "slack"},
                              "parameters": {"channel": "C1", "text": "secret plans",
                                             "token": "xoxb-1"}})  # fmt: skip
    ctx = EvaluationContext(agent="Bot", mode="proxy", now=BASE, connector="slack")
    stored = record_input(spec, ctx)
    text = json.dumps(stored)
    assert "secret plans" not in text
    assert "xoxb-1" not in text
    assert stored["p"] == {"channel": "C1"}
    assert sorted(stored["w"]) == ["text", "token"]


def test_a_known_change_gives_the_expected_diff() -> None:
    live = Engine(access_rules=RULES[:1])
    candidate = Engine(access_rules=RULES[:1], policies=[load_policy(DENY_BIG)])
    ctx = EvaluationContext(agent="Bot", mode="proxy", now=BASE, connector="stripe")
    records = []
    for i, amount in enumerate([10, 5000, 20, 9000, 30]):
        spec = parse_action_spec({"type": "stripe.transfer.create",
                                  "parameters": {"amount": amount}})  # fmt: skip
        records.append(Recorded(f"t{i}", "proxy", spec, ctx, recorded="allow"))
    report = replay(records, live, candidate, examples=1).to_dict()
    assert (report["total"], report["unchanged"], report["drifted"]) == (5, 3, 0)
    assert report["changes"] == {"allow->deny": 2}
    assert report["rules"] == {"allow->deny": {"no-big-transfers/big": 2}}
    assert [e["id"] for e in report["examples"]["allow->deny"]] == ["t1"]
