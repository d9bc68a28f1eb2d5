"""SDK Mode A never hands the agent a token the control plane sent before a refresh.

The defect (security review, probe 5): after an OAuth2 refresh, an upstream that keeps a
request log (most APIs show recent requests) handed back the previous access token, still
valid, and the executor scrubbed only the header it injected now. The gateway remembered
what it sent; that bookkeeping is the core's now (``agentfirewall.credentials.sent``) and
the executor uses it too: every token sent for the connector is scrubbed while it may be
valid, and a static credential it injected before one it injects now.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from agentfirewall.credentials.sent import RETIRED_MARGIN, SentSecrets
from tests.fakes.base import FakeUpstream, FakeUpstreams
from tests.fakes.tokens import oauth_server
from tests.server.conftest import Harness
from tests.server.test_execute_computed import _add, _run

SECRET = "cs_real_client_secret_0000"


def _request_log() -> FakeUpstream:
    """An API answering every request with the log of the ones it got (their credential)."""
    fake = FakeUpstream(name="logapi", hostnames=("logapi.example.com",), app=None)  # type: ignore[arg-type]
    fake.settings["log"] = []

    async def handle(request: Request) -> JSONResponse:
        fake.settings["log"].append(request.headers.get("authorization", ""))
        return JSONResponse({"request_log": [{"authorization": a} for a in fake.settings["log"]]})

    fake.app = Starlette(routes=[Route("/{p:path}", handle, methods=["GET"])])
    return fake


@pytest.fixture(scope="module")
def upstreams() -> Iterator[FakeUpstreams]:
    running = FakeUpstreams([oauth_server(), _request_log()]).start()
    running["oauth_server"].settings["client"] = f"client-1:{SECRET}"
    try:
        yield running
    finally:
        running.stop()


def test_a_token_sent_before_a_refresh_is_scrubbed_from_an_execute(
    harness_factory: Any, upstreams: FakeUpstreams
) -> None:
    server, api = upstreams["oauth_server"], upstreams["logapi"]
    h: Harness = harness_factory(upstream_ca=upstreams.ca_path, webhook_allow_hosts=["127.0.0.1"])
    document = {"kind": "oauth2", "token_url": f"https://127.0.0.1:{server.tls_port}/token",
                "client_id": "client-1", "client_secret": SECRET}  # fmt: skip
    # (the base URL declares the API's TLS port: a credential goes to no other)
    _add(h, type="generic", domains=["127.0.0.1"], auth_type="oauth2", base_url=api.url,
         token=json.dumps(document))  # fmt: skip
    key = h.create_agent("Bot")
    rule = {"agent": "Bot", "connector": "*", "action_pattern": "*", "decision": "allow"}
    assert h.admin("POST", "/v1/permissions", json=rule).status_code in (200, 201)
    target = f"https://127.0.0.1:{api.tls_port}/v1/log"
    spec = {"type": "http.get", "resource": {"provider": "generic", "target": target}}

    before = len(server.settings["minted"])
    assert _run(h, key, spec).status_code == 200
    h.state.tokens.broker.cache._tokens.clear()  # the token due: the next execute refreshes
    answer = _run(h, key, spec)
    assert answer.status_code == 200, answer.text
    minted = server.settings["minted"][before:]
    assert len(minted) == 2  # refreshed, the first still valid
    log = answer.json()["result"]["body"]["request_log"]
    assert len(log) >= 2
    assert not any(token in answer.text for token in minted)


def test_a_secret_sent_before_is_found_until_it_may_no_longer_be_valid() -> None:
    """The bookkeeping both paths use: a token until ``RETIRED_MARGIN`` past its expiry, a
    static credential rotated out (no expiry) while the process runs."""
    now = [1_000_000.0]
    sent = SentSecrets(clock=lambda: now[0])
    first = b"sk_live_first_static_key_000000"
    sent.scrubber("conn_1", [first])
    rotated = sent.scrubber("conn_1", [b"sk_live_second_static_key_00000"])
    assert rotated is not None
    assert rotated.found(b'{"key": "' + first + b'"}')
    token = sent.scrubber("conn_2", [b"at_first_token_0000000"], now[0] + 60)
    assert token is sent.scrubber("conn_2", [b"at_first_token_0000000"], now[0] + 60)  # (once)
    now[0] += 60 + RETIRED_MARGIN
    later = sent.scrubber("conn_2", [b"at_second_token_000000"], now[0] + 60)
    assert later is not None
    assert not later.found(b"at_first_token_0000000")
    now[0] += 10**9  # a static one does not expire
    assert sent.scrubber("conn_1", [b"sk_live_second_static_key_00000"]) is rotated
