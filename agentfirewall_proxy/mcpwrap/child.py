"""The wrapped server's process: what is written to its stdin, and its end.

The server runs in a process group of its own (``start_new_session``): its end reaches
every process it started (``npx``'s node, a shell's command, their workers), not only the
one the client named. It ends with EOF, then SIGTERM, then SIGKILL to the whole group, each
given the grace period (a kill switch starts at SIGTERM: in-flight work is stopped, not
finished), until none of the group is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal

__all__ = ["Child"]

#: Seconds between two looks at whether the server's process group has ended.
_GROUP_POLL = 0.02


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

    async def stop(self, *, at_once: bool = False) -> None:
        """EOF (unless `at_once`), then SIGTERM, then SIGKILL to the server's process group,
        until the server and every process of its group have exited."""
        self.close_input()
        for step in ("term", "kill") if at_once else (None, "term", "kill"):
            if step is not None:
                self._signal(step)
            if await self._ended():
                return

    def _signal(self, step: str) -> None:
        """SIGTERM or SIGKILL to the server's process group, and to the server itself (it
        may have left its group; Windows has no process groups)."""
        if hasattr(os, "killpg"):
            with contextlib.suppress(OSError):
                os.killpg(self.process.pid, signal.SIGTERM if step == "term" else signal.SIGKILL)
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                if step == "term":
                    self.process.terminate()
                else:
                    self.process.kill()

    async def _ended(self) -> bool:
        """Whether the server and its process group end within the grace period."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.grace
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.process.wait(), self.grace)
        while self._group_left():
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(_GROUP_POLL)
        return self.process.returncode is not None

    def _group_left(self) -> bool:
        """Whether a process of the server's group is still there (its leader's exit
        leaves the others running)."""
        if not hasattr(os, "killpg"):
            return False
        try:
            os.killpg(self.process.pid, 0)
        except OSError:  # none left (or none that could be signalled)
            return False
        return True
