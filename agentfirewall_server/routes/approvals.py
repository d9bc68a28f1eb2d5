"""Approvals for people: list, show, approve, deny (once, by an allowed role).

Each takes the full id or any unique prefix of it. A caller whose role cannot approve (a
viewer) reads each action spec and each held request masked (``shownspec.shown_to``).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field
from sqlalchemy import Connection, select
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from agentfirewall_server.approvals import (
    approval_json,
    decide_approval,
    get_approval,
    publish_decided,
)
from agentfirewall_server.auth import Principal, require_role, state_of
from agentfirewall_server.clock import now
from agentfirewall_server.grants import GrantBody, GrantMaker, create_grant, grant_json
from agentfirewall_server.routes.shownspec import shown_to
from agentfirewall_server.store.schema import approvals
from agentfirewall_server.web import ApiError, Strict, check_query, json_ok, read_model

__all__ = ["routes"]

_RECENT = 100
#: The fewest characters after `apv_` an abbreviated approval id may have (as git's 4).
_MIN_PREFIX = 4


def resolve_id(conn: Connection, text: str) -> str:
    """`text` as an approval id: the id itself, or the one id it is a prefix of (like git).

    Ambiguous or too short prefixes get 409 and 400 with the matches, never a guess.
    """
    if get_approval(conn, text) is not None:
        return text
    query = select(approvals.c.id).where(approvals.c.id.startswith(text, autoescape=True))
    found = [r.id for r in conn.execute(query.order_by(approvals.c.id).limit(6))]
    if not found:
        raise ApiError(404, f"no approval `{text}`")
    if len(found) > 1:
        shown = ", ".join(found[:5])
        raise ApiError(409, f"`{text}` is ambiguous: approvals {shown} start with it", field="id")
    if len(text) - text.find("_") - 1 < _MIN_PREFIX:
        raise ApiError(400, f"`{text}` is too short: give at least {_MIN_PREFIX} characters "
                       "after `apv_`", field="id")  # fmt: skip
    return str(found[0])


class DecisionBody(Strict):
    note: str | None = Field(default=None, max_length=2000)
    #: Approve more than this request: the same action, bounded (``grants.py``).
    grant: GrantBody | None = None


async def list_approvals(request: Request) -> JSONResponse:
    who = await require_role(request, "viewer")
    check_query(request, "status")
    which = request.query_params.get("status", "pending")
    query = select(approvals)
    if which == "pending":
        query = query.where(approvals.c.status == "pending").order_by(approvals.c.created_at)
    elif which in ("recent", "all"):
        query = query.order_by(approvals.c.created_at.desc()).limit(_RECENT)
    elif which in ("approved", "denied", "expired"):
        query = (
            query.where(approvals.c.status == which)
            .order_by(approvals.c.created_at.desc())
            .limit(_RECENT)
        )
    else:
        expected = "pending, recent (or all), approved, denied or expired"
        raise ApiError(400, f"unknown status `{which}`: expected {expected}", field="status")
    rows = await state_of(request).db.read(lambda c: c.execute(query).all())
    return json_ok(await shown_to(request, who, {"approvals": [approval_json(r) for r in rows]}))


async def show_approval(request: Request) -> JSONResponse:
    check_query(request)
    who = await require_role(request, "viewer")
    aid = request.path_params["id"]
    row = await state_of(request).db.read(lambda c: get_approval(c, resolve_id(c, aid)))
    if row is None:
        raise ApiError(404, f"no approval `{aid}`")
    return json_ok(await shown_to(request, who, approval_json(row)))


async def _decide(request: Request, approve: bool) -> JSONResponse:
    who = await require_role(request, "member")
    body = await read_model(request, DecisionBody, allow_empty=True)
    aid = request.path_params["id"]
    state = state_of(request)
    if body.grant is not None and not approve:
        raise ApiError(422, "a grant comes with an approval, not a denial", field="grant")

    def job(conn: Connection) -> tuple[dict[str, Any], dict[str, Any] | None]:
        stamp = now()
        row = decide_approval(conn, resolve_id(conn, aid), approve=approve, by=who.actor,
                              role=who.role, note=body.note, now=stamp)  # fmt: skip
        grant = None
        if body.grant is not None:
            grant = create_grant(conn, row, body.grant, maker=_grant_maker(who), role=who.role,
                                 now=stamp)  # fmt: skip
        return row, grant

    row, grant = await state.db.write(job)
    await publish_decided(state, [row])
    data = approval_json(row)
    if grant is not None:
        data["grant"] = grant_json(grant, now())
    return json_ok(data)


def _grant_maker(who: Principal) -> GrantMaker:
    """The caller as a grant's maker: the signed-in user, or the exact API token's row."""
    if who.kind == "session" and who.user_id is not None:
        return GrantMaker.signed_in(who.actor, who.user_id)
    return GrantMaker.with_token(who.actor, who.user_id, who.token_id)


async def approve(request: Request) -> JSONResponse:
    return await _decide(request, True)


async def deny(request: Request) -> JSONResponse:
    return await _decide(request, False)


def routes() -> list[BaseRoute]:
    p = "/api/v1/approvals"
    return [
        Route(p, list_approvals, methods=["GET"]),
        Route(p + "/{id}", show_approval, methods=["GET"]),
        Route(p + "/{id}/approve", approve, methods=["POST"]),
        Route(p + "/{id}/deny", deny, methods=["POST"]),
    ]
