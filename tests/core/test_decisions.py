"""Decisions: the enforcement truth table, the wire form, raise_for_denial."""

from __future__ import annotations

import pytest

from agentfirewall.decisions import (
    ApprovalRequirement,
    Decision,
    apply_enforcement,
    normalize_level,
    normalize_outcome,
)
from agentfirewall.errors import ActionDenied

# (rules said, level, kill switch) -> (enforced outcome, would_outcome)
TRUTH_TABLE = [
    ("allow", "monitor", False, "allow", None),
    ("deny", "monitor", False, "allow", "would_deny"),
    ("require_approval", "monitor", False, "allow", "would_hold"),
    ("allow", "soft_enforce", False, "allow", None),
    ("deny", "soft_enforce", False, "allow", "would_deny"),
    ("require_approval", "soft_enforce", False, "require_approval", None),
    ("allow", "full_enforce", False, "allow", None),
    ("deny", "full_enforce", False, "deny", None),
    ("require_approval", "full_enforce", False, "require_approval", None),
    ("deny", "monitor", True, "deny", None),
    ("deny", "soft_enforce", True, "deny", None),
    ("deny", "full_enforce", True, "deny", None),
]


@pytest.mark.parametrize(("decided", "level", "kill", "enforced", "would"), TRUTH_TABLE)
def test_enforcement_truth_table(
    decided: str, level: str, kill: bool, enforced: str, would: str | None
) -> None:
    raw = Decision(outcome=normalize_outcome(decided), reason="r", kill_switch=kill)
    result = apply_enforcement(raw, normalize_level(level))
    assert result.outcome == enforced
    assert result.would_outcome == would
    assert result.decided_outcome == decided
    assert result.enforcement_level == level


def test_enforcement_is_idempotent() -> None:
    once = apply_enforcement(Decision(outcome="deny", reason="r"), "monitor")
    assert apply_enforcement(once, "monitor") == once
    assert apply_enforcement(once, "full_enforce").outcome == "deny"


def test_aliases() -> None:
    assert normalize_outcome("requires_approval") == "require_approval"
    assert normalize_level("L0") == "monitor"
    assert normalize_level("l2") == "full_enforce"
    with pytest.raises(ValueError, match="unknown decision `maybe`"):
        normalize_outcome("maybe")
    with pytest.raises(ValueError, match="unknown enforcement level"):
        normalize_level("strict")


def test_status_words_match_the_sdk() -> None:
    assert Decision(outcome="allow", reason="").status == "allowed"
    assert Decision(outcome="deny", reason="").status == "denied"
    assert Decision(outcome="require_approval", reason="").status == "pending_approval"


def test_raise_for_denial() -> None:
    allowed = Decision(outcome="allow", reason="No deny rules matched")
    assert allowed.raise_for_denial() is allowed
    denied = Decision(outcome="deny", reason="repo deletes are blocked")
    with pytest.raises(ActionDenied, match="repo deletes are blocked") as err:
        denied.raise_for_denial()
    assert err.value.decision is denied


def test_wire_form_round_trips() -> None:
    decision = apply_enforcement(
        Decision(
            outcome="require_approval",
            reason="merges to main need a human",
            risk_score=70,
            matched_policies=("protect-main",),
            matched_rules=("protect-main/merge-to-main",),
            approval=ApprovalRequirement(timeout_seconds=3600, approver_roles=("admin", "owner")),
        ),
        "soft_enforce",
    )
    wire = decision.to_dict()
    assert wire["outcome"] == "require_approval"
    assert wire["matched_policies"] == ["protect-main"]
    assert wire["approval"] == {"timeout_seconds": 3600, "approver_roles": ["admin", "owner"]}
    assert Decision.from_dict(wire) == decision


def test_from_dict_accepts_the_seed_minimal_shape() -> None:
    seed = {
        "outcome": "allow",
        "reason": "No deny rules matched",
        "risk_score": 0.3,
        "matched_policies": ["github-safe-defaults"],
    }
    decision = Decision.from_dict(seed)
    assert decision.allowed
    assert decision.risk_score == 0.3
    assert decision.matched_policies == ("github-safe-defaults",)
