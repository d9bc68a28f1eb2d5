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
from sqlalchemy import Connection
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from agentfirewall.actions import parse_action_spec
from agentfirewall.errors import ActionSpecError
from agentfirewall_server.approvals import approval_json
from agentfirewall_server.audit import append_events
from agentfirewall_server.auth import require_gateway, state_of
from agentfirewall_server.clock import now
from agentfirewall_server.routes.gateway import (
    GatewayApproval,
    approval_timeout,
    created_event,
    grant_answer,
    new_approval_row,
    without_approval,
)
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
    timeout = approval_timeout(state)

    def job(conn: Connection) -> list[tuple[dict[str, Any], bool] | None]:
        stamp = now()
        out: list[tuple[dict[str, Any], bool] | None] = []
        rows: list[dict[str, Any]] = []
        events: list[dict[str, Any]] = []
        for body, checked in items:
            if "spec" not in checked:
                out.append(None)
                continue
            spec = checked["spec"]
            # as one by one: an earlier item's reuse or grant use is seen here
            settled = without_approval(conn, body, spec, stamp)
            if settled is not None:
                out.append(settled)
                continue
            row = new_approval_row(body, spec, timeout, stamp)
            rows.append(row)
            events.append(created_event(body, spec, row))
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
        if "grant" in row:
            answers.append(grant_answer(state, body.agent, row["grant"]))
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
