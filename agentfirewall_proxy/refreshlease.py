"""The gateway's refresh leases: one gateway at a time refreshes a rotating OAuth2 grant.

Gateways (and control-plane replicas) that share a vaulted refresh-token grant take turns
at its token endpoint (``agentfirewall.credentials.broker``): before refreshing, the gateway
asks the control plane for the connector's lease (``POST /api/v1/gateway/connectors/{id}/
refresh-lease``), which names the refresh token the vault holds now. Storing the rotation
ends the lease; a refresh that rotated nothing, or failed, releases it. While another
holder has it the control plane answers 409 with ``Retry-After`` (:class:`LeaseBusy`: the
broker waits and asks again).

When the control plane cannot be reached the refresh goes ahead without a lease, with the
token of the last configuration (as a gateway keeps enforcing its last configuration): the
tokens keep flowing, and only gateways cut off together and refreshing at the same moment
could still race. Any other refusal fails the refresh (fail closed). While its token
request is in flight the broker renews the lease (:meth:`ControlLeases.renew`: the same
holder asking again), and gives the request up before the lease may end if it cannot.

:class:`Rotations` sends each rotated refresh token to the vault (``POST .../refresh-token``)
and sends it again while the control plane does not answer, for as long as the gateway runs
(a pause doubling up to 30 s, cut short once the control plane answers the gateway again):
the endpoint spent the token the vault holds, and a gateway starting with it (or another
one refreshing with it) would have a grant with reuse detection revoked. A rotation that is
no valid refresh token (``1*VSCHAR``) is never queued, and one whose store fails otherwise
(a defect) is dropped, said once (never the token): its lease is released either way, and
the connector's later rotations are sent all the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable, Coroutine
from typing import Any

from agentfirewall.credentials.broker import traceback_of
from agentfirewall.credentials.model import Lease, Rotation, vschar
from agentfirewall.errors import CredentialError, LeaseBusy
from agentfirewall_proxy.control import JSON, Control, ControlError

__all__ = ["STORE_RETRIES", "ControlLeases", "Rotations"]

#: Pauses (seconds) between tries to store a rotated refresh token while the control plane
#: is away: these, then the last again for as long as the gateway runs.
STORE_RETRIES = (1.0, 2.0, 4.0, 8.0, 16.0, 30.0)
#: How often (seconds) a pause looks whether the control plane answered meanwhile.
_NOTICE = 0.5


class ControlLeases:
    """:class:`agentfirewall.credentials.model.Leases` through the gateway's control plane."""

    def __init__(self, control: Control, holder: str, say: Callable[[str, str], None]) -> None:
        self.control = control
        #: Who holds the leases taken here (the gateway's id): asking again renews.
        self.holder = holder
        self.say = say

    async def acquire(self, connector_id: str) -> Lease | None:
        try:
            data = await self.control.refresh_lease(connector_id, self.holder)
        except ControlError as exc:
            if exc.status == 409 and exc.retry_after is not None:
                raise LeaseBusy(str(exc), retry_after=exc.retry_after) from None
            if exc.status == 0 or exc.status >= 500:
                self.say(
                    f"agentfirewall_proxy: refreshing the token of `{connector_id}` without "
                    f"a lease ({exc}): with the last configuration's refresh token",
                    "warning",
                )
                return None
            raise CredentialError(f"no refresh lease for `{connector_id}`: {exc}") from None
        return _lease(connector_id, data)

    async def renew(self, connector_id: str, lease: Lease) -> Lease | None:
        """`lease` asked for again (the same holder keeps it, from now on); None when the
        control plane does not grant it, or grants another (then released: unused)."""
        try:
            data = await self.control.refresh_lease(connector_id, self.holder)
            renewed = _lease(connector_id, data)
        except (ControlError, CredentialError):
            return None
        if renewed.id != lease.id:  # (ours ended: this one is new)
            await self.release(connector_id, renewed)
            return None
        return renewed

    async def release(self, connector_id: str, lease: Lease) -> None:
        with contextlib.suppress(ControlError):  # unreleased, it ends at its expiry
            await self.control.release_refresh_lease(connector_id, lease.id)


class Rotations:
    """Rotated refresh tokens on their way to the vault: one writer per connector (two
    never race), sent again while the control plane is away, at once when `heard` (when it
    last answered, monotonic) says it is back; a newer rotation replaces one still waiting
    (see :meth:`Rotation.after`). The writers are added to `tasks`, which the gateway waits
    for when it stops."""

    def __init__(
        self,
        control: Control,
        say: Callable[[str, str], None],
        tasks: set[asyncio.Task[None]],
        heard: Callable[[], float] | None = None,
    ) -> None:
        self.control = control
        self.say = say
        self.tasks = tasks
        self.heard = heard
        self._waiting: dict[str, Rotation] = {}

    def put(self, rotation: Rotation) -> None:
        """Store `rotation`, in the background (the token carrying it serves meanwhile)."""
        cid = rotation.connector_id
        if not vschar(rotation.refresh_token):  # (the broker's token reader checks it first)
            self.say(f"agentfirewall_proxy: the rotated refresh token of connector `{cid}` "
                     "was not stored: not a valid one", "error")  # fmt: skip
            self._spawn(self._release(rotation))
            return
        writing = cid in self._waiting
        self._waiting[cid] = rotation
        if not writing:
            self._spawn(self._write(cid))

    def _spawn(self, job: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(job)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _write(self, cid: str) -> None:
        where = f"the rotated refresh token of connector `{cid}`"
        pauses = iter(STORE_RETRIES)
        said = False
        try:
            while True:
                rotation = self._waiting[cid]
                try:
                    stored = await self._store(rotation, where)
                except Exception as exc:  # a defect: this one dropped, the next ones sent
                    self.say(f"agentfirewall_proxy: {where} was not stored: "
                             f"{traceback_of(exc)}", "error")  # fmt: skip
                    await self._release(rotation)
                    stored = False
                failed_at = time.monotonic()
                if isinstance(stored, ControlError):  # the control plane away: the latest again
                    if not said:  # (once; never the token)
                        said = True
                        self.say(f"agentfirewall_proxy: {where} is not stored yet ({stored}): "
                                 "sent again until the control plane answers",
                                 "warning")  # fmt: skip
                    await self._pause(next(pauses, STORE_RETRIES[-1]), failed_at)
                    continue
                newer = self._waiting[cid]
                if newer is rotation:
                    del self._waiting[cid]
                    return
                self._waiting[cid] = newer.after(rotation) if stored else newer
        except asyncio.CancelledError:
            self.say(f"agentfirewall_proxy: {where} was not stored before the gateway stopped: "
                     "the vault keeps the one the token endpoint spent (the grant may need a "
                     "new refresh token)", "error")  # fmt: skip
            raise
        finally:  # (however it ends: the next rotation starts a writer)
            self._waiting.pop(cid, None)

    async def _pause(self, seconds: float, failed_at: float) -> None:
        """`seconds`, or less once the control plane answered since `failed_at`."""
        ends = time.monotonic() + seconds
        while (left := ends - time.monotonic()) > 0:
            if self.heard is not None and self.heard() > failed_at:
                return  # (it is back: the vault at once, before another gateway refreshes)
            await asyncio.sleep(min(left, _NOTICE))

    async def _store(self, rotation: Rotation, where: str) -> bool | ControlError:
        """Stored (True), refused (False: said, its lease released), or why not answered."""
        payload = {"previous_sha256": rotation.vaulted_sha256,
                   "refresh_token": rotation.refresh_token, "lease": rotation.lease}  # fmt: skip
        try:
            await self.control.store_refresh_token(rotation.connector_id, payload)
            return True  # (that ended the lease)
        except ControlError as exc:
            if exc.status not in (404, 409):
                return exc
            self.say(f"agentfirewall_proxy: {where} was not stored: {exc}", "warning")
        await self._release(rotation)  # another token won, or none: its lease is moot
        return False

    async def _release(self, rotation: Rotation) -> None:
        """The lease `rotation` was refreshed under released (best effort: unreleased, it
        ends at its expiry)."""
        if rotation.lease is not None:
            with contextlib.suppress(Exception):
                await self.control.release_refresh_lease(rotation.connector_id, rotation.lease)


def _lease(connector_id: str, data: JSON) -> Lease:
    """The lease the control plane granted: its id, the vault's refresh token, its seconds."""
    lease, token, seconds = data.get("lease"), data.get("refresh_token"), data.get("expires_in")
    if not isinstance(lease, str) or not isinstance(token, str) or not token:
        raise CredentialError(f"the refresh lease of `{connector_id}` came without a token")
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        seconds = math.nan
    if not 0 < seconds < math.inf:
        raise CredentialError(f"the refresh lease of `{connector_id}` came without its time")
    return Lease(lease, token, float(seconds))
