"""The agent API: request an action, dry-run, status, wait for approval.

``POST /api/v1/actions`` is the hot path: the agent and the compiled engine come from
memory, and one writer job records the request, its approval (when held) and the audit
events; the answer leaves only after that job is committed.

A stored action is handed a fresh decision token (``/wait``, an ``Idempotency-Key``
replay) only while it may still run: allowed, not started, and not ended by its agent's
closure (``actionstore.closed_by_agent``: suspended or removed, or activated after a
suspension, since it was decided, which the execute claim refuses too). Such a closed action
is answered ``denied`` with a decision saying so and what to do (request it again, with a
new ``Idempotency-Key``), and no token; its record is not rewritten.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, JsonValue
from pydantic import ValidationError as PydanticValidationError
from sqlalchemy import Connection, select
from sqlalchemy.exc import IntegrityError
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from agentfirewall.actions import ActionSpec, parse_action_spec, spec_fields, spec_of
from agentfirewall.connectors import provider_problem
from agentfirewall.connectors.model import HttpRequest
from agentfirewall.content import Finding
from agentfirewall.decisions import Decision
from agentfirewall.errors import ActionSpecError, ConnectorError
from agentfirewall.policy.record import record_input
from agentfirewall_server.actionstore import (
    allowed_not_started,
    closed_by_agent,
    closure_decision,
    load_action,
    shown_spec,
)
from agentfirewall_server.approvals import approval_json, create_approval
from agentfirewall_server.audit import append_events, prepare_events, scalar_text
from agentfirewall_server.auth import (
    Principal,
    authenticate,
    key_holder,
    require_agent,
    state_of,
)
from agentfirewall_server.clock import new_id, now, rfc3339
from agentfirewall_server.decide import (
    approval_terms,
    context_for,
    evaluate_sdk,
    explain,
    issue_token,
    kill_switch_over,
    sdk_context,
)
from agentfirewall_server.replaystore import budget_input, input_text
from agentfirewall_server.routes.execute import execute_action
from agentfirewall_server.routes.shownspec import shown_to
from agentfirewall_server.routes.stuck import list_stuck, resolve_execution
from agentfirewall_server.routes.trafficrows import sdk_json
from agentfirewall_server.sdkspend import Spend, spend_check
from agentfirewall_server.shadow import count as count_shadow
from agentfirewall_server.shadow import judge_action, shadow_columns
from agentfirewall_server.snapshot import AgentRecord
from agentfirewall_server.state import AppState
from agentfirewall_server.store.schema import action_requests
from agentfirewall_server.tracing import annotate, child, rule_of
from agentfirewall_server.web import (
    ApiError,
    Strict,
    check_query,
    header,
    json_fast,
    json_ok,
    json_text,
    parse_model,
    query_number,
    read_body,
)

__all__ = ["routes"]

_EVENT = {
    "allowed": "action.allowed",
    "denied": "action.denied",
    "pending_approval": "action.pending_approval",
}
_MAX_WAIT = 60.0


class ActionBody(Strict):
    action_spec: dict[str, JsonValue]


class _Envelope(BaseModel):
    """The body parsed straight into an ActionSpec: one validation on the common path."""

    model_config = ConfigDict(extra="forbid")

    action_spec: ActionSpec


async def _spec(request: Request) -> ActionSpec:
    raw = await read_body(request)
    spec = common_spec(raw)
    if spec is None:
        spec = _modelled_spec(raw)
    if (problem := provider_problem(spec)) is not None:  # decided as one, sent by another
        raise ApiError(422, problem, field="action_spec.resource.provider")
    if spec.provider in _URL_TARGETED:
        _check_url_target(spec)
    return spec


def _modelled_spec(raw: bytes) -> ActionSpec:
    """The body parsed straight into an ActionSpec by the model; any problem named."""
    try:
        return _Envelope.model_validate_json(raw).action_spec
    except (PydanticValidationError, ValueError, ActionSpecError):
        body = parse_model(raw, ActionBody)  # names the problem exactly as it always has
        try:
            return parse_action_spec(body.action_spec)
        except ActionSpecError as exc:
            field = f"action_spec.{exc.field}" if exc.field else "action_spec"
            raise ApiError(422, str(exc), field=field) from None


def common_spec(raw: bytes) -> ActionSpec | None:
    """The spec of a body in the common shape (only ``action_spec``: a type, resource names,
    flat scalar parameters and hints), parsed by orjson and checked by the core's own
    hand-checked path (`actions.spec_fields`, held equal to the model): the spec `_Envelope`
    gives, at about half the cost. None for any other body, valid or not: the model then
    parses it (and words its errors)."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if type(data) is not dict or len(data) != 1:
        return None
    inner = data.get("action_spec")
    if type(inner) is not dict:
        return None
    fields = spec_fields(inner)
    if fields is None:
        return None
    for values in (fields[2], fields[3]):
        for value in values.values():
            if type(value) is float and not -_WIDE < value < _WIDE:
                return None  # orjson reads an integer past 64 bits as a float; the model exactly
    return spec_of(inner, fields)


_WIDE = 2.0**63


#: Connectors whose action's resource.target is the URL it is sent to (routes/executor).
_URL_TARGETED = ("webhook", "generic")


def _check_url_target(spec: ActionSpec) -> None:
    """A target URL that is not `http(s)://host[:port]` is refused when the action is
    requested (422 naming the field), not decided first and refused at execution."""
    target = spec.resource.target
    if target is None:
        return
    try:
        HttpRequest.from_url("GET", target)
    except ConnectorError as exc:
        raise ApiError(422, str(exc), field="action_spec.resource.target") from None


async def _rate_limit(state: AppState, agent: AgentRecord) -> None:
    if not _rate_limit_local(state, agent):  # the buckets are shared (PostgreSQL)
        limit = agent.rate_limit_per_minute or state.settings.rate_limit_per_minute
        wait = await state.limiter.check(agent.id, limit)
        if wait is not None:
            raise _limited(state, agent, limit, wait)


def _rate_limit_local(state: AppState, agent: AgentRecord) -> bool:
    """`_rate_limit` without a coroutine when the buckets are in memory (True: checked,
    the 429 raised if over); False when they are shared: `_rate_limit` checks then."""
    limit = agent.rate_limit_per_minute or state.settings.rate_limit_per_minute
    wait = state.limiter.check_local(agent.id, limit)
    if wait is False:
        return False
    if wait is not None:
        raise _limited(state, agent, limit, wait)
    return True


def _limited(state: AppState, agent: AgentRecord, limit: int, wait: int) -> ApiError:
    state.metrics.rate_limit_hits.labels(agent=agent.name).inc()
    return ApiError(
        429,
        f"rate limit of {limit} requests per minute exceeded: retry in {wait} s",
        headers={"Retry-After": str(wait)},
        retry_after=wait,
    )


def _idempotency_key(request: Request) -> str | None:
    key = header(request, b"idempotency-key")
    if key is None:
        return None
    if not 1 <= len(key) <= 200:
        raise ApiError(
            400, "`Idempotency-Key` must be 1 to 200 characters", field="Idempotency-Key"
        )
    return key


async def _replay(
    state: AppState, agent: AgentRecord, key: str, action_hash: str
) -> JSONResponse | None:
    def read(conn: Connection) -> tuple[dict[str, Any], bool] | None:
        found = conn.execute(
            select(action_requests).where(
                action_requests.c.agent_id == agent.id, action_requests.c.idempotency_key == key
            )
        ).first()
        if found is None:
            return None
        row = dict(found._mapping)
        return row, row["execution_state"] is None and closed_by_agent(conn, row)

    read_back = await state.db.read(read)
    if read_back is None:
        return None
    row, closed = read_back
    if row["action_hash"] != action_hash:
        raise ApiError(
            409,
            f"`Idempotency-Key` `{key}` was used for a different action",
            field="Idempotency-Key",
        )
    stored = json.loads(row["response"])
    body: dict[str, Any] = {
        "action_request_id": row["id"],
        "status": stored["status"],
        "decision": json.loads(row["decision"]),
        "decision_token": None,
        "approval": stored["approval"],
    }
    if stored["status"] == "allowed" and not row["execution_state"]:
        if closed:  # allowed, then ended by its agent's closure (denied by it, maybe)
            _deny_closed(body, row)
        elif row["status"] == "allowed":
            _hand_token(state, body, row)
    return json_ok(body, headers={"Idempotent-Replayed": "true"})


def _deny_closed(body: dict[str, Any], row: Mapping[str, Any]) -> None:
    """`body` answers the action `row`, which its agent's closure ended, as denied by it."""
    body.update(status="denied", decision=closure_decision(row).to_dict(), decision_token=None)


def _hand_token(state: AppState, body: dict[str, Any], row: Mapping[str, Any]) -> None:
    """A fresh token in `body` for an allowed, unexecuted action its agent's closure has
    not ended (``actionstore.closed_by_agent``); while a kill switch covers it (allowed
    before the switch), the switch's denial instead, and no token."""
    killed = kill_switch_over(state, row)
    if killed is not None:
        body.update(status="denied", decision=killed.to_dict())
    else:
        body["decision_token"] = issue_token(state, row["agent"], row["id"], row["action_hash"])


def _rows(
    agent: AgentRecord,
    spec: ActionSpec,
    decision: Decision,
    key: str | None,
    response: dict[str, Any],
    approval_id: str | None,
    stamp: float,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The action_requests row and its two audit events."""
    action_id = response["action_request_id"]
    status = decision.status
    action_hash = response["_hash"]
    approval, shown = response["approval"], response["_shown"]
    reservation = response.get("_reservation")
    if approval is None and not reservation and shown is None:  # the common answer
        stored_text = _STORED[status]
    else:
        stored = {"status": status, "approval": approval}
        if reservation:  # released or settled later (actionstore.finish_spend)
            stored["reservation"] = reservation
        if shown is not None:  # what `action_json` shows; `action_spec` executes
            stored["shown_spec"] = shown
        stored_text = json_text(stored) if shown is None else json.dumps(stored)  # any int
    row = {
        "id": action_id,
        "agent_id": agent.id,
        "agent": agent.name,
        "agent_epoch": agent.closed_epoch,  # decided under it: closed once it moves on
        "action_type": spec.type,
        "action_spec": response["_canonical"].decode(),
        "action_hash": action_hash,
        "status": status,
        "decision": response["_decision"],
        "risk_score": decision.risk_score,
        "idempotency_key": key,
        "approval_id": approval_id,
        "response": stored_text,
        "execution": None,
        "execution_state": None,
        "decision_input": response["_input"],
        **shadow_columns(response["_shadow"]),
        "created_at": stamp,
        "updated_at": stamp,
    }
    requested, decided = event_data_texts(spec.type, action_hash, decision)
    events = prepare_events(
        (("action.requested", agent.name, requested), (_EVENT[status], "policy", decided)),
        now=stamp,
        agent=agent.name,
        subject=action_id,
    )
    return row, events


#: The stored answer of an action with no approval, reservation or detection, by status.
_STORED = {status: json_text({"status": status, "approval": None}) for status in _EVENT}

#: Each decision's wire form (`_wire`), by the id of the decision (held, so the id is not
#: reused while its entry lives); bounded.
_WIRE: dict[int, tuple[Decision, orjson.Fragment, str]] = {}
_MAX_WIRE = 1024


def _wire(decision: Decision) -> tuple[orjson.Fragment, str]:
    """`decision.to_dict()` as JSON, for the answer (a fragment orjson writes as it is) and
    the row (text), encoded once per decision object: the engine remembers its decisions
    (one object answers every request of the same plan and rule), and they are immutable."""
    held = _WIRE.get(id(decision))
    if held is not None and held[0] is decision:
        return held[1], held[2]
    raw = orjson.dumps(decision.to_dict())
    if len(_WIRE) >= _MAX_WIRE:
        _WIRE.clear()
    wire = _WIRE[id(decision)] = (decision, orjson.Fragment(raw), raw.decode("utf-8"))
    return wire[1], wire[2]


def canonical_spec(spec: ActionSpec) -> bytes:
    """``spec.canonical()``, the same bytes: written by orjson when the parameters and risk
    hints are flat strings, integers, booleans and nulls (orjson's sorted compact output
    equals ``json.dumps``'s for those; floats, nested values and integers beyond 64 bits take
    the model's path)."""
    fields = spec.__dict__
    parameters, hints = fields["parameters"], fields["risk_hints"]
    for value in (*parameters.values(), *hints.values()):
        kind = type(value)
        if kind is not str and kind is not int and kind is not bool and value is not None:
            return spec.canonical()
    resource = {k: v for k, v in fields["resource"].__dict__.items() if v is not None}
    data = {"type": fields["type"], "resource": resource, "parameters": parameters,
            "risk_hints": hints}  # fmt: skip
    try:
        return orjson.dumps(data, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:  # an integer beyond 64 bits
        return spec.canonical()


def event_data_texts(action_type: str, action_hash: str, decision: Decision) -> tuple[str, str]:
    """The canonical data text of the ``action.requested`` event and of the decision's event:
    ``canonical_text`` of ``{action_type, action_hash}`` and of the same with the decision's
    reason, risk score and would-outcome, written in sorted key order (the two share their
    first part)."""
    common = f'{{"action_hash":{scalar_text(action_hash)},"action_type":{scalar_text(action_type)}'
    return common + "}", (
        f'{common},"reason":{scalar_text(decision.reason)},'
        f'"risk_score":{scalar_text(decision.risk_score)},'
        f'"would_outcome":{scalar_text(decision.would_outcome)}}}'
    )


def _record_pending(
    state: AppState,
    agent: AgentRecord,
    spec: ActionSpec,
    decision: Decision,
    key: str | None,
    response: dict[str, Any],
) -> Any:
    def job(conn: Connection) -> dict[str, Any]:
        stamp = now()
        timeout, roles = approval_terms(state, decision)
        approval = create_approval(
            conn,
            agent=agent.name,
            connector=spec.provider,
            action_request_id=response["action_request_id"],
            source="sdk",
            spec=response["_shown"] or spec.to_dict(),
            action_hash=response["_hash"],
            risk_score=decision.risk_score,
            reason=decision.reason,
            request=None,
            roles=roles,
            timeout_seconds=timeout,
            now=stamp,
        )
        response["approval"] = {
            "id": approval["id"],
            "expires_at": rfc3339(approval["expires_at"]),
            "required_approver_roles": list(roles),
        }
        row, events = _rows(agent, spec, decision, key, response, approval["id"], stamp)
        conn.execute(action_requests.insert(), [row])
        append_events(conn, events)
        return approval

    return job


def _record_spent(
    state: AppState,
    agent: AgentRecord,
    spec: ActionSpec,
    key: str | None,
    response: dict[str, Any],
    spend: Spend,
) -> Callable[[Connection], tuple[Decision, dict[str, Any] | None]]:
    """Budgets and grants decide (``sdkspend.Spend``), then the action is recorded as decided."""

    def job(conn: Connection) -> tuple[Decision, dict[str, Any] | None]:
        stamp = now()
        decision = spend.apply(conn, stamp)
        if (refused := spend.refused) is not None:  # its record names it: replayed with it
            response["_input"] = budget_input(response["_input"], refused.outcome, refused.budget)
        response["status"] = decision.status
        response["decision"], response["_decision"] = _wire(decision)
        response["_reservation"] = spend.reservation
        if decision.status == "pending_approval":
            return decision, _record_pending(state, agent, spec, decision, key, response)(conn)
        row, events = _rows(agent, spec, decision, key, response, None, stamp)
        conn.execute(action_requests.insert(), [row])
        append_events(conn, events)
        return decision, None

    return job


def _count(state: AppState, agent: AgentRecord, spec: ActionSpec, decision: Decision) -> None:
    m = state.metrics  # agent-chosen labels are folded and bounded (metrics.py)
    decided = decision.decided_outcome or decision.outcome
    m.count_request(agent.name, spec.provider, decided, spec.type)
    if decision.outcome == "deny":
        reason = "kill_switch_active" if decision.kill_switch else "policy"
        m.denied.labels(agent.name, m.connector_label(spec.provider), reason).inc()


async def _publish_diverged(state: AppState, action_id: str) -> None:
    """A ``traffic`` event for an SDK action the shadow configuration would decide otherwise,
    in its traffic listing's shape (``source: "sdk"``), on this replica's event stream."""
    row = await state.db.read(
        lambda c: c.execute(
            select(action_requests).where(action_requests.c.id == action_id)
        ).first()
    )
    if row is not None:
        data = {k: v for k, v in sdk_json(row).items() if k not in ("created_at", "input")}
        state.hub.publish("traffic", data, relay=False)  # (the relay reads proxy rows only)


async def request_action(request: Request) -> JSONResponse:
    started = time.perf_counter()
    state = state_of(request)
    agent = key_holder(request, state) or await require_agent(request)
    if not _rate_limit_local(state, agent):
        await _rate_limit(state, agent)
    spec = await _spec(request)
    key = _idempotency_key(request)
    canonical = canonical_spec(spec)
    action_hash = hashlib.sha256(canonical).hexdigest()  # spec.action_hash, computed once
    if key is not None and (replayed := await _replay(state, agent, key, action_hash)):
        return replayed
    snapshot = state.snapshot
    found: list[Finding] = []  # the detections, for the live and the shadow policies
    if snapshot.scan.request is None and not snapshot.reads_budgets:  # the common case
        ctx = context_for(agent, spec)
    else:  # a live or shadow policy reads content or budgets
        ctx, found = await sdk_context(state, agent, spec)
    decision = evaluate_sdk(snapshot.engine, spec, ctx, snapshot.guard, found)
    if state.tracing is not None:  # the request span's attributes
        annotate(agent=agent.name, connector=spec.provider, action=spec.type,
                 decision=decision.status, rule=rule_of(decision))  # fmt: skip
    action_id = new_id("act_")
    wire, wire_text = _wire(decision)
    response: dict[str, Any] = {
        "action_request_id": action_id,
        "status": decision.status,
        "decision": wire,
        "decision_token": None,
        "approval": None,
        "_decision": wire_text,  # (the row's); removed before answering, with the others
        "_hash": action_hash,
        "_canonical": canonical,
        # the replayable input: a secret the shadow policies' detectors found withheld too
        "_input": input_text(record_input(spec, ctx, detected=bool(found))),
        "_shadow": judge_action(snapshot.shadow, spec, ctx, decision, found),
        # shown with each detection replaced (approval, GET /actions/{id}): never the text
        "_shown": shown_spec(spec.to_dict()) if found else None,
    }
    approval = None
    spend = spend_check(state, agent, spec, decision, action_id)  # budgets, grants
    try:
        if spend is not None:  # budgets or a grant may change it: decided in one write
            job = _record_spent(state, agent, spec, key, response, spend)
            if decision.status == "pending_approval":  # held by a rule, unless a grant covers it
                with child("tameflare.approval.create", agent=agent.name, action=spec.type):
                    decision, approval = await state.db.write(job)
            else:
                decision, approval = await state.db.write(job)
            if decision.status == "allowed":
                response["decision_token"] = issue_token(state, agent.name, action_id, action_hash)
        else:
            row, events = _rows(agent, spec, decision, key, response, None, now())
            sign = None
            if decision.status == "allowed":  # signed right after the commit, batch by batch
                sign = partial(issue_token, state, agent.name, action_id, action_hash)
            response["decision_token"] = await state.db.record(
                [(action_requests, row)], events, then=sign
            )
    except IntegrityError:
        replayed = await _replay(state, agent, key, action_hash) if key else None
        if replayed is None:
            raise
        return replayed
    judged = response.pop("_shadow")
    del response["_decision"], response["_hash"], response["_canonical"], response["_input"]
    del response["_shown"]
    response.pop("_reservation", None)
    if spend is not None:
        spend.count(state.metrics)
    if approval is not None:
        data = approval_json(approval)
        state.hub.publish("approval.created", data)
        state.metrics.approvals_pending.inc()
        await state.slack.on_created(approval)
    _count(state, agent, spec, decision)
    if judged is not None:
        count_shadow(state.metrics, judged, "sdk")
        if judged.diverged:  # listed with the diverged traffic: the live view hears of it
            await _publish_diverged(state, action_id)
    state.metrics.duration.observe(time.perf_counter() - started)
    return json_fast(response)


async def dry_run(request: Request) -> JSONResponse:
    agent = await require_agent(request)
    state = state_of(request)
    await _rate_limit(state, agent)
    spec = await _spec(request)
    result = await explain(state, agent, spec)
    return json_ok(
        {
            "status": result.decision.status,
            "decision": result.decision.to_dict(),
            "explanation": [s.to_dict() for s in result.steps],
        }
    )


def _visible(who: Principal, row: dict[str, Any] | None, action_id: str) -> dict[str, Any]:
    if row is None or (who.agent is not None and row["agent_id"] != who.agent.id):
        raise ApiError(404, f"no action request `{action_id}`")
    if who.kind == "gateway":
        raise ApiError(404, f"no action request `{action_id}`")
    return row


def action_json(row: dict[str, Any]) -> dict[str, Any]:
    approval = row["approval_row"]
    status = row["status"]
    if status == "pending_approval" and approval and approval["expires_at"] <= now():
        status = "expired"
    execution = json.loads(row["execution"]) if row["execution"] else None
    if execution is not None and isinstance(execution.get("executed_at"), int | float):
        execution["executed_at"] = rfc3339(execution["executed_at"])  # (stored as seconds)
    shown = json.loads(row["response"]).get("shown_spec") if row["response"] else None
    return {
        "action_request_id": row["id"],
        "status": status,
        "decision": json.loads(row["decision"]),
        "action_spec": shown or json.loads(row["action_spec"]),
        "agent": row["agent"],
        "created_at": rfc3339(row["created_at"]),
        "approval": approval_json(approval) if approval else None,
        "executed": execution is not None,
        "execution": execution,
        "execution_state": row.get("execution_state"),
    }


async def get_action(request: Request) -> JSONResponse:
    check_query(request)
    who = await authenticate(request)
    action_id = request.path_params["id"]
    row = await state_of(request).db.read(lambda c: load_action(c, action_id))
    return json_ok(await shown_to(request, who, action_json(_visible(who, row, action_id))))


async def wait_action(request: Request) -> JSONResponse:
    who = await authenticate(request)
    state = state_of(request)
    action_id = request.path_params["id"]
    check_query(request, "timeout")
    deadline = time.monotonic() + (query_number(request, "timeout", 30.0, _MAX_WAIT) or 0.0)
    waiter = who.agent.name if who.agent is not None else "dashboard"
    with state.metrics.connection_open(waiter):
        while True:
            row = _visible(who, await state.db.read(lambda c: load_action(c, action_id)), action_id)
            body = action_json(row)
            remaining = deadline - time.monotonic()
            if body["status"] != "pending_approval" or remaining <= 0:
                break
            if not await state.hub.wait(min(remaining, 1.0), request):
                break
    body["decision_token"] = None
    if who.agent is not None and allowed_not_started(row):
        if await state.db.read(lambda c: closed_by_agent(c, row)):
            _deny_closed(body, row)
        elif body["status"] == "allowed":
            _hand_token(state, body, row)
    return json_ok(await shown_to(request, who, body))


def routes() -> list[BaseRoute]:
    p = "/api/v1/actions"
    return [
        Route(p, request_action, methods=["POST"]),
        Route(p + "/dry-run", dry_run, methods=["POST"]),
        Route(p + "/stuck", list_stuck, methods=["GET"]),
        Route(p + "/{id}", get_action, methods=["GET"]),
        Route(p + "/{id}/wait", wait_action, methods=["GET"]),
        Route(p + "/{id}/execute", execute_action, methods=["POST"]),
        Route(p + "/{id}/resolve", resolve_execution, methods=["POST"]),
    ]
