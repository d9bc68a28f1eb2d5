"""A ``_method`` override in a body is refused, whatever the connector.

Rack, Laravel, Spring and Express's ``method-override`` turn ``POST`` with a body field
``_method=DELETE`` into a DELETE. Every connector refuses that field
(``base.request_method``), but the generic and webhook connectors read no body, so the
gateway decided such a request unread: ``http.post``, allowed, and the upstream deleted.
Now a body such a middleware reads (``base.override_readable``: a POST's form, JSON,
multipart or untyped body, a type naming ``/json`` anywhere, ``text/json``; a form or
multipart body of any method but GET, which Hono's ``methodOverride`` reads) is read before
deciding, as the upstream reads it (decoded, charset checked), and its field names are read
as each middleware reads them: multipart ones in RFC 2231 / RFC 7578 forms (``name*=``,
continuations, escapes, any case, folded or broken lines), names PHP reads as ``_method``
(``.method``), forms in any bytes. Two ``Content-Type`` headers that differ are refused.
Such a body past the inspection limit cannot be checked: it is never allowed on these
connectors of any API (``pipeline.decide``; a named API such as ``openai`` reads no
``_method`` and decides it as any unseen body). Any other body is
still streamed: the upstream has its head before the body has all come.

:data:`REFUSED` is the table of override bodies, each refused by both connectors and
never forwarded; extend it with any new spelling (every spelling, without sockets:
``tests/connectors/test_connector_overrides.py``).
"""

from __future__ import annotations

import asyncio
import gzip
import socket
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from agentfirewall_proxy.options import parse_resolve
from tests.proxy.rawclient import auth_header, read_all, read_response
from tests.proxy.rawupstream import RawUpstream, json_body, start_raw_gateway, status_of
from tests.proxy.support import Background, RunningGateway, connector, rule, snapshot, start_gateway

LIMIT = 4096
FORM = "Content-Type: application/x-www-form-urlencoded"
JSON = "Content-Type: application/json"
MULTIPART = "Content-Type: multipart/form-data; boundary=b"
HOSTS = {"generic": "app.example.org", "webhook": "hooks.example.org"}
OPENAI = "api.openai.com"


@dataclass(frozen=True)
class Case:
    name: str
    headers: tuple[str, ...]
    body: bytes
    chunked: bool = False
    reason: str = "_method"
    method: str = "POST"


def _multipart(name: bytes) -> bytes:
    return _disposition(b'name="' + name + b'"')


def _disposition(params: bytes) -> bytes:
    """A multipart body whose second part's ``Content-Disposition`` is ``form-data; `params```."""
    return (b"--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n"
            b"--b\r\nContent-Disposition: form-data; " + params + b"\r\n\r\n"
            b"DELETE\r\n--b--\r\n")  # fmt: skip


#: Past the limit and past one read (64 KiB): what follows is never read before deciding.
_BIG = b"a=" + b"x" * 100_000
REFUSED = [
    Case("form", (FORM,), b"_method=DELETE"),
    Case("form, later field", (FORM,), b"a=1&_method=DELETE"),
    Case("form, escaped", (FORM,), b"%5Fmethod=DELETE"),
    Case("form, upper case", (f"{FORM}; charset=UTF-8",), b"_METHOD=delete"),
    Case("form, chunked", (FORM,), b"a=1&_method=DELETE", chunked=True),
    Case("form, gzip", (FORM, "Content-Encoding: gzip"), gzip.compress(b"_method=DELETE")),
    Case("no type", (), b"_method=DELETE"),
    Case("json", (JSON,), b'{"_method":"DELETE"}'),
    Case("json, escaped", (JSON,), b'{"\\u005fmethod":"DELETE"}'),
    Case("json, +json", ("Content-Type: application/vnd.api+json",), b'{"_method":"DELETE"}'),
    Case(
        "json, deflate",
        (JSON, "Content-Encoding: deflate"),
        zlib.compress(b'{"a":1,"_method":"DELETE"}'),
    ),
    Case(
        "json, utf-16",
        (f"{JSON}; charset=utf-16",),
        '{"_method":"DELETE"}'.encode("utf-16"),
        reason="charset",
    ),
    Case("json, text/json", ("Content-Type: text/json",), b'{"_method":"DELETE"}'),
    Case("form, as PHP names it", (FORM,), b"a=1&.method=DELETE"),
    Case("form, after a semicolon", (FORM,), b"a=1;_method=DELETE"),
    Case("no type, not UTF-8", (), b"a=\xff&_method=DELETE"),
    Case("two types", ("Content-Type: text/plain", FORM), b"_method=DELETE", reason="differ"),
    Case("form, a PUT (Hono)", (FORM,), b"a=1&_method=DELETE", method="PUT"),
    Case("multipart, a PATCH (Hono)", (MULTIPART,), _multipart(b"_method"), method="PATCH"),
    Case("multipart", (MULTIPART,), _multipart(b"_method")),
    Case("multipart, escaped", (MULTIPART,), _multipart(b"%5fmethod")),
    Case("multipart, rfc 2231", (MULTIPART,), _disposition(b"name*=UTF-8''_method")),
    Case("multipart, rfc 2231 escaped", (MULTIPART,), _disposition(b"name*=utf-8''%5Fmethod")),
    Case("multipart, continued", (MULTIPART,), _disposition(b'name*0="_me"; name*1="thod"')),
    Case("multipart, unquoted", (MULTIPART,), _disposition(b"name=_method")),
    Case("multipart, upper case", (MULTIPART,), _disposition(b'NAME="_method"')),
    Case("multipart, folded", (MULTIPART,), _disposition(b'\r\n name="_method"')),
    Case("multipart, line broken", (MULTIPART,), _disposition(b'name="_me\r\nthod"')),
    Case("multipart, backslash", (MULTIPART,), _disposition(b'name="_\\method"')),
    Case("multipart, single quotes", (MULTIPART,), _disposition(b"name='_method'")),
    Case("form, past the limit", (FORM,), _BIG + b"&_method=DELETE", reason="inspection limit"),
    Case("form, past the limit, none seen", (FORM,), _BIG, reason="inspection limit"),
    Case(
        "json, past the limit, gzip",
        (JSON, "Content-Encoding: gzip"),
        gzip.compress(b'{"a":"' + b"x" * LIMIT + b'"}'),
        reason="inspection limit",
    ),
]


class World:
    def __init__(self, running: RunningGateway, upstream: RawUpstream) -> None:
        self.running, self.upstream = running, upstream

    def post(self, host: str, path: str, case: Case) -> bytes:
        lines = [f"{case.method} http://{host}{path} HTTP/1.1", f"Host: {host}",
                 "Connection: close", *case.headers]  # fmt: skip
        body = case.body
        if case.chunked:
            lines.append("Transfer-Encoding: chunked")
            body = b"".join(b"%x\r\n%b\r\n" % (len(c), c) for c in (body[:5], body[5:]) if c)
            body += b"0\r\n\r\n"
        else:
            lines.append(f"Content-Length: {len(body)}")
        head = ("\r\n".join(lines) + "\r\n").encode() + auth_header() + b"\r\n"
        with socket.create_connection(("127.0.0.1", self.running.port), timeout=10) as sock:
            sock.sendall(head + body)
            return read_all(sock, 10)

    def forwarded(self, path: str) -> list[bytes]:
        return [body for head, body in self.upstream.received
                if head.split(b" ")[1] == path.encode()]  # fmt: skip


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    upstream = RawUpstream()
    connectors = [*(connector(kind, id=f"c_{kind}", domains=[host], credential=None)
                    for kind, host in HOSTS.items()),
                  connector("openai", base_url=f"http://{OPENAI}")]  # fmt: skip
    rules = [rule("http.*", "allow"), rule("webhook.*", "allow"), rule("openai.*", "allow")]
    running, _ = start_raw_gateway(tmp_path_factory.mktemp("override"), upstream, connectors,
                                   rules, body_inspect_limit=LIMIT)  # fmt: skip
    yield World(running, upstream)
    running.stop()
    upstream.stop()


@pytest.mark.parametrize("kind", list(HOSTS))
@pytest.mark.parametrize("case", REFUSED, ids=[case.name for case in REFUSED])
def test_a_method_override_in_a_body_is_refused(world: World, case: Case, kind: str) -> None:
    path = f"/refused/{kind}/{case.name.replace(' ', '-').replace(',', '')}"
    answer = world.post(HOSTS[kind], path, case)
    assert status_of(answer) == 403, answer
    assert json_body(answer)["error"] == "denied"
    assert case.reason in json_body(answer)["reason"]
    assert world.forwarded(path) == []


PLAIN = [
    Case("form", (FORM,), b"a=1&method=DELETE"),
    Case("form, chunked", (FORM,), b"a=1&b=2", chunked=True),
    Case("json", (JSON,), b'{"method":"DELETE","a":[1]}'),
    Case("form, gzip", (FORM, "Content-Encoding: gzip"), gzip.compress(b"a=1")),
    Case("multipart", (MULTIPART,), _multipart(b"method")),
    Case("multipart, a file named so", (MULTIPART,), _disposition(b'name="f"; filename="_method"')),
    Case("two equal types", (FORM, FORM), b"a=1"),
    Case("json, a PUT", (JSON,), b'{"_method":"DELETE"}', method="PUT"),  # only a POST's
    Case(
        "octet-stream, past the limit",
        ("Content-Type: application/octet-stream",),
        _BIG + b"&_method=DELETE",
    ),
]


@pytest.mark.parametrize("kind", list(HOSTS))
@pytest.mark.parametrize("case", PLAIN, ids=[case.name for case in PLAIN])
def test_other_bodies_are_forwarded_as_sent(world: World, case: Case, kind: str) -> None:
    """No override, or a body no middleware reads a field from: allowed, forwarded whole."""
    path = f"/plain/{kind}/{case.name.replace(' ', '-').replace(',', '')}"
    assert status_of(world.post(HOSTS[kind], path, case)) == 200
    assert world.forwarded(path) == [case.body]


def test_a_named_api_decides_a_body_past_the_limit_as_any_unseen_body(world: World) -> None:
    """Only a connector of any API (generic, webhook: ``Connector.any_upstream``) never
    allows an override-readable body past the limit: a named API reads no ``_method`` (an
    OpenAI upload past the limit is decided as any body not fully inspected, here allowed),
    while the same body to a generic upstream is refused."""
    path = "/v1/chat/completions"
    big = b'{"model":"gpt-4o","messages":[{"role":"user","content":"' + b"x" * 100_000
    big += b'"}]}'
    assert status_of(world.post(OPENAI, path, Case("big", (JSON,), big))) == 200
    assert world.forwarded(path) == [big]
    generic = "/past-limit/generic"
    answer = world.post(HOSTS["generic"], generic, Case("big", (JSON,), big))
    assert status_of(answer) == 403, answer
    assert "inspection limit" in json_body(answer)["reason"]
    assert world.forwarded(generic) == []


class HeadFirst(Background):
    """An upstream that notes each request head as soon as it comes, then reads its
    ``Content-Length`` body and answers."""

    def __init__(self) -> None:
        self.head_seen = threading.Event()
        self.bodies: list[bytes] = []
        super().__init__(self._serve)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        self.head_seen.set()
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))  # fmt: skip
        self.bodies.append(await reader.readexactly(length))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()


def test_a_body_no_middleware_reads_is_streamed_not_buffered(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """The upstream has the request before its body has all come (docs/proxy.md: generic
    and webhook connectors decide without the body, it is streamed)."""
    upstream = HeadFirst()
    generic = connector("generic", domains=["app.example.org"], credential=None)
    running, _ = start_gateway(
        tmp_path_factory.mktemp("stream"), None,
        snapshot([rule("http.post", "allow")], connectors=[generic]),
        resolve=parse_resolve([f"app.example.org:80=127.0.0.1:{upstream.port}"]),
    )  # fmt: skip
    try:
        body = b"_method=DELETE" * 100
        head = (b"POST http://app.example.org/upload HTTP/1.1\r\nHost: app.example.org\r\n"
                b"Content-Type: application/octet-stream\r\n"
                b"Content-Length: %d\r\n" % len(body) + auth_header() + b"\r\n")  # fmt: skip
        with socket.create_connection(("127.0.0.1", running.port), timeout=10) as sock:
            sock.sendall(head + body[:100])
            assert upstream.head_seen.wait(10), "the head waited for the whole body"
            sock.sendall(body[100:])
            assert status_of(read_response(sock, 10)) == 200
        assert upstream.bodies == [body]
    finally:
        running.stop()
        upstream.stop()
