"""One approval, one request (DESIGN.md section 7, guarantee 3), on every connector.

Through the real gateway and the real control plane, with fake upstreams that record
what reached them: a held request (``amount=1``) is approved after its client left, so
the approval waits unused. Then every other request -- another amount in the body or
the query, sent chunked, under another content type, or the same body re-encoded -- is
held anew (or refused) and never reaches the upstream on that approval; the identical
retry passes exactly once, and the one after it is held again.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from agentfirewall_proxy.control import HttpControl
from tests.fakes import FakeUpstream, FakeUpstreams, anthropic, github, mcp, openai, slack, stripe
from tests.livesrv import LiveServer
from tests.proxy.support import CREDENTIALS, RunningGateway, ca_bundle, gateway_options

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"


def echo() -> FakeUpstream:
    """Hosts without a fake of their own (generic, webhook, SendGrid): answers 200."""
    hosts = ("example.org", "hooks.example.net", "api.sendgrid.com")
    fake = FakeUpstream(name="echo", hostnames=hosts, app=None)  # type: ignore[arg-type]

    async def answer(request: Request) -> Response:
        return JSONResponse({"ok": True, "path": request.url.path})

    fake.app = Starlette(routes=[Route("/{path:path}", answer, methods=["GET", "POST"])])
    return fake


@dataclass(frozen=True)
class Case:
    """A request needing approval on one connector, in the variants that must not ride
    on its approval. `body` says ``amount=1``; `bigger` says ``amount=999999``;
    `reencoded` says ``amount=1`` in other bytes; `other_type` is another content type."""

    kind: str
    fake: str
    url: str
    body: bytes
    bigger: bytes
    reencoded: bytes
    content_type: str = JSON
    other_type: str = "text/plain"
    domains: tuple[str, ...] = ()


def _chat(model: str, text: str, spaced: bool = False) -> bytes:
    sep = ", " if spaced else ","
    message = f'{{"role":"user","content":"{text}"}}'
    return f'{{"model":"{model}"{sep}"max_tokens":5{sep}"messages":[{message}]}}'.encode()


def _mail(text: str) -> bytes:
    return json.dumps({"personalizations": [{"to": [{"email": "cfo@example.com"}]}],
                       "from": {"email": "bot@example.com"}, "subject": text,
                       "content": [{"type": "text/plain", "value": text}]},
                      separators=(",", ":")).encode()  # fmt: skip


CASES = [
    Case("generic", "echo", "https://example.org/echo", b"amount=1", b"amount=999999",
         b"amount=%31", FORM, domains=("example.org",)),
    Case("webhook", "echo", "https://hooks.example.net/hook", b'{"amount":1}',
         b'{"amount":999999}', b'{"amount": 1}', domains=("hooks.example.net",)),
    Case("mcp", "mcp", "https://mcp.example.com/mcp",
         b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"pay","arguments":{"amount":1}}}',
         b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"pay","arguments":{"amount":999999}}}',
         b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"pay","arguments":{"amount":1.0}}}',
         domains=("mcp.example.com",)),
    Case("stripe", "stripe", "https://api.stripe.com/v1/payment_intents",
         b"amount=1&currency=usd", b"amount=999999&currency=usd", b"currency=usd&amount=1", FORM),
    Case("github", "github", "https://api.github.com/repos/acme/api/issues",
         b'{"title":"pay","body":"amount=1"}', b'{"title":"pay","body":"amount=999999"}',
         b'{"body":"amount=1","title":"pay"}'),
    Case("slack", "slack", "https://slack.com/api/chat.postMessage",
         b'{"channel":"C1","text":"amount=1"}', b'{"channel":"C1","text":"amount=999999"}',
         b'{"channel":"C1", "text":"amount=1"}'),
    Case("openai", "openai", "https://api.openai.com/v1/chat/completions",
         _chat("gpt-4o", "amount=1"), _chat("gpt-4o", "amount=999999"),
         _chat("gpt-4o", "amount=1", spaced=True)),
    Case("sendgrid", "echo", "https://api.sendgrid.com/v3/mail/send",
         _mail("amount=1"), _mail("amount=999999"), _mail("amount=1").replace(b",", b", ")),
    Case("anthropic", "anthropic", "https://api.anthropic.com/v1/messages",
         _chat("claude-3", "amount=1"), _chat("claude-3", "amount=999999"),
         _chat("claude-3", "amount=1", spaced=True)),
]  # fmt: skip


@pytest.fixture(scope="module")
def upstreams() -> Iterator[FakeUpstreams]:
    running = FakeUpstreams([github(), stripe(), slack(), openai(), anthropic(), mcp(), echo()])
    running.start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory, upstreams: FakeUpstreams
) -> Iterator[tuple[LiveServer, RunningGateway, str]]:
    tmp = tmp_path_factory.mktemp("binding")
    server = LiveServer.start(tmp / "tf")
    try:
        key = server.create_agent("Finance Bot")
        for case in CASES:
            body: dict[str, Any] = {"type": case.kind, "name": case.kind}
            if case.kind in CREDENTIALS:
                body["token"] = CREDENTIALS[case.kind]
            if case.domains:
                body["domains"] = list(case.domains)
            answer = server.admin("POST", "/v1/connectors", json=body)
            assert answer.status_code == 201, answer.text
            rule = {"agent": "Finance Bot", "connector": case.kind, "action_pattern": "*",
                    "decision": "require_approval"}  # fmt: skip
            answer = server.admin("POST", "/v1/permissions", json=rule)
            assert answer.status_code in (200, 201), answer.text
        control = HttpControl(server.url, server.gateway_token)
        running = RunningGateway(gateway_options(Path(tmp), upstreams), control).start()
        try:
            yield server, running, key
        finally:
            running.stop()
    finally:
        server.stop()


def _client(running: RunningGateway, key: str, timeout: float) -> httpx.Client:
    bundle = ca_bundle(running.ca_path, running.options.ca_dir / "bundle.pem")
    verify = ssl.create_default_context(cafile=str(bundle))
    proxy = running.proxy_url(key, "Finance Bot")
    return httpx.Client(proxy=proxy, trust_env=False, timeout=timeout, verify=verify)


def _poll(fn: Callable[[], Any], timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = fn()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def _pending(server: LiveServer) -> list[dict[str, Any]]:
    answer = server.admin("GET", "/v1/approvals", params={"status": "pending"})
    found: list[dict[str, Any]] = answer.json()["approvals"]
    return found


def _show(server: LiveServer, approval_id: str, preview: str, digest: str) -> None:
    """`tf approvals show` tells the approver what is bound: body preview and digest."""
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.update(TF_SERVER=server.url, TF_ADMIN_TOKEN=server.admin_token, COLUMNS="300")
    command = [sys.executable, "-m", "agentfirewall_proxy.cli", "approvals", "show", approval_id]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert preview in done.stdout
    assert digest in done.stdout
    assert CREDENTIALS["github"] not in done.stdout


def _send(http: httpx.Client, url: str, body: bytes, ctype: str, chunked: bool) -> httpx.Response:
    content: Any = iter([body[:3], body[3:]]) if chunked else body
    return http.post(url, content=content, headers={"Content-Type": ctype})


def _held_anew_or_refused(
    server: LiveServer, http: httpx.Client, request: tuple[str, bytes, str, bool], seen: set[str]
) -> dict[str, Any] | None:
    """Send `request`; it must be held for a new approval (then denied here) or refused."""
    out: list[httpx.Response] = []
    thread = threading.Thread(target=lambda: out.append(_send(http, *request)))
    thread.start()
    held = _poll(lambda: out or [a for a in _pending(server) if a["id"] not in seen])
    approval = None
    if held is not out:
        (approval,) = held
        seen.add(approval["id"])
        server.admin("POST", f"/v1/approvals/{approval['id']}/deny", json={})
    thread.join(30)
    assert out, "no answer"
    assert out[0].status_code in (403, 413), out[0].text
    return approval


@pytest.mark.parametrize("case", CASES, ids=[c.kind for c in CASES])
def test_an_approval_covers_exactly_one_request(
    world: tuple[LiveServer, RunningGateway, str], upstreams: FakeUpstreams, case: Case
) -> None:
    server, running, key = world
    fake = upstreams[case.fake]
    assert running.gateway is not None
    seen = {a["id"] for a in _pending(server)}
    # the agent asks, gives up waiting; the human approves later: the approval waits unused
    with _client(running, key, timeout=1.0) as http, pytest.raises(httpx.ReadTimeout):
        _send(http, case.url, case.body, case.content_type, False)
    (approval,) = _poll(lambda: [a for a in _pending(server) if a["id"] not in seen])
    seen.add(approval["id"])
    bound = approval["request"]
    assert bound["body_size"] == len(case.body)
    assert bound["body_preview"] == case.body.decode()
    assert len(bound["digest"]) == 64
    assert "authorization" not in str(bound).lower()
    _show(server, approval["id"], case.body.decode(), bound["digest"])
    _poll(lambda: len(running.gateway.holds) == 0 if running.gateway else False)
    server.admin("POST", f"/v1/approvals/{approval['id']}/approve", json={})
    before = len(fake.requests)
    variants = {
        "body": (case.url, case.bigger, case.content_type, False),
        "query": (case.url + "?amount=999999", case.body, case.content_type, False),
        "chunked": (case.url, case.bigger, case.content_type, True),
        "content type": (case.url, case.body, case.other_type, False),
        "re-encoded": (case.url, case.reencoded, case.content_type, False),
    }
    with _client(running, key, timeout=30) as http:
        for name, request in variants.items():
            again = _held_anew_or_refused(server, http, request, seen)
            if again is not None:
                assert again["request"]["digest"] != bound["digest"], name
            assert len(fake.requests) == before, f"{name} reached the upstream"
        # the identical retry passes once on the approval, the next one is held anew
        retry = _send(http, case.url, case.body, case.content_type, False)
        assert retry.status_code < 400, retry.text
        assert len(fake.requests) == before + 1
        assert fake.requests[-1].body == case.body
        identical = (case.url, case.body, case.content_type, False)
        held = _held_anew_or_refused(server, http, identical, seen)
    assert held is not None
    assert held["request"]["digest"] == bound["digest"]
    assert len(fake.requests) == before + 1
