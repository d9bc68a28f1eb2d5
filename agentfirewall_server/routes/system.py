"""Health, JWKS, Prometheus metrics, status and the OpenAPI document."""

from __future__ import annotations

import asyncio
import json
import weakref
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import Connection, Integer, cast, func, select, text
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

import agentfirewall
from agentfirewall.tokens import jwks_from_keys
from agentfirewall_server.auth import require_metrics_reader, require_role, state_of
from agentfirewall_server.clock import now, rfc3339
from agentfirewall_server.coverage import agents_without_rules
from agentfirewall_server.store.schema import action_requests, approvals, audit_events, traffic
from agentfirewall_server.web import ApiError, check_query, json_ok

if TYPE_CHECKING:
    from agentfirewall_server.store.db import Database

__all__ = ["routes"]

GATEWAY_ONLINE_SECONDS = 30.0


#: Seconds the health check waits for the database to answer ``SELECT 1`` (then 503).
HEALTH_DB_TIMEOUT = 5.0
#: The health check's database probe in flight, per database: one at a time, whoever asks.
_PROBES: weakref.WeakKeyDictionary[Database, asyncio.Future[object]] = weakref.WeakKeyDictionary()


async def _database_answers(db: Database) -> bool:
    """Whether the database answers ``SELECT 1`` within :data:`HEALTH_DB_TIMEOUT`.

    The read runs in a worker thread that cannot be interrupted: a database that stopped
    answering keeps it until it answers again, so the check stops waiting for it (shielded)
    and, meanwhile, every health check waits for that same probe rather than starting one
    more (an unauthenticated caller cannot pile them up).
    """
    probe = _PROBES.get(db)
    if probe is None or probe.done():
        probe = _PROBES[db] = asyncio.ensure_future(
            db.read(lambda c: c.execute(text("SELECT 1")).scalar())
        )
    try:
        async with asyncio.timeout(HEALTH_DB_TIMEOUT):
            await asyncio.shield(probe)
    except Exception:
        return False
    return True


async def health(request: Request) -> JSONResponse:
    state = state_of(request)
    database = "ok" if await _database_answers(state.db) else "unavailable"
    status = 200 if database == "ok" else 503
    unreadable = _unreadable(state.vault_problems)
    # a stored policy or budget this version cannot read denies every action (fail closed);
    # which one is for a viewer (`/api/v1/status`), not for anyone who can reach the port
    stops = len(state.snapshot.unreadable)
    return json_ok(
        {
            "status": "ok" if status == 200 and not unreadable and not stops else "degraded",
            "version": agentfirewall.__version__,
            "database": database,
            # a credential that does not decrypt fails its own connector only
            "vault": {"status": "degraded" if unreadable else "ok", "unreadable": unreadable},
            "config": {"status": "degraded" if stops else "ok", "unreadable": stops},
        },
        status,
    )


def _unreadable(problems: dict[str, dict[str, str]]) -> list[dict[str, str]]:
    return [
        {"connector": owner, "key_id": p["key_id"], "fix": p["fix"]}
        for owner, p in sorted(problems.items())
    ]


async def jwks(request: Request) -> JSONResponse:
    return json_ok(jwks_from_keys([state_of(request).signing_key]))


async def metrics(request: Request) -> Response:
    await require_metrics_reader(request)
    registry = state_of(request).metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


_OUTCOMES = ("allow", "deny", "require_approval")


def _sdk_decisions(conn: Connection) -> dict[str, int]:
    rows = conn.execute(
        select(action_requests.c.decision, func.count()).group_by(action_requests.c.decision)
    ).all()
    outcomes = dict.fromkeys(_OUTCOMES, 0)
    for decision, count in rows:
        outcome = json.loads(decision).get("decided_outcome") or "allow"
        outcomes[outcome] = outcomes.get(outcome, 0) + int(count)
    return outcomes


def _proxy_decisions(conn: Connection) -> dict[str, int]:
    rows = conn.execute(
        select(traffic.c.decision, func.count())
        .where(traffic.c.decision.is_not(None))
        .group_by(traffic.c.decision)
    ).all()
    outcomes = dict.fromkeys(_OUTCOMES, 0)
    for decision, count in rows:
        outcomes[decision] = outcomes.get(decision, 0) + int(count)
    return outcomes


#: An SDK action's audit event, by its decision (``routes/actions._EVENT``).
_SDK_EVENTS = {
    "action.allowed": "allow",
    "action.denied": "deny",
    "action.pending_approval": "require_approval",
}
_HOUR = 3600
_MAX_HOURS = 7 * 24


def _hour_of(conn: Connection, column: Any, start: float) -> Any:
    """The whole hours between `start` and `column` (never negative here), in SQL: SQLite's
    CAST truncates, PostgreSQL's rounds, so it takes floor (which SQLite may lack)."""
    offset = (column - start) / _HOUR
    return func.floor(offset) if conn.dialect.name == "postgresql" else cast(offset, Integer)


def _hourly(conn: Connection, start: float, hours: int) -> list[dict[str, Any]]:
    """Decisions per hour from `start`, counted in the database (the traffic log for the
    gateway's requests, the audit log's action events for the SDK's)."""
    proxy_counts = [{**dict.fromkeys(_OUTCOMES, 0), "killed": 0} for _ in range(hours)]
    sdk_counts = [dict.fromkeys(_OUTCOMES, 0) for _ in range(hours)]
    hour = _hour_of(conn, traffic.c.created_at, start).label("hour")
    proxy = conn.execute(
        select(hour, traffic.c.decision, func.count())
        .where(traffic.c.created_at >= start, traffic.c.decision.is_not(None))
        .group_by(hour, traffic.c.decision)
    )
    for index, decision, count in proxy:
        if 0 <= int(index) < hours and decision in proxy_counts[int(index)]:
            proxy_counts[int(index)][decision] += int(count)
    hour = _hour_of(conn, audit_events.c.created_at, start).label("hour")
    sdk = conn.execute(
        select(hour, audit_events.c.event_type, func.count())
        .where(audit_events.c.event_type.in_(_SDK_EVENTS), audit_events.c.created_at >= start)
        .group_by(hour, audit_events.c.event_type)
    )
    for index, event_type, count in sdk:
        if 0 <= int(index) < hours:
            sdk_counts[int(index)][_SDK_EVENTS[event_type]] += int(count)
    return [
        {"start": rfc3339(start + i * _HOUR), "sdk": sdk_counts[i], "proxy": proxy_counts[i]}
        for i in range(hours)
    ]


async def hourly(request: Request) -> JSONResponse:
    """`GET /api/v1/stats/hourly?hours=24`: decisions per hour, the current hour last."""
    await require_role(request, "viewer")
    check_query(request, "hours")
    raw = request.query_params.get("hours", "24")
    hours = int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 3 else 0
    if not 1 <= hours <= _MAX_HOURS:
        message = f"`hours` must be a whole number from 1 to {_MAX_HOURS}, not `{raw[:40]}`"
        raise ApiError(400, message, field="hours")
    end = (now() // _HOUR + 1) * _HOUR
    start = end - hours * _HOUR
    state = state_of(request)
    buckets = await state.db.read(lambda c: _hourly(c, start, hours))
    return json_ok({"hours": buckets})


def _counts(conn: Connection) -> dict[str, Any]:
    """Decisions of SDK action requests and of proxied traffic, total and per source."""
    sdk, proxy = _sdk_decisions(conn), _proxy_decisions(conn)
    total = {k: sdk.get(k, 0) + proxy.get(k, 0) for k in {**sdk, **proxy}}
    pending = conn.execute(
        select(func.count()).select_from(approvals).where(approvals.c.status == "pending")
    ).scalar_one()
    return {
        "decisions": total,
        "decisions_by_source": {"sdk": sdk, "proxy": proxy},
        "approvals_pending": int(pending),
    }


async def status(request: Request) -> JSONResponse:
    check_query(request)
    await require_role(request, "viewer")
    state = state_of(request)
    snap = state.snapshot
    counts = await state.db.read(_counts)
    stamp = now()
    # newest first; a gateway that stopped stays listed (when it was last heard), not online
    seen = sorted(state.gateways.values(), key=lambda g: g["last_heartbeat"], reverse=True)
    last = seen[0]["last_heartbeat"] if seen else None
    online = last is not None and stamp - last < GATEWAY_ONLINE_SECONDS
    return json_ok(
        {
            "gateway": {
                "online": online,
                "last_heartbeat": rfc3339(last),
                "proxies": [
                    {
                        **g["info"],
                        "last_heartbeat": rfc3339(g["last_heartbeat"]),
                        "online": stamp - g["last_heartbeat"] < GATEWAY_ONLINE_SECONDS,
                    }
                    for g in seen
                ],
            },
            "agents": {
                "total": len(snap.agents_by_id),
                "active": sum(1 for a in snap.agents_by_id.values() if a.status == "active"),
                "without_rules": agents_without_rules(snap),
            },
            **counts,
            "kill_switches": snap.switches_json(),
            "vault": {"unreadable": _unreadable(state.vault_problems)},
        }
    )


async def openapi(request: Request) -> JSONResponse:
    from agentfirewall_server.openapi import build_openapi

    return json_ok(build_openapi(request.app.routes))


def routes() -> list[BaseRoute]:
    return [
        Route("/api/health", health, methods=["GET"]),
        Route("/.well-known/jwks.json", jwks, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/api/v1/status", status, methods=["GET"]),
        Route("/api/v1/stats/hourly", hourly, methods=["GET"]),
        Route("/api/openapi.json", openapi, methods=["GET"]),
    ]
