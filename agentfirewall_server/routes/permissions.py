"""Access rules ("permissions"): agent x connector x action pattern -> decision.

Agent and connector are a name or `*` (any); a name no rule could ever apply to (a blank
at either end, an invisible character, a `*` in it) is 422 (`check_names`, which shadow and
candidate permissions pass too)."""

from __future__ import annotations

from collections.abc import Container
from typing import Any, Literal

from pydantic import Field
from sqlalchemy import Connection, delete, select, update
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from agentfirewall.decisions import normalize_outcome
from agentfirewall.policy import AccessRule, preset_rules
from agentfirewall_server.agentnames import shown_problem
from agentfirewall_server.audit import append_event
from agentfirewall_server.auth import require_role, state_of
from agentfirewall_server.clock import new_id, now, rfc3339
from agentfirewall_server.store.schema import permissions
from agentfirewall_server.web import ApiError, Strict, check_query, json_ok, no_body, read_model

__all__ = ["check_names", "permission_json", "routes"]


class PermissionBody(Strict):
    agent: str = Field(min_length=1, max_length=200)
    connector: str = Field(min_length=1, max_length=80)
    action_pattern: str = Field(min_length=1, max_length=300)
    decision: Literal["allow", "deny", "require_approval", "requires_approval"]


class PresetBody(Strict):
    agent: str = Field(min_length=1, max_length=200)
    connector: str = Field(min_length=1, max_length=80)
    preset: Literal["allow-all", "read-only", "require-approval"]


def permission_json(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "agent": row["agent"],
        "connector": row["connector"],
        "action_pattern": row["action_pattern"],
        "decision": row["decision"],
        "created_at": rfc3339(row["created_at"]),
    }


def check_names(agents: Container[str], agent: str, connector: str, at: str = "") -> None:
    """422 naming the field (after `at`, as ``permissions.3.``) for an agent or connector
    name no rule could ever apply to: `*` (any) or a name that shows all it holds
    (`shown_problem`: no blank at either end, no control or invisible character), with no
    `*` in it (`Bot*` is no pattern: `*` is the wildcard alone, and no agent can be named
    with it). An agent an earlier version stored under such a name (one of `agents`, the
    names known) keeps its rules. Live, shadow and candidate permissions alike."""
    for field, name in (("agent", agent), ("connector", connector)):
        if name == "*" or (field == "agent" and name in agents):
            continue
        problem = shown_problem(name)
        if problem is None and "*" in name:
            problem = f"`*` is the wildcard alone (any {field}): name one {field}, or write `*`"
        if problem is not None:
            raise ApiError(422, f"invalid `{at}{field}` `{name}`: {problem}", field=at + field)


def _check(rule: PermissionBody) -> str:
    decision = normalize_outcome(rule.decision)
    try:
        AccessRule(rule.agent, rule.connector, rule.action_pattern, decision)
    except ValueError as exc:
        raise ApiError(422, f"invalid permission: {exc}", field="action_pattern") from None
    return decision


def upsert(
    conn: Connection, agent: str, connector: str, pattern: str, decision: str, actor: str
) -> dict[str, Any]:
    """Insert or update the rule on (agent, connector, pattern)."""
    stamp = now()
    found = conn.execute(
        select(permissions).where(
            permissions.c.agent == agent,
            permissions.c.connector == connector,
            permissions.c.action_pattern == pattern,
        )
    ).first()
    if found is None:
        row: dict[str, Any] = {
            "id": new_id("perm_"),
            "agent": agent,
            "connector": connector,
            "action_pattern": pattern,
            "decision": decision,
            "created_at": stamp,
        }
        conn.execute(permissions.insert().values(**row))
    else:
        row = {**dict(found._mapping), "decision": decision}
        conn.execute(
            update(permissions).where(permissions.c.id == found.id).values(decision=decision)
        )
    append_event(
        conn,
        "permission.set",
        actor=actor,
        now=stamp,
        agent=agent,
        subject=row["id"],
        data={"connector": connector, "action_pattern": pattern, "decision": decision},
    )
    return row


async def list_permissions(request: Request) -> JSONResponse:
    await require_role(request, "viewer")
    check_query(request, "agent")
    agent = request.query_params.get("agent")
    rows = state_of(request).snapshot.permissions
    return json_ok(
        {"permissions": [permission_json(r) for r in rows if agent is None or r["agent"] == agent]}
    )


async def set_permission(request: Request) -> JSONResponse:
    who = await require_role(request, "admin")
    body = await read_model(request, PermissionBody)
    state = state_of(request)
    check_names(state.snapshot.agents_by_name, body.agent, body.connector)
    decision = _check(body)
    row = await state.change_config(
        lambda c: upsert(c, body.agent, body.connector, body.action_pattern, decision, who.actor)
    )
    return json_ok(permission_json(row))


async def set_preset(request: Request) -> JSONResponse:
    who = await require_role(request, "admin")
    body = await read_model(request, PresetBody)
    state = state_of(request)
    check_names(state.snapshot.agents_by_name, body.agent, body.connector)
    rules = preset_rules(body.agent, body.connector, body.preset)

    def job(conn: Connection) -> list[dict[str, Any]]:
        return [
            upsert(conn, r.agent, r.connector, r.action_pattern, r.decision, who.actor)
            for r in rules
        ]

    rows = await state.change_config(job)
    return json_ok({"permissions": [permission_json(r) for r in rows]})


async def delete_permission(request: Request) -> Response:
    who = await require_role(request, "admin")
    await no_body(request)
    pid = request.path_params["id"]
    state = state_of(request)

    def job(conn: Connection) -> None:
        # by its stored row: one this version cannot read (it denies everything) goes too
        if not conn.execute(delete(permissions).where(permissions.c.id == pid)).rowcount:
            raise ApiError(404, f"no permission `{pid}`")
        append_event(conn, "permission.deleted", actor=who.actor, now=now(), subject=pid)

    await state.change_config(job)
    return Response(status_code=204)


def routes() -> list[BaseRoute]:
    p = "/api/v1/permissions"
    return [
        Route(p, list_permissions, methods=["GET"]),
        Route(p, set_permission, methods=["POST"]),
        Route(p + "/preset", set_preset, methods=["POST"]),
        Route(p + "/{id}", delete_permission, methods=["DELETE"]),
    ]
