"""Audit log queries, export (CSV, JSON Lines), chain verification; the traffic log.

Verification holds the chain against the signed checkpoints (checkpointer.py); the JSON
Lines export carries each event's exact ``created_ts`` and, at the end, every checkpoint,
so `tf audit verify --file` can check it offline with only the public key.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Select, select
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from agentfirewall_server.audit import (
    append_event,
    event_to_dict,
    export_csv,
    export_jsonl,
)
from agentfirewall_server.auth import require_role, state_of
from agentfirewall_server.checkpointer import collect, verify_log
from agentfirewall_server.checkpoints import Checkpoint, checkpoint_line
from agentfirewall_server.clock import now, parse_time
from agentfirewall_server.replaystore import AgentRows
from agentfirewall_server.routes.trafficrows import page, parse_place, traffic_json
from agentfirewall_server.store.schema import INTEGER_MAX, audit_events, traffic
from agentfirewall_server.web import ApiError, check_query, json_ok, no_body

__all__ = ["routes"]

_EXPORT_LIMIT = 1_000_000
#: the filters of `GET /api/v1/audit`, which its export takes too
_AUDIT_FILTERS = ("event_type", "agent", "since", "until")
#: the decisions a traffic row records (`GET /api/v1/traffic?decision=`)
_DECISIONS = ("allow", "deny", "require_approval", "killed")


def _int(request: Request, name: str, default: int | None, high: int) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, f"`{name}` must be an integer, not `{raw}`", field=name) from None
    if value < 1:
        raise ApiError(400, f"`{name}` must be positive", field=name)
    return min(value, high)


def _time(request: Request, name: str) -> float | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    try:
        return parse_time(raw)
    except ValueError:
        raise ApiError(400, f"`{name}` must be an RFC 3339 time, not `{raw}`", field=name) from None


def _audit_query(request: Request) -> Select[Any]:
    q = select(audit_events)
    params = request.query_params
    if params.get("event_type"):
        q = q.where(audit_events.c.event_type == params["event_type"])
    if params.get("agent"):
        q = q.where(audit_events.c.agent == params["agent"])
    if (since := _time(request, "since")) is not None:
        q = q.where(audit_events.c.created_at >= since)
    if (until := _time(request, "until")) is not None:
        q = q.where(audit_events.c.created_at <= until)
    return q


async def list_audit(request: Request) -> JSONResponse:
    await require_role(request, "viewer")
    check_query(request, *_AUDIT_FILTERS, "limit", "before")
    q = _audit_query(request)
    if (before := _int(request, "before", None, INTEGER_MAX)) is not None:
        q = q.where(audit_events.c.id < before)
    limit = _int(request, "limit", 100, 1000) or 100
    q = q.order_by(audit_events.c.id.desc()).limit(limit)
    rows = await state_of(request).db.read(lambda c: c.execute(q).all())
    return json_ok({"events": [event_to_dict(r) for r in rows]})


async def export_audit(request: Request) -> Response:
    # (it records an event and signs a checkpoint: a session sends its CSRF token, so that
    # another site's link cannot make a signed-in admin's browser export)
    who = await require_role(request, "admin", writes=True)
    check_query(request, "format", *_AUDIT_FILTERS)
    fmt = request.query_params.get("format", "jsonl")
    if fmt not in ("csv", "jsonl"):
        raise ApiError(400, f"unknown format `{fmt}`: expected csv or jsonl", field="format")
    q = _audit_query(request).order_by(audit_events.c.id).limit(_EXPORT_LIMIT)
    state = state_of(request)
    await state.checkpoints.checkpoint("export")  # the export carries its own signed end

    def read(conn: Connection) -> tuple[list[Any], list[Checkpoint]]:
        # checkpoints first: none of them is newer than the events read after
        checkpoints, _problems = collect(state.settings, state.signing_key, conn)
        return list(conn.execute(q).all()), checkpoints

    rows, checkpoints = await state.db.read(read)
    if checkpoints:  # events written after the newest checkpoint: the next export's
        covered = max(cp.seq for cp in checkpoints)
        rows = [r for r in rows if r.id <= covered]
    events = [{**event_to_dict(r), "created_ts": r.created_at} for r in rows]
    await state.db.write(
        lambda c: append_event(
            c,
            "config.exported",
            actor=who.actor,
            now=now(),
            subject="audit",
            data={"format": fmt, "events": len(events)},
        )
    )
    if fmt == "csv":
        for event in events:
            del event["created_ts"]
        return Response(
            export_csv(events),
            media_type="text/csv",
            headers={"Content-Disposition": 'attachment; filename="audit.csv"'},
        )
    unique = {cp.token: cp for cp in checkpoints}.values()
    lines = [*export_jsonl(events), *(checkpoint_line(cp) for cp in unique)]
    return Response(
        "".join(lines),
        media_type="application/x-ndjson",
        headers={"Content-Disposition": 'attachment; filename="audit.jsonl"'},
    )


async def verify(request: Request) -> JSONResponse:
    check_query(request)
    await require_role(request, "viewer")
    state = state_of(request)
    result = await state.db.read(lambda c: verify_log(state.settings, state.signing_key, c))
    return json_ok(result.to_dict())


async def list_checkpoints(request: Request) -> JSONResponse:
    await require_role(request, "viewer")
    check_query(request, "limit")
    state = state_of(request)
    found, problems = await state.db.read(lambda c: collect(state.settings, state.signing_key, c))
    newest = sorted({cp.token: cp for cp in found}.values(), key=lambda c: (c.seq, c.time))
    limit = _int(request, "limit", 100, 1000) or 100
    return json_ok(
        {
            "checkpoints": [cp.to_dict() for cp in reversed(newest[-limit:])],
            "problems": problems,
        }
    )


async def make_checkpoint(request: Request) -> JSONResponse:
    await require_role(request, "admin")
    await no_body(request)
    cp = await state_of(request).checkpoints.checkpoint("request")
    return json_ok({"checkpoint": cp.to_dict()}, 201)


async def list_traffic(request: Request) -> JSONResponse:
    await require_role(request, "viewer")
    check_query(request, "agent", "connector", "action", "decision", "status", "shadow",
                "limit", "before")  # fmt: skip
    q = select(traffic)
    params = request.query_params
    decision = params.get("decision")
    if decision and decision not in _DECISIONS:  # a typo would list nothing, as if none were
        expected = ", ".join(_DECISIONS)
        message = f"unknown decision `{decision}`: expected {expected}"
        raise ApiError(400, message, field="decision")
    state = state_of(request)
    agents = None
    if params.get("agent"):  # a name or an id; matched by id (a removed namesake's stay its own)
        agents = AgentRows.of(state.snapshot, [params["agent"]], by_id=True)
        q = q.where(agents.where(traffic))
    for name, column in (
        ("connector", traffic.c.connector),
        ("action", traffic.c.action),
        ("decision", traffic.c.decision),
    ):
        if params.get(name):
            q = q.where(column == params[name])
    if (status := _int(request, "status", None, INTEGER_MAX)) is not None:
        if status > 999:  # a filter is not clamped: `status=5000` would list the 999s
            raise ApiError(400, f"`status` must be 1 to 999, not `{status}`", field="status")
        q = q.where(traffic.c.status_code == status)
    shadow = params.get("shadow")
    if shadow not in (None, "", "diverged"):
        raise ApiError(400, "`shadow` must be `diverged`", field="shadow")
    limit = _int(request, "limit", 100, 1000) or 100
    if shadow:  # the rows the shadow configuration would have decided differently
        q = q.where(traffic.c.shadow_diverged.is_(True))
        raw = params.get("before")
        if raw is None or "," in raw:  # gateway and SDK rows (a bare traffic id: gateway's)
            place = parse_place(raw) if raw is not None else None
            filters, sdk = dict(params), status is None  # an SDK action has no HTTP status
            found = await state.db.read(
                lambda c: page(c, q, filters, place, limit, sdk=sdk, agents=agents)
            )
            return json_ok(found)
    if (before := _int(request, "before", None, INTEGER_MAX)) is not None:
        q = q.where(traffic.c.id < before)
    q = q.order_by(traffic.c.id.desc()).limit(limit)
    rows = await state.db.read(lambda c: c.execute(q).all())
    out = [traffic_json(r) for r in rows]
    next_before = out[-1]["id"] if len(out) == limit else None
    return json_ok({"traffic": out, "next_before": next_before})


def routes() -> list[BaseRoute]:
    return [
        Route("/api/v1/audit", list_audit, methods=["GET"]),
        Route("/api/v1/audit/export", export_audit, methods=["GET"]),
        Route("/api/v1/audit/verify", verify, methods=["GET"]),
        Route("/api/v1/audit/checkpoints", list_checkpoints, methods=["GET"]),
        Route("/api/v1/audit/checkpoints", make_checkpoint, methods=["POST"]),
        Route("/api/v1/traffic", list_traffic, methods=["GET"]),
    ]
