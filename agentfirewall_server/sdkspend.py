"""Budgets and grants on the SDK path (``POST /api/v1/actions``): the gateway's rules.

`spend_check` says, before the write, whether budgets or grants can change the engine's
decision: a deny (rules, kill switch) never; an allow only when a budget covers the
action; a hold (``require_approval``) always, since a grant may cover it. `Spend.apply`
then decides, inside the writer transaction that records the action:

- allow: the budgets covering the action are reserved (``budgetstore.reserve``); past a
  ``deny`` budget the action is denied, past a ``require_approval`` one it is held, the
  budget named in the reason either way (whatever the enforcement level: a budget is no
  rule that ``monitor`` reports only);
- held (by a rule or a budget): a grant covering the request lets it through (checked
  after deny rules and the kill switch, which decided before; its use audited with the
  grant's id) and its spend is reserved past ``require_approval`` budgets, never past a
  ``deny`` one (then the grant's use is rolled back and the action denied);
- held without a grant: its spend is reserved while it waits (past a
  ``require_approval`` budget too: the human decides), so what a human approves fits;
  it is released when the approval is denied or expires (``actionstore``).

The reservation id is stored with the action; executing it settles it (``actionstore``).
A dry run (``decide.explain``: ``dry-run`` and the dashboard's sandbox) applies the same
`Spend` with ``dry=True`` on a reader connection: the budgets' usage and the grants are
read as the write would read them, nothing is locked, reserved, used or audited, and a
``budgets`` step says which budget or grant decided, with its numbers.

Budgets see the action that will run (`performed`): a build alias such as
``payment.transfer.initiate`` (provider ``stripe``) is executed as ``stripe.transfer.create``,
so a ``stripe.transfer.*`` budget covers it, and spends the amount the built request sends.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import Connection

from agentfirewall.actions import ActionSpec
from agentfirewall.budgets import CompiledBudget, action_names, covering
from agentfirewall.decisions import Decision
from agentfirewall.policy import Step
from agentfirewall_server.budgetstore import Refused, Reserved, fits, reserve
from agentfirewall_server.grants import use_grant
from agentfirewall_server.metrics import Metrics
from agentfirewall_server.roles import DEFAULT_ROLES
from agentfirewall_server.snapshot import AgentRecord
from agentfirewall_server.state import AppState

__all__ = ["Spend", "covered_by", "performed", "spend_check"]


#: Connectors that execute against the action's own target (``executor.py``): no base URL
#: nor options of a configured connector go into the request they build.
_TARGETED = frozenset({"webhook", "generic"})


@dataclass(slots=True)
class Spend:
    """What budgets and grants make of one SDK decision; `apply` runs in the write (or,
    `dry`, on a reader: the same decision, nothing locked, reserved, used or audited)."""

    agent: str
    action_id: str
    spec: ActionSpec
    decision: Decision
    covered: list[tuple[CompiledBudget, float]] | Refused
    dry: bool = False
    #: the host a gateway request goes to (the dashboard sandbox's proxy mode): grants made
    #: on a gateway request for that host are read too (``grants.use_grant``)
    host: str | None = None
    #: set by `apply`: the reservation, the grant used, the budget that refused or held
    reservation: str | None = None
    grant: dict[str, Any] | None = None
    refused: Refused | None = field(default=None)
    #: set by `apply`: what each covered budget had used before this request
    used: dict[str, float] = field(default_factory=dict)

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
                          host=self.host, actor=self.agent, now=stamp,
                          record=not self.dry)  # fmt: skip
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
                       force=force, now=stamp, record=not self.dry)  # fmt: skip
        if isinstance(done, Reserved):
            self.reservation, self.used = done.reservation, done.used
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

    def step(self, decision: Decision) -> Step:
        """The ``budgets`` step of an explanation, once `apply` made `decision`: the budget
        that refused or held it (its reason, as the denial reads), else each covered
        budget's numbers; the grant that let it through, or that none did."""
        if self.refused is not None:
            lines = [self.refused.reason]
        else:  # within every budget covering it
            assert not isinstance(self.covered, Refused)
            lines = [fits(b, self.used[b.name], amount) for b, amount in self.covered]
        if self.grant is not None:
            lines.append(f"approved by grant {self.grant['id']}")
        elif decision.outcome == "require_approval":
            lines.append("no grant covers it: held for a person")
        return Step("budgets", decision.outcome, "\n".join(lines))


def spend_check(
    state: AppState,
    agent: AgentRecord,
    spec: ActionSpec,
    decision: Decision,
    action_id: str,
    *,
    dry: bool = False,
    gateway: bool = False,
    host: str | None = None,
) -> Spend | None:
    """A `Spend` when budgets or grants may change `decision`, else None (the fast path).

    The action is named as `performed` names it, or (`gateway`) as the gateway names a
    request: by its own type and parameters, sent to `host` when known (the dashboard
    sandbox's proxy mode)."""
    if decision.outcome == "deny":  # deny rules and the kill switch decide before both
        return None
    covered: list[tuple[CompiledBudget, float]] | Refused = []
    if state.snapshot.budgets:
        named = ((spec.type,), dict(spec.parameters)) if gateway else performed(state, spec)
        covered = covered_by(state, agent.name, spec.provider, *named)
    if decision.outcome == "allow" and isinstance(covered, list) and not covered:
        return None
    return Spend(agent.name, action_id, spec, decision, covered, dry=dry, host=host)


def performed(state: AppState, spec: ActionSpec) -> tuple[tuple[str, ...], dict[str, Any]]:
    """What budgets see of an SDK action: every name it goes by, and its parameters
    (``agentfirewall.budgets.action_names``: a build alias resolved by building the request
    as ``execute`` builds it, with the configured connector's base URL and options, and
    naming it as the gateway would). Without a budget on the spec's connector nothing is
    built: no budget could cover it.
    """
    budgets = state.snapshot.budgets.values()
    if not any(b.definition.connector == spec.provider for b in budgets):
        return (spec.type,), dict(spec.parameters)
    row = None
    if spec.provider not in _TARGETED:
        row = next((c for c in state.snapshot.connectors if c["type"] == spec.provider), None)
    row = row or {}
    return action_names(spec, base_url=row.get("base_url"), options=row.get("options"))


def covered_by(
    state: AppState,
    agent: str,
    connector: str,
    actions: str | tuple[str, ...],
    parameters: dict[str, Any],
) -> list[tuple[CompiledBudget, float]] | Refused:
    """The budgets covering a request and what it spends from each, or the refusal of one
    that cannot say how much (``agentfirewall.budgets.covering``)."""
    return covering(state.snapshot.budgets.values(), agent, connector, actions, parameters)
