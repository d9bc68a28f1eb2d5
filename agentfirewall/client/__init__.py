"""The SDK clients: :class:`AgentFirewall` (sync) and :class:`AsyncAgentFirewall` (async).

One implementation: ``_base`` builds requests and parses answers, ``_retry`` holds the
retry arithmetic, ``_wire`` maps the wire to results and errors; ``_sync`` and ``_async``
add only the I/O, with matching method names.
"""

from __future__ import annotations

from agentfirewall.client._async import AsyncAgentFirewall, AsyncGuard
from agentfirewall.client._base import build_spec
from agentfirewall.client._models import (
    ActionResult,
    ActionState,
    ApprovalInfo,
    ApprovalOutcome,
    Approved,
    DryRunResult,
    ExecutionResult,
    ExplanationStep,
    NotApproved,
)
from agentfirewall.client._retry import RetryPolicy
from agentfirewall.client._sync import AgentFirewall, Guard

__all__ = [
    "ActionResult",
    "ActionState",
    "AgentFirewall",
    "ApprovalInfo",
    "ApprovalOutcome",
    "Approved",
    "AsyncAgentFirewall",
    "AsyncGuard",
    "DryRunResult",
    "ExecutionResult",
    "ExplanationStep",
    "Guard",
    "NotApproved",
    "RetryPolicy",
    "build_spec",
]
