"""The OpenAPI 3.1 document, built from the app's real route table.

Paths and methods come from the routes themselves (so the document cannot list an
endpoint that does not exist); summaries and roles come from the table below, which
mirrors docs/api.md.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from starlette.routing import BaseRoute, Mount, Route

import agentfirewall

__all__ = ["build_openapi"]

_AUTH: list[tuple[str, str]] = [
    ("/api/v1/actions", "agent key"),
    ("/api/v1/gateway", "gateway token"),
    ("/api/v1/integrations/slack", "Slack signature"),
    ("/api/v1/auth/login", "none"),
    ("/api/v1/auth/setup", "one-time setup token"),
    ("/api/health", "none"),
    ("/.well-known", "none"),
    ("/metrics", "metrics token or viewer role (none when an admin made it public)"),
    ("/api/openapi.json", "none"),
]
_PARAM = re.compile(r"\{([a-zA-Z_]+)(:[a-z]+)?\}")


#: an admin's routes among the agent's (``routes/stuck.py``)
_ADMIN_ACTIONS = re.compile(r"^/api/v1/actions/(stuck|\{id\}/resolve)$")


def _auth_for(path: str) -> str:
    if _ADMIN_ACTIONS.match(path):
        return "admin token or dashboard session (role per docs/api.md)"
    for prefix, who in _AUTH:
        if path.startswith(prefix):
            return who
    return "admin token or dashboard session (role per docs/api.md)"


def _operation(route: Route, method: str) -> dict[str, Any]:
    doc = (route.endpoint.__doc__ or route.name.replace("_", " ")).strip().splitlines()[0]
    path = _PARAM.sub(r"{\1}", route.path)
    op: dict[str, Any] = {
        "operationId": f"{method.lower()}_{route.name}",
        "summary": doc,
        "description": f"Authentication: {_auth_for(path)}.",
        "responses": {
            "200": {"description": "success (JSON)"},
            "4XX": {
                "description": "error",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            },
        },
    }
    params = [
        {"name": m.group(1), "in": "path", "required": True, "schema": {"type": "string"}}
        for m in _PARAM.finditer(route.path)
    ]
    if params:
        op["parameters"] = params
    if method in ("POST", "PUT", "PATCH"):
        op["requestBody"] = {
            "required": False,
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    return op


def build_openapi(routes: Sequence[BaseRoute]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        if isinstance(route, Mount) or not isinstance(route, Route):
            continue
        if not route.path.startswith(("/api", "/.well-known", "/metrics")):
            continue
        path = _PARAM.sub(r"{\1}", route.path)
        for method in sorted(route.methods or ()):
            if method == "HEAD":
                continue
            paths.setdefault(path, {})[method.lower()] = _operation(route, method)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "TameFlare control plane API",
            "version": agentfirewall.__version__,
            "description": "See docs/api.md for bodies and answers.",
        },
        "servers": [{"url": "/"}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error", "message"],
                    "properties": {"error": {"type": "string"}, "message": {"type": "string"}},
                }
            },
        },
        "security": [{"bearer": []}],
        "paths": dict(sorted(paths.items())),
    }
