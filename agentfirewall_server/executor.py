"""SDK Mode A: build the upstream request for an action and perform it.

``plan`` picks the configured connector for the action, the one its provider names (the
connector it was decided, stopped and approved as; a ``webhook.*`` action of another
provider, which an earlier version stored, is refused: ``connectors.provider_problem``),
and builds the request from the connector's route table (the connector record's ``options``
fill in parameters the action leaves out, e.g. sendgrid's ``from``). Webhook and generic
actions name their own target: the connector is the one whose ``domains`` hold the target
host, and a target outside the domains of every configured connector of that type is
refused (422), so a credential only ever goes to its own connector's hosts; with no
connector of the type configured a webhook is sent without any credential. The method is
the one the action type names (``webhook.get`` with ``parameters.method`` DELETE is
refused). Every request's host is checked against its connector's hosts before the
credential is attached, and its scheme and port against where the credential may travel,
by the gateway's own rule (:func:`agentfirewall.connectors.upstream.credential_upstream`):
never in cleartext unless an admin declared a plain ``http://`` base URL (then on its port
only), over TLS only to the connector's TLS port for the host; a plain target of a TLS
connector is upgraded to it, anything else is refused (422 ``cleartext_refused`` /
``port_refused``). For targets the action names, the outbound address guard
(``netguard``) refuses non-public addresses unless ``webhook_allow_hosts`` permits them,
and the connection is pinned to a checked address (no DNS rebinding). ``send`` performs it
with httpx: timeouts, no redirects followed; a failure to connect (no byte of the request
sent) is marked ``retryable``. The answer is scrubbed of the credential as it is read, then
cut at 1 MiB where no beginning of a secret is left (:func:`_read_body`); no more of it is
read than that.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from agentfirewall.actions import ActionSpec
from agentfirewall.connectors import HttpRequest, get_connector, provider_problem
from agentfirewall.connectors.base import Connector
from agentfirewall.connectors.router import ConnectorRouter, RoutedConnector
from agentfirewall.connectors.upstream import UpstreamRefused, credential_upstream
from agentfirewall.credentials import COMPUTED_KINDS, Outgoing
from agentfirewall.errors import ActionSpecError, ConnectorError, CredentialError, VaultError
from agentfirewall.scrubbing import Scrubber
from agentfirewall_server.netguard import check_target
from agentfirewall_server.settings import Settings
from agentfirewall_server.state import AppState
from agentfirewall_server.tracing import child, inject, set_upstream_status
from agentfirewall_server.web import ApiError

__all__ = ["Planned", "execute", "execution_deadline", "plan", "send"]

_USER_TARGETED = ("webhook", "generic")
#: a send (connect, request, answer) ends within this many times the per-operation timeout:
#: an action still ``executing`` later than that was cut short by a crash (routes/stuck.py)
_DEADLINE_FACTOR = 3
_MAX_BODY = 1024 * 1024
_DROP_HEADERS = {"set-cookie", "authorization", "proxy-authorization", "www-authenticate"}
# Raised before a byte of the request went out: the action may be tried again.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_HOSTNAME_MISMATCH = 62  # OpenSSL's X509_V_ERR_HOSTNAME_MISMATCH
_TRUST_CA = "trust its CA with AGENTFIREWALL_UPSTREAM_CA (tf up --upstream-ca)"
# Headers some servers and frameworks obey over the request line: they would make the
# executed request differ from the decided one (method, host or path).
_REWRITING_HEADERS = frozenset(
    {
        "x-http-method-override",
        "x-http-method",
        "x-method-override",
        "x-original-method",
        "x-original-url",
        "x-rewrite-url",
        "x-forwarded-host",
        "x-forwarded-prefix",
        "x-host",
        "forwarded",
    }
)


@dataclass(frozen=True, slots=True)
class Planned:
    connector: str
    method: str
    url: str
    headers: list[tuple[str, str]]
    body: bytes
    host: str
    sni: str | None = None
    #: The injected credential's every form, and those of what the connector sent before
    #: while it may be valid, scrubbed from the result (None: nothing to find).
    scrubber: Scrubber | None = None


def _not_executable(message: str, **extra: Any) -> ApiError:
    return ApiError(422, message, code="not_executable", **extra)


def _hosts(row: dict[str, Any]) -> tuple[str, ...]:
    """The hosts a connector's credential may go to: its domains and its base URL's host."""
    base = urlsplit(row["base_url"]).hostname if row.get("base_url") else None
    return (*row["domains"], *((base,) if base else ()))


def _serves(rows: list[dict[str, Any]], host: str) -> dict[str, Any] | None:
    """The connector among `rows` whose hosts hold `host` (exact beats wildcard)."""
    try:
        router = ConnectorRouter(RoutedConnector(r["id"], r["type"], _hosts(r)) for r in rows)
    except ConnectorError as exc:
        raise _not_executable(f"a connector is misconfigured: {exc}") from None
    found = router.match(host)
    return next((r for r in rows if found is not None and r["id"] == found.id), None)


def _outside(ctype: str, host: str, rows: list[dict[str, Any]]) -> ApiError:
    domains = sorted({d for r in rows for d in _hosts(r)})
    listed = ", ".join(f"`{d}`" for d in domains) or "none"
    return _not_executable(
        f"target host `{host}` is outside the domains of every {ctype} connector "
        f"(configured: {listed}): refused, a credential only goes to its connector's hosts",
        field="action_spec.resource.target",
        host=host,
        domains=domains,
    )


def _build_targeted(
    state: AppState, ctype: str, spec: ActionSpec
) -> tuple[HttpRequest, dict[str, Any] | None]:
    """A webhook or generic request; its connector is chosen by the target host."""
    try:
        req = get_connector(ctype).build_request(spec)
    except (ConnectorError, ActionSpecError, ValueError) as exc:
        raise _not_executable(
            f"`{spec.type}` cannot be executed by the `{ctype}` connector: {exc}",
            field="action_spec",
        ) from None
    for name, _ in req.headers:
        if name.lower() in _REWRITING_HEADERS:
            raise _not_executable(
                f"header `{name}` would change the method, host or path decided on: refused",
                field=f"action_spec.parameters.headers.{name}",
            )
    rows = [c for c in state.snapshot.connectors if c["type"] == ctype]
    if not rows and ctype == "webhook":
        return req, None  # no webhook connector: sent as the action says, with no credential
    if not rows:
        raise _not_executable(
            f"no `{ctype}` connector is configured: add one with "
            f"`tf connector add {ctype} --domains ...`"
        )
    row = _serves(rows, req.host)
    if row is None:
        raise _outside(ctype, req.host, rows)
    return req, row


def _build(state: AppState, spec: ActionSpec) -> tuple[str, HttpRequest, dict[str, Any] | None]:
    ctype = spec.provider  # the connector it was decided, stopped and approved as
    if (problem := provider_problem(spec)) is not None:  # stored by an earlier version
        raise _not_executable(problem, field="action_spec.resource.provider")
    if ctype in _USER_TARGETED:
        return (ctype, *_build_targeted(state, ctype, spec))
    try:
        connector = get_connector(ctype)
    except ConnectorError:
        known = ", ".join(sorted(state.snapshot.connector_types())) or "none"
        raise _not_executable(
            f"no connector can execute `{spec.type}` (provider `{ctype}`): "
            f"configured connectors: {known}"
        ) from None
    row = next((c for c in state.snapshot.connectors if c["type"] == ctype), None)
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
    if _serves([row], req.host) is None:  # the route table built a request for another host
        raise _outside(ctype, req.host, [row])
    return ctype, req, row


async def _credential_headers(
    state: AppState, ctype: str, req: HttpRequest, row: dict[str, Any] | None
) -> tuple[list[tuple[str, str]], Scrubber | None]:
    """The request's headers with the credential's, and the scrubber of the credential: of
    what the connector sends now and sent before while it may be valid (an upstream keeping
    a request log hands back a token from before a refresh, a key from before a rotation:
    ``agentfirewall.credentials.sent``, as the gateway's)."""
    headers = list(req.headers)
    if row is None or row["id"] not in state.snapshot.credentials:
        return headers, None
    problem = state.vault_problems.get(row["id"])
    if problem is not None:  # this connector alone is down (issue 14): say why and how to fix
        raise ApiError(
            503,
            f"connector `{row['id']}` is unavailable: its credential does not decrypt "
            f"(key id {problem['key_id']}): {problem['fix']}",
            code="credential_unavailable",
        )
    try:
        secret = state.vault.decrypt(state.snapshot.credentials[row["id"]], owner=row["id"])
    except VaultError as exc:  # nothing was claimed or sent: the same token may retry
        raise ApiError(
            503,
            f"connector `{row['id']}` is unavailable: {exc}",
            code="credential_unavailable",
            retryable=True,
        ) from None
    connector = get_connector(ctype)
    kind = row.get("auth_type") or "default"
    if kind in COMPUTED_KINDS:
        return await _computed_headers(state, connector, req, row["id"], kind, secret)
    try:
        injected = connector.auth_headers(
            secret,
            auth_type=None if kind == "default" else kind,
            header=row.get("auth_header"),
        )
    except ConnectorError as exc:
        raise _not_executable(f"the `{ctype}` connector's credential: {exc}") from None
    drop = {n.lower() for n in connector.auth_header_names} | {n.lower() for n, _ in injected}
    values = [value.encode("utf-8", "surrogateescape") for _, value in injected]
    scrubber = state.tokens.broker.sent.scrubber(row["id"], values)
    return [h for h in headers if h[0].lower() not in drop] + injected, scrubber


async def _computed_headers(
    state: AppState, connector: Connector, req: HttpRequest, cid: str, kind: str, secret: str
) -> tuple[list[tuple[str, str]], Scrubber | None]:
    """A computed credential's headers (``tokens.py``): a minted token, or a signature over
    the request as sent (``Host`` included); 502 ``credential_unavailable`` when it cannot
    be had (fail closed)."""
    try:
        injector = state.tokens.injector(cid, connector, kind, secret)
        kept = [h for h in req.headers if h[0].lower() not in injector.drop]
        if not any(h[0].lower() == "host" for h in kept):
            port = req.port or (443 if req.scheme == "https" else 80)
            default = port == (443 if req.scheme == "https" else 80)
            kept.append(("Host", req.host if default else f"{req.host}:{port}"))
        outgoing = Outgoing(req.method, req.host, req.path, req.query, tuple(kept), req.body)
        added, token = await state.tokens.headers(injector, outgoing)
        scrubber = state.tokens.scrubber(cid, injector, token)
    except CredentialError as exc:
        raise ApiError(
            502, f"connector `{cid}`: {exc}", code="credential_unavailable", retryable=True
        ) from None
    return kept + added, scrubber


def _where_credential_goes(
    state: AppState, ctype: str, req: HttpRequest, row: dict[str, Any] | None
) -> HttpRequest:
    """`req` with the scheme and port its connector's credential may travel on, as the
    gateway decides it (``credential_upstream``): a plain target of a TLS connector is
    upgraded to its TLS upstream; cleartext or another port, with a credential, is 422."""
    if row is None:
        return req  # (no connector: nothing injected)
    asked = req.port or (443 if req.scheme == "https" else 80)
    try:
        scheme, port = credential_upstream(
            req.scheme,
            req.host,
            asked,
            declared=row.get("base_url"),
            default=get_connector(ctype).base_url,
            credential=row["id"] in state.snapshot.credentials,
            name=row.get("name") or row["id"],
        )
    except UpstreamRefused as exc:
        field = "action_spec.resource.target" if ctype in _USER_TARGETED else "action_spec"
        raise ApiError(422, str(exc), code=exc.code, field=field) from None
    if (scheme, port) == (req.scheme, asked):
        return req
    return dataclasses.replace(req, scheme=scheme, port=port)


async def plan(state: AppState, spec_data: dict[str, Any]) -> Planned:
    spec = ActionSpec.model_validate(spec_data)
    ctype, req, row = _build(state, spec)
    req = _where_credential_goes(state, ctype, req, row)
    headers, scrubber = await _credential_headers(state, ctype, req, row)
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
    return Planned(ctype, req.method, url, headers, req.body, req.host, sni, scrubber)


async def _read_body(
    chunks: AsyncIterator[bytes], scrubber: Scrubber | None, limit: int = _MAX_BODY
) -> bytes:
    """The answer's body as the agent gets it, at most `limit` bytes: every form of the
    credential replaced (:class:`~agentfirewall.scrubbing.ScrubStream`, which holds back
    only a suffix that may begin a secret), read no further than past `limit`. The cut
    comes after the scrub, and a cut body ends where no beginning of a secret is left
    (``Scrubber.held``): a credential an upstream echoes across the limit is not handed
    over in part (all but its last byte, the agent a guess away from it)."""
    stream = scrubber.stream() if scrubber is not None else None
    read, body = bytearray(), bytearray()
    ended = True
    async for chunk in chunks:
        read += chunk
        if len(body) + len(read) > limit:  # (scrubbed in one piece, not chunk by chunk)
            body += stream.feed(bytes(read)) if stream is not None else read
            read.clear()
            if len(body) > limit:
                ended = False
                break
    if ended:  # the whole answer: what was held back can complete no secret
        body += stream.feed(bytes(read)) + stream.finish() if stream is not None else read
        if len(body) <= limit:
            return bytes(body)
    cut = bytes(body[:limit])
    return cut[: len(cut) - scrubber.held(cut)] if scrubber is not None else cut


def _result(response: httpx.Response, raw: bytes, scrubber: Scrubber | None) -> dict[str, Any]:
    """The upstream's answer as the agent gets it: the body `raw` (read by `_read_body`:
    JSON when it says so, else text) and the headers, with every form of the injected
    credential replaced (an upstream that echoes it back never hands it to the agent)."""
    pairs = list(response.headers.raw)
    if scrubber is not None:
        pairs, _ = scrubber.headers(pairs)
    body: Any
    if "json" in response.headers.get("content-type", ""):
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError):  # not JSON, or nested too deep: the text
            body = raw.decode("utf-8", "replace")
    else:
        body = raw.decode("utf-8", "replace")
    headers: dict[str, str] = {}
    for name, value in pairs:  # one entry per name, repeated values joined (as httpx does)
        key = name.decode("latin-1").lower()
        if key not in _DROP_HEADERS:
            text = value.decode(response.headers.encoding)
            headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return {"status_code": response.status_code, "headers": headers, "body": body}


def execution_deadline(settings: Settings) -> float:
    """Seconds within which every send ends, answered or not."""
    return settings.execute_timeout_seconds * _DEADLINE_FACTOR


async def send(state: AppState, planned: Planned) -> dict[str, Any]:
    """Perform `planned` (in a ``tameflare.executor`` span when tracing is on)."""
    with child("tameflare.executor", connector=planned.connector):
        return await _send(state, planned)


def _tls_error(exc: BaseException) -> ssl.SSLError | None:
    """The TLS error behind `exc` (httpx wraps httpcore's error, which wraps ssl's)."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, ssl.SSLError):
            return cause
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return None


def _unreachable(planned: Planned, exc: Exception) -> str:
    """Why the upstream was not reached: a failed TLS handshake as the gateway words it
    (with the fix when its certificate is not trusted), else the error's kind. Retrying
    does not mend a TLS failure, but nothing was sent: the action stays decided, and the
    same token executes it once the upstream is trusted."""
    tls = _tls_error(exc)
    if tls is None:
        return f"`{planned.host}` could not be reached: {type(exc).__name__}"
    where = f"`{planned.host}:{urlsplit(planned.url).port or 443}`"
    failed = f"TLS to {where} failed: {tls.reason or type(tls).__name__}"
    if not isinstance(tls, ssl.SSLCertVerificationError):
        return failed
    if tls.verify_code == _HOSTNAME_MISMATCH:  # no CA makes it this host's certificate
        return f"{failed} ({tls.verify_message})"
    return f"{failed} ({tls.verify_message}): {_TRUST_CA}"


async def _send(state: AppState, planned: Planned) -> dict[str, Any]:
    extensions = {"sni_hostname": planned.sni} if planned.sni else None
    errors = state.metrics.connector_errors
    try:
        async with (
            asyncio.timeout(execution_deadline(state.settings)),
            state.http.stream(
                planned.method,
                planned.url,
                headers=inject(planned.headers),
                content=planned.body or None,
                timeout=state.settings.execute_timeout_seconds,
                extensions=extensions,
            ) as response,
        ):
            raw = await _read_body(response.aiter_bytes(), planned.scrubber)
    except _NOT_SENT as exc:
        errors.labels(connector=planned.connector, error_type="connect").inc()
        raise ApiError(
            502,
            f"{_unreachable(planned, exc)}; no byte of the request was sent, the action may "
            "be executed again",
            code="upstream_unreachable",
            retryable=True,
        ) from None
    except (httpx.TimeoutException, TimeoutError):  # an operation's timeout, or the whole
        errors.labels(connector=planned.connector, error_type="timeout").inc()
        raise ApiError(
            504,
            f"`{planned.host}` did not answer in time",
            code="upstream_timeout",
            retryable=False,
        ) from None
    except httpx.HTTPError as exc:
        errors.labels(connector=planned.connector, error_type="connect").inc()
        raise ApiError(
            502,
            f"`{planned.host}` failed after the request was sent: {type(exc).__name__}",
            code="upstream_failed",
            retryable=False,
        ) from None
    set_upstream_status(response.status_code)
    if response.status_code in (401, 403, 429) or response.status_code >= 500:
        errors.labels(connector=planned.connector, error_type=str(response.status_code)).inc()
    return _result(response, raw, planned.scrubber)


async def execute(state: AppState, spec_data: dict[str, Any]) -> dict[str, Any]:
    return await send(state, await plan(state, spec_data))
