"""Upstream connections: opened (resolve map, TLS, upstream proxy), pooled and reused.

Socket code, with ``connection.py``: everything here opens or reuses the gateway's outbound
connections. TLS to upstreams is verified against the system store plus the optional
``--upstream-ca`` bundle; the SNI and certificate name are the real hostname even when the
resolve map points it at 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from agentfirewall_proxy.deadline import ReadDeadline
from agentfirewall_proxy.feedreader import open_streams
from agentfirewall_proxy.http1 import END, ParseError, ResponseHead, ResponseParser, Upgrade
from agentfirewall_proxy.options import Options
from agentfirewall_proxy.pipeline import Refusal, normalize_host

if TYPE_CHECKING:
    from agentfirewall_proxy.snapshot import ConnectorEntry

__all__ = [
    "EOF",
    "UpstreamConnection",
    "UpstreamError",
    "UpstreamPool",
    "client_ssl_context",
    "plain_request_upstream",
]

Key = tuple[str, str, int]


class UpstreamError(Exception):
    """The upstream could not be reached or broke the exchange (answered with 502/504).

    `unanswered`: the connection closed before the upstream sent a byte of an answer (a
    pooled connection it had closed while idle, most likely; the request may still have
    reached it)."""

    def __init__(self, status: int, message: str, *, unanswered: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.unanswered = unanswered


class _Eof:
    __slots__ = ()


EOF = _Eof()


def plain_request_upstream(connector: ConnectorEntry, host: str, port: int) -> tuple[str, int]:
    """(scheme, port) upstream for a plain ``http://`` request routed to `connector`.

    An injected credential never travels in cleartext. The connector's upstream is TLS
    when its ``base_url`` (or its type's, e.g. ``https://api.github.com``) says https: the
    request is upgraded (port 80 becomes 443, or the base URL's own port for its host).
    A ``base_url`` configured as ``http://`` is an admin's declaration of a plain service on
    its port (80 when it names none): plain it stays, on that port only; a credential is
    never sent in cleartext to another port of the host (another service: Redis on 6379).
    A connector with no TLS upstream known goes plain only when it injects nothing; with a
    credential it is refused (403 ``cleartext_refused``).
    """
    declared = connector.base_url
    base = urlsplit(declared or connector.impl.base_url or "")
    scheme = base.scheme.lower()
    if declared and scheme == "http":
        if port == (base.port or 80) or not connector.has_credential:
            return "http", port
        raise Refusal(
            403,
            "cleartext_refused",
            f"`http://{host}:{port}` goes to connector `{connector.name}` whose plain upstream "
            f"is declared on port {base.port or 80} only: its credential goes to no other port",
        )
    if scheme == "https":
        if base.hostname and normalize_host(base.hostname) == host:
            return "https", base.port or 443
        if port == 80:
            return "https", 443
        raise Refusal(
            403,
            "cleartext_refused",
            f"`http://{host}:{port}` goes to connector `{connector.name}` whose upstream is "
            f"TLS on an unknown port: use https://",
        )
    if not connector.has_credential:
        return "http", port
    raise Refusal(
        403,
        "cleartext_refused",
        f"connector `{connector.name}` injects a credential and declares no TLS upstream: "
        "it is never sent over plain http (use https://, or an admin sets the connector's "
        "base_url to https://... or, for a plain internal host, http://...)",
    )


def client_ssl_context(extra_ca: str | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    if extra_ca:
        ctx.load_verify_locations(cafile=extra_ca)
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


@dataclass(eq=False)
class UpstreamConnection:
    key: Key
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    parser: ResponseParser = field(default_factory=ResponseParser)
    reused: bool = False
    deadline: ReadDeadline = field(default_factory=ReadDeadline)

    def __post_init__(self) -> None:
        #: The writer's transport, read once (TLS, if any, was set up before: it stays).
        self.transport = self.writer.transport

    async def next_event(
        self, seconds: float
    ) -> ResponseHead | bytes | object | Upgrade | ParseError | _Eof:
        """The next parser event; TimeoutError when a read waits `seconds` for nothing."""
        events = self.parser.events
        while not events:
            data = await self.deadline.read(self.reader, seconds)
            if not data:
                return EOF
            self.parser.feed(data)
        return events.popleft()

    def reset_parser(self) -> None:
        """After a HEAD response: the next message starts fresh (no body is coming)."""
        self.parser = ResponseParser()

    def abort(self) -> None:
        self.deadline.cancel()
        self.writer.transport.abort()

    @property
    def usable(self) -> bool:
        return not self.transport.is_closing() and not self.reader.at_eof()


class UpstreamPool:
    """Keep-alive upstream connections keyed by (scheme, host, port)."""

    def __init__(self, options: Options) -> None:
        self.options = options
        self.tls = client_ssl_context(str(options.upstream_ca) if options.upstream_ca else None)
        self._idle: dict[Key, deque[UpstreamConnection]] = {}
        self.opened = 0

    def address(self, host: str, port: int) -> tuple[str, int]:
        resolve = self.options.resolve
        return resolve.get((host, port)) or resolve.get((host, None)) or (host, port)

    async def acquire(self, scheme: str, host: str, port: int) -> UpstreamConnection:
        key = (scheme, host, port)
        idle = self._idle.get(key)
        while idle:
            conn = idle.pop()
            if conn.usable:
                conn.reused = True
                return conn
            conn.abort()
        return await self._open(key)

    def release(self, conn: UpstreamConnection) -> None:
        if not conn.usable or conn.parser.events or conn.parser.in_head:
            conn.abort()
            return
        idle = self._idle.setdefault(conn.key, deque())
        if len(idle) >= self.options.pool_size:
            conn.abort()
            return
        idle.append(conn)

    async def _open(self, key: Key) -> UpstreamConnection:
        scheme, host, port = key
        try:
            async with asyncio.timeout(self.options.connect_timeout):
                if self.options.upstream_proxy:
                    reader, writer = await self._via_proxy(host, port)
                    if scheme == "https":
                        await writer.start_tls(self.tls, server_hostname=host)
                else:
                    ip, real_port = self.address(host, port)
                    reader, writer = await open_streams(
                        ip,
                        real_port,
                        ssl=self.tls if scheme == "https" else None,
                        server_hostname=host if scheme == "https" else None,
                    )
        except TimeoutError:
            raise UpstreamError(504, f"connecting to `{host}:{port}` timed out") from None
        except ssl.SSLError as exc:
            raise UpstreamError(502, f"TLS to `{host}:{port}` failed: {exc.reason}") from None
        except OSError as exc:
            raise UpstreamError(502, f"cannot reach `{host}:{port}`: {exc.strerror}") from None
        self.opened += 1
        return UpstreamConnection(key, reader, writer)

    async def open_tunnel(
        self, host: str, port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A raw TCP connection for passthrough (no TLS of ours)."""
        try:
            async with asyncio.timeout(self.options.connect_timeout):
                if self.options.upstream_proxy:
                    return await self._via_proxy(host, port)
                ip, real_port = self.address(host, port)
                return await open_streams(ip, real_port)
        except (OSError, TimeoutError) as exc:
            raise UpstreamError(502, f"cannot reach `{host}:{port}`: {exc}") from None

    async def _via_proxy(
        self, host: str, port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Open a CONNECT tunnel through ``--upstream-proxy`` (credentials from its URL)."""
        url = urlsplit(self.options.upstream_proxy or "")
        reader, writer = await open_streams(url.hostname, url.port or 3128)
        lines = [f"CONNECT {host}:{port} HTTP/1.1", f"Host: {host}:{port}"]
        if url.username:  # percent-encoded in the URL, as curl and requests read it
            user, password = unquote(url.username), unquote(url.password or "")
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            lines.append(f"Proxy-Authorization: Basic {token}")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        head = await reader.readuntil(b"\r\n\r\n")
        status = head.split(b" ", 2)[1] if head.count(b" ") >= 1 else b""
        if status != b"200":
            writer.transport.abort()
            raise OSError(0, f"upstream proxy refused CONNECT ({status.decode('latin-1')})")
        return reader, writer

    def close(self) -> None:
        for idle in self._idle.values():
            for conn in idle:
                conn.abort()
        self._idle.clear()


__all__ += ["END"]
