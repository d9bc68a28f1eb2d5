"""Where a connector's credential may travel: the scheme and port of the upstream.

One rule for every path that injects a credential (the gateway's plain ``http://``
requests, SDK Mode A execution): pure, data in, (scheme, port) out or
:class:`UpstreamRefused`.

- A credential never travels in cleartext. The connector's upstream is TLS when its
  ``base_url`` (or its type's, e.g. ``https://api.github.com``) says https: a plain request
  is upgraded (port 80 becomes 443, or the base URL's own port for its host). A
  ``base_url`` configured as ``http://`` is an admin's declaration of a plain service on its
  port (80 when it names none): plain it stays, on that port only; a credential is never
  sent in cleartext to another port of the host (another service: Redis on 6379). A
  connector with no TLS upstream known goes plain only when it injects nothing; with a
  credential it is refused (``cleartext_refused``).
- Over TLS, a credential goes only to the connector's TLS port for the host: the base URL's
  own port for its host, else 443 (``port_refused``: another port is another service).

A connector injecting nothing goes as asked: there is nothing to protect.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from agentfirewall.connectors.router import normalize_host
from agentfirewall.errors import ConnectorError

__all__ = ["UpstreamRefused", "credential_upstream"]


class UpstreamRefused(ConnectorError):
    """A request that would carry a credential where it must not go; `code` says why:
    ``cleartext_refused`` (plain http) or ``port_refused`` (TLS to another port)."""

    def __init__(self, message: str, *, code: str, connector: str | None = None) -> None:
        super().__init__(message, connector=connector)
        self.code = code


def _same_host(a: str | None, b: str) -> bool:
    if not a:
        return False
    first, second = normalize_host(a), normalize_host(b)
    return first is not None and first == second


def credential_upstream(
    scheme: str,
    host: str,
    port: int,
    *,
    declared: str | None,
    default: str | None,
    credential: bool,
    name: str,
) -> tuple[str, int]:
    """(scheme, port) upstream for a `scheme` request to `host`:`port` routed to connector
    `name`: its `declared` ``base_url`` (the admin's), else its type's `default`; whether it
    injects a `credential`. :class:`UpstreamRefused` when the credential must not go there
    (see the module docstring)."""
    base = urlsplit(declared or default or "")
    base_scheme = base.scheme.lower()
    own = _same_host(base.hostname, host)
    if scheme.lower() != "http":  # TLS: only to the connector's TLS port for the host
        tls_port = (base.port or 443) if base_scheme == "https" and own else 443
        if port == tls_port or not credential:
            return "https", port
        raise UpstreamRefused(
            f"`https://{host}:{port}` goes to connector `{name}` whose TLS upstream for "
            f"`{host}` is on port {tls_port}: its credential goes to no other port (an admin "
            f"declares another with the connector's base_url, `https://{host}:{port}`)",
            code="port_refused",
        )
    if declared and base_scheme == "http":
        if port == (base.port or 80) or not credential:
            return "http", port
        raise UpstreamRefused(
            f"`http://{host}:{port}` goes to connector `{name}` whose plain upstream "
            f"is declared on port {base.port or 80} only: its credential goes to no other port",
            code="cleartext_refused",
        )
    if base_scheme == "https":
        if own:
            return "https", base.port or 443
        if port == 80:
            return "https", 443
        raise UpstreamRefused(
            f"`http://{host}:{port}` goes to connector `{name}` whose upstream is "
            f"TLS on an unknown port: use https://",
            code="cleartext_refused",
        )
    if not credential:
        return "http", port
    raise UpstreamRefused(
        f"connector `{name}` injects a credential and declares no TLS upstream: "
        "it is never sent over plain http (use https://, or an admin sets the connector's "
        "base_url to https://... or, for a plain internal host, http://...)",
        code="cleartext_refused",
    )
