"""Step 3 of an evaluation: run the policies in scope and combine their rules.

Policies run in priority order (lower first). A policy whose ``environments`` do not
include the action's environment is out of scope (an action without an environment is
in scope only of policies without an environment list). Every rule of every policy in
scope is evaluated, so ``matched_rules`` is complete; then deny wins, then
require_approval, then allow, each time the first such rule in priority order giving
the reason. A rule that raises counts as a matching deny and is named in ``errors``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from agentfirewall.actions import ActionSpec
from agentfirewall.decisions import ApprovalRequirement, Outcome
from agentfirewall.policy.explain import Step
from agentfirewall.policy.index import CompiledPolicy, CompiledRule

if TYPE_CHECKING:
    from agentfirewall.policy.engine import EvaluationContext

__all__ = ["PolicyRun", "run_policies"]


@dataclass(frozen=True, slots=True)
class PolicyRun:
    """What the policies in scope concluded; `outcome` is None when no rule matched."""

    outcome: Outcome | None
    reason: str
    deciding: str
    policies: tuple[str, ...]
    matched: tuple[str, ...]
    errors: tuple[str, ...]
    risk: float
    approval: ApprovalRequirement | None


def _reason(rule: CompiledRule) -> str:
    if rule.reason:
        return rule.reason
    verb = {"allow": "allowed", "deny": "denied", "require_approval": "held for approval"}
    return f"{verb[rule.decision]} by policy rule `{rule.label}`"


def _trace_policy(
    trace: list[Step], policy: CompiledPolicy, results: list[str], env: str | None
) -> None:
    if results is _OUT_OF_SCOPE:
        envs = ", ".join(sorted(policy.environments or ()))
        detail = f"environment `{env}` is not one of: {envs}"
        trace.append(Step("policies", f"{policy.name}: out of scope", detail))
        return
    verdict = "no rule matched" if all(r.endswith("no match") for r in results) else "matched"
    trace.append(Step("policies", f"{policy.name}: {verdict}", "\n".join(results)))


_OUT_OF_SCOPE: list[str] = []


def run_policies(
    candidates: tuple[CompiledPolicy, ...],
    spec: ActionSpec,
    ctx: EvaluationContext,
    risk: float,
    trace: list[Step] | None,
) -> PolicyRun:
    """Evaluate every rule of the policies in scope (see the module docstring)."""
    env = spec.resource.environment
    policies: list[str] = []
    matched: list[str] = []
    errors: list[str] = []
    deny: tuple[str, str] | None = None
    hold: CompiledRule | None = None
    allow: CompiledRule | None = None
    for policy in candidates:
        if policy.environments is not None and env not in policy.environments:
            if trace is not None:
                _trace_policy(trace, policy, _OUT_OF_SCOPE, env)
            continue
        policies.append(policy.name)
        results: list[str] | None = [] if trace is not None else None
        for rule in policy.rules:
            try:
                hit = rule.test(spec, ctx)
            except Exception as exc:  # a rule that cannot be evaluated fails closed
                message = f"rule `{rule.label}` could not be evaluated: {exc}; failing closed"
                errors.append(message)
                matched.append(rule.label)
                risk = max(risk, rule.risk_score)
                if deny is None:
                    deny = (rule.label, message)
                if results is not None:
                    results.append(f"{rule.label}: error ({exc}) -> deny")
                continue
            if results is not None:
                results.append(f"{rule.label}: {rule.decision if hit else 'no match'}")
            if not hit:
                continue
            matched.append(rule.label)
            if rule.risk_score > risk:
                risk = rule.risk_score
            if rule.decision == "deny":
                if deny is None:
                    deny = (rule.label, _reason(rule))
            elif rule.decision == "require_approval":
                hold = hold or rule
            else:
                allow = allow or rule
        if results is not None and trace is not None:
            _trace_policy(trace, policy, results, env)
    risk = min(max(risk, 0.0), 100.0)
    outcome: Outcome | None = None
    reason = deciding = ""
    approval = None
    if deny is not None:
        outcome, (deciding, reason) = "deny", deny
    elif hold is not None:
        outcome, deciding, reason, approval = (
            "require_approval",
            hold.label,
            _reason(hold),
            hold.approval,
        )
    elif allow is not None:
        outcome, deciding, reason = "allow", allow.label, _reason(allow)
    if trace is not None:
        summary = outcome or "no rule matched"
        scope = ", ".join(policies) or "none"
        detail = f"in scope: {scope}; deny wins, then require_approval, then allow"
        trace.append(Step("policies", summary, detail))
    return PolicyRun(
        outcome, reason, deciding, tuple(policies), tuple(matched), tuple(errors), risk, approval
    )
