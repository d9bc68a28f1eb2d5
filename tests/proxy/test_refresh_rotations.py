"""A rotated refresh token reaches the vault however long the control plane is away.

The defect (security review, probe 4): the gateway sent a rotated refresh token to the vault
at most seven times over about 63 s, then dropped it; the vault kept the spent one, and the
next gateway (or this one restarted) refreshed with it: reuse detection revoked the grant.
Now the gateway's writer (``refreshlease.Rotations``) sends it again, a pause doubling up to
30 s, for as long as the gateway runs, saying so once (never the token); one writer per
connector, a newer rotation replacing one still waiting (it was refreshed with that one's
token, which it replaces once stored). The vault is ``StaticControl``'s (the control
plane's compare-then-write, in memory) behind a network that fails as each test says.

Second review (probe 3): a store failing with anything but a ControlError (a token httpx
could not encode) killed the writer and left the connector marked as being written: no
later rotation of the connector was ever sent. Now that rotation is dropped (said once,
never the token; its lease released), the writer goes on, and a rotation that is no valid
refresh token is never queued.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from typing import Any

import pytest

from agentfirewall.credentials import Rotation
from agentfirewall_proxy import refreshlease
from agentfirewall_proxy.control import ControlError, StaticControl
from agentfirewall_proxy.refreshlease import Rotations

CID = "conn_oauth"
FIRST = "rt_first"


def _sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Away:
    """The control plane's vault (``StaticControl``) behind a network that fails `failures`
    times, then answers; each call may wait for `gate`."""

    def __init__(self, failures: int) -> None:
        document = {"kind": "oauth2", "token_url": "https://auth.example.com/token",
                    "client_id": "c", "client_secret": "cs", "grant": "refresh_token",
                    "refresh_token": FIRST}  # fmt: skip
        self.vault = StaticControl({"version": 1, "connectors": [
            {"id": CID, "name": "generic", "type": "generic", "domains": ["api.example.com"],
             "auth_type": "oauth2", "credential": json.dumps(document)}]})  # fmt: skip
        self.failures = failures
        self.sent: list[str] = []
        self.gate: asyncio.Event | None = None
        #: Refresh tokens whose store fails with a defect (not a ControlError).
        self.defects: set[str] = set()
        self.released: list[str] = []

    async def store_refresh_token(self, connector_id: str, payload: dict[str, Any]) -> None:
        self.sent.append(payload["refresh_token"])
        if self.gate is not None:
            await self.gate.wait()
        if payload["refresh_token"] in self.defects:
            raise UnicodeEncodeError("utf-8", payload["refresh_token"], 0, 1, "a defect")
        if self.failures:
            self.failures -= 1
            raise ControlError("control plane unreachable: ConnectError", 0)
        await self.vault.store_refresh_token(connector_id, payload)

    async def release_refresh_lease(self, connector_id: str, lease: str) -> None:
        self.released.append(lease)

    def vaulted(self) -> str:
        (found,) = self.vault._snapshot["connectors"]
        return str(json.loads(found["credential"])["refresh_token"])


@pytest.fixture(autouse=True)
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(refreshlease, "STORE_RETRIES", (0.001, 0.002))


def _writer(control: Away) -> tuple[Rotations, set[asyncio.Task[None]], list[str]]:
    said: list[str] = []
    tasks: set[asyncio.Task[None]] = set()
    return Rotations(control, lambda m, _level: said.append(m), tasks), tasks, said  # type: ignore[arg-type]


def test_a_rotation_is_stored_however_many_times_the_control_plane_fails() -> None:
    async def run() -> None:
        control = Away(failures=50)  # (the old writer gave up after 7 tries)
        rotations, tasks, said = _writer(control)
        rotations.put(Rotation(CID, _sha(FIRST), "rt_1", "lease_1"))
        await asyncio.gather(*tasks)
        assert control.vaulted() == "rt_1"
        assert control.sent == ["rt_1"] * 51
        (pending,) = said  # said once, never the token
        assert "is not stored yet" in pending
        assert "rt_1" not in pending

    asyncio.run(run())


def test_a_newer_rotation_replaces_one_still_waiting() -> None:
    async def run() -> None:
        control = Away(failures=3)
        rotations, tasks, _ = _writer(control)
        rotations.put(Rotation(CID, _sha(FIRST), "rt_1"))
        await asyncio.sleep(0)  # (its first try under way)
        rotations.put(Rotation(CID, _sha(FIRST), "rt_2"))  # refreshed again with rt_1
        assert len(tasks) == 1  # one writer for the connector
        await asyncio.gather(*tasks)
        assert control.vaulted() == "rt_2"
        assert control.sent[-1] == "rt_2"
        assert control.sent.count("rt_1") == 1

    asyncio.run(run())


@pytest.mark.parametrize("defect", [False, True])
def test_a_rotation_made_while_the_last_was_being_stored_replaces_that_one(defect: bool) -> None:
    """rt_2 was refreshed with rt_1 while rt_1 was on its way: once rt_1 is stored, rt_2
    replaces it (not the token both were made from, which the vault no longer holds); and
    when rt_1's store fails with a defect, rt_2 is still sent (in place of the vault's)."""

    async def run() -> None:
        control = Away(failures=0)
        control.gate = asyncio.Event()
        if defect:
            control.defects.add("rt_1")
        rotations, tasks, said = _writer(control)
        rotations.put(Rotation(CID, _sha(FIRST), "rt_1"))
        await asyncio.sleep(0.01)  # rt_1's store in flight
        rotations.put(Rotation(CID, _sha(FIRST), "rt_2"))
        control.gate.set()
        await asyncio.gather(*tasks)
        assert control.sent == ["rt_1", "rt_2"]
        assert control.vaulted() == "rt_2"  # not rt_1, which the endpoint spent
        assert len(said) == defect

    asyncio.run(run())


def test_the_control_plane_answering_again_ends_the_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    """Once it answers the gateway again (its config, a heartbeat), the rotation goes at once:
    another gateway starting then would refresh with the vault's spent token."""
    monkeypatch.setattr(refreshlease, "STORE_RETRIES", (3600.0,))
    monkeypatch.setattr(refreshlease, "_NOTICE", 0.01)

    async def run() -> None:
        control = Away(failures=1)
        heard = [0.0]
        said: list[str] = []
        tasks: set[asyncio.Task[None]] = set()
        rotations = Rotations(control, lambda m, _l: said.append(m), tasks, lambda: heard[0])  # type: ignore[arg-type]
        rotations.put(Rotation(CID, _sha(FIRST), "rt_1"))
        await asyncio.sleep(0.05)
        assert control.sent == ["rt_1"]
        assert control.vaulted() == FIRST
        heard[0] = time.monotonic()  # the control plane answered
        await asyncio.wait_for(asyncio.gather(*tasks), 30)
        assert control.vaulted() == "rt_1"

    asyncio.run(run())


def test_a_gateway_stopping_with_a_rotation_waiting_says_so_without_the_token() -> None:
    async def run() -> None:
        control = Away(failures=10**9)
        rotations, tasks, said = _writer(control)
        rotations.put(Rotation(CID, _sha(FIRST), "rt_1"))
        await asyncio.sleep(0.02)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert len(said) == 2
        assert "before the gateway stopped" in said[1]
        assert not any("rt_1" in message for message in said)

    asyncio.run(run())


def test_a_store_failing_with_a_defect_drops_that_rotation_alone() -> None:
    async def run() -> None:
        control = Away(failures=0)
        control.defects.add("rt_1")
        rotations, tasks, said = _writer(control)
        rotations.put(Rotation(CID, _sha(FIRST), "rt_1", "lease_1"))
        await asyncio.gather(*tasks)  # (the writer ends: no exception left in its task)
        assert control.vaulted() == FIRST
        assert control.released == ["lease_1"]
        (dropped,) = said
        assert "was not stored: UnicodeEncodeError" in dropped
        assert "rt_1" not in dropped
        rotations.put(Rotation(CID, _sha(FIRST), "rt_2"))  # a later rotation is sent
        await asyncio.gather(*tasks)
        assert control.vaulted() == "rt_2"

    asyncio.run(run())


@pytest.mark.parametrize("token", ["rt_bad\ud800", "rt bad", "rt\r\nX: y", ""])
def test_a_rotation_that_is_no_refresh_token_is_never_queued(token: str) -> None:
    async def run() -> None:
        control = Away(failures=0)
        rotations, tasks, said = _writer(control)
        rotations.put(Rotation(CID, _sha(FIRST), token, "lease_1"))
        await asyncio.gather(*tasks)
        assert control.sent == []
        assert control.released == ["lease_1"]
        (refused,) = said
        assert "not a valid one" in refused
        rotations.put(Rotation(CID, _sha(FIRST), "rt_2"))
        await asyncio.gather(*tasks)
        assert control.vaulted() == "rt_2"

    asyncio.run(run())
