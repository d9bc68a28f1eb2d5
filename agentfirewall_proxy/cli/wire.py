"""The HTTP/1.1 client `tf` talks to a control plane with: the standard library's `http.client`.

Every `tf` command is a short process that makes a few requests; what it pays is start-up.
httpx with its transport stack costs ~0.5 s of imports and TLS set-up per process, more than the
command itself, so `tf` uses `http.client` (already loaded by the standard library's `urllib`)
for the network and keeps httpx for the in-process app only (client.py). A connection per
request: the server is usually on loopback, and no connection is ever reused after an error.

`trust_env` is off by design, as it was with httpx: no proxy variable, no `SSL_CERT_FILE`
sends the admin token anywhere but the server named. HTTPS servers are verified against
certifi's bundle (what httpx used), hostname included.
"""

from __future__ import annotations

import http.client
import json as jsonlib
import socket
import ssl
from collections.abc import Mapping
from functools import cache
from typing import Any
from urllib.parse import urlencode, urlsplit

__all__ = ["Answer", "Wire", "WireError"]


class WireError(Exception):
    """No answer: the server could not be reached, or the connection failed half-way."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Answer:
    """A response read whole: what `AdminClient` needs of it (the shape of httpx.Response's)."""

    __slots__ = ("content", "status_code")

    def __init__(self, status_code: int, content: bytes) -> None:
        self.status_code = status_code
        self.content = content

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return jsonlib.loads(self.content)  # ValueError (also UnicodeDecodeError) when not JSON


@cache
def _tls() -> ssl.SSLContext:
    import certifi

    return ssl.create_default_context(cafile=certifi.where())


def _query_value(value: object) -> str:
    """A query value as httpx writes it: booleans in lower case, None empty."""
    if value is True:
        return "true"
    if value is False:
        return "false"
    return "" if value is None else str(value)


def _query(params: Mapping[str, Any] | None) -> str:
    pairs = [
        (key, _query_value(item))
        for key, value in (params or {}).items()
        for item in (value if isinstance(value, list | tuple) else [value])
    ]
    return "?" + urlencode(pairs) if pairs else ""


def _reason(exc: BaseException) -> str:
    """What went wrong, in words a user can act on (never a header or a body)."""
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate not trusted ({exc.verify_message})"
    if isinstance(exc, ssl.SSLError):
        return f"TLS failed ({exc.reason or type(exc).__name__})"
    if isinstance(exc, socket.gaierror):
        return "unknown host"
    if isinstance(exc, http.client.RemoteDisconnected | ConnectionResetError):
        return "the connection was closed before an answer"
    return type(exc).__name__


class Wire:
    """Requests to one server (`base_url`), each with `headers`, answers read whole."""

    def __init__(
        self, base_url: str, *, headers: Mapping[str, str] | None = None, timeout: float = 75.0
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise WireError(f"not an http(s) URL: {parts.scheme or '(no scheme)'}")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._https else 80)
        self._prefix = parts.path.rstrip("/")
        self._headers = dict(headers or {})
        self._timeout = timeout

    def request(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> Answer:
        headers = dict(self._headers)
        body = None
        if json is not None:
            body = jsonlib.dumps(json, separators=(",", ":")).encode()
            headers["Content-Type"] = "application/json"
        target = self._prefix + url + _query(params)
        connection = self._connect(self._timeout if timeout is None else timeout)
        try:
            connection.request(method, target, body=body, headers=headers)
            response = connection.getresponse()
            return Answer(response.status, response.read())
        except (OSError, http.client.HTTPException) as exc:
            raise WireError(_reason(exc)) from None
        finally:
            connection.close()

    def get(
        self, url: str, *, params: Mapping[str, Any] | None = None, timeout: float | None = None
    ) -> Answer:
        return self.request("GET", url, params=params, timeout=timeout)

    def _connect(self, timeout: float) -> http.client.HTTPConnection:
        if self._https:
            return http.client.HTTPSConnection(
                self._host, self._port, timeout=timeout, context=_tls()
            )
        return http.client.HTTPConnection(self._host, self._port, timeout=timeout)
