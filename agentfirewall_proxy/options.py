"""Gateway options: what ``python -m agentfirewall_proxy`` takes, as one frozen dataclass."""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "MAX_CONFIG_AGE_HELP",
    "Options",
    "max_config_age_problem",
    "parse_listen",
    "parse_port_range",
    "parse_resolve",
    "shown_url",
    "shown_urls",
]

#: ``--max-config-age``, the gateway's and ``tf mcp wrap``'s: past it, fail closed.
MAX_CONFIG_AGE_HELP = (
    "seconds without word from the control plane after which every request is refused "
    "until it answers again; 0: no bound (default %(default)s)"
)


def max_config_age_problem(seconds: float) -> str | None:
    """Why ``--max-config-age`` cannot be `seconds` (None: it can)."""
    if seconds >= 0:  # (NaN is not)
        return None
    return "--max-config-age must be 0 (no bound) or a positive number of seconds"


@dataclass(frozen=True)
class Options:
    control_plane: str | None = None
    token: str | None = None
    listen_host: str = "127.0.0.1"
    listen_port: int = 8443
    #: Already listening (``tf up`` binds them as it chooses the port, one per address):
    #: served as they are.
    listen_sockets: tuple[socket.socket, ...] = ()
    ca_dir: Path = Path(".tf")
    #: ``(host, port or None) -> (ip, port)``: point real hostnames at local servers.
    resolve: dict[tuple[str, int | None], tuple[str, int]] = field(default_factory=dict)
    upstream_ca: Path | None = None
    upstream_proxy: str | None = None
    passthrough: tuple[str, ...] = ()
    config_file: Path | None = None
    agent_ports: tuple[int, int] | None = None
    gateway_id: str | None = None
    #: Seconds a client may take to send a whole request head (slowloris guard).
    header_timeout: float = 10.0
    #: Seconds an idle keep-alive client connection is kept.
    idle_timeout: float = 60.0
    #: Seconds one body read or one blocked write to a client may take.
    io_timeout: float = 60.0
    #: Seconds to connect to an upstream (TCP + TLS).
    connect_timeout: float = 10.0
    #: Seconds to wait for an upstream's response head.
    upstream_timeout: float = 300.0
    max_head_bytes: int = 65536
    #: Request body bytes read and inspected before deciding (and bound by an approval);
    #: a decision that depends on a body beyond it fails closed.
    body_inspect_limit: int = 16 * 1024 * 1024
    #: Idle pooled upstream connections kept per (scheme, host, port).
    pool_size: int = 64
    traffic_batch: int = 200
    traffic_interval: float = 1.0
    heartbeat_interval: float = 10.0
    #: Long-poll wait asked of the control plane for config changes.
    config_wait: float = 25.0
    #: Seconds without word from the control plane after which every request is refused
    #: (503) until it answers again: its config may miss a kill switch. 0: no bound.
    max_config_age: float = 60.0
    access_log: bool = False
    #: ``json``: the access log and the gateway's messages as JSON lines with trace ids.
    log_format: str = "text"
    #: OTLP/HTTP collector for traces (else ``OTEL_EXPORTER_OTLP_ENDPOINT``; neither: off).
    otlp_endpoint: str | None = None


#: A URL's scheme, as far as it is written (`http://`), when it is.
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def shown_url(url: str) -> str:
    """`url` for a message, its password shown as `***`: everything between the user name
    (up to its first `:`) and the URL's last `@`, so that a password holding `@`, `/` or
    `:`, and a URL too mistyped to parse (`corp:PASSWORD@proxy:3128`), are masked too."""
    scheme = _SCHEME.match(url)
    start, at = (scheme.end() if scheme else 0), url.rfind("@")
    user, colon, _ = url[start:at].partition(":") if at >= start else ("", "", "")
    return f"{url[:start]}{user}:***{url[at:]}" if colon else url


#: A URL written in a message: from its scheme to the next space or quote.
_URL_IN_TEXT = re.compile(r"""[A-Za-z][A-Za-z0-9+.-]*://[^\s`'"<>]*""")


def shown_urls(text: str) -> str:
    """`text` (a message) with the password of each URL in it shown as `***`
    (:func:`shown_url`): what ``tf`` prints as an error or a warning."""
    if "://" not in text:
        return text
    return _URL_IN_TEXT.sub(lambda found: shown_url(found[0]), text)


def parse_listen(value: str) -> tuple[str, int]:
    """``127.0.0.1:8443`` / ``:8443`` / ``8443`` -> (host, port); port 0 is any free one."""
    host, sep, port = value.rpartition(":")
    if not sep:
        host, port = "127.0.0.1", value
    number = _port(port)
    if number is None:  # (not wrapped: the event loop would take 99999 as 34463)
        raise ValueError(
            f"invalid listen address `{value}`: expected HOST:PORT with a port from 0 "
            "(any free one) to 65535"
        )
    return (host.strip("[]") or "127.0.0.1"), number


def _port(text: str) -> int | None:
    """`text` as a TCP port number (0-65535), else None."""
    return int(text) if text.isascii() and text.isdigit() and int(text) < 65536 else None


def parse_resolve(entries: list[str]) -> dict[tuple[str, int | None], tuple[str, int]]:
    """``api.github.com=127.0.0.1:9443`` or ``api.github.com:80=127.0.0.1:9080``."""
    mapping: dict[tuple[str, int | None], tuple[str, int]] = {}
    for entry in entries:
        name, sep, target = entry.partition("=")
        ip, colon, port = target.rpartition(":")
        number = _port(port)
        if not sep or not colon or not number:
            raise ValueError(f"invalid resolve entry `{entry}`: expected HOST[:PORT]=IP:PORT")
        host, hcolon, hport = name.rpartition(":")
        key = (host.lower(), int(hport)) if hcolon and hport.isdigit() else (name.lower(), None)
        mapping[key] = (ip.strip("[]"), number)
    return mapping


def parse_port_range(value: str) -> tuple[int, int]:
    """``10001-10100`` -> (10001, 10100)."""
    low, _, high = value.partition("-")
    try:
        first, last = int(low), int(high or low)
    except ValueError:
        raise ValueError(f"invalid port range `{value}`: expected FIRST-LAST") from None
    if not 0 < first <= last < 65536:
        raise ValueError(f"invalid port range `{value}`: expected FIRST-LAST within 1-65535")
    return first, last
