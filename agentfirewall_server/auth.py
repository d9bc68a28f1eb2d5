"""Who is calling, and may they? Agent keys, admin tokens, gateway tokens, sessions, RBAC.

Roles form a strict hierarchy (tameflare-facts.md section 5.8)::

    owner 4 > admin 3 > member 2 > viewer 1

A caller below the endpoint's role gets 403 with ``required_role`` and ``your_role``.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from sqlalchemy import Connection, select
from starlette.requests import Request

from agentfirewall_server.bootstrap import BOOTSTRAP_TOKEN_NAMES
from agentfirewall_server.clock import now
from agentfirewall_server.identity import hash_secret, same_hash
from agentfirewall_server.roles import ROLES
from agentfirewall_server.snapshot import AgentRecord
from agentfirewall_server.state import AppState
from agentfirewall_server.store.schema import sessions, users
from agentfirewall_server.web import ApiError, header, repeated_header

__all__ = [
    "ROLES",
    "SESSION_COOKIE",
    "Principal",
    "key_holder",
    "require_agent",
    "require_gateway",
    "require_metrics_reader",
    "require_role",
    "state_of",
    "still_has_role",
]

SESSION_COOKIE = "tf_session"
_SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


@dataclass(frozen=True, slots=True)
class Principal:
    kind: Literal["agent", "admin", "gateway", "session"]
    actor: str
    role: str | None = None
    user_id: str | None = None
    agent: AgentRecord | None = None
    #: an admin token's row (``tokens.token_hash``): what a grant made with it is bound to
    token_id: str | None = field(default=None, repr=False)


def state_of(request: Request) -> AppState:
    state: AppState = request.app.state.af
    return state


def _bearer(request: Request) -> str | None:
    """The bearer credential; 401 for two ``Authorization`` headers (RFC 9110 allows one:
    a proxy in front that reads the last must not see another caller than this reads)."""
    sent = header(request, b"authorization")
    if sent is None:
        return None
    if repeated_header(request, b"authorization"):
        raise _unauthorized("send one `Authorization` header, not several")
    scheme, _, value = sent.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, message, headers={"WWW-Authenticate": "Bearer"})


#: Each agent record's principal (a record is immutable; a new snapshot makes new ones):
#: one object per agent, not one per request. Keyed by the record's id, holding the record
#: (so the id is not reused while its entry lives); bounded.
_AGENT_PRINCIPALS: dict[int, tuple[AgentRecord, Principal]] = {}
_MAX_AGENT_PRINCIPALS = 4096


def _agent_principal(state: AppState, key: str) -> Principal:
    agent = state.agent_for_key(key)
    if agent is None:
        raise _unauthorized("invalid API key: check AAF_API_KEY")
    if agent.status != "active":
        raise _unauthorized(f"agent `{agent.name}` is {agent.status}: its key is not accepted")
    held = _AGENT_PRINCIPALS.get(id(agent))
    if held is not None and held[0] is agent:
        return held[1]
    if len(_AGENT_PRINCIPALS) >= _MAX_AGENT_PRINCIPALS:
        _AGENT_PRINCIPALS.clear()
    principal = Principal("agent", agent.name, agent=agent)
    _AGENT_PRINCIPALS[id(agent)] = (agent, principal)
    return principal


def key_holder(request: Request, state: AppState) -> AgentRecord | None:
    """`require_agent`'s answer for a request with an agent key (``aaf_...``), without a
    coroutine (the hot path); None for any other request, which `require_agent` answers."""
    if "af.principal" in request.scope:
        return None
    secret = _bearer(request)
    if secret is None or not secret.startswith("aaf_"):
        return None
    principal = _agent_principal(state, secret)
    request.scope["af.principal"] = principal
    return principal.agent


def _token_principal(state: AppState, token: str) -> Principal:
    digest = hash_secret(token)
    row = state.snapshot.token_index.get(digest)
    if row is None or not same_hash(row["token_hash"], digest):
        raise _unauthorized(
            "invalid token: neither an admin or gateway token nor an agent's API key "
            "(those start with `aaf_`: check AAF_API_KEY)"
        )
    if row["kind"] == "gateway":
        return Principal("gateway", "gateway")
    if row["kind"] != "admin":  # "revoked" (DELETE /api/v1/tokens/{prefix}), or unknown
        raise _unauthorized("this token was revoked")
    role, token_id = row["role"] or "viewer", row["token_hash"]
    if row["user_id"]:
        return Principal("admin", f"token:{row['name']}", role=role, user_id=row["user_id"],
                         token_id=token_id)  # fmt: skip
    if row["name"] == BOOTSTRAP_TOKEN_NAMES["admin"]:
        return Principal("admin", "admin-token", role=role, token_id=token_id)
    # minted with the bootstrap token: no user, its own name in the audit log
    return Principal("admin", f"token:{row['name']}", role=role, token_id=token_id)


_SessionRow = tuple[str, str, str, str]


def _lookup_session(digest: str) -> Callable[[Connection], _SessionRow | None]:
    def run(conn: Connection) -> _SessionRow | None:
        row = conn.execute(
            select(
                sessions.c.csrf_token,
                sessions.c.expires_at,
                users.c.id,
                users.c.email,
                users.c.role,
            )
            .join(users, users.c.id == sessions.c.user_id)
            .where(sessions.c.id_hash == digest)
        ).first()
        if row is None or row.expires_at < now():
            return None
        return (row.csrf_token, row.id, row.email, row.role)

    return run


async def authenticate(request: Request, *, writes: bool = False) -> Principal:
    """The caller, or 401. `writes`: the request changes state whatever its method (see
    :func:`require_role`)."""
    cached = request.scope.get("af.principal")
    if isinstance(cached, Principal) and not writes:
        return cached
    state = state_of(request)
    secret = _bearer(request)
    if secret is not None:
        if secret.startswith("aaf_"):
            principal = _agent_principal(state, secret)
        else:
            principal = _token_principal(state, secret)
    else:
        principal = await _session_principal(request, state, writes)
    request.scope["af.principal"] = principal
    return principal


async def _session_principal(request: Request, state: AppState, writes: bool) -> Principal:
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        raise _unauthorized("authentication required: send `Authorization: Bearer <key>`")
    found = await state.db.read(_lookup_session(hash_secret(cookie)))
    if found is None:
        raise _unauthorized("session expired or unknown: log in again")
    csrf, user_id, email, role = found
    if writes or request.method not in _SAFE_METHODS:
        sent = request.headers.get("x-csrf-token", "")
        if not hmac.compare_digest(sent.encode(), str(csrf).encode()):
            message = "missing or wrong `X-CSRF-Token` header"
            if request.method in _SAFE_METHODS:  # (a link on another site, a typed URL)
                message += (": this GET records what it does, so a signed-in browser sends it"
                            " too (the dashboard does); a script sends a token")  # fmt: skip
            raise ApiError(403, message, code="csrf_failed")
    return Principal("session", str(email), role=str(role), user_id=str(user_id))


def forbidden(required: str, yours: str, message: str | None = None) -> ApiError:
    return ApiError(
        403,
        message or f"this needs the {required} role; you are {yours}",
        required_role=required,
        your_role=yours,
    )


async def require_role(request: Request, role: str, *, writes: bool = False) -> Principal:
    """An admin-token or session caller with at least `role`; 401/403 otherwise. `writes`:
    a GET that changes state (the audit export records an event and signs a checkpoint),
    which a session caller must send `X-CSRF-Token` for, as for any write: a link on
    another site makes a signed-in browser send the GET with its cookie (SameSite=Lax)."""
    principal = await authenticate(request, writes=writes)
    if principal.kind in ("agent", "gateway"):
        raise forbidden(
            role,
            principal.kind,
            f"an {principal.kind} key cannot call the admin API"
            if principal.kind == "agent"
            else "the gateway token cannot call the admin API",
        )
    mine = principal.role or "viewer"
    if ROLES.get(mine, 0) < ROLES[role]:
        raise forbidden(role, mine)
    return principal


async def still_has_role(request: Request, role: str) -> bool:
    """Whether the caller of a long request (an event stream) still holds `role`: its
    credential is looked up again, not taken from the request's first check."""
    request.scope.pop("af.principal", None)
    try:
        await require_role(request, role)
    except ApiError:
        return False
    return True


def metrics_public(state: AppState) -> bool:
    """Whether /metrics answers without a credential: the admin's setting, else the flag."""
    chosen = state.snapshot.settings.get("metrics_public")
    return bool(state.settings.metrics_public if chosen is None else chosen)


async def require_metrics_reader(request: Request) -> None:
    """/metrics: public if so set, else the metrics token or a viewer-or-better caller."""
    state = state_of(request)
    if metrics_public(state):
        return
    token = state.settings.metrics_token
    sent = _bearer(request)
    expected = hash_secret(token.get_secret_value()) if token is not None else None
    if expected is not None and sent is not None and same_hash(expected, hash_secret(sent)):
        return
    if sent is None and not request.cookies.get(SESSION_COOKIE):
        raise _unauthorized(
            "/metrics needs a credential: `Authorization: Bearer <metrics token>` "
            "(AGENTFIREWALL_METRICS_TOKEN) or a viewer token"
        )
    await require_role(request, "viewer")


async def require_agent(request: Request) -> AgentRecord:
    principal = await authenticate(request)
    if principal.agent is None:
        raise _unauthorized("this endpoint needs an agent key (`aaf_live_...` or `aaf_test_...`)")
    return principal.agent


async def require_gateway(request: Request) -> Principal:
    principal = await authenticate(request)
    if principal.kind != "gateway":
        raise forbidden(
            "gateway",
            principal.role or principal.kind,
            "this endpoint needs the gateway token (`tfg_...`)",
        )
    return principal
