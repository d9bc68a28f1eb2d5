"""The Starlette application: ``create_app(settings)``.

Routes are listed per module (``agentfirewall_server.routes.*``); the dashboard mounts at
``/dashboard`` when ``agentfirewall_server.dashboard`` provides ``routes()``.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agentfirewall_server.settings import Settings
from agentfirewall_server.state import AppState
from agentfirewall_server.store.db import StoreError
from agentfirewall_server.web import error_response, install_error_handlers, nul_in_url

if TYPE_CHECKING:
    from opentelemetry.trace import Span

__all__ = ["create_app"]

log = logging.getLogger("agentfirewall_server")

_ROUTE_MODULES = (  # actions first: POST /api/v1/actions is the hot path (routes match in order)
    "actions",
    "system",
    "agents",
    "approvals",
    "connectors",
    "permissions",
    "policies",
    "replay",
    "shadow",
    "killswitch",
    "audit",
    "gateway",
    "approval_batch",
    "budgets",
    "budgetleases",
    "grants",
    "people",
    "settings",
    "events",
    "slack",
    "vault",
)


def _api_routes() -> list[BaseRoute]:
    out: list[BaseRoute] = []
    for name in _ROUTE_MODULES:
        try:
            module = importlib.import_module(f"agentfirewall_server.routes.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"agentfirewall_server.routes.{name}":
                raise
            continue
        out.extend(module.routes())
    return out


async def _no_dashboard(_request: Request) -> JSONResponse:
    return error_response(404, "not_found", "the dashboard is not installed in this build")


def _dashboard() -> list[BaseRoute]:
    try:
        module = importlib.import_module("agentfirewall_server.dashboard")
    except ImportError:
        module = None
    make = getattr(module, "routes", None) if module is not None else None
    if make is None:
        return [
            Route("/dashboard", _no_dashboard),
            Route("/dashboard/{rest:path}", _no_dashboard),
        ]
    return [Mount("/dashboard", routes=make())]


class _App(Starlette):
    """Starlette, with ``POST /api/v1/actions`` (the hot path) dispatched directly.

    Matching the exact path and method skips the router and three layers of exception
    middleware per request; the same error handlers answer, and an unexpected error is
    answered with 500 and re-raised, as Starlette's ServerErrorMiddleware does.
    """

    #: ``AppState.observed`` (set once at creation): read on every request
    observed = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (refused := nul_in_url(scope)) is not None:
            await refused(scope, receive, send)
            return
        if scope["type"] == "http" and scope["method"] == "POST" and not scope.get("root_path"):
            path = scope["path"]
            if path == "/api/v1/actions":
                scope["app"] = self
                if self.observed:
                    await _observed(self, "tameflare.decide", _request_action, scope, receive, send)
                else:
                    await _request_action(scope, receive, send)
                return
            name = _OBSERVED.get(path)
            if name is None and path.startswith("/api/v1/actions/") and path.endswith("/execute"):
                name = "tameflare.execute"
            if name is not None and self.observed:
                await _observed(self, name, super().__call__, scope, receive, send)
                return
        await super().__call__(scope, receive, send)


#: Other POST routes with a span (and a JSON log line): the gateway's approval creation, a
#: child of the gateway's hold span through the ``traceparent`` the gateway sends.
_OBSERVED = {"/api/v1/gateway/approvals": "tameflare.approval.create"}


async def _observed(
    app: _App, name: str, handler: ASGIApp, scope: Scope, receive: Receive, send: Send
) -> None:
    """Run `handler` in a request span and/or with one JSON log line (route, status, time).

    The line names the route, never the path or query: no id or token from a URL is logged.
    """
    state: AppState = app.state.af
    status = 0
    started = time.perf_counter()
    span: Span | None = None

    async def send_noting_status(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
            if span is not None:
                span.set_attribute("http.response.status_code", status)
        await send(message)

    with contextlib.ExitStack() as stack:
        if state.tracing is not None:
            span = stack.enter_context(state.tracing.request_span(name, Headers(scope=scope)))
        try:
            await handler(scope, receive, send_noting_status)
        finally:
            if state.settings.log_format == "json":
                ms = round((time.perf_counter() - started) * 1000, 3)
                log.info("request", extra={"fields": {"route": name, "status": status,
                                                      "latency_ms": ms}})  # fmt: skip


async def _request_action(scope: Scope, receive: Receive, send: Send) -> None:
    request = Request(scope, receive, send)
    try:
        response = await (_hot_route or _load_hot_route())(request)
    except Exception as exc:
        handler = next(h for kind, h in _HANDLERS.items() if isinstance(exc, kind))
        unexpected = handler is _HANDLERS[Exception]
        await (await handler(request, exc))(scope, receive, send)
        if unexpected:
            raise
        return
    await response(scope, receive, send)


async def _store_unavailable(_request: Request, exc: Exception) -> JSONResponse:
    """The database did not answer (down, frozen, a lock not had in time): 503, not a 500;
    which database and why go to the log, not to the caller."""
    log.warning("%s", exc)
    return error_response(503, "unavailable", "database unavailable: try again shortly")


def _error_handlers() -> dict[Any, Any]:
    """web's, after the store's (`_request_action` takes the first that matches)."""
    return {StoreError: _store_unavailable, **install_error_handlers()}


_HANDLERS = _error_handlers()

#: `routes.actions.request_action`, imported on the first request (not at every one)
_hot_route: Callable[[Request], Awaitable[Response]] | None = None


def _load_hot_route() -> Callable[[Request], Awaitable[Response]]:
    global _hot_route
    from agentfirewall_server.routes.actions import request_action

    _hot_route = request_action
    return request_action


def create_app(settings: Settings) -> Starlette:
    """A fresh app; its lifespan opens the store, loads keys and starts background tasks."""
    state = AppState(settings)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        await state.start()
        try:
            yield
        finally:
            await state.stop()

    app = _App(
        routes=[*_api_routes(), *_dashboard()],
        exception_handlers=_error_handlers(),
        lifespan=lifespan,
    )
    app.state.af = state
    app.observed = state.observed
    app.state.settings = settings
    return app
