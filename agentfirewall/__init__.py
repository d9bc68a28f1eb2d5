"""TameFlare (agentfirewall): an agent firewall.

The core names actions, decides on them and signs decision tokens; the SDK asks a
TameFlare server before an agent acts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agentfirewall._version import __version__
from agentfirewall.actions import ActionSpec, Resource, action_hash, parse_action_spec
from agentfirewall.decisions import ApprovalRequirement, Decision
from agentfirewall.errors import (
    ActionDenied,
    ActionSpecError,
    AgentFirewallError,
    APIError,
    ApprovalError,
    AuthenticationError,
    ConflictError,
    ConnectorError,
    NotFoundError,
    PermissionDeniedError,
    PolicyError,
    RateLimitError,
    ServerError,
    TokenError,
    TransportError,
    ValidationError,
    VaultError,
)

if TYPE_CHECKING:
    from agentfirewall.client import (
        ActionResult,
        AgentFirewall,
        Approved,
        AsyncAgentFirewall,
        DryRunResult,
        ExecutionResult,
        NotApproved,
    )

# The SDK clients load httpx; they are imported on first use so that importing the pure
# core (``agentfirewall.actions``...) loads no network stack.
_LAZY = frozenset(
    {
        "ActionResult",
        "AgentFirewall",
        "Approved",
        "AsyncAgentFirewall",
        "DryRunResult",
        "ExecutionResult",
        "NotApproved",
    }
)


def __getattr__(name: str) -> object:
    if name in _LAZY:
        from agentfirewall import client

        return getattr(client, name)
    raise AttributeError(f"module `agentfirewall` has no attribute `{name}`")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _LAZY)


__all__ = [
    "APIError",
    "ActionDenied",
    "ActionResult",
    "ActionSpec",
    "ActionSpecError",
    "AgentFirewall",
    "AgentFirewallError",
    "ApprovalError",
    "ApprovalRequirement",
    "Approved",
    "AsyncAgentFirewall",
    "AuthenticationError",
    "ConflictError",
    "ConnectorError",
    "Decision",
    "DryRunResult",
    "ExecutionResult",
    "NotApproved",
    "NotFoundError",
    "PermissionDeniedError",
    "PolicyError",
    "RateLimitError",
    "Resource",
    "ServerError",
    "TokenError",
    "TransportError",
    "ValidationError",
    "VaultError",
    "__version__",
    "action_hash",
    "parse_action_spec",
]
