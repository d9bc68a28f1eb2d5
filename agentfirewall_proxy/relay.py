"""Bytes copied both ways between a client and an upstream: blind tunnels and upgrades.

Used by ``connection.py`` for a passthrough host's tunnel and by ``respond.py`` for an
upgraded connection (a WebSocket) that nothing needs to scrub.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agentfirewall_proxy.flow import Flow

__all__ = ["relay"]


async def relay(
    client_reader: asyncio.StreamReader,
    client_writer: asyncio.StreamWriter,
    up_reader: asyncio.StreamReader,
    up_writer: asyncio.StreamWriter,
    flow: Flow,
) -> None:
    """Copy bytes both ways until either side closes (tunnels and WebSockets)."""

    async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, upward: bool) -> None:
        while data := await src.read(65536):
            if upward:
                flow.bytes_out += len(data)
            else:
                flow.bytes_in += len(data)
            dst.write(data)
            await dst.drain()
        with contextlib.suppress(OSError, RuntimeError):
            dst.write_eof()

    tasks = [
        asyncio.ensure_future(pump(client_reader, up_writer, True)),
        asyncio.ensure_future(pump(up_reader, client_writer, False)),
    ]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
