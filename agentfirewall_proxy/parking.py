"""Parking a held request: no task, no coroutine, no parser while it waits.

A request held for approval may wait minutes, and a gateway may hold thousands. When the
request was read whole and nothing else is buffered or unsent, the exchange is *parked*:
all that stays in memory is this small record (the parsed head, the decided flow, the
connection) and the exchange's coroutine ends. On a plain-HTTP connection even the
transport goes: the socket is duplicated out of it (the transport is then closed; the
duplicate keeps the connection open, no FIN is sent). Inside an intercepted tunnel the TLS
state lives in the transport, so the streams are kept as they are. Once the approval is
settled the exchange goes on where it stopped (``exchange.resume_exchange``, on a new
transport for a plain socket), then the connection serves its next requests as usual.

While parked, :meth:`Parked.gone` tells whether the client closed or reset the connection
(answered 499 in the traffic log; the approval stays on the control plane). Upgrades and
streamed bodies wait in their coroutine instead.
"""

from __future__ import annotations

import asyncio
import os
import socket
from typing import TYPE_CHECKING

from agentfirewall_proxy.client import streams_gone
from agentfirewall_proxy.feedreader import FeedReader

if TYPE_CHECKING:
    from agentfirewall_proxy.client import ClientConnection
    from agentfirewall_proxy.flow import Flow, Tunnel
    from agentfirewall_proxy.http1 import Head

__all__ = ["Parked", "park"]

_PEEK = socket.MSG_PEEK | socket.MSG_DONTWAIT


class Parked:
    """A held exchange without its coroutine: what resuming it needs, nothing more."""

    __slots__ = ("connection", "flow", "head", "port_agent", "prefix", "tunnel")

    def __init__(
        self,
        connection: socket.socket | tuple[asyncio.StreamReader, asyncio.StreamWriter],
        head: Head,
        flow: Flow,
        prefix: bytes,
        conn: ClientConnection,
        tunnel: Tunnel | None,
    ) -> None:
        #: A duplicated plain socket, or the streams of an intercepted tunnel.
        self.connection = connection
        self.head = head
        self.flow = flow
        self.prefix = prefix
        self.port_agent = conn.port_agent
        self.tunnel = tunnel

    def gone(self) -> bool:
        """The client closed or reset the connection (bytes it sent since stay unread)."""
        if not isinstance(self.connection, socket.socket):
            return streams_gone(*self.connection)
        try:
            return not self.connection.recv(1, _PEEK)
        except BlockingIOError:
            return False
        except OSError:
            return True

    def close(self) -> None:
        if isinstance(self.connection, socket.socket):
            self.connection.close()
        else:
            self.connection[1].transport.abort()

    async def streams(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """The connection's streams: kept, or new ones over the parked socket."""
        if not isinstance(self.connection, socket.socket):
            return self.connection
        loop = asyncio.get_running_loop()
        reader = FeedReader()
        protocol = asyncio.StreamReaderProtocol(reader)
        sock = self.connection
        transport, _ = await loop.connect_accepted_socket(lambda: protocol, sock=sock)
        return reader, asyncio.StreamWriter(transport, protocol, reader, loop)


def park(
    conn: ClientConnection, head: Head, flow: Flow, prefix: bytes, tunnel: Tunnel | None
) -> Parked | None:
    """Take `conn`'s connection for a parked exchange, or None when it can't be.

    Only when this request is all that was read and nothing waits to be written. The
    caller then lets go of `conn` without closing it (``conn.parked``).
    """
    parser, reader = conn.parser, conn.reader
    if parser.events or parser.in_head or parser.failed or reader.at_eof():
        return None
    if getattr(reader, "_buffer", b"?"):  # bytes the client sent after this request
        return None
    transport = conn.writer.transport
    if transport.get_write_buffer_size() or transport.is_closing():
        return None
    if tunnel is not None:
        conn.parked = True
        return Parked((reader, conn.writer), head, flow, prefix, conn, tunnel)
    raw = transport.get_extra_info("socket")
    if raw is None:
        return None
    sock = socket.socket(fileno=os.dup(raw.fileno()))
    sock.setblocking(False)
    return Parked(sock, head, flow, prefix, conn, None)
