"""What the content guardrails need from a set of policies, worked out once per engine.

:func:`guard_plan` reads the policies: which detectors the request side needs (a rule
reading ``content.secrets`` needs the secret detectors, ``content.pii`` the personal-data
ones), which the response side needs (``response.secrets``, ``response.injection``), and
which rules redact what. No rule reading a content field: the plan is empty and the
gateway scans nothing (detection costs nothing then).

The request's detections reach the engine in ``EvaluationContext.attributes``; the
ordinary evaluation then denies or holds. A ``redact`` rule is an allow, so
:func:`redactions` asks separately which redact rules in scope match, and what to
replace. :func:`response_verdict` decides on a response's detections with the rules that
read ``response.*`` fields, in the plan's order (deny first): ``deny`` and
``require_approval`` cut the response (it cannot be held), ``redact`` redacts, ``allow``
lets it pass; every detection is flagged (traffic log, counters) whatever the outcome.

An action decided from its spec alone (the SDK's, and every local tool that tests or
explains policies) is scanned by :func:`action_findings`: each string of its parameters
and its resource's account and target, and the decoded text of the parameters its
connector says carry text base64-encoded (``encoded``: the caller asks the connectors,
``agentfirewall.connectors.encoded_parameters``; ``parameters.content`` of
``github.file.create``). :func:`explain_with_content` decides it as the
control plane's ``request_action`` and ``dry-run`` do, so a policy tested locally reads
``content.*`` as it will in production; :func:`sdk_content_decision` refuses in SDK mode
what a ``redact`` rule matched (the SDK cannot rewrite what the agent sends).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from agentfirewall.content import (
    Finding,
    content_attributes,
    decoded_pieces,
    describe,
    scan_pieces,
    value_pieces,
)
from agentfirewall.content.detectors import PII, SECRETS, Detector
from agentfirewall.content.injection import INJECTION
from agentfirewall.content.locate import UNREAD_NAMES
from agentfirewall.content.scanner import Scanner
from agentfirewall.decisions import Decision, apply_enforcement
from agentfirewall.policy.context import EvaluationContext
from agentfirewall.policy.models import FieldCondition, field_conditions

if TYPE_CHECKING:
    from agentfirewall.actions import ActionSpec
    from agentfirewall.policy.engine import Engine
    from agentfirewall.policy.explain import Explanation
    from agentfirewall.policy.models import Policy

__all__ = [
    "GuardPlan",
    "action_findings",
    "explain_with_content",
    "guard_plan",
    "redactions",
    "response_verdict",
    "sdk_content_decision",
]

_FAMILY: dict[str, tuple[Detector, ...]] = {
    "content.secrets": SECRETS,
    "content.pii": PII,
    "response.secrets": SECRETS,
    "response.injection": INJECTION,
}


@dataclass(frozen=True, slots=True)
class GuardPlan:
    """Scanners and redaction targets for one engine (None: that side is not scanned)."""

    request: Scanner | None = None
    response: Scanner | None = None
    #: rule label -> detector names it redacts (request side / response side)
    redact_request: tuple[tuple[str, frozenset[str]], ...] = ()
    redact_response: tuple[tuple[str, frozenset[str]], ...] = ()
    response_rules: frozenset[str] = frozenset()


def _targets(leaf: FieldCondition) -> frozenset[str]:
    """The detector names a leaf is about: the ones it names, else its whole family; and
    what could not be read (a finding of each kind read, ``content.locate``), which may
    hold any of them: a redact rule cannot rewrite it, so refuses it (fail closed)."""
    family = frozenset(d.name for d in _FAMILY[leaf.field]) | UNREAD_NAMES
    value = leaf.value
    named = {value} if isinstance(value, str) else set(value) if isinstance(value, list) else set()
    chosen = frozenset(v for v in named if isinstance(v, str)) & family
    if leaf.operator in ("contains", "in", "equals") and chosen:
        return chosen | UNREAD_NAMES
    return family


def guard_plan(policies: tuple[Policy, ...]) -> GuardPlan:
    """The plan for these policies (see the module docstring)."""
    request: dict[str, Detector] = {}
    response: dict[str, Detector] = {}
    redact_request: list[tuple[str, frozenset[str]]] = []
    redact_response: list[tuple[str, frozenset[str]]] = []
    response_rules: set[str] = set()
    for policy in policies:
        if not policy.enabled:
            continue
        for rule in policy.rules:
            label = f"{policy.name}/{rule.name}"
            leaves = [leaf for leaf in field_conditions(rule.conditions) if leaf.field in _FAMILY]
            ahead = frozenset().union(*(_targets(x) for x in leaves if x.field[0] == "c"))
            back = frozenset().union(*(_targets(x) for x in leaves if x.field[0] == "r"))
            for leaf in leaves:
                side = request if leaf.field.startswith("content.") else response
                side.update((d.name, d) for d in _FAMILY[leaf.field])
            if back:
                response_rules.add(label)
            if rule.redact and ahead:
                redact_request.append((label, ahead))
            if rule.redact and back:
                redact_response.append((label, back))
    return GuardPlan(
        request=Scanner(request.values()) if request else None,
        response=Scanner(response.values()) if response else None,
        redact_request=tuple(redact_request),
        redact_response=tuple(redact_response),
        response_rules=frozenset(response_rules),
    )


def _plan_rules(engine: Engine, spec: ActionSpec, ctx: EvaluationContext):  # type: ignore[no-untyped-def]
    prefixes = engine._prefixes_of(spec.type)
    return engine._index.plan(ctx.agent, spec.type, spec.resource.environment, prefixes).rules


def redactions(
    engine: Engine, plan: GuardPlan, spec: ActionSpec, ctx: EvaluationContext
) -> tuple[frozenset[str], str]:
    """(detector names to redact from the request, the first redact rule's label)."""
    if not plan.redact_request:
        return frozenset(), ""
    wanted = dict(plan.redact_request)
    names: frozenset[str] = frozenset()
    first = ""
    for rule in _plan_rules(engine, spec, ctx):
        targets = wanted.get(rule.label)
        if targets is not None and rule.test(spec, ctx):
            names |= targets
            first = first or rule.label
    return names, first


def response_verdict(
    engine: Engine, plan: GuardPlan, spec: ActionSpec, ctx: EvaluationContext
) -> tuple[str, str, frozenset[str]]:
    """(``cut`` | ``redact`` | ``pass``, the deciding rule's label, names to redact).

    A rule that raises cuts (fail closed).
    """
    redacting = dict(plan.redact_response)
    for rule in _plan_rules(engine, spec, ctx):
        if rule.label not in plan.response_rules:
            continue
        try:
            hit = rule.test(spec, ctx)
        except Exception:  # fail closed
            return "cut", rule.label, frozenset()
        if not hit:
            continue
        if rule.decision != "allow":
            return "cut", rule.label, frozenset()
        if rule.label in redacting:
            return "redact", rule.label, redacting[rule.label]
        return "pass", rule.label, frozenset()
    return "pass", "", frozenset()


def action_findings(
    plan: GuardPlan, spec: ActionSpec, encoded: Sequence[str] = ()
) -> list[Finding]:
    """What the request-side detectors find in an action decided from its spec: each string
    of its parameters (those at `encoded` locations decoded too), and its resource's
    account and target (none: nothing to scan)."""
    if plan.request is None:
        return []
    resource = spec.resource
    pieces = value_pieces(spec.parameters, "parameters")
    pieces += decoded_pieces(pieces, encoded)
    pieces += [(f"resource.{name}", value) for name, value in (
        ("account", resource.account), ("target", resource.target)) if value]  # fmt: skip
    return scan_pieces(plan.request, pieces)


def sdk_content_decision(
    engine: Engine,
    plan: GuardPlan,
    spec: ActionSpec,
    ctx: EvaluationContext,
    decision: Decision,
    findings: list[Finding],
) -> Decision:
    """`decision`, refused when a ``redact`` rule matched what was found (the SDK cannot
    redact the agent's own parameters), with where the detectors fired in its reason."""
    where = f"content: {describe(findings)}"
    names, rule = redactions(engine, plan, spec, ctx)
    if names and decision.decided_outcome == "allow" and any(f.detector in names for f in findings):
        refused = Decision(
            "deny",
            f"redact rule `{rule}` matched: an SDK action's parameters cannot be redacted "
            "(send it without the detected value, or through the gateway)",
            risk_score=decision.risk_score,
            matched_policies=decision.matched_policies,
            matched_rules=(rule,),
            decided_outcome="deny",
        )
        decision = apply_enforcement(refused, ctx.enforcement_level)
    return dataclasses.replace(decision, reason=f"{decision.reason}; {where}")


def explain_with_content(
    engine: Engine,
    plan: GuardPlan,
    spec: ActionSpec,
    ctx: EvaluationContext,
    encoded: Sequence[str] = (),
) -> Explanation:
    """``engine.explain`` with the action's content findings in the context, as the control
    plane decides it: in SDK mode a matched ``redact`` rule refuses (`sdk_content_decision`);
    through the gateway (proxy mode) the body would be redacted, so the decision stands, with
    where the detectors fired in its reason. `encoded`: as for :func:`action_findings`."""
    findings = action_findings(plan, spec, encoded)
    if not findings:
        return engine.explain(spec, ctx)
    ctx = dataclasses.replace(ctx, attributes={**ctx.attributes, **content_attributes(findings)})
    result = engine.explain(spec, ctx)
    decision = result.decision
    if ctx.mode == "sdk":
        decision = sdk_content_decision(engine, plan, spec, ctx, decision, findings)
    else:
        decision = dataclasses.replace(
            decision, reason=f"{decision.reason}; content: {describe(findings)}"
        )
    return dataclasses.replace(result, decision=decision)
