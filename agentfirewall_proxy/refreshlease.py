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
could still race. Any other refusal fails the refresh (fail closed).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from agentfirewall.credentials.model import Lease
from agentfirewall.errors import CredentialError, LeaseBusy
from agentfirewall_proxy.control import Control, ControlError

__all__ = ["ControlLeases"]


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
        lease, token = data.get("lease"), data.get("refresh_token")
        if not isinstance(lease, str) or not isinstance(token, str) or not token:
            raise CredentialError(f"the refresh lease of `{connector_id}` came without a token")
        return Lease(lease, token)

    async def release(self, connector_id: str, lease: Lease) -> None:
        with contextlib.suppress(ControlError):  # unreleased, it ends at its expiry
            await self.control.release_refresh_lease(connector_id, lease.id)
