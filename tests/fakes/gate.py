"""An upstream app that holds each request until the test opens the gate."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

__all__ = ["Gate"]


class Gate:
    """Holds upstream requests until `open` is set (or `limit` seconds pass, so a failing
    test still ends); `arrived` is set when a request reached it."""

    def __init__(self, limit: float = 30.0) -> None:
        self.open = threading.Event()
        self.arrived = threading.Event()
        self.limit = limit

    def reset(self) -> None:
        self.open.clear()
        self.arrived.clear()

    async def app(self, scope: Any, receive: Any, send: Any) -> None:
        request = Request(scope, receive)
        self.arrived.set()
        await asyncio.to_thread(self.open.wait, self.limit)
        response = JSONResponse({"merged": True, "path": request.url.path})
        await response(scope, receive, send)
