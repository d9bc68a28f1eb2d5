"""Newline-delimited JSON-RPC over pipes (the MCP stdio transport), size-limited.

A message larger than the limit is skipped whole (its bytes are read and dropped up to the
next newline) and reported as :class:`TooLarge`, so one oversized message never wedges or
crashes the relay and the next message is read normally. Its first bytes are kept: they
usually tell its id, so the request it is (or answers) is answered, not left waiting.
"""

from __future__ import annotations

import asyncio
import sys

__all__ = ["DEFAULT_LIMIT", "TooLarge", "open_stdio", "read_message"]

#: The largest message relayed (either direction); MCP servers routinely send megabytes.
DEFAULT_LIMIT = 32 * 1024 * 1024
#: How many of a skipped message's first bytes are kept (:attr:`TooLarge.head`).
HEAD = 4096


class TooLarge:
    """Marks a skipped message: `size` bytes at least; `head`: its first bytes (up to
    :data:`HEAD`)."""

    __slots__ = ("head", "size")

    def __init__(self, size: int, head: bytes = b"") -> None:
        self.size = size
        self.head = head


async def read_message(reader: asyncio.StreamReader) -> bytes | TooLarge | None:
    """The next line (without its newline), a :class:`TooLarge` marker, or None at EOF.

    The reader's own limit (``StreamReader(limit=...)``) is the message size limit. A last
    line without a newline before EOF is still a message.
    """
    try:
        line = await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError as exc:
        return exc.partial or None
    except asyncio.LimitOverrunError as exc:
        return await _skip(reader, exc.consumed)
    return line[:-1]


async def _skip(reader: asyncio.StreamReader, consumed: int) -> TooLarge:
    """Drop the rest of an oversized message: `consumed` buffered bytes hold no newline."""
    head = (await reader.readexactly(consumed))[:HEAD]
    skipped = consumed
    while True:
        try:
            tail = await reader.readuntil(b"\n")
        except asyncio.IncompleteReadError as exc:
            return TooLarge(skipped + len(exc.partial), head)
        except asyncio.LimitOverrunError as exc:
            await reader.readexactly(exc.consumed)
            skipped += exc.consumed
            continue
        return TooLarge(skipped + len(tail) - 1, head)


async def open_stdio(limit: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Our stdin and stdout as asyncio streams (MCP clients connect them to pipes)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=limit)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin.buffer)
    transport, protocol = await loop.connect_write_pipe(
        asyncio.streams.FlowControlMixin, sys.stdout.buffer
    )
    writer = asyncio.StreamWriter(transport, protocol, None, loop)
    return reader, writer
