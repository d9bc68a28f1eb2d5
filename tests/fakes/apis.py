"""Fake GitHub, Stripe and Slack: just enough of each API for the official clients.

Unknown routes answer 200 with a JSON echo (``{"ok": true, "fake": name, "method", "path"}``)
so a test can aim any action at a fake; ``fake.settings["responses"]`` can override a route:
``{("GET", "/user"): (status, json_body)}``. The Stripe fake can fail a window of
transfer creations (``_failing``).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.fakes.base import FakeUpstream

_ids = itertools.count(1)


def _override(fake: FakeUpstream, request: Request) -> Response | None:
    responses: dict[tuple[str, str], tuple[int, Any]] = fake.settings.get("responses", {})
    found = responses.get((request.method, request.url.path))
    if found is None:
        return None
    status, body = found
    return JSONResponse(body, status_code=status)


def _echo(fake: FakeUpstream, request: Request) -> Response:
    return JSONResponse(
        {"ok": True, "fake": fake.name, "method": request.method, "path": request.url.path}
    )


def _bytes(size: int) -> Response:
    """``size`` bytes streamed in 64 KiB chunks (for slow-reader tests)."""

    async def body() -> AsyncIterator[bytes]:
        sent = 0
        while sent < size:
            chunk = min(65536, size - sent)
            sent += chunk
            yield b"x" * chunk

    return StreamingResponse(body(), media_type="application/octet-stream")


def github() -> FakeUpstream:
    """api.github.com; also ``GET /fake/bytes/<n>`` streams n bytes."""
    fake = FakeUpstream(name="github", hostnames=("api.github.com", "uploads.github.com"), app=None)  # type: ignore[arg-type]

    async def handle(request: Request) -> Response:
        found = _override(fake, request)
        if found is not None:
            return found
        path, method = request.url.path, request.method
        parts = path.strip("/").split("/")
        if parts[:2] == ["fake", "bytes"] and len(parts) == 3:
            return _bytes(int(parts[2]))
        if path == "/user":
            return JSONResponse({"login": "fake-user", "id": 1})
        if parts[:1] == ["repos"] and len(parts) == 4 and parts[3] == "pulls":
            if method == "POST":
                return JSONResponse({"number": next(_ids), "state": "open"}, status_code=201)
            return JSONResponse([{"number": 1, "title": "fake pr", "state": "open"}])
        if parts[:1] == ["repos"] and len(parts) == 6 and parts[5] == "merge":
            return JSONResponse({"merged": True, "sha": "0" * 40, "message": "merged"})
        if parts[:1] == ["repos"] and len(parts) == 4 and parts[3] == "issues":
            if method == "POST":
                return JSONResponse({"number": next(_ids), "state": "open"}, status_code=201)
            return JSONResponse([])
        if parts[:1] == ["repos"] and len(parts) == 3 and method == "DELETE":
            return Response(status_code=204)
        return _echo(fake, request)

    fake.app = Starlette(routes=[Route("/{path:path}", handle, methods=_METHODS)])
    return fake


def stripe() -> FakeUpstream:
    fake = FakeUpstream(name="stripe", hostnames=("api.stripe.com",), app=None)  # type: ignore[arg-type]

    async def handle(request: Request) -> Response:
        found = _override(fake, request)
        if found is not None:
            return found
        parts = request.url.path.strip("/").split("/")
        if parts[:1] != ["v1"] or len(parts) < 2:
            return JSONResponse(
                {"error": {"type": "invalid_request_error", "message": "unknown path"}},
                status_code=404,
            )
        kind = parts[1]
        obj = kind[:-1] if kind.endswith("s") else kind
        if request.method == "GET" and len(parts) == 2:
            return JSONResponse(
                {"object": "list", "data": [], "has_more": False, "url": request.url.path}
            )
        body = await request.body()
        params = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
        if kind == "transfers" and len(parts) == 2 and _failing(fake):
            return JSONResponse({"error": {"type": "api_error", "message": "fake outage"}},
                                status_code=500)  # fmt: skip
        ident = parts[2] if len(parts) > 2 else f"{obj[:3]}_fake{next(_ids)}"
        data: dict[str, Any] = {"id": ident, "object": obj, "created": int(time.time())}
        for key in ("amount", "currency", "destination", "customer", "charge"):
            if key in params:
                data[key] = int(params[key]) if key == "amount" else params[key]
        return JSONResponse(data, headers={"Request-Id": f"req_fake{next(_ids)}"})

    fake.app = Starlette(routes=[Route("/{path:path}", handle, methods=_METHODS)])
    return fake


def _failing(fake: FakeUpstream) -> bool:
    """``settings["fail_transfers"] = (first, stop)``: transfer creations number `first`
    to `stop` - 1 (0-based, in arrival order) answer 500 (an upstream failing mid-way)."""
    window = fake.settings.get("fail_transfers")
    seen = fake.settings["transfers_seen"] = fake.settings.get("transfers_seen", 0) + 1
    return window is not None and window[0] <= seen - 1 < window[1]


def slack() -> FakeUpstream:
    fake = FakeUpstream(name="slack", hostnames=("slack.com", "api.slack.com"), app=None)  # type: ignore[arg-type]

    async def handle(request: Request) -> Response:
        found = _override(fake, request)
        if found is not None:
            return found
        method = request.url.path.removeprefix("/api/")
        if method == "auth.test":
            return JSONResponse(
                {"ok": True, "url": "https://fake.slack.com/", "team": "fake", "user": "bot"}
            )
        if method == "chat.postMessage":
            ts = f"{time.time():.6f}"
            return JSONResponse(
                {
                    "ok": True,
                    "channel": "C0FAKE",
                    "ts": ts,
                    "message": {"ts": ts, "type": "message"},
                }
            )
        if method == "conversations.list":
            return JSONResponse({"ok": True, "channels": [], "response_metadata": {}})
        return JSONResponse({"ok": True, "method": method})

    fake.app = Starlette(routes=[Route("/{path:path}", handle, methods=_METHODS)])
    return fake


_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
