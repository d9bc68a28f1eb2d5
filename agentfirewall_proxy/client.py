"""One client socket of the gateway: a pull parser over its bytes, and guarded writes.

:class:`ClientConnection` is what an exchange reads a request from and writes its answer to
(``exchange.py``); ``connection.py`` serves one such socket request after request, and
``parking.py`` takes its socket while a request is held. It knows nothing of the gateway
but its options.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

from agentfirewall_proxy.deadline import ReadDeadline
from agentfirewall_proxy.http1 import END, ParseError, RequestParser, Upgrade
from agentfirewall_proxy.pipeline import proxy_key_hash, refusal

if TYPE_CHECKING:
    from agentfirewall_proxy.options import Options

__all__ = ["EOF", "ClientConnection", "streams_gone"]

_WRITE_HIGH = 256 * 1024
#: After an answer that left a request's body unread, the rest of that body is read and
#: dropped for at most this long and this much before the connection closes.
LINGER_SECONDS = 5.0
LINGER_BYTES = 64 * 1024 * 1024


class _Eof:
    __slots__ = ()


EOF = _Eof()


class ClientConnection:
    """One client socket: a pull parser over its bytes, and guarded writes."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        options: Options,
        port_agent: str | None = None,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.options = options
        self.parser = RequestParser(options.max_head_bytes)
        self.port_agent = port_agent
        #: False once a request body was left unread: the connection must then close.
        self.clean = True
        #: True while the current request's body has not been read to its end.
        self.body_pending = False
        #: True once its request is parked with the connection's streams (not closed).
        self.parked = False
        #: The request asked ``Expect: 100-continue`` and its body was not read yet.
        self.continue_due = False
        #: Bytes written by :meth:`write`: an exchange's answer began once it grew
        #: (``Flow.written_before``; a ``100 Continue`` is not counted).
        self.written = 0
        self.deadline = ReadDeadline()
        #: The last ``Proxy-Authorization`` value read here and its key's hash.
        self._credential: tuple[bytes, str] | None = None

    async def next_event(self, *, head: bool) -> object:
        """The next parser event; reading under the slowloris / idle / io deadlines."""
        events = self.parser.events
        if events:
            if not head:
                self.continue_due = False  # the client sends its body without waiting
            return events.popleft()
        if not head and self.continue_due:
            self.continue_due = False
            self.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        loop = self.deadline.loop()
        started = loop.time()
        while not events:
            if not head:
                limit = self.options.io_timeout
            elif self.parser.in_head:
                limit = self.options.header_timeout - (loop.time() - started)
            else:
                limit = self.options.idle_timeout
            try:
                data = await self.deadline.read(self.reader, max(limit, 0.001))
            except TimeoutError:
                return ParseError(408, "timed out reading the request")
            except (ConnectionError, OSError):
                return EOF
            if not data:
                return EOF
            if head and not self.parser.in_head and not events:
                started = loop.time()
            self.parser.feed(data)
        return events.popleft()

    def key_hash(self, credential: bytes | None) -> str:
        """``pipeline.proxy_key_hash(credential)``, computed once per value a connection
        sends (a client sends the same one with every request)."""
        known = self._credential
        if known is not None and known[0] == credential:
            return known[1]
        found = proxy_key_hash(credential)  # a Refusal for a missing or malformed one
        assert credential is not None
        self._credential = (credential, found)
        return found

    def pending_upgrade(self) -> Upgrade | None:
        """After a CONNECT/Upgrade head and its END, the tail the parser handed back (None,
        nothing taken, when the parser did not switch: no ``Connection: upgrade``)."""
        events = self.parser.events
        if len(events) > 1 and events[0] is END and isinstance(events[1], Upgrade):
            events.popleft()
        if events and isinstance(events[0], Upgrade):
            found = events.popleft()
            assert isinstance(found, Upgrade)
            return found
        return None

    def write(self, data: bytes) -> None:
        self.written += len(data)
        self.writer.write(data)

    async def flush(self) -> None:
        """Wait for the client to read when its buffer is full (a bounded wait)."""
        if self.writer.transport.get_write_buffer_size() > _WRITE_HIGH:
            async with asyncio.timeout(self.options.io_timeout):
                await self.writer.drain()

    async def refuse(self, status: int, body: dict[str, object], **kw: bool) -> None:
        self.write(refusal(status, body, **kw))
        with contextlib.suppress(Exception):
            await self.flush()

    async def linger(self) -> None:
        """Before closing after an answer that left the request's body unread: read and drop
        the rest of that body (bounded in time and bytes), as web servers' lingering close.

        Closing a socket with unread bytes makes the kernel reset the connection, and a
        client still sending its body (most send it whole before reading) then gets a reset
        instead of the refusal that was written to it. Nothing read here goes anywhere.
        """
        if self.clean or self.parked or self.continue_due or self.parser.failed:
            return  # (a client waiting for a 100 Continue it did not get sends no body)
        if self.writer.transport.is_closing():
            return
        loop = asyncio.get_running_loop()
        end = loop.time() + LINGER_SECONDS
        events = self.parser.events
        dropped = 0
        with contextlib.suppress(TimeoutError, ConnectionError, OSError):
            while dropped <= LINGER_BYTES:
                while events:
                    event = events.popleft()
                    if not isinstance(event, bytes):
                        return  # the body's end (or a framing error): the client will read
                    dropped += len(event)
                left = end - loop.time()
                if left <= 0 or self.parser.failed:
                    return
                data = await self.deadline.read(self.reader, left)
                if not data:
                    return
                self.parser.feed(data)

    def gone(self) -> bool:
        """The client closed or lost its connection (checked while a request is held)."""
        return streams_gone(self.reader, self.writer)

    def abort(self) -> None:
        self.deadline.cancel()
        self.writer.transport.abort()


def streams_gone(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    """The client closed or lost a connection nobody is reading from right now."""
    return writer.transport.is_closing() or reader.at_eof()
