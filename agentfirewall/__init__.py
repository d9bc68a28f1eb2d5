"""TameFlare (agentfirewall): an agent firewall.

The core names actions, decides on them and signs decision tokens; the SDK asks a
TameFlare server before an agent acts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agentfirewall._lazy import lazy_exports as _lazy_exports
from agentfirewall._version import __version__

if TYPE_CHECKING:
    from agentfirewall.actions import ActionSpec, Resource, action_hash, parse_action_spec
    from agentfirewall.client import (
        ActionResult,
        AgentFirewall,
        Approved,
        AsyncAgentFirewall,
        DryRunResult,
        ExecutionResult,
        NotApproved,
    )
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

# Every name is loaded on first use from the module that defines it (agentfirewall._lazy).
_HOMES = {
    "actions": ("ActionSpec", "Resource", "action_hash", "parse_action_spec"),
    "client": (
        "ActionResult",
        "AgentFirewall",
        "Approved",
        "AsyncAgentFirewall",
        "DryRunResult",
        "ExecutionResult",
        "NotApproved",
    ),
    "decisions": ("ApprovalRequirement", "Decision"),
    "errors": (
        "APIError",
        "ActionDenied",
        "ActionSpecError",
        "AgentFirewallError",
        "ApprovalError",
        "AuthenticationError",
        "ConflictError",
        "ConnectorError",
        "NotFoundError",
        "PermissionDeniedError",
        "PolicyError",
        "RateLimitError",
        "ServerError",
        "TokenError",
        "TransportError",
        "ValidationError",
        "VaultError",
    ),
}
__getattr__, __dir__ = _lazy_exports(__name__, _HOMES)

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
