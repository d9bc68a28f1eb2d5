"""Agents: register (key shown once), update, suspend, activate, revoke, rotate, ensure; the
leases of `tf run` keys (renew, end)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar

from pydantic import Field
from sqlalchemy import Connection, case, delete, select, update
from sqlalchemy.exc import IntegrityError
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from agentfirewall.decisions import EnforcementLevel, normalize_level
from agentfirewall.display import visible
from agentfirewall_server.actionstore import finish_spend
from agentfirewall_server.agentnames import name_key, name_problem, twin_of
from agentfirewall_server.approvals import deny_of_agent, publish_decided
from agentfirewall_server.audit import append_event
from agentfirewall_server.auth import require_role, state_of
from agentfirewall_server.clock import new_id, now, rfc3339
from agentfirewall_server.coverage import rules_of
from agentfirewall_server.grants import revoke_row
from agentfirewall_server.identity import hash_secret, new_agent_key, prefix_of
from agentfirewall_server.routes.system import GATEWAY_ONLINE_SECONDS
from agentfirewall_server.snapshot import RUN_KEY_KINDS, AgentRecord, Snapshot
from agentfirewall_server.state import AppState
from agentfirewall_server.store.schema import (
    action_requests,
    agents,
    api_keys,
    approvals,
    grants,
    permissions,
    shadow_permissions,
)
from agentfirewall_server.web import ApiError, Strict, check_query, json_ok, no_body, read_model

__all__ = ["routes"]

T = TypeVar("T")

_Level = Literal["monitor", "soft_enforce", "full_enforce", "L0", "L1", "L2", "l0", "l1", "l2"]
#: How long a `tf run` key's lease lasts (seconds); `tf run` renews it well before its end.
_LeaseSeconds = Annotated[int, Field(ge=30, le=86_400)]
#: Kinds of the keys `ensure` issues (`tf run`'s proxy keys), which a lease may hold.
_RUN_KINDS = ("proxy", *RUN_KEY_KINDS.values())


class NewAgent(Strict):
    name: str = Field(min_length=1, max_length=200)
    environment: Literal["live", "test"] = "live"
    enforcement_level: _Level | None = None
    sdk_default: Literal["allow", "deny"] = "allow"
    rate_limit_per_minute: int | None = Field(default=None, ge=1, le=1_000_000)
    description: str = Field(default="", max_length=2000)


class AgentPatch(Strict):
    enforcement_level: _Level | None = None
    sdk_default: Literal["allow", "deny"] | None = None
    rate_limit_per_minute: int | None = Field(default=None, ge=1, le=1_000_000)
    description: str | None = Field(default=None, max_length=2000)


class EnsureAgent(Strict):
    name: str = Field(min_length=1, max_length=200)
    enforcement_level: _Level | None = None
    environment: Literal["live", "test"] = "live"
    #: `tf run --enforcement`: the level of this run's traffic only (the key it gets).
    run_enforcement_level: _Level | None = None
    #: The run key expires this long from now unless renewed (`run-keys/{id}/renew`).
    lease_seconds: _LeaseSeconds | None = None


class Lease(Strict):
    lease_seconds: _LeaseSeconds


def _removed(name: str) -> str:
    return (
        f"agent `{name}` was removed (revoked) for good; to use the name again, register a new"
        f' agent under it (`tf agent add "{name}"` or POST /api/v1/agents): it starts with'
        " no permissions and new keys"
    )


def _twin(name: str, twin: str) -> ApiError:
    shown = visible(twin)
    return ApiError(
        409,
        f"an agent named `{shown}` already exists and `{visible(name)}` reads the same (in"
        f" another width or spacing, or with look-alike letters of another script): use"
        f" `{shown}` or choose another name",
        field="name",
    )


def _check_name(conn: Connection, name: str) -> None:
    """422 for a new agent's name that would read as something else (`name_problem`), 409
    for one that shows as a live agent's (`Bot` in full-width letters, or with a Cyrillic
    o, U+043E, as `Bot`), checked in the write's own transaction; the index on the name's key
    (`uq_agents_live_name_key`) holds it against a concurrent insert too (`_refused`). An
    agent stored under such a name before keeps working (a kill switch: `agent:NAME`)."""
    problem = name_problem(name)
    if problem is not None:
        raise ApiError(422, f"invalid agent name `{visible(name)}`: {problem}", field="name")
    live = select(agents.c.name).where(agents.c.status != "revoked")
    twin = twin_of(name, conn.execute(live.order_by(agents.c.created_at, agents.c.id)).scalars())
    if twin is not None:  # (the oldest)
        raise _twin(name, twin)


async def _refused(state: AppState, name: str, taken: ApiError) -> ApiError:
    """The 409 of an insert the store refused (one live agent per name and per key): a
    request or replica registered `name` (answered `taken`), or a twin of it, after this
    one's check. The snapshot is read again first: it names the twin."""
    await state.reload()
    live = (a.name for a in state.snapshot.agents_by_id.values() if a.status != "revoked")
    twin = twin_of(name, live)
    return taken if twin is None else _twin(name, twin)


def _level(value: str | None, default: str) -> EnforcementLevel:
    return normalize_level(value or default)


def _issue_key(
    conn: Connection, agent_id: str, environment: str, kind: str, expires_at: float | None = None
) -> tuple[str, int]:
    """A new key of `agent_id` and its id (`expires_at`: a `tf run` key's lease)."""
    key = new_agent_key(environment)
    made = conn.execute(
        api_keys.insert()
        .values(
            agent_id=agent_id,
            key_hash=hash_secret(key),
            prefix=prefix_of(key),
            kind=kind,
            created_at=now(),
            expires_at=expires_at,
        )
        .returning(api_keys.c.id)
    )
    return key, int(made.scalar_one())


def _insert_agent(conn: Connection, body: NewAgent, level: str, actor: str) -> tuple[str, str]:
    """Every new agent: its name checked (`_check_name`), its first key issued."""
    _check_name(conn, body.name)
    agent_id, stamp = new_id("agt_"), now()
    conn.execute(
        agents.insert().values(
            id=agent_id,
            name=body.name,
            name_key=name_key(body.name),
            status="active",
            environment=body.environment,
            description=body.description,
            enforcement_level=level,
            sdk_default=body.sdk_default,
            rate_limit_per_minute=body.rate_limit_per_minute,
            proxy_port=None,
            created_at=stamp,
            updated_at=stamp,
        )
    )
    key, _ = _issue_key(conn, agent_id, body.environment, "sdk")
    append_event(
        conn,
        "agent.registered",
        actor=actor,
        now=stamp,
        agent=body.name,
        subject=agent_id,
        data={"environment": body.environment, "enforcement_level": level},
    )
    return agent_id, key


class _Outdated(ApiError):
    """The snapshot a route checked is outdated: the write found the agent revoked (or not
    active) by a request or replica this one had not seen yet."""


class _RevokedAlready(Exception):
    """A revoke found the agent revoked already: nothing to change."""


def _hold(conn: Connection, agent: AgentRecord, *, active: bool = False, **values: Any) -> None:
    """Update `agent`'s row (with `values`; none: change nothing but lock it) only while it
    is not revoked, and with `active` only while it is active, else `_Outdated` (409).

    The route checked its in-memory snapshot, which a concurrent revoke, on this replica or
    another, may have outdated: the check that counts is this one, in the write's own
    transaction. Every change of an agent's status or keys goes through it, so a revoked
    agent stays revoked and is never given a key (revoking takes the same row first).
    """
    allowed = agents.c.status == "active" if active else agents.c.status != "revoked"
    changes = values or {"status": agents.c.status}
    if conn.execute(
        update(agents).where(agents.c.id == agent.id, allowed).values(**changes)
    ).rowcount:
        return
    status = conn.execute(select(agents.c.status).where(agents.c.id == agent.id)).scalar()
    if status in (None, "revoked"):
        raise _Outdated(409, _removed(agent.name))
    raise _Outdated(409, f"agent `{agent.name}` is {status}: activate it first")


async def _change(state: AppState, job: Callable[[Connection], T]) -> T:
    """`state.change_config(job)`; on `_Outdated` the snapshot is read again (it missed
    another replica's change) before the 409 is answered."""
    try:
        return await state.change_config(job)
    except _Outdated:
        await state.reload()
        raise


def _find(request: Request) -> AgentRecord:
    ident = request.path_params["ident"]
    agent = state_of(request).snapshot.agent(ident)
    if agent is None:
        raise ApiError(404, f"no agent `{ident}`")
    return agent


def _reported_ports(state: AppState) -> dict[str, int]:
    """Agent name -> dedicated proxy port, as the online gateways last reported them."""
    ports: dict[str, int] = {}
    for beat in sorted(state.gateways.values(), key=lambda g: g["last_heartbeat"]):
        if now() - beat["last_heartbeat"] < GATEWAY_ONLINE_SECONDS:
            ports.update(beat["info"].get("agent_ports") or {})
    return ports


def _public(record: AgentRecord, ports: dict[str, int], snapshot: Snapshot) -> dict[str, Any]:
    """An agent as the API shows it: `proxy_port` as configured, else as a gateway runs it;
    `rules`: how many access rules and policies apply (`none`: it runs with no rules)."""
    data = record.to_dict()
    if data["proxy_port"] is None:
        data["proxy_port"] = ports.get(record.name)
    data["rules"] = rules_of(snapshot, record)
    return data


def _agent_json(request: Request, agent_id: str) -> dict[str, Any]:
    state = state_of(request)
    snap = state.snapshot
    return _public(snap.agents_by_id[agent_id], _reported_ports(state), snap)


async def list_agents(request: Request) -> JSONResponse:
    check_query(request)
    await require_role(request, "viewer")
    state = state_of(request)
    ports = _reported_ports(state)
    snap = state.snapshot
    return json_ok({"agents": [_public(a, ports, snap) for a in snap.agents_by_id.values()]})


async def create_agent(request: Request) -> JSONResponse:
    who = await require_role(request, "admin")
    body = await read_model(request, NewAgent)
    state = state_of(request)
    existing = state.snapshot.agents_by_name.get(body.name)
    if existing is not None and existing.status != "revoked":
        raise ApiError(409, f"an agent named `{body.name}` already exists", field="name")
    level = _level(body.enforcement_level, state.snapshot.settings["default_enforcement_level"])
    try:
        agent_id, key = await state.change_config(
            lambda c: _insert_agent(c, body, level, who.actor)
        )
    except IntegrityError:
        taken = ApiError(409, f"an agent named `{body.name}` already exists", field="name")
        raise await _refused(state, body.name, taken) from None
    return json_ok({"agent": _agent_json(request, agent_id), "api_key": key}, 201)


async def get_agent(request: Request) -> JSONResponse:
    check_query(request)
    await require_role(request, "viewer")
    return json_ok(_agent_json(request, _find(request).id))


async def patch_agent(request: Request) -> JSONResponse:
    who = await require_role(request, "admin")
    agent = _find(request)
    body = await read_model(request, AgentPatch)
    values: dict[str, Any] = body.model_dump(exclude_none=True)
    if "rate_limit_per_minute" in body.model_fields_set and body.rate_limit_per_minute is None:
        values["rate_limit_per_minute"] = None  # back to the server's default
    if "enforcement_level" in values:
        values["enforcement_level"] = normalize_level(values["enforcement_level"])
    if not values:
        raise ApiError(422, "nothing to change: send at least one field")

    def job(conn: Connection) -> None:
        conn.execute(
            update(agents).where(agents.c.id == agent.id).values(updated_at=now(), **values)
        )
        append_event(
            conn,
            "agent.updated",
            actor=who.actor,
            now=now(),
            agent=agent.name,
            subject=agent.id,
            data=values,
        )

    await state_of(request).change_config(job)
    return json_ok(_agent_json(request, agent.id))


def _closing(stamp: float) -> dict[str, Any]:
    """The agent's columns when it is closed: its epoch moves on (an action decided under
    the one before never starts, routes/execute.py), and `closed_before`, kept for
    information only, is `stamp`, never moved back (a clock set back keeps the later one)."""
    later = agents.c.closed_before > stamp
    return {
        "closed_epoch": agents.c.closed_epoch + 1,
        "closed_before": case((later, agents.c.closed_before), else_=stamp),
    }


def _reopen(conn: Connection, agent: AgentRecord, stamp: float) -> bool:
    """Activating a suspended agent closes what was decided before it (`_closing`: what a
    replica that had not heard of the suspension allowed meanwhile); whether it was
    suspended. Activating an active agent changes nothing."""
    suspended = (agents.c.id == agent.id) & (agents.c.status == "suspended")
    return bool(conn.execute(update(agents).where(suspended).values(**_closing(stamp))).rowcount)


def _set_status(agent: AgentRecord, status: str, actor: str) -> Any:
    """Suspend, activate or revoke `agent`. Nothing decided before a suspension or removal
    runs after it: the agent's `closed_epoch` moves on in the same transaction (the execute
    claim refuses an action decided under another epoch, routes/execute.py), and again by
    the activation that ends a suspension, which also denies the approvals asked meanwhile
    (a gateway or replica that had not heard of the suspension): active again, the agent
    asks again. No clock is compared: replicas' clocks may disagree."""

    def job(conn: Connection) -> list[dict[str, Any]]:
        stamp = now()
        reopened = status == "active" and _reopen(conn, agent, stamp)
        closing = {} if status == "active" else _closing(stamp)
        try:
            _hold(conn, agent, status=status, updated_at=stamp, **closing)
        except _Outdated:
            if status == "revoked":  # revoked meanwhile: revoking again changes nothing
                raise _RevokedAlready from None
            raise
        data: dict[str, Any] | None = None
        denied: list[dict[str, Any]] = []
        if reopened:
            note = f"asked while agent `{agent.name}` was suspended: it asks again"
            denied = deny_of_agent(conn, agent.name, by=actor, note=note, now=stamp)
            data = {"approvals_denied": [r["id"] for r in denied]}
        elif status == "revoked":
            conn.execute(
                update(api_keys)
                .where(api_keys.c.agent_id == agent.id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=stamp)
            )
            data, denied = _let_go(conn, agent.name, actor, stamp)
        elif status == "suspended":  # nothing held or approved passes: active again, it asks
            note = f"agent `{agent.name}` suspended"
            denied = deny_of_agent(conn, agent.name, by=actor, note=note, now=stamp)
            data = {
                "approvals_denied": [r["id"] for r in denied],
                **_close_approved(conn, agent.name, stamp),
            }
        event = {
            "active": "agent.activated",
            "suspended": "agent.suspended",
            "revoked": "agent.revoked",
        }[status]
        append_event(
            conn, event, actor=actor, now=stamp, agent=agent.name, subject=agent.id, data=data
        )
        return denied

    return job


def _close_approved(conn: Connection, name: str, stamp: float) -> dict[str, list[str]]:
    """Close the approved, unused approvals of `name` (suspended or removed): marked used,
    no held request can claim or reuse them, and the SDK actions they allowed that have not
    run are denied (no token, not executed; what they reserved from budgets returns to
    them). Returns the ids, as the agent's event lists them."""
    approved = (approvals.c.agent == name) & (approvals.c.status == "approved")
    unused = approved & approvals.c.used.is_(False)
    closed = [r.id for r in conn.execute(select(approvals.c.id).where(unused))]
    waiting = (
        action_requests.c.id.in_(select(approvals.c.action_request_id).where(unused))
        & (action_requests.c.status == "allowed")
        & action_requests.c.execution_state.is_(None)
    )
    stopped = [r.id for r in conn.execute(select(action_requests.c.id).where(waiting))]
    conn.execute(update(action_requests).where(waiting).values(status="denied", updated_at=stamp))
    conn.execute(update(approvals).where(unused).values(used=True))
    for action_id in stopped:
        finish_spend(conn, action_id, ok=False, now=stamp)
    return {"approvals_closed": closed, "actions_denied": stopped}


def _let_go(
    conn: Connection, name: str, actor: str, stamp: float
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """What a removed agent's name held goes with it, so that a new agent registered under
    the name starts with nothing: its access rules (live and shadow) are deleted, its grants
    revoked, its pending approvals denied and its approved, unused ones closed
    (`_close_approved`). Returns the ``agent.revoked`` event's data and the denied rows.
    """
    rules = conn.execute(select(permissions).where(permissions.c.agent == name)).all()
    conn.execute(delete(permissions).where(permissions.c.agent == name))
    shadow = conn.execute(delete(shadow_permissions).where(shadow_permissions.c.agent == name))
    live = (grants.c.agent == name) & grants.c.revoked_at.is_(None)
    held = [dict(r._mapping) for r in conn.execute(select(grants).where(live))]
    for grant in held:
        revoke_row(conn, grant, actor=actor, now=stamp, reason="agent removed")
    closed = _close_approved(conn, name, stamp)
    note = f"agent `{name}` removed"
    denied = deny_of_agent(conn, name, by=actor, note=note, now=stamp)
    gone = {
        "permissions_deleted": [
            {k: r._mapping[k] for k in ("connector", "action_pattern", "decision")} for r in rules
        ],
        "shadow_permissions_deleted": shadow.rowcount,
        "grants_revoked": [g["id"] for g in held],
        "approvals_denied": [r["id"] for r in denied],
        **closed,
    }
    return gone, denied


async def _status_endpoint(request: Request, status: str) -> JSONResponse:
    who = await require_role(request, "admin")
    await no_body(request)
    agent = _find(request)
    if agent.status == "revoked":  # for good; its name may belong to a new agent by now
        if status == "revoked":
            return json_ok(_agent_json(request, agent.id))
        raise ApiError(409, _removed(agent.name))
    state = state_of(request)
    try:
        denied = await _change(state, _set_status(agent, status, who.actor))
    except _RevokedAlready:
        await state.reload()  # by a request or replica this snapshot had not seen
        return json_ok(_agent_json(request, agent.id))
    await state.limiter.forget(agent.id)
    await publish_decided(state, denied)
    return json_ok(_agent_json(request, agent.id))


async def suspend_agent(request: Request) -> JSONResponse:
    return await _status_endpoint(request, "suspended")


async def activate_agent(request: Request) -> JSONResponse:
    return await _status_endpoint(request, "active")


async def revoke_agent(request: Request) -> JSONResponse:
    return await _status_endpoint(request, "revoked")


async def rotate_agent(request: Request) -> JSONResponse:
    who = await require_role(request, "admin")
    await no_body(request)
    agent = _find(request)
    if agent.status == "revoked":
        raise ApiError(409, _removed(agent.name))

    def job(conn: Connection) -> str:
        stamp = now()
        _hold(conn, agent)  # not revoked meanwhile: no key for a revoked agent
        conn.execute(
            update(api_keys)
            .where(api_keys.c.agent_id == agent.id, api_keys.c.revoked_at.is_(None))
            .values(revoked_at=stamp)
        )
        key, _ = _issue_key(conn, agent.id, agent.environment, "sdk")
        append_event(
            conn,
            "agent.key_rotated",
            actor=who.actor,
            now=stamp,
            agent=agent.name,
            subject=agent.id,
            data={"key_prefix": prefix_of(key)},
        )
        return key

    key = await _change(state_of(request), job)
    return json_ok({"agent": _agent_json(request, agent.id), "api_key": key})


async def ensure_agent(request: Request) -> JSONResponse:
    """Create the agent if new; either way answer a fresh proxy key for it (`tf run`)."""
    who = await require_role(request, "admin")
    body = await read_model(request, EnsureAgent)
    state = state_of(request)
    existing = state.snapshot.agents_by_name.get(body.name)
    if existing is not None and existing.status == "revoked":  # for good: registered anew
        raise ApiError(409, _removed(body.name))
    if existing is not None and existing.status != "active":
        raise ApiError(409, f"agent `{body.name}` is {existing.status}: activate it first")
    level = _level(body.enforcement_level, state.snapshot.settings["default_enforcement_level"])
    run_level = normalize_level(body.run_enforcement_level) if body.run_enforcement_level else None
    kind = RUN_KEY_KINDS[run_level] if run_level else "proxy"
    lease = body.lease_seconds

    def job(conn: Connection) -> tuple[str, str, int | None, float | None]:
        if existing is None:
            new = NewAgent(name=body.name, environment=body.environment, enforcement_level=level)
            agent_id, key = _insert_agent(conn, new, level, who.actor)
            if run_level is None and lease is None:  # (an earlier `tf run`: the SDK key)
                return agent_id, key, None, None
        else:
            _hold(conn, existing, active=True)  # not suspended or revoked meanwhile
            agent_id = existing.id
        environment = existing.environment if existing is not None else body.environment
        expires = None if lease is None else now() + lease
        key, key_id = _issue_key(conn, agent_id, environment, kind, expires)
        if run_level is not None:  # evidence that this run was not enforced as the agent is
            data = {"enforcement_level": run_level, "key_prefix": prefix_of(key), "key_id": key_id}
            append_event(conn, "agent.run_enforcement", actor=who.actor, now=now(),
                         agent=body.name, subject=agent_id, data=data)  # fmt: skip
        return agent_id, key, key_id, expires

    try:
        agent_id, key, key_id, expires = await _change(state, job)
    except IntegrityError:
        taken = ApiError(409, f"agent `{body.name}` was created concurrently: retry")
        raise await _refused(state, body.name, taken) from None
    agent = _agent_json(request, agent_id)
    run = {"enforcement_level": run_level or agent["enforcement_level"],
           "scope": "run" if run_level else "agent"}  # fmt: skip
    if lease is not None:  # the lease `tf run` renews and ends (never the key itself)
        run |= {"key_id": key_id, "expires_at": rfc3339(expires)}
    status = 201 if existing is None else 200
    return json_ok({"agent": agent, "api_key": key, "run": run}, status)


def _key_id(request: Request, agent: AgentRecord) -> int:
    """The `{key_id}` of the path (404 for one that names no key: not a number)."""
    text = request.path_params["key_id"]
    if not (text.isascii() and text.isdigit() and len(text) <= 10 and int(text) < 2**31):
        raise _no_run_key(text, agent)
    return int(text)


def _no_run_key(key_id: object, agent: AgentRecord) -> ApiError:
    return ApiError(404, f"agent `{visible(agent.name)}` has no run key `{visible(str(key_id))}`")


def _run_key(conn: Connection, agent: AgentRecord, key_id: int) -> Any:
    """The row of `agent`'s `tf run` key `key_id`: 404 for another agent's, an SDK key or
    none, read in the write's own transaction (the snapshot holds no key ids)."""
    row = conn.execute(select(api_keys).where(api_keys.c.id == key_id)).first()
    if row is None or row.agent_id != agent.id or row.kind not in _RUN_KINDS:
        raise _no_run_key(key_id, agent)
    return row


async def renew_run_key(request: Request) -> JSONResponse:
    """Renew a `tf run` key's lease: it expires `lease_seconds` from now (an expired key
    too: its run is alive; a revoked one never comes back)."""
    who = await require_role(request, "admin")
    body = await read_model(request, Lease)
    agent = _find(request)
    key_id = _key_id(request, agent)

    def job(conn: Connection) -> float:
        stamp = now()
        _hold(conn, agent)  # not revoked meanwhile: a removed agent's key stays revoked
        row = _run_key(conn, agent, key_id)
        expires = stamp + body.lease_seconds
        live = (api_keys.c.id == key_id) & api_keys.c.revoked_at.is_(None)
        if not conn.execute(update(api_keys).where(live).values(expires_at=expires)).rowcount:
            raise ApiError(409, f"run key `{key_id}` of agent `{visible(agent.name)}` was ended"
                           " (revoked): `tf run` asks for a new one")  # fmt: skip
        data = {"key_id": key_id, "key_prefix": row.prefix, "expires_at": rfc3339(expires)}
        append_event(conn, "agent.run_key_renewed", actor=who.actor, now=stamp,
                     agent=agent.name, subject=agent.id, data=data)  # fmt: skip
        return expires

    expires = await _change(state_of(request), job)
    return json_ok({"key_id": key_id, "expires_at": rfc3339(expires)})


async def end_run_key(request: Request) -> JSONResponse:
    """End a `tf run` key (revoked: refused from now on); ending it again changes nothing."""
    who = await require_role(request, "admin")
    await no_body(request)
    agent = _find(request)
    key_id = _key_id(request, agent)

    def job(conn: Connection) -> bool:
        stamp = now()
        row = _run_key(conn, agent, key_id)
        live = (api_keys.c.id == key_id) & api_keys.c.revoked_at.is_(None)
        if not conn.execute(update(api_keys).where(live).values(revoked_at=stamp)).rowcount:
            return False
        data = {"key_id": key_id, "key_prefix": row.prefix}
        append_event(conn, "agent.run_key_ended", actor=who.actor, now=stamp,
                     agent=agent.name, subject=agent.id, data=data)  # fmt: skip
        return True

    ended = await state_of(request).change_config(job)
    return json_ok({"key_id": key_id, "ended": ended})


def routes() -> list[BaseRoute]:
    p = "/api/v1/agents"
    return [
        Route(p, list_agents, methods=["GET"]),
        Route(p, create_agent, methods=["POST"]),
        Route(p + "/ensure", ensure_agent, methods=["POST"]),
        Route(p + "/{ident}", get_agent, methods=["GET"]),
        Route(p + "/{ident}", patch_agent, methods=["PATCH"]),
        Route(p + "/{ident}/suspend", suspend_agent, methods=["POST"]),
        Route(p + "/{ident}/activate", activate_agent, methods=["POST"]),
        Route(p + "/{ident}/revoke", revoke_agent, methods=["POST"]),
        Route(p + "/{ident}/rotate", rotate_agent, methods=["POST"]),
        Route(p + "/{ident}/run-keys/{key_id}/renew", renew_run_key, methods=["POST"]),
        Route(p + "/{ident}/run-keys/{key_id}", end_run_key, methods=["DELETE"]),
    ]
