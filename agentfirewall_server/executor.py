"""SDK Mode A: build the upstream request for an action and perform it.

``plan`` picks the configured connector for the action's provider, builds the request from
the connector's route table (the connector record's ``options`` fill in parameters the
action leaves out, e.g. sendgrid's ``from``), injects the vaulted credential and, for
targets the action itself names (webhook, generic), refuses private, loopback, link-local
and other non-global addresses unless ``webhook_allow_hosts`` permits them (SSRF). Every address the
host resolves to is checked and the connection is pinned to a checked address (no DNS
rebinding). ``send`` performs it with httpx: timeouts, no redirects followed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
from dataclasses import dataclass
from typing import Any

import httpx

from agentfirewall.actions import ActionSpec
from agentfirewall.connectors import HttpRequest, get_connector
from agentfirewall.errors import ActionSpecError, ConnectorError
from agentfirewall_server.state import AppState
from agentfirewall_server.web import ApiError

__all__ = ["Planned", "check_target", "execute", "plan", "send"]

_USER_TARGETED = ("webhook", "generic")
_MAX_BODY = 1024 * 1024
_DROP_HEADERS = {"set-cookie", "authorization", "proxy-authorization", "www-authenticate"}
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class Planned:
    connector: str
    method: str
    url: str
    headers: list[tuple[str, str]]
    body: bytes
    host: str
    sni: str | None = None


def _not_executable(message: str) -> ApiError:
    return ApiError(422, message, code="not_executable")


def _webhook_request(spec: ActionSpec) -> HttpRequest:
    """The seed's webhook shape: target URL, parameters.method/headers/body."""
    params = spec.parameters
    method = str(params.get("method") or spec.type.rsplit(".", 1)[-1]).upper()
    headers_in = params.get("headers") or {}
    if not isinstance(headers_in, dict):
        raise _not_executable("`parameters.headers` must be an object of strings")
    headers = tuple((str(k), str(v)) for k, v in headers_in.items())
    body = params.get("body")
    raw = (
        b""
        if body is None
        else (body.encode() if isinstance(body, str) else json.dumps(body).encode())
    )
    if body is not None and not isinstance(body, str):
        headers = (*headers, ("content-type", "application/json"))
    if not spec.resource.target:
        raise _not_executable("a webhook action needs `resource.target` (the URL to call)")
    return HttpRequest.from_url(method, spec.resource.target, headers=headers, body=raw)


def _connector_row(state: AppState, ctype: str, host: str | None) -> dict[str, Any] | None:
    rows = [c for c in state.snapshot.connectors if c["type"] == ctype]
    if host is not None:
        for row in rows:
            if host.lower() in [d.lower() for d in row["domains"]]:
                return row
    return rows[0] if rows else None


def _auth_headers(
    row: dict[str, Any], credential: str, default: list[tuple[str, str]]
) -> list[tuple[str, str]]:
    kind = row.get("auth_type") or "default"
    if kind == "bearer":
        return [("Authorization", f"Bearer {credential}")]
    if kind == "token":
        return [("Authorization", f"token {credential}")]
    if kind == "header" and row.get("auth_header"):
        return [(str(row["auth_header"]), credential)]
    return default


def _build(state: AppState, spec: ActionSpec) -> tuple[str, HttpRequest, dict[str, Any] | None]:
    ctype = spec.provider
    if ctype == "webhook" or spec.type.startswith("webhook."):
        req = _webhook_request(spec)
        return "webhook", req, _connector_row(state, "webhook", req.host)
    try:
        connector = get_connector(ctype)
    except ConnectorError:
        known = ", ".join(sorted(state.snapshot.connector_types())) or "none"
        raise _not_executable(
            f"no connector can execute `{spec.type}` (provider `{ctype}`): "
            f"configured connectors: {known}"
        ) from None
    row = _connector_row(state, ctype, None)
    if row is None:
        raise _not_executable(
            f"no `{ctype}` connector is configured: add one with "
            f"`tf connector add {ctype} --token ...`"
        )
    options = row.get("options") or {}
    missing = {k: v for k, v in options.items() if k not in spec.parameters}
    if missing:  # connector options are defaults for parameters the action leaves out
        spec = spec.model_copy(update={"parameters": {**spec.parameters, **missing}})
    try:
        req = connector.build_request(spec, base_url=row.get("base_url"))
    except (ConnectorError, ActionSpecError) as exc:
        raise _not_executable(
            f"`{spec.type}` cannot be executed by the `{ctype}` connector: {exc}"
        ) from None
    return ctype, req, row


def _credential_headers(
    state: AppState, ctype: str, req: HttpRequest, row: dict[str, Any] | None
) -> list[tuple[str, str]]:
    headers = list(req.headers)
    if row is None or row["id"] not in state.snapshot.credentials:
        return headers
    secret = state.vault.decrypt(state.snapshot.credentials[row["id"]], owner=row["id"])
    try:
        connector = get_connector(ctype)
        default, names = connector.auth_headers(secret), connector.auth_header_names
    except ConnectorError:
        default, names = [("Authorization", f"Bearer {secret}")], ("authorization",)
    injected = _auth_headers(row, secret, default)
    drop = {n.lower() for n in names} | {n.lower() for n, _ in injected}
    return [h for h in headers if h[0].lower() not in drop] + injected


def _allowed(host: str, addr: IPAddress | None, allow: list[str]) -> bool:
    for entry in allow:
        if entry == host.lower():
            return True
        if addr is not None:
            try:
                if addr in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                continue
    return False


async def check_target(host: str, port: int, allow: list[str]) -> IPAddress | None:
    """The address to connect to, or ApiError when it is not a public one (SSRF)."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        raise ApiError(502, f"cannot resolve `{host}`", code="upstream_unreachable") from None
    addrs = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    for addr in addrs:
        if not (addr.is_global or _allowed(host, addr, allow)):
            raise ApiError(
                422,
                f"target `{host}` resolves to the non-public address `{addr}`: refused "
                "(SSRF protection); permit it with AGENTFIREWALL_WEBHOOK_ALLOW_HOSTS",
                code="target_refused",
            )
    return addrs[0] if addrs else None


async def plan(state: AppState, spec_data: dict[str, Any]) -> Planned:
    spec = ActionSpec.model_validate(spec_data)
    ctype, req, row = _build(state, spec)
    headers = _credential_headers(state, ctype, req, row)
    port = req.port or (443 if req.scheme == "https" else 80)
    default_port = port == (443 if req.scheme == "https" else 80)
    authority = req.host if default_port else f"{req.host}:{port}"
    query = f"?{req.query}" if req.query else ""
    url = f"{req.scheme}://{authority}{req.path}{query}"
    sni = None
    if ctype in _USER_TARGETED:
        addr = await check_target(req.host, port, state.settings.webhook_allow_hosts)
        if addr is not None:
            literal = f"[{addr}]" if addr.version == 6 else str(addr)
            url = f"{req.scheme}://{literal}:{port}{req.path}{query}"
            headers = [h for h in headers if h[0].lower() != "host"] + [("Host", authority)]
            sni = req.host if req.scheme == "https" else None
    return Planned(ctype, req.method, url, headers, req.body, req.host, sni)


def _result(response: httpx.Response) -> dict[str, Any]:
    raw = response.content[:_MAX_BODY]
    body: Any
    if "json" in response.headers.get("content-type", ""):
        try:
            body = json.loads(raw)
        except ValueError:
            body = raw.decode("utf-8", "replace")
    else:
        body = raw.decode("utf-8", "replace")
    headers = {k: v for k, v in response.headers.items() if k.lower() not in _DROP_HEADERS}
    return {"status_code": response.status_code, "headers": headers, "body": body}


async def send(state: AppState, planned: Planned) -> dict[str, Any]:
    extensions = {"sni_hostname": planned.sni} if planned.sni else None
    errors = state.metrics.connector_errors
    try:
        response = await state.http.request(
            planned.method,
            planned.url,
            headers=planned.headers,
            content=planned.body or None,
            timeout=state.settings.execute_timeout_seconds,
            extensions=extensions,
        )
    except httpx.TimeoutException:
        errors.labels(connector=planned.connector, error_type="timeout").inc()
        raise ApiError(
            504, f"`{planned.host}` did not answer in time", code="upstream_timeout"
        ) from None
    except httpx.HTTPError as exc:
        errors.labels(connector=planned.connector, error_type="connect").inc()
        raise ApiError(
            502,
            f"`{planned.host}` could not be reached: {type(exc).__name__}",
            code="upstream_unreachable",
        ) from None
    if response.status_code in (401, 403, 429) or response.status_code >= 500:
        errors.labels(connector=planned.connector, error_type=str(response.status_code)).inc()
    return _result(response)


async def execute(state: AppState, spec_data: dict[str, Any]) -> dict[str, Any]:
    return await send(state, await plan(state, spec_data))
