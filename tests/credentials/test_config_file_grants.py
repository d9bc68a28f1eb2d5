"""A gateway on `--config-file`: the refresh token refreshed is the grant's newest.

The token caches key a token by connector id and a digest of the credential without its
refresh token (a rotation keeps the token: docs/connectors.md), and a config file's ids are
the operator's: replacing Alice's refresh token by Bob's under the same id served Alice's
cached access token until it expired. The file's credential, as written, names the grant
(``control.normalize_snapshot``). The other way round, a file saved again with the same
credential (a permission added) is the same grant: the refresh tokens the gateway rotated
since stay in use, where the file's own, spent long ago, was sent again (refused, and a
provider with reuse detection revokes the grant).

Through the real file reload, the compiled snapshot, the refresh leases and the shared token
broker, to a token endpoint that rotates refresh tokens and records which one each request
sent; no socket.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from urllib.parse import parse_qsl

import pytest

from agentfirewall.credentials import Rotation, Token, TokenRequest
from agentfirewall.credentials.broker import TokenBroker
from agentfirewall_proxy.control import StaticControl
from agentfirewall_proxy.refreshlease import ControlLeases
from agentfirewall_proxy.snapshot import compile_snapshot

ALICE, BOB = "rt_grant_of_alice_0000", "rt_grant_of_bob_0000"


def _write(path: Path, refresh_token: str, domain: str = "api.example.com") -> None:
    credential = json.dumps({"kind": "oauth2", "token_url": "https://auth.example.com/token",
                             "client_id": "client-1", "client_secret": "cs_secret",
                             "grant": "refresh_token", "refresh_token": refresh_token})  # fmt: skip
    oauth = {"id": "oauth", "type": "generic", "domains": [domain],
             "auth_type": "oauth2", "credential": credential}  # fmt: skip
    _save(path, json.dumps({"connectors": [oauth]}))


def _save(path: Path, text: str) -> None:
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text)
    if path.stat().st_mtime_ns == before:  # (saved within the clock's tick: seen as a change)
        os.utime(path, ns=(before + 1_000_000, before + 1_000_000))


class _Gateway:
    """What a config-file gateway does with tokens: the file's snapshot compiled, tokens
    from the broker under the control's leases, rotations stored in the control."""

    def __init__(self, path: Path) -> None:
        self.control = StaticControl(path)
        self.now = 1_000_000.0
        self.sent: list[str] = []  # the refresh token of each token request
        self.rotations: list[Rotation] = []
        leases = ControlLeases(self.control, "gw", lambda *_: None)
        self.broker = TokenBroker(self._endpoint, lambda: self.now, self.rotations.append, leases)

    async def _endpoint(self, request: TokenRequest) -> tuple[int, bytes]:
        self.sent.append(dict(parse_qsl(request.body.decode()))["refresh_token"])
        n = len(self.sent)
        answer = {"access_token": f"at_{n}", "refresh_token": f"rt_rotated_{n}", "expires_in": 600}
        return 200, json.dumps(answer).encode()

    async def token(self) -> Token:
        """What the next request carries (the file read again if it changed)."""
        config = compile_snapshot(await self.control.fetch_config(None, 0) or {})
        source = config.connectors["oauth"].injector.source  # type: ignore[union-attr]
        assert source is not None
        token = await self.broker.token(source)
        while self.rotations:  # as Gateway.store_rotation does
            r = self.rotations.pop(0)
            payload = {"previous_sha256": r.vaulted_sha256, "refresh_token": r.refresh_token,
                       "lease": r.lease}  # fmt: skip
            await self.control.store_refresh_token(r.connector_id, payload)
        return token


@pytest.mark.anyio
async def test_a_refresh_token_replaced_in_the_file_is_the_one_refreshed(tmp_path: Path) -> None:
    path = tmp_path / "gateway.json"
    _write(path, ALICE)
    gateway = _Gateway(path)
    alices = await gateway.token()
    assert gateway.sent == [ALICE]
    assert await gateway.token() is alices  # its rotation, stored, is Alice's grant still
    assert gateway.sent == [ALICE]

    _write(path, BOB)  # the operator's new grant, under the same id
    bobs = await gateway.token()
    assert gateway.sent == [ALICE, BOB]
    assert bobs.get("token") != alices.get("token")


@pytest.mark.anyio
async def test_a_file_saved_again_keeps_the_grants_rotated_refresh_token(tmp_path: Path) -> None:
    path = tmp_path / "gateway.json"
    _write(path, ALICE)
    gateway = _Gateway(path)
    for _ in range(3):  # three tokens, each refresh rotating the refresh token
        await gateway.token()
        gateway.now += 600
    assert gateway.sent == [ALICE, "rt_rotated_1", "rt_rotated_2"]

    _save(path, '{"connectors": [')  # saved half-way: every request refused meanwhile
    await gateway.token()
    assert gateway.sent[-1] == "rt_rotated_3"  # not the file's, spent
    _write(path, ALICE, domain="api2.example.com")  # a change elsewhere: the same grant
    gateway.now += 600
    await gateway.token()
    assert gateway.sent[-1] == "rt_rotated_4"

    _write(path, BOB)  # a new grant, and its own rotations
    for _ in range(2):
        gateway.now += 600
        await gateway.token()
    assert gateway.sent[-2:] == [BOB, "rt_rotated_6"]
