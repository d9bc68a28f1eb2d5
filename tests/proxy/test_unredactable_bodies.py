"""A ``redact`` rule cannot rewrite a body the gateway did not read whole: such a body is
refused (413), wherever the detection lies, on every connector that reads a body.

The security review's case: the docs' own ``redact-pii`` rule, a body larger than
``--body-inspect-limit`` with a card number past the limit reached the upstream (a card
before the limit was refused). A redact rule is an allow, so the widening for an unseen
body (``agentfirewall.policy.unseen``) never counted it, and the redaction step only ran
on what the seen part had found.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentfirewall.connectors import HttpRequest
from agentfirewall_proxy import pipeline
from agentfirewall_proxy.flow import Flow, Refusal
from agentfirewall_proxy.options import parse_resolve
from agentfirewall_proxy.snapshot import compile_snapshot
from tests.fuzzscale import examples
from tests.proxy.rawclient import auth_header, read_all
from tests.proxy.support import KEY, Background, connector, key_hash, rule, snapshot, start_gateway

CARD = "4242 4242 4242 4242"
REDACT_PII = {"name": "guard", "rules": [
    {"name": "redact-pii", "decision": "redact",
     "conditions": [{"field": "content.pii", "operator": "exists"}]},
]}  # fmt: skip
_JSON = "application/json"
_FORM = "application/x-www-form-urlencoded"

Body = Callable[[str], bytes]


def _json(data: Callable[[str], object]) -> Body:
    return lambda text: json.dumps(data(text)).encode()


#: One request per connector that reads a body: (kind, host, method, path, headers, body of
#: a text). Extend it with each new connector.
REQUESTS: list[tuple[str, str, str, str, tuple[tuple[str, str], ...], Body]] = [
    ("openai", "api.openai.com", "POST", "/v1/chat/completions", (), _json(
        lambda t: {"model": "gpt-4o", "messages": [{"role": "user", "content": t}]})),
    ("anthropic", "api.anthropic.com", "POST", "/v1/messages", (), _json(
        lambda t: {"model": "claude", "max_tokens": 9, "messages": [{"role": "user",
                                                                    "content": t}]})),
    ("github", "api.github.com", "POST", "/repos/acme/api/issues", (), _json(
        lambda t: {"title": "bug", "body": t})),
    ("slack", "slack.com", "POST", "/api/chat.postMessage", (), _json(
        lambda t: {"channel": "C1", "text": t})),
    ("stripe", "api.stripe.com", "POST", "/v1/customers", (("Content-Type", _FORM),),
     lambda t: b"description=" + t.replace(" ", "+").encode()),
    ("sendgrid", "api.sendgrid.com", "POST", "/v3/mail/send", (), _json(
        lambda t: {"personalizations": [{"to": [{"email": "a@example.com"}]}],
                   "from": {"email": "b@example.com"}, "subject": "hi",
                   "content": [{"type": "text/plain", "value": t}]})),
    ("mcp", "mcp.example.com", "POST", "/mcp", (), _json(
        lambda t: {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                   "params": {"name": "send_note", "arguments": {"text": t}}})),
    ("aws", "sqs.us-east-1.amazonaws.com", "POST", "/",
     (("X-Amz-Target", "AmazonSQS.SendMessage"), ("Content-Type", "application/x-amz-json-1.0")),
     _json(lambda t: {"QueueUrl": "https://sqs.us-east-1.amazonaws.com/1/q", "MessageBody": t})),
    ("webhook", "hooks.example.com", "POST", "/hook", (), _json(lambda t: {"text": t})),
    ("generic", "api.example.org", "POST", "/notes", (), _json(lambda t: {"text": t})),
]  # fmt: skip
_DOMAINS = {"mcp": ["mcp.example.com"], "aws": ["*.amazonaws.com"],
            "webhook": ["hooks.example.com"], "generic": ["api.example.org"]}  # fmt: skip
_LEVELS = ("full_enforce", "soft_enforce", "monitor")
_CONFIGS = {
    level: compile_snapshot(snapshot(
        [rule("*", "allow")],
        connectors=[connector(kind, **({"domains": _DOMAINS[kind]} if kind in _DOMAINS else {}))
                    for kind, *_ in REQUESTS],
        level=level, policies=[{"name": "guard", "document": REDACT_PII}],
    ))
    for level in _LEVELS
}  # fmt: skip


def _decide(level: str, which: int, body: bytes, complete: bool) -> tuple[Flow, object]:
    """(the flow, the decision or the Refusal raised) for `body` (all of it, or the prefix
    the gateway read before the inspection limit)."""
    kind, host, method, path, headers, _ = REQUESTS[which]
    config = _CONFIGS[level]
    agent = config.agent_for_key(key_hash(KEY))
    routed = config.route(host)
    assert agent is not None
    assert routed is not None
    assert routed.type == kind
    flow = Flow(request_id="req_1", method=method, scheme="https", host=host, port=443,
                path=path, agent=agent, connector=routed)  # fmt: skip
    if not any(name == "Content-Type" for name, _ in headers):
        headers = (("Content-Type", _JSON), *headers)
    request = HttpRequest(method, "https", host, 443, path, "", (("Host", host), *headers),
                          body, complete)  # fmt: skip
    try:
        return flow, pipeline.decide(config, flow, request)
    except Refusal as exc:
        return flow, exc


@settings(max_examples=examples(150), deadline=None)
@given(
    st.integers(0, len(REQUESTS) - 1),
    st.sampled_from(_LEVELS),
    st.integers(256, 4096),  # the inspection limit
    st.integers(-300, 3000),  # where the card lies, from the limit (<0: before it)
)
def test_a_body_past_the_limit_is_never_forwarded_when_a_redact_rule_applies(
    which: int, level: str, limit: int, offset: int
) -> None:
    """Whatever the connector, the level and wherever the card lies, the body the gateway
    did not read whole is refused: 413, or a deny where something else refuses it first
    (a connector that cannot name a body it did not read whole). Read whole, it is allowed
    (the gateway then redacts it)."""
    body_of = REQUESTS[which][5]
    start = max(limit + offset, 0)
    text = "x" * start + CARD + "y" * (limit + 64)
    body = body_of(text)
    assert len(body) > limit
    _, got = _decide(level, which, body[:limit], complete=False)
    if isinstance(got, Refusal):
        assert got.status == 413
        assert "redact rule `guard/redact-pii` could apply" in got.message
    else:  # (what the connector could not name, or a `_method` override unseen: 403)
        assert got.outcome == "deny", got  # type: ignore[attr-defined]
    _, whole = _decide(level, which, body, complete=True)
    assert not isinstance(whole, Refusal)
    assert whole.outcome == "allow"  # type: ignore[attr-defined]


def test_a_head_alone_is_not_refused_before_its_body_is_read() -> None:
    """``Expect: 100-continue``: the decision on the head alone (no body yet) refuses
    nothing for a redact rule; the body, once read, is decided."""
    _, got = _decide("full_enforce", 0, b"", complete=False)
    assert not isinstance(got, Refusal)
    assert got.outcome == "deny"  # type: ignore[attr-defined]
    assert got.errors  # type: ignore[attr-defined]


class _Upstream:
    """Records every byte it is sent; answers 200."""

    def __init__(self) -> None:
        self.received = bytearray()
        self.server = Background(self._serve)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            self.received += data
            if b"\r\n\r\n" in self.received:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
                await writer.drain()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, _Upstream]]:
    up = _Upstream()
    openai = connector("openai", base_url="http://api.openai.com")
    snap = snapshot([rule("openai.*", "allow")], connectors=[openai],
                    policies=[{"name": "guard", "document": REDACT_PII}])  # fmt: skip
    resolve = parse_resolve([f"api.openai.com:80=127.0.0.1:{up.server.port}"])
    tmp: Path = tmp_path_factory.mktemp("unredactable")
    running, _ = start_gateway(tmp, None, snap, resolve=resolve, body_inspect_limit=4096)
    yield running.port, up
    running.stop()
    up.server.stop()


def _chunked(body: bytes) -> bytes:
    pieces = [body[i : i + 1000] for i in range(0, len(body), 1000)]
    return b"".join(b"%x\r\n%b\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
@pytest.mark.parametrize("where", ["past the limit", "before the limit"])
def test_the_gateway_answers_413_and_sends_nothing(
    world: tuple[int, _Upstream], framing: str, where: str
) -> None:
    port, up = world
    text = "pay with " + CARD
    pad = "lorem ipsum " * 50_000  # 600 KB: far past the 4 KiB limit (and one read)
    messages = [pad, text] if where == "past the limit" else [text, pad]
    body = json.dumps({"model": "gpt-4o", "messages": [
        {"role": "user", "content": m} for m in messages]}).encode()  # fmt: skip
    length = b"Content-Length: %d\r\n" % len(body)
    framed = (length, body) if framing == "content-length" else (
        b"Transfer-Encoding: chunked\r\n", _chunked(body))  # fmt: skip
    before = len(up.received)
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"POST http://api.openai.com/v1/chat/completions HTTP/1.1\r\n"
                     b"Host: api.openai.com\r\nConnection: close\r\n" + auth_header()
                     + b"Content-Type: application/json\r\n" + framed[0] + b"\r\n"
                     + framed[1])  # fmt: skip
        answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    payload: dict[str, Any] = json.loads(answer.partition(b"\r\n\r\n")[2])
    assert "redact" in payload["reason"]
    assert len(up.received) == before  # nothing reached the upstream, not even the head
