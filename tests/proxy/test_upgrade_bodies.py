"""An ``Upgrade`` request is decided on its head alone, so only a bodiless GET may ask, and
only WebSocket is switched to.

httptools (llhttp) switches at the end of an upgrade's head: a body after it became the
upgraded stream's first bytes, the gateway decided the request as bodiless and sent it on
with ``Content-Length: 0``. A Stripe refund of ``amount=500`` reached Stripe without its
amount: a refund of the whole charge. Now an ``Upgrade: websocket`` request with a body
(``Content-Length`` above 0 or chunked) or another method than GET is refused (400), never
forwarded; WebSocket handshakes pass as before (``test_features.py``, ``test_scrub_live.py``).

Any other protocol (``h2c``: ``curl --http2 http://…``) was switched too, then relayed as
raw bytes: an upstream that accepts h2c read every later request on that connection as
HTTP/2, undecided. Now it is no switch: the request goes as plain HTTP/1.1 without
``Upgrade`` and ``HTTP2-Settings`` (with its body, if any), and the connection carries
further requests, each decided (the parser reads on: ``http1.RequestParser``).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentfirewall_proxy.http1 import END, Head, RequestParser, Upgrade
from tests.fuzzscale import examples
from tests.proxy.rawclient import auth_header, read_all, read_response
from tests.proxy.rawupstream import RawUpstream, json_body, start_raw_gateway, status_of
from tests.proxy.support import RunningGateway, connector, rule

STRIPE = "api.stripe.com"
APP = "app.example.org"
UPGRADE = ("Connection: Upgrade", "Upgrade: websocket")
FORM = "Content-Type: application/x-www-form-urlencoded"
H2C = ("Connection: Upgrade, HTTP2-Settings", "Upgrade: h2c",
       "HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA")  # fmt: skip


class H2cUpstream(RawUpstream):
    """A raw upstream (``Content-Length`` bodies) that accepts ``Upgrade: h2c`` (``101``):
    whatever comes after is HTTP/2 to it, noted in :attr:`switched`."""

    def __init__(self) -> None:
        self.switched: list[bytes] = []
        super().__init__()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = [line.partition(b":") for line in head.split(b"\r\n")[1:]]
                fields = {name.strip().lower(): value.strip() for name, _, value in lines}
                body = await reader.readexactly(int(fields.get(b"content-length", b"0")))
                self.received.append((head, body))
                unasked = b"/unasked-101 " in head.split(b"\r\n", 1)[0]
                if fields.get(b"upgrade", b"").lower() == b"h2c" or unasked:
                    writer.write(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                                 b"Upgrade: h2c\r\n\r\n")  # fmt: skip
                    while data := await reader.read(65536):
                        self.switched.append(data)
                    return
                writer.write(b'HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n{"ok":true}')
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass


class World:
    def __init__(self, running: RunningGateway, upstream: H2cUpstream) -> None:
        self.running, self.upstream = running, upstream

    def send(self, first: str, host: str, headers: tuple[str, ...], body: bytes = b"") -> bytes:
        """One request as raw bytes; the first answer (all that comes, when it closes)."""
        lines = [first, f"Host: {host}", *headers]
        head = ("\r\n".join(lines) + "\r\n").encode() + auth_header() + b"\r\n"
        with socket.create_connection(("127.0.0.1", self.running.port), timeout=10) as sock:
            sock.sendall(head + body)
            return read_response(sock, 10)

    def forwarded(self, path: str) -> list[bytes]:
        return [head for head, _ in self.upstream.received if head.split(b" ")[1] == path.encode()]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    upstream = H2cUpstream()
    connectors = [connector("stripe", base_url=f"http://{STRIPE}"),
                  connector("generic", domains=[APP], credential=None)]  # fmt: skip
    rules = [rule("stripe.refund.create", "allow"), rule("http.*", "allow"),
             rule("http.delete", "deny")]  # fmt: skip
    running, _ = start_raw_gateway(tmp_path_factory.mktemp("upgrade"), upstream, connectors,
                                   rules)  # fmt: skip
    yield World(running, upstream)
    running.stop()
    upstream.stop()


def test_a_refund_with_an_upgrade_never_reaches_stripe_without_its_amount(world: World) -> None:
    path = "/v1/charges/ch_1/refunds"
    first = f"POST http://{STRIPE}{path} HTTP/1.1"
    answer = world.send(first, STRIPE, (FORM, *UPGRADE, "Content-Length: 10"), b"amount=500")
    assert status_of(answer) == 400
    assert "cannot carry a body" in json_body(answer)["reason"]
    assert world.forwarded(path) == []
    answer = world.send(first, STRIPE, (FORM, "Content-Length: 10"), b"amount=500")
    assert status_of(answer) == 200  # without the Upgrade: forwarded with its body
    assert world.upstream.received[-1][1] == b"amount=500"


REFUSED = {
    "websocket, length": ("POST", (FORM, *UPGRADE, "Content-Length: 3"), b"a=1", "a body"),
    "websocket, chunked": ("POST", (FORM, *UPGRADE, "Transfer-Encoding: chunked"),
                           b"3\r\na=1\r\n0\r\n\r\n", "a body"),
    "GET with a body": ("GET", (*UPGRADE, "Content-Length: 3"), b"a=1", "a body"),
    "no Connection: upgrade": ("POST", (FORM, "Upgrade: websocket", "Content-Length: 3"),
                               b"a=1", "a body"),
    "expect 100-continue": ("POST", (FORM, *UPGRADE, "Expect: 100-continue",
                                     "Content-Length: 3"), b"", "a body"),
    "POST without a body": ("POST", (*UPGRADE, "Content-Length: 0"), b"", "only a GET"),
    "DELETE": ("DELETE", UPGRADE, b"", "only a GET"),
}  # fmt: skip


@pytest.mark.parametrize("name", list(REFUSED))
def test_an_upgrade_with_a_body_or_not_a_get_is_refused(world: World, name: str) -> None:
    method, headers, body, reason = REFUSED[name]
    path = "/refused/" + name.replace(" ", "-")
    answer = world.send(f"{method} http://{APP}{path} HTTP/1.1", APP, headers, body)
    assert status_of(answer) == 400, answer
    assert json_body(answer)["error"] == "bad_request"
    assert reason in json_body(answer)["reason"]
    assert world.forwarded(path) == []


def test_an_upgrade_header_the_parser_does_not_switch_on_is_a_plain_request(
    world: World,
) -> None:
    """Without ``Connection: upgrade`` there is no switch: answered (it used to wait for the
    end of a body already taken), and forwarded without the ``Upgrade``."""
    answer = world.send(f"GET http://{APP}/stray HTTP/1.1", APP, ("Upgrade: websocket",))
    assert status_of(answer) == 200
    (head,) = world.forwarded("/stray")
    assert b"upgrade" not in head.lower()


def test_an_upgrade_the_upstream_declines_closes_the_connection(world: World) -> None:
    """After a switch the parser reads nothing more: a connection kept open would hang."""
    head = (f"GET http://{APP}/declined HTTP/1.1\r\nHost: {APP}\r\nConnection: Upgrade\r\n"
            "Upgrade: websocket\r\n").encode() + auth_header() + b"\r\n"  # fmt: skip
    with socket.create_connection(("127.0.0.1", world.running.port), timeout=10) as sock:
        sock.sendall(head)
        answer = read_all(sock, 10)
    assert status_of(answer) == 200
    assert b"Connection: close" in answer.partition(b"\r\n\r\n")[0].split(b"\r\n")
    assert len(world.forwarded("/declined")) == 1


def _names(head: bytes) -> list[bytes]:
    return [line.partition(b":")[0].strip().lower() for line in head.split(b"\r\n")[1:]]


def test_h2c_is_no_switch_and_every_later_request_is_decided(world: World) -> None:
    """``curl --http2 http://…`` asks for h2c; this upstream would accept. Answered over
    HTTP/1.1 instead (neither ``Upgrade`` nor ``HTTP2-Settings`` reach it), and the next
    request on the connection is decided as any other: a DELETE the rules deny is refused,
    never relayed. An HTTP/2 preface sent anyway is a malformed request (400)."""
    first = (f"GET http://{APP}/h2c/first HTTP/1.1\r\nHost: {APP}\r\n" + "\r\n".join(H2C)
             + "\r\n").encode() + auth_header() + b"\r\n"  # fmt: skip
    second = f"DELETE http://{APP}/h2c/second HTTP/1.1\r\nHost: {APP}\r\n".encode()
    with socket.create_connection(("127.0.0.1", world.running.port), timeout=10) as sock:
        sock.sendall(first)
        answers = [read_response(sock, 5)]
        sock.sendall(second + auth_header() + b"\r\n")
        answers.append(read_response(sock, 5))
    assert world.upstream.switched == []  # nothing reached it undecided
    assert [status_of(answer) for answer in answers] == [200, 403]
    assert world.forwarded("/h2c/second") == []
    with socket.create_connection(("127.0.0.1", world.running.port), timeout=10) as sock:
        sock.sendall(first + b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        assert status_of(read_response(sock, 5)) == 200
        assert status_of(read_response(sock, 5)) == 400
    assert world.upstream.switched == []
    heads = world.forwarded("/h2c/first")
    assert len(heads) == 2
    for head in heads:
        assert not {b"upgrade", b"http2-settings", b"connection"} & set(_names(head))


def test_a_switch_no_one_asked_for_is_a_502(world: World) -> None:
    """An upstream answering 101 to a request that asked for no switch (the gateway sends
    an `Upgrade` for WebSocket only) is refused, never relayed: what would follow on the
    connection no decision could see."""
    answer = world.send(f"GET http://{APP}/unasked-101 HTTP/1.1", APP, ())
    assert status_of(answer) == 502, answer
    assert b"switched protocols" in answer
    assert world.upstream.switched == []


def test_curl_http2_with_a_body_goes_as_http1_with_its_body(world: World) -> None:
    """``curl --http2 -d a=1 http://…``: the body the parser took for the upgraded stream's
    is read as the body (it used to be 400)."""
    path = "/h2c/post"
    answer = world.send(f"POST http://{APP}{path} HTTP/1.1", APP,
                        (FORM, *H2C, "Content-Length: 3"), b"a=1")  # fmt: skip
    assert status_of(answer) == 200
    ((head, body),) = [(h, b) for h, b in world.upstream.received if f" {path} ".encode() in h]
    assert body == b"a=1"
    assert b"upgrade" not in _names(head)


_TOKENS = st.sampled_from(["websocket", "WebSocket", " websocket ", "h2c", "H2C", "h2",
                           "TLS/1.2", "websocket/13", "websockets", ""])  # fmt: skip
_BODIES = st.sampled_from([b"", b"Content-Length: 3\r\n\r\na=1",
                           b"Transfer-Encoding: chunked\r\n\r\n3\r\na=1\r\n0\r\n\r\n"])  # fmt: skip


@settings(max_examples=examples(300))
@given(st.lists(st.lists(_TOKENS, min_size=1, max_size=3), min_size=1, max_size=2), _BODIES,
       st.integers(1, 200))  # fmt: skip
def test_only_websocket_switches(values: list[list[str]], body: bytes, piece: int) -> None:
    """Whatever ``Upgrade`` headers a request carries (with ``Connection: upgrade``), the
    parser hands over the connection only for WebSocket alone; else it reads on, fed in
    pieces of any size: the request's body as its body, then the next request."""
    headers = b"".join(b"Upgrade: %b\r\n" % ",".join(v).encode() for v in values)
    data = (b"POST /a HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\n" + headers
            + (body or b"\r\n") + b"GET /b HTTP/1.1\r\nHost: a\r\n\r\n")  # fmt: skip
    parser = RequestParser()
    for at in range(0, len(data), piece):
        parser.feed(data[at : at + piece])
    events = list(parser.events)
    assert isinstance(events[0], Head)
    if all(token.strip().lower() == "websocket" for v in values for token in v):
        assert events[0].asks_websocket
        assert isinstance(events[-1], Upgrade)  # (what follows is the upgraded stream's)
        assert [e for e in events if isinstance(e, Head)] == events[:1]
        return
    assert not events[0].asks_websocket
    assert b"".join(e for e in events if isinstance(e, bytes)) == (b"a=1" if body else b"")
    framing = [e.target if isinstance(e, Head) else e for e in events if not isinstance(e, bytes)]
    assert framing == [b"/a", END, b"/b", END]
