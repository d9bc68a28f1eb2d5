"""A token request never outlives the refresh lease it was sent under.

The defect (security review, probe 1): a token endpoint slower than the lease (lease 1 s,
endpoint 2.5 s; by default a 30 s lease and a client timing each phase up to 30 s) let the
lease expire while the refresh was in flight; a second gateway took it and sent the same
refresh token, and the provider's reuse detection revoked the grant. The late refresh then
stored its rotation over the second holder's and ended its lease.

Now the holder renews its lease while it waits for the answer (asking again as the same
holder), and gives the request up before the lease may end when it cannot renew it. In one
event loop, as ``test_refresh_leases.py``: two gateways' brokers, one control plane's
leases (``StaticControl``: the server's rules, in memory), an endpoint with reuse detection.
The control plane's side (a late rotation refused) is ``tests/server/
test_refresh_leases_stale.py``.
"""

from __future__ import annotations

import asyncio

import pytest

from agentfirewall.credentials import TokenRequest
from agentfirewall.credentials.broker import TokenBroker
from agentfirewall.credentials.model import Lease
from agentfirewall.errors import CredentialError
from agentfirewall_proxy import control as control_module
from tests.credentials.test_refresh_leases import (
    CID,
    FIRST,
    Endpoint,
    Gateway,
    _control,
    _drain,
    _vaulted,
)


def test_a_refresh_slower_than_its_lease_keeps_it_and_the_grant_lives(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The probe's scenario: the endpoint answers the first gateway after 2.5 leases; the
    second asks for its token once the first's lease would have expired unrenewed."""
    monkeypatch.setattr(control_module, "LEASE_SECONDS", 0.3)

    async def run() -> None:
        control, endpoint = _control(), Endpoint()
        slow = Gateway("gw_slow", control, endpoint, delay=0.75)
        other = Gateway("gw_other", control, endpoint, delay=0.0)
        first, second = await asyncio.gather(slow.token(0), other.token(0.45))
        await _drain([slow, other])
        assert endpoint.reused == []  # never the same refresh token twice: the grant lives
        assert endpoint.sent == [FIRST, "rt_1"]  # the second refreshed with the rotated one
        assert {first.get("token"), second.get("token")} == {"at_1", "at_2"}
        assert endpoint.valid == {_vaulted(control)} == {"rt_2"}
        assert control._leases == {}  # every lease ended

    asyncio.run(run())


class _Unrenewable:
    """A lease of 0.2 s that cannot be renewed (the control plane stopped answering, or
    another holder took it)."""

    def __init__(self) -> None:
        self.released: list[str] = []

    async def acquire(self, connector_id: str) -> Lease:
        return Lease("rfl_1", FIRST, 0.2)

    async def renew(self, connector_id: str, lease: Lease) -> Lease | None:
        return None

    async def release(self, connector_id: str, lease: Lease) -> None:
        self.released.append(lease.id)


def test_a_refresh_whose_lease_cannot_be_renewed_is_given_up_before_it_ends() -> None:
    ended: list[str] = []

    async def slow(request: TokenRequest) -> tuple[int, bytes]:
        try:
            await asyncio.sleep(30)  # (the endpoint never answers in the lease's time)
        except asyncio.CancelledError:
            ended.append("abandoned")
            raise
        return 200, b'{"access_token": "at_late", "refresh_token": "rt_late"}'

    async def run() -> None:
        leases = _Unrenewable()
        rotated: list[object] = []
        broker = TokenBroker(slow, on_rotated=rotated.append, leases=leases)
        source = Gateway("gw_a", _control(), Endpoint(), delay=0).source()
        with pytest.raises(CredentialError, match="could not be renewed"):
            await broker.token(source)
        await asyncio.gather(*broker._releasing)
        assert ended == ["abandoned"]  # not left in flight past the lease
        assert rotated == []  # nothing to store
        assert leases.released == ["rfl_1"]

    asyncio.run(run())


def test_a_lease_comes_with_its_time() -> None:
    """The broker needs the lease's duration: a control plane answering none is refused."""
    from agentfirewall_proxy.refreshlease import ControlLeases

    class _Timeless:
        async def refresh_lease(self, connector_id: str, holder: str) -> dict[str, object]:
            return {"lease": "rfl_1", "refresh_token": FIRST}

    leases = ControlLeases(_Timeless(), "gw_a", lambda m, _level: None)  # type: ignore[arg-type]
    with pytest.raises(CredentialError, match="without its time"):
        asyncio.run(leases.acquire(CID))
    granted = asyncio.run(ControlLeases(_control(), "gw_a", lambda m, _l: None).acquire(CID))
    assert granted is not None
    assert granted.seconds == control_module.LEASE_SECONDS
