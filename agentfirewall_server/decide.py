"""Evaluate an SDK action against the in-memory snapshot's compiled engine.

Content guardrails hold in SDK mode as at the gateway: when a policy reads ``content.secrets``
or ``content.pii``, the action's strings (each string of ``parameters``, the resource names,
and the decoded text of the parameters its connector says carry base64, as the gateway
decodes those fields: ``agentfirewall.connectors.encoded_parameters``) are scanned and the
detector names reach the engine; conditions on ``budget.<name>.*`` read
the budgets' state from the store (:func:`sdk_context`). Both are gathered when a live *or a
shadow* policy reads them (the action is scanned once; each configuration sees only what
its own policies read). A ``redact`` rule cannot rewrite what the agent itself will send, so
in SDK mode the action it matches is refused instead
(``agentfirewall.policy.guard.sdk_content_decision``), as the gateway refuses what it cannot
redact; where the detectors fired (never the text) is added to the decision's reason.

An action named by a build alias (``payment.transfer.initiate``, which the control plane
executes as ``stripe.transfer.create``) is decided under both names and the stricter rule
answers (:func:`evaluate_sdk`): a rule on the action performed holds its alias too. The
rule is the core's (``agentfirewall.policy.replay.evaluate_sdk``), which shadow mode and
replay apply too.

Budgets and grants then have their say (``request_action``, in the writer transaction that
records the action: ``sdkspend.py``). A dry run (:func:`explain`: ``dry-run`` and the
dashboard's sandbox) applies the same ``sdkspend.Spend`` with ``dry=True`` on a reader
connection: the budgets' usage and the grants are read as the write would read them,
nothing is locked, reserved, used or audited, and a ``budgets`` step says which budget or
grant decided, with its numbers.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from agentfirewall.actions import ActionSpec
from agentfirewall.connectors import encoded_parameters, performed_as
from agentfirewall.content import Finding
from agentfirewall.decisions import Decision, normalize_level
from agentfirewall.policy import Engine, EvaluationContext, Explanation
from agentfirewall.policy.guard import GuardPlan, action_findings
from agentfirewall.policy.replay import evaluate_sdk as decide_sdk
from agentfirewall.policy.replay import with_findings
from agentfirewall_server.approvals import DEFAULT_ROLES
from agentfirewall_server.budgetleases import budget_attributes
from agentfirewall_server.sdkspend import spend_check
from agentfirewall_server.snapshot import AgentRecord
from agentfirewall_server.state import AppState

__all__ = [
    "approval_terms",
    "context_for",
    "evaluate_sdk",
    "explain",
    "issue_token",
    "kill_switch_over",
    "sdk_context",
    "with_budgets",
]


_NONE: Mapping[str, object] = MappingProxyType({})


def evaluate_sdk(
    engine: Engine,
    spec: ActionSpec,
    ctx: EvaluationContext,
    plan: GuardPlan | None = None,
    found: Sequence[Finding] = (),
) -> Decision:
    """The SDK decision (``agentfirewall.policy.replay.evaluate_sdk``) with the action a
    build alias runs as; `found`: the action's detections (:func:`sdk_context`), of which
    those of `plan` (the engine's guard plan) count."""
    findings = with_findings(ctx, plan, found)[1] if found and plan is not None else []
    return decide_sdk(engine, spec, ctx, performed_as(spec), plan=plan, findings=findings)


def context_for(
    agent: AgentRecord, spec: ActionSpec, attributes: Mapping[str, object] = _NONE
) -> EvaluationContext:
    return EvaluationContext(
        agent=agent.name,
        mode="sdk",
        now=datetime.now(UTC),
        connector=spec.provider,
        enforcement_level=normalize_level(agent.enforcement_level),
        sdk_default="deny" if agent.sdk_default == "deny" else "allow",
        attributes=attributes,
    )


async def sdk_context(
    state: AppState, agent: AgentRecord, spec: ActionSpec
) -> tuple[EvaluationContext, list[Finding]]:
    """The context with what policy conditions read beyond the action: ``budget.<name>.*``
    (read from the store) when a live or shadow policy reads one, and what the content
    detectors the live policies read found in the action's strings; and every detection of
    the detectors the live or the shadow policies read (``with_findings`` picks one
    configuration's)."""
    snapshot = state.snapshot
    attributes: dict[str, object] = {}
    if snapshot.reads_budgets:
        budgets, stamp = list(snapshot.budgets.values()), time.time()
        attributes.update(await state.db.read(lambda c: budget_attributes(c, budgets, stamp)))
    found = action_findings(snapshot.scan, spec, encoded_parameters(spec.provider, spec.type))
    ctx = context_for(agent, spec, attributes)
    return (with_findings(ctx, snapshot.guard, found)[0] if found else ctx), found


async def explain(state: AppState, agent: AgentRecord, spec: ActionSpec) -> Explanation:
    """The decision with every step, as ``request_action`` decides (``dry-run``), budgets
    and grants included; nothing recorded."""
    snapshot = state.snapshot
    ctx, found = await sdk_context(state, agent, spec)
    result = snapshot.engine.explain(spec, ctx)
    decided = evaluate_sdk(snapshot.engine, spec, ctx, snapshot.guard, found)
    if decided != result.decision:
        result = replace(result, decision=decided)
    return await with_budgets(state, agent, spec, result)


async def with_budgets(
    state: AppState,
    agent: AgentRecord,
    spec: ActionSpec,
    result: Explanation,
    *,
    gateway: bool = False,
    host: str | None = None,
) -> Explanation:
    """`result` with what budgets and grants would make of its decision now (a dry
    `Spend`: read, never reserved nor used) and a ``budgets`` step saying why; unchanged
    when neither can change it. `gateway`: the request as the gateway names it, sent to
    `host` when known (`spend_check`)."""
    spend = spend_check(state, agent, spec, result.decision, "", dry=True, gateway=gateway,
                        host=host)  # fmt: skip
    if spend is None:
        return result
    stamp = time.time()
    decision = await state.db.read(lambda conn: spend.apply(conn, stamp))
    return Explanation(decision, [*result.steps, spend.step(decision)])


def approval_terms(state: AppState, decision: Decision) -> tuple[int, tuple[str, ...]]:
    """Timeout and approver roles: the rule's when it set them, else the server's default."""
    default_timeout = int(
        state.snapshot.settings.get("approval_timeout_seconds")
        or state.settings.approval_timeout_seconds
    )
    req = decision.approval
    if req is None or not req.explicit:
        return default_timeout, DEFAULT_ROLES
    return req.timeout_seconds, tuple(req.approver_roles) or DEFAULT_ROLES


def issue_token(state: AppState, agent: str, action_request_id: str, action_hash: str) -> str:
    return state.signer.sign(
        agent=agent,
        action_request_id=action_request_id,
        action_hash=action_hash,
        now=int(time.time()),
    )


def kill_switch_over(state: AppState, row: Mapping[str, Any]) -> Decision | None:
    """The deny of an active kill switch that now covers a stored action (its agent, or its
    connector: the type, or a configured connector of the type by id or name), or None. An
    action allowed before the switch is neither handed a token (``/wait``, an idempotent
    replay) nor executed while it is active."""
    engine = state.snapshot.engine
    if not engine.kill_switch_active:
        return None
    spec = ActionSpec.model_validate(json.loads(row["action_spec"]))
    return engine.kill_switch_over(row["agent"], spec, risk=float(row["risk_score"] or 0.0))
