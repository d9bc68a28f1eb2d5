"""What the client returns: typed results parsed from the wire (docs/api.md).

Every result is a frozen dataclass. A deny is data, not an exception, until the caller
asks for one with ``raise_for_denial()``. ``wait_for_approval`` returns :class:`Approved`
(truthy, with a fresh ``decision_token``) or :class:`NotApproved` (falsy, saying why), so
the seed's ``if approved: ...execute(..., approved.decision_token)`` reads naturally and
type-checks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from agentfirewall.decisions import Decision, Status
from agentfirewall.errors import ActionDenied

__all__ = [
    "ActionResult",
    "ActionState",
    "ApprovalInfo",
    "ApprovalOutcome",
    "Approved",
    "DryRunResult",
    "ExecutionResult",
    "ExplanationStep",
    "NotApproved",
]

#: Statuses ``GET /v1/actions/{id}`` may report besides the three of a fresh request.
ActionStatus = Literal["allowed", "denied", "pending_approval", "expired", "executed"]


@dataclass(frozen=True, slots=True)
class ApprovalInfo:
    """The approval a held action waits for."""

    id: str
    expires_at: str | None = None
    required_approver_roles: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ActionResult:
    """The answer to ``request_action``: the seed's response object, typed."""

    action_request_id: str
    status: Status
    decision: Decision
    decision_token: str | None = None
    approval: ApprovalInfo | None = None
    replayed: bool = False

    @property
    def allowed(self) -> bool:
        return self.status == "allowed"

    @property
    def denied(self) -> bool:
        return self.status == "denied"

    @property
    def pending(self) -> bool:
        return self.status == "pending_approval"

    def raise_for_denial(self) -> ActionResult:
        """Return self (for chaining) only when allowed: a deny raises ActionDenied, a hold
        ApprovalError (``status == "pending_approval"``; ``wait_for_approval`` waits).

        Judged by ``status``: an approved result is ``allowed`` though its decision still
        says ``require_approval`` (what the rules asked for).
        """
        if self.status != "allowed":
            self.decision.raise_for_denial(self.action_request_id)
            raise ActionDenied(self.decision)  # a status the decision does not explain
        return self


@dataclass(frozen=True, slots=True)
class Approved:
    """A held action was approved: execute it (Mode A) or act (Mode B) with this token."""

    action_request_id: str
    decision_token: str
    decision: Decision

    def __bool__(self) -> Literal[True]:
        return True


@dataclass(frozen=True, slots=True)
class NotApproved:
    """No approval: ``status`` is ``denied``, ``expired``, ``executed`` or ``timeout``."""

    action_request_id: str
    status: str
    reason: str
    decision: Decision | None = None

    def __bool__(self) -> Literal[False]:
        return False


ApprovalOutcome = Approved | NotApproved


@dataclass(frozen=True, slots=True)
class ExecutionResult:
    """What the upstream answered when the server executed an action (Mode A)."""

    action_request_id: str
    status: str
    status_code: int
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None

    @property
    def ok(self) -> bool:
        return 200 <= self.status_code < 300

    def __str__(self) -> str:
        body = self.body if isinstance(self.body, str) else json.dumps(self.body, sort_keys=True)
        return f"{self.status_code} {body}"


@dataclass(frozen=True, slots=True)
class ExplanationStep:
    """One step of a dry run's explanation (kill_switch, access_rules, policies...)."""

    step: str
    result: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class DryRunResult:
    """What the firewall would answer, with why; nothing was recorded."""

    status: Status
    decision: Decision
    explanation: tuple[ExplanationStep, ...] = ()


@dataclass(frozen=True, slots=True)
class ActionState:
    """An action request as the server holds it now (``GET /v1/actions/{id}``)."""

    action_request_id: str
    status: ActionStatus
    decision: Decision
    action_spec: dict[str, Any] = field(default_factory=dict)
    agent: str | None = None
    created_at: str | None = None
    approval: dict[str, Any] | None = None
    executed: bool = False
    execution: dict[str, Any] | None = None
    decision_token: str | None = None
