"""The admin API client `tf` uses: JSON over HTTP with an admin token, errors as `CliError`.

Every management command is a call to the control plane's admin API (docs/api.md). When the
server of a local project is not running, :func:`open_client` can run the same app in-process
(`offline=True`): the same routes and the same store, no socket — so `tf init --platform` and
`tf connector add` work before the first `tf up`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any, Protocol
from urllib.parse import quote

import httpx

from agentfirewall_proxy.cli.output import EXIT_DENIED, EXIT_ERROR, CliError
from agentfirewall_proxy.cli.state import Target


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
    """httpx.Client, or starlette's TestClient for the in-process app."""

    def request(
        self, method: str, url: str, *, json: Any = None, params: Any = None, timeout: Any = None
    ) -> _Response: ...

    def get(self, url: str, *, params: Any = None, timeout: Any = None) -> _Response: ...


__all__ = ["AdminClient", "open_client", "path_id", "server_down_hint"]

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
        # the in-process app has no network to time out on (and TestClient rejects timeouts)
        extra = {} if self.offline else {"timeout": timeout or _TIMEOUT}
        try:
            response = self.http.request(method, "/api" + path, json=json, params=clean, **extra)
        except httpx.TransportError as exc:
            raise CliError(
                f"no TameFlare server at {self.target.server_url}: {type(exc).__name__}",
                hint=server_down_hint(self.target),
            ) from None
        return self._decode(response)

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

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)

    def download(self, path: str, **params: Any) -> bytes:
        try:
            extra = {} if self.offline else {"timeout": _TIMEOUT}
            response = self.http.get("/api" + path, params=params, **extra)
        except httpx.TransportError as exc:
            raise CliError(
                f"no TameFlare server at {self.target.server_url}: {type(exc).__name__}",
                hint=server_down_hint(self.target),
            ) from None
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
    """A client for `target`; with `offline`, the local project's app in-process if down."""
    local = offline and target.project is not None and target.source == "config"
    if local and not _reachable(target):
        with _in_process(target) as client:
            yield client
        return
    with httpx.Client(
        base_url=target.server_url, headers=_auth_headers(target), trust_env=False
    ) as http:
        yield AdminClient(http, target)


def _reachable(target: Target) -> bool:
    try:
        with httpx.Client(trust_env=False, timeout=2.0) as http:
            http.get(target.server_url + "/api/health")
    except httpx.TransportError:
        return False
    return True


@contextlib.contextmanager
def _in_process(target: Target) -> Iterator[AdminClient]:
    from starlette.testclient import TestClient

    from agentfirewall_server.app import create_app
    from agentfirewall_server.settings import Settings

    assert target.project is not None
    settings = Settings(data_dir=target.project.state_dir)
    app = create_app(settings)
    with TestClient(
        app,
        base_url="http://tf.offline",
        headers=_auth_headers(target),
        raise_server_exceptions=False,
    ) as http:
        yield AdminClient(http, target, offline=True)
