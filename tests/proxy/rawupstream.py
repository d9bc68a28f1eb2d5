"""A raw HTTP/1.1 upstream for the content tests: exact bytes in and out.

Each request is recorded as received (head and body, ``Content-Length`` or chunked) and
answered with the bytes scripted for its path, written piece by piece as an upstream that
streams would; an unscripted path gets ``{"ok":true}``. A gateway in front of it:
:func:`start_raw_gateway` (every host of `connectors` resolves to it, plain HTTP).
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from pathlib import Path
from typing import Any

from agentfirewall_proxy.control import StaticControl
from agentfirewall_proxy.options import parse_resolve
from tests.proxy.rawclient import auth_header, read_all
from tests.proxy.support import Background, RunningGateway, snapshot, start_gateway

_OK = b'{"ok":true}'


def http_answer(
    body: bytes, content_type: bytes = b"application/json", extra: bytes = b""
) -> list[bytes]:
    """One answer with a `Content-Length` body."""
    head = b"HTTP/1.1 200 OK\r\nContent-Type: %b\r\nContent-Length: %d\r\n%b\r\n" % (
        content_type, len(body), extra)  # fmt: skip
    return [head + body]


def sse_answer(events: list[bytes], extra: bytes = b"") -> list[bytes]:
    """An event stream: the head, then each event in its own chunk, then the last chunk."""
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n%bTransfer-Encoding: "
    head = head % extra + b"chunked\r\n\r\n"
    return [head, *[b"%x\r\n%b\r\n" % (len(e), e) for e in events], b"0\r\n\r\n"]


class RawUpstream(Background):
    def __init__(self) -> None:
        self.received: list[tuple[bytes, bytes]] = []
        self.answers: dict[str, list[bytes]] = {}
        super().__init__(self._serve)

    def paths(self) -> list[str]:
        return [head.split(b" ", 2)[1].decode() for head, _ in self.received]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                fields = {}
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    fields[name.strip().lower()] = value.strip()
                body = b""
                if b"content-length" in fields:
                    body = await reader.readexactly(int(fields[b"content-length"]))
                elif fields.get(b"transfer-encoding", b"").lower() == b"chunked":
                    while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
                        body += (await reader.readexactly(size + 2))[:-2]
                    await reader.readuntil(b"\r\n")
                self.received.append((head, body))
                path = head.split(b" ", 2)[1].decode().split("?")[0]
                default = http_answer(_OK)
                for piece in self.answers.get(path, default):
                    writer.write(piece)
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass


def start_raw_gateway(
    tmp: Path,
    upstream: RawUpstream,
    connectors: list[dict[str, Any]],
    permissions: list[dict[str, Any]],
    policy: dict[str, Any] | None = None,
    **overrides: Any,
) -> tuple[RunningGateway, StaticControl]:
    hosts = [host for c in connectors for host in c["domains"]]
    policies = [{"name": policy["name"], "document": policy}] if policy else []
    snap = snapshot(permissions, connectors=connectors, policies=policies)
    resolve = parse_resolve([f"{host}:80=127.0.0.1:{upstream.port}" for host in hosts])
    return start_gateway(tmp, None, snap, resolve=resolve, **overrides)


def ask(running: RunningGateway, host: str, path: str, method: str = "GET",
        headers: tuple[str, ...] = (), body: bytes = b"") -> bytes:  # fmt: skip
    """Send one plain-HTTP request through the gateway; everything it answers, until close."""
    lines = [f"{method} http://{host}{path} HTTP/1.1", f"Host: {host}", "Connection: close",
             *headers]  # fmt: skip
    if body or method in ("POST", "PUT"):
        lines.append(f"Content-Length: {len(body)}")
    line, rest = ("\r\n".join(lines) + "\r\n\r\n").encode().split(b"\r\n", 1)
    with socket.create_connection(("127.0.0.1", running.port), timeout=10) as sock:
        sock.sendall(line + b"\r\n" + auth_header() + rest + body)
        return read_all(sock, 10)


def status_of(answer: bytes) -> int:
    parts = answer.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0


def json_body(answer: bytes) -> dict[str, Any]:
    data = json.loads(answer.partition(b"\r\n\r\n")[2])
    assert isinstance(data, dict)
    return data


def dechunked(answer: bytes) -> tuple[bytes, bool]:
    """The body of a chunked answer, and whether it ended properly (its last chunk came)."""
    data = answer.partition(b"\r\n\r\n")[2]
    body = b""
    while data:
        line, sep, data = data.partition(b"\r\n")
        if not sep:
            return body, False
        size = int(line.split(b";")[0], 16)
        if size == 0:
            return body, True
        if len(data) < size + 2:
            return body + data[:size], False
        body, data = body + data[:size], data[size + 2 :]
    return body, False


def record_at(control: StaticControl, path: str) -> dict[str, Any]:
    """The traffic record of the one request to `path` (shipped within a moment)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for record in list(control.traffic):
            if record["path"] == path:
                return dict(record)
        time.sleep(0.05)
    raise AssertionError(f"no traffic record for {path}")
