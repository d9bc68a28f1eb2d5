"""The Starlette application: ``create_app(settings)``.

Routes are listed per module (``agentfirewall_server.routes.*``); the dashboard mounts at
``/dashboard`` when ``agentfirewall_server.dashboard`` provides ``routes()``.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Mount, Route

from agentfirewall_server.settings import Settings
from agentfirewall_server.state import AppState
from agentfirewall_server.web import error_response, install_error_handlers

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
    "killswitch",
    "audit",
    "gateway",
    "people",
    "settings",
    "events",
    "slack",
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

    app = Starlette(
        routes=[*_api_routes(), *_dashboard()],
        exception_handlers=install_error_handlers(),
        lifespan=lifespan,
    )
    app.state.af = state
    app.state.settings = settings
    return app
