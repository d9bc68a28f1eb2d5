"""Upstreams that hand the request's credential straight back: for the scrubbing tests.

:func:`reflector` is a :class:`~tests.fakes.base.FakeUpstream` (real HTTP and TLS, every
request recorded with its scheme) serving any hostnames given. Its answer reflects every
request header in a JSON body, in ``X-Echo-<name>`` response headers and (with ``forms``)
in base64 and percent-encoded forms too. Query knobs:

- ``cut=K``: the body is sent in two pieces, cut K bytes into the first reflected
  ``Authorization``/``X-Api-Key`` value (a secret split across two reads of the gateway);
  with ``length`` the response has a ``Content-Length``, else it is chunked;
- ``mode=sse``: ``text/event-stream``, one event per piece;
- ``encoding=gzip|br``: the body compressed (or labelled ``br``) whatever was asked;
- ``status=N``: another status than 200 (206: a partial answer nobody asked for).

:class:`WebSocketReflector` is a raw WebSocket server (TLS and plain) that answers the
handshake, then sends the credential back split across two fragments, base64'd in a
binary frame and in the close frame's reason; it records each handshake's headers.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import json
import ssl
import tempfile
import threading
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

import trustme

from tests.fakes.base import FakeUpstream, Receive, Scope, Send

__all__ = ["SECRET_HEADERS", "WebSocketReflector", "reflector"]

#: Request headers that carry an injected credential, whichever the connector uses.
SECRET_HEADERS = ("authorization", "x-api-key")
_WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_SKIP = frozenset({"host", "content-length", "transfer-encoding", "connection"})


def _secret(headers: dict[str, str]) -> str:
    return next((headers[h] for h in SECRET_HEADERS if h in headers), "")


async def _reflect(scope: Scope, receive: Receive, send: Send) -> None:
    while (await receive()).get("more_body"):
        pass
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
    query = {k: v[0] for k, v in parse_qs(scope["query_string"].decode("latin-1")).items()}
    echoed = {k: v for k, v in headers.items() if k not in _SKIP}
    payload: dict[str, Any] = {"headers": echoed}
    if "forms" in query:
        payload["base64"] = {k: base64.b64encode(v.encode()).decode() for k, v in echoed.items()}
        payload["quoted"] = {k: quote(v, safe="") for k, v in echoed.items()}
    body = json.dumps(payload).encode()
    secret = _secret(headers).encode("latin-1")
    out = [(b"x-echo-" + k.encode(), v.encode("latin-1")) for k, v in echoed.items()]
    mode = query.get("mode")
    if mode == "sse":
        out.append((b"content-type", b"text/event-stream"))
        body = b"data: " + body + b"\n\n"
    else:
        out.append((b"content-type", b"application/json"))
    pieces = [body]
    if "cut" in query and secret in body:
        at = body.index(secret) + int(query["cut"])
        pieces = [body[:at], body[at:]]
        if mode == "sse":
            pieces = [body[:at], body[at:] + b"data: second\n\n"]
    encoding = query.get("encoding")
    if encoding == "gzip":
        pieces = [gzip.compress(b"".join(pieces))]
        out.append((b"content-encoding", b"gzip"))
    elif encoding == "br":
        pieces = [b"\x1b\x00not brotli " + secret]
        out.append((b"content-encoding", b"br"))
    if "length" in query or len(pieces) == 1:
        out.append((b"content-length", b"%d" % sum(len(p) for p in pieces)))
    status = int(query.get("status", "200"))  # e.g. 206: a range nobody asked for
    await send({"type": "http.response.start", "status": status, "headers": out})
    for index, piece in enumerate(pieces):
        last = index == len(pieces) - 1
        await send({"type": "http.response.body", "body": piece, "more_body": not last})
        if not last:
            await asyncio.sleep(0.05)  # two reads for the gateway, not one
    return


def reflector(hostnames: tuple[str, ...]) -> FakeUpstream:
    """A fake serving `hostnames` that reflects every request header back."""
    return FakeUpstream("reflect", hostnames, _reflect)


def _frame(fin: bool, opcode: int, payload: bytes) -> bytes:
    size = len(payload)
    head = bytes(((0x80 if fin else 0) | opcode,))
    if size < 126:
        head += bytes((size,))
    elif size < 1 << 16:
        head += bytes((126,)) + size.to_bytes(2, "big")
    else:
        head += bytes((127,)) + size.to_bytes(8, "big")
    return head + payload


class WebSocketReflector:
    """A raw WebSocket upstream on 127.0.0.1 (TLS and plain), in its own thread."""

    def __init__(self, ca: trustme.CA, hostnames: tuple[str, ...]) -> None:
        self.hostnames = hostnames
        self.handshakes: list[dict[str, str]] = []
        self.tls_port = 0
        self.http_port = 0
        self._ca = ca
        self._dir = tempfile.TemporaryDirectory(prefix="tf-ws-")
        self._loop = asyncio.new_event_loop()
        self._servers: list[asyncio.Server] = []
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def resolve_entries(self) -> list[str]:
        entries = []
        for host in self.hostnames:
            entries.append(f"{host}=127.0.0.1:{self.tls_port}")
            entries.append(f"{host}:80=127.0.0.1:{self.http_port}")
        return entries

    def start(self) -> WebSocketReflector:
        leaf = self._ca.issue_cert(*self.hostnames, "127.0.0.1")
        cert = Path(self._dir.name) / "ws.pem"
        leaf.private_key_and_cert_chain_pem.write_to_path(str(cert))
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(cert))
        self._thread.start()

        async def serve() -> tuple[int, int]:
            tls = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=context)
            plain = await asyncio.start_server(self._handle, "127.0.0.1", 0)
            self._servers = [tls, plain]
            return tls.sockets[0].getsockname()[1], plain.sockets[0].getsockname()[1]

        future = asyncio.run_coroutine_threadsafe(serve(), self._loop)
        self.tls_port, self.http_port = future.result(10)
        return self

    def stop(self) -> None:
        async def close() -> None:
            for server in self._servers:
                server.close()
                await server.wait_closed()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()
        self._dir.cleanup()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")[1:]
            headers = {
                k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines if x)
            }
            self.handshakes.append(headers)
            key = headers.get("sec-websocket-key", "") + _WS_GUID
            accept = base64.b64encode(hashlib.sha1(key.encode()).digest())  # noqa: S324 (RFC 6455)
            writer.write(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
            )
            secret = _secret(headers).encode("latin-1")
            half = len(secret) // 2
            writer.write(_frame(False, 0x1, b"auth=" + secret[:half]))
            await writer.drain()
            await asyncio.sleep(0.05)  # the rest in another read
            writer.write(_frame(True, 0x0, secret[half:] + b" end"))
            writer.write(_frame(True, 0x2, base64.b64encode(secret)))
            writer.write(_frame(True, 0x8, b"\x03\xe8" + secret[:100]))
            await writer.drain()
            await reader.read(65536)  # the client's close
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
