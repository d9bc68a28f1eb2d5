"""Explanations: the steps of one evaluation, in order, each with its result and why."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from agentfirewall.decisions import Decision
from agentfirewall.display import visible

__all__ = ["Explanation", "Step", "StepName"]

StepName = Literal["kill_switch", "access_rules", "policies", "enforcement", "budgets"]


@dataclass(frozen=True, slots=True)
class Step:
    """One evaluation step: which stage, what it concluded, and the details."""

    step: StepName
    result: str
    detail: str
    #: the detail's lines when it lists several (a policy's rules, one each): a line break
    #: inside one (a rule named with a newline) is that line's text, never a new line
    lines: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, str]:
        return {"step": self.step, "result": self.result, "detail": self.detail}


@dataclass(frozen=True, slots=True)
class Explanation:
    """A decision together with the steps that produced it."""

    decision: Decision
    steps: list[Step]

    def to_dict(self) -> dict[str, Any]:
        """``{"decision": {...}, "explanation": [{"step", "result", "detail"}, ...]}``."""
        return {
            "decision": self.decision.to_dict(),
            "explanation": [step.to_dict() for step in self.steps],
        }

    def render(self) -> str:
        """Plain text: a line per step and one per line of its detail (the step's `lines`,
        never a newline in the text), then the decision. Every text is shown `visible`: a
        policy or rule named with a newline or a control character shows its escape, and
        forges no line."""
        lines = []
        for number, step in enumerate(self.steps, 1):
            lines.append(f"{number}. {step.step}: {visible(step.result)}")
            lines.extend(f"     {visible(line)}" for line in step.lines or (step.detail,) if line)
        decision = self.decision
        lines.append(f"=> {decision.outcome}: {visible(decision.reason)}")
        if decision.would_outcome:
            lines.append(f"   ({decision.would_outcome} under {decision.enforcement_level})")
        if decision.matched_rules:
            lines.append(f"   rules: {visible(', '.join(decision.matched_rules))}")
        if decision.errors:
            lines.append(f"   errors: {visible('; '.join(decision.errors))}")
        lines.append(f"   risk score: {decision.risk_score:g}")
        return "\n".join(lines)
