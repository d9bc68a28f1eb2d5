"""Every error TameFlare raises, under one root.

::

    AgentFirewallError
    ├── ActionSpecError          an action spec or action type is malformed (caller's fault)
    ├── ConnectorError           an HTTP request cannot be turned into an action
    ├── PolicyError              a policy document is invalid (file, line, field)
    ├── TokenError               a decision token is invalid, expired, replayed or misbound
    ├── VaultError               a credential cannot be encrypted or decrypted (wrong key)
    ├── CredentialError          a computed credential is misconfigured or cannot be obtained
    ├── ActionDenied             the firewall said no (carries the Decision)
    ├── ApprovalError            an approval was denied, expired or timed out
    └── APIError                 the control plane answered with an error (status_code, body)
        ├── AuthenticationError  401: missing, wrong, suspended or revoked key
        ├── PermissionDeniedError 403: role too low (required_role, your_role)
        ├── NotFoundError        404
        ├── ConflictError        409: e.g. a decision token already used
        ├── ValidationError      400/422: the server's message says what is wrong
        ├── RateLimitError       429: retry_after seconds
        ├── ServerError          5xx
        └── TransportError       the server could not be reached

Messages follow one style: lowercase, no final period, user input in backticks.
"""

from __future__ import annotations

from typing import Any, Protocol

__all__ = [
    "APIError",
    "ActionDenied",
    "ActionSpecError",
    "AgentFirewallError",
    "ApprovalError",
    "AuthenticationError",
    "ConflictError",
    "ConnectorError",
    "CredentialError",
    "DeniedDecision",
    "LeaseBusy",
    "NotFoundError",
    "PermissionDeniedError",
    "PolicyError",
    "RateLimitError",
    "ServerError",
    "TokenError",
    "TransportError",
    "ValidationError",
    "VaultError",
]


class AgentFirewallError(Exception):
    """Root of every error raised by agentfirewall."""


class ActionSpecError(AgentFirewallError, ValueError):
    """An action spec or action type is malformed."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class ConnectorError(AgentFirewallError):
    """An HTTP request cannot be turned into an action by its connector."""

    def __init__(self, message: str, *, connector: str | None = None) -> None:
        super().__init__(message)
        self.connector = connector


class PolicyError(AgentFirewallError, ValueError):
    """A policy document is invalid; names the file, line and field when known."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.message = message
        self.file = file
        self.line = line
        self.field = field
        super().__init__(self._render())

    def _render(self) -> str:
        where = ":".join(str(p) for p in (self.file, self.line) if p is not None)
        parts = [p for p in (where, f"`{self.field}`" if self.field else None, self.message) if p]
        return ": ".join(parts)


class TokenError(AgentFirewallError):
    """A decision token was rejected; `code` says why (expired, replayed, mismatch...)."""

    def __init__(self, message: str, *, code: str = "invalid_token") -> None:
        super().__init__(message)
        self.code = code


class VaultError(AgentFirewallError):
    """A credential could not be encrypted or decrypted."""


class CredentialError(AgentFirewallError):
    """A computed credential (SigV4 keys, GitHub App, OAuth2) is misconfigured, or its
    token could not be obtained; `field` names the configuration field when one is wrong."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class LeaseBusy(CredentialError):
    """Another gateway or replica is refreshing the same rotating grant: ask again after
    `retry_after` seconds (``agentfirewall.credentials.broker``)."""

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class DeniedDecision(Protocol):
    """What a denial carries: an :class:`agentfirewall.decisions.Decision` (which sits
    above this module, so it is named here by the fields a handler reads)."""

    @property
    def outcome(self) -> str: ...
    @property
    def reason(self) -> str: ...
    @property
    def risk_score(self) -> float: ...
    @property
    def matched_policies(self) -> tuple[str, ...]: ...
    @property
    def matched_rules(self) -> tuple[str, ...]: ...
    @property
    def errors(self) -> tuple[str, ...]: ...
    @property
    def decided_outcome(self) -> str | None: ...
    @property
    def kill_switch(self) -> bool: ...
    def to_dict(self) -> dict[str, Any]: ...


class ActionDenied(AgentFirewallError):
    """The firewall denied an action; `decision` (a Decision) holds the reasons."""

    def __init__(self, decision: DeniedDecision, *, action_type: str | None = None) -> None:
        self.decision = decision
        self.action_type = action_type
        what = f"`{action_type}` " if action_type else ""
        super().__init__(f"action {what}denied: {decision.reason}")


class ApprovalError(AgentFirewallError):
    """An approval did not come through: denied, expired or timed out."""

    def __init__(self, message: str, *, status: str, action_request_id: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.action_request_id = action_request_id


class APIError(AgentFirewallError):
    """The control plane answered with an error status.

    `retryable` is the server's word on sending the same request again, when it gives one:
    True when nothing was done (an execute whose upstream was never reached: the same
    decision token may be used again), False when it must not be repeated (an execute that
    may have reached the upstream), None when the answer does not say.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        body: object = None,
        code: str | None = None,
        retryable: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.body = body
        self.code = code
        self.retryable = retryable


class AuthenticationError(APIError):
    """401: the API key is missing, wrong, suspended or revoked."""


class PermissionDeniedError(APIError):
    """403: the caller's role is below the one the endpoint needs."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = 403,
        body: object = None,
        code: str | None = None,
        retryable: bool | None = None,
        required_role: str | None = None,
        your_role: str | None = None,
    ) -> None:
        super().__init__(
            message, status_code=status_code, body=body, code=code, retryable=retryable
        )
        self.required_role = required_role
        self.your_role = your_role


class NotFoundError(APIError):
    """404: no such action, approval, agent or resource."""


class ConflictError(APIError):
    """409: the request conflicts with the current state (token used, approval decided)."""


class ValidationError(APIError):
    """400/413/422: the request was malformed; the message is the server's."""


class RateLimitError(APIError):
    """429: too many requests; retry after `retry_after` seconds."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = 429,
        body: object = None,
        code: str | None = None,
        retryable: bool | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(
            message, status_code=status_code, body=body, code=code, retryable=retryable
        )
        self.retry_after = retry_after


class ServerError(APIError):
    """5xx: the control plane failed."""


class TransportError(APIError):
    """The control plane could not be reached (connection refused, timeout)."""
