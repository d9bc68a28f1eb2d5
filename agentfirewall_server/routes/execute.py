"""``POST /api/v1/actions/{id}/execute``: verify the single-use token, then run the action.

The token must verify (ES256, expiry, audience) and be bound to this action's id and hash.
Then one writer job claims the execution: a conditional UPDATE moves the action from
decided (``execution_state`` NULL) to ``executing`` and inserts the token's ``jti`` into
``used_nonces``. Only one request can win that UPDATE, on SQLite (one writer) and on
PostgreSQL (the row lock re-checks the condition), whatever tokens exist for the action:
the others get 409 (``execution_in_progress``, or ``token_used`` once it is over).

After the upstream call the action is ``executed`` (an answer came) or ``failed``. A failure
to connect, before a byte of the request was sent, returns it to decided instead: the
answer says ``retryable: true`` and the token (not consumed after all) may be used again.
Once bytes were sent it counts as executed: it is never sent a second time.

Nothing decided before its agent's suspension or removal runs after it: the agent counts its
closures (``agents.closed_epoch``, ``routes/agents.py``: suspended, removed, activated after a
suspension), each action records the epoch it was decided under (``agent_epoch``, the
deciding replica's snapshot), and the claim refuses an action whose epoch is not the agent's
stored one (409 ``not_allowed``: request it again), whatever allowed it, a rule or an
approval, and whatever token it has. No clock is compared: a replica whose clock is ahead or
behind neither lets an action decided before a suspension run after it nor refuses one
decided after the activation; one that had not heard of a suspension decided under the
epoch before it, and its action is refused. The action's record is not rewritten
(an agent that acts itself, Mode B, reads its history unchanged). A send that sent nothing
while its agent was suspended or removed denies the action instead of returning it to
decided, as the suspension denies the approved actions not started: the answer says
``retryable: false``.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from pydantic import Field
from sqlalchemy import Connection, select, update
from sqlalchemy.exc import IntegrityError
from starlette.requests import Request
from starlette.responses import JSONResponse

from agentfirewall.errors import TokenError
from agentfirewall.tokens import DecisionClaims, verify_decision_token
from agentfirewall_server.actionstore import finish_spend, free_tokens, load_action
from agentfirewall_server.approvals import stored_switch
from agentfirewall_server.audit import append_event
from agentfirewall_server.auth import require_agent, state_of
from agentfirewall_server.clock import now
from agentfirewall_server.decide import kill_switch_over
from agentfirewall_server.executor import Planned, plan, send
from agentfirewall_server.snapshot import AgentRecord
from agentfirewall_server.state import AppState
from agentfirewall_server.store.schema import action_requests, agents, used_nonces
from agentfirewall_server.tracing import annotate
from agentfirewall_server.web import ApiError, Strict, json_ok, read_model

__all__ = ["execute_action"]

_A = action_requests.c


class ExecuteBody(Strict):
    decision_token: str = Field(min_length=1, max_length=8192)


def _refused(action_id: str, status: str, state: str | None) -> ApiError:
    """The 409 for an action that is not (or no longer) free to execute."""
    if state == "executing":
        return ApiError(
            409,
            f"action `{action_id}` is being executed by another request: "
            "an action executes at most once",
            code="execution_in_progress",
        )
    if status == "executed" or state in ("executed", "failed"):
        return ApiError(
            409,
            f"action `{action_id}` was already executed (an action executes at most once): "
            f"its result is in `GET /api/v1/actions/{action_id}`; to do it again, request the "
            "action again",
            code="token_used",
        )
    return ApiError(
        409,
        f"action `{action_id}` is {status}, not allowed: it cannot be executed",
        code="not_allowed",
    )


def _not_killed(state: AppState, row: dict[str, Any]) -> None:
    """403 ``kill_switch_active`` when a kill switch now covers the action: one allowed
    before the switch does not run while it is active (the token stays unspent)."""
    killed = kill_switch_over(state, row)
    if killed is not None:
        raise _killed(killed.matched_rules[0], row["id"])


def _killed(switch: str, action_id: str) -> ApiError:
    return ApiError(
        403,
        f"`{switch}` is active: action `{action_id}` was allowed before it and is not "
        "executed while it is (its token stays unspent)",
        code="kill_switch_active",
        headers={"X-TameFlare-Kill-Switch": "active"},
    )


def _agent_now(conn: Connection, agent_id: str) -> tuple[str | None, int | None]:
    """The agent's stored status and `closed_epoch` (None, None: no such agent)."""
    found = conn.execute(
        select(agents.c.status, agents.c.closed_epoch).where(agents.c.id == agent_id)
    ).first()
    return (found.status, found.closed_epoch) if found else (None, None)


def _closed_since(action_id: str, agent: str) -> ApiError:
    return ApiError(
        409,
        f"action `{action_id}` was decided before its agent `{agent}` was last suspended or "
        "removed (or while it was), and nothing decided then runs after it: it is not "
        "executed; request the action again (with a new `Idempotency-Key`, if you sent one)",
        code="not_allowed",
    )


def _still_free(conn: Connection, row: dict[str, Any]) -> None:
    """The claim's own reading of what stops the action, in its transaction: a kill switch
    activated, or its agent suspended or removed, on another replica a moment ago (whose
    change this replica's snapshot may not have yet) stops it as on the replica that made
    the change, the token unspent; and an action decided under an epoch of its agent that
    a closure has ended (suspended, removed, activated after a suspension) never starts."""
    switch = stored_switch(conn, {**row, "connector": None})
    if switch is not None:
        raise _killed(f"kill_switch:{switch}", row["id"])
    status, epoch = _agent_now(conn, row["agent_id"])
    if status != "active":
        raise ApiError(401, f"agent `{row['agent']}` is {status or 'removed'}: its key is not "
                       "accepted (the action is not executed)")  # fmt: skip
    if row["agent_epoch"] != epoch:  # (NULL, written without one: never equal)
        raise _closed_since(row["id"], row["agent"])


def _claim(claims: DecisionClaims, row: dict[str, Any]) -> Any:
    """decided -> executing, and the token spent; any failure rolls back both."""
    action_id = row["id"]

    def job(conn: Connection) -> None:
        _still_free(conn, row)
        claimed = conn.execute(
            update(action_requests)
            .where(_A.id == action_id, _A.status == "allowed", _A.execution_state.is_(None))
            .values(execution_state="executing", updated_at=now())
        ).rowcount
        if claimed != 1:
            found = conn.execute(
                select(_A.status, _A.execution_state).where(_A.id == action_id)
            ).first()
            raise _refused(action_id, found[0] if found else "unknown", found[1] if found else None)
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


def _closed(conn: Connection, action_id: str, agent_id: str) -> bool:
    """Whether the agent's suspension or removal closed the action while it was sent: its
    agent is not active, or was closed after the action was decided (the claim's rule)."""
    status, epoch = _agent_now(conn, agent_id)
    decided = conn.execute(select(_A.agent_epoch).where(_A.id == action_id)).scalar_one()
    return status != "active" or decided != epoch


def _finish(
    action_id: str,
    agent: AgentRecord,
    action_type: str,
    result: dict[str, Any] | None,
    error: ApiError | None,
) -> Any:
    """executing -> executed | failed, or back to decided when nothing was sent (denied
    when its agent was suspended or removed meanwhile: the job then returns True)."""

    def job(conn: Connection) -> bool:
        stamp = now()
        values: dict[str, Any]
        if error is None:
            assert result is not None
            code = result["status_code"]
            event, data = "action.executed", {"action_type": action_type, "status_code": code}
            summary: dict[str, Any] = {"status_code": code, "executed_at": stamp}
            values = {"status": "executed", "execution_state": "executed"}
        else:
            retryable = bool(error.extra.get("retryable"))
            event = "action.execution_failed"
            data = {"action_type": action_type, "error": error.code, "retryable": retryable}
            summary = {"error": error.code, "executed_at": stamp, "retryable": False}
            values = {"status": "executed", "execution_state": "failed"}
        retry = error is not None and data["retryable"]
        closed = retry and _closed(conn, action_id, agent.id)
        if closed:  # nothing was sent, and nothing approved before a suspension runs after it
            values = {"status": "denied", "execution_state": None}
            data.update(retryable=False, denied=True)
        elif retry:  # nothing was sent: decided again
            values = {"execution_state": None}
        else:
            values["execution"] = json.dumps(summary)
        finished = conn.execute(
            update(action_requests)
            .where(_A.id == action_id, _A.execution_state == "executing")
            .values(**values, updated_at=stamp)
        ).rowcount
        if not finished:  # an admin resolved it meanwhile (routes/stuck.py): theirs stands
            data["already_resolved"] = True
        elif closed:  # what it reserved from budgets returns to them, as the suspension's
            finish_spend(conn, action_id, ok=False, now=stamp)
        elif retry:
            free_tokens(conn, action_id)
        else:
            # its budget spend: settled when it was done or may have been (sent, no answer),
            # released when the upstream refused; a retry (nothing sent) keeps it reserved
            done = error is not None or (result is not None and result["status_code"] < 400)
            finish_spend(conn, action_id, ok=done, now=stamp)
        name = agent.name
        append_event(conn, event, actor=name, now=stamp, agent=name, subject=action_id, data=data)
        return bool(closed and finished)

    return job


def _denied(action_id: str, error: ApiError) -> ApiError:
    """The answer when the agent was suspended or removed while the action was sent."""
    return ApiError(
        error.status,
        f"action `{action_id}` was not executed (no byte of it was sent: {error.code}) and "
        "its agent was suspended or removed meanwhile, which denied it: it is not executed "
        "again, with any token; request it again once the agent is active",
        code=error.code,
        retryable=False,
    )


async def _run(
    state: AppState, planned: Planned, action_id: str, agent: AgentRecord, action_type: str
) -> dict[str, Any]:
    """Send the claimed action and record how it ended (also when the caller went away)."""
    try:
        result = await send(state, planned)
    except ApiError as exc:
        if await state.db.write(_finish(action_id, agent, action_type, None, exc)):
            raise _denied(action_id, exc) from None
        raise
    except Exception:
        failed = ApiError(502, "the execution failed", code="upstream_failed", retryable=False)
        await state.db.write(_finish(action_id, agent, action_type, None, failed))
        raise
    await state.db.write(_finish(action_id, agent, action_type, result, None))
    return result


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
            agent=agent.name,
        )
    except TokenError as exc:
        raise ApiError(401, str(exc), code="invalid_token", reason=exc.code) from None
    if row["status"] != "allowed" or row["execution_state"] is not None:
        raise _refused(action_id, row["status"], row["execution_state"])
    spec = json.loads(row["action_spec"])
    annotate(agent=agent.name, action=spec["type"])
    planned = await plan(state, spec)  # refuse what cannot run before claiming it
    _not_killed(state, row)  # (checked after the last wait before the claim)
    await state.db.write(_claim(claims, row))
    # shielded: once claimed, the outcome is recorded even if this request is cancelled
    result = await asyncio.shield(_run(state, planned, action_id, agent, spec["type"]))
    state.metrics.duration.observe(time.perf_counter() - started)
    return json_ok({"action_request_id": action_id, "status": "executed", "result": result})
