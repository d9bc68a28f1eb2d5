"""One queue per Slack channel: messages leave one at a time, in the order they came.

A message that fails is tried again first (the queue waits out a ``Retry-After`` or the
backoff, `delivery.next_wait`), so a channel's messages keep their order and a rate limit
holds back the whole channel, as Slack counts it. A queue's worker runs while its queue
holds messages and ends when it is empty: an idle server runs none.

`put` never waits (it is called on the request path): past `RetryPolicy.max_queued` waiting
messages a message is given up at once. `close` takes no more messages, lets the queues
empty for at most `RetryPolicy.shutdown_grace` seconds, trying each message once more without
waiting, then cancels the workers; what is left is given up (``shutdown``). Every message
given up goes to the `give_up` callback with its failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from agentfirewall_server.notify.delivery import (
    QUEUE_FULL,
    SHUTDOWN,
    UNAVAILABLE,
    Failure,
    RetryPolicy,
    next_wait,
)

__all__ = ["Message", "Outbox", "Outcome"]

log = logging.getLogger("agentfirewall_server.slack")


@dataclass(eq=False)
class Message:
    """The post of an approval, or the update of its message once decided."""

    call: Literal["post", "update"]
    channel: str
    approval: dict[str, Any]
    tries: int = field(default=0)


#: What one try left to do: nothing (None), a message to send next, before the rest of
#: the queue (a post whose approval was decided meanwhile: its update), or a failure.
Outcome = Message | Failure | None


class Outbox:
    def __init__(
        self,
        send: Callable[[Message], Awaitable[Outcome]],
        give_up: Callable[[Message, Failure], None],
        policy: Callable[[], RetryPolicy],
    ) -> None:
        self._send = send
        self._give_up = give_up
        self._policy = policy
        self._queues: dict[str, deque[Message]] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._closing = asyncio.Event()

    @property
    def waiting(self) -> int:
        """Messages queued or being sent."""
        return sum(len(queue) for queue in self._queues.values())

    @property
    def running(self) -> int:
        """Workers running (one per channel with messages)."""
        return sum(not worker.done() for worker in self._workers.values())

    def put(self, message: Message) -> None:
        if self._closing.is_set():
            self._give_up(message, Failure(SHUTDOWN, "the server is stopping"))
            return
        queue = self._queues.setdefault(message.channel, deque())
        if len(queue) >= self._policy().max_queued:
            self._give_up(message, Failure(QUEUE_FULL, "too many messages waiting"))
            return
        queue.append(message)
        worker = self._workers.get(message.channel)
        if worker is None or worker.done():
            self._workers[message.channel] = asyncio.create_task(self._work(queue))

    async def _work(self, queue: deque[Message]) -> None:
        while queue:
            message = queue[0]
            message.tries += 1
            outcome = await self._try(message)
            if isinstance(outcome, Failure):
                if self._closing.is_set():  # one more try each, no waiting
                    outcome = Failure(SHUTDOWN, f"the server stopped: {outcome.detail}")
                wait = next_wait(self._policy(), outcome, message.tries)
                if wait is not None:
                    await self._pause(wait)
                    continue
                queue.popleft()
                self._give_up(message, outcome)
                continue
            queue.popleft()
            if outcome is not None:
                queue.appendleft(outcome)

    async def _try(self, message: Message) -> Outcome:
        try:
            return await self._send(message)
        except Exception as exc:  # a bug or the store: never the end of the channel's queue
            log.warning(
                "could not send the Slack %s of approval %s: %s",
                message.call,
                message.approval["id"],
                type(exc).__name__,
            )
            return Failure(UNAVAILABLE, "internal error")

    async def _pause(self, seconds: float) -> None:
        """Wait `seconds`, or less once the server stops."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), timeout=seconds)

    async def close(self) -> None:
        self._closing.set()
        workers = [worker for worker in self._workers.values() if not worker.done()]
        if workers:
            await asyncio.wait(workers, timeout=self._policy().shutdown_grace)
        for worker in workers:
            worker.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        for queue in self._queues.values():
            while queue:
                self._give_up(queue.popleft(), Failure(SHUTDOWN, "the server stopped first"))
        self._queues.clear()
        self._workers.clear()
