"""The data a connector reads and writes: requests, parsed actions, catalogue rows.

All three are frozen slotted dataclasses: they sit on the proxy's hot path.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from agentfirewall.actions import ActionSpec, Risk
from agentfirewall.errors import ConnectorError
from agentfirewall.jsonlimits import printable

__all__ = ["ActionInfo", "HttpRequest", "ParsedAction", "risk_rank"]

_DEFAULT_PORTS = {"http": 80, "https": 443}
_RISK_RANK: dict[str, int] = {"low": 0, "medium": 1, "high": 2}


def risk_rank(risk: Risk) -> int:
    """0 for low, 1 for medium, 2 for high: lets callers take the max of risks."""
    return _RISK_RANK[risk]


_HOST_NAME = re.compile(
    r"(?=.{1,253}\.?$)[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
    r"(?:\.[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)*\.?"
)


def _valid_host(host: str) -> bool:
    """An IP literal or a DNS name (IDNA labels of at most 63 characters)."""
    try:
        ipaddress.ip_address(host.partition("%")[0])
        return True
    except ValueError:
        pass
    try:
        name = host.encode("idna").decode("ascii")
    except UnicodeError:
        return False
    return _HOST_NAME.fullmatch(name.lower()) is not None


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """One HTTP request as the proxy saw it (or as a connector built it).

    `path` is raw (percent-escapes kept) and `query` is the raw text after ``?``.
    `body` may be only a prefix of the real body: `body_complete` says whether it is whole.
    """

    method: str
    scheme: str
    host: str
    port: int | None = None
    path: str = "/"
    query: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    body_complete: bool = True

    @classmethod
    def from_url(
        cls,
        method: str,
        url: str,
        *,
        headers: tuple[tuple[str, str], ...] = (),
        body: bytes = b"",
        body_complete: bool = True,
    ) -> HttpRequest:
        """Split an absolute http(s) URL into a request."""
        shown = printable(url)
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:  # `http://[::1/`, port 99999, a port that is not a number
            raise ConnectorError(f"invalid url `{shown}`: {exc}".lower()) from None
        if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
            raise ConnectorError(f"invalid url `{shown}`: expected http:// or https:// and a host")
        if port == 0:
            raise ConnectorError(f"invalid url `{shown}`: port 0")
        if not _valid_host(parts.hostname):
            raise ConnectorError(
                f"invalid url `{shown}`: `{printable(parts.hostname)}` is no host name"
            )
        return cls(
            method=method,
            scheme=parts.scheme,
            host=parts.hostname,
            port=port,
            path=parts.path or "/",
            query=parts.query,
            headers=headers,
            body=body,
            body_complete=body_complete,
        )

    def header(self, name: str) -> str | None:
        """The first value of header `name` (case-insensitive), else None."""
        wanted = name.lower()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value
        return None

    @property
    def url(self) -> str:
        """The absolute URL (default ports left out)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = "" if self.port in (None, _DEFAULT_PORTS.get(self.scheme)) else f":{self.port}"
        query = f"?{self.query}" if self.query else ""
        return f"{self.scheme}://{host}{port}{self.path}{query}"


@dataclass(frozen=True, slots=True)
class ParsedAction:
    """What a request does: the action spec, its static risk and where it came from.

    `route` is the matched path template (``/repos/{owner}/{repo}/pulls/{pull_number:int}``),
    ``"fallback"`` when the connector knows the domain but no route matched, ``"jsonrpc"``
    for MCP and ``"*"`` for the method-named connectors (webhook, generic).
    """

    spec: ActionSpec
    risk: Risk
    connector: str
    route: str
    #: Further actions the same request performs (a GraphQL document with several
    #: mutations). `spec` is the riskiest; the gateway decides each of these too and the
    #: strictest outcome wins, so every one of them must be allowed. Usually empty.
    also: tuple[ParsedAction, ...] = ()

    @property
    def action_type(self) -> str:
        """Shorthand for ``spec.type``."""
        return self.spec.type


@dataclass(frozen=True, slots=True)
class ActionInfo:
    """One row of the connector catalogue."""

    type: str
    method: str
    path: str
    risk: Risk
    description: str
