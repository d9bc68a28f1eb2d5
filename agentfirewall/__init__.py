"""TameFlare (agentfirewall): an agent firewall.

The core names actions, decides on them and signs decision tokens; the SDK asks a
TameFlare server before an agent acts.
"""

from __future__ import annotations

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

__version__ = "0.1.0"

__all__ = [
    "APIError",
    "ActionDenied",
    "ActionSpec",
    "ActionSpecError",
    "AgentFirewallError",
    "ApprovalError",
    "ApprovalRequirement",
    "AuthenticationError",
    "ConflictError",
    "ConnectorError",
    "Decision",
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
