"""``guard``: turn a firewall answer into "go ahead" or an exception.

Shared by the sync and async guards: a deny raises :class:`ActionDenied`, a hold waits for
the approval and raises :class:`ApprovalError` when none comes, an allow (or an approval)
gives the :class:`ActionResult` whose ``decision_token`` the guarded code may use.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TypedDict

from pydantic import JsonValue

from agentfirewall.client._models import ActionResult, Approved, NotApproved
from agentfirewall.errors import ActionDenied, ApprovalError

__all__ = ["ActionFields", "approval_error", "approved_result", "denial"]


class ActionFields(TypedDict, total=False):
    """The keyword arguments of ``request_action`` besides ``action_type``."""

    provider: str | None
    account: str | None
    target: str | None
    environment: str | None
    parameters: dict[str, JsonValue] | None
    risk_hints: dict[str, JsonValue] | None


def denial(result: ActionResult, action_type: str) -> ActionDenied:
    return ActionDenied(result.decision, action_type=action_type)


def approved_result(result: ActionResult, outcome: Approved) -> ActionResult:
    """The held result, now allowed, carrying the fresh token from the approval."""
    return replace(
        result, status="allowed", decision=outcome.decision, decision_token=outcome.decision_token
    )


def approval_error(outcome: NotApproved) -> ApprovalError:
    reason = f": {outcome.reason}" if outcome.reason else ""
    return ApprovalError(
        f"action `{outcome.action_request_id}` was not approved ({outcome.status}){reason}",
        status=outcome.status,
        action_request_id=outcome.action_request_id,
    )
