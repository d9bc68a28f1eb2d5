"""A token minted from one grant is never served for another (gateway and executor).

Alice's OAuth2 refresh-token grant is a connector; an admin removes it and adds Bob's grant
of the same client app. The token caches (the gateway's, the control plane's for SDK Mode
A) key a token by connector id and a digest of the credential without its refresh token
(a rotated refresh token must keep the token: docs/connectors.md), so the two grants differ
only in the connector id, which the control plane never gives twice. Through the real
control plane and gateway, to a fake token endpoint that records which refresh token each
access token was minted from.
"""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentfirewall_proxy.control import HttpControl
from tests.fakes.base import FakeUpstreams
from tests.fakes.tokens import oauth_api, oauth_server
from tests.livesrv import LiveServer
from tests.proxy.support import (
    KEY,
    RunningGateway,
    ca_bundle,
    connector,
    gateway_options,
    rule,
    snapshot,
    start_gateway,
)

ALICE, BOB = "rt_grant_of_alice_0000", "rt_grant_of_bob_0000"


@pytest.fixture
def upstreams() -> Iterator[FakeUpstreams]:
    server = oauth_server()
    running = FakeUpstreams([server, oauth_api(server)]).start()
    server.settings.update(client="client-1:cs_secret")
    try:
        yield running
    finally:
        running.stop()


def _document(token_url: str, refresh_token: str) -> str:
    return json.dumps({"kind": "oauth2", "token_url": token_url, "client_id": "client-1",
                       "client_secret": "cs_secret", "grant": "refresh_token",
                       "refresh_token": refresh_token})  # fmt: skip


def _add(server: LiveServer, domain: str, token_url: str, refresh_token: str, **extra: str) -> str:
    created = server.admin("POST", "/v1/connectors", json={
        "type": "generic", "domains": [domain], "auth_type": "oauth2",
        "token": _document(token_url, refresh_token), **extra})  # fmt: skip
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


def _grant_of(upstreams: FakeUpstreams, access_token: str) -> str | None:
    """The refresh token `access_token` was minted from (the endpoint refused nothing)."""
    oauth = upstreams["oauth_server"].settings
    assert len(oauth["grants"]) == len(oauth["minted"])
    sent = dict(zip(oauth["minted"], oauth["grants"], strict=True))
    refresh_token: str | None = sent[access_token].get("refresh_token")
    return refresh_token


def _wait(fn: Callable[[], Any], what: str, seconds: float = 20.0) -> Any:
    deadline = time.monotonic() + seconds
    while not (found := fn()):
        assert time.monotonic() < deadline, f"{what}: not within {seconds} s"
        time.sleep(0.05)
    return found


def _vaulted(server: LiveServer, cid: str) -> str | None:
    config = server.gateway("GET", "/v1/gateway/config").json()
    found = [c for c in config["connectors"] if c["id"] == cid]
    return str(json.loads(found[0]["credential"])["refresh_token"]) if found else None


def _rotated(server: LiveServer, cid: str, first: str) -> bool:
    """The vault holds the grant's rotated refresh token (stored in the background)."""
    return _vaulted(server, cid) not in (None, first)


def test_the_gateway_never_serves_a_removed_grants_token(
    upstreams: FakeUpstreams, tmp_path: Path
) -> None:
    api = upstreams["oauth_api"]
    token_url = "https://auth.example.com/token"
    server = LiveServer.start(tmp_path / "tf")
    gateway = None
    try:
        alice = _add(server, "api.example.com", token_url, ALICE)
        key = server.create_agent("Bot")
        rule = {"agent": "Bot", "connector": "generic", "action_pattern": "*", "decision": "allow"}
        assert server.admin("POST", "/v1/permissions", json=rule).status_code in (200, 201)
        control = HttpControl(server.url, server.gateway_token)
        gateway = RunningGateway(gateway_options(tmp_path / "g", upstreams), control).start()
        running = gateway

        def synced() -> bool:  # the gateway runs the server's newest configuration
            version = server.gateway("GET", "/v1/gateway/config").json()["version"]
            config = running.gateway.config if running.gateway is not None else None
            return config is not None and config.version == version

        trust = ssl.create_default_context(cafile=str(ca_bundle(gateway.ca_path, tmp_path / "b")))
        with httpx.Client(proxy=gateway.proxy_url(key), trust_env=False, verify=trust) as http:
            assert http.get("https://api.example.com/v1/me").status_code == 200
            assert _grant_of(upstreams, api.settings["seen"][-1]) == ALICE
            _wait(lambda: _rotated(server, alice, ALICE), "Alice's rotation stored")

            assert server.admin("DELETE", f"/v1/connectors/{alice}").status_code == 204
            bob = _add(server, "api.example.com", token_url, BOB)
            _wait(synced, "the gateway has Bob's connector")
            assert http.get("https://api.example.com/v1/me").status_code == 200
            bobs_token = api.settings["seen"][-1]
            assert _grant_of(upstreams, bobs_token) == BOB  # not Alice's cached token
            assert bob != alice  # an id names one grant for good

            # a rotation of Bob's grant keeps his token: no new token request
            _wait(lambda: _rotated(server, bob, BOB), "Bob's rotation stored")
            _wait(synced, "the gateway has Bob's rotated refresh token")
            grants = len(upstreams["oauth_server"].settings["grants"])
            assert http.get("https://api.example.com/v1/me").status_code == 200
            assert api.settings["seen"][-1] == bobs_token
            assert len(upstreams["oauth_server"].settings["grants"]) == grants
    finally:
        if gateway is not None:
            gateway.stop()
        server.stop()


def test_the_executor_never_serves_a_removed_grants_token(
    upstreams: FakeUpstreams, tmp_path: Path
) -> None:
    """SDK Mode A: the control plane mints the token itself, with the same cache."""
    oauth, api = upstreams["oauth_server"], upstreams["oauth_api"]
    env = {"AGENTFIREWALL_UPSTREAM_CA": str(upstreams.ca_path),
           "AGENTFIREWALL_WEBHOOK_ALLOW_HOSTS": "127.0.0.1"}  # fmt: skip
    server = LiveServer.start(tmp_path / "tf", env=env)
    token_url = f"https://127.0.0.1:{oauth.tls_port}/token"
    target = f"https://127.0.0.1:{api.tls_port}/v1/me"
    spec = {"type": "http.get", "resource": {"provider": "generic", "target": target}}
    try:
        key = server.create_agent("Bot")

        def execute() -> str:
            asked = server.agent(key, "POST", "/v1/actions", json={"action_spec": spec}).json()
            assert asked["status"] == "allowed", asked
            done = server.agent(key, "POST", f"/v1/actions/{asked['action_request_id']}/execute",
                                json={"decision_token": asked["decision_token"]})  # fmt: skip
            assert done.status_code == 200, done.text
            assert done.json()["result"]["status_code"] == 200, done.text
            return str(api.settings["seen"][-1])

        # (the base URL declares the API's TLS port: a credential goes to no other)
        alice = _add(server, "127.0.0.1", token_url, ALICE, base_url=api.url)
        assert _grant_of(upstreams, execute()) == ALICE
        _wait(lambda: _rotated(server, alice, ALICE), "Alice's rotation stored")
        assert server.admin("DELETE", f"/v1/connectors/{alice}").status_code == 204
        bob = _add(server, "127.0.0.1", token_url, BOB, base_url=api.url)
        assert _grant_of(upstreams, execute()) == BOB  # not Alice's cached token
        assert bob != alice
    finally:
        server.stop()


def test_a_config_file_gateway_never_serves_a_replaced_grants_token(
    upstreams: FakeUpstreams, tmp_path: Path
) -> None:
    """Without a control plane, ids are the operator's: replacing Alice's refresh token by
    Bob's under the same id must not serve Alice's cached token (a rotation, stored in the
    gateway's snapshot, still keeps it)."""
    api = upstreams["oauth_api"]
    token_url = "https://auth.example.com/token"

    def config(refresh_token: str) -> dict[str, Any]:
        oauth = connector("generic", domains=["api.example.com"], auth_type="oauth2",
                          credential=_document(token_url, refresh_token))  # fmt: skip
        return snapshot([rule("*", "allow")], connectors=[oauth])

    running, control = start_gateway(tmp_path / "g", upstreams, config(ALICE))
    try:
        gateway = running.gateway
        assert gateway is not None

        def credential() -> str:
            return str(control.snapshot["connectors"][0]["credential"])

        def synced(version: int) -> bool:
            return gateway.config is not None and gateway.config.version == version

        trust = ssl.create_default_context(cafile=str(ca_bundle(running.ca_path, tmp_path / "b")))
        with httpx.Client(proxy=running.proxy_url(KEY), trust_env=False, verify=trust) as http:
            assert http.get("https://api.example.com/v1/me").status_code == 200
            alices_token = api.settings["seen"][-1]
            assert _grant_of(upstreams, alices_token) == ALICE
            # the rotation is stored in the snapshot; the cached token stays in use
            _wait(lambda: ALICE not in credential(), "Alice's rotation stored")
            _wait(lambda: synced(int(control.snapshot["version"])), "rotation synced")
            grants = len(upstreams["oauth_server"].settings["grants"])
            assert http.get("https://api.example.com/v1/me").status_code == 200
            assert api.settings["seen"][-1] == alices_token
            assert len(upstreams["oauth_server"].settings["grants"]) == grants

            control.update(config(BOB))  # the operator rewrites the file: same id
            _wait(lambda: synced(int(control.snapshot["version"])), "Bob's grant synced")
            assert http.get("https://api.example.com/v1/me").status_code == 200
            assert _grant_of(upstreams, api.settings["seen"][-1]) == BOB
    finally:
        running.stop()


def test_a_connector_id_is_never_given_twice(tmp_path: Path) -> None:
    """Removed ids stay taken, also across a restart (the audit log remembers them)."""
    server = LiveServer.start(tmp_path / "tf")
    try:

        def add() -> str:
            created = server.admin("POST", "/v1/connectors", json={"type": "slack", "token": "x"})
            assert created.status_code == 201, created.text
            return str(created.json()["id"])

        first, second = add(), add()
        assert (first, second) == ("conn_slack_1", "conn_slack_2")
        for cid in (first, second):
            assert server.admin("DELETE", f"/v1/connectors/{cid}").status_code == 204
        assert add() == "conn_slack_3"
        server.restart()
        assert server.admin("DELETE", "/v1/connectors/conn_slack_3").status_code == 204
        assert add() == "conn_slack_4"
    finally:
        server.stop()
