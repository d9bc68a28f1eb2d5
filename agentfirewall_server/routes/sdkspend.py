"""Budgets and grants on the SDK path (``POST /api/v1/actions``): the gateway's rules.

`spend_check` says, before the write, whether budgets or grants can change the engine's
decision: a deny (rules, kill switch) never; an allow only when a budget covers the
action; a hold (``require_approval``) always, since a grant may cover it. `Spend.apply`
then decides, inside the writer transaction that records the action:

- allow: the budgets covering the action are reserved (``budgetstore.reserve``); past a
  ``deny`` budget the action is denied, past a ``require_approval`` one it is held, the
  budget named in the reason either way;
- held (by a rule or a budget): a grant covering the request lets it through (checked
  after deny rules and the kill switch, which decided before; its use audited with the
  grant's id) and its spend is reserved past ``require_approval`` budgets, never past a
  ``deny`` one (then the grant's use is rolled back and the action denied);
- held without a grant: its spend is reserved while it waits (past a
  ``require_approval`` budget too: the human decides), so what a human approves fits;
  it is released when the approval is denied or expires (``actionstore``).

The reservation id is stored with the action; executing it settles it (``actionstore``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import Connection

from agentfirewall.actions import ActionSpec
from agentfirewall.decisions import Decision
from agentfirewall_server.budgets import CompiledBudget
from agentfirewall_server.budgetstore import Refused, Reserved, reserve
from agentfirewall_server.grants import use_grant
from agentfirewall_server.metrics import Metrics
from agentfirewall_server.roles import DEFAULT_ROLES
from agentfirewall_server.routes.budgets import covered_by
from agentfirewall_server.snapshot import AgentRecord
from agentfirewall_server.state import AppState

__all__ = ["Spend", "spend_check"]


@dataclass(slots=True)
class Spend:
    """What budgets and grants make of one SDK decision; `apply` runs in the write."""

    agent: str
    action_id: str
    spec: ActionSpec
    decision: Decision
    covered: list[tuple[CompiledBudget, float]] | Refused
    #: set by `apply`: the reservation, the grant used, the budget that refused or held
    reservation: str | None = None
    grant: dict[str, Any] | None = None
    refused: Refused | None = field(default=None)

    def apply(self, conn: Connection, stamp: float) -> Decision:
        """The final decision, with the reservation or grant recorded in `conn`."""
        if isinstance(self.covered, Refused):  # a covered request that says not how much
            return self._refuse(self.covered)
        held = self.decision
        if held.outcome == "allow":
            done = self._reserve(conn, stamp, force=False)
            if isinstance(done, Reserved):
                return held
            if done.outcome == "deny":
                return self._refuse(done)
            self.refused = done
            held = replace(held, outcome="require_approval", reason=done.reason,
                           decided_outcome="require_approval")  # fmt: skip
        granted = self._granted(conn, held, stamp)
        if granted is not None:
            return granted
        done = self._reserve(conn, stamp, force=False)
        if isinstance(done, Refused):
            if done.outcome == "deny":
                return self._refuse(done)
            self.refused = done
            if done.reason not in held.reason:
                held = replace(held, reason=f"{held.reason}; {done.reason}")
            self._reserve(conn, stamp, force=True)  # the human decides on this spend
        return held

    def _granted(self, conn: Connection, held: Decision, stamp: float) -> Decision | None:
        """A grant covering the held request: allowed, its spend reserved past
        ``require_approval`` budgets; past a ``deny`` one the grant's use is undone."""
        savepoint = conn.begin_nested()
        required = held.approval
        roles = required.approver_roles if required is not None and required.explicit else ()
        grant = use_grant(conn, agent=self.agent, connector=self.spec.provider,
                          spec=self.spec.to_dict(), approver_roles=roles or DEFAULT_ROLES,
                          actor=self.agent, now=stamp)  # fmt: skip
        if grant is None:
            savepoint.commit()
            return None
        done = self._reserve(conn, stamp, force=True)
        if isinstance(done, Refused):
            savepoint.rollback()
            return self._refuse(done)
        savepoint.commit()
        self.grant = grant
        return replace(held, outcome="allow", reason=f"approved by grant {grant['id']}")

    def _reserve(self, conn: Connection, stamp: float, *, force: bool) -> Refused | Reserved:
        assert not isinstance(self.covered, Refused)
        done = reserve(conn, self.covered, agent=self.agent, request_id=self.action_id,
                       force=force, now=stamp)  # fmt: skip
        if isinstance(done, Reserved):
            self.reservation = done.reservation
        return done

    def _refuse(self, refused: Refused) -> Decision:
        self.refused = refused
        return replace(self.decision, outcome="deny", reason=refused.reason,
                       decided_outcome="deny")  # fmt: skip

    def count(self, metrics: Metrics) -> None:
        """The budget that refused or held it, the grant that let it through."""
        if self.refused is not None:
            metrics.budget_refusals.labels(self.refused.budget, self.refused.outcome).inc()
        if self.grant is not None:
            metrics.grant_uses.labels(self.agent).inc()


def spend_check(
    state: AppState, agent: AgentRecord, spec: ActionSpec, decision: Decision, action_id: str
) -> Spend | None:
    """A `Spend` when budgets or grants may change `decision`, else None (the fast path)."""
    if decision.outcome == "deny":  # deny rules and the kill switch decide before both
        return None
    covered: list[tuple[CompiledBudget, float]] | Refused = []
    if state.snapshot.budgets:
        covered = covered_by(state, agent.name, spec.provider, spec.type, dict(spec.parameters))
    if decision.outcome == "allow" and isinstance(covered, list) and not covered:
        return None
    return Spend(agent.name, action_id, spec, decision, covered)
