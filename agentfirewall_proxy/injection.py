"""Computed credentials at the gateway: tokens fetched, cached, refreshed; requests signed.

:class:`TokenBroker` owns the token cache of every computed credential (the shared
``agentfirewall.credentials.broker``, with the gateway's way to fetch). A token is fetched
on first use and again once it is due for refresh (minutes before it expires); concurrent
requests for the same credential share one fetch (single flight: 32 requests at once make
one token request). A failed refresh keeps serving the previous token while it is still
valid; past its expiry the request fails closed (502 ``credential_unavailable`` naming
why). Token requests go out with the gateway's resolve map (or through its upstream
proxy) and upstream CA, over TLS only. A token that rotated its credential (an OAuth2
refresh token) is handed to `on_rotated`, which the gateway sends to the control plane's vault;
such a grant is refreshed under the control plane's lease (`leases`: ``refreshlease.py``).

:func:`inject` is what ``exchange._forward`` calls on the final header list: the agent's
credential headers were already dropped; the injector's headers are appended. A body the
injector re-signs as it goes (a signed aws-chunked upload) gets the flow's ``body_signer``,
which ``exchange`` applies to what it forwards (:func:`signed_body`).

The flow's scrubber (:meth:`TokenBroker.scrubber`, the core's bookkeeping shared with the
control plane's executor: ``agentfirewall.credentials.sent``) finds every token the gateway
sent for the connector that may still be valid, not only the one it sends now: an upstream
that keeps a request log hands back one it got before a refresh, valid until it expires
(found until :data:`RETIRED_MARGIN` past that, the :data:`RETIRED` latest at most); and the
connector's static secrets too. A token request ends within the broker's deadline, whatever
its client's per-phase timeouts.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

import httpx

from agentfirewall.credentials import Leases, Outgoing, Rotation, Token, TokenRequest
from agentfirewall.credentials.broker import TokenBroker as SharedTokenBroker
from agentfirewall.credentials.broker import traceback_of
from agentfirewall.credentials.fetch import send_token_request
from agentfirewall.credentials.sent import RETIRED, RETIRED_MARGIN
from agentfirewall.errors import CredentialError
from agentfirewall_proxy.budgetlease import Say, say_plain
from agentfirewall_proxy.options import Options
from agentfirewall_proxy.pipeline import Flow, Refusal
from agentfirewall_proxy.upstream import client_ssl_context

if TYPE_CHECKING:
    from agentfirewall_proxy.http1 import Head

__all__ = ["RETIRED", "RETIRED_MARGIN", "TokenBroker", "inject", "prepare", "signed_body"]


class TokenBroker(SharedTokenBroker):
    """The gateway's tokens (``agentfirewall.credentials.broker``, whose `scrubber` finds
    those each connector sent), fetched through its resolve map or upstream proxy."""

    def __init__(
        self,
        options: Options,
        clock: Callable[[], float] = time.time,
        on_rotated: Callable[[Rotation], None] | None = None,
        leases: Leases | None = None,
        say: Say = say_plain,
    ) -> None:
        super().__init__(self._send_token, clock, on_rotated, leases)
        self.options = options
        #: Where a token that could not be had for a defect is said (``Gateway.say``).
        self.say = say
        self._client: httpx.AsyncClient | None = None

    async def _send_token(self, request: TokenRequest) -> tuple[int, bytes]:
        parts = urlsplit(request.url)
        host = (parts.hostname or "").lower()
        port = parts.port or 443
        authority = host if port == 443 else f"{host}:{port}"
        if self.options.upstream_proxy:  # the proxy resolves the name: CONNECT host:port
            address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        else:  # `--resolve` as for upstreams; the name stays in Host and SNI
            resolve = self.options.resolve
            ip, ip_port = resolve.get((host, port)) or resolve.get((host, None)) or (host, port)
            address = f"[{ip}]:{ip_port}" if ":" in ip else f"{ip}:{ip_port}"
        url = urlunsplit(("https", address, parts.path or "/", parts.query, ""))
        return await send_token_request(self._http(), request, url=url,
                                        headers=[("Host", authority)],
                                        extensions={"sni_hostname": host})  # fmt: skip

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            upstream_ca = self.options.upstream_ca
            context = client_ssl_context(str(upstream_ca) if upstream_ca else None)
            timeout = httpx.Timeout(30.0, connect=self.options.connect_timeout)
            self._client = httpx.AsyncClient(
                verify=context,
                timeout=timeout,
                trust_env=False,
                proxy=self.options.upstream_proxy,  # token requests go where upstreams go
            )
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


async def prepare(broker: TokenBroker, flow: Flow) -> Token | None:
    """The token the flow's computed credential needs now (None: static keys), its
    scrubber set on the flow (:meth:`TokenBroker.scrubber`); Refusal (502) when it cannot be
    had: fail closed. Any other exception (a defect) is a Refusal too, never a dropped
    connection: said with its traceback, never its message (it may name a secret)."""
    connector = flow.connector
    assert connector is not None
    assert connector.injector is not None
    source = connector.injector.source
    if source is None:
        return None
    try:
        token = await broker.token(source)
        flow.scrubber = broker.scrubber(connector.id, token, connector.scrubber)
    except CredentialError as exc:
        reason = f"connector `{connector.name}`: {exc}"
        raise Refusal(502, "credential_unavailable", reason) from None
    except Exception as exc:
        broker.say(f"agentfirewall_proxy: the token of connector `{connector.id}` could not be "
                   f"had: {traceback_of(exc)}", "error")  # fmt: skip
        raise Refusal(
            502,
            "credential_unavailable",
            f"connector `{connector.name}`: its token could not be had (an internal error: "
            "the gateway's log says where)",
        ) from None
    return token


def inject(
    broker: TokenBroker,
    flow: Flow,
    head: Head,
    headers: list[tuple[bytes, bytes]],
    body: bytes | None,
    token: Token | None,
) -> list[tuple[bytes, bytes]]:
    """`headers` (final) plus the computed credential's (a signature covers them).

    `body` is the whole forwarded body, or None when it is streamed.
    """
    assert flow.connector is not None
    assert flow.connector.injector is not None
    outgoing = Outgoing(
        method=flow.method,
        host=flow.host,
        path=flow.path,
        query=flow.query,
        headers=tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in headers),
        body=body,
        agent_headers=tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in head.headers),
    )
    injector = flow.connector.injector
    try:
        added = injector.inject(outgoing, token, broker.clock())
        flow.body_signer = injector.body_signer(outgoing, added, token)
    except CredentialError as exc:
        raise Refusal(400, "unsignable_request", str(exc)) from None
    try:
        return headers + [(k.encode("latin-1"), v.encode("latin-1")) for k, v in added]
    except UnicodeEncodeError:  # (a token is checked when read: a vaulted key is not)
        raise Refusal(
            502,
            "credential_unavailable",
            f"connector `{flow.connector.name}`: its credential holds a character no header "
            "can carry",
        ) from None


def signed_body(flow: Flow, data: bytes, *, last: bool) -> bytes:
    """`data` of the forwarded body as it must go, re-signed by the flow's body signer
    (`last`: the body ends with it); Refusal (400) when the body cannot be re-signed."""
    signer = flow.body_signer
    if signer is None:
        return data
    try:
        out = signer.feed(data)
        if last:
            signer.finish()
    except CredentialError as exc:
        raise Refusal(400, "unsignable_request", str(exc)) from None
    return out
