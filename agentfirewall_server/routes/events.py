"""``GET /api/v1/events``: server-sent events for the dashboard (viewer and up).

Event types: approval.created, approval.decided, traffic, kill_switch, config (for a
viewer, an approval's action spec and held request, and a traffic row's path, masked as
``GET /api/v1/approvals`` and ``GET /api/v1/traffic`` mask them). A comment
line every 15 s keeps proxies from closing an idle stream. The stream ends when the
client disconnects, at once when the server shuts down, and when its caller's credential
is gone: it is checked again at once when this server signs someone out or changes users
or tokens (a ``config`` event), before any event once a second has passed since the last
check (another replica's sign-out, an expiry), and at each keepalive.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import BaseRoute, Route

from agentfirewall_server.auth import require_role, state_of, still_has_role
from agentfirewall_server.hub import CREDENTIALS_ENDED
from agentfirewall_server.routes.shownspec import shown_to

__all__ = ["routes"]

KEEPALIVE_SECONDS = 15.0
RECHECK_SECONDS = 1.0
_RECHECK_ON = frozenset({CREDENTIALS_ENDED, "config"})


async def events(request: Request) -> StreamingResponse:
    who = await require_role(request, "viewer")
    state = state_of(request)

    async def stream() -> AsyncIterator[str]:
        with state.metrics.connection_open("dashboard"):
            async with state.hub.subscribe() as queue:
                yield ": connected\n\n"
                checked = time.monotonic()
                while True:
                    try:
                        item = await asyncio.wait_for(queue.get(), KEEPALIVE_SECONDS)
                    except TimeoutError:
                        if await request.is_disconnected() or not await still_has_role(
                            request, "viewer"
                        ):
                            return
                        checked = time.monotonic()
                        yield ": keepalive\n\n"
                        continue
                    if item is None:  # server shutdown
                        return
                    kind, data = item
                    if kind in _RECHECK_ON or time.monotonic() - checked >= RECHECK_SECONDS:
                        if not await still_has_role(request, "viewer"):
                            return
                        checked = time.monotonic()
                    if kind == CREDENTIALS_ENDED:
                        continue
                    if isinstance(data, dict):  # (masked for a viewer: shownspec)
                        data = await shown_to(request, who, data)
                    yield f"event: {kind}\ndata: {json.dumps(data, default=str)}\n\n"

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def routes() -> list[BaseRoute]:
    return [Route("/api/v1/events", events, methods=["GET"])]
