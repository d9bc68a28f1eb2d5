"""The wire, both ways: JSON answers into results, error answers into exceptions.

Pure functions over status codes, headers and decoded bodies; no I/O. The error codes
and shapes are docs/api.md's: ``{"error": "<code>", "message": "...", ...}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, cast

from agentfirewall.client._models import (
    ActionResult,
    ActionState,
    ActionStatus,
    ApprovalInfo,
    ApprovalOutcome,
    Approved,
    DryRunResult,
    ExecutionResult,
    ExplanationStep,
    NotApproved,
)
from agentfirewall.decisions import Decision, Status
from agentfirewall.errors import (
    APIError,
    AuthenticationError,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    TokenError,
    ValidationError,
)

__all__ = [
    "DecisionTokenRejected",
    "error_for_response",
    "parse_action_result",
    "parse_action_state",
    "parse_dry_run",
    "parse_execution",
    "parse_retry_after",
    "parse_wait",
]

_STATUSES: tuple[Status, ...] = ("allowed", "denied", "pending_approval")
_STATE_STATUSES = (*_STATUSES, "expired", "executed")
_BY_STATUS: dict[int, type[APIError]] = {
    400: ValidationError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    413: ValidationError,
    422: ValidationError,
    429: RateLimitError,
}


def _malformed(what: str, detail: str) -> ServerError:
    return ServerError(f"unexpected answer from the server: {what}: {detail}", status_code=200)


def _str(data: Mapping[str, Any], key: str, what: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise _malformed(what, f"`{key}` is missing")
    return value


def _decision(data: Mapping[str, Any], what: str) -> Decision:
    raw = data.get("decision")
    if not isinstance(raw, dict):
        raise _malformed(what, "`decision` is missing")
    try:
        return Decision.from_dict(raw)
    except (KeyError, ValueError, TypeError) as exc:
        raise _malformed(what, f"`decision` is invalid: {exc}") from None


def _status(data: Mapping[str, Any], allowed: tuple[str, ...], what: str) -> str:
    status = data.get("status")
    if status not in allowed:
        raise _malformed(what, f"unknown status `{status}`")
    return cast(str, status)


def _approval(raw: object) -> ApprovalInfo | None:
    if not isinstance(raw, dict) or not isinstance(raw.get("id"), str):
        return None
    return ApprovalInfo(
        id=raw["id"],
        expires_at=raw.get("expires_at"),
        required_approver_roles=tuple(raw.get("required_approver_roles") or ()),
    )


def _object(body: object, what: str) -> Mapping[str, Any]:
    if not isinstance(body, dict):
        raise _malformed(what, "not a JSON object")
    return body


def parse_action_result(body: object, *, replayed: bool = False) -> ActionResult:
    """``POST /v1/actions`` answer -> ActionResult."""
    what = "request_action"
    data = _object(body, what)
    token = data.get("decision_token")
    return ActionResult(
        action_request_id=_str(data, "action_request_id", what),
        status=cast(Status, _status(data, _STATUSES, what)),
        decision=_decision(data, what),
        decision_token=token if isinstance(token, str) and token else None,
        approval=_approval(data.get("approval")),
        replayed=replayed,
    )


def parse_dry_run(body: object) -> DryRunResult:
    """``POST /v1/actions/dry-run`` answer -> DryRunResult."""
    what = "dry_run"
    data = _object(body, what)
    steps = tuple(
        ExplanationStep(str(s.get("step", "")), str(s.get("result", "")), str(s.get("detail", "")))
        for s in data.get("explanation") or ()
        if isinstance(s, dict)
    )
    status = cast(Status, _status(data, _STATUSES, what))
    return DryRunResult(status=status, decision=_decision(data, what), explanation=steps)


def parse_action_state(body: object) -> ActionState:
    """``GET /v1/actions/{id}`` (and ``/wait``) answer -> ActionState."""
    what = "get_action"
    data = _object(body, what)
    token = data.get("decision_token")
    agent = data.get("agent")
    spec = data.get("action_spec")
    approval, execution = data.get("approval"), data.get("execution")
    return ActionState(
        action_request_id=_str(data, "action_request_id", what),
        status=cast(ActionStatus, _status(data, _STATE_STATUSES, what)),
        decision=_decision(data, what),
        action_spec=spec if isinstance(spec, dict) else {},
        agent=agent.get("name") if isinstance(agent, dict) else agent,
        created_at=data.get("created_at"),
        approval=approval if isinstance(approval, dict) else None,
        executed=bool(data.get("executed", False)),
        execution=execution if isinstance(execution, dict) else None,
        decision_token=token if isinstance(token, str) and token else None,
    )


def parse_wait(body: object) -> ApprovalOutcome | None:
    """``/wait`` answer -> Approved, NotApproved, or None while still pending."""
    state = parse_action_state(body)
    if state.status == "pending_approval":
        return None
    if state.status == "allowed" and state.decision_token:
        return Approved(state.action_request_id, state.decision_token, state.decision)
    executing = isinstance(body, dict) and body.get("execution_state") == "executing"
    return NotApproved(
        action_request_id=state.action_request_id,
        status="executed" if state.status == "allowed" else state.status,
        reason=_why_not_approved(state, executing=executing),
        decision=state.decision,
    )


def _why_not_approved(state: ActionState, *, executing: bool = False) -> str:
    """A person's denial (who, and their note), an execution that took the token, or an
    expiry; else the decision's reason (which, for a held action, is only why it was held).
    The Node SDK's ``whyNotApproved`` says the same words."""
    approval = state.approval or {}
    if state.status == "denied" and approval.get("status") == "denied":
        by, note = approval.get("decided_by") or "an approver", approval.get("note")
        return f"denied by {by}: {note}" if note else f"denied by {by}"
    if state.status in ("executed", "allowed"):  # allowed without a token: an execution took it
        where = "is being executed" if executing else "was already executed"
        return (
            f"the action {where}: its decision token was used; "
            "request the action again to act again"
        )
    if state.status == "expired":
        expiry = approval.get("expires_at")
        return (
            f"no decision before the approval expired at {expiry}"
            if expiry
            else ("no decision before the approval expired")
        )
    return state.decision.reason


def parse_execution(body: object) -> ExecutionResult:
    """``POST /v1/actions/{id}/execute`` answer -> ExecutionResult."""
    what = "execute"
    data = _object(body, what)
    result = data.get("result")
    result = result if isinstance(result, dict) else {}
    headers = result.get("headers")
    code = result.get("status_code")
    return ExecutionResult(
        action_request_id=_str(data, "action_request_id", what),
        status=str(data.get("status", "executed")),
        status_code=code if isinstance(code, int) else 0,
        headers={str(k): str(v) for k, v in headers.items()} if isinstance(headers, dict) else {},
        body=result.get("body"),
    )


def parse_retry_after(header: str | None, body: object = None) -> float | None:
    """Seconds from ``Retry-After`` (delta-seconds or HTTP date) or the body's ``retry_after``."""
    if header:
        try:
            return max(0.0, float(header))
        except ValueError:
            pass
        try:
            when = parsedate_to_datetime(header)
        except (TypeError, ValueError):
            when = None
        if when is not None:
            return max(0.0, (when - datetime.now(UTC)).total_seconds())
    if isinstance(body, dict) and isinstance(body.get("retry_after"), int | float):
        return max(0.0, float(body["retry_after"]))
    return None


# `code` is a str here (TokenError's), which APIError's `str | None` admits.
class DecisionTokenRejected(TokenError, AuthenticationError):  # type: ignore[misc]
    """``execute`` refused the decision token (401 ``invalid_token``).

    Both a :class:`TokenError`, whose ``code`` is the check that failed (``expired``,
    ``bad_signature``, ``wrong_action``... as :func:`agentfirewall.tokens.verify_decision_token`
    names them), and the :class:`AuthenticationError` a 401 is, with ``status_code`` and
    ``body``. The API key itself was accepted.
    """

    def __init__(self, message: str, *, body: object, reason: str) -> None:
        AuthenticationError.__init__(self, message, status_code=401, body=body, code=reason)


#: What to do next, by the token check that failed.
_TOKEN_HINTS = {
    "expired": "request the action again for a fresh token",
    "not_yet_valid": "check this machine's clock, then request the action again",
    "wrong_action": "pass the token that came with this action's own result or approval",
    "wrong_agent": "a token is good only for the agent it was issued to: use that agent's key",
    "bad_signature": "pass the token exactly as the server gave it (it was altered, or "
    "another server signed it)",
    "malformed": "pass the token exactly as the server gave it (`result.decision_token`)",
}


def _token_rejected(text: str, body: object, data: Mapping[str, Any]) -> DecisionTokenRejected:
    said = data.get("reason")
    reason = said if isinstance(said, str) else "invalid_token"
    hint = _TOKEN_HINTS.get(reason, "request the action again for a fresh token")
    return DecisionTokenRejected(f"{text}: {hint}", body=body, reason=reason)


def error_for_response(status_code: int, body: object, retry_after: str | None) -> APIError:
    """The exception for an error answer; its message is the server's own."""
    data = body if isinstance(body, dict) else {}
    code = data.get("error") if isinstance(data.get("error"), str) else None
    message = data.get("message") if isinstance(data.get("message"), str) else None
    text = message or (body if isinstance(body, str) and body else f"HTTP {status_code}")
    text = f"{code}: {text}" if code else str(text)
    said = data.get("retryable")
    retryable = said if isinstance(said, bool) else None
    if status_code == 401 and code == "invalid_token":
        return _token_rejected(text, body, data)
    if status_code == 429:
        seconds = parse_retry_after(retry_after, body)
        return RateLimitError(text, body=body, code=code, retryable=retryable, retry_after=seconds)
    if status_code == 403:
        return PermissionDeniedError(
            text,
            body=body,
            code=code,
            retryable=retryable,
            required_role=data.get("required_role"),
            your_role=data.get("your_role"),
        )
    cls = _BY_STATUS.get(status_code, ServerError if status_code >= 500 else APIError)
    return cls(text, status_code=status_code, body=body, code=code, retryable=retryable)
