"""An SDK action's recorded input replays to the decision live made (``evaluate_sdk``, the
one implementation live, shadow and replay share): under its build alias, with the SDK
content step on the detector names the record kept. Before, replay called the bare
engine: an alias deny drifted to allow, and a `redact` rule, which refuses in SDK mode,
replayed as allow."""

from __future__ import annotations

from datetime import UTC, datetime

from agentfirewall.actions import ActionSpec, parse_action_spec
from agentfirewall.connectors import performed_as
from agentfirewall.policy import AccessRule, Engine, EvaluationContext, load_policy
from agentfirewall.policy.guard import action_findings, guard_plan
from agentfirewall.policy.record import record_input, restore_input
from agentfirewall.policy.replay import (
    Recorded,
    evaluate_sdk,
    replay,
    replay_one,
    verdict,
    with_findings,
)

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
TRANSFER = parse_action_spec(
    {"type": "payment.transfer.initiate", "resource": {"provider": "stripe"},
     "parameters": {"amount": 100, "currency": "usd", "destination": "acct_1"}}
)  # fmt: skip
NO_TRANSFERS = load_policy(
    "name: no-transfers\nrules:\n  - name: deny-transfer\n    decision: deny\n    conditions:"
    " [{field: action_spec.type, operator: equals, value: stripe.transfer.create}]\n"
)
CARDS = (
    "name: content\nrules:\n  - name: cards\n    decision: redact\n"
    "    conditions: [{field: content.pii, operator: contains, value: card_number}]\n"
)
MESSAGE = parse_action_spec(
    {"type": "slack.message.post", "resource": {"provider": "slack"},
     "parameters": {"channel": "C1", "note": "card 4111 1111 1111 1111"}}
)  # fmt: skip


def _ctx(sdk_default: str = "allow", connector: str = "stripe") -> EvaluationContext:
    return EvaluationContext(agent="Bot", mode="sdk", now=NOW, connector=connector,
                             sdk_default=sdk_default)  # type: ignore[arg-type]  # fmt: skip


def _recorded(spec: ActionSpec, ctx: EvaluationContext, live: str) -> Recorded:
    """As the control plane stores and restores it (``replaystore``, ``routes/replay``)."""
    spec, ctx = restore_input(record_input(spec, ctx), "Bot")
    return Recorded("action:1", "sdk", spec, ctx, live, performed=performed_as(spec))


def test_an_alias_replays_as_live_decided_it() -> None:
    engine = Engine(policies=[NO_TRANSFERS])
    live = evaluate_sdk(engine, TRANSFER, _ctx(), performed_as(TRANSFER))
    assert verdict(live) == "deny"
    assert "runs as" in live.reason
    item = _recorded(TRANSFER, _ctx(), verdict(live))
    assert replay_one(engine, item) == live
    assert replay([item], engine, engine).drifted == 0
    dropped = replay([item], engine, Engine())
    assert (dropped.drifted, dict(dropped.changes)) == (0, {"deny->allow": 1})
    assert dropped.rules == {"deny->allow": {"no-transfers/deny-transfer": 1}}


def test_a_default_for_the_performed_name_does_not_overrule_a_grant() -> None:
    engine = Engine(access_rules=[AccessRule("Bot", "stripe", "payment.*", "allow", id="a")])
    live = evaluate_sdk(engine, TRANSFER, _ctx("deny"), performed_as(TRANSFER))
    assert verdict(live) == "allow"
    assert verdict(replay_one(engine, _recorded(TRANSFER, _ctx("deny"), "allow"))) == "allow"


def test_a_redact_rule_replays_as_the_refusal_live_gave() -> None:
    engine = Engine(policies=[load_policy(CARDS)])
    plan = guard_plan(engine.policies)
    ctx, findings = with_findings(_ctx(connector="slack"), plan, action_findings(plan, MESSAGE))
    live = evaluate_sdk(engine, MESSAGE, ctx, plan=plan, findings=findings)
    assert (verdict(live), live.matched_rules) == ("deny", ("content/cards",))
    item = _recorded(MESSAGE, ctx, verdict(live))
    replayed = replay_one(engine, item)
    assert (verdict(replayed), replayed.matched_rules) == ("deny", ("content/cards",))
    assert replay([item], engine, engine).drifted == 0
    deny = Engine(policies=[load_policy(CARDS.replace("redact", "deny"))])
    assert dict(replay([item], engine, deny).changes) == {}  # deny either way
    assert dict(replay([item], engine, Engine()).changes) == {"deny->allow": 1}
