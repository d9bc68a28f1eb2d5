"""Which configured connector serves a host.

Hosts are compared after normalisation: lower-case, port dropped, one trailing dot
dropped, IDNA-encoded (``bücher.example`` → ``xn--bcher-kva.example``). An IP literal
only ever matches a configured domain that is the same IP, never a name or a wildcard.

Precedence, first rule that separates two candidates wins:

1. an exact domain beats a wildcard (``*.example.com`` matches ``a.example.com`` and
   ``a.b.example.com``, never ``example.com`` itself);
2. between wildcards, the longer suffix wins;
3. domains given explicitly in the connector's configuration beat a connector's default
   domains (so ``generic --domains api.stripe.com`` takes api.stripe.com over a stripe
   connector configured without domains);
4. otherwise the connector configured first wins.

A connector configured without domains serves its type's default domains, or, when it
has a ``base_url`` (GitHub Enterprise), the host of that URL.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from agentfirewall.connectors.registry import get_connector
from agentfirewall.errors import ConnectorError

__all__ = ["ConnectorRouter", "RoutedConnector", "normalize_host"]

_LABELS_RE = re.compile(
    r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)*"
)


@dataclass(frozen=True, slots=True)
class RoutedConnector:
    """One configured connector: its id, type, domains and optional upstream base URL."""

    id: str
    type: str
    domains: tuple[str, ...] = ()
    base_url: str | None = None


def normalize_host(host: str) -> str | None:
    """The comparable form of a Host value, or None when it is not a valid host."""
    host = host.strip()
    if host.startswith("["):
        end = host.find("]")
        return _ip(host[1:end]) if end > 0 else None
    if host.count(":") == 1:
        host = host.split(":", 1)[0]
    elif ":" in host:
        return _ip(host)
    host = host.lower()
    if host.endswith("."):
        host = host[:-1]
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    ip = _ip(host)
    if ip is not None:
        return ip
    return host if len(host) <= 253 and _LABELS_RE.fullmatch(host) else None


def _domain(pattern: str) -> str | None:
    """A configured domain: a host name or IP literal, no scheme, port or path."""
    if "/" in pattern or (":" in pattern and _ip(pattern.strip("[]")) is None):
        return None
    return normalize_host(pattern)


def _ip(text: str) -> str | None:
    try:
        return "ip:" + str(ipaddress.ip_address(text.split("%", 1)[0]))
    except ValueError:
        return None


class ConnectorRouter:
    """Maps a request host to one configured connector (see the module docstring)."""

    def __init__(self, connectors: Iterable[RoutedConnector]) -> None:
        self.connectors = tuple(connectors)
        self._exact: dict[str, tuple[tuple[int, int], RoutedConnector]] = {}
        wildcards: list[tuple[tuple[int, int, int], str, RoutedConnector]] = []
        for order, routed in enumerate(self.connectors):
            explicit, domains = _domains(routed)
            for domain in domains:
                pattern = domain.strip()
                wildcard = pattern.startswith("*.")
                host = _domain(pattern[2:] if wildcard else pattern)
                if host is None or (wildcard and host.startswith("ip:")):
                    raise ConnectorError(f"invalid domain `{domain[:200]}`", connector=routed.type)
                if wildcard:
                    wildcards.append(((-len(host), 0 if explicit else 1, order), host, routed))
                    continue
                rank = (0 if explicit else 1, order)
                if host not in self._exact or rank < self._exact[host][0]:
                    self._exact[host] = (rank, routed)
        wildcards.sort(key=lambda item: item[0])
        self._wildcards = tuple(("." + host, routed) for _, host, routed in wildcards)

    def match(self, host: str) -> RoutedConnector | None:
        """The connector for `host`, or None (deny: no connector, no access)."""
        name = normalize_host(host)
        if name is None:
            return None
        found = self._exact.get(name)
        if found is not None:
            return found[1]
        if name.startswith("ip:"):
            return None
        for suffix, routed in self._wildcards:
            if name.endswith(suffix):
                return routed
        return None


def _domains(routed: RoutedConnector) -> tuple[bool, tuple[str, ...]]:
    connector = get_connector(routed.type)
    if routed.domains:
        return True, tuple(routed.domains)
    if routed.base_url:
        host = urlsplit(routed.base_url).hostname
        if not host:
            raise ConnectorError(
                f"invalid base url `{routed.base_url[:200]}`", connector=routed.type
            )
        return True, (host,)
    return False, connector.default_domains
