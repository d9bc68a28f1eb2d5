"""A request goes upstream at most once unless it is safe to repeat.

The gateway pools upstream connections and, when a pooled one turns out closed, sends the
request again on a fresh one. 0.1.0 did so after *any* failure of a reused connection: an
upstream slower than `upstream_timeout` (504), or one answering garbage (502), got the
same POST twice: one decided (or approved) action, two issues created, two charges.

Now only a pooled connection that closed before any answer is retried, and only for a
request safe to repeat (`GET`, `HEAD`, `OPTIONS`, `TRACE`, or one with an
`Idempotency-Key`); everything else is answered 502/504, performed at most once.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path

import httptools
import pytest

from agentfirewall_proxy.options import parse_resolve
from tests.proxy.rawclient import auth_header, read_response, status_of
from tests.proxy.support import (
    Background,
    RunningGateway,
    connector,
    rule,
    snapshot,
    start_gateway,
)

OK = b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok"


class SecondFails:
    """A keep-alive upstream that answers the first request on each connection, and
    misbehaves on the second one on the same connection: `slow` (answers after 3 s),
    `garbage` (a response no parser takes), or `close` (reads it, closes unanswered).
    Records every request it received: (connection number, method, body)."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.received: list[tuple[int, str, bytes]] = []
        self.server = Background(self._serve)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        number = len(self.server.writers)
        done: list[tuple[str, bytes]] = []

        class Parsed:
            body = b""

            def on_message_begin(self) -> None:
                self.body = b""

            def on_body(self, data: bytes) -> None:
                self.body += data

            def on_message_complete(self) -> None:
                done.append((parser.get_method().decode(), self.body))

        parser = httptools.HttpRequestParser(Parsed())
        count = 0
        while data := await reader.read(65536):
            parser.feed_data(data)
            for method, body in done:
                count += 1
                self.received.append((number, method, body))
                if count == 1:
                    writer.write(OK)
                elif self.mode == "slow":
                    await asyncio.sleep(3)
                    writer.write(OK)
                elif self.mode == "garbage":
                    writer.write(b"HTTP/1.1 2x0 Nope\r\n\r\n")
                else:
                    return  # closed, unanswered
            done.clear()


Setup = tuple[SecondFails, RunningGateway]


@pytest.fixture(params=["slow", "garbage", "close"])
def setup(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Setup]:
    upstream = SecondFails(request.param)
    snap = snapshot([rule("github.*", "allow")],
                    connectors=[connector("github", base_url="http://api.github.com")])  # fmt: skip
    resolve = parse_resolve([f"api.github.com=127.0.0.1:{upstream.server.port}"])
    running, _ = start_gateway(tmp_path, None, snap, resolve=resolve, upstream_timeout=1.0)
    try:
        yield upstream, running
    finally:
        running.stop()


def _send(sock: socket.socket, method: str, body: bytes, extra: bytes = b"") -> bytes:
    path = b"/repos/acme/api/issues"
    sock.sendall(method.encode() + b" http://api.github.com" + path + b" HTTP/1.1\r\n"
                 b"Host: api.github.com\r\nContent-Type: application/json\r\n" + auth_header()
                 + extra + b"Content-Length: %d\r\n\r\n" % len(body) + body)  # fmt: skip
    return read_response(sock, timeout=10)


@pytest.mark.parametrize(
    ("method", "extra", "repeatable"),
    [
        ("POST", b"", False),
        ("POST", b"Idempotency-Key: k-1\r\n", True),
        ("GET", b"", True),
    ],
)
def test_a_request_reaches_the_upstream_at_most_once_unless_safe_to_repeat(
    setup: Setup, method: str, extra: bytes, repeatable: bool
) -> None:
    upstream, gateway = setup
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        assert status_of(_send(sock, method, b'{"title":"one"}', extra)) == 201
        second = status_of(_send(sock, method, b'{"title":"two"}', extra))
    copies = [r for r in upstream.received if r[2] == b'{"title":"two"}']
    retried = upstream.mode == "close" and repeatable  # closed unanswered: a fresh connection
    assert len(copies) == (2 if retried else 1), upstream.received
    expected = {"slow": 504, "garbage": 502, "close": 201 if retried else 502}[upstream.mode]
    assert second == expected
