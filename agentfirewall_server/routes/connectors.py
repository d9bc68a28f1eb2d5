"""Connectors: add (credential into the vault, write-only), list, change options, remove,
catalogue; and, for the gateway, a rotated OAuth2 refresh token stored in the vault and the
refresh lease a rotating grant is refreshed under (``refreshleases.py``)."""

from __future__ import annotations

import json
import re
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field
from sqlalchemy import Connection, delete, select, update
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from agentfirewall.connectors import (
    ConnectorRouter,
    RoutedConnector,
    connector_types,
    get_connector,
)
from agentfirewall.connectors.model import HttpRequest
from agentfirewall.credentials import COMPUTED_KINDS, parse_computed_credential
from agentfirewall.errors import ConnectorError, CredentialError
from agentfirewall_server import refreshleases, tokens
from agentfirewall_server.audit import append_event
from agentfirewall_server.auth import require_gateway, require_role, state_of
from agentfirewall_server.clock import now, rfc3339
from agentfirewall_server.store.schema import audit_events, connectors, credentials
from agentfirewall_server.web import ApiError, Strict, check_query, json_ok, no_body, read_model

__all__ = ["CONNECTOR_OPTIONS", "DOCUMENTED_TYPES", "check_url", "connector_json", "routes"]

#: Types the API accepts even before their parser module ships (docs/internals.md).
DOCUMENTED_TYPES = (
    "github",
    "openai",
    "anthropic",
    "stripe",
    "slack",
    "mcp",
    "webhook",
    "generic",
    "sendgrid",
    "aws",
)
#: Per type, the options a connector record may hold: defaults for missing parameters
#: when the server executes an action (SDK Mode A). Values are strings.
CONNECTOR_OPTIONS: dict[str, dict[str, str]] = {
    "sendgrid": {"from": "sender address for `email.send` when the action names none"},
}
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")
#: A header name (RFC 9110 `token`).
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
#: Headers a credential may not be carried in: they frame or route the request (a
#: credential there would change what is sent, or where), as `parameters.headers` of an
#: executed action may not name them either.
_NOT_CREDENTIAL_HEADERS = frozenset({
    "host", "content-length", "transfer-encoding", "content-type", "content-encoding",
    "connection", "keep-alive", "proxy-connection", "te", "trailer", "upgrade", "expect",
    "forwarded", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto",
    "x-forwarded-prefix", "x-host", "x-original-url", "x-rewrite-url", "x-original-method",
    "x-http-method-override", "x-http-method", "x-method-override",
})  # fmt: skip


class NewConnector(Strict):
    type: str = Field(min_length=1, max_length=40)
    token: str | None = Field(default=None, min_length=1, max_length=16384)
    domains: list[str] | None = Field(default=None, max_length=100)
    name: str | None = Field(default=None, min_length=1, max_length=200)
    base_url: str | None = Field(default=None, max_length=2048)
    #: `aws_sigv4`, `github_app`, `oauth2`: `token` is the credential's JSON document
    #: (agentfirewall.credentials.model), checked here and computed per request.
    auth_type: Literal["bearer", "token", "header", "aws_sigv4", "github_app", "oauth2"] | None = (
        None
    )
    auth_header: str | None = Field(default=None, max_length=200)
    options: dict[str, str] | None = Field(default=None, max_length=20)


class ConnectorChange(Strict):
    """`PATCH`: `options` is merged, a string sets a key, `null` removes it."""

    options: dict[str, str | None] = Field(max_length=20)


def connector_json(row: dict[str, Any], has_credential: bool) -> dict[str, Any]:
    return {
        "id": row["id"],
        "type": row["type"],
        "name": row["name"],
        "domains": list(row["domains"]),
        "base_url": row["base_url"],
        "auth_type": row["auth_type"],
        "auth_header": row["auth_header"],
        "has_credential": has_credential,
        "options": dict(row.get("options") or {}),
        "created_at": rfc3339(row["created_at"]),
    }


def _known_types() -> list[str]:
    return sorted(set(connector_types()) | set(DOCUMENTED_TYPES))


def _defaults(ctype: str) -> tuple[list[str], str]:
    try:
        connector = get_connector(ctype)
    except ConnectorError:
        return [], ctype
    return list(connector.default_domains), connector.description or ctype


def _validate(body: NewConnector) -> list[str]:
    if body.type not in _known_types():
        raise ApiError(
            422,
            f"unknown connector type `{body.type}`: expected one of {', '.join(_known_types())}",
            field="type",
        )
    domains = [d.strip().lower() for d in (body.domains or [])]
    for i, domain in enumerate(domains):
        _check_domain(domain, f"domains.{i}")
    base_host = None
    if body.base_url:
        base_host = check_url(
            body.base_url,
            "base_url",
            "which nothing sends, and every viewer would read: give it as the connector's"
            " `token`, sealed in the vault (`tf connector add --token` or `--token-env`)",
        )
    if not domains:  # (docs/connectors.md) the base_url's host, e.g. GitHub Enterprise's
        domains = [base_host] if base_host else _defaults(body.type)[0]
    if body.type == "generic" and not domains:
        raise ApiError(422, "a generic connector needs `domains`", field="domains")
    if body.auth_type == "header" and not body.auth_header:
        raise ApiError(422, "`auth_type` header needs `auth_header`", field="auth_header")
    if body.auth_header is not None:
        _check_auth_header(body.auth_header, body.auth_type)
    if body.auth_type in COMPUTED_KINDS:
        _validate_computed(body)
    elif body.token and any(c in body.token for c in "\r\n\0"):
        raise ApiError(422, "`token` must not contain line breaks", field="token")
    elif body.type == "aws" and body.token:
        raise ApiError(
            422, "an `aws` connector signs requests: give `auth_type` aws_sigv4", field="auth_type"
        )
    _validate_options(body.type, body.options or {})
    return domains


def check_url(url: str, field: str, credential_goes: str) -> str:
    """The host of `url`, an `http(s)://host[:port]` URL (a path allowed), as every URL of
    the API takes (docs/api.md, Input limits); 422 naming `field` otherwise.

    A parser decides, not a prefix: `http://[::1/` and port 99999 are refused. A user name
    or password before the host (`https://user:pw@host`, in any spelling the parser reads
    so) is refused first, and not repeated in the message: the URL would be stored and
    shown as given to every viewer, and nothing sends a URL's credential (requests are
    built from its host, port and path); `credential_goes` says where one goes.
    """
    if "@" in _authority(url):
        raise ApiError(
            422,
            f"`{field}` holds a credential (a user name or password before the host),"
            f" {credential_goes}",
            field=field,
        )
    try:
        return HttpRequest.from_url("GET", url).host.lower()
    except ConnectorError as exc:
        raise ApiError(422, f"invalid `{field}`: {exc}", field=field) from None


def _authority(url: str) -> str:
    """The `user:password@host:port` part of `url`, as the URL parser reads it (tabs and
    line breaks dropped); by hand when the parser gives up (`http://u:p@[::1/`)."""
    try:
        return urlsplit(url).netloc
    except ValueError:
        return re.split(r"[/?#]", url.partition("//")[2], maxsplit=1)[0]


def _check_domain(domain: str, field: str) -> None:
    """422 for a domain the connector router refuses (a port, a path, a label over 63
    characters, a wildcard IP): the gateways and the executor route by that router, and
    one connector it cannot read would leave every connector unrouted."""
    try:
        ConnectorRouter([RoutedConnector("new", "generic", (domain,))])
    except ConnectorError:
        raise ApiError(
            422,
            f"invalid domain `{domain}`: expected a host name (`api.example.com`), a"
            " `*.` wildcard (`*.example.com`) or an IP address, with no scheme, port or path",
            field=field,
        ) from None


def _check_auth_header(name: str, auth_type: str | None) -> None:
    """`auth_header`: a header name, used with `auth_type` header only, and none that
    frames or routes the request."""
    if auth_type != "header":
        raise ApiError(
            422,
            '`auth_header` is used only with `auth_type` header: add `"auth_type":'
            ' "header"` or leave `auth_header` out',
            field="auth_header",
        )
    if not _HEADER_NAME.match(name):
        raise ApiError(
            422, f"invalid `auth_header` `{name}`: not an HTTP header name", field="auth_header"
        )
    if name.lower() in _NOT_CREDENTIAL_HEADERS or name.lower().startswith("proxy-"):
        raise ApiError(
            422,
            f"`auth_header` `{name}` frames or routes the request: a credential cannot go"
            " there (use e.g. `X-Api-Key`)",
            field="auth_header",
        )


def _validate_computed(body: NewConnector) -> None:
    """A computed credential: its JSON document, checked without echoing a secret."""
    kind = str(body.auth_type)
    if not body.token:
        raise ApiError(422, f"`auth_type` {kind} needs its credential in `token`", field="token")
    if kind == "aws_sigv4" and body.type != "aws":
        raise ApiError(422, "`auth_type` aws_sigv4 is for an `aws` connector", field="auth_type")
    if kind != "aws_sigv4" and body.type == "aws":
        raise ApiError(422, "an `aws` connector takes `auth_type` aws_sigv4", field="auth_type")
    try:
        parse_computed_credential(body.token, kind)
    except CredentialError as exc:
        where = f"token.{exc.field}" if exc.field else "token"
        raise ApiError(422, f"invalid {kind} credential: {exc}", field=where) from None


def _validate_options(ctype: str, options: dict[str, str]) -> None:
    known = CONNECTOR_OPTIONS.get(ctype, {})
    for key, value in options.items():
        if key not in known:
            expected = ", ".join(f"`{k}`" for k in known) or "none"
            raise ApiError(
                422,
                f"unknown option `{key}` for a `{ctype}` connector: expected {expected}",
                field=f"options.{key}",
            )
        if not value or len(value) > 320 or any(c in value for c in "\r\n\0"):
            raise ApiError(
                422, f"option `{key}` must be 1-320 characters on one line", field=f"options.{key}"
            )
        if key == "from" and not _EMAIL.match(value):
            raise ApiError(
                422, f"option `from` must be an email address, not `{value}`", field="options.from"
            )


def _next_id(conn: Connection, ctype: str) -> str:
    """The new connector's id: one no connector ever had, not even one removed since.

    An id names one credential for good: the gateways and the executor cache the tokens of
    a computed credential under its connector's id (``build_injector``), and an OAuth2
    refresh-token grant is told apart by nothing else (another user's grant of the same
    client differs only in its refresh token, which the cache key leaves out so that a
    rotation keeps the token). Every id ever given is in the audit log
    (``connector.created``, append-only), ids given before this rule too.
    """
    taken = {r.id for r in conn.execute(select(connectors.c.id).where(connectors.c.type == ctype))}
    created = select(audit_events.c.subject).where(audit_events.c.event_type == "connector.created")
    taken |= {r.subject for r in conn.execute(created)}
    n = 1
    while f"conn_{ctype}_{n}" in taken:
        n += 1
    return f"conn_{ctype}_{n}"


async def list_connectors(request: Request) -> JSONResponse:
    check_query(request)
    await require_role(request, "viewer")
    snap = state_of(request).snapshot
    return json_ok(
        {"connectors": [connector_json(c, c["id"] in snap.credentials) for c in snap.connectors]}
    )


async def add_connector(request: Request) -> JSONResponse:
    who = await require_role(request, "admin")
    body = await read_model(request, NewConnector)
    domains = _validate(body)
    state = state_of(request)

    def job(conn: Connection) -> dict[str, Any]:
        stamp = now()
        cid = _next_id(conn, body.type)
        row = {
            "id": cid,
            "type": body.type,
            "name": body.name or cid,
            "domains": json.dumps(domains),
            "base_url": body.base_url,
            "auth_type": body.auth_type or "default",
            "auth_header": body.auth_header,
            "created_at": stamp,
            "options": json.dumps(body.options or {}),
        }
        conn.execute(connectors.insert().values(**row))
        if body.token:
            conn.execute(
                credentials.insert().values(
                    owner=cid,
                    ciphertext=state.vault.encrypt(body.token, owner=cid),
                    created_at=stamp,
                )
            )
        append_event(
            conn,
            "connector.created",
            actor=who.actor,
            now=stamp,
            subject=cid,
            data={"type": body.type, "domains": domains, "has_credential": bool(body.token)},
        )
        return {**row, "domains": domains, "options": body.options or {}}

    row = await state.change_config(job)
    return json_ok(connector_json(row, bool(body.token)), 201)


def _merge_options(
    ctype: str, current: dict[str, str], change: dict[str, str | None]
) -> dict[str, str]:
    """The connector's options after `change`; unknown keys and bad values are 422."""
    known = CONNECTOR_OPTIONS.get(ctype, {})
    removed = {k for k, v in change.items() if v is None}
    for key in removed - set(current) - set(known):
        _validate_options(ctype, {key: ""})  # an unknown key: refused as on a set
    sets = {k: v for k, v in change.items() if v is not None}
    _validate_options(ctype, sets)
    return {**{k: v for k, v in current.items() if k not in removed}, **sets}


async def change_connector(request: Request) -> JSONResponse:
    who = await require_role(request, "admin")
    cid = request.path_params["id"]
    body = await read_model(request, ConnectorChange)
    if not body.options:  # as an empty PATCH of an agent or the settings
        raise ApiError(
            422, "nothing to change: send at least one option (a string sets it, null removes it)",
            field="options",
        )  # fmt: skip
    state = state_of(request)
    found = next((c for c in state.snapshot.connectors if c["id"] == cid), None)
    if found is None:
        raise ApiError(404, f"no connector `{cid}`")
    _merge_options(found["type"], dict(found.get("options") or {}), body.options)

    def job(conn: Connection) -> bool:
        row = conn.execute(select(connectors).where(connectors.c.id == cid)).mappings().first()
        if row is None:
            return False
        merged = _merge_options(row["type"], json.loads(row["options"] or "{}"), body.options)
        conn.execute(
            update(connectors).where(connectors.c.id == cid).values(options=json.dumps(merged))
        )
        append_event(
            conn,
            "connector.updated",
            actor=who.actor,
            now=now(),
            subject=cid,
            data={
                "options_set": sorted(k for k, v in body.options.items() if v is not None),
                "options_removed": sorted(k for k, v in body.options.items() if v is None),
            },
        )
        return True

    await state.change_config(job)
    snap = state.snapshot
    changed = next((c for c in snap.connectors if c["id"] == cid), None)
    if changed is None:  # removed meanwhile
        raise ApiError(404, f"no connector `{cid}`")
    return json_ok(connector_json(changed, cid in snap.credentials))


async def remove_connector(request: Request) -> Response:
    who = await require_role(request, "admin")
    await no_body(request)
    cid = request.path_params["id"]
    state = state_of(request)

    def job(conn: Connection) -> None:
        # by its stored row: one this version cannot read (it denies everything) goes too
        if not conn.execute(delete(connectors).where(connectors.c.id == cid)).rowcount:
            raise ApiError(404, f"no connector `{cid}`")
        conn.execute(delete(credentials).where(credentials.c.owner == cid))
        refreshleases.end_leases(conn, cid)
        append_event(conn, "connector.deleted", actor=who.actor, now=now(), subject=cid)

    await state.change_config(job)
    return Response(status_code=204)


async def catalogue(request: Request) -> JSONResponse:
    check_query(request)
    await require_role(request, "viewer")
    out = []
    for ctype in connector_types():
        connector = get_connector(ctype)
        out.append(
            {
                "type": ctype,
                "description": connector.description,
                "domains": list(connector.default_domains),
                "options": CONNECTOR_OPTIONS.get(ctype, {}),
                "actions": [
                    {
                        "type": a.type,
                        "method": a.method,
                        "path": a.path,
                        "risk": a.risk,
                        "description": a.description,
                    }
                    for a in connector.actions()
                ],
            }
        )
    return json_ok({"connectors": out})


class RotatedRefreshToken(Strict):
    """What the token endpoint rotated, and the SHA-256 of the refresh token it replaces."""

    previous_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    refresh_token: str = Field(min_length=1, max_length=8192)
    #: the refresh lease it was refreshed under (storing it ends every lease on the
    #: connector; not stored when this one ended and another holder's lasts)
    lease: str | None = Field(default=None, min_length=1, max_length=40)


async def rotated_refresh_token(request: Request) -> JSONResponse:
    """A gateway's rotated OAuth2 refresh token, in the vault in place of the one it replaces.

    Compared before it is written: the vault must still hold the token whose SHA-256 the
    gateway names (409 otherwise: an admin's new grant or another gateway's rotation came
    first, and the newer one stays). The same token sent twice is a 200 that changes
    nothing. The configuration then carries it to every gateway. Audited
    `connector.credential_rotated`; the token is never echoed or logged.
    """
    gateway = await require_gateway(request)
    cid = request.path_params["id"]
    body = await read_model(request, RotatedRefreshToken)
    state, lease = state_of(request), body.lease
    changed = await tokens.store_refresh_token(
        state, cid, body.previous_sha256, body.refresh_token, actor=gateway.actor, lease=lease
    )
    return json_ok({"connector": cid, "stored": changed})


class LeaseRequest(Strict):
    """Who asks: the same holder asking again keeps its lease."""

    holder: str = Field(min_length=1, max_length=200)


async def take_refresh_lease(request: Request) -> JSONResponse:
    """A gateway's lease to refresh a connector's rotating OAuth2 grant, one at a time.

    Granted: the lease id, the refresh token the vault holds now (the one to refresh with)
    and the seconds it lasts; storing the rotation (``refresh-token``) or releasing it ends
    it. 409 ``refresh_in_progress`` with ``Retry-After`` while another holder's lasts; 409
    ``field: grant`` when the credential is no refresh-token grant; 404 without a
    credential. Not audited (the rotation is); the token is in this answer only.
    """
    await require_gateway(request)
    cid = request.path_params["id"]
    body = await read_model(request, LeaseRequest)
    state = state_of(request)
    ttl = state.settings.refresh_lease_seconds

    def job(conn: Connection) -> tuple[str, str, float]:
        return refreshleases.acquire(conn, cid, body.holder, now(), ttl, state.vault)

    lease, refresh_token, expires_in = await state.db.write(job)
    return json_ok(
        {"connector": cid, "lease": lease, "refresh_token": refresh_token, "expires_in": expires_in}
    )


async def release_refresh_lease(request: Request) -> JSONResponse:
    """End a gateway's refresh lease without a rotation (idempotent: `released` false when
    it had ended already)."""
    await require_gateway(request)
    await no_body(request)
    cid = request.path_params["id"]
    lease = request.path_params["lease"]
    released = len(lease) <= 40 and await state_of(request).db.write(
        lambda conn: refreshleases.release(conn, cid, lease)
    )
    return json_ok({"connector": cid, "released": released})


def routes() -> list[BaseRoute]:
    p = "/api/v1/connectors"
    g = "/api/v1/gateway/connectors/{id}"
    return [
        Route(p, list_connectors, methods=["GET"]),
        Route(p, add_connector, methods=["POST"]),
        Route(p + "/catalogue", catalogue, methods=["GET"]),
        Route(p + "/{id}", change_connector, methods=["PATCH"]),
        Route(p + "/{id}", remove_connector, methods=["DELETE"]),
        Route(g + "/refresh-token", rotated_refresh_token, methods=["POST"]),
        Route(g + "/refresh-lease", take_refresh_lease, methods=["POST"]),
        Route(g + "/refresh-lease/{lease}", release_refresh_lease, methods=["DELETE"]),
    ]
