"""Gateways sharing one rotating OAuth2 grant take turns at its token endpoint.

Each "gateway" here is what a real one holds (a ``TokenBroker`` with its own token cache,
``ControlLeases`` on a shared control plane, the rotation stored as the gateway stores it),
in one event loop; the control plane is ``StaticControl`` (the same lease rules as the
server's route, in memory), and the token endpoint rotates, refuses a used refresh token
and then revokes the whole grant, as providers with reuse detection do. Hypothesis draws how
many gateways, when each asks and how slow the endpoint answers each one.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import itertools
import json
from typing import Any
from urllib.parse import parse_qsl

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentfirewall.connectors import get_connector
from agentfirewall.credentials import Rotation, Token, TokenRequest, build_injector
from agentfirewall.credentials import broker as broker_module
from agentfirewall.credentials.broker import TokenBroker
from agentfirewall.credentials.model import Lease
from agentfirewall.errors import CredentialError
from agentfirewall_proxy.control import ControlError, StaticControl
from agentfirewall_proxy.refreshlease import ControlLeases
from tests.fuzzscale import examples

CID = "conn_oauth"
FIRST = "rt_first"


def _document(refresh_token: str) -> str:
    return json.dumps({"kind": "oauth2", "token_url": "https://auth.example.com/token",
                       "client_id": "cid", "client_secret": "cs", "grant": "refresh_token",
                       "refresh_token": refresh_token})  # fmt: skip


def _control() -> StaticControl:
    return StaticControl({"version": 1, "connectors": [
        {"id": CID, "name": "generic", "type": "generic", "domains": ["api.example.com"],
         "auth_type": "oauth2", "credential": _document(FIRST)}]})  # fmt: skip


def _vaulted(control: StaticControl) -> str:
    (found,) = control._snapshot["connectors"]
    return str(json.loads(found["credential"])["refresh_token"])


class Endpoint:
    """A token endpoint that rotates refresh tokens, refuses a used one and then revokes
    the grant; each answer comes back after the delay the test gives its caller."""

    def __init__(self) -> None:
        self.valid = {FIRST}
        self.sent: list[str] = []
        self.reused: list[str] = []
        self.minted: set[str] = set()
        self._ids = itertools.count(1)

    async def answer(self, request: TokenRequest, delay: float) -> tuple[int, bytes]:
        form = dict(parse_qsl(request.body.decode()))
        token = form["refresh_token"]
        self.sent.append(token)
        if token not in self.valid:
            self.reused.append(token)
            self.valid.clear()  # reuse detection: every token of the grant revoked
            status, body = 400, {"error": "invalid_grant"}
        else:
            self.valid.discard(token)
            n = next(self._ids)
            rotated, access = f"rt_{n}", f"at_{n}"
            self.valid.add(rotated)
            self.minted.add(access)
            status, body = 200, {"access_token": access, "expires_in": 3600,
                                 "refresh_token": rotated}  # fmt: skip
        await asyncio.sleep(delay)  # the answer on its way back: others may ask meanwhile
        return status, json.dumps(body).encode()


class Gateway:
    """What one gateway holds: its broker, its leases, its rotations on their way."""

    def __init__(self, name: str, control: StaticControl, endpoint: Endpoint, *,
                 delay: float, leased: bool = True, clock: Any = None) -> None:  # fmt: skip
        self.control = control
        self.said: list[str] = []
        self.storing: set[asyncio.Task[None]] = set()
        leases = ControlLeases(control, name, lambda m, _level: self.said.append(m))
        self.broker = TokenBroker(
            lambda request: endpoint.answer(request, delay),
            clock=clock or __import__("time").time,
            on_rotated=self._rotated,
            leases=leases if leased else None,
        )

    def source(self) -> Any:
        """The source as this gateway's current configuration builds it."""
        (found,) = self.control._snapshot["connectors"]
        injector = build_injector(CID, get_connector("generic"), "oauth2", found["credential"])
        return injector.source

    def _rotated(self, rotation: Rotation) -> None:
        payload = {"previous_sha256": rotation.vaulted_sha256,
                   "refresh_token": rotation.refresh_token, "lease": rotation.lease}  # fmt: skip
        task = asyncio.ensure_future(self.control.store_refresh_token(CID, payload))
        self.storing.add(task)
        task.add_done_callback(self.storing.discard)

    async def token(self, after: float) -> Token:
        await asyncio.sleep(after)
        return await self.broker.token(self.source())


async def _drain(gateways: list[Gateway]) -> None:
    for gateway in gateways:
        if gateway.storing:
            await asyncio.gather(*gateway.storing)
        if gateway.broker._releasing:
            await asyncio.gather(*gateway.broker._releasing)


@settings(max_examples=examples(25), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    schedule=st.lists(st.tuples(st.floats(0, 0.01), st.floats(0, 0.02)), min_size=2, max_size=5),
    rounds=st.integers(1, 3),
)
def test_gateways_sharing_a_rotating_grant_never_send_a_used_token(
    schedule: list[tuple[float, float]], rounds: int
) -> None:
    async def run() -> None:
        control, endpoint = _control(), Endpoint()
        now = [1_800_000_000.0]
        gateways = [Gateway(f"gw_{i}", control, endpoint, delay=delay, clock=lambda: now[0])
                    for i, (_, delay) in enumerate(schedule)]  # fmt: skip
        for _ in range(rounds):
            tokens = await asyncio.gather(
                *(g.token(after) for g, (after, _) in zip(gateways, schedule, strict=True))
            )
            await _drain(gateways)
            assert endpoint.reused == []  # never a used refresh token: the grant lives
            assert all(t.get("token") in endpoint.minted for t in tokens)
            assert endpoint.valid == {_vaulted(control)}  # the vault holds the live one
            assert control._leases == {}  # every lease ended
            now[0] += 3600  # every cached token is due: the next round refreshes again
        assert len(endpoint.sent) == len(set(endpoint.sent)) == len(schedule) * rounds

    asyncio.run(run())


def test_without_leases_the_same_moment_spends_the_grant() -> None:
    """The race the leases close: two gateways refreshing together send one token twice,
    and an endpoint with reuse detection then revokes the grant."""

    async def run() -> None:
        control, endpoint = _control(), Endpoint()
        gateways = [Gateway(f"gw_{i}", control, endpoint, delay=0.01, leased=False)
                    for i in range(2)]  # fmt: skip
        found = await asyncio.gather(*(g.token(0) for g in gateways), return_exceptions=True)
        assert endpoint.reused == [FIRST]
        assert any(isinstance(f, CredentialError) for f in found)
        assert endpoint.valid == set()  # revoked

    asyncio.run(run())


def test_a_request_holding_a_valid_token_does_not_wait_for_the_lease(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """While another holder keeps the lease, a due refresh waits for it; requests that hold
    a token still valid get that token after STALE_WAIT, not after the lease."""
    monkeypatch.setattr(broker_module, "STALE_WAIT", 0.05)

    async def run() -> None:
        control, endpoint = _control(), Endpoint()
        now = [1_800_000_000.0]
        gateway = Gateway("gw_a", control, endpoint, delay=0, clock=lambda: now[0])
        first = await gateway.token(0)
        await _drain([gateway])
        await control.refresh_lease(CID, "gw_other")  # another gateway is refreshing
        now[0] = first.refresh_at + 1  # due, still valid
        again = await gateway.token(0)
        assert again is first
        assert gateway.broker._inflight  # the refresh still waits for the lease
        del control._leases[CID]  # the other holder's lease ends (its expiry)
        while gateway.broker._inflight:
            await asyncio.sleep(0.01)
        fresh = await gateway.token(0)
        assert fresh is not first
        assert fresh.get("token") in endpoint.minted
        assert endpoint.reused == []

    asyncio.run(run())


def test_a_lease_never_ending_fails_the_refresh_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(broker_module, "LEASE_WAIT", 0.2)

    async def run() -> None:
        control, endpoint = _control(), Endpoint()
        gateway = Gateway("gw_a", control, endpoint, delay=0)
        await control.refresh_lease(CID, "gw_stuck")
        with pytest.raises(CredentialError, match="lease has not ended"):
            await gateway.token(0)
        assert endpoint.sent == []  # nothing sent with a token another holder may be using

    asyncio.run(run())


class _Away:
    """A control plane that cannot be reached (or answers as given)."""

    def __init__(self, status: int) -> None:
        self.status = status

    async def refresh_lease(self, connector_id: str, holder: str) -> dict[str, Any]:
        raise ControlError("control plane unreachable", self.status)

    async def release_refresh_lease(self, connector_id: str, lease: str) -> None:
        raise ControlError("control plane unreachable", self.status)


@pytest.mark.parametrize("status", [0, 502, 503])
def test_without_a_control_plane_the_refresh_goes_on_unleased(status: int) -> None:
    said: list[str] = []
    leases = ControlLeases(_Away(status), "gw_a", lambda m, _level: said.append(m))  # type: ignore[arg-type]
    assert asyncio.run(leases.acquire(CID)) is None
    assert "without a lease" in said[0]
    assert FIRST not in said[0]


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409])
def test_a_refused_lease_fails_the_refresh_closed(status: int) -> None:
    leases = ControlLeases(_Away(status), "gw_a", lambda m, _level: None)  # type: ignore[arg-type]
    with pytest.raises(CredentialError, match="no refresh lease"):
        asyncio.run(leases.acquire(CID))


def test_the_rotation_names_its_lease_and_a_failed_refresh_releases_it() -> None:
    async def run() -> None:
        control, endpoint = _control(), Endpoint()
        rotations: list[Rotation] = []
        leases = ControlLeases(control, "gw_a", lambda m, _level: None)

        async def refused(request: TokenRequest) -> tuple[int, bytes]:
            return 400, b'{"error": "invalid_grant"}'

        failing = TokenBroker(refused, on_rotated=rotations.append, leases=leases)
        gateway = Gateway("gw_a", control, endpoint, delay=0)
        with pytest.raises(CredentialError, match="invalid_grant"):
            await failing.token(gateway.source())
        await asyncio.gather(*failing._releasing)
        assert control._leases == {}  # released: the next holder need not wait

        working = TokenBroker(lambda r: endpoint.answer(r, 0), on_rotated=rotations.append,
                              leases=leases)  # fmt: skip
        await working.token(gateway.source())
        (rotation,) = rotations
        lease_id = control._leases[CID][0]
        assert rotation.lease == lease_id  # the store ends it
        assert rotation.vaulted_sha256 == hashlib.sha256(FIRST.encode()).hexdigest()
        assert "rt_1" not in repr(rotation)
        assert "rt_1" not in repr(Lease(lease_id, "rt_1", 30.0))
        assert dataclasses.replace(rotation, lease=None).lease is None

    asyncio.run(run())
