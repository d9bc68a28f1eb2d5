"""A computed credential's token (OAuth2 here; a GitHub App's installation token takes the same
path) that the upstream echoes back never reaches the agent: in a header, a JSON body or an
event stream, whether or not a policy reads the response.

0.1.0 scrubbed the token only when no rule read the response: with a `response.*` rule the
response went through the content guard, which scrubbed the connector's static secrets
alone, and the access token the gateway had fetched reached the agent whole."""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.base import FakeUpstream, FakeUpstreams
from tests.fakes.tokens import oauth_server
from tests.proxy.support import KEY, ca_bundle, connector, rule, snapshot, start_gateway

CLIENT_SECRET = "cs_real_client_secret_0000"
#: Reads the response: its bodies go through the content guard.
RESPONSE_RULE = {
    "name": "guardrails",
    "document": {
        "name": "guardrails",
        "rules": [{"name": "cut-injections", "decision": "deny",
                   "conditions": {"field": "response.injection", "operator": "exists"}}],
    },
}  # fmt: skip


def echo_api() -> FakeUpstream:
    """Answers with the ``Authorization`` it received, in a header and in the body (JSON,
    or one server-sent event under ``/events``)."""

    async def handle(request: Request) -> Response:
        auth = request.headers.get("authorization", "")
        if request.url.path == "/events":
            return Response(f"data: {auth}\n\n", media_type="text/event-stream")
        return JSONResponse({"you_sent": auth}, headers={"X-Echo": auth})

    app = Starlette(routes=[Route("/{path:path}", handle)])
    return FakeUpstream(name="echo", hostnames=("api.example.com",), app=app)


@pytest.fixture(scope="module")
def upstreams() -> Iterator[FakeUpstreams]:
    server = oauth_server()
    server.settings["client"] = f"client-1:{CLIENT_SECRET}"
    running = FakeUpstreams([server, echo_api()]).start()
    try:
        yield running
    finally:
        running.stop()


@pytest.mark.parametrize("path", ["/v1/whoami", "/events"])
@pytest.mark.parametrize("guarded", [False, True], ids=["no-response-rule", "response-rule"])
def test_an_echoed_token_is_scrubbed(
    upstreams: FakeUpstreams, tmp_path: Path, guarded: bool, path: str
) -> None:
    oauth = connector(
        "generic", domains=["api.example.com"], auth_type="oauth2",
        credential=json.dumps({"kind": "oauth2", "token_url": "https://auth.example.com/token",
                               "client_id": "client-1", "client_secret": CLIENT_SECRET}),
    )  # fmt: skip
    snap = snapshot([rule("*", "allow")], connectors=[oauth],
                    policies=[RESPONSE_RULE] if guarded else [])  # fmt: skip
    running, _ = start_gateway(tmp_path, upstreams, snap)
    try:
        context = ssl.create_default_context(cafile=str(ca_bundle(running.ca_path, tmp_path / "b")))
        with httpx.Client(proxy=running.proxy_url(KEY), verify=context, timeout=20) as client:
            answer = client.get(f"https://api.example.com{path}",
                                headers={"Authorization": "Bearer placeholder"})  # fmt: skip
    finally:
        running.stop()
    minted = upstreams["oauth_server"].settings["minted"]
    assert answer.status_code == 200
    assert minted  # the gateway fetched a token and sent it
    seen = answer.text + " ".join(f"{k}: {v}" for k, v in answer.headers.items())
    assert [token for token in minted if token in seen] == []
    assert "REDACTED by TameFlare" in seen
