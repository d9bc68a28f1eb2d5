"""Computed credentials when the control plane executes an action (SDK Mode A).

The gateway computes them for proxied requests. An action the SDK asks this server to
execute (``POST /api/v1/actions/{id}/execute``) on a connector whose credential is computed
(``github_app``, ``oauth2``, ``aws_sigv4``) gets its headers here the same way: the
connector's injector (``agentfirewall.credentials.build_injector``, built once per
credential) and the shared token broker (``agentfirewall.credentials.broker``: cached, one
fetch under load, the previous token while still valid, else fail closed). Token requests go
over https with this server's client (``AGENTFIREWALL_UPSTREAM_CA`` trusted besides the
system's CAs).

A rotated OAuth2 refresh token goes into the vault (:func:`store_refresh_token`), compared
first, exactly as a gateway's does through ``POST /api/v1/gateway/connectors/{id}/refresh-
token``; the configuration then carries it to every gateway. Storing it ends the
connector's refresh lease (``refreshleases.py``), under which this server, too, refreshes a
rotating grant: one gateway or replica at a time. This server's own rotation is tried again
while the store fails (about a minute: the endpoint spent the token the vault holds). The
executor's scrubber (:meth:`ServerTokens.scrubber`) finds what the connector sent before
too, as the gateway's (``agentfirewall.credentials.sent``). Any exception but a
CredentialError (a defect) in getting the headers or the scrubber is one (the execution
fails closed, 502 ``credential_unavailable``), logged with its traceback, never its message.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Iterator
from functools import partial
from typing import TYPE_CHECKING

from sqlalchemy import Connection, select, update
from sqlalchemy.exc import SQLAlchemyError

from agentfirewall.connectors.base import Connector
from agentfirewall.credentials import (
    AwsInjector,
    Injector,
    Outgoing,
    Rotation,
    Token,
    TokenRequest,
    build_injector,
)
from agentfirewall.credentials.broker import TokenBroker, traceback_of
from agentfirewall.credentials.fetch import send_token_request
from agentfirewall.credentials.oauth2 import with_rotated_refresh_token
from agentfirewall.credentials.sent import secret_bytes
from agentfirewall.errors import CredentialError, VaultError
from agentfirewall.scrubbing import Scrubber
from agentfirewall_server import clock
from agentfirewall_server.audit import append_event
from agentfirewall_server.refreshleases import (
    ServerLeases,
    end_leases,
    held_by_another,
    release,
    server_holder,
)
from agentfirewall_server.store.db import StoreError
from agentfirewall_server.store.schema import credentials
from agentfirewall_server.web import ApiError

if TYPE_CHECKING:
    from agentfirewall_server.protocols import Services

__all__ = ["ServerTokens", "store_refresh_token"]

log = logging.getLogger("agentfirewall_server.tokens")
_TOKEN_TIMEOUT = 30.0
#: Pauses (seconds) between tries to store a rotated refresh token while the store fails
#: (a database restarting, failing over): about a minute in all, then given up (logged).
_STORE_RETRIES = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0)


class ServerTokens:
    """The computed credentials' headers for the executor."""

    def __init__(self, state: Services) -> None:
        self.state = state
        self.leases = ServerLeases(state, server_holder())
        self.broker = TokenBroker(self._send, on_rotated=self._rotated, leases=self.leases)
        self._injectors: dict[tuple[str, str], Injector] = {}
        self._storing: set[asyncio.Task[None]] = set()

    def injector(self, cid: str, connector: Connector, kind: str, secret: str) -> Injector:
        """The injector of connector `cid`'s credential (CredentialError when invalid)."""
        key = (cid, hashlib.sha256(f"{kind}\0{secret}".encode()).hexdigest())
        found = self._injectors.get(key)
        if found is None:
            found = build_injector(cid, connector, kind, secret)
            if len(self._injectors) >= 256:
                self._injectors.clear()
            self._injectors[key] = found
        return found

    async def headers(
        self, injector: Injector, outgoing: Outgoing
    ) -> tuple[list[tuple[str, str]], Token | None]:
        """The credential headers `outgoing` must carry, and the token they carry (None:
        static keys); CredentialError: fail closed."""
        with _failing_closed(f"a request to `{outgoing.host}`"):
            token = await self.broker.token(injector.source) if injector.source else None
            return injector.inject(outgoing, token, self.broker.clock()), token

    def scrubber(self, cid: str, injector: Injector, token: Token | None) -> Scrubber | None:
        """The scrubber of what connector `cid` sends with `token`, and sent before while it
        may be valid (``agentfirewall.credentials.sent``): as the gateway's, the token's
        secrets and a static session token (SigV4's secret never travels). CredentialError
        when it cannot be built: fail closed."""
        static = []
        if isinstance(injector, AwsInjector) and injector.static.session_token:
            static.append(secret_bytes(injector.static.session_token))
        with _failing_closed(f"connector `{cid}`"):
            if token is None:
                return self.broker.sent.scrubber(cid, static)
            secrets = [secret_bytes(value) for value in token.secrets()]
            return self.broker.sent.scrubber(cid, [*secrets, *static], token.expires_at)

    async def _send(self, request: TokenRequest) -> tuple[int, bytes]:
        return await send_token_request(self.state.http, request, timeout=_TOKEN_TIMEOUT)

    def _rotated(self, rotation: Rotation) -> None:
        task = asyncio.ensure_future(self._store(rotation))
        self._storing.add(task)
        task.add_done_callback(self._storing.discard)

    async def _store(self, rotation: Rotation) -> None:
        """Store `rotation`, tried again while the store fails (``_STORE_RETRIES``): the
        token endpoint spent the refresh token the vault holds."""
        cid = rotation.connector_id
        for pause in (*_STORE_RETRIES, None):
            try:
                await store_refresh_token(self.state, cid, rotation.vaulted_sha256,
                                          rotation.refresh_token, actor="server",
                                          lease=rotation.lease)  # fmt: skip
                return
            except ApiError as exc:  # another token came first, or the connector went away
                log.warning("the rotated refresh token of `%s` was not stored: %s", cid,
                            exc.message)  # fmt: skip
                if rotation.lease is not None:  # best effort: else it ends at its expiry
                    with contextlib.suppress(Exception):
                        await self.state.db.write(partial(release, cid=cid, lease=rotation.lease))
                return
            except (SQLAlchemyError, StoreError) as exc:  # (its text may hold parameters)
                if pause is None:
                    log.error("the rotated refresh token of `%s` was not stored: the store "
                              "failed %d times (%s): the vault keeps the one it replaced, "
                              "which the token endpoint spent", cid, len(_STORE_RETRIES) + 1,
                              type(exc).__name__)  # fmt: skip
                    return
                log.warning("the rotated refresh token of `%s` is not stored yet: the store "
                            "failed (%s): tried again in %g s", cid, type(exc).__name__,
                            pause)  # fmt: skip
            await asyncio.sleep(pause)

    async def drain(self) -> None:
        """Wait for the rotations on their way to the vault (shutdown)."""
        if self._storing:
            await asyncio.wait(list(self._storing), timeout=5.0)


@contextlib.contextmanager
def _failing_closed(what: str) -> Iterator[None]:
    """Any exception but a CredentialError (a defect) as one, logged with its traceback
    (never its message: it may name a secret)."""
    try:
        yield
    except CredentialError:
        raise
    except Exception as exc:
        log.error("the credential of %s could not be had: %s", what, traceback_of(exc))
        raise CredentialError(
            "its credential could not be had (an internal error: the server's log says where)"
        ) from None


async def store_refresh_token(
    state: Services,
    cid: str,
    previous_sha256: str,
    refresh_token: str,
    *,
    actor: str,
    lease: str | None = None,
) -> bool:
    """Put a rotated OAuth2 refresh token in the vault in place of the one whose SHA-256 is
    `previous_sha256` (True), or find it there already (False). ApiError 404 without a
    credential, 409 when the vault holds another token now or the credential has no refresh
    token, and 409 (``field`` "lease") when it was refreshed under `lease`, which ended
    while another holder's lease lasts: that holder may be refreshing with the same token,
    so neither its lease nor the vault is touched. Else a 200 ends every refresh lease on
    `cid` (the next holder gets the vault's token). Audited ``connector.credential_rotated``;
    the token is never in a message."""

    def job(conn: Connection) -> bool:
        row = conn.execute(select(credentials).where(credentials.c.owner == cid)).mappings().first()
        if row is None:
            raise ApiError(404, f"no credential for connector `{cid}`")
        try:
            text = state.vault.decrypt(row["ciphertext"], owner=cid)
            rotated = with_rotated_refresh_token(text, previous_sha256, refresh_token)
        except VaultError:
            raise ApiError(409, f"the credential of `{cid}` cannot be read (vault)") from None
        except CredentialError as exc:
            raise ApiError(409, f"`{cid}`: {exc}", field=exc.field) from None
        if lease is not None and held_by_another(conn, cid, lease, clock.now()):
            if rotated == text:  # (stored already: a retry)
                return False
            raise ApiError(
                409,
                f"`{cid}`: the refresh lease `{lease}` ended and another holder's lasts: the "
                "rotation is not stored",
                field="lease",
            )
        end_leases(conn, cid)
        if rotated == text:
            return False
        conn.execute(
            update(credentials)
            .where(credentials.c.owner == cid)
            .values(ciphertext=state.vault.encrypt(rotated, owner=cid))
        )
        append_event(conn, "connector.credential_rotated", actor=actor, now=clock.now(),
                     subject=cid, data={"field": "refresh_token"})  # fmt: skip
        return True

    return await state.change_config(job)
