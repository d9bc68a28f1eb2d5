"""SDK Mode A on connectors whose credential is computed (issue 22's `github_app` and `oauth2`):
the control plane mints the token itself (one token for many executions, over real TLS to
fake issuers it trusts through ``AGENTFIREWALL_UPSTREAM_CA``), fails closed when it cannot,
and stores a rotated refresh token in the vault as a gateway does."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.fakes.base import FakeUpstreams
from tests.fakes.tokens import github_app, oauth_api, oauth_server
from tests.server.conftest import Harness

PRIVATE = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PEM = PRIVATE.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
).decode()
SECRET = "cs_real_client_secret_0000"
FIRST = "rt_first_grant_0000"


@pytest.fixture(scope="module")
def issuers() -> Iterator[FakeUpstreams]:
    app, server = github_app(), oauth_server()
    running = FakeUpstreams([app, server, oauth_api(server)]).start()
    app.settings.update(public_key=PRIVATE.public_key(), app_id="4242", installation_id="99")
    server.settings["client"] = f"client-1:{SECRET}"
    try:
        yield running
    finally:
        running.stop()


def _harness(factory: Any, issuers: FakeUpstreams) -> Harness:
    h: Harness = factory(upstream_ca=issuers.ca_path, webhook_allow_hosts=["127.0.0.1"])
    return h


def _add(h: Harness, **body: Any) -> str:
    answer = h.admin("POST", "/v1/connectors", json=body)
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def _run(h: Harness, key: str, spec: dict[str, Any]) -> Any:
    asked = h.agent(key, "POST", "/v1/actions", json={"action_spec": spec}).json()
    assert asked["status"] == "allowed", asked
    return h.agent(key, "POST", f"/v1/actions/{asked['action_request_id']}/execute",
                   json={"decision_token": asked["decision_token"]})  # fmt: skip


def test_a_github_app_installation_token_minted_once_for_many_executions(
    harness_factory: Any, issuers: FakeUpstreams
) -> None:
    app = issuers["github_app"]
    before = len(app.settings["minted"])
    h = _harness(harness_factory, issuers)
    base = f"https://127.0.0.1:{app.tls_port}"
    credential = {"kind": "github_app", "app_id": "4242", "private_key": PEM,
                  "installation_id": "99", "api_url": base}  # fmt: skip
    _add(h, type="github", auth_type="github_app", token=json.dumps(credential), base_url=base)
    key = h.create_agent("Bot")
    resource = {"provider": "github", "account": "acme", "target": "acme/api"}
    spec = {"type": "github.repo.get", "resource": resource}
    for _ in range(3):
        answer = _run(h, key, spec)
        assert answer.status_code == 200, answer.text
        result = answer.json()["result"]
        assert (result["status_code"], result["body"]["full_name"]) == (200, "acme/api")
    assert len(app.settings["minted"]) == before + 1  # one installation token for all three
    assert app.settings["jwts"][-1]["iss"] == "4242"
    minted = app.settings["minted"][-1]
    repos = [r for r in app.received("GET") if r.path == "/repos/acme/api"][-3:]
    assert [r.header("authorization") for r in repos] == [f"token {minted}"] * 3
    assert minted not in answer.text


def _oauth(h: Harness, issuers: FakeUpstreams, **credential: Any) -> tuple[str, dict[str, Any]]:
    server, api = issuers["oauth_server"], issuers["oauth_api"]
    document = {"kind": "oauth2", "token_url": f"https://127.0.0.1:{server.tls_port}/token",
                "client_id": "client-1", "client_secret": SECRET, **credential}  # fmt: skip
    # (the base URL declares the API's TLS port: a credential goes to no other)
    cid = _add(h, type="generic", domains=["127.0.0.1"], auth_type="oauth2",
               base_url=api.url, token=json.dumps(document))  # fmt: skip
    target = f"https://127.0.0.1:{api.tls_port}/v1/things"
    spec = {"type": "http.get", "resource": {"provider": "generic", "target": target}}
    return cid, spec


def test_an_oauth2_token_endpoint_that_refuses_fails_closed(
    harness_factory: Any, issuers: FakeUpstreams
) -> None:
    server, api = issuers["oauth_server"], issuers["oauth_api"]
    h = _harness(harness_factory, issuers)
    _, spec = _oauth(h, issuers)
    key = h.create_agent("Bot")
    server.settings.update(fail=True, valid_refresh=None)
    seen = len(api.settings["seen"])
    try:
        refused = _run(h, key, spec)
    finally:
        server.settings["fail"] = False
    assert refused.status_code == 502, refused.text
    body = refused.json()
    assert (body["error"], body["retryable"]) == ("credential_unavailable", True)
    assert "invalid_grant" in body["message"]
    assert SECRET not in refused.text
    assert len(api.settings["seen"]) == seen  # nothing went upstream
    ok = _run(h, key, spec)  # the endpoint is back: the next action runs
    assert ok.status_code == 200, ok.text
    assert ok.json()["result"]["body"]["ok"] is True
    assert api.settings["seen"][-1] == server.settings["minted"][-1]


def test_a_rotated_refresh_token_goes_to_the_vault(
    harness_factory: Any, issuers: FakeUpstreams
) -> None:
    server = issuers["oauth_server"]
    server.settings.update(fail=False, valid_refresh={FIRST})
    h = _harness(harness_factory, issuers)
    cid, spec = _oauth(h, issuers, grant="refresh_token", refresh_token=FIRST)
    key = h.create_agent("Bot")
    try:
        answer = _run(h, key, spec)
        assert answer.status_code == 200, answer.text
        config: dict[str, Any] = {}
        for _ in range(200):  # stored in the background: bounded wait
            config = h.gateway("GET", "/v1/gateway/config").json()
            (found,) = [c for c in config["connectors"] if c["id"] == cid]
            if json.loads(found["credential"])["refresh_token"] != FIRST:
                break
            time.sleep(0.05)
        vaulted = json.loads(found["credential"])["refresh_token"]
        assert vaulted != FIRST
        assert vaulted in server.settings["valid_refresh"]  # the one that still works
        events = h.admin("GET", "/v1/audit?event_type=connector.credential_rotated").json()
        assert [(e["actor"], e["subject"]) for e in events["events"]] == [("server", cid)]
    finally:
        server.settings["valid_refresh"] = None
