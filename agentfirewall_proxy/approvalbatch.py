"""Approvals created together: the holds of one event-loop iteration share one call.

When many requests are held at once (a burst, a fleet of agents), one
``POST /v1/gateway/approvals`` each made the control plane's writer run one job per
approval. Here the approvals asked for in the same loop iteration go out as one
``POST /v1/gateway/approvals/batch`` (the server records them in one transaction, see
``agentfirewall_server/routes/approval_batch.py``), as traffic records are batched. A lone
approval still takes the single call, and a control plane without the batch route (404 or
405) is remembered and served one call per approval.

A batch holds at most 1,000 approvals and :data:`MAX_BATCH_BYTES` of JSON. A control plane
whose body limit (``max_body_bytes``, 1 MiB by default) is lower answers 413, having
recorded nothing: the batch goes again in halves, down to single calls, and later batches
are cut at half the refused size. (A body over four times its limit it refuses unread and
closes the connection: an answer lost so cannot be told from one lost after the batch was
recorded, and is not sent again. A quarter of the default limit per batch lets a control
plane set as low as 64 KiB answer 413 all the same.)
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from agentfirewall_proxy.tracecontext import CONTROL_TRACEPARENT

__all__ = ["MAX_BATCH", "MAX_BATCH_BYTES", "ApprovalBatcher"]

JSON = dict[str, Any]
MAX_BATCH = 1000  # the server's bound per call
#: The most JSON one batch carries: a quarter of the control plane's default body limit.
MAX_BATCH_BYTES = 256 * 1024
_ENVELOPE = len(b'{"approvals":[]}')
Call = Callable[[str, str, object], Awaitable[Any]]  # (method, path, body) -> httpx.Response
#: One approval asked for: its payload, the future its answer goes to, its JSON's size.
_Item = tuple[JSON, "asyncio.Future[JSON]", int]


class ApprovalBatcher:
    """Collects `create` calls per loop iteration and sends them in batches."""

    def __init__(self, call: Call, error: type[Exception]) -> None:
        self._call = call
        self._error = error
        self._pending: list[_Item] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._batch_route = True
        #: The most JSON bytes one batch carries (lowered when a control plane answers 413).
        self.max_bytes = MAX_BATCH_BYTES

    async def create(self, payload: JSON) -> JSON:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[JSON] = loop.create_future()
        if not self._pending:
            loop.call_soon(self._flush)
        size = len(json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode())
        self._pending.append((payload, future, size))
        return await future

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        for batch in self._batches(pending):
            task = asyncio.ensure_future(self._send(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _batches(self, items: list[_Item]) -> Iterator[list[_Item]]:
        """`items` in order, cut at :data:`MAX_BATCH` approvals or `max_bytes` of JSON."""
        batch: list[_Item] = []
        size = _ENVELOPE
        for item in items:
            if batch and (len(batch) >= MAX_BATCH or size + item[2] + 1 > self.max_bytes):
                yield batch
                batch, size = [], _ENVELOPE
            batch.append(item)
            size += item[2] + 1  # (and its comma)
        if batch:
            yield batch

    async def _send(self, items: list[_Item]) -> None:
        if len(items) > 1:  # this task runs in the first hold's context: trace no one's
            CONTROL_TRACEPARENT.set(None)
        if len(items) == 1 or not self._batch_route:
            await asyncio.gather(*(self._one(payload, future) for payload, future, _ in items))
            return
        try:
            response = await self._call(
                "POST", "/v1/gateway/approvals/batch", {"approvals": [p for p, _, _ in items]}
            )
            answers = response.json()["approvals"]
            if len(answers) != len(items):
                raise self._error("control plane answered a batch of the wrong size", 502)
        except Exception as exc:
            status = getattr(exc, "status", None)
            if status in (404, 405):  # an older control plane
                self._batch_route = False
                await self._send(items)
                return
            if status == 413:  # over the control plane's body limit: nothing was recorded
                self.max_bytes = min(self.max_bytes, sum(i[2] + 1 for i in items) // 2)
                half = len(items) // 2
                await asyncio.gather(self._send(items[:half]), self._send(items[half:]))
                return
            for _, future, _ in items:
                _fail(future, self._as_error(exc))
            return
        for (_, future, _), answer in zip(items, answers, strict=True):
            error = answer.get("error") if isinstance(answer, dict) else None
            if error is not None or not isinstance(answer, dict):
                status = int(error.get("status", 502)) if isinstance(error, dict) else 502
                _fail(future, self._error(f"control plane refused an approval ({status})", status))
            elif not future.done():
                future.set_result(answer)

    async def _one(self, payload: JSON, future: asyncio.Future[JSON]) -> None:
        try:
            response = await self._call("POST", "/v1/gateway/approvals", payload)
            answer: JSON = response.json()
        except Exception as exc:
            _fail(future, self._as_error(exc))
            return
        if not future.done():
            future.set_result(answer)

    def _as_error(self, exc: Exception) -> Exception:
        """The caller's error type (what it catches to fail closed)."""
        if isinstance(exc, self._error):
            return exc
        return self._error(f"control plane answer unreadable: {type(exc).__name__}", 502)


def _fail(future: asyncio.Future[JSON], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
