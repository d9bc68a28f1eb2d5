"""Tokens of computed credentials, shared: cached, fetched once under load, failing closed.

A :class:`TokenBroker` keeps the current token of every token source (a GitHub App
installation, an OAuth2 client, an assumed AWS role), fetched on first use and again once
it is due for refresh; concurrent callers of the same source share one fetch (single
flight). A failed refresh keeps serving the previous token while it is still valid; past
its expiry the CredentialError reaches the caller, which fails closed. A token that
rotated its credential (an OAuth2 refresh token) is handed to `on_rotated`.

No I/O here: `send` performs a :class:`TokenRequest` and returns the status and body. The
gateway sends through its resolve map or upstream proxy (``agentfirewall_proxy.injection``),
the control plane with its own client (``agentfirewall_server.tokens``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from agentfirewall.credentials.model import Rotation, Token, TokenCache, TokenRequest, TokenSource
from agentfirewall.errors import CredentialError

__all__ = ["Send", "TokenBroker"]

#: Performs one token request: (status, body), or a CredentialError naming why not.
Send = Callable[[TokenRequest], Awaitable[tuple[int, bytes]]]


class TokenBroker:
    """The tokens of every computed credential one process uses."""

    def __init__(
        self,
        send: Send,
        clock: Callable[[], float] = time.time,
        on_rotated: Callable[[Rotation], None] | None = None,
    ) -> None:
        self.send = send
        self.clock = clock
        self.on_rotated = on_rotated
        self.cache = TokenCache()
        #: Token requests sent (each success or failure counts once).
        self.fetches = 0
        self._inflight: dict[str, asyncio.Future[Token]] = {}

    async def token(self, source: TokenSource) -> Token:
        cached = self.cache.get(source.key)
        if cached is not None and cached.fresh(self.clock()):
            return cached
        future = self._inflight.get(source.key)
        if future is None:
            future = asyncio.ensure_future(self._refresh(source, cached))
            self._inflight[source.key] = future
            future.add_done_callback(lambda done: self._settled(source.key, done))
        try:
            return await asyncio.shield(future)
        except CredentialError:
            if cached is not None and cached.usable(self.clock()):
                return cached  # the old token is still valid: used until it expires
            raise

    def _settled(self, key: str, done: asyncio.Future[Token]) -> None:
        self._inflight.pop(key, None)
        if not done.cancelled():
            done.exception()  # retrieved even when every waiter left (no asyncio warning)

    async def _refresh(self, source: TokenSource, previous: Token | None) -> Token:
        request = source.token_request(self.clock(), previous)
        self.fetches += 1
        status, body = await self.send(request)
        token = source.read_token(status, body, self.clock())
        self.cache.put(source.key, token)
        rotation = source.rotation(token)
        if rotation is not None and self.on_rotated is not None:
            self.on_rotated(rotation)
        return token
