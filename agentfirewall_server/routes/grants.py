"""Grants for people: list, show, revoke (``grants.py``; made by approving with ``grant``).

``GET /api/v1/grants?status=active|all``, ``GET /api/v1/grants/{id}``,
``POST /api/v1/grants/{id}/revoke`` (a member or above; at once: the next request is held).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, or_, select
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from agentfirewall_server.auth import require_role, state_of
from agentfirewall_server.clock import now
from agentfirewall_server.grants import grant_json, revoke_row
from agentfirewall_server.store.schema import grants
from agentfirewall_server.web import ApiError, check_query, json_ok, no_body

__all__ = ["routes"]

_RECENT = 200


def _get(conn: Connection, text: str) -> dict[str, Any]:
    """A grant by id or unique prefix (as approvals)."""
    row = conn.execute(select(grants).where(grants.c.id == text)).first()
    if row is None:
        found = conn.execute(
            select(grants).where(grants.c.id.startswith(text, autoescape=True)).limit(2)
        ).all()
        if len(found) > 1:
            raise ApiError(409, f"`{text}` is ambiguous: give more of the grant id", field="id")
        if not found or len(text) < 8:
            raise ApiError(404, f"no grant `{text}`")
        row = found[0]
    return dict(row._mapping)


async def list_grants(request: Request) -> JSONResponse:
    await require_role(request, "viewer")
    check_query(request, "status")
    which = request.query_params.get("status", "active")
    stamp = now()
    query = select(grants).order_by(grants.c.created_at.desc()).limit(_RECENT)
    if which == "active":
        query = query.where(
            grants.c.revoked_at.is_(None),
            or_(grants.c.expires_at.is_(None), grants.c.expires_at > stamp),
            or_(grants.c.max_uses.is_(None), grants.c.uses < grants.c.max_uses),
        )
    elif which != "all":
        raise ApiError(400, f"unknown status `{which}`: expected active or all", field="status")
    rows = await state_of(request).db.read(lambda c: c.execute(query).all())
    return json_ok({"grants": [grant_json(r, stamp) for r in rows]})


async def show_grant(request: Request) -> JSONResponse:
    check_query(request)
    await require_role(request, "viewer")
    gid = request.path_params["id"]
    row = await state_of(request).db.read(lambda c: _get(c, gid))
    return json_ok(grant_json(row, now()))


async def revoke_grant(request: Request) -> JSONResponse:
    who = await require_role(request, "member")
    await no_body(request)
    gid = request.path_params["id"]

    def job(conn: Connection) -> dict[str, Any]:
        row = _get(conn, gid)
        if row["revoked_at"] is not None:
            raise ApiError(409, f"grant `{row['id']}` was already revoked")
        stamp = now()
        revoke_row(conn, row, actor=who.actor, now=stamp)
        return {**row, "revoked_at": stamp, "revoked_by": who.actor}

    row = await state_of(request).db.write(job)
    return json_ok(grant_json(row, now()))


def routes() -> list[BaseRoute]:
    p = "/api/v1/grants"
    return [
        Route(p, list_grants, methods=["GET"]),
        Route(p + "/{id}", show_grant, methods=["GET"]),
        Route(p + "/{id}/revoke", revoke_grant, methods=["POST"]),
    ]
