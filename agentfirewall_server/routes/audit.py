"""Audit log queries, export (CSV, JSON Lines), chain verification; the traffic log.

Verification holds the chain against the signed checkpoints (checkpointer.py); the JSON
Lines export carries each event's exact ``created_ts`` and, at the end, every checkpoint,
so `tf audit verify --file` can check it offline with only the public key. It streams
every event up to the newest checkpoint; a filter leaves an event out as a stub line (what
links it, nothing it says) and signs which events it showed (checkpoints.py), so a
filtered export verifies too and none of its events can be hidden afterwards.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import partial
from typing import Any

from sqlalchemy import ColumnElement, Connection, Select, and_, case, func, literal, select
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from agentfirewall_server.audit import (
    append_event,
    event_to_dict,
    export_csv,
    export_jsonl,
    stub_line,
)
from agentfirewall_server.auth import require_role, state_of
from agentfirewall_server.checkpointer import collect, verify_log
from agentfirewall_server.checkpoints import (
    Checkpoint,
    Selected,
    Selection,
    checkpoint_line,
    selection_line,
)
from agentfirewall_server.clock import now, parse_time
from agentfirewall_server.replaystore import AgentRows
from agentfirewall_server.routes.shownspec import shown_to
from agentfirewall_server.routes.trafficrows import page, parse_place, traffic_json
from agentfirewall_server.store.schema import INTEGER_MAX, audit_events, traffic
from agentfirewall_server.web import ApiError, check_query, json_ok, no_body

__all__ = ["routes"]

_EXPORT_LIMIT = 1_000_000  # CSV (built whole, for a spreadsheet); JSON Lines streams
_EXPORT_BATCH = 5000  # events read per query of a JSON Lines export
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


def _audit_filters(request: Request) -> list[ColumnElement[bool]]:
    """The conditions of the `_AUDIT_FILTERS` given (an empty value filters nothing)."""
    params, found = request.query_params, []
    if params.get("event_type"):
        found.append(audit_events.c.event_type == params["event_type"])
    if params.get("agent"):
        found.append(audit_events.c.agent == params["agent"])
    if (since := _time(request, "since")) is not None:
        found.append(audit_events.c.created_at >= since)
    if (until := _time(request, "until")) is not None:
        found.append(audit_events.c.created_at <= until)
    return found


def _filter_named(request: Request) -> dict[str, str]:
    """The filters given, as given: what a filtered export's selection record names."""
    params = request.query_params
    return {name: params[name] for name in _AUDIT_FILTERS if params.get(name)}


def _audit_query(request: Request) -> Select[Any]:
    return select(audit_events).where(*_audit_filters(request))


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
    filters, named = _audit_filters(request), _filter_named(request)
    state = state_of(request)
    await state.checkpoints.checkpoint("export")  # the export carries its own signed end
    if fmt == "csv":
        return await _export_csv(request, who.actor, filters, named)
    end, checkpoints, shown = await state.db.read(lambda c: _export_range(request, c, filters))
    await _record_export(request, who.actor, fmt, shown, named)
    unique = list({cp.token: cp for cp in checkpoints}.values())
    return StreamingResponse(
        _jsonl_export(request, end, filters, named, unique),
        media_type="application/x-ndjson",
        headers={"Content-Disposition": 'attachment; filename="audit.jsonl"'},
    )


async def _record_export(
    request: Request, actor: str, fmt: str, events: int, named: dict[str, str]
) -> None:
    """The `config.exported` event (with the filter, when one was given)."""
    data: dict[str, Any] = {"format": fmt, "events": events}
    if named:
        data["filter"] = named
    await state_of(request).db.write(
        lambda c: append_event(
            c, "config.exported", actor=actor, now=now(), subject="audit", data=data
        )
    )


def _export_range(
    request: Request, conn: Connection, filters: list[ColumnElement[bool]]
) -> tuple[int, list[Checkpoint], int]:
    """The last event a JSON Lines export holds (the newest checkpoint's: events written
    after it are the next export's; without one, the head), the checkpoints, and how many
    events of 1..end the filter shows."""
    state = state_of(request)
    # checkpoints first: none of them is newer than the events read after
    checkpoints, _problems = collect(state.settings, state.signing_key, conn)
    if checkpoints:
        end = max(cp.seq for cp in checkpoints)
    else:
        end = conn.execute(select(func.coalesce(func.max(audit_events.c.id), 0))).scalar_one()
    counted = select(func.count()).select_from(audit_events)
    shown = conn.execute(counted.where(audit_events.c.id <= end, *filters)).scalar_one()
    return int(end), checkpoints, int(shown)


async def _jsonl_export(
    request: Request,
    end: int,
    filters: list[ColumnElement[bool]],
    named: dict[str, str],
    checkpoints: list[Checkpoint],
) -> AsyncIterator[str]:
    """Events 1..`end` in id order, read in batches: each one the filter shows whole, each
    one it leaves out as a stub; then, when filtered, the signed selection record; then
    the checkpoints. Unfiltered, the lines are the events and checkpoints alone."""
    state = state_of(request)
    shows = case((and_(*filters), 1), else_=0) if filters else literal(1)
    query = select(audit_events, shows.label("shown")).order_by(audit_events.c.id)
    tally, after = Selected(), 0
    while after < end:
        batch = query.where(audit_events.c.id > after, audit_events.c.id <= end)
        rows = await state.db.read(partial(_mappings, query=batch.limit(_EXPORT_BATCH)))
        if not rows:
            break
        lines: list[str] = []
        for row in rows:
            tally.add(row["id"], shown=bool(row["shown"]))
            if row["shown"]:
                lines.extend(
                    export_jsonl([{**event_to_dict(row), "created_ts": row["created_at"]}])
                )
            else:
                lines.append(stub_line(row))
        yield "".join(lines)
        after = rows[-1]["id"]
    if named:
        selection = Selection(after, named, tally.shown, tally.left_out, tally.shown_ids_sha256)
        yield selection_line(state.signing_key, selection)
    if checkpoints:
        yield "".join(checkpoint_line(cp) for cp in checkpoints)


def _mappings(conn: Connection, query: Select[Any]) -> list[Any]:
    return list(conn.execute(query).mappings().all())


async def _export_csv(
    request: Request, actor: str, filters: list[ColumnElement[bool]], named: dict[str, str]
) -> Response:
    """The CSV export (for a spreadsheet: the events the filter shows, no stubs)."""
    state = state_of(request)
    q = select(audit_events).where(*filters).order_by(audit_events.c.id).limit(_EXPORT_LIMIT)

    def read(conn: Connection) -> tuple[list[Any], list[Checkpoint]]:
        checkpoints, _problems = collect(state.settings, state.signing_key, conn)
        return list(conn.execute(q).all()), checkpoints

    rows, checkpoints = await state.db.read(read)
    if checkpoints:  # events written after the newest checkpoint: the next export's
        covered = max(cp.seq for cp in checkpoints)
        rows = [r for r in rows if r.id <= covered]
    await _record_export(request, actor, "csv", len(rows), named)
    return Response(
        export_csv([event_to_dict(r) for r in rows]),
        media_type="text/csv",
        headers={"Content-Disposition": 'attachment; filename="audit.csv"'},
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
    who = await require_role(request, "viewer")
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
            return json_ok(await shown_to(request, who, found))
    if (before := _int(request, "before", None, INTEGER_MAX)) is not None:
        q = q.where(traffic.c.id < before)
    q = q.order_by(traffic.c.id.desc()).limit(limit)
    rows = await state.db.read(lambda c: c.execute(q).all())
    out = [traffic_json(r) for r in rows]
    next_before = out[-1]["id"] if len(out) == limit else None
    return json_ok(await shown_to(request, who, {"traffic": out, "next_before": next_before}))


def routes() -> list[BaseRoute]:
    return [
        Route("/api/v1/audit", list_audit, methods=["GET"]),
        Route("/api/v1/audit/export", export_audit, methods=["GET"]),
        Route("/api/v1/audit/verify", verify, methods=["GET"]),
        Route("/api/v1/audit/checkpoints", list_checkpoints, methods=["GET"]),
        Route("/api/v1/audit/checkpoints", make_checkpoint, methods=["POST"]),
        Route("/api/v1/traffic", list_traffic, methods=["GET"]),
    ]
