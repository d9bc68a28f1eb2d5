"""Replay applies the budget verdict a record names over the rules' verdict, as live did:
the stricter stands (a budget refuses or holds what the rules let through; a deny rule
decides before any budget). One row per (rules, recorded budget) pair; a record naming
anything else is refused (skipped by the store, never guessed)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from agentfirewall.actions import parse_action_spec
from agentfirewall.policy import AccessRule, Engine, EvaluationContext
from agentfirewall.policy.record import record_input, restore_input
from agentfirewall.policy.replay import Recorded, recorded_budget, replay_one, with_budget

SPEC = parse_action_spec({"type": "stripe.transfer.create", "resource": {"provider": "stripe"},
                          "parameters": {"amount": 2500, "currency": "usd"}})  # fmt: skip
CTX = EvaluationContext(agent="Bot", mode="proxy", connector="stripe",
                        now=datetime(2026, 12, 1, tzinfo=UTC))  # fmt: skip

#: (the rules' verdict, the budget's recorded one) -> the replayed verdict
TABLE = [
    ("allow", None, "allow"),
    ("allow", "require_approval", "require_approval"),
    ("allow", "deny", "deny"),
    ("require_approval", None, "require_approval"),
    ("require_approval", "require_approval", "require_approval"),
    ("require_approval", "deny", "deny"),
    ("deny", None, "deny"),
    ("deny", "require_approval", "deny"),
    ("deny", "deny", "deny"),
]


@pytest.mark.parametrize(("rules", "budget", "replayed"), TABLE)
def test_the_recorded_budget_verdict_applies_over_the_rules(
    rules: str, budget: str | None, replayed: str
) -> None:
    engine = Engine(access_rules=[AccessRule("Bot", "stripe", "stripe.*", rules, id="r1")])
    record = record_input(SPEC, CTX)
    if budget is not None:
        record = with_budget(record, budget, "stripe-daily")
        assert record is not None
    spec, ctx = restore_input(record, "Bot")
    decision = replay_one(
        engine, Recorded("t:1", "proxy", spec, ctx, budget=recorded_budget(record))
    )
    assert (decision.decided_outcome or decision.outcome) == replayed
    if budget is not None and replayed != rules:  # the budget decided: it says which
        assert decision.matched_rules == ("budget `stripe-daily`",)
        assert decision.reason.startswith("budget `stripe-daily`: ")


def test_a_record_is_marked_on_a_copy() -> None:
    """A remembered decision's record is shared by later requests: never changed in place."""
    record = record_input(SPEC, CTX)
    marked = with_budget(record, "require_approval", "stripe-daily")
    assert recorded_budget(record) is None
    assert marked is not None
    assert recorded_budget(marked) == ("require_approval", "stripe-daily")
    assert with_budget(None, "deny", "stripe-daily") is None


@pytest.mark.parametrize(
    "found", ["deny", ["allow", "x"], ["deny"], ["deny", 1], {"o": "deny"}, ["held", "x"]]
)
def test_a_record_naming_anything_else_is_unreadable(found: object) -> None:
    with pytest.raises(ValueError, match="not a recorded budget verdict"):
        recorded_budget({**record_input(SPEC, CTX), "b": found})
