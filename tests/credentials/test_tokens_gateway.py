"""GitHub App and OAuth2 credentials through the real gateway (in-process, real TLS fakes):
PyGithub with an app's installation token; OAuth2 expiry, one refresh under 32 concurrent
requests, and a failed refresh failing closed. The clock of the gateway's token broker is
a value the test moves (no sleeping, no timing assertions)."""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from github import Auth, Github

from tests.fakes.base import FakeUpstreams
from tests.fakes.tokens import github_app, oauth_api, oauth_server
from tests.proxy.support import (
    KEY,
    ConnectRelay,
    RunningGateway,
    ca_bundle,
    connector,
    rule,
    snapshot,
    start_gateway,
)

PRIVATE = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PEM = PRIVATE.private_bytes(
    serialization.Encoding.PEM,
    serialization.PrivateFormat.PKCS8,
    serialization.NoEncryption(),
).decode()
CLIENT_SECRET = "cs_real_client_secret_0000"


@pytest.fixture(scope="module")
def upstreams() -> Iterator[FakeUpstreams]:
    server = oauth_server()
    running = FakeUpstreams([github_app(), server, oauth_api(server)]).start()
    app = running["github_app"]
    app.settings.update(public_key=PRIVATE.public_key(), app_id="4242", installation_id="99")
    server.settings["client"] = f"client-1:{CLIENT_SECRET}"
    try:
        yield running
    finally:
        running.stop()


class Clock:
    def __init__(self) -> None:
        self.now = time.time()  # moved by the tests from here

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def gateway(
    upstreams: FakeUpstreams, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RunningGateway, Clock]]:
    github = connector(
        "github", domains=["api.github.com"], auth_type="github_app",
        credential=json.dumps({"kind": "github_app", "app_id": "4242", "private_key": PEM,
                               "installation_id": "99"}),
    )  # fmt: skip
    oauth = connector(
        "generic", domains=["api.example.com"], auth_type="oauth2",
        credential=json.dumps({"kind": "oauth2", "token_url": "https://auth.example.com/token",
                               "client_id": "client-1", "client_secret": CLIENT_SECRET,
                               "scopes": ["read", "write"]}),
    )  # fmt: skip
    snap = snapshot([rule("*", "allow")], connectors=[github, oauth])
    running, _ = start_gateway(tmp_path_factory.mktemp("gw"), upstreams, snap)
    clock = Clock()
    assert running.gateway is not None
    running.gateway.tokens.clock = clock
    try:
        yield running, clock
    finally:
        running.stop()


def _client_env(monkeypatch: pytest.MonkeyPatch, running: RunningGateway, tmp: Path) -> Path:
    bundle = ca_bundle(running.ca_path, tmp / "bundle.pem")
    proxy = running.proxy_url(KEY)
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.setenv(name, proxy)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    return bundle


def test_pygithub_with_a_github_app(
    gateway: tuple[RunningGateway, Clock],
    upstreams: FakeUpstreams,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    running, _ = gateway
    app = upstreams["github_app"]
    _client_env(monkeypatch, running, tmp_path)
    client = Github(auth=Auth.Token("ghp_tameflare_placeholder"))
    repo = client.get_repo("acme/api")
    issue = repo.create_issue(title="from the agent")
    assert (repo.full_name, issue.title) == ("acme/api", "from the agent")
    assert app.settings["refused"] == []
    assert len(app.settings["minted"]) == 1  # one installation token for both calls
    claims = app.settings["jwts"][0]
    assert claims["iss"] == "4242"
    assert 0 < claims["exp"] - claims["iat"] <= 600
    minted = app.settings["minted"][0]
    for request in app.received():
        if request.path.startswith("/repos"):
            assert request.header("authorization") == f"token {minted}"
            assert "placeholder" not in request.raw_text()


async def _get(client: httpx.AsyncClient) -> httpx.Response:
    return await client.get("https://api.example.com/v1/things")


def _async_client(running: RunningGateway, bundle: Path) -> httpx.AsyncClient:
    context = ssl.create_default_context(cafile=str(bundle))
    return httpx.AsyncClient(proxy=running.proxy_url(KEY), verify=context, timeout=60)


def test_oauth2_one_refresh_under_32_concurrent_requests_then_expiry(
    gateway: tuple[RunningGateway, Clock], upstreams: FakeUpstreams, tmp_path: Path
) -> None:
    running, clock = gateway
    server, api = upstreams["oauth_server"], upstreams["oauth_api"]
    server.settings.update(fail=False, expires_in=600, delay=0.3)
    bundle = ca_bundle(running.ca_path, tmp_path / "bundle.pem")
    assert running.gateway is not None

    async def burst() -> list[httpx.Response]:
        async with _async_client(running, bundle) as client:
            return list(await asyncio.gather(*(_get(client) for _ in range(32))))

    before = len(server.settings["grants"])
    answers = asyncio.run(burst())
    assert [a.status_code for a in answers] == [200] * 32
    assert len(server.settings["grants"]) == before + 1  # one token request for all 32
    grant = server.settings["grants"][-1]
    assert (grant["grant_type"], grant["scope"]) == ("client_credentials", "read write")
    first = server.settings["minted"][-1]
    assert set(api.settings["seen"][-32:]) == {first}
    assert all(first not in a.text and CLIENT_SECRET not in a.text for a in answers)

    clock.now += 600 - 30  # inside the refresh margin: the next request refreshes, once
    answers = asyncio.run(burst())
    assert [a.status_code for a in answers] == [200] * 32
    assert len(server.settings["grants"]) == before + 2
    assert set(api.settings["seen"][-32:]) == {server.settings["minted"][-1]}
    assert server.settings["minted"][-1] != first


def test_oauth2_failed_refresh_fails_closed(
    gateway: tuple[RunningGateway, Clock], upstreams: FakeUpstreams, tmp_path: Path
) -> None:
    running, clock = gateway
    server, api = upstreams["oauth_server"], upstreams["oauth_api"]
    server.settings.update(fail=False, expires_in=600, delay=0.0)
    bundle = ca_bundle(running.ca_path, tmp_path / "bundle.pem")
    clock.now += 10_000  # whatever token there was has expired: a fresh one
    context = ssl.create_default_context(cafile=str(bundle))
    with httpx.Client(proxy=running.proxy_url(KEY), verify=context, timeout=60) as client:
        assert client.get("https://api.example.com/a").status_code == 200
        server.settings["fail"] = True
        clock.now += 600 - 30  # due for refresh, still valid: the refresh fails, old one used
        assert client.get("https://api.example.com/b").status_code == 200
        refused_before = api.settings["refused"]
        clock.now += 60  # expired, and the refresh still fails: closed, with the reason
        answer = client.get("https://api.example.com/c")
        assert answer.status_code == 502
        body = answer.json()
        assert body["error"] == "credential_unavailable"
        assert "invalid_grant" in body["reason"]
        assert CLIENT_SECRET not in answer.text
        assert api.settings["refused"] == refused_before  # nothing reached the api
        assert not api.received(path="/c")
        server.settings["fail"] = False
        assert client.get("https://api.example.com/d").status_code == 200  # recovers


def test_oauth2_token_requests_go_through_the_upstream_proxy(
    upstreams: FakeUpstreams, tmp_path: Path
) -> None:
    """With ``--upstream-proxy`` the token endpoint is reached like every upstream: a CONNECT
    to its own name through the proxy (which resolves it), never directly."""
    server = upstreams["oauth_server"]
    server.settings.update(fail=False, expires_in=600, delay=0.0)
    routes = {f"{f.hostnames[0]}:443": f.tls_port for f in upstreams.fakes.values()}

    oauth = connector(
        "generic", domains=["api.example.com"], auth_type="oauth2",
        credential=json.dumps({"kind": "oauth2", "token_url": "https://auth.example.com/token",
                               "client_id": "client-1", "client_secret": CLIENT_SECRET}),
    )  # fmt: skip
    relay = ConnectRelay(routes)
    running, _ = start_gateway(tmp_path, upstreams, snapshot([rule("*", "allow")],
                               connectors=[oauth]), resolve={},
                               upstream_proxy=f"http://127.0.0.1:{relay.port}")  # fmt: skip
    try:
        before = len(server.settings["grants"])
        bundle = ca_bundle(running.ca_path, tmp_path / "bundle.pem")

        async def one() -> httpx.Response:
            async with _async_client(running, bundle) as client:
                return await _get(client)

        answer = asyncio.run(one())
    finally:
        running.stop()
        relay.stop()
    assert answer.status_code == 200, answer.text
    assert len(server.settings["grants"]) == before + 1
    assert upstreams["oauth_api"].settings["seen"][-1] == server.settings["minted"][-1]
    assert sorted(relay.targets) == ["api.example.com:443", "auth.example.com:443"]
