"""Fail closed on input the gateway has not seen (a body beyond the inspected limit, the
messages of an upgraded connection).

When a request's body was not read whole, the parameters a connector could extract from
it are unknown: a rule that reads them might match the real request although it did not
match what was seen. :func:`unseen_decision` answers the most restrictive outcome any
such rule in scope could give (deny, else require_approval), combined with the decision
on what was seen; rules that read only static fields (type, environment, agent,
context) are decided already and are not widened. A held action waits for the terms of
every require_approval rule that could apply (run.combine_approvals). A ``redact`` rule
on the request's content (an allow that first rewrites the body) cannot rewrite what was
not read: where one could apply, the body is refused (:data:`UNREDACTABLE`; the gateway
answers 413), which only a deny rule outranks.

The messages of an upgraded connection (a WebSocket) are never read: :func:`content_rule`
names the rule in scope that would deny, hold, cut or redact on what the content detectors
find in them, for the gateway to refuse the upgrade.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from agentfirewall.decisions import ApprovalRequirement, Decision, Outcome, apply_enforcement
from agentfirewall.policy.conditions import STATIC_FIELDS
from agentfirewall.policy.models import Policy, field_conditions
from agentfirewall.policy.run import combine_approvals

if TYPE_CHECKING:
    from agentfirewall.actions import ActionSpec
    from agentfirewall.policy.engine import Engine, EvaluationContext
    from agentfirewall.policy.index import CompiledRule

__all__ = [
    "UNREDACTABLE",
    "UNSEEN_REASON",
    "content_rule",
    "reads_request_data",
    "unseen_decision",
]

UNSEEN_REASON = "the request body was not fully inspected"
#: In the errors of a decision widened for a redact rule (the gateway answers it 413).
UNREDACTABLE = "a body beyond the inspection limit cannot be redacted"
_STRICTNESS = {"allow": 0, "require_approval": 1, "deny": 3}
#: A request-side redact rule: stricter than a hold (a held body must be read whole too),
#: not than a deny.
_REDACT = 2
_CONTENT = ("content.", "response.")


def reads_request_data(field: str) -> bool:
    """True for a field a request body may decide (parameters, resource, risk hints,
    ``content.*`` detections); not the static fields, context or ``response.*``."""
    return field not in STATIC_FIELDS and not field.startswith(("context.", "response."))


@dataclass(frozen=True, slots=True)
class _Labels:
    """The rules of one engine's policies (by label) this module asks about."""

    dependent: frozenset[str]  # reading request data
    redacting: frozenset[str]  # redact rules reading ``content.*``
    inspecting: frozenset[str]  # deny, hold or redact on ``content.*`` or ``response.*``


def _labels_of(policies: tuple[Policy, ...]) -> _Labels:
    dependent, redacting, inspecting = set(), set(), set()
    for policy in policies:
        for rule in policy.rules:
            label = f"{policy.name}/{rule.name}"
            fields = [leaf.field for leaf in field_conditions(rule.conditions)]
            if any(reads_request_data(field) for field in fields):
                dependent.add(label)
            if rule.redact and any(field.startswith("content.") for field in fields):
                redacting.add(label)
            if (rule.redact or rule.decision != "allow") and any(
                field.startswith(_CONTENT) for field in fields
            ):
                inspecting.add(label)
    return _Labels(frozenset(dependent), frozenset(redacting), frozenset(inspecting))


_LABELS: dict[int, tuple[tuple[Policy, ...], _Labels]] = {}


def _labels(engine: Engine) -> _Labels:
    cached = _LABELS.get(id(engine))
    if cached is None or cached[0] is not engine.policies:
        if len(_LABELS) > 64:
            _LABELS.clear()
        cached = _LABELS[id(engine)] = (engine.policies, _labels_of(engine.policies))
    return cached[1]


def _rules(engine: Engine, spec: ActionSpec, agent: str) -> tuple[CompiledRule, ...]:
    """The rules in scope of `spec` for `agent`, in decision order."""
    prefixes = engine._prefixes_of(spec.type)
    return engine._index.plan(agent, spec.type, spec.resource.environment, prefixes).rules


def content_rule(engine: Engine, spec: ActionSpec, agent: str) -> str | None:
    """The label of the first rule in scope of `spec` for `agent` that denies, holds, cuts
    or redacts on what the content detectors find, either way (None: no such rule)."""
    inspecting = _labels(engine).inspecting
    if not inspecting:
        return None
    return next((r.label for r in _rules(engine, spec, agent) if r.label in inspecting), None)


def unseen_decision(
    engine: Engine, spec: ActionSpec, ctx: EvaluationContext, seen: Decision
) -> Decision:
    """`seen` widened to the strictest outcome a rule reading request data could give.

    The reason says the body was not fully inspected whenever the outcome was widened.
    The kill switch and a deny already decided stay as they are.
    """
    if seen.kill_switch or seen.decided_outcome == "deny":
        return seen
    labels = _labels(engine)
    if not labels.dependent:
        return seen
    worst, rank = None, 0
    held: list[ApprovalRequirement] = []  # the terms of every rule that could hold it
    for rule in _rules(engine, spec, ctx.agent):
        if rule.label in labels.dependent:
            found = _REDACT if rule.label in labels.redacting else _STRICTNESS[rule.decision]
            if worst is None or found > rank:
                worst, rank = rule, found
            if rule.decision == "require_approval":
                held.append(rule.approval or ApprovalRequirement())
    decided = seen.decided_outcome or seen.outcome
    if decided == "require_approval" and held and seen.approval is not None:
        seen = replace(seen, approval=combine_approvals([seen.approval, *held]))
    if worst is None or rank <= _STRICTNESS[decided]:
        return seen
    outcome: Outcome = worst.decision
    errors: tuple[str, ...] = (UNSEEN_REASON,)
    reason = f"{UNSEEN_REASON}: rule `{worst.label}` could apply ({worst.reason})"
    if rank == _REDACT:
        outcome, errors = "deny", (UNSEEN_REASON, UNREDACTABLE)
        reason = (f"{UNSEEN_REASON}: redact rule `{worst.label}` could apply, and {UNREDACTABLE}"
                  " (send a smaller body, or raise --body-inspect-limit)")  # fmt: skip
    approval = combine_approvals(held) if outcome == "require_approval" else None
    widened = Decision(
        outcome,
        reason,
        risk_score=max(seen.risk_score, worst.risk_score),
        matched_policies=seen.matched_policies,
        matched_rules=(worst.label, *seen.matched_rules),
        errors=(*seen.errors, *errors),
        approval=approval,
        decided_outcome=outcome,
    )
    return apply_enforcement(widened, ctx.enforcement_level)
