"""Fail closed on input the gateway has not seen (a body beyond the inspected limit).

When a request's body was not read whole, the parameters a connector could extract from
it are unknown: a rule that reads them might match the real request although it did not
match what was seen. :func:`unseen_decision` answers the most restrictive outcome any
such rule in scope could give (deny, else require_approval), combined with the decision
on what was seen; rules that read only static fields (type, environment, agent,
context) are decided already and are not widened. A held action waits for the terms of
every require_approval rule that could apply (run.combine_approvals).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from agentfirewall.decisions import ApprovalRequirement, Decision, apply_enforcement
from agentfirewall.policy.conditions import STATIC_FIELDS
from agentfirewall.policy.models import Policy, field_conditions
from agentfirewall.policy.run import combine_approvals

if TYPE_CHECKING:
    from agentfirewall.actions import ActionSpec
    from agentfirewall.policy.engine import Engine, EvaluationContext

__all__ = ["UNSEEN_REASON", "reads_request_data", "unseen_decision"]

UNSEEN_REASON = "the request body was not fully inspected"
_STRICTNESS = {"allow": 0, "require_approval": 1, "deny": 2}


def reads_request_data(field: str) -> bool:
    """True for a field a request body may decide (parameters, resource, risk hints,
    ``content.*`` detections); not the static fields, context or ``response.*``."""
    return field not in STATIC_FIELDS and not field.startswith(("context.", "response."))


def _dependent_labels(policies: tuple[Policy, ...]) -> frozenset[str]:
    return frozenset(
        f"{policy.name}/{rule.name}"
        for policy in policies
        for rule in policy.rules
        if any(reads_request_data(leaf.field) for leaf in field_conditions(rule.conditions))
    )


_LABELS: dict[int, tuple[tuple[Policy, ...], frozenset[str]]] = {}


def _labels(engine: Engine) -> frozenset[str]:
    cached = _LABELS.get(id(engine))
    if cached is None or cached[0] is not engine.policies:
        if len(_LABELS) > 64:
            _LABELS.clear()
        cached = _LABELS[id(engine)] = (engine.policies, _dependent_labels(engine.policies))
    return cached[1]


def unseen_decision(
    engine: Engine, spec: ActionSpec, ctx: EvaluationContext, seen: Decision
) -> Decision:
    """`seen` widened to the strictest outcome a rule reading request data could give.

    The reason says the body was not fully inspected whenever the outcome was widened.
    The kill switch and a deny already decided stay as they are.
    """
    if seen.kill_switch or seen.decided_outcome == "deny":
        return seen
    dependent = _labels(engine)
    if not dependent:
        return seen
    prefixes = engine._prefixes_of(spec.type)
    plan = engine._index.plan(ctx.agent, spec.type, spec.resource.environment, prefixes)
    worst = None
    held: list[ApprovalRequirement] = []  # the terms of every rule that could hold it
    for rule in plan.rules:
        if rule.label in dependent:
            if worst is None or _STRICTNESS[rule.decision] > _STRICTNESS[worst.decision]:
                worst = rule
            if rule.decision == "require_approval":
                held.append(rule.approval or ApprovalRequirement())
    decided = seen.decided_outcome or seen.outcome
    if decided == "require_approval" and held and seen.approval is not None:
        seen = replace(seen, approval=combine_approvals([seen.approval, *held]))
    if worst is None or _STRICTNESS[worst.decision] <= _STRICTNESS[decided]:
        return seen
    reason = f"{UNSEEN_REASON}: rule `{worst.label}` could apply ({worst.reason})"
    approval = combine_approvals(held) if worst.decision == "require_approval" else None
    widened = Decision(
        worst.decision,
        reason,
        risk_score=max(seen.risk_score, worst.risk_score),
        matched_policies=seen.matched_policies,
        matched_rules=(worst.label, *seen.matched_rules),
        errors=(*seen.errors, UNSEEN_REASON),
        approval=approval,
        decided_outcome=worst.decision,
    )
    return apply_enforcement(widened, ctx.enforcement_level)
