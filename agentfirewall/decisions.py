"""Decisions: what the firewall answered, with every reason.

A :class:`Decision` is data. ``outcome`` is what is enforced; ``decided_outcome``
is what the rules said before the enforcement level applied (so ``monitor`` can
report ``would_deny``). Calling :meth:`Decision.raise_for_denial` turns a deny into
:class:`~agentfirewall.errors.ActionDenied`, the way httpx's ``raise_for_status``
turns a bad status into an exception.

Enforcement levels (``L0``/``L1``/``L2``)::

    level          deny                     require_approval      kill switch
    monitor        allow, would_deny        allow, would_hold     deny
    soft_enforce   allow, would_deny        require_approval      deny
    full_enforce   deny                     require_approval      deny
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

from agentfirewall.errors import ActionDenied, ApprovalError

__all__ = [
    "ENFORCEMENT_LEVELS",
    "OUTCOMES",
    "ApprovalRequirement",
    "Decision",
    "EnforcementLevel",
    "Outcome",
    "Status",
    "apply_enforcement",
    "normalize_outcome",
    "status_for",
]

Outcome = Literal["allow", "deny", "require_approval"]
EnforcementLevel = Literal["monitor", "soft_enforce", "full_enforce"]
Status = Literal["allowed", "denied", "pending_approval"]

OUTCOMES: tuple[Outcome, ...] = ("allow", "deny", "require_approval")
ENFORCEMENT_LEVELS: tuple[EnforcementLevel, ...] = ("monitor", "soft_enforce", "full_enforce")
_LEVEL_ALIASES: dict[str, EnforcementLevel] = {
    "l0": "monitor",
    "l1": "soft_enforce",
    "l2": "full_enforce",
}
_OUTCOME_ALIASES: dict[str, Outcome] = {
    "allow": "allow",
    "deny": "deny",
    "require_approval": "require_approval",
    "requires_approval": "require_approval",
}
_STATUS: dict[Outcome, Status] = {
    "allow": "allowed",
    "deny": "denied",
    "require_approval": "pending_approval",
}


def normalize_outcome(value: str) -> Outcome:
    """Accept ``requires_approval`` (policy YAML spelling) as ``require_approval``."""
    try:
        return _OUTCOME_ALIASES[value]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown decision `{value}`: expected allow, deny or require_approval"
        ) from None


def normalize_level(value: str) -> EnforcementLevel:
    """Accept ``monitor``/``soft_enforce``/``full_enforce`` or ``L0``/``L1``/``L2``."""
    lowered = value.lower() if isinstance(value, str) else value
    if lowered in ENFORCEMENT_LEVELS:
        return lowered  # type: ignore[return-value]
    if lowered in _LEVEL_ALIASES:
        return _LEVEL_ALIASES[lowered]
    raise ValueError(
        f"unknown enforcement level `{value}`: expected monitor, soft_enforce or full_enforce"
    )


def status_for(outcome: Outcome) -> Status:
    """The SDK status word for an outcome (``allow`` -> ``allowed``)."""
    return _STATUS[outcome]


@dataclass(frozen=True, slots=True)
class ApprovalRequirement:
    """How a held action is approved: who may, and for how long it waits."""

    timeout_seconds: int = 300
    approver_roles: tuple[str, ...] = ("owner", "admin", "member")
    #: Written by the rule (``approval:``): its terms hold even where they equal these
    #: defaults; otherwise the control plane's ``approval_timeout_seconds`` setting does.
    explicit: bool = field(default=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "timeout_seconds": self.timeout_seconds,
            "approver_roles": list(self.approver_roles),
        }


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer for one action, with everything that led to it."""

    outcome: Outcome
    reason: str
    risk_score: float = 0.0
    matched_policies: tuple[str, ...] = ()
    matched_rules: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()
    default_applied: bool = False
    enforcement_level: EnforcementLevel = "full_enforce"
    decided_outcome: Outcome | None = None
    kill_switch: bool = False
    approval: ApprovalRequirement | None = None

    @property
    def status(self) -> Status:
        return _STATUS[self.outcome]

    @property
    def allowed(self) -> bool:
        return self.outcome == "allow"

    @property
    def denied(self) -> bool:
        return self.outcome == "deny"

    @property
    def would_outcome(self) -> str | None:
        """``would_deny`` / ``would_hold`` when the level let through what rules blocked."""
        decided = self.decided_outcome or self.outcome
        if decided == self.outcome:
            return None
        return "would_deny" if decided == "deny" else "would_hold"

    def raise_for_denial(self, action_request_id: str | None = None) -> Decision:
        """Return self (for chaining) only when the action may go ahead now.

        A deny raises ActionDenied. A hold raises ApprovalError (``status`` is
        ``pending_approval``): it is not allowed until a person approves, so code that
        enforces with this call never acts on it (``guard()`` waits for the approval).
        """
        if self.outcome == "deny":
            raise ActionDenied(self)
        if self.outcome == "require_approval":
            which = f"`{action_request_id}` " if action_request_id else ""
            raise ApprovalError(
                f"action {which}needs a person's approval ({self.reason}): wait with "
                "`wait_for_approval(action_request_id)`, or use `guard()`, which waits",
                status="pending_approval",
                action_request_id=action_request_id,
            )
        return self

    def to_dict(self) -> dict[str, Any]:
        """The wire form (seed's ``decision`` object plus the explanation fields)."""
        return {
            "outcome": self.outcome,
            "reason": self.reason,
            "risk_score": self.risk_score,
            "matched_policies": list(self.matched_policies),
            "matched_rules": list(self.matched_rules),
            "errors": list(self.errors),
            "default_applied": self.default_applied,
            "enforcement_level": self.enforcement_level,
            "decided_outcome": self.decided_outcome or self.outcome,
            "would_outcome": self.would_outcome,
            "kill_switch": self.kill_switch,
            "approval": self.approval.to_dict() if self.approval else None,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Decision:
        """Rebuild a Decision from its wire form (tolerates the seed's minimal shape)."""
        approval = data.get("approval")
        return cls(
            outcome=normalize_outcome(str(data["outcome"])),
            reason=str(data.get("reason", "")),
            risk_score=float(data.get("risk_score") or 0.0),
            matched_policies=tuple(data.get("matched_policies") or ()),
            matched_rules=tuple(data.get("matched_rules") or ()),
            errors=tuple(data.get("errors") or ()),
            default_applied=bool(data.get("default_applied", False)),
            enforcement_level=normalize_level(str(data.get("enforcement_level", "full_enforce"))),
            decided_outcome=normalize_outcome(str(data["decided_outcome"]))
            if data.get("decided_outcome")
            else None,
            kill_switch=bool(data.get("kill_switch", False)),
            approval=ApprovalRequirement(
                timeout_seconds=int(approval.get("timeout_seconds", 300)),
                approver_roles=tuple(approval.get("approver_roles") or ()),
            )
            if isinstance(approval, dict)
            else None,
        )


def apply_enforcement(decision: Decision, level: EnforcementLevel) -> Decision:
    """Apply an enforcement level to what the rules decided (see the module table)."""
    decided = decision.decided_outcome or decision.outcome
    if decision.kill_switch or level == "full_enforce" or decided == "allow":
        outcome = decided
    elif level == "soft_enforce":
        outcome = "allow" if decided == "deny" else decided
    else:  # monitor
        outcome = "allow"
    return replace(decision, outcome=outcome, decided_outcome=decided, enforcement_level=level)
