"""In-process events: SSE subscribers and long-poll waiters.

``publish`` fans an event out to every subscriber queue (bounded; a slow client loses
events rather than slowing the server) and wakes every waiter, or only those waiting for
that event type (the gateway's approval long-polls wake on decisions, not on every
approval created or traffic batch). Long-polls re-check the
store after each wake-up, and at least once a second, so changes made by another server
instance on the same PostgreSQL are seen too.

On PostgreSQL every replica's hub is joined to the others through ``pgevents.py``
(``LISTEN/NOTIFY``): ``publish`` also hands the event to the :attr:`Hub.relay`, and events
that come from another replica are published here with ``relay=False``.

``close`` (at the start of server shutdown, before uvicorn waits for open requests) ends
every long-poll and SSE stream at once: waits return False, subscribers get ``None``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from starlette.requests import Request

__all__ = ["CREDENTIALS_ENDED", "EVENT_TYPES", "Hub"]

EVENT_TYPES = ("approval.created", "approval.decided", "traffic", "kill_switch", "config")
#: Internal: a session or token ended here (sign-out); SSE streams check their caller again
#: (removals, role changes and token revocations are configuration changes: ``config``).
CREDENTIALS_ENDED = "credentials.ended"
_QUEUE_SIZE = 1000


class Hub:
    def __init__(self) -> None:
        self._subscribers: set[asyncio.Queue[tuple[str, Any] | None]] = set()
        self._changed = asyncio.Event()
        self._typed: dict[str, asyncio.Event] = {}
        self._closed = False
        #: Set on PostgreSQL: hands each event published here on to the other replicas.
        self.relay: Callable[[str, Any], None] | None = None

    def publish(self, event_type: str, data: Any, *, relay: bool = True) -> None:
        """Wake this process's waiters and subscribers; `relay`: tell the other replicas."""
        if self._closed:
            return
        if relay and self.relay is not None:
            self.relay(event_type, data)
        for queue in list(self._subscribers):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait((event_type, data))
        self._changed.set()
        self._changed = asyncio.Event()
        typed = self._typed.pop(event_type, None)
        if typed is not None:
            typed.set()

    def close(self) -> None:
        """Server shutdown: wake every waiter for good and end every subscription."""
        if self._closed:
            return
        self._closed = True
        self._changed.set()
        for typed in self._typed.values():
            typed.set()
        for queue in list(self._subscribers):
            _put_last(queue)

    @property
    def closed(self) -> bool:
        return self._closed

    async def wait(
        self,
        timeout: float,  # noqa: ASYNC109
        request: Request | None = None,
        *,
        event_type: str | None = None,
    ) -> bool:
        """Return at the next published event (of `event_type`, if given) or after `timeout`.

        False when the long-poll should answer now: the server is shutting down or the
        client of `request` has disconnected.
        """
        if not self._closed:
            event = (
                self._changed
                if event_type is None
                else self._typed.setdefault(event_type, asyncio.Event())
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), timeout)
        if self._closed:
            return False
        return request is None or not await request.is_disconnected()

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[asyncio.Queue[tuple[str, Any] | None]]:
        """A queue of (event type, data); `None` means the server is shutting down."""
        queue: asyncio.Queue[tuple[str, Any] | None] = asyncio.Queue(_QUEUE_SIZE)
        if self._closed:
            queue.put_nowait(None)
        self._subscribers.add(queue)
        try:
            yield queue
        finally:
            self._subscribers.discard(queue)

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)


def _put_last(queue: asyncio.Queue[tuple[str, Any] | None]) -> None:
    """Queue the end marker, dropping the oldest event if the queue is full."""
    if queue.full():
        queue.get_nowait()
    queue.put_nowait(None)
