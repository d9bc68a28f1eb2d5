"""Traffic records shipped to the control plane in batches, off the request path.

Records are plain dicts (``pipeline.traffic_record``: no header values, no bodies). They
wait in a bounded deque; a background task sends up to ``batch`` of them every
``interval`` seconds (sooner when a batch is full). When the control plane is unreachable,
busy or refuses the gateway itself (a wrong gateway token) they are kept (oldest not in
flight dropped beyond ``limit``, counted in ``dropped``) and retried. A batch whose answer
was lost (a timeout, or the shipper stopped with it in flight) is sent again: the control
plane stores a record once, by its request id and time.

A batch refused for what it holds (400, 413, 422: one record the control plane does not
accept loses no other) is sent again record by record (at most ``batch`` calls): each
record it accepts is stored, and only one it refuses is dropped, counted in ``dropped``
and said once, with the control plane's answer and the record's request id, never its
content. Records not yet sent again when the control plane stops answering wait for the
next flush.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import Any

from agentfirewall_proxy.budgetlease import Say, say_plain
from agentfirewall_proxy.control import Control, ControlError

__all__ = ["TrafficShipper"]

#: Answers that refuse what a batch holds, which one record can cause.
_REFUSED_CONTENT = frozenset({400, 413, 422})
#: The longest request id a message names (the control plane's limit).
_ID_SHOWN = 100


class TrafficShipper:
    def __init__(
        self,
        control: Control,
        *,
        batch: int = 500,
        interval: float = 1.0,
        limit: int = 50_000,
        say: Say = say_plain,
    ) -> None:
        self.control = control
        self.batch = batch
        self.interval = interval
        self.limit = limit
        #: Where a dropped record is said (``Gateway.say``).
        self.say = say
        self._queue: deque[dict[str, Any]] = deque()
        #: How many records at the queue's head are in flight (never dropped for room).
        self._sending = 0
        self._full = asyncio.Event()
        self.sent = 0
        self.dropped = 0

    def record(self, record: dict[str, Any]) -> None:
        queue = self._queue
        if len(queue) >= self.limit:
            self.dropped += 1
            if len(queue) <= self._sending:  # every record held is in flight: not this one
                return
            del queue[self._sending]  # the oldest not in flight
        queue.append(record)
        if len(queue) >= self.batch:
            self._full.set()

    async def run(self) -> None:
        """Ship until cancelled; a final flush is attempted on the way out."""
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._full.wait(), self.interval)
                self._full.clear()
                await self.flush()
        finally:
            if self._queue:
                await asyncio.shield(self._final_flush())

    async def _final_flush(self) -> None:
        try:
            async with asyncio.timeout(2.0):
                await self.flush()
        except (TimeoutError, ControlError):
            pass

    async def flush(self) -> None:
        while self._queue:
            self._sending = min(self.batch, len(self._queue))
            try:
                shipped = await self._ship([self._queue[i] for i in range(self._sending)])
            finally:
                self._sending = 0
            if not shipped:
                return  # unreachable, busy, or refusing the gateway: kept, retried later

    async def _ship(self, records: list[dict[str, Any]]) -> bool:
        """Send `records` (the queue's first); False when some wait for a later flush."""
        try:
            await self.control.send_traffic(records)
        except ControlError as exc:
            if exc.status not in _REFUSED_CONTENT:
                return False
            if len(records) > 1:
                return await self._one_by_one(records)
            self._refused(records[0], exc)
        else:
            self.sent += len(records)
        self._done(len(records))
        return True

    async def _one_by_one(self, records: list[dict[str, Any]]) -> bool:
        """A refused batch's records sent again each alone: those refused are dropped."""
        for record in records:
            try:
                await self.control.send_traffic([record])
            except ControlError as exc:
                if exc.status not in _REFUSED_CONTENT:
                    return False
                self._refused(record, exc)
            else:
                self.sent += 1
            self._done(1)
        return True

    def _done(self, count: int) -> None:
        """The queue's first `count` records are stored or dropped."""
        for _ in range(count):
            self._queue.popleft()
        self._sending -= count

    def _refused(self, record: dict[str, Any], exc: ControlError) -> None:
        self.dropped += 1
        self.say(f"agentfirewall_proxy: traffic record {_named(record)} dropped: the control "
                 f"plane refused it: {exc}", "warning")  # fmt: skip


def _named(record: dict[str, Any]) -> str:
    """The record's request id as a message may show it (the gateway's own; cut, and only
    printable ASCII: it is the one field said)."""
    ident = record.get("request_id")
    if isinstance(ident, str) and ident and ident.isascii() and ident.isprintable():
        return f"`{ident[:_ID_SHOWN]}`"
    return "(no readable request id)"
