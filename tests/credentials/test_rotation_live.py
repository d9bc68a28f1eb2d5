"""A token endpoint that rotates refresh tokens, and refuses a used one, through the real
control plane and gateway: the rotated token reaches the vault, so a restarted gateway (a
fresh token cache) refreshes with it instead of the used one the connector was made with."""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from agentfirewall_proxy.control import HttpControl
from tests.fakes.base import FakeUpstreams
from tests.fakes.tokens import oauth_api, oauth_server
from tests.livesrv import LiveServer
from tests.proxy.support import RunningGateway, ca_bundle, gateway_options

FIRST = "rt_first_grant_0000"


@pytest.fixture
def upstreams() -> Iterator[FakeUpstreams]:
    server = oauth_server()
    running = FakeUpstreams([server, oauth_api(server)]).start()
    server.settings.update(valid_refresh={FIRST}, client="client-1:cs_secret")
    try:
        yield running
    finally:
        running.stop()


def _vaulted(server: LiveServer, cid: str) -> str:
    config = server.gateway("GET", "/v1/gateway/config").json()
    (found,) = [c for c in config["connectors"] if c["id"] == cid]
    return str(json.loads(found["credential"])["refresh_token"])


def _get_through(server: LiveServer, upstreams: FakeUpstreams, tmp: Path, key: str) -> int:
    """One request through a gateway started for it (a fresh token cache), then stopped (a
    gateway that stops waits for its rotated refresh tokens to reach the vault)."""
    control = HttpControl(server.url, server.gateway_token)
    running = RunningGateway(gateway_options(tmp, upstreams), control).start()
    try:
        bundle = ca_bundle(running.ca_path, tmp / "bundle.pem")
        trust = ssl.create_default_context(cafile=str(bundle))
        with httpx.Client(proxy=running.proxy_url(key), trust_env=False, verify=trust) as http:
            return http.get("https://api.example.com/v1/things").status_code
    finally:
        running.stop()


def _rotating_connector(server: LiveServer) -> tuple[str, str]:
    """A generic connector on the rotating grant that starts at FIRST, and the key of an
    agent `Bot` allowed everything on it: (connector id, proxy key)."""
    document = {"kind": "oauth2", "token_url": "https://auth.example.com/token",
                "client_id": "client-1", "client_secret": "cs_secret",
                "grant": "refresh_token", "refresh_token": FIRST}  # fmt: skip
    created = server.admin("POST", "/v1/connectors", json={
        "type": "generic", "domains": ["api.example.com"], "auth_type": "oauth2",
        "token": json.dumps(document)})  # fmt: skip
    assert created.status_code == 201, created.text
    key = server.create_agent("Bot")
    rule = {"agent": "Bot", "connector": "generic", "action_pattern": "*", "decision": "allow"}
    assert server.admin("POST", "/v1/permissions", json=rule).status_code in (200, 201)
    return str(created.json()["id"]), key


def test_a_restarted_gateway_refreshes_with_the_rotated_token(
    upstreams: FakeUpstreams, tmp_path: Path
) -> None:
    oauth = upstreams["oauth_server"]
    server = LiveServer.start(tmp_path / "tf")
    try:
        cid, key = _rotating_connector(server)

        assert _get_through(server, upstreams, tmp_path / "g1", key) == 200
        first_rotation = _vaulted(server, cid)
        assert first_rotation != FIRST  # the vault holds the rotated one: FIRST is spent
        assert first_rotation in oauth.settings["valid_refresh"]

        assert _get_through(server, upstreams, tmp_path / "g2", key) == 200  # not 502
        grants = [g["refresh_token"] for g in oauth.settings["grants"]]
        assert grants == [FIRST, first_rotation]  # never a spent one
        assert oauth.settings.get("reused", []) == []
        assert _vaulted(server, cid) in oauth.settings["valid_refresh"]

        events = server.admin("GET", "/v1/audit?event_type=connector.credential_rotated").json()
        assert [e["subject"] for e in events["events"]] == [cid, cid]
        assert FIRST not in json.dumps(events)
        assert first_rotation not in json.dumps(events)
        assert first_rotation not in server.log()
        assert FIRST not in server.log()
    finally:
        server.stop()


def test_two_gateways_refreshing_at_once_take_turns(
    upstreams: FakeUpstreams, tmp_path: Path
) -> None:
    """Two gateways with empty token caches, many requests at both at the same moment, a
    token endpoint that answers slowly and revokes the grant on a reused refresh token: the
    control plane's lease lets one refresh at a time, each with the token the vault holds."""
    oauth = upstreams["oauth_server"]
    oauth.settings.update(revoke_on_reuse=True, delay=0.3)
    server = LiveServer.start(tmp_path / "tf")
    gateways: list[RunningGateway] = []
    try:
        cid, key = _rotating_connector(server)
        for name in ("g1", "g2"):
            control = HttpControl(server.url, server.gateway_token)
            gateways.append(RunningGateway(gateway_options(tmp_path / name, upstreams),
                                           control).start())  # fmt: skip

        bundles = {
            r.port: ca_bundle(r.ca_path, tmp_path / f"bundle-{r.port}.pem") for r in gateways
        }

        def get(running: RunningGateway) -> int:
            trust = ssl.create_default_context(cafile=str(bundles[running.port]))
            with httpx.Client(proxy=running.proxy_url(key), trust_env=False, verify=trust,
                              timeout=30) as http:  # fmt: skip
                return http.get("https://api.example.com/v1/things").status_code

        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(get, gateways * 4))
        assert statuses == [200] * 8
        assert oauth.settings.get("reused", []) == []  # never a used refresh token
        grants = [g["refresh_token"] for g in oauth.settings["grants"]]
        assert grants[0] == FIRST
        assert len(grants) == len(set(grants)) == 2
        for running in gateways:
            running.stop()
        gateways.clear()
        vaulted = _vaulted(server, cid)
        assert oauth.settings["valid_refresh"] == {vaulted}  # the grant lives, in the vault
        assert vaulted not in server.log()
        assert FIRST not in server.log()
    finally:
        for running in gateways:
            running.stop()
        oauth.settings.update(revoke_on_reuse=False, delay=0.0)
        server.stop()
