"""Parking a held request as a bare socket: no task, no transport, no buffers while it waits.

A request held for approval may wait minutes, and a gateway may hold thousands. When the
connection is plain HTTP (not an intercepted tunnel), the request was read whole and
nothing else is buffered or unsent, the exchange is *parked*: the socket is duplicated out
of its transport (the transport is then closed; the duplicate keeps the connection open, no
FIN is sent), and all that stays in memory is this small record with the parsed head and
the decided flow. Once the approval is settled, the socket gets a new transport and the
exchange goes on where it stopped (``exchange.resume_exchange``), then the connection
serves its next requests as usual.

While parked, :meth:`Parked.gone` peeks at the socket: end of stream or an error means the
client left (answered 499 in the traffic log; the approval stays on the control plane).
Other held requests (intercepted tunnels, upgrades, streamed bodies) wait in their
coroutine instead.
"""

from __future__ import annotations

import asyncio
import os
import socket
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agentfirewall_proxy.http1 import Head
    from agentfirewall_proxy.pipeline import Flow
    from agentfirewall_proxy.server import ClientConnection

__all__ = ["Parked", "park", "reattach"]

_PEEK = socket.MSG_PEEK | socket.MSG_DONTWAIT


class Parked:
    """A held exchange without its connection: what resuming it needs, nothing more."""

    __slots__ = ("flow", "head", "port_agent", "prefix", "sock")

    def __init__(
        self, sock: socket.socket, head: Head, flow: Flow, prefix: bytes, port_agent: str | None
    ) -> None:
        self.sock = sock
        self.head = head
        self.flow = flow
        self.prefix = prefix
        self.port_agent = port_agent

    def gone(self) -> bool:
        """The client closed or reset the connection (bytes it sent since stay unread)."""
        try:
            return not self.sock.recv(1, _PEEK)
        except BlockingIOError:
            return False
        except OSError:
            return True

    def close(self) -> None:
        self.sock.close()


def park(conn: ClientConnection, head: Head, flow: Flow, prefix: bytes) -> Parked | None:
    """Take `conn`'s socket for a parked exchange, or None when the connection can't be.

    Only when this request is all that was read and nothing waits to be written: the
    caller then lets the old transport close (the duplicated socket stays open).
    """
    parser, reader = conn.parser, conn.reader
    if parser.events or parser.in_head or parser.failed or reader.at_eof():
        return None
    if getattr(reader, "_buffer", b"?"):  # bytes the client sent after this request
        return None
    transport = conn.writer.transport
    if transport.get_write_buffer_size() or transport.is_closing():
        return None
    raw = transport.get_extra_info("socket")
    if raw is None:
        return None
    sock = socket.socket(fileno=os.dup(raw.fileno()))
    sock.setblocking(False)
    return Parked(sock, head, flow, prefix, conn.port_agent)


async def reattach(sock: socket.socket) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Streams over a parked socket, as ``asyncio.start_server`` gives a new connection."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    protocol = asyncio.StreamReaderProtocol(reader)
    transport, _ = await loop.connect_accepted_socket(lambda: protocol, sock=sock)
    return reader, asyncio.StreamWriter(transport, protocol, reader, loop)
