"""The SDK clients: :class:`AgentFirewall` (sync) and :class:`AsyncAgentFirewall` (async).

One implementation: ``_base`` builds requests and parses answers, ``_retry`` holds the
retry arithmetic, ``_wire`` maps the wire to results and errors; ``_sync`` and ``_async``
add only the I/O, with matching method names.

How the parts fit, bottom-up (a module imports only from the lines below its own;
`.importlinter` holds the same order)::

    _models          the result types (ActionResult, Approved, ...)
    _wire, _retry    wire answers -> results and errors; the retry arithmetic
    _args            the arguments, checked before anything is sent
    _base, _guard    requests, headers, token checks; what a guard does on deny or hold
    _sync, _async    the two clients: the I/O only

The package ``agentfirewall`` re-exports the clients lazily; nothing here imports it back
(the version comes from ``agentfirewall._version``).
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
from agentfirewall.client._wire import DecisionTokenRejected

__all__ = [
    "ActionResult",
    "ActionState",
    "AgentFirewall",
    "ApprovalInfo",
    "ApprovalOutcome",
    "Approved",
    "AsyncAgentFirewall",
    "AsyncGuard",
    "DecisionTokenRejected",
    "DryRunResult",
    "ExecutionResult",
    "ExplanationStep",
    "Guard",
    "NotApproved",
    "RetryPolicy",
    "build_spec",
]
