"""In-process events: SSE subscribers and long-poll waiters.

``publish`` fans an event out to every subscriber queue (bounded; a slow client loses
events rather than slowing the server) and wakes every waiter. Long-polls re-check the
store after each wake-up, and at least once a second, so changes made by another server
instance on the same PostgreSQL are seen too.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

__all__ = ["EVENT_TYPES", "Hub"]

EVENT_TYPES = ("approval.created", "approval.decided", "traffic", "kill_switch", "config")
_QUEUE_SIZE = 1000


class Hub:
    def __init__(self) -> None:
        self._subscribers: set[asyncio.Queue[tuple[str, Any]]] = set()
        self._changed = asyncio.Event()

    def publish(self, event_type: str, data: Any) -> None:
        for queue in list(self._subscribers):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait((event_type, data))
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait(self, timeout: float) -> None:  # noqa: ASYNC109
        """Return at the next published event or after `timeout` seconds."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout)

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[asyncio.Queue[tuple[str, Any]]]:
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue(_QUEUE_SIZE)
        self._subscribers.add(queue)
        try:
            yield queue
        finally:
            self._subscribers.discard(queue)

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)
