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

The flow's scrubber (:meth:`TokenBroker.scrubber`) finds every token the gateway sent for
the connector that may still be valid, not only the one it sends now: an upstream that keeps
a request log hands back one it got before a refresh, valid until it expires (found until
:data:`RETIRED_MARGIN` past that, the :data:`RETIRED` latest at most); and the connector's
static secrets too.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

import httpx

from agentfirewall.credentials import Leases, Outgoing, Rotation, Token, TokenRequest
from agentfirewall.credentials.broker import TokenBroker as SharedTokenBroker
from agentfirewall.credentials.fetch import send_token_request
from agentfirewall.errors import CredentialError
from agentfirewall_proxy.options import Options
from agentfirewall_proxy.pipeline import Flow, Refusal
from agentfirewall_proxy.scrub import Scrubber, scrubber_for
from agentfirewall_proxy.upstream import client_ssl_context

if TYPE_CHECKING:
    from agentfirewall_proxy.http1 import Head

__all__ = ["RETIRED", "RETIRED_MARGIN", "TokenBroker", "inject", "prepare", "signed_body"]

#: How many tokens sent before the current one a connector's scrubber finds at most.
RETIRED = 8
#: How long past its expiry (seconds) a token sent is still found: an upstream may accept
#: it a little late, and its clock may differ from the gateway's.
RETIRED_MARGIN = 600.0


class TokenBroker(SharedTokenBroker):
    """The gateway's tokens (``agentfirewall.credentials.broker``), fetched through its
    resolve map or upstream proxy, and the scrubber of those each connector sent."""

    def __init__(
        self,
        options: Options,
        clock: Callable[[], float] = time.time,
        on_rotated: Callable[[Rotation], None] | None = None,
        leases: Leases | None = None,
    ) -> None:
        super().__init__(self._send, clock, on_rotated, leases)
        self.options = options
        #: Connector id -> the secrets of each token sent for it -> when that token expires
        #: (the latest last).
        self._sent: dict[str, dict[tuple[str, ...], float]] = {}
        self._scrubbers: dict[str, tuple[tuple[object, ...], Scrubber | None]] = {}
        self._client: httpx.AsyncClient | None = None

    def scrubber(
        self, connector: str, token: Token, static: Scrubber | None = None
    ) -> Scrubber | None:
        """The scrubber of what `connector` sends upstream with `token`: its values, those
        of the :data:`RETIRED` tokens sent before it until :data:`RETIRED_MARGIN` past their
        expiry, and the `static` scrubber's secrets. Built again only when these change."""
        sent = self._sent.pop(connector, None) or {}
        if len(self._sent) >= 1024:  # (connectors of many snapshots: the oldest forgotten)
            oldest = next(iter(self._sent))
            del self._sent[oldest]
            self._scrubbers.pop(oldest, None)
        self._sent[connector] = sent
        secrets = token.secrets()
        sent.pop(secrets, None)
        sent[secrets] = token.expires_at
        now = self.clock()
        for old, expires in list(sent.items())[:-1]:  # (the oldest first)
            if len(sent) > RETIRED + 1 or expires + RETIRED_MARGIN <= now:
                del sent[old]
        key = (static, *sent)
        found = self._scrubbers.get(connector)
        if found is not None and found[0] == key:
            return found[1]
        values = (v.encode("latin-1", "replace") for old in sent for v in old)
        scrubber = scrubber_for(values, static)
        self._scrubbers[connector] = (key, scrubber)
        return scrubber

    async def _send(self, request: TokenRequest) -> tuple[int, bytes]:
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
    had: fail closed."""
    assert flow.connector is not None
    assert flow.connector.injector is not None
    source = flow.connector.injector.source
    if source is None:
        return None
    try:
        token = await broker.token(source)
    except CredentialError as exc:
        raise Refusal(
            502, "credential_unavailable", f"connector `{flow.connector.name}`: {exc}"
        ) from None
    flow.scrubber = broker.scrubber(flow.connector.id, token, flow.connector.scrubber)
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
    return headers + [(k.encode("latin-1"), v.encode("latin-1")) for k, v in added]


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
