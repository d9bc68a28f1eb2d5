"""Shadow policies and permissions: ``/api/v1/shadow`` (list), ``…/policies`` (install,
remove), ``…/permissions`` (replace, remove), ``…/promote`` (make them live).

The shadow configuration is evaluated beside the live one on every decision and never
enforced (``agentfirewall_server.shadow``); its verdicts are on the traffic rows and in
``aaf_shadow_decisions_total``. Documents are parsed in a worker thread
(``policies.off_loop``).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from agentfirewall.policy import Policy, load_policy
from agentfirewall_server import shadowstore
from agentfirewall_server.auth import require_role, state_of
from agentfirewall_server.clock import rfc3339
from agentfirewall_server.routes.policies import load_document, off_loop
from agentfirewall_server.routes.replay import CandidatePermission, candidate_permissions
from agentfirewall_server.web import ApiError, Strict, check_query, json_ok, no_body, read_model

__all__ = ["routes"]


class DocumentBody(Strict):
    document: str = Field(min_length=1, max_length=512 * 1024)


class PermissionsBody(Strict):
    permissions: list[CandidatePermission] = Field(min_length=1, max_length=10_000)


def _policy_json(
    row: dict[str, Any], live: dict[str, str], policy: Policy | None = None
) -> dict[str, Any]:
    if policy is None:
        policy = load_policy(row["document"], source=row["name"], stored=True)
    return {
        "id": row["id"],
        "name": row["name"],
        "enabled": policy.enabled,
        "priority": policy.priority,
        "document": row["document"],
        "replaces": live.get(row["name"]),  # the live policy's id, when one has this name
        "created_at": rfc3339(row["created_at"]),
        "created_by": row["created_by"],
    }


def _permission_json(row: dict[str, Any]) -> dict[str, Any]:
    keys = ("id", "agent", "connector", "action_pattern", "decision")
    return {**{k: row[k] for k in keys}, "created_at": rfc3339(row["created_at"])}


async def show(request: Request) -> JSONResponse:
    check_query(request)
    await require_role(request, "viewer")
    snapshot = state_of(request).snapshot
    shadow = snapshot.shadow
    live = {p["name"]: p["id"] for p in snapshot.policies}
    rows = shadow.policies if shadow else []
    shown = await off_loop(request, lambda: [_policy_json(r, live) for r in rows])
    return json_ok(
        {
            "installed": shadow is not None,
            "policies": shown,
            "permissions": [_permission_json(r) for r in shadow.permissions] if shadow else [],
        }
    )


async def add_policy(request: Request) -> JSONResponse:
    who = await require_role(request, "admin")
    body = await read_model(request, DocumentBody)
    policy = await off_loop(request, lambda: load_document(body.document))
    state = state_of(request)
    row = await state.change_config(
        lambda c: shadowstore.put_policy(c, policy.name, body.document, who.actor)
    )
    live = {p["name"]: p["id"] for p in state.snapshot.policies}
    return json_ok(_policy_json(row, live, policy), 201)


async def remove_policy(request: Request) -> Response:
    who = await require_role(request, "admin")
    await no_body(request)
    ident = request.path_params["id"]
    state = state_of(request)
    rows = state.snapshot.shadow.policies if state.snapshot.shadow else []
    row = next((r for r in rows if ident in (r["id"], r["name"])), None)
    if row is None:
        raise ApiError(404, f"no shadow policy `{ident}`")
    await state.change_config(
        lambda c: shadowstore.remove_policy(c, row["id"], row["name"], who.actor)
    )
    return Response(status_code=204)


async def set_permissions(request: Request) -> JSONResponse:
    who = await require_role(request, "admin")
    body = await read_model(request, PermissionsBody)
    state = state_of(request)
    rules = candidate_permissions(body.permissions, state.snapshot.agents_by_name)
    seen: set[tuple[str, str, str]] = set()
    for index, rule in enumerate(rules):
        key = (rule.agent, rule.connector, rule.action_pattern)
        if key in seen:
            raise ApiError(422, f"permission {index} repeats agent, connector and action "
                           "pattern of an earlier one", field=f"permissions.{index}")  # fmt: skip
        seen.add(key)
    rows = await state.change_config(lambda c: shadowstore.set_permissions(c, rules, who.actor))
    return json_ok({"permissions": [_permission_json(r) for r in rows]})


async def remove_permissions(request: Request) -> Response:
    who = await require_role(request, "admin")
    await no_body(request)
    state = state_of(request)
    if state.snapshot.shadow is None or not state.snapshot.shadow.permissions:
        raise ApiError(404, "no shadow permission set is installed")
    await state.change_config(lambda c: shadowstore.set_permissions(c, [], who.actor))
    return Response(status_code=204)


async def promote(request: Request) -> JSONResponse:
    who = await require_role(request, "admin")
    await no_body(request)
    try:
        done = await state_of(request).change_config(lambda c: shadowstore.promote(c, who.actor))
    except shadowstore.NothingToPromote:
        raise ApiError(409, "no shadow configuration is installed: nothing to promote") from None
    return json_ok({"promoted": done})


def routes() -> list[BaseRoute]:
    p = "/api/v1/shadow"
    return [
        Route(p, show, methods=["GET"]),
        Route(p + "/policies", add_policy, methods=["POST"]),
        Route(p + "/policies/{id}", remove_policy, methods=["DELETE"]),
        Route(p + "/permissions", set_permissions, methods=["PUT"]),
        Route(p + "/permissions", remove_permissions, methods=["DELETE"]),
        Route(p + "/promote", promote, methods=["POST"]),
    ]
