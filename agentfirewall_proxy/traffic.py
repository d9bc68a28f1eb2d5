"""Traffic records shipped to the control plane in batches, off the request path.

Records are plain dicts (``pipeline.traffic_record``: no header values, no bodies). They
wait in a bounded deque; a background task sends up to ``batch`` of them every
``interval`` seconds (sooner when a batch is full). When the control plane is unreachable
they are kept (oldest dropped beyond ``limit``, counted in ``dropped``) and retried. A batch
whose answer was lost (a timeout, or the shipper stopped with it in flight) is sent again:
the control plane stores a record once, by its request id and time.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import Any

from agentfirewall_proxy.control import Control, ControlError

__all__ = ["TrafficShipper"]


class TrafficShipper:
    def __init__(
        self, control: Control, *, batch: int = 500, interval: float = 1.0, limit: int = 50_000
    ) -> None:
        self.control = control
        self.batch = batch
        self.interval = interval
        self.limit = limit
        self._queue: deque[dict[str, Any]] = deque()
        self._full = asyncio.Event()
        self.sent = 0
        self.dropped = 0

    def record(self, record: dict[str, Any]) -> None:
        queue = self._queue
        if len(queue) >= self.limit:
            queue.popleft()
            self.dropped += 1
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
            count = min(self.batch, len(self._queue))
            records = [self._queue[i] for i in range(count)]
            try:
                await self.control.send_traffic(records)
            except ControlError as exc:
                if not 400 <= exc.status < 500 or exc.status in (408, 429):
                    return  # unreachable or busy: keep the records, retry later
                self.dropped += count  # refused as invalid: retrying cannot help
            else:
                self.sent += count
            for _ in range(count):
                self._queue.popleft()
