"""Policies: create, validate, update (new version), enable/disable, delete, packs.

A policy document is parsed and checked in a worker thread (:func:`off_loop`), a few at a
time: a large one takes a fraction of a second of CPU (``agentfirewall.policy.loader``
caps it at ``MAX_NODES`` nodes), which the event loop, answering every agent's decision,
never waits for. The replay and shadow routes load their documents the same way.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar
from weakref import WeakKeyDictionary

import anyio.to_thread
from anyio import CapacityLimiter
from pydantic import Field
from sqlalchemy import Connection, delete, select, update
from sqlalchemy.exc import IntegrityError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from agentfirewall.errors import PolicyError
from agentfirewall.policy import Policy, list_packs, load_pack, load_policy, validate_policy_text
from agentfirewall_server.audit import append_event
from agentfirewall_server.auth import require_role, state_of
from agentfirewall_server.clock import new_id, now, rfc3339
from agentfirewall_server.state import AppState
from agentfirewall_server.store.schema import policies, policy_versions
from agentfirewall_server.web import ApiError, Strict, check_query, json_ok, no_body, read_model

__all__ = ["PARSERS", "load_document", "off_loop", "policy_json", "routes"]

T = TypeVar("T")
#: Policy documents parsed at once, per app; more requests wait their turn (off the loop)
PARSERS = 2
_parsers: WeakKeyDictionary[AppState, CapacityLimiter] = WeakKeyDictionary()


class DocumentBody(Strict):
    document: str = Field(min_length=1, max_length=512 * 1024)


class UpdateBody(DocumentBody):
    #: The version the change was made on: when the policy is at another one now (someone
    #: saved it meanwhile), 409 ``version_conflict`` rather than silently overwriting it.
    base_version: int | None = Field(default=None, ge=1)


def policy_json(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "enabled": bool(row["enabled"]),
        "priority": row["priority"],
        "version": row["version"],
        "document": row["document"],
        "created_at": rfc3339(row["created_at"]),
        "updated_at": rfc3339(row["updated_at"]),
    }


async def off_loop(request: Request, work: Callable[[], T]) -> T:
    """`work()` (parsing policy documents) in a worker thread, :data:`PARSERS` at a time."""
    state = state_of(request)
    limiter = _parsers.get(state)
    if limiter is None:
        limiter = _parsers[state] = CapacityLimiter(PARSERS)
    return await anyio.to_thread.run_sync(work, limiter=limiter)


def load_document(text: str) -> Policy:
    """The policy a request's document holds (422 naming line and field when invalid)."""
    try:
        return load_policy(text)
    except PolicyError as exc:
        raise ApiError(422, f"invalid policy: {exc}", line=exc.line, field=exc.field) from None


def _find(request: Request) -> dict[str, Any]:
    pid = request.path_params["id"]
    for row in state_of(request).snapshot.policies:
        if pid in (row["id"], row["name"]):
            return row
    raise ApiError(404, f"no policy `{pid}`")


def _gone(row: dict[str, Any]) -> ApiError:
    """404 for a policy that `_find` read in the snapshot but the write no longer finds:
    deleted meanwhile, by a request on this replica or another."""
    return ApiError(404, f"no policy `{row['name']}`: it was deleted")


def _conflict(row: dict[str, Any], stored: int, base: int) -> ApiError:
    """409 for a change made on a version that is no longer the policy's latest."""
    return ApiError(
        409,
        f"policy `{row['name']}` is at version {stored} now, not version {base} this change "
        f"was made on: someone saved it meanwhile; load version {stored}, apply the change "
        "to it and save again",
        code="version_conflict",
        field="base_version",
        current_version=stored,
    )


def _create(text: str, policy: Policy, actor: str) -> Any:
    def job(conn: Connection) -> dict[str, Any]:
        stamp = now()
        row: dict[str, Any] = {
            "id": new_id("pol_"),
            "name": policy.name,
            "enabled": policy.enabled,
            "priority": policy.priority,
            "version": 1,
            "document": text,
            "created_at": stamp,
            "updated_at": stamp,
        }
        conn.execute(policies.insert().values(**row))
        conn.execute(
            policy_versions.insert().values(
                policy_id=row["id"], version=1, document=text, created_at=stamp, created_by=actor
            )
        )
        append_event(
            conn,
            "policy.created",
            actor=actor,
            now=stamp,
            subject=row["id"],
            data={"name": policy.name, "version": 1},
        )
        return row

    return job


async def _insert(request: Request, text: str, policy: Policy, actor: str) -> JSONResponse:
    state = state_of(request)
    if any(p["name"] == policy.name for p in state.snapshot.policies):
        raise ApiError(
            409, f"a policy named `{policy.name}` exists: update it with PUT", field="name"
        )
    try:
        row = await state.change_config(_create(text, policy, actor))
    except IntegrityError:
        raise ApiError(409, f"a policy named `{policy.name}` exists", field="name") from None
    return json_ok(policy_json(row), 201)


async def list_policies(request: Request) -> JSONResponse:
    check_query(request)
    await require_role(request, "viewer")
    rows = state_of(request).snapshot.policies
    return json_ok({"policies": [policy_json(r) for r in rows]})


async def create_policy(request: Request) -> JSONResponse:
    who = await require_role(request, "admin")
    body = await read_model(request, DocumentBody)
    policy = await off_loop(request, lambda: load_document(body.document))
    return await _insert(request, body.document, policy, who.actor)


async def validate(request: Request) -> JSONResponse:
    await require_role(request, "viewer")
    body = await read_model(request, DocumentBody)
    errors = await off_loop(request, lambda: validate_policy_text(body.document))
    return json_ok(
        {
            "valid": not errors,
            "errors": [{"message": e.message, "line": e.line, "field": e.field} for e in errors],
        }
    )


async def get_policy(request: Request) -> JSONResponse:
    check_query(request)
    await require_role(request, "viewer")
    return json_ok(policy_json(_find(request)))


async def put_policy(request: Request) -> JSONResponse:
    who = await require_role(request, "admin")
    row = _find(request)
    body = await read_model(request, UpdateBody)
    policy = await off_loop(request, lambda: load_document(body.document))
    if policy.name != row["name"] and any(
        p["name"] == policy.name for p in state_of(request).snapshot.policies
    ):
        raise ApiError(409, f"a policy named `{policy.name}` exists", field="name")

    def job(conn: Connection) -> dict[str, Any]:
        stamp = now()
        found = conn.execute(
            select(policies.c.version, policies.c.enabled).where(policies.c.id == row["id"])
        ).first()
        if found is None:
            raise _gone(row)
        stored, enabled = found
        if body.base_version is not None and int(stored) != body.base_version:
            raise _conflict(row, int(stored), body.base_version)
        version = int(stored) + 1
        if "enabled" in policy.model_fields_set:  # else as it is (disabled stays disabled)
            enabled = policy.enabled
        values = {
            "name": policy.name,
            "priority": policy.priority,
            "enabled": bool(enabled),
            "version": version,
            "document": body.document,
            "updated_at": stamp,
        }
        conn.execute(update(policies).where(policies.c.id == row["id"]).values(**values))
        conn.execute(
            policy_versions.insert().values(
                policy_id=row["id"],
                version=version,
                document=body.document,
                created_at=stamp,
                created_by=who.actor,
            )
        )
        append_event(
            conn,
            "policy.updated",
            actor=who.actor,
            now=stamp,
            subject=row["id"],
            data={"name": policy.name, "version": version},
        )
        return {**row, **values}

    try:
        return json_ok(policy_json(await state_of(request).change_config(job)))
    except IntegrityError:  # renamed concurrently to a name this snapshot had free
        raise ApiError(409, f"a policy named `{policy.name}` exists", field="name") from None


async def delete_policy(request: Request) -> Response:
    who = await require_role(request, "admin")
    await no_body(request)
    row = _find(request)

    def job(conn: Connection) -> None:
        if not conn.execute(delete(policies).where(policies.c.id == row["id"])).rowcount:
            raise _gone(row)
        append_event(
            conn,
            "policy.deleted",
            actor=who.actor,
            now=now(),
            subject=row["id"],
            data={"name": row["name"]},
        )

    await state_of(request).change_config(job)
    return Response(status_code=204)


async def _toggle(request: Request, enabled: bool) -> JSONResponse:
    who = await require_role(request, "admin")
    await no_body(request)
    row = _find(request)

    def job(conn: Connection) -> dict[str, Any]:
        stamp = now()
        if not conn.execute(
            update(policies)
            .where(policies.c.id == row["id"])
            .values(enabled=enabled, updated_at=stamp)
        ).rowcount:
            raise _gone(row)
        append_event(
            conn,
            "policy.updated",
            actor=who.actor,
            now=stamp,
            subject=row["id"],
            data={"name": row["name"], "enabled": enabled},
        )
        return {**row, "enabled": enabled, "updated_at": stamp}

    return json_ok(policy_json(await state_of(request).change_config(job)))


async def enable(request: Request) -> JSONResponse:
    return await _toggle(request, True)


async def disable(request: Request) -> JSONResponse:
    return await _toggle(request, False)


async def versions(request: Request) -> JSONResponse:
    check_query(request)
    await require_role(request, "viewer")
    row = _find(request)
    rows = await state_of(request).db.read(
        lambda c: c.execute(
            select(policy_versions)
            .where(policy_versions.c.policy_id == row["id"])
            .order_by(policy_versions.c.version)
        ).all()
    )
    return json_ok(
        {
            "versions": [
                {
                    "version": r.version,
                    "document": r.document,
                    "created_at": rfc3339(r.created_at),
                    "created_by": r.created_by,
                }
                for r in rows
            ]
        }
    )


async def packs(request: Request) -> JSONResponse:
    check_query(request)
    await require_role(request, "viewer")
    return json_ok(
        {"packs": [{"name": p.name, "description": p.description} for p in list_packs()]}
    )


async def install_pack(request: Request) -> JSONResponse:
    who = await require_role(request, "admin")
    await no_body(request)
    name = request.path_params["name"]
    if name not in {p.name for p in list_packs()}:
        raise ApiError(404, f"no policy pack `{name}`: see GET /api/v1/policy-packs")
    policy = load_pack(name)
    text = json.dumps(policy.to_document(), indent=2)
    return await _insert(request, text, policy, who.actor)


def routes() -> list[BaseRoute]:
    p = "/api/v1/policies"
    return [
        Route(p, list_policies, methods=["GET"]),
        Route(p, create_policy, methods=["POST"]),
        Route(p + "/validate", validate, methods=["POST"]),
        Route(p + "/{id}", get_policy, methods=["GET"]),
        Route(p + "/{id}", put_policy, methods=["PUT"]),
        Route(p + "/{id}", delete_policy, methods=["DELETE"]),
        Route(p + "/{id}/enable", enable, methods=["POST"]),
        Route(p + "/{id}/disable", disable, methods=["POST"]),
        Route(p + "/{id}/versions", versions, methods=["GET"]),
        Route("/api/v1/policy-packs", packs, methods=["GET"]),
        Route("/api/v1/policy-packs/{name}/install", install_pack, methods=["POST"]),
    ]
