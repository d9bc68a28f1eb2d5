"""An upstream's transfer coding other than exactly ``chunked`` is refused, never relayed.

The gateway drops ``Transfer-Encoding`` and re-frames every body. An answer in
``Transfer-Encoding: gzip, chunked`` (or close-delimited ``gzip``) was relayed as its raw
gzip bytes: the scrubber searched compressed bytes, and the agent gunzipped the injected
credential an upstream echoed. Now any response whose ``Transfer-Encoding`` is not
exactly ``chunked`` (any case, spaces around) is 502 ``upstream_error`` before a byte is
relayed, on every path: plain relay, scrubbed, content-guarded, event stream, and the
bodiless answers too (HEAD, 204, an interim 103): an upstream that sends one is not read.
``Transfer-Encoding`` with ``Content-Length`` (a response smuggled toward the agent) is
502 as well. Real raw upstream, real client (httpx) through the real gateway.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterator

import httpx
import pytest

from agentfirewall_proxy.http1 import ParseError, ResponseHead, ResponseParser
from tests.proxy.rawupstream import RawUpstream, start_raw_gateway
from tests.proxy.support import RunningGateway, connector, rule

SECRET = "tfsecret_Zq81xYv0ab3CdEfGhIjK"
INJECTING, OPEN = "echo.test", "open.test"  # a connector injecting SECRET, one injecting nothing
ECHO = json.dumps({"headers": {"Authorization": f"Bearer {SECRET}"}}).encode()
GZ = gzip.compress(ECHO, mtime=0)
GUARD = {"name": "guardrails", "rules": [{"name": "cut-injections", "decision": "deny",
         "conditions": {"field": "response.injection", "operator": "exists"}}]}  # fmt: skip


def chunked(body: bytes, size: int = 7) -> bytes:
    parts = [body[i : i + size] for i in range(0, len(body), size)]
    return b"".join(b"%x\r\n%b\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


def answer(status: str, fields: str, body: bytes = b"") -> bytes:
    return f"HTTP/1.1 {status}\n{fields}\n".replace("\n", "\r\n").encode() + body


JSON = "Content-Type: application/json\n"
#: (method, the upstream's answer): each refused with 502 whatever the path.
REFUSED = {
    "gzip, chunked": ("GET", answer("200 OK", JSON + "Transfer-Encoding: gzip, chunked\n",
                                    chunked(GZ))),
    "gzip close-delimited": ("GET", answer("200 OK", JSON + "Transfer-Encoding: gzip\n"
                                           "Connection: close\n", GZ)),
    "chunked, gzip": ("GET", answer("200 OK", JSON + "Transfer-Encoding: chunked, gzip\n"
                                    "Connection: close\n", chunked(GZ))),
    "GZIP ,  Chunked": ("GET", answer("200 OK", JSON + "Transfer-Encoding: GZIP ,  Chunked\n",
                                      chunked(GZ))),
    "chunked, then a tab": ("GET", answer("200 OK", JSON + "Transfer-Encoding: chunked\t\n",
                                          chunked(ECHO))),  # llhttp reads it to the close
    "identity": ("GET", answer("200 OK", JSON + "Transfer-Encoding: identity\n"
                               "Connection: close\n", ECHO)),
    "chunked, chunked": ("GET", answer("200 OK", JSON + "Transfer-Encoding: chunked, chunked\n",
                                       chunked(chunked(ECHO)))),
    "chunked twice": ("GET", answer("200 OK", JSON + "Transfer-Encoding: chunked\n"
                                    "Transfer-Encoding: chunked\n", chunked(chunked(ECHO)))),
    "chunked and a length": ("GET", answer("200 OK", JSON + "Transfer-Encoding: chunked\n"
                                           f"Content-Length: {len(ECHO)}\n", chunked(ECHO))),
    "a length and chunked": ("GET", answer("200 OK", JSON + f"Content-Length: {len(ECHO)}\n"
                                           "Transfer-Encoding: chunked\n", chunked(ECHO))),
    "event stream": ("GET", answer("200 OK", "Content-Type: text/event-stream\n"
                                   "Transfer-Encoding: gzip, chunked\n",
                                   chunked(gzip.compress(b"data: " + ECHO + b"\n\n")))),
    "HEAD": ("HEAD", answer("200 OK", JSON + "Transfer-Encoding: gzip, chunked\n")),
    "204": ("GET", answer("204 No Content", "Transfer-Encoding: gzip\n")),
    "103 then 200": ("GET", answer("103 Early Hints", "Transfer-Encoding: gzip\n")
                     + answer("200 OK", JSON + f"Content-Length: {len(ECHO)}\n", ECHO)),
}  # fmt: skip


@pytest.mark.parametrize("name", REFUSED)
def test_the_parser_refuses_every_transfer_coding_but_chunked(name: str) -> None:
    _, data = REFUSED[name]
    for pieces in ([data], [data[i : i + 1] for i in range(len(data))]):  # whole, byte by byte
        parser = ResponseParser()
        for piece in pieces:
            parser.feed(piece)
        errors = [e for e in parser.events if isinstance(e, ParseError)]
        assert [e.status for e in errors] == [502], name
        assert not any(isinstance(e, ResponseHead) and e.status >= 200 for e in parser.events)


@pytest.mark.parametrize("value", [b"chunked", b"Chunked", b"\t CHUNKED  "])
def test_exactly_chunked_is_read_in_any_case(value: bytes) -> None:
    parser = ResponseParser()
    parser.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: %b\r\n\r\n%b" % (value, chunked(ECHO)))
    head, *body = parser.events
    assert isinstance(head, ResponseHead)
    assert head.chunked
    assert b"".join(p for p in body if isinstance(p, bytes)) == ECHO


@pytest.fixture(scope="module", params=["relayed", "guarded"])
def gateway(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RunningGateway, RawUpstream]]:
    """A gateway that relays responses, or one whose policy reads them (content guard)."""
    upstream = RawUpstream()
    conns = [
        connector("generic", id="conn_echo", name="echo", domains=[INJECTING],
                  base_url=f"http://{INJECTING}", credential=SECRET, auth_type="bearer"),
        connector("generic", id="conn_open", name="open", domains=[OPEN], credential=None),
    ]  # fmt: skip
    policy = GUARD if request.param == "guarded" else None
    running, _ = start_raw_gateway(tmp_path_factory.mktemp("te"), upstream, conns,
                                   [rule("http.*", "allow")], policy)  # fmt: skip
    yield running, upstream
    running.stop()
    upstream.stop()


def _views(body: bytes) -> bytes:
    """What an agent could make of `body`: as it is, and gunzipped wherever gzip starts."""
    start = body.find(b"\x1f\x8b")
    if start < 0:
        return body
    try:  # (a truncated stream gives what it holds)
        return body + zlib.decompressobj(47).decompress(body[start:])
    except zlib.error:
        return body


@pytest.mark.parametrize("host", [INJECTING, OPEN])
@pytest.mark.parametrize("name", REFUSED)
def test_a_response_in_another_transfer_coding_is_refused_on_every_path(
    gateway: tuple[RunningGateway, RawUpstream], name: str, host: str
) -> None:
    running, upstream = gateway
    method, data = REFUSED[name]
    path = f"/{host}/{name.replace(' ', '-')}"
    upstream.answers[path] = [data]
    with httpx.Client(proxy=running.proxy_url(), trust_env=False, timeout=10) as http:
        reply = http.request(method, f"http://{host}{path}")
        assert reply.status_code == 502, (name, reply.headers, reply.content[:200])
        if method != "HEAD":
            answer = reply.json()
            assert answer["error"] == "upstream_error"
            assert "transfer-encoding" in answer["reason"].lower()
        assert SECRET.encode() not in _views(reply.content)
        assert http.get(f"http://{host}/after").status_code == 200  # the gateway goes on
    assert path in upstream.paths()  # it was the answer that was refused
