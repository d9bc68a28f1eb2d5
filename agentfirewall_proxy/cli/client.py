"""The admin API client `tf` uses: JSON over HTTP with an admin token, errors as `CliError`.

Every management command is a call to the control plane's admin API (docs/api.md). When the
server of a local project is not running, :func:`open_client` can run the same app in-process
(`offline=True`): the same routes and the same store, no socket — so `tf init --platform` and
`tf connector add` work before the first `tf up`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, Literal, Protocol
from urllib.parse import quote

from agentfirewall_proxy.cli.output import EXIT_DENIED, EXIT_ERROR, CliError
from agentfirewall_proxy.cli.state import Project, Target
from agentfirewall_proxy.cli.wire import Wire, WireError

if TYPE_CHECKING:
    import httpx
    from anyio.from_thread import BlockingPortal


class _Response(Protocol):
    @property
    def status_code(self) -> int: ...
    @property
    def content(self) -> bytes: ...
    @property
    def text(self) -> str: ...
    @property
    def is_success(self) -> bool: ...
    def json(self) -> Any: ...


class _Http(Protocol):
    """:class:`Wire` to a server, or :class:`_InProcess` for the in-process app."""

    def request(
        self, method: str, url: str, *, json: Any = None, params: Any = None, timeout: Any = None
    ) -> _Response: ...

    def get(self, url: str, *, params: Any = None, timeout: Any = None) -> _Response: ...


__all__ = [
    "AdminClient",
    "check_identity",
    "in_process",
    "open_client",
    "path_id",
    "project_kid",
    "server_down_hint",
]

_TIMEOUT = 75.0  # long enough for the server's 60 s long-polls


def path_id(value: str) -> str:
    """An id or a name as one URL path segment (`DevOps Bot` → `DevOps%20Bot`)."""
    return quote(value, safe="")


def server_down_hint(target: Target) -> str:
    if target.local or target.source == "default":
        return "start one with `tf up` in another terminal (in this project's directory)"
    return f"check the address given by {target.source} and that the server is running"


class AdminClient:
    """Thin JSON client; methods return the decoded body or raise `CliError`."""

    def __init__(self, http: _Http, target: Target, *, offline: bool = False) -> None:
        self.http = http
        self.target = target
        self.offline = offline

    def request(
        self,
        method: str,
        path: str,
        *,
        json: object = None,
        params: Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> Any:
        clean = {k: v for k, v in (params or {}).items() if v is not None}
        # the in-process app has no network to time out on
        extra = {} if self.offline else {"timeout": timeout or _TIMEOUT}
        try:
            response = self.http.request(method, "/api" + path, json=json, params=clean, **extra)
        except WireError as exc:
            raise self._unreachable(exc) from None
        return self._decode(response)

    def _unreachable(self, exc: WireError) -> CliError:
        return CliError(
            f"no TameFlare server at {self.target.server_url}: {exc.reason}",
            hint=server_down_hint(self.target),
        )

    def _decode(self, response: _Response) -> Any:
        if response.is_success and (response.status_code == 204 or not response.content):
            return None
        try:
            body: Any = response.json()
        except ValueError:
            body = response.text
        if response.is_success:
            return body
        raise _error(response.status_code, body, self.target)

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params)

    def post(self, path: str, body: object = None, **params: Any) -> Any:
        return self.request("POST", path, json=body if body is not None else {}, params=params)

    def patch(self, path: str, body: object) -> Any:
        return self.request("PATCH", path, json=body)

    def put(self, path: str, body: object) -> Any:
        return self.request("PUT", path, json=body)

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)

    def download(self, path: str, **params: Any) -> bytes:
        try:
            extra = {} if self.offline else {"timeout": _TIMEOUT}
            response = self.http.get("/api" + path, params=params, **extra)
        except WireError as exc:
            raise self._unreachable(exc) from None
        if not response.is_success:
            self._decode(response)
        return response.content


def _error(status: int, body: Any, target: Target) -> CliError:
    data = body if isinstance(body, dict) else {}
    message = str(data.get("message") or data.get("error") or body or f"HTTP {status}")
    if status == 401:
        return CliError(
            f"the server at {target.server_url} refused the admin token: {message}",
            hint="run `tf` inside the project that `tf init` created, or set TF_ADMIN_TOKEN "
            "to an admin token (tfa_...)",
        )
    if status == 403:
        need, have = data.get("required_role"), data.get("your_role")
        role = f" (needs role `{need}`, yours is `{have}`)" if need else ""
        return CliError(
            f"forbidden{role}: {message}",
            hint="ask an owner, or use a token of a user with that role",
            code=EXIT_DENIED,
        )
    if status == 404:
        return CliError(f"not found: {message}", hint="list what exists with the `list` command")
    if status == 409:
        return CliError(f"conflict: {message}")
    if status in (400, 413, 422):
        field = f" (`{data['field']}`)" if data.get("field") else ""
        return CliError(f"invalid request{field}: {message}")
    return CliError(f"server error {status}: {message}", code=EXIT_ERROR)


def _auth_headers(target: Target) -> dict[str, str]:
    headers = {"User-Agent": "tf-cli", "Accept": "application/json"}
    if target.admin_token:
        headers["Authorization"] = f"Bearer {target.admin_token}"
    return headers


@contextlib.contextmanager
def open_client(target: Target, *, offline: bool = False) -> Iterator[AdminClient]:
    """A client for `target`; with `offline`, the local project's app in-process if down.

    A local project's server must prove it is this project's (:func:`check_identity`): a `tf`
    never sends a project's admin token to another project's `tf up` on the same port.
    """
    if target.local:
        found = check_identity(target)
        if found != "ours" and offline and target.source == "config":
            with in_process(target) as client:
                yield client
            return
        assert target.project is not None
        if found == "other":
            raise CliError(
                f"the server at {target.server_url} is not this project's: its signing key "
                f"is not the one in {target.project.state_dir} (another project's `tf up`?)",
                hint="run `tf up` in this project's directory (it picks free ports when "
                "these are taken), or name a server with --server",
            )
        if found == "unproven":
            raise CliError(
                f"cannot tell whether the server at {target.server_url} is this project's: "
                f"{target.project.state_dir} has no signing key to compare with, so it gets "
                "no token",
                hint=f"run `tf init` in {target.project.root} (it writes the missing key), "
                "then restart `tf up`; or name the server: --server URL with TF_ADMIN_TOKEN",
            )
    try:
        wire = Wire(target.server_url, headers=_auth_headers(target), timeout=_TIMEOUT)
    except WireError as exc:
        raise CliError(
            f"cannot use {target.server_url} as a server address: {exc.reason}",
            hint=server_down_hint(target),
        ) from None
    yield AdminClient(wire, target)


def project_kid(project: Project) -> str | None:
    """The key id of the project's decision-token signing key (None when it has none)."""
    from agentfirewall.signingkeys import load_signing_key

    try:
        pem = (project.state_dir / "signing-key.pem").read_bytes()
    except OSError:
        return None
    try:
        return load_signing_key(pem).kid
    except ValueError:
        return None


def check_identity(target: Target) -> Literal["ours", "other", "down", "unproven"]:
    """Whether the server at `target` serves this project's state (its JWKS holds our key);
    ``unproven`` when the project has no key to compare with (nothing then shows the server
    is ours, so it is never trusted as ours)."""
    assert target.project is not None
    try:
        response = Wire(target.server_url, timeout=5.0).get("/.well-known/jwks.json")
    except WireError:
        return "down"
    kid = project_kid(target.project)
    if kid is None:
        return "unproven"
    try:
        keys = response.json().get("keys", []) if response.status_code == 200 else []
        kids = {str(k.get("kid")) for k in keys if isinstance(k, dict)}
    except (ValueError, AttributeError):
        kids = set()
    return "ours" if kid in kids else "other"


class _InProcess:
    """Sync calls into the app through `httpx.ASGITransport`, on an event loop in a thread."""

    def __init__(self, portal: BlockingPortal, http: httpx.AsyncClient) -> None:
        self._portal = portal
        self._http = http

    def request(
        self, method: str, url: str, *, json: Any = None, params: Any = None, timeout: Any = None
    ) -> httpx.Response:
        async def call() -> httpx.Response:
            return await self._http.request(method, url, json=json, params=params)

        return self._portal.call(call)

    def get(self, url: str, *, params: Any = None, timeout: Any = None) -> httpx.Response:
        return self.request("GET", url, params=params)


@contextlib.contextmanager
def in_process(target: Target) -> Iterator[AdminClient]:
    """The project's app in this process (its lifespan run around the calls), no socket."""
    import httpx
    from anyio.from_thread import start_blocking_portal

    from agentfirewall_server.app import create_app
    from agentfirewall_server.settings import Settings

    assert target.project is not None
    app = create_app(Settings(data_dir=target.project.state_dir))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    with (
        start_blocking_portal() as portal,
        portal.wrap_async_context_manager(app.router.lifespan_context(app)),
    ):
        http = httpx.AsyncClient(
            transport=transport, base_url="http://tf.offline", headers=_auth_headers(target)
        )
        try:
            yield AdminClient(_InProcess(portal, http), target, offline=True)
        finally:
            portal.call(http.aclose)
