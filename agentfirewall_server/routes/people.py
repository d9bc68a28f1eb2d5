"""People: first-run setup, login/logout, sessions, users and roles, admin API tokens."""

from __future__ import annotations

import hmac
import secrets
from typing import Any, Literal

from pydantic import Field, field_validator
from sqlalchemy import Connection, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from agentfirewall_server.audit import append_event
from agentfirewall_server.auth import SESSION_COOKIE, authenticate, require_role, state_of
from agentfirewall_server.bootstrap import (
    BOOTSTRAP_TOKEN_NAMES,
    SETUP_TOKEN_FILE,
    new_token,
    read_secret_file,
)
from agentfirewall_server.clock import new_id, now, rfc3339
from agentfirewall_server.grants import revoke_lapsed, revoke_made_with
from agentfirewall_server.hub import CREDENTIALS_ENDED
from agentfirewall_server.identity import (
    dummy_verify,
    hash_password,
    hash_secret,
    new_session_token,
    prefix_of,
    verify_password,
)
from agentfirewall_server.signin import SigninThrottle, record_failure, retry_after, throttled
from agentfirewall_server.state import AppState
from agentfirewall_server.store.schema import sessions, tokens, users
from agentfirewall_server.web import ApiError, Strict, check_query, json_ok, no_body, read_model

__all__ = ["routes"]

SESSION_SECONDS = 12 * 3600
_Role = Literal["owner", "admin", "member", "viewer"]
_EMAIL = Field(min_length=3, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")
_PASSWORD = Field(min_length=8, max_length=1024)


class Login(Strict):
    email: str = Field(min_length=1, max_length=320)
    password: str = Field(min_length=1, max_length=1024)


class Setup(Strict):
    setup_token: str = Field(min_length=1, max_length=200)
    email: str = _EMAIL
    password: str = _PASSWORD


class NewUser(Strict):
    email: str = _EMAIL
    password: str = _PASSWORD
    role: _Role = "viewer"


class UserPatch(Strict):
    role: _Role | None = None
    password: str | None = Field(default=None, min_length=8, max_length=1024)


class NewToken(Strict):
    name: str = Field(default="api token", min_length=1, max_length=200)

    @field_validator("name")
    @classmethod
    def _not_a_bootstrap_name(cls, name: str) -> str:
        if name.strip().casefold() in {n.casefold() for n in BOOTSTRAP_TOKEN_NAMES.values()}:
            raise ValueError("that name is the bootstrap tokens'; choose another")
        return name


def user_json(row: Any) -> dict[str, Any]:
    m = dict(row._mapping) if hasattr(row, "_mapping") else dict(row)
    return {
        "id": m["id"],
        "email": m["email"],
        "role": m["role"],
        "created_at": rfc3339(m["created_at"]),
    }


def _start_session(conn: Connection, user_id: str) -> tuple[str, str]:
    token, csrf, stamp = new_session_token(), secrets.token_urlsafe(24), now()
    conn.execute(
        sessions.insert().values(
            id_hash=hash_secret(token),
            user_id=user_id,
            csrf_token=csrf,
            created_at=stamp,
            expires_at=stamp + SESSION_SECONDS,
        )
    )
    return token, csrf


def _secure(request: Request) -> bool:
    """The cookie is `Secure` when the request or the public URL is https."""
    public = state_of(request).settings.base_url
    return request.url.scheme == "https" or public.lower().startswith("https://")


def _with_cookie(request: Request, body: dict[str, Any], token: str) -> JSONResponse:
    response = json_ok(body)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=SESSION_SECONDS,
        httponly=True,
        samesite="lax",
        secure=_secure(request),
        path="/",
    )
    return response


def _json_only(request: Request) -> None:
    """Sign-in and setup need no credential, so no CSRF token guards them: a page on
    another site could post a form (``text/plain`` spelling JSON) that signs the browser in
    to the attacker's account (login CSRF). A form cannot send ``application/json``, and a
    script sending it across sites needs a CORS preflight this server never answers."""
    media = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if media != "application/json":
        raise ApiError(415, "send the body as JSON: `Content-Type: application/json`",
                       code="unsupported_media_type")  # fmt: skip


async def setup(request: Request) -> JSONResponse:
    _json_only(request)
    body = await read_model(request, Setup)
    state = state_of(request)
    path = state.settings.data_dir / SETUP_TOKEN_FILE
    expected = read_secret_file(path)
    if not expected or not hmac.compare_digest(expected.encode(), body.setup_token.encode()):
        raise ApiError(
            403,
            "setup token is wrong or was already used",
            code="forbidden",
            required_role="setup",
            your_role="none",
        )

    def job(conn: Connection) -> tuple[dict[str, Any], str, str]:
        owners = select(func.count()).select_from(users).where(users.c.role == "owner")
        if conn.execute(owners).scalar_one():
            raise ApiError(409, "an owner already exists: log in instead")
        taken = select(users.c.id).where(users.c.email == body.email.lower())
        if conn.execute(taken).first() is not None:  # made with the admin token meanwhile
            raise ApiError(
                409, f"a user `{body.email.lower()}` exists: choose another email for the owner",
                field="email",
            )  # fmt: skip
        row: dict[str, Any] = {
            "id": new_id("usr_"),
            "email": body.email.lower(),
            "role": "owner",
            "password_hash": hash_password(body.password),
            "created_at": now(),
        }
        conn.execute(users.insert().values(**row))
        append_event(
            conn,
            "user.created",
            actor=row["email"],
            now=now(),
            subject=row["id"],
            data={"role": "owner", "via": "setup"},
        )
        return row, *_start_session(conn, row["id"])

    row, token, csrf = await state.db.write(job)
    path.unlink(missing_ok=True)
    return _with_cookie(request, {"user": user_json(row), "csrf_token": csrf}, token)


def _throttle(request: Request) -> SigninThrottle:
    found = getattr(request.app.state, "signin", None)
    if not isinstance(found, SigninThrottle):
        found = request.app.state.signin = SigninThrottle()
    return found


async def login(request: Request) -> JSONResponse:
    _json_only(request)
    body = await read_model(request, Login)
    state = state_of(request)
    email = body.email.lower()[:200]
    address = request.client.host if request.client else "unknown"
    with _throttle(request).one_at_a_time(email, address):
        return await _login(request, state, body, email, address)


async def _login(
    request: Request, state: AppState, body: Login, email: str, address: str
) -> JSONResponse:
    free, cap = state.settings.login_free_failures, state.settings.login_max_delay_seconds
    wait = await state.db.read(retry_after(email, address, now(), free, cap))
    if wait is not None:
        raise throttled(wait)
    row = await state.db.read(
        lambda c: c.execute(select(users).where(users.c.email == body.email.lower())).first()
    )
    if row is None:
        dummy_verify(body.password)
    if row is None or not verify_password(row.password_hash, body.password):
        await state.db.write(record_failure(email, address, now()))
        raise ApiError(401, "wrong email or password")

    def job(conn: Connection) -> tuple[str, str]:
        append_event(conn, "user.login", actor=row.email, now=now(), subject=row.id)
        return _start_session(conn, row.id)

    token, csrf = await state.db.write(job)
    return _with_cookie(request, {"user": user_json(row), "csrf_token": csrf}, token)


async def logout(request: Request) -> Response:
    who = await authenticate(request)
    await no_body(request)
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        digest = hash_secret(cookie)

        def job(conn: Connection) -> None:
            conn.execute(delete(sessions).where(sessions.c.id_hash == digest))
            append_event(conn, "user.logout", actor=who.actor, now=now(), subject=who.user_id)

        state = state_of(request)
        await state.db.write(job)
        state.hub.publish(CREDENTIALS_ENDED, None, relay=False)  # its open streams end
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


async def me(request: Request) -> JSONResponse:
    check_query(request)
    who = await require_role(request, "viewer")
    csrf = None
    user: dict[str, Any] = {"id": who.user_id, "email": who.actor, "role": who.role}
    if who.user_id:
        uid = who.user_id
        row = await state_of(request).db.read(
            lambda c: c.execute(select(users).where(users.c.id == uid)).first()
        )
        if row is not None:
            user = user_json(row)
    if who.kind == "session":
        digest = hash_secret(request.cookies.get(SESSION_COOKIE, ""))
        csrf = await state_of(request).db.read(
            lambda c: c.execute(
                select(sessions.c.csrf_token).where(sessions.c.id_hash == digest)
            ).scalar()
        )
    return json_ok({"user": user, "csrf_token": csrf})


async def list_users(request: Request) -> JSONResponse:
    check_query(request)
    await require_role(request, "owner")
    rows = await state_of(request).db.read(
        lambda c: c.execute(select(users).order_by(users.c.created_at)).all()
    )
    return json_ok({"users": [user_json(r) for r in rows]})


async def create_user(request: Request) -> JSONResponse:
    who = await require_role(request, "owner")
    body = await read_model(request, NewUser)
    row: dict[str, Any] = {
        "id": new_id("usr_"),
        "email": body.email.lower(),
        "role": body.role,
        "password_hash": hash_password(body.password),
        "created_at": now(),
    }

    def job(conn: Connection) -> None:
        conn.execute(users.insert().values(**row))
        append_event(
            conn,
            "user.created",
            actor=who.actor,
            now=now(),
            subject=row["id"],
            data={"role": body.role, "email": row["email"]},
        )

    try:
        await state_of(request).db.write(job)
    except IntegrityError:
        raise ApiError(409, f"a user `{row['email']}` already exists", field="email") from None
    return json_ok(user_json(row), 201)


async def patch_user(request: Request) -> JSONResponse:
    who = await require_role(request, "owner")
    uid = request.path_params["id"]
    body = await read_model(request, UserPatch)
    values: dict[str, Any] = {}
    if body.role:
        values["role"] = body.role
    if body.password:
        values["password_hash"] = hash_password(body.password)
    if not values:
        raise ApiError(422, "nothing to change: send `role` or `password`")

    def job(conn: Connection) -> Any:
        row = conn.execute(select(users).where(users.c.id == uid)).first()
        if row is None:
            raise ApiError(404, f"no user `{uid}`")
        if row.role == "owner" and body.role and body.role != "owner":
            owners = conn.execute(
                select(func.count()).select_from(users).where(users.c.role == "owner")
            ).scalar_one()
            if owners <= 1:
                raise ApiError(409, "the last owner cannot be demoted: promote another first")
        conn.execute(update(users).where(users.c.id == uid).values(**values))
        stamp = now()
        ended = _end_sessions(conn, uid)
        revoked = revoke_lapsed(conn, user_id=uid, actor=who.actor, now=stamp)
        append_event(
            conn,
            "user.updated",
            actor=who.actor,
            now=stamp,
            subject=uid,
            data={
                "role": body.role,
                "password_changed": bool(body.password),
                **ended,
                **_listed("grants_revoked", revoked),
            },
        )
        return conn.execute(select(users).where(users.c.id == uid)).first()

    row = await state_of(request).change_config(job)
    return json_ok(user_json(row))


def _end_sessions(conn: Connection, uid: str) -> dict[str, int]:
    """A password reset, role change or removal ends the user's sessions and tokens (and,
    written after it in the same transaction, `revoke_lapsed` ends the grants that no
    longer stand: made with a role above the new one, by the removed user, or with one of
    the tokens ended here, each bound to its token's row)."""
    gone_sessions = conn.execute(delete(sessions).where(sessions.c.user_id == uid)).rowcount
    gone_tokens = conn.execute(delete(tokens).where(tokens.c.user_id == uid)).rowcount
    return {"sessions_ended": int(gone_sessions or 0), "tokens_revoked": int(gone_tokens or 0)}


def _listed(key: str, ids: list[str]) -> dict[str, list[str]]:
    """`ids` under `key` in an audit event's data, when there are any."""
    return {key: ids} if ids else {}


async def remove_user(request: Request) -> Response:
    """Remove a user: their sessions, API tokens and grants end at once."""
    who = await require_role(request, "owner")
    await no_body(request)
    uid = request.path_params["id"]

    def job(conn: Connection) -> None:
        row = conn.execute(select(users).where(users.c.id == uid)).first()
        if row is None:
            raise ApiError(404, f"no user `{uid}`")
        if row.role == "owner":
            owners = conn.execute(
                select(func.count()).select_from(users).where(users.c.role == "owner")
            ).scalar_one()
            if owners <= 1:
                raise ApiError(409, "the last owner cannot be removed: promote another first")
        stamp = now()
        ended = _end_sessions(conn, uid)
        conn.execute(delete(users).where(users.c.id == uid))
        revoked = revoke_lapsed(conn, user_id=uid, actor=who.actor, now=stamp)
        append_event(
            conn,
            "user.removed",
            actor=who.actor,
            now=stamp,
            subject=uid,
            data={"email": row.email, **ended, **_listed("grants_revoked", revoked)},
        )

    await state_of(request).change_config(job)
    return Response(status_code=204)


async def create_token(request: Request) -> JSONResponse:
    who = await require_role(request, "owner")
    body = await read_model(request, NewToken, allow_empty=True)
    token = new_token("tfa_")

    def job(conn: Connection) -> None:
        conn.execute(
            tokens.insert().values(
                token_hash=hash_secret(token),
                prefix=prefix_of(token),
                kind="admin",
                user_id=who.user_id,
                role=who.role,
                name=body.name,
                created_at=now(),
            )
        )
        append_event(
            conn,
            "token.created",
            actor=who.actor,
            now=now(),
            subject=prefix_of(token),
            data={"name": body.name},
        )

    await state_of(request).change_config(job)
    return json_ok({"token": token, "prefix": prefix_of(token), "role": who.role}, 201)


def _token_json(row: Any) -> dict[str, Any]:
    m = row._mapping
    return {"prefix": m["prefix"], "kind": m["kind"], "name": m["name"], "role": m["role"],
            "user_id": m["user_id"], "created_at": rfc3339(m["created_at"])}  # fmt: skip


async def list_tokens(request: Request) -> JSONResponse:
    """The API tokens by prefix (never a hash): bootstrap, users' and revoked ones."""
    check_query(request)
    await require_role(request, "owner")
    rows = await state_of(request).db.read(
        lambda c: c.execute(select(tokens).order_by(tokens.c.created_at)).all()
    )
    return json_ok({"tokens": [_token_json(r) for r in rows]})


async def revoke_token(request: Request) -> Response:
    """Revoke the admin or gateway token with this prefix, the bootstrap ones included,
    and exactly the grants made with it (not those of another token of its name or user).

    The row stays as ``kind: revoked``, so a restart does not register a revoked bootstrap
    token again: set a new ``AGENTFIREWALL_ADMIN_TOKEN`` (or delete ``admin.token``)."""
    who = await require_role(request, "owner")
    await no_body(request)
    prefix = request.path_params["prefix"]

    def job(conn: Connection) -> None:
        live = tokens.c.kind.in_(("admin", "gateway"))
        found = conn.execute(select(tokens).where(tokens.c.prefix == prefix, live)).all()
        if not found:
            raise ApiError(404, f"no live token with the prefix `{prefix}`")
        if len(found) > 1:
            raise ApiError(409, f"{len(found)} tokens have the prefix `{prefix}`: revoke "
                           "them by removing their user, or ask for support")  # fmt: skip
        conn.execute(
            update(tokens)
            .where(tokens.c.token_hash == found[0].token_hash)
            .values(kind="revoked", role=None)
        )
        stamp = now()
        revoked = revoke_made_with(conn, found[0].token_hash, actor=who.actor, now=stamp)
        append_event(conn, "token.revoked", actor=who.actor, now=stamp, subject=prefix,
                     data={"kind": found[0].kind, "name": found[0].name,
                           **_listed("grants_revoked", revoked)})  # fmt: skip

    await state_of(request).change_config(job)
    return Response(status_code=204)


def routes() -> list[BaseRoute]:
    p = "/api/v1"
    return [
        Route(p + "/auth/setup", setup, methods=["POST"]),
        Route(p + "/auth/login", login, methods=["POST"]),
        Route(p + "/auth/logout", logout, methods=["POST"]),
        Route(p + "/auth/me", me, methods=["GET"]),
        Route(p + "/users", list_users, methods=["GET"]),
        Route(p + "/users", create_user, methods=["POST"]),
        Route(p + "/users/{id}", patch_user, methods=["PATCH"]),
        Route(p + "/users/{id}", remove_user, methods=["DELETE"]),
        Route(p + "/tokens", create_token, methods=["POST"]),
        Route(p + "/tokens", list_tokens, methods=["GET"]),
        Route(p + "/tokens/{prefix}", revoke_token, methods=["DELETE"]),
    ]
