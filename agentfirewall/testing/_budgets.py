"""Budgets in :class:`agentfirewall.testing.FirewallTransport`: their usage kept in memory.

The control plane's rules on the SDK path (``agentfirewall_server.sdkspend``), on the core's
definitions, windows, names and refusals (``agentfirewall.budgets``), so the transport
decides, and words its reasons, as the server does:

- a deny rule or the kill switch decides first: nothing is reserved;
- allowed and covered by a budget: the spend is reserved; past a ``deny`` budget the action
  is denied, past a ``require_approval`` one it is held, the budget named in the reason;
- held (by a rule or a budget): its spend is reserved while a person decides (past a
  ``require_approval`` budget too), never past a ``deny`` one (then it is denied);
- approved: counted from the approval on; denied or expired: released; executed: settled.
  An allowed action never executed stays reserved (the agent may have performed it itself).

The transport makes no grants (:meth:`~agentfirewall.testing.FirewallTransport.approve`
approves one action), so a held action is held for a person. A dry run reads the usage
and writes nothing.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from agentfirewall.actions import ActionSpec
from agentfirewall.budgets import (
    BudgetBody,
    BudgetDef,
    CompiledBudget,
    Refused,
    action_names,
    compile_budget,
    covering,
    fits,
    refusal,
    window_start,
)
from agentfirewall.decisions import Decision
from agentfirewall.policy import Step

__all__ = ["Budgets", "Spend"]


def _definition(name: str, body: Mapping[str, Any]) -> BudgetDef:
    """As ``PUT /api/v1/budgets/{name}`` reads it: the body, then the name."""
    return BudgetDef(name=name, **BudgetBody.model_validate(body).model_dump())


@dataclass(slots=True)
class _Usage:
    """One budget's share of a reservation, counted in a window from `at`."""

    budget: str
    reservation: str
    amount: float
    state: str  # reserved | settled | released
    at: float


@dataclass(slots=True)
class Spend:
    """What budgets make of one decision; `Budgets.apply` sets the rest."""

    decision: Decision
    covered: list[tuple[CompiledBudget, float]] | Refused
    reservation: str | None = None
    #: the budget that refused or held it
    refused: Refused | None = None
    #: what each covered budget had used before this request
    used: dict[str, float] = field(default_factory=dict)


class Budgets:
    """The declared budgets and their usage. `definitions`: name -> the body
    ``PUT /api/v1/budgets/{name}`` takes, validated as the server validates it."""

    def __init__(self, definitions: Mapping[str, Mapping[str, Any]]) -> None:
        self.budgets = tuple(
            compile_budget(f"bgt_{n:06d}", _definition(name, body))
            for n, (name, body) in enumerate(definitions.items(), 1)
        )
        self._usage: list[_Usage] = []
        self._ids = itertools.count(1)

    def used(self, budget: CompiledBudget, now: float) -> float:
        start = window_start(budget.definition, now)
        counted = (u for u in self._usage if u.budget == budget.id and u.state != "released")
        return sum(u.amount for u in counted if u.at >= start)

    def attributes(self, now: float) -> dict[str, float]:
        """``budget.<name>.used`` and ``.remaining``, for policy conditions."""
        values: dict[str, float] = {}
        for budget in self.budgets:
            used = values[f"budget.{budget.name}.used"] = self.used(budget, now)
            values[f"budget.{budget.name}.remaining"] = budget.definition.limit - used
        return values

    def check(self, agent: str, spec: ActionSpec, decision: Decision) -> Spend | None:
        """A `Spend` when budgets may change `decision` (a hold, or an allow a budget
        covers), else None."""
        if decision.outcome == "deny":
            return None
        covered: list[tuple[CompiledBudget, float]] | Refused = []
        if self.budgets:
            covered = covering(self.budgets, agent, spec.provider, *action_names(spec))
        if decision.outcome == "allow" and covered == []:
            return None
        return Spend(decision, covered)

    def apply(self, spend: Spend, now: float, *, record: bool) -> Decision:
        """The final decision, its spend reserved when `record`."""
        if isinstance(spend.covered, Refused):  # a covered request that says not how much
            return self._refuse(spend, spend.covered)
        held = spend.decision
        refused = self._reserve(spend, now, force=False, record=record)
        if refused is None:
            return held
        if refused.outcome == "deny":
            return self._refuse(spend, refused)
        spend.refused = refused
        if held.outcome == "allow":
            held = replace(held, outcome="require_approval", reason=refused.reason,
                           decided_outcome="require_approval")  # fmt: skip
        elif refused.reason not in held.reason:
            held = replace(held, reason=f"{held.reason}; {refused.reason}")
        self._reserve(spend, now, force=True, record=record)  # the person decides on it
        return held

    def step(self, spend: Spend, decision: Decision) -> Step:
        """The ``budgets`` step of a dry run's explanation, as the server words it."""
        if spend.refused is not None:
            lines = [spend.refused.reason]
        else:
            assert not isinstance(spend.covered, Refused)
            lines = [fits(b, spend.used[b.name], amount) for b, amount in spend.covered]
        if decision.outcome == "require_approval":
            lines.append("no grant covers it: held for a person")
        return Step("budgets", decision.outcome, "\n".join(lines))

    def finish(self, reservation: str | None, now: float, *, state: str) -> None:
        """Settle (``settled``: executed) or release (``released``: denied, expired) a
        reservation, or count it from `now` on (``reserved``: approved)."""
        for usage in self._usage:
            if usage.reservation == reservation and usage.state == "reserved":
                usage.state, usage.at = state, max(usage.at, now)

    def _reserve(self, spend: Spend, now: float, *, force: bool, record: bool) -> Refused | None:
        assert not isinstance(spend.covered, Refused)
        ordered = sorted(spend.covered, key=lambda item: item[0].id)
        used = {budget.name: self.used(budget, now) for budget, _ in ordered}
        refused = refusal(ordered, used, force=force)
        if refused is None:
            spend.used = used
            if record and ordered:
                spend.reservation = f"rsv_{next(self._ids):06d}"
                self._usage += [_Usage(b.id, spend.reservation, amount, "reserved", now)
                                for b, amount in ordered]  # fmt: skip
        return refused

    @staticmethod
    def _refuse(spend: Spend, refused: Refused) -> Decision:
        spend.refused = refused
        return replace(spend.decision, outcome="deny", reason=refused.reason,
                       decided_outcome="deny")  # fmt: skip
