"""The data a connector reads and writes: requests, parsed actions, catalogue rows.

All three are frozen slotted dataclasses: they sit on the proxy's hot path.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from agentfirewall.actions import ActionSpec, Risk
from agentfirewall.errors import ConnectorError

__all__ = ["ActionInfo", "HttpRequest", "ParsedAction", "risk_rank"]

_DEFAULT_PORTS = {"http": 80, "https": 443}
_RISK_RANK: dict[str, int] = {"low": 0, "medium": 1, "high": 2}


def risk_rank(risk: Risk) -> int:
    """0 for low, 1 for medium, 2 for high: lets callers take the max of risks."""
    return _RISK_RANK[risk]


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
        parts = urlsplit(url)
        if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
            raise ConnectorError(f"invalid url `{url}`: expected http:// or https:// and a host")
        try:
            port = parts.port
        except ValueError:
            raise ConnectorError(f"invalid url `{url}`: bad port") from None
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
    #: Further actions the same request performs (a GraphQL document with several
    #: mutations). `spec` is the riskiest; the gateway decides each of these too and the
    #: strictest outcome wins, so every one of them must be allowed. Usually empty.
    also: tuple[ParsedAction, ...] = ()
