"""``GET /api/v1/events``: server-sent events for the dashboard (viewer and up).

Event types: approval.created, approval.decided, traffic, kill_switch, config. A comment
line every 15 s keeps proxies from closing an idle stream. The stream ends when the
client disconnects and at once when the server shuts down.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import BaseRoute, Route

from agentfirewall_server.auth import require_role, state_of

__all__ = ["routes"]

KEEPALIVE_SECONDS = 15.0


async def events(request: Request) -> StreamingResponse:
    await require_role(request, "viewer")
    state = state_of(request)

    async def stream() -> AsyncIterator[str]:
        gauge = state.metrics.active_connections.labels(agent="dashboard")
        gauge.inc()
        try:
            async with state.hub.subscribe() as queue:
                yield ": connected\n\n"
                while True:
                    try:
                        item = await asyncio.wait_for(queue.get(), KEEPALIVE_SECONDS)
                    except TimeoutError:
                        if await request.is_disconnected():
                            return
                        yield ": keepalive\n\n"
                        continue
                    if item is None:  # server shutdown
                        return
                    kind, data = item
                    yield f"event: {kind}\ndata: {json.dumps(data, default=str)}\n\n"
        finally:
            gauge.dec()

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def routes() -> list[BaseRoute]:
    return [Route("/api/v1/events", events, methods=["GET"])]
