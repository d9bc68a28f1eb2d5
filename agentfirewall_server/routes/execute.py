"""``POST /api/v1/actions/{id}/execute``: verify the single-use token, then run the action.

The token must verify (ES256, expiry, audience) and be bound to this action's id and
hash; its ``jti`` is then inserted into ``used_nonces`` in the writer, so a second use
fails with 409 ``token_used`` even across restarts.
"""

from __future__ import annotations

import json
import time
from typing import Any

from pydantic import Field
from sqlalchemy import Connection, update
from sqlalchemy.exc import IntegrityError
from starlette.requests import Request
from starlette.responses import JSONResponse

from agentfirewall.errors import TokenError
from agentfirewall.tokens import DecisionClaims, verify_decision_token
from agentfirewall_server.audit import append_event
from agentfirewall_server.auth import require_agent, state_of
from agentfirewall_server.clock import now
from agentfirewall_server.executor import plan, send
from agentfirewall_server.routes.actions import load_action
from agentfirewall_server.store.schema import action_requests, used_nonces
from agentfirewall_server.web import ApiError, Strict, json_ok, read_model

__all__ = ["execute_action"]


class ExecuteBody(Strict):
    decision_token: str = Field(min_length=1, max_length=8192)


def _consume(claims: DecisionClaims, action_id: str) -> Any:
    def job(conn: Connection) -> None:
        row = load_action(conn, action_id)
        if row is None or row["status"] != "allowed":
            status = row["status"] if row else "unknown"
            raise ApiError(
                409,
                f"action `{action_id}` is {status}, not allowed: it cannot be executed",
                code="not_allowed",
            )
        try:
            with conn.begin_nested():
                conn.execute(
                    used_nonces.insert().values(
                        jti=claims.jti,
                        action_request_id=action_id,
                        used_at=now(),
                        expires_at=float(claims.expires_at),
                    )
                )
        except IntegrityError:
            raise ApiError(
                409, "decision token was already used: request the action again", code="token_used"
            ) from None

    return job


def _finish(action_id: str, agent: str, result: dict[str, Any], action_type: str) -> Any:
    def job(conn: Connection) -> None:
        stamp = now()
        summary = {"status_code": result["status_code"], "executed_at": stamp}
        conn.execute(
            update(action_requests)
            .where(action_requests.c.id == action_id)
            .values(status="executed", execution=json.dumps(summary), updated_at=stamp)
        )
        append_event(
            conn,
            "action.executed",
            actor=agent,
            now=stamp,
            agent=agent,
            subject=action_id,
            data={"action_type": action_type, "status_code": result["status_code"]},
        )

    return job


def _failed(action_id: str, agent: str, action_type: str, error: str) -> Any:
    def job(conn: Connection) -> None:
        stamp = now()
        conn.execute(
            update(action_requests)
            .where(action_requests.c.id == action_id)
            .values(
                status="executed",
                execution=json.dumps({"error": error, "executed_at": stamp}),
                updated_at=stamp,
            )
        )
        append_event(
            conn,
            "action.execution_failed",
            actor=agent,
            now=stamp,
            agent=agent,
            subject=action_id,
            data={"action_type": action_type, "error": error},
        )

    return job


async def execute_action(request: Request) -> JSONResponse:
    started = time.perf_counter()
    agent = await require_agent(request)
    state = state_of(request)
    action_id = request.path_params["id"]
    body = await read_model(request, ExecuteBody)
    row = await state.db.read(lambda c: load_action(c, action_id))
    if row is None or row["agent_id"] != agent.id:
        raise ApiError(404, f"no action request `{action_id}`")
    try:
        claims = verify_decision_token(
            body.decision_token,
            [state.signing_key.public_key],
            now=int(time.time()),
            action_request_id=action_id,
            action_hash=row["action_hash"],
        )
    except TokenError as exc:
        raise ApiError(401, str(exc), code="invalid_token", reason=exc.code) from None
    if claims.agent != agent.name:
        raise ApiError(401, "decision token was issued to another agent", code="invalid_token")
    if row["status"] == "executed":
        raise ApiError(409, f"action `{action_id}` was already executed", code="token_used")
    if row["status"] != "allowed":
        raise ApiError(
            409,
            f"action `{action_id}` is {row['status']}, not allowed: it cannot be executed",
            code="not_allowed",
        )
    spec = json.loads(row["action_spec"])
    planned = await plan(state, spec)  # refuse what cannot run before burning the token
    await state.db.write(_consume(claims, action_id))
    try:
        result = await send(state, planned)
    except ApiError as exc:
        await state.db.write(_failed(action_id, agent.name, spec["type"], exc.code))
        raise
    await state.db.write(_finish(action_id, agent.name, result, spec["type"]))
    state.metrics.duration.observe(time.perf_counter() - started)
    return json_ok({"action_request_id": action_id, "status": "executed", "result": result})
