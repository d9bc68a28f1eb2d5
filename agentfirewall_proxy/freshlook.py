"""One shared, rate-limited fetch of the configuration, for a proxy key not in it yet.

A key made a moment ago (``POST /api/v1/agents/ensure``, ``tf run``, the dashboard) reaches
a gateway with its next configuration long poll: usually within milliseconds, but an agent
handed the key may use it first. Rather than answer that key 407, the gateway fetches its
configuration once more and looks again (``Gateway.look_again``).

Unknown keys (a typo, a revoked key, someone guessing) must not become a way to load the
control plane, so the fetch is shared: each caller waits for a fetch that *began after it
asked* (an older one may predate its key), callers that ask together share one, and
fetches begin at least ``interval`` seconds apart. A fetch of an unchanged configuration
costs the control plane a 304.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable

__all__ = ["FreshLook"]


class FreshLook:
    """``await look()`` returns once a call of `fetch` begun after it was awaited has ended.

    `fetch` handles its own errors (a failed fetch leaves the configuration as it was:
    the key is then refused, which fails closed).
    """

    def __init__(self, fetch: Callable[[], Awaitable[None]], interval: float = 0.1) -> None:
        self._fetch = fetch
        self._interval = interval
        self._task: asyncio.Task[None] | None = None
        self._due = False  # the task's fetch has not begun yet: it begins after any caller now
        self._began = -math.inf  # loop time the latest fetch began
        self.fetches = 0

    async def __call__(self) -> None:
        while True:
            task = self._task
            if task is None or task.done():  # (a finished fetch began before this call)
                self._task = task = asyncio.get_running_loop().create_task(self._run())
                self._due = True
            if self._due:  # its fetch begins after this call asked: it is the one
                await asyncio.shield(task)  # a waiter cancelled (client gone) spares the fetch
                return
            await asyncio.shield(task)  # began before this call asked: wait for the next one

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        delay = self._began + self._interval - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        self._due = False
        self._began = loop.time()
        self.fetches += 1
        await self._fetch()
