"""Reads under a deadline, with one timer per connection instead of one per read.

``async with asyncio.timeout(s): await reader.read(n)`` schedules a timer, and cancels it,
for every read: on a keep-alive connection that is two timers per request. A
:class:`ReadDeadline` keeps one timer for its connection and only moves a number per read.
When the timer fires while a read is waiting and the read's deadline has come, the reading
task is cancelled and the read raises :class:`TimeoutError`, as under ``asyncio.timeout``;
when the deadline was moved later, the timer is set again for it; when no read is waiting,
it does nothing (the next read sets it again). A cancellation from elsewhere (a shutdown)
stays a cancellation.
"""

from __future__ import annotations

import asyncio

from agentfirewall_proxy.feedreader import FeedReader

__all__ = ["ReadDeadline"]


class ReadDeadline:
    """The deadline of the reads of one connection (see the module docstring)."""

    __slots__ = ("_armed", "_expired", "_handle", "_loop", "_task", "_when")

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None
        #: When the timer is set to fire (loop time).
        self._armed = 0.0
        #: The waiting read's deadline (None: no read waits).
        self._when: float | None = None
        self._task: asyncio.Task[object] | None = None
        self._expired = False

    def loop(self) -> asyncio.AbstractEventLoop:
        """The running loop, looked up once (on 3.11 every lookup is a ``getpid()`` call)."""
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        return loop

    async def read(self, reader: asyncio.StreamReader, seconds: float, size: int = 65536) -> bytes:
        """``reader.read(size)``; TimeoutError when nothing came within `seconds`."""
        loop = self.loop()
        when = loop.time() + seconds
        if self._handle is None or when < self._armed:
            if self._handle is not None:
                self._handle.cancel()
            self._handle = loop.call_at(when, self._fire)
            self._armed = when
        task = asyncio.current_task(loop)  # (given the loop: no lookup)
        assert task is not None
        cancelling = task.cancelling()
        self._when, self._task = when, task
        try:
            if isinstance(reader, FeedReader):  # the same read, one coroutine frame
                return await reader.read_some(size)
            return await reader.read(size)
        except asyncio.CancelledError:
            if self._expired:
                self._expired = False
                if task.uncancel() <= cancelling:
                    raise TimeoutError from None
            raise
        finally:
            self._when = self._task = None

    def _fire(self) -> None:
        self._handle = None
        when, task = self._when, self._task
        if when is None or task is None:
            return  # no read waits: the next one sets the timer again
        if when > self._armed:  # the read waiting now began later: its own deadline
            assert self._loop is not None
            self._handle = self._loop.call_at(when, self._fire)
            self._armed = when
            return
        self._expired = True
        task.cancel()

    def cancel(self) -> None:
        """The connection is closed: no timer left behind."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
