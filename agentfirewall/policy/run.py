"""Step 3 of an evaluation: run the policies in scope and combine their rules.

A policy is in scope when its action globs, agents and environments cover the action
(an action without an environment is in scope only of policies without an environment
list). Deny wins, then require_approval, then allow; within a class the policy with the
lower priority number gives the reason. The plan (index.py) lists the rules in exactly
that order, so the first rule that matches decides and evaluation stops there — except
that later rules that could raise the risk score are still evaluated (risk_score is the
highest of the route risk and every matched rule's score), and so are the later
require_approval rules when one holds the action and a later one could tighten its terms
(index.py): a held action waits for the terms of every require_approval rule that
matches (`combine_approvals`), and those that ran and matched are named in ``matched``.

A rule that raises counts as a matching deny (fail closed) and is named in ``errors``.

``trace_policies`` is explain()'s view: it evaluates every rule of every policy in
scope, for display, without changing the decision.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from agentfirewall.actions import ActionSpec
from agentfirewall.decisions import ApprovalRequirement, Outcome
from agentfirewall.policy.explain import Step
from agentfirewall.policy.index import CompiledPolicy, CompiledRule, Plan, approver_rank

if TYPE_CHECKING:
    from agentfirewall.policy.context import EvaluationContext

__all__ = ["PolicyRun", "combine_approvals", "run_policies", "settled_run", "trace_policies"]


@dataclass(slots=True)
class PolicyRun:
    """What the policies in scope concluded; `outcome` is None when no rule matched."""

    outcome: Outcome | None
    reason: str
    deciding: str
    deciding_uid: tuple[int, int]
    policies: tuple[str, ...]
    matched: tuple[str, ...]
    errors: tuple[str, ...]
    risk: float
    approval: ApprovalRequirement | None


def combine_approvals(held: Sequence[ApprovalRequirement]) -> ApprovalRequirement:
    """The terms of an action that several require_approval rules hold, in plan order.

    An approver must satisfy every rule: the roles are those of the rule whose lowest role
    ranks highest (the first such rule on a tie), which admit exactly the roles every rule
    admits. The timeout is the shortest one a rule wrote (``explicit``); when no rule wrote
    one, the control plane's default applies, as for a single rule.
    """
    strictest = held[0]
    top = approver_rank(strictest)
    shortest = strictest.timeout_seconds if strictest.explicit else None
    for requirement in held[1:]:
        rank = approver_rank(requirement)
        if rank > top:
            strictest, top = requirement, rank
        if requirement.explicit and (shortest is None or requirement.timeout_seconds < shortest):
            shortest = requirement.timeout_seconds
    if shortest is None or (strictest.explicit and strictest.timeout_seconds == shortest):
        return strictest  # no rule wrote terms (all are the defaults), or the strictest's
    return ApprovalRequirement(shortest, strictest.approver_roles, explicit=True)


def _failure(rule: CompiledRule, exc: Exception) -> str:
    return f"rule `{rule.label}` could not be evaluated: {exc}; failing closed"


def settled_run(plan: Plan, position: int, risk: float) -> PolicyRun:
    """The run that rule `position` of the plan decided alone (-1: no rule matched), when
    no rule raised and no later rule could raise the risk score or hold the action too."""
    if position < 0:
        return PolicyRun(None, "", "", (0, 0), plan.policies, (), (), min(risk, 100.0), None)
    deciding = plan.rules[position]
    score = deciding.risk_score
    top = score if score > risk else risk  # max(risk, score), without the call
    decided = deciding.decision
    held = deciding.approval if decided == "require_approval" else None
    capped = 100.0 if top > 100.0 else top  # min(top, 100.0)
    return PolicyRun(decided, deciding.reason, deciding.label, deciding.uid,
                     plan.policies, (), (), capped, held)  # fmt: skip


def run_policies(plan: Plan, spec: ActionSpec, ctx: EvaluationContext, risk: float) -> PolicyRun:
    """Decide with the plan's rules (see the module docstring)."""
    rules = plan.rules
    deciding: CompiledRule | None = None
    error = ""
    index = 0
    for index, test in enumerate(plan.tests, 1):
        try:
            if test(spec, ctx):
                deciding = rules[index - 1]
                break
        except Exception as exc:  # fail closed
            deciding = rules[index - 1]
            error = _failure(deciding, exc)
            break
    if deciding is None:
        return settled_run(plan, -1, risk)
    if not error:  # the usual end: no later rule could raise the risk score
        score = deciding.risk_score
        if plan.suffix_risk[index] <= (score if score > risk else risk):
            return settled_run(plan, index - 1, risk)
    outcome: Outcome = "deny" if error else deciding.decision
    reason = error or deciding.reason
    errors = [error] if error else []
    risk = max(risk, deciding.risk_score)
    others: list[CompiledRule] = []
    suffix = plan.suffix_risk
    count = len(rules)
    while index < count and suffix[index] > risk:
        rule = rules[index]
        index += 1
        try:
            hit = rule.test(spec, ctx)
        except Exception as exc:  # a later rule failing still fails closed
            message = _failure(rule, exc)
            errors.append(message)
            if outcome != "deny":
                outcome, reason, deciding = "deny", message, rule
            hit = True
        if hit:
            others.append(rule)
            risk = max(risk, rule.risk_score)
    approval = None
    if outcome == "require_approval":  # no rule raised: `deciding` is the first that held
        held = [deciding, *(rule for rule in others if rule.decision == "require_approval")]
        approval = combine_approvals([rule.approval or ApprovalRequirement() for rule in held])
    return PolicyRun(
        outcome,
        reason,
        deciding.label,
        deciding.uid,
        plan.policies,
        tuple(rule.label for rule in others if rule is not deciding),
        tuple(errors),
        min(risk, 100.0),
        approval,
    )


def trace_policies(
    candidates: tuple[CompiledPolicy, ...],
    spec: ActionSpec,
    ctx: EvaluationContext,
    trace: list[Step],
) -> None:
    """Record one step per policy with every rule's result (explain only)."""
    env = spec.resource.environment
    for policy in candidates:
        if policy.environments is not None and env not in policy.environments:
            envs = ", ".join(sorted(policy.environments))
            named = "the action names no environment" if env is None else f"environment `{env}`"
            detail = f"{named}: the policy covers only {envs}"
            trace.append(Step("policies", f"{policy.name}: out of scope", detail))
            continue
        results = []
        for rule in policy.rules:
            try:
                hit = rule.test(spec, ctx)
            except Exception as exc:
                results.append(f"{rule.label}: error ({exc}) -> deny")
                continue
            results.append(f"{rule.label}: {rule.decision if hit else 'no match'}")
        matched = any(not r.endswith("no match") for r in results)
        verdict = "matched" if matched else "no rule matched"
        trace.append(
            Step("policies", f"{policy.name}: {verdict}", "\n".join(results), tuple(results))
        )
