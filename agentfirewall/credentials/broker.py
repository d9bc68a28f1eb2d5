"""Tokens of computed credentials, shared: cached, fetched once under load, failing closed.

A :class:`TokenBroker` keeps the current token of every token source (a GitHub App
installation, an OAuth2 client, an assumed AWS role), fetched on first use and again once
it is due for refresh; concurrent callers of the same source share one fetch (single
flight). A failed refresh keeps serving the previous token while it is still valid; past
its expiry the CredentialError reaches the caller, which fails closed. A token that
rotated its credential (an OAuth2 refresh token) is handed to `on_rotated`.

A grant whose endpoint may rotate its refresh token (and refuse a used one) is refreshed by
one process at a time across every gateway and replica: with `leases` (the control plane),
the refresh first takes the connector's lease, which names the refresh token the vault holds
now, and storing the rotation ends it (a refresh that rotated nothing, or failed, releases
it). A process that finds the lease held waits for it (``LEASE_WAIT`` at most), then
refreshes with the token the holder stored. Meanwhile requests that hold a token still
valid wait at most ``STALE_WAIT`` for the refresh, then use that token.

A token request never outlives the lease it was sent under: while the answer is awaited the
lease is renewed every third of its time, and should renewing fail the request is given up
(a CredentialError) before the lease could end, ``LEASE_SLACK`` early, so that no other
process takes it and sends the same refresh token meanwhile. Every token request ends
within ``REQUEST_DEADLINE`` (the caller's client times each phase, not the whole).

A CredentialError never holds the credential's secrets (``TokenSource.secrets``: the client
secret, the refresh token sent, the credential the request carried) in any spelling the
scrubber knows (``agentfirewall.scrubbing``: an endpoint may echo them as they were sent,
percent-encoded or in a Basic credential's base64), whatever a source relays of its answer.
A source reads every value of an answer before the broker caches it: what it cannot read is
a CredentialError, never another exception (a token is ``1*VSCHAR``). :meth:`TokenBroker.
scrubber` is the scrubber of the tokens a connector sent (``sent.py``); it never fails.
Whoever asks the broker for a token fails closed on any other exception (a defect), which
:func:`traceback_of` describes for a log without its message (it may name a secret).

No I/O here: `send` performs a :class:`TokenRequest` and returns the status and body. The
gateway sends through its resolve map or upstream proxy (``agentfirewall_proxy.injection``),
the control plane with its own client (``agentfirewall_server.tokens``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import traceback
from collections.abc import Awaitable, Callable, Iterable
from urllib.parse import urlsplit

from agentfirewall.credentials.model import (
    Lease,
    Leases,
    Rotation,
    Token,
    TokenCache,
    TokenRequest,
    TokenSource,
)
from agentfirewall.credentials.oauth2 import OAuth2Source
from agentfirewall.credentials.sent import SentSecrets, secret_bytes
from agentfirewall.errors import CredentialError, LeaseBusy
from agentfirewall.scrubbing import Scrubber, scrubber_for

__all__ = [
    "LEASE_SLACK",
    "LEASE_WAIT",
    "REQUEST_DEADLINE",
    "STALE_WAIT",
    "Send",
    "TokenBroker",
    "traceback_of",
]

#: At most this long (seconds) a refresh waits for another process's lease to end.
LEASE_WAIT = 20.0
#: A request holding a token still valid waits at most this long for its refresh.
STALE_WAIT = 2.0
#: Every token request ends within this many seconds, answered or not.
REQUEST_DEADLINE = 30.0
#: A token request under a lease that could not be renewed is given up this long before
#: the lease may end (at most; a quarter of a short lease), as measured from when it was
#: asked for: the control plane's clock started later.
LEASE_SLACK = 2.0

#: Secrets shorter than this are not masked in a message (they would mask any word).
_SHORTEST_MASKED = 4

#: Performs one token request: (status, body), or a CredentialError naming why not.
Send = Callable[[TokenRequest], Awaitable[tuple[int, bytes]]]


class TokenBroker:
    """The tokens of every computed credential one process uses."""

    def __init__(
        self,
        send: Send,
        clock: Callable[[], float] = time.time,
        on_rotated: Callable[[Rotation], None] | None = None,
        leases: Leases | None = None,
    ) -> None:
        self.send = send
        self.clock = clock
        self.on_rotated = on_rotated
        self.leases = leases
        self.cache = TokenCache()
        #: What each connector sent (the tokens and static secrets its scrubber finds).
        self.sent = SentSecrets(clock)
        #: Token requests sent (each success or failure counts once).
        self.fetches = 0
        self._inflight: dict[str, asyncio.Future[Token]] = {}
        self._releasing: set[asyncio.Future[None]] = set()

    async def token(self, source: TokenSource) -> Token:
        cached = self.cache.get(source.key)
        if cached is not None and cached.fresh(self.clock()):
            return cached
        future = self._inflight.get(source.key)
        if future is None:
            future = asyncio.ensure_future(self._refresh(source, cached))
            self._inflight[source.key] = future
            future.add_done_callback(lambda done: self._settled(source.key, done))
        usable = cached is not None and cached.usable(self.clock())
        try:
            if usable:  # a refresh may wait for a lease: not the requests it can serve
                done, _ = await asyncio.wait((future,), timeout=STALE_WAIT)
                if not done:
                    assert cached is not None
                    return cached
            return await asyncio.shield(future)
        except CredentialError:
            if cached is not None and cached.usable(self.clock()):
                return cached  # the old token is still valid: used until it expires
            raise

    def scrubber(
        self, connector: str, token: Token, also: Scrubber | None = None
    ) -> Scrubber | None:
        """The scrubber of what `connector` sends upstream with `token`: its secrets, those
        of the tokens it sent before while they may be valid (``sent.py``), and `also`'s
        (the connector's static secrets). Built again only when these change."""
        secrets = (secret_bytes(value) for value in token.secrets())
        return self.sent.scrubber(connector, secrets, token.expires_at, also)

    def _settled(self, key: str, done: asyncio.Future[Token]) -> None:
        self._inflight.pop(key, None)
        if not done.cancelled():
            done.exception()  # retrieved even when every waiter left (no asyncio warning)

    async def _refresh(self, source: TokenSource, previous: Token | None) -> Token:
        owner = source.lease_owner if isinstance(source, OAuth2Source) else None
        lease, since = None, 0.0
        if owner is not None and self.leases is not None:
            assert isinstance(source, OAuth2Source)
            lease, since = await self._lease(owner)
            if lease is not None:
                source = source.with_vaulted(lease.refresh_token)
        request: TokenRequest | None = None
        try:
            request = source.token_request(self.clock(), previous)
            self.fetches += 1
            if owner is not None and lease is not None:
                status, body = await self._send_leased(request, owner, lease, since)
            else:
                status, body = await self._send(request)
            token = source.read_token(status, body, self.clock())
        except CredentialError as exc:
            self._release(owner, lease)
            raise _masked(exc, source.secrets(request) if request else ()) from None
        except BaseException:
            self._release(owner, lease)
            raise
        self.cache.put(source.key, token)
        rotation = source.rotation(token)
        if rotation is not None and self.on_rotated is not None:
            if lease is not None:
                rotation = dataclasses.replace(rotation, lease=lease.id)
            self.on_rotated(rotation)  # storing it ends the lease
        else:
            self._release(owner, lease)
        return token

    async def _send(self, request: TokenRequest) -> tuple[int, bytes]:
        """`request` sent, within ``REQUEST_DEADLINE``."""
        try:
            async with asyncio.timeout(REQUEST_DEADLINE):
                return await self.send(request)
        except TimeoutError:
            raise CredentialError(
                f"the token endpoint `{_host(request)}` did not answer within "
                f"{REQUEST_DEADLINE:g} s"
            ) from None

    async def _send_leased(
        self, request: TokenRequest, owner: str, lease: Lease, since: float
    ) -> tuple[int, bytes]:
        """`request` sent under `lease` (asked for at `since`, monotonic): renewed every
        third of its time while the answer is awaited, and given up before it may end when
        it could not be renewed (another process may then take it, and refresh)."""
        assert self.leases is not None
        slack = min(LEASE_SLACK, lease.seconds / 4)
        ends = since + lease.seconds - slack
        sending = asyncio.ensure_future(self._send(request))
        try:
            while True:
                renew_at = min(ends, time.monotonic() + lease.seconds / 3)
                await asyncio.wait((sending,), timeout=max(0.0, renew_at - time.monotonic()))
                if sending.done():
                    return sending.result()
                asked = time.monotonic()
                if asked >= ends:
                    raise CredentialError(
                        f"the token endpoint `{_host(request)}` did not answer while the "
                        f"refresh lease of `{owner}` lasted, and it could not be renewed: "
                        "given up (another gateway may refresh now)"
                    )
                renewed = await self._renew(owner, lease, ends - asked)
                if renewed is not None:
                    ends = asked + renewed.seconds - slack
        finally:
            sending.cancel()

    async def _renew(self, owner: str, lease: Lease, within: float) -> Lease | None:
        """`lease` renewed (its id unchanged), or None: not, or not within `within` s."""
        assert self.leases is not None
        try:
            async with asyncio.timeout(within):
                renewed = await self.leases.renew(owner, lease)
        except (CredentialError, TimeoutError):
            return None
        return renewed if renewed is not None and renewed.id == lease.id else None

    async def _lease(self, owner: str) -> tuple[Lease | None, float]:
        """The lease on `owner`'s grant and when it was asked for (monotonic), waiting while
        another process holds it."""
        assert self.leases is not None
        give_up = time.monotonic() + LEASE_WAIT
        pause = 0.05  # a holder is done in a token request's time: ask again soon, then less
        while True:
            asked = time.monotonic()
            try:
                return await self.leases.acquire(owner), asked
            except LeaseBusy as busy:
                left = give_up - time.monotonic()
                if left <= 0:
                    raise CredentialError(
                        f"another gateway has been refreshing the token of `{owner}` for "
                        f"{LEASE_WAIT:.0f} s: its lease has not ended"
                    ) from None
                await asyncio.sleep(min(pause, max(busy.retry_after, 0.01), left))
                pause = min(pause * 2, 1.0)

    def _release(self, owner: str | None, lease: Lease | None) -> None:
        if owner is None or lease is None or self.leases is None:
            return
        task = asyncio.ensure_future(self.leases.release(owner, lease))
        self._releasing.add(task)
        task.add_done_callback(self._released)

    def _released(self, task: asyncio.Future[None]) -> None:
        self._releasing.discard(task)
        if not task.cancelled():
            task.exception()  # best effort: an unreleased lease ends at its expiry


def _host(request: TokenRequest) -> str:
    return (urlsplit(request.url).hostname or "").lower()


def _masked(exc: CredentialError, secrets: Iterable[str]) -> CredentialError:
    """`exc` with none of `secrets` in its message, in any spelling the scrubber searches
    for (an endpoint may echo one as it was sent: percent-encoded, in base64)."""
    scrubber = scrubber_for(secret_bytes(s) for s in secrets if len(s) >= _SHORTEST_MASKED)
    if scrubber is None:
        return exc
    message, found = scrubber.scrub(secret_bytes(str(exc)))
    if not found:
        return exc
    return CredentialError(message.decode("utf-8", "replace"), field=exc.field)


def traceback_of(exc: BaseException) -> str:
    """Where `exc` was raised and its type, for a log: never its message, which may name a
    value it could not handle (a secret)."""
    frames = "".join(traceback.format_tb(exc.__traceback__, limit=-8)).rstrip()
    return f"{type(exc).__name__} (message not shown)\n{frames}"
