"""Replay recorded decision inputs under two configurations and diff the verdicts.

The verdict compared is what the rules decided (``decided_outcome``), before the agent's
enforcement level: an agent in monitor mode is let through whatever the rules say, and a
rollout wants to know what enforcing would do. Kill switches are not part of a candidate
configuration; both engines are built without them by the callers.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from agentfirewall.actions import ActionSpec
from agentfirewall.decisions import Decision
from agentfirewall.policy.engine import Engine, EvaluationContext
from agentfirewall.policy.unseen import unseen_decision

__all__ = ["Recorded", "ReplayReport", "replay", "replay_one", "responsible", "verdict"]


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


def verdict(decision: Decision) -> str:
    return decision.decided_outcome or decision.outcome


def replay_one(engine: Engine, item: Recorded) -> Decision:
    decision = engine.evaluate(item.spec, item.ctx)
    if item.unseen:
        decision = unseen_decision(engine, item.spec, item.ctx, decision)
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
    for item in records:
        report.total += 1
        if item.partial:
            report.partial += 1
        before = replay_one(baseline, item)
        after = replay_one(candidate, item)
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
