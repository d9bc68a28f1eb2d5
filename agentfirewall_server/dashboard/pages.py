"""The dashboard's page shells and static files, mounted by the server at `/dashboard`.

Every page is a Jinja2 shell with no data in it: the browser fetches everything from the JSON
API (`/api/v1/...`) with the `tf_session` cookie, sends `X-CSRF-Token` on writes and follows
live changes through `GET /api/v1/events` (server-sent events). The only value a shell takes
from the request is an agent name from the URL, kept in an attribute for the page's script
(Jinja2 escapes it like all its output) and never shown: the script shows the name of the
agent it finds, through the same escaping as every text (static/js/dom.js `shown`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import jinja2
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from agentfirewall_server.dashboard import sandbox

_HERE = Path(__file__).parent
_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(_HERE / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)
_templates = Jinja2Templates(env=_env)

# Scripts, styles and API calls come from this origin only; no inline script or style.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@dataclass(frozen=True, slots=True)
class Page:
    """One page of the dashboard: its path under the mount, template, title and nav entry."""

    path: str
    template: str
    title: str
    nav: str | None  # label in the navigation bar, None for pages outside it
    signed_in: bool = True  # False for the sign-in and setup pages


PAGES: tuple[Page, ...] = (
    Page("/overview", "overview.html", "Overview", "Overview"),
    Page("/traffic", "traffic.html", "Traffic", "Traffic"),
    Page("/approvals", "approvals.html", "Approvals", "Approvals"),
    Page("/agents", "agents.html", "Agents", "Agents"),
    Page("/connectors", "connectors.html", "Connectors", "Connectors"),
    Page("/policies", "policies.html", "Policies", "Policies"),
    Page("/budgets", "budgets.html", "Budgets and grants", "Budgets"),
    Page("/sandbox", "sandbox.html", "Sandbox", "Sandbox"),
    Page("/audit", "audit.html", "Audit log", "Audit log"),
    Page("/settings", "settings.html", "Settings", "Settings"),
    Page("/login", "login.html", "Sign in", None, signed_in=False),
    Page("/setup", "setup.html", "Create the owner account", None, signed_in=False),
)
_AGENT_PAGE = Page("/agents/{name:path}", "agent.html", "Agent", None)


def _base_paths(request: Request) -> tuple[str, str]:
    """Where the dashboard and the API live, honouring the app's root path and the mount."""
    dashboard = str(request.scope.get("root_path", "")).rstrip("/")
    app_root = str(request.scope.get("app_root_path", "")).rstrip("/")
    return dashboard, f"{app_root}/api/v1"


def render(request: Request, page: Page, **extra: str) -> Response:
    """Render a page shell with the navigation and the security headers."""
    dashboard, api = _base_paths(request)
    context = {
        "page": page,
        "pages": [p for p in PAGES if p.nav],
        "base": dashboard,
        "static": f"{dashboard}/static",
        "api": api,
        **extra,
    }
    return _templates.TemplateResponse(request, page.template, context, headers=SECURITY_HEADERS)


def _page_endpoint(page: Page) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        return render(request, page)

    endpoint.__name__ = f"dashboard_{page.template.removesuffix('.html')}"
    return endpoint


async def _agent_page(request: Request) -> Response:
    name = str(request.path_params["name"])
    return render(request, _AGENT_PAGE, agent_name=name)


async def _home(request: Request) -> Response:
    dashboard, _ = _base_paths(request)
    return RedirectResponse(f"{dashboard}/overview", status_code=302, headers=SECURITY_HEADERS)


def routes() -> list[BaseRoute]:
    """The dashboard's routes, to be mounted at `/dashboard` by `create_app`."""
    table: list[BaseRoute] = [Route("/", _home, methods=["GET"])]
    table += [Route(p.path, _page_endpoint(p), methods=["GET"]) for p in PAGES]
    table.append(Route(_AGENT_PAGE.path, _agent_page, methods=["GET"]))
    table.append(Route("/sandbox/evaluate", sandbox.evaluate, methods=["POST"]))
    table.append(Mount("/static", StaticFiles(directory=str(_HERE / "static")), name="static"))
    return table
