"""The gateway's stream reader: an ``asyncio.StreamReader`` with a shorter read path.

Every request costs the gateway two reads that wait (the client's request, the upstream's
answer). ``StreamReader.read(n)`` waits in a second coroutine (``_wait_for_data``) and
wakes its reader through a helper call, so each wait adds frames that every wake-up of
the connection's task resumes. :class:`FeedReader` *is* a StreamReader (relays, TLS
upgrades, parking and the writers use it as one) whose :meth:`FeedReader.read_some` does
exactly what ``read(n)`` does for ``n > 0`` in one frame, and whose ``feed_data`` wakes
the reader in place. ``tests/proxy/test_feedreader.py`` drives both through the same
random feeds, reads, EOFs and errors and holds them equal (that test is also what would
catch a Python whose StreamReader keeps its state otherwise).

:func:`reader_protocol` and :func:`open_streams` build connections with it as
``asyncio.start_server`` and ``asyncio.open_connection`` do with a plain StreamReader.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, SupportsIndex

__all__ = ["FeedReader", "open_streams", "reader_protocol"]


class FeedReader(asyncio.StreamReader):
    """A StreamReader whose :meth:`read_some` is ``read(n)`` in one coroutine frame."""

    # the base class's state (CPython 3.11+ ``asyncio.streams``), declared for the checker
    _buffer: bytearray
    _eof: bool
    _waiter: asyncio.Future[None] | None
    _exception: BaseException | None
    _transport: Any
    _paused: bool
    _limit: int
    _loop: asyncio.AbstractEventLoop

    async def read_some(self, n: int) -> bytes:
        """``await self.read(n)`` for ``n > 0``: at most `n` bytes once any are buffered,
        ``b""`` at EOF, the connection's error if it failed."""
        if self._exception is not None:
            raise self._exception
        if not self._buffer and not self._eof:
            if self._waiter is not None:
                raise RuntimeError(
                    "read() called while another coroutine is already waiting for incoming data"
                )
            if self._paused:  # waiting while paused would never end
                self._paused = False
                self._transport.resume_reading()
            self._waiter = waiter = self._loop.create_future()
            try:
                await waiter
            finally:
                self._waiter = None
        buffer = self._buffer
        data = bytes(memoryview(buffer)[:n])
        del buffer[:n]
        if self._paused and len(buffer) <= self._limit:
            self._paused = False
            self._transport.resume_reading()
        return data

    def feed_data(self, data: Iterable[SupportsIndex]) -> None:
        """As ``StreamReader.feed_data``, the waiting reader woken in place."""
        assert not self._eof, "feed_data after feed_eof"
        if not data:
            return
        self._buffer.extend(data)
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.cancelled():
                waiter.set_result(None)
        if self._transport is not None and not self._paused and len(self._buffer) > 2 * self._limit:
            try:
                self._transport.pause_reading()
            except NotImplementedError:
                self._transport = None  # a transport that cannot pause: buffer everything
            else:
                self._paused = True


def reader_protocol(
    connected: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None] | None]
    | None = None,
) -> asyncio.StreamReaderProtocol:
    """A stream protocol over a :class:`FeedReader` (``asyncio.start_server``'s factory)."""
    loop = asyncio.get_running_loop()
    return asyncio.StreamReaderProtocol(FeedReader(loop=loop), connected, loop=loop)


async def open_streams(
    host: str | None, port: int | None, **kwargs: Any
) -> tuple[FeedReader, asyncio.StreamWriter]:
    """``asyncio.open_connection(host, port, **kwargs)`` with a :class:`FeedReader`."""
    loop = asyncio.get_running_loop()
    reader = FeedReader(loop=loop)
    protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
    transport, _ = await loop.create_connection(
        lambda: protocol,
        host,  # type: ignore[arg-type]  # (None is refused at run time, as it was)
        port,  # type: ignore[arg-type]
        **kwargs,
    )
    return reader, asyncio.StreamWriter(transport, protocol, reader, loop)
