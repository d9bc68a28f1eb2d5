"""Executions a crash left ``executing``: listed, and resolved by an admin who checked upstream.

An execute claims its action (``routes/execute.py``) and records how it ended; only a crash
of the server between the two leaves it ``executing``, its outcome unknown, and never
retried by itself. Every send ends within ``executor.execution_deadline`` (three times
``AGENTFIREWALL_EXECUTE_TIMEOUT_SECONDS``), so an action still ``executing`` that long after
its claim, plus ``GRACE_SECONDS`` for the record to be written, is stuck: no server is
still running it.

``GET /api/v1/actions/stuck`` (viewer) lists them. ``POST /api/v1/actions/{id}/resolve``
(admin) settles one with what the admin found upstream:

- ``executed``: it took effect. ``executed`` / ``executed``, its budget spend settled;
- ``failed``: it did not, and must not be tried again. ``executed`` / ``failed``, the spend
  released;
- ``retry``: it did not, and may run again. Decided again (``execution_state`` NULL), its
  decision tokens free again (``/wait`` hands out a fresh one); the spend stays reserved.

The update is conditional (still ``executing``, claimed before the cut-off), so a resolve
never races a running execution, and two resolves of one action: one wins, the other gets
409. Audited ``action.execution_resolved`` with the admin, the outcome and the note.
"""

from __future__ import annotations

import json
import math
from typing import Any, Literal

from pydantic import Field
from sqlalchemy import Connection, select, text, update
from starlette.requests import Request
from starlette.responses import JSONResponse

from agentfirewall_server.actionstore import finish_spend, free_tokens
from agentfirewall_server.audit import append_event
from agentfirewall_server.auth import require_role, state_of
from agentfirewall_server.clock import now, rfc3339
from agentfirewall_server.executor import execution_deadline
from agentfirewall_server.settings import Settings
from agentfirewall_server.store.schema import action_requests
from agentfirewall_server.web import ApiError, Strict, check_query, json_ok, read_model

__all__ = ["GRACE_SECONDS", "list_stuck", "resolve_execution", "stuck_after"]

_A = action_requests.c
#: after the send's deadline, time for its outcome to reach the store
GRACE_SECONDS = 10.0
_LIST_LIMIT = 500
#: a literal, not a parameter: so the planner uses the partial index (migration 0009)
_EXECUTING = text("action_requests.execution_state = 'executing'")


def stuck_after(settings: Settings) -> float:
    """Seconds after its claim past which an action still ``executing`` is stuck."""
    return execution_deadline(settings) + GRACE_SECONDS


class ResolveBody(Strict):
    outcome: Literal["executed", "failed", "retry"]
    note: str = Field(default="", max_length=2000)


async def list_stuck(request: Request) -> JSONResponse:
    """The SDK executions a server crash left unfinished, oldest first."""
    check_query(request)
    await require_role(request, "viewer")
    state = state_of(request)
    after = stuck_after(state.settings)
    stamp = now()

    def job(conn: Connection) -> list[Any]:
        return list(
            conn.execute(
                select(_A.id, _A.agent, _A.action_type, _A.updated_at)
                .where(_EXECUTING, _A.updated_at < stamp - after)
                .order_by(_A.updated_at)
                .limit(_LIST_LIMIT)
            )
        )

    rows = await state.db.read(job)
    actions = [
        {
            "action_request_id": row.id,
            "agent": row.agent,
            "action_type": row.action_type,
            "executing_since": rfc3339(row.updated_at),
            "stuck_seconds": round(stamp - row.updated_at, 1),
        }
        for row in rows
    ]
    return json_ok({"actions": actions, "stuck_after_seconds": after})


def _not_stuck(conn: Connection, action_id: str, after: float, stamp: float) -> ApiError:
    """Why the conditional update changed nothing: unknown, not executing, or too recent."""
    row = conn.execute(select(_A.execution_state, _A.updated_at).where(_A.id == action_id)).first()
    if row is None:
        raise ApiError(404, f"no action request `{action_id}`")
    if row.execution_state != "executing":
        state = row.execution_state or "not executed"
        return ApiError(
            409,
            f"action `{action_id}` is not executing ({state}): there is nothing to resolve",
            code="not_stuck",
        )
    left = max(0.0, after - (stamp - row.updated_at))
    return ApiError(
        409,
        f"action `{action_id}` may still be executing: an execution is stuck only "
        f"{after:g} s after its claim; try again in {left:.0f} s",
        code="execution_in_progress",
        headers={"Retry-After": str(math.ceil(left))},
    )


def _resolve(action_id: str, body: ResolveBody, actor: str, after: float) -> Any:
    def job(conn: Connection) -> dict[str, Any]:
        stamp = now()
        values: dict[str, Any]
        if body.outcome == "retry":
            values = {"execution_state": None}
        else:
            summary = {"resolved": body.outcome, "resolved_by": actor, "executed_at": stamp}
            values = {
                "status": "executed",
                "execution_state": body.outcome,
                "execution": json.dumps(summary),
            }
        changed = conn.execute(
            update(action_requests)
            .where(
                _A.id == action_id,
                _A.execution_state == "executing",
                _A.updated_at < stamp - after,
            )
            .values(**values, updated_at=stamp)
        ).rowcount
        if changed != 1:
            raise _not_stuck(conn, action_id, after, stamp)
        row = conn.execute(select(_A.agent, _A.action_type).where(_A.id == action_id)).one()
        if body.outcome == "retry":
            free_tokens(conn, action_id)
        else:
            finish_spend(conn, action_id, ok=body.outcome == "executed", now=stamp)
        data = {"action_type": row.action_type, "outcome": body.outcome}
        if body.note:
            data["note"] = body.note
        append_event(
            conn,
            "action.execution_resolved",
            actor=actor,
            now=stamp,
            agent=row.agent,
            subject=action_id,
            data=data,
        )
        return {
            "status": values.get("status", "allowed"),
            "execution_state": values["execution_state"],
        }

    return job


async def resolve_execution(request: Request) -> JSONResponse:
    """Settle a stuck execution with what the admin found upstream."""
    who = await require_role(request, "admin")
    body = await read_model(request, ResolveBody)
    state = state_of(request)
    action_id = request.path_params["id"]
    after = stuck_after(state.settings)
    result = await state.db.write(_resolve(action_id, body, who.actor, after))
    return json_ok({"action_request_id": action_id, "outcome": body.outcome, **result})
