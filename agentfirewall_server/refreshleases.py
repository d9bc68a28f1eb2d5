"""Refresh leases: one process at a time refreshes a connector's rotating OAuth2 grant.

A token endpoint that rotates refresh tokens refuses a used one, and with reuse detection
revokes the whole grant on it. Every gateway and every replica of this server (executing an
SDK action: ``tokens.py``) refreshes the same vaulted grant, so two refreshes at the same
moment with the same refresh token would destroy it. Before refreshing, a process takes the
connector's lease here (``POST /api/v1/gateway/connectors/{id}/refresh-lease``, or
:class:`ServerLeases` in this server):

- granted: a row of ``refresh_leases`` (connector, lease id, holder, expiry), and the refresh
  token the vault holds now, the one to refresh with (``agentfirewall.credentials.broker``);
- busy: another holder's row has not expired: 409 ``refresh_in_progress`` with
  ``Retry-After`` (the seconds it has left); the same holder asking again keeps its lease
  and extends it; an expired row (a holder that died) is anyone's, under a new lease id.

The lease ends when the rotation is stored (``tokens.store_refresh_token`` deletes the
connector's rows in the same transaction: the vault's token changed, so the next holder
gets the new one), when its holder releases it (the refresh failed, or rotated nothing),
or at its expiry (``AGENTFIREWALL_REFRESH_LEASE_SECONDS``). A holder renews it by asking
again while its token request is in flight (the broker gives the request up if it cannot).
A rotation refreshed under a lease that ended while another holder's lasts is not stored
(:func:`held_by_another`): that holder's lease is not ended by it.

The jobs run in the writer (``state.db.write``), never as configuration: a lease does not
bump the configuration version. Concurrency: a grant locks the connector's credential row
(``SELECT ... FOR UPDATE``) before it reads the lease row, so two replicas' writers asking
for one connector at once take turns (on PostgreSQL every writer transaction also holds
the store's advisory lock; SQLite's writer transaction is ``BEGIN IMMEDIATE``): exactly one
is granted. Leases are not audited (frequent plumbing); the rotation they lead to is.
"""

from __future__ import annotations

import math
import secrets
from functools import partial
from typing import TYPE_CHECKING

from sqlalchemy import Connection, delete, insert, select, update
from sqlalchemy.exc import SQLAlchemyError

from agentfirewall.credentials import Lease, OAuth2Credential, parse_computed_credential
from agentfirewall.errors import CredentialError, LeaseBusy, VaultError
from agentfirewall_server import clock
from agentfirewall_server.clock import new_id
from agentfirewall_server.store.db import StoreError
from agentfirewall_server.store.schema import credentials, refresh_leases
from agentfirewall_server.vault import Keyring
from agentfirewall_server.web import ApiError

if TYPE_CHECKING:
    from agentfirewall_server.protocols import Services

__all__ = [
    "BUSY",
    "ServerLeases",
    "acquire",
    "end_leases",
    "held_by_another",
    "release",
    "server_holder",
]

#: The error code of a lease another holder has.
BUSY = "refresh_in_progress"
_L = refresh_leases.c


def acquire(
    conn: Connection, cid: str, holder: str, now: float, ttl: float, vault: Keyring
) -> tuple[str, str, float]:
    """(lease id, the vault's refresh token, seconds the lease lasts) for `holder`.

    ApiError 404 without a credential; 409 when it cannot be read or has no OAuth2
    refresh-token grant (``field="grant"``); 409 ``refresh_in_progress`` (Retry-After)
    while another holder's lease lasts."""
    row = conn.execute(
        select(credentials.c.ciphertext).where(credentials.c.owner == cid).with_for_update()
    ).first()  # the connector's turn: every grant of `cid` waits here for the one before
    if row is None:
        raise ApiError(404, f"no credential for connector `{cid}`")
    refresh_token = _refresh_token(vault, cid, row.ciphertext)
    held = conn.execute(select(refresh_leases).where(_L.connector_id == cid)).first()
    if held is not None and held.expires_at > now and held.holder != holder:
        remaining = held.expires_at - now
        raise ApiError(
            409,
            f"another gateway is refreshing the token of `{cid}`: ask again in {remaining:.1f} s",
            code=BUSY,
            headers={"Retry-After": str(max(1, math.ceil(remaining)))},
            retry_after=max(round(remaining, 3), 0.001),  # busy: never "again in 0 s"
        )
    expires_at = now + ttl
    if held is None:
        lease = new_id("rfl_")
        conn.execute(
            insert(refresh_leases).values(
                connector_id=cid, lease=lease, holder=holder, expires_at=expires_at
            )
        )
    else:  # the holder asking again keeps its lease; an expired one is replaced
        lease = held.lease if held.holder == holder and held.expires_at > now else new_id("rfl_")
        conn.execute(
            update(refresh_leases)
            .where(_L.connector_id == cid)
            .values(lease=lease, holder=holder, expires_at=expires_at)
        )
    return lease, refresh_token, ttl


def _refresh_token(vault: Keyring, cid: str, ciphertext: str) -> str:
    try:
        text = vault.decrypt(ciphertext, owner=cid)
    except VaultError:
        raise ApiError(409, f"the credential of `{cid}` cannot be read (vault)") from None
    try:
        credential = parse_computed_credential(text, "oauth2")
    except CredentialError:
        credential = None
    if (
        not isinstance(credential, OAuth2Credential)
        or credential.grant != "refresh_token"
        or not credential.refresh_token
    ):
        raise ApiError(
            409,
            f"the credential of `{cid}` is not an OAuth2 `refresh_token` grant: it takes no "
            "refresh lease",
            field="grant",
        )
    return credential.refresh_token


def release(conn: Connection, cid: str, lease: str) -> bool:
    """End `lease` on `cid` (True), or find it ended already (False: released, expired and
    taken by another, or the rotation stored)."""
    ended = conn.execute(delete(refresh_leases).where(_L.connector_id == cid, _L.lease == lease))
    return bool(ended.rowcount)


def end_leases(conn: Connection, cid: str) -> None:
    """End every lease on `cid`: the vault's refresh token changed (or went away)."""
    conn.execute(delete(refresh_leases).where(_L.connector_id == cid))


def held_by_another(conn: Connection, cid: str, lease: str, now: float) -> bool:
    """Whether a lease on `cid` other than `lease` lasts at `now`: `lease` ended, and
    another holder took the grant's turn (it may be refreshing with the same token)."""
    held = conn.execute(select(refresh_leases).where(_L.connector_id == cid)).first()
    return held is not None and held.lease != lease and held.expires_at > now


def server_holder() -> str:
    """This process's holder name: one per server process (each replica its own)."""
    return "server:" + secrets.token_hex(8)


class ServerLeases:
    """The core's ``Leases`` for this server's own refreshes (``tokens.ServerTokens``): the
    jobs above, run in this process's writer."""

    def __init__(self, state: Services, holder: str) -> None:
        self.state = state
        self.holder = holder

    async def acquire(self, connector_id: str) -> Lease:
        ttl = self.state.settings.refresh_lease_seconds

        def job(conn: Connection) -> tuple[str, str, float]:
            return acquire(conn, connector_id, self.holder, clock.now(), ttl, self.state.vault)

        try:
            lease, refresh_token, seconds = await self.state.db.write(job)
        except ApiError as exc:
            if exc.code == BUSY:
                raise LeaseBusy(exc.message, retry_after=exc.extra["retry_after"]) from None
            raise CredentialError(exc.message, field=exc.extra.get("field")) from None
        except (SQLAlchemyError, StoreError):  # fail closed, as for a token endpoint down
            raise CredentialError(
                f"the refresh lease of `{connector_id}` cannot be had: the store failed"
            ) from None
        return Lease(lease, refresh_token, seconds)

    async def renew(self, connector_id: str, lease: Lease) -> Lease | None:
        """`lease` asked for again (this holder keeps it, from now on); None when it cannot
        be, or another was granted (ours ended: released, unused)."""
        try:
            renewed = await self.acquire(connector_id)
        except CredentialError:
            return None
        if renewed.id != lease.id:
            await self.release(connector_id, renewed)
            return None
        return renewed

    async def release(self, connector_id: str, lease: Lease) -> None:
        await self.state.db.write(partial(release, cid=connector_id, lease=lease.id))
