"""Approvals created together: the holds of one event-loop iteration share one call.

When many requests are held at once (a burst, a fleet of agents), one
``POST /v1/gateway/approvals`` each made the control plane's writer run one job per
approval. Here the approvals asked for in the same loop iteration go out as one
``POST /v1/gateway/approvals/batch`` (the server records them in one transaction, see
``agentfirewall_server/routes/approval_batch.py``), as traffic records are batched. A lone
approval still takes the single call, and a control plane without the batch route (404 or
405) is remembered and served one call per approval.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from agentfirewall_proxy.tracecontext import CONTROL_TRACEPARENT

__all__ = ["MAX_BATCH", "ApprovalBatcher"]

JSON = dict[str, Any]
MAX_BATCH = 1000  # the server's bound per call
Call = Callable[[str, str, object], Awaitable[Any]]  # (method, path, body) -> httpx.Response


class ApprovalBatcher:
    """Collects `create` calls per loop iteration and sends them in batches."""

    def __init__(self, call: Call, error: type[Exception]) -> None:
        self._call = call
        self._error = error
        self._pending: list[tuple[JSON, asyncio.Future[JSON]]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._batch_route = True

    async def create(self, payload: JSON) -> JSON:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[JSON] = loop.create_future()
        if not self._pending:
            loop.call_soon(self._flush)
        self._pending.append((payload, future))
        return await future

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        for start in range(0, len(pending), MAX_BATCH):
            task = asyncio.ensure_future(self._send(pending[start : start + MAX_BATCH]))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _send(self, items: list[tuple[JSON, asyncio.Future[JSON]]]) -> None:
        if len(items) > 1:  # this task runs in the first hold's context: trace no one's
            CONTROL_TRACEPARENT.set(None)
        if len(items) == 1 or not self._batch_route:
            await asyncio.gather(*(self._one(payload, future) for payload, future in items))
            return
        try:
            response = await self._call(
                "POST", "/v1/gateway/approvals/batch", {"approvals": [p for p, _ in items]}
            )
            answers = response.json()["approvals"]
            if len(answers) != len(items):
                raise self._error("control plane answered a batch of the wrong size", 502)
        except Exception as exc:
            if getattr(exc, "status", None) in (404, 405):  # an older control plane
                self._batch_route = False
                await self._send(items)
                return
            for _, future in items:
                _fail(future, self._as_error(exc))
            return
        for (_, future), answer in zip(items, answers, strict=True):
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
