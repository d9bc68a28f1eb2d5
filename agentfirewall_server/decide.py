"""Evaluate an SDK action against the in-memory snapshot's compiled engine."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from agentfirewall.actions import ActionSpec
from agentfirewall.decisions import ApprovalRequirement, Decision, normalize_level
from agentfirewall.policy import EvaluationContext, Explanation
from agentfirewall_server.approvals import DEFAULT_ROLES
from agentfirewall_server.snapshot import AgentRecord
from agentfirewall_server.state import AppState

__all__ = ["approval_terms", "context_for", "explain", "issue_token"]


def context_for(agent: AgentRecord, spec: ActionSpec) -> EvaluationContext:
    return EvaluationContext(
        agent=agent.name,
        mode="sdk",
        now=datetime.now(UTC),
        connector=spec.provider,
        enforcement_level=normalize_level(agent.enforcement_level),
        sdk_default="deny" if agent.sdk_default == "deny" else "allow",
    )


def explain(state: AppState, agent: AgentRecord, spec: ActionSpec) -> Explanation:
    return state.snapshot.engine.explain(spec, context_for(agent, spec))


def approval_terms(state: AppState, decision: Decision) -> tuple[int, tuple[str, ...]]:
    """Timeout and approver roles: the rule's when it set them, else the server's default."""
    default_timeout = int(
        state.snapshot.settings.get("approval_timeout_seconds")
        or state.settings.approval_timeout_seconds
    )
    req = decision.approval
    if req is None or req == ApprovalRequirement():
        return default_timeout, DEFAULT_ROLES
    return req.timeout_seconds, tuple(req.approver_roles) or DEFAULT_ROLES


def issue_token(state: AppState, agent: str, action_request_id: str, action_hash: str) -> str:
    return state.signer.sign(
        agent=agent,
        action_request_id=action_request_id,
        action_hash=action_hash,
        now=int(time.time()),
    )
