"""The wrapped server's process: what is written to its stdin, and its end (EOF, then
SIGTERM, then SIGKILL, each given the grace period)."""

from __future__ import annotations

import asyncio
import contextlib

__all__ = ["Child"]


class Child:
    def __init__(self, process: asyncio.subprocess.Process, grace: float) -> None:
        self.process = process
        #: Seconds the server is given to exit after each step of its end.
        self.grace = grace

    def send(self, data: bytes) -> bool:
        """Write `data` to the server; False when it could not be written (the server is
        gone: reading its stdout reports that for every tracked request)."""
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(data)
        except (ConnectionError, RuntimeError):
            return False
        return True

    async def drained(self) -> None:
        assert self.process.stdin is not None
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self.process.stdin.drain()

    def close_input(self) -> None:
        """EOF for the server."""
        stdin = self.process.stdin
        if stdin is not None:
            with contextlib.suppress(OSError, RuntimeError):
                stdin.close()

    async def exit_code(self) -> int:
        """The server's exit code once it exits within the grace period, else 0."""
        try:
            return await asyncio.wait_for(self.process.wait(), self.grace)
        except TimeoutError:
            return 0

    async def stop(self) -> None:
        """EOF, then SIGTERM, then SIGKILL, until the server has exited."""
        process = self.process
        if process.returncode is None:
            self.close_input()
        for stop in (None, process.terminate, process.kill):
            if stop is not None and process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    stop()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), self.grace)
                return
