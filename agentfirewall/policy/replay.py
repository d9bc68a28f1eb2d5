"""Replay recorded decision inputs under two configurations and diff the verdicts.

The verdict compared is what the rules decided (``decided_outcome``), before the agent's
enforcement level: an agent in monitor mode is let through whatever the rules say, and a
rollout wants to know what enforcing would do. Kill switches are not part of a candidate
configuration; both engines are built without them by the callers.

An SDK action is decided here as the control plane decides it live (:func:`evaluate_sdk`,
which the live path, shadow mode and replay all call): under the name it was requested
by and, for a build alias, under the name of the action it runs as, the stricter answer
standing; then the content step (a ``redact`` rule refuses in SDK mode,
``agentfirewall.policy.guard.sdk_content_decision``). A record keeps the names of the
detectors that fired, not where (:func:`recorded_findings`).

A budget is not part of a replayed configuration, but what one did to a request is part of
its record, as its context is (:func:`with_budget`: the gateway records the budget that
refused or held it). Replay applies that recorded verdict over the rules' as live did: a
request the rules allow is held or refused by it, a held one refused, a denied one stays
denied (the stricter stands). The budget's state is never read again: a budget raised,
spent or removed since changes nothing in a replay (the record's context is the time's,
not today's).

A request the gateway decided as several actions (a GraphQL document's mutations, a
JSON-RPC batch and its members, an S3 copy) is replayed as each of them (``Recorded.also``),
the strictest decision standing, as live (``agentfirewall_proxy.snapshot.strictest``).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from agentfirewall.actions import ActionSpec
from agentfirewall.content import Finding, content_attributes
from agentfirewall.content.locate import found_names
from agentfirewall.decisions import Decision, Outcome
from agentfirewall.policy.engine import Engine, EvaluationContext
from agentfirewall.policy.guard import GuardPlan, guard_plan, sdk_content_decision
from agentfirewall.policy.unseen import unseen_decision

__all__ = [
    "Recorded",
    "ReplayReport",
    "evaluate_sdk",
    "recorded_budget",
    "recorded_findings",
    "replay",
    "replay_one",
    "responsible",
    "verdict",
    "with_budget",
    "with_findings",
]

_STRICTNESS = {"allow": 0, "require_approval": 1, "deny": 2}
#: content fields of a decision's context -> the kind of detector that fills them
_KINDS = {"content.secrets": "secret", "content.pii": "pii"}
#: The key of a decision input (``agentfirewall.policy.record``) naming the budget that
#: refused or held its request: ``[outcome, budget name]``.
_BUDGET = "b"
_BUDGET_OUTCOMES = frozenset({"deny", "require_approval"})


@dataclass(frozen=True, slots=True)
class Recorded:
    """One recorded decision, restored (``agentfirewall.policy.record.restore_input``)."""

    id: str
    source: str  # "proxy" | "sdk"
    spec: ActionSpec
    ctx: EvaluationContext
    recorded: str | None = None  # the live verdict (rules' outcome), when known
    partial: bool = False  # some parameter values were withheld from the record
    unseen: bool = False  # the live decision was widened for an uninspected body
    #: an SDK action's build alias: the action it runs as (``connectors.performed_as``)
    performed: ActionSpec | None = None
    #: the budget that refused or held it live: (outcome, budget name) (:func:`with_budget`)
    budget: tuple[Outcome, str] | None = None
    #: the other actions of a request decided as several, each with its context
    #: (``agentfirewall.policy.record.restore_also``): the strictest decision stands
    also: tuple[tuple[ActionSpec, EvaluationContext], ...] = ()


def verdict(decision: Decision) -> str:
    return decision.decided_outcome or decision.outcome


def _strictness(decision: Decision) -> int:
    return _STRICTNESS[verdict(decision)]


def _live_rank(decision: Decision) -> tuple[int, int]:
    """How the gateway ranks the decisions on a request's actions: the enforced outcome
    first, then the rules' (``agentfirewall_proxy.snapshot.strictest``)."""
    return _STRICTNESS[decision.outcome], _strictness(decision)


def evaluate_sdk(
    engine: Engine,
    spec: ActionSpec,
    ctx: EvaluationContext,
    performed: ActionSpec | None = None,
    *,
    plan: GuardPlan | None = None,
    findings: Sequence[Finding] = (),
) -> Decision:
    """An SDK action's decision: the engine's on `spec`; for a build alias (`performed`, the
    action it runs as), the stricter of it and the decision on the action performed (an
    answer only a default gave does not count: the agent's ``sdk_default`` already answered
    for the name it used); then, when the detectors found something (`findings`, already in
    ``ctx``), the SDK content step with `plan`, the engine's guard plan (None: worked out
    from the engine's policies)."""
    decision = engine.evaluate(spec, ctx)
    if performed is not None:
        also = engine.evaluate(performed, ctx)
        if not also.default_applied and _strictness(also) > _strictness(decision):
            decision = dataclasses.replace(also, reason=f"{also.reason} (as `{performed.type}`, "
                                           f"the action `{spec.type}` runs as)")  # fmt: skip
    if not findings:
        return decision
    plan = guard_plan(engine.policies) if plan is None else plan
    return sdk_content_decision(engine, plan, spec, ctx, decision, list(findings))


def with_findings(
    ctx: EvaluationContext, plan: GuardPlan, findings: Sequence[Finding]
) -> tuple[EvaluationContext, list[Finding]]:
    """`ctx` with what `plan`'s detectors found among `findings` (an action scanned once for
    several configurations: the live and the shadow policies') in place of its content
    fields, and those findings."""
    names = found_names(plan.request) if plan.request is not None else frozenset()
    mine = [f for f in findings if f.detector in names]
    attributes = {k: v for k, v in ctx.attributes.items() if k not in _KINDS}
    attributes.update(content_attributes(mine))
    if attributes == ctx.attributes:
        return ctx, mine
    return dataclasses.replace(ctx, attributes=attributes), mine


def recorded_findings(ctx: EvaluationContext) -> list[Finding]:
    """The detections a recorded context holds: a record keeps the detectors' names (its
    ``content.*`` fields), never where they fired."""
    found = []
    for name, kind in _KINDS.items():
        detectors = ctx.attributes.get(name)
        if isinstance(detectors, list | tuple):
            found += [Finding(str(d), kind, 1.0, "(not recorded)", 0, 0) for d in detectors]
    return found


def with_budget(record: dict[str, Any] | None, outcome: str, budget: str) -> dict[str, Any] | None:
    """A decision input (``agentfirewall.policy.record.record_input``) with the budget
    that refused (`outcome` ``deny``) or held (``require_approval``) its request: a new
    dict (a remembered decision's record is shared). None stays None."""
    return None if record is None else {**record, _BUDGET: [outcome, budget]}


def recorded_budget(data: dict[str, Any]) -> tuple[Outcome, str] | None:
    """The budget verdict :func:`with_budget` put in a decision input, if any; ValueError
    when the key holds anything else (an unreadable record is skipped, never guessed)."""
    found = data.get(_BUDGET)
    if found is None:
        return None
    if (not isinstance(found, list) or len(found) != 2 or found[0] not in _BUDGET_OUTCOMES
            or not isinstance(found[1], str)):  # fmt: skip
        raise ValueError("not a recorded budget verdict")
    return ("deny" if found[0] == "deny" else "require_approval"), found[1]


def replay_one(engine: Engine, item: Recorded, plan: GuardPlan | None = None) -> Decision:
    """The decision on a recorded input, made as live made it (`plan`: the engine's guard
    plan, None: worked out when needed), then the budget verdict it recorded, when that is
    stricter (live, a budget refuses or holds what the rules let through)."""
    decision = _decided(engine, item, plan)
    if item.budget is None or _STRICTNESS[item.budget[0]] <= _strictness(decision):
        return decision
    outcome, name = item.budget
    return dataclasses.replace(
        decision, outcome=outcome, decided_outcome=outcome, matched_rules=(f"budget `{name}`",),
        reason=f"budget `{name}`: {'refused' if outcome == 'deny' else 'held'} when recorded",
    )  # fmt: skip


def _decided(engine: Engine, item: Recorded, plan: GuardPlan | None) -> Decision:
    """The rules' decision on a recorded input."""
    if item.ctx.mode == "sdk":
        findings = recorded_findings(item.ctx)
        if findings:
            plan = guard_plan(engine.policies) if plan is None else plan
            ctx, findings = with_findings(item.ctx, plan, findings)
            return evaluate_sdk(engine, item.spec, ctx, item.performed, plan=plan,
                                findings=findings)  # fmt: skip
        return evaluate_sdk(engine, item.spec, item.ctx, item.performed)
    spec, ctx = item.spec, item.ctx
    decision = engine.evaluate(spec, ctx)
    for other, other_ctx in item.also:  # as the gateway decides several: the strictest
        found = engine.evaluate(other, other_ctx)
        if _live_rank(found) > _live_rank(decision):
            spec, ctx, decision = other, other_ctx, found
    if item.unseen:
        decision = unseen_decision(engine, spec, ctx, decision)
    return decision


def responsible(decision: Decision) -> str:
    """The deciding rule (the engine lists it first), else why none decided."""
    if decision.matched_rules:
        return decision.matched_rules[0]
    if decision.kill_switch:
        return "kill switch"
    return "default" if decision.default_applied else "no matching rule"


@dataclass
class ReplayReport:
    total: int = 0
    unchanged: int = 0
    partial: int = 0
    #: baseline replays that differ from the verdict recorded live (the live configuration
    #: changed since, or a withheld parameter mattered)
    drifted: int = 0
    changes: Counter[str] = field(default_factory=Counter)
    rules: dict[str, Counter[str]] = field(default_factory=dict)
    examples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "unchanged": self.unchanged,
            "changed": sum(self.changes.values()),
            "partial": self.partial,
            "drifted": self.drifted,
            "changes": dict(sorted(self.changes.items())),
            "rules": {k: dict(v.most_common()) for k, v in sorted(self.rules.items())},
            "examples": self.examples,
        }


def replay(
    records: Iterable[Recorded], baseline: Engine, candidate: Engine, *, examples: int = 5
) -> ReplayReport:
    """Evaluate every record under both engines; count and explain each verdict change."""
    report = ReplayReport()
    plans = guard_plan(baseline.policies), guard_plan(candidate.policies)
    for item in records:
        report.total += 1
        if item.partial:
            report.partial += 1
        before = replay_one(baseline, item, plans[0])
        after = replay_one(candidate, item, plans[1])
        old, new = verdict(before), verdict(after)
        if item.recorded is not None and item.recorded != old:
            report.drifted += 1
        if old == new:
            report.unchanged += 1
            continue
        key = f"{old}->{new}"
        report.changes[key] += 1
        rule = responsible(after if new != "allow" else before)
        report.rules.setdefault(key, Counter())[rule] += 1
        shown = report.examples.setdefault(key, [])
        if len(shown) < examples:
            shown.append(
                {
                    "id": item.id,
                    "source": item.source,
                    "agent": item.ctx.agent,
                    "action": item.spec.type,
                    "connector": item.ctx.connector,
                    "time": item.ctx.now.isoformat(),
                    "before": old,
                    "after": new,
                    "reason": after.reason,
                    "rule": rule,
                }
            )
    return report
