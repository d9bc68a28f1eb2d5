"""``POST /api/v1/gateway/approvals/batch``: many held requests' approvals in one call.

A gateway holding many requests at once sends their approvals together (as it batches
traffic records): each item is what ``POST /gateway/approvals`` takes, and each answer is
what it returns, in the same order (a grant that covers an item answers it ``approved``
with its ``grant_id``, as one by one). The whole batch is one writer job: the rows go in with
one INSERT and their ``approval.created`` events are chained with one append. An item that
cannot be recorded (its spec invalid, its hash not its spec's) gets an ``error`` object in
its place and the others are recorded.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field
from sqlalchemy import Connection, update
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from agentfirewall.actions import parse_action_spec
from agentfirewall.errors import ActionSpecError
from agentfirewall_server.approvals import DEFAULT_ROLES, approval_json, approval_row
from agentfirewall_server.audit import append_events, prepare_event
from agentfirewall_server.auth import require_gateway, state_of
from agentfirewall_server.clock import now
from agentfirewall_server.grants import use_grant
from agentfirewall_server.routes.gateway import GatewayApproval, _reusable
from agentfirewall_server.state import AppState
from agentfirewall_server.store.schema import approvals
from agentfirewall_server.web import Strict, json_ok, read_model

__all__ = ["MAX_BATCH", "routes"]

MAX_BATCH = 1000


class ApprovalBatch(Strict):
    approvals: list[GatewayApproval] = Field(min_length=1, max_length=MAX_BATCH)


def _checked(body: GatewayApproval) -> dict[str, Any]:
    """The item's spec as stored, or an ``error`` answer for it."""
    try:
        spec = parse_action_spec(body.action_spec)
    except ActionSpecError as exc:
        field = f"action_spec.{exc.field or ''}".rstrip(".")
        return {"error": {"status": 422, "message": str(exc), "field": field}}
    if spec.action_hash != body.action_hash:
        message = "`action_hash` does not match `action_spec`"
        return {"error": {"status": 422, "message": message, "field": "action_hash"}}
    return {"spec": spec.to_dict()}


def _job(
    state: AppState, items: list[tuple[GatewayApproval, dict[str, Any]]]
) -> Any:  # the writer job: (row, reused) per item, None for a refused one
    default_timeout = int(
        state.snapshot.settings.get("approval_timeout_seconds")
        or state.settings.approval_timeout_seconds
    )

    def job(conn: Connection) -> list[tuple[dict[str, Any], bool] | None]:
        stamp = now()
        out: list[tuple[dict[str, Any], bool] | None] = []
        rows: list[dict[str, Any]] = []
        events: list[dict[str, Any]] = []
        for body, checked in items:
            if "spec" not in checked:
                out.append(None)
                continue
            found = _reusable(conn, body)
            if found is not None:  # as one by one: an earlier item's reuse is seen here
                conn.execute(update(approvals).where(approvals.c.id == found.id).values(used=True))
                out.append(({**dict(found._mapping), "used": True}, True))
                continue
            spec = checked["spec"]
            # held (deny rules and the kill switch decided before): a grant may let it through
            grant = use_grant(conn, agent=body.agent, connector=body.connector, spec=spec,
                              actor="gateway", now=stamp)  # fmt: skip
            if grant is not None:
                out.append(({"grant": grant}, False))
                continue
            row = approval_row(
                agent=body.agent,
                connector=body.connector,
                action_request_id=None,
                source="proxy",
                spec=spec,
                action_hash=body.action_hash,
                risk_score=body.risk_score,
                reason=body.reason,
                request=body.request.model_dump(exclude_none=True) if body.request else None,
                roles=list(body.approver_roles or DEFAULT_ROLES),
                timeout_seconds=body.timeout_seconds or default_timeout,
                now=stamp,
            )
            rows.append(row)
            events.append(
                prepare_event(
                    "approval.created",
                    actor="gateway",
                    now=stamp,
                    agent=body.agent,
                    subject=row["id"],
                    data={"action_type": spec["type"], "connector": body.connector},
                )
            )
            out.append((row, False))
        if rows:
            conn.execute(approvals.insert(), rows)
            append_events(conn, events)
        return out

    return job


async def create_gateway_approvals(request: Request) -> JSONResponse:
    await require_gateway(request)
    batch = await read_model(request, ApprovalBatch)
    items = [(body, _checked(body)) for body in batch.approvals]
    state = state_of(request)
    results = await state.db.write(_job(state, items))
    answers: list[dict[str, Any]] = []
    for (body, checked), result in zip(items, results, strict=True):
        if result is None:
            answers.append({"error": checked["error"]})
            continue
        row, reused = result
        if "grant" in row:  # no approval: the grant's use is audited, as one by one
            state.metrics.grant_uses.labels(body.agent).inc()
            answers.append({"id": None, "status": "approved", "grant_id": row["grant"]["id"],
                            "reused": False})  # fmt: skip
            continue
        data = approval_json(row)
        if not reused:
            state.hub.publish("approval.created", data)
            state.metrics.approvals_pending.inc()
            await state.slack.on_created(row)
        answers.append({**data, "reused": reused})
    return json_ok({"approvals": answers})


def routes() -> list[BaseRoute]:
    return [Route("/api/v1/gateway/approvals/batch", create_gateway_approvals, methods=["POST"])]
