"""The outbound address guard: which addresses an action's own target may reach (SSRF).

`refusal(addr)` names why an address is refused, or returns None for a public one. The rule,
one table below, follows the IANA IPv4 and IPv6 Special-Purpose Address Registries:

- a special-purpose range is refused unless IANA marks it globally reachable (the anycast
  and AS112 service ranges are: they are public Internet addresses, so they pass);
- multicast (224.0.0.0/4, ff00::/8), the limited broadcast, the reserved 240.0.0.0/4 and
  every IPv6 address outside global unicast 2000::/3 are refused;
- an IPv6 address that embeds an IPv4 address (IPv4-mapped ``::ffff:0:0/96``, NAT64
  ``64:ff9b::/96`` and the local-use ``64:ff9b:1::/48``, 6to4 ``2002::/16``, Teredo
  ``2001::/32`` with its server and client addresses) is judged by the IPv4 addresses it
  embeds, so ``64:ff9b::7f00:1`` is loopback; the deprecated IPv4-compatible ``::/96`` is
  refused whatever it embeds (no stack routes it).

`check_target` resolves a host and refuses it when any address is refused, unless
``AGENTFIREWALL_WEBHOOK_ALLOW_HOSTS`` names the host or a network holding the address.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Literal

from agentfirewall_server.web import ApiError

__all__ = ["RANGES", "IPAddress", "check_target", "embedded_ipv4", "refusal"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
#: "public": globally reachable; "refuse"; "embeds": judged by the IPv4 address inside.
Verdict = Literal["public", "refuse", "embeds"]

_TABLE: tuple[tuple[str, str, Verdict], ...] = (
    # IANA IPv4 Special-Purpose Address Registry
    ("0.0.0.0/8", "this network", "refuse"),
    ("0.0.0.0/32", "unspecified", "refuse"),
    ("10.0.0.0/8", "private-use", "refuse"),
    ("100.64.0.0/10", "shared address space", "refuse"),
    ("127.0.0.0/8", "loopback", "refuse"),
    ("169.254.0.0/16", "link-local", "refuse"),
    ("172.16.0.0/12", "private-use", "refuse"),
    ("192.0.0.0/24", "ietf protocol assignments", "refuse"),
    ("192.0.0.0/29", "ipv4 service continuity prefix", "refuse"),
    ("192.0.0.8/32", "ipv4 dummy address", "refuse"),
    ("192.0.0.9/32", "port control protocol anycast", "public"),
    ("192.0.0.10/32", "traversal using relays around nat anycast", "public"),
    ("192.0.0.170/31", "nat64/dns64 discovery", "refuse"),
    ("192.0.2.0/24", "documentation (test-net-1)", "refuse"),
    ("192.31.196.0/24", "as112-v4", "public"),
    ("192.52.193.0/24", "automatic multicast tunneling", "public"),
    ("192.88.99.0/24", "deprecated 6to4 relay anycast", "refuse"),
    ("192.168.0.0/16", "private-use", "refuse"),
    ("192.175.48.0/24", "direct delegation as112 service", "public"),
    ("198.18.0.0/15", "benchmarking", "refuse"),
    ("198.51.100.0/24", "documentation (test-net-2)", "refuse"),
    ("203.0.113.0/24", "documentation (test-net-3)", "refuse"),
    ("224.0.0.0/4", "multicast", "refuse"),
    ("240.0.0.0/4", "reserved", "refuse"),
    ("255.255.255.255/32", "limited broadcast", "refuse"),
    # IANA IPv6 Special-Purpose Address Registry (and the address space outside 2000::/3)
    ("::/0", "reserved (outside global unicast 2000::/3)", "refuse"),
    ("2000::/3", "global unicast", "public"),
    ("::/128", "unspecified", "refuse"),
    ("::1/128", "loopback", "refuse"),
    ("::/96", "deprecated ipv4-compatible", "refuse"),
    ("::ffff:0:0/96", "ipv4-mapped", "embeds"),
    ("64:ff9b::/96", "nat64 well-known prefix", "embeds"),
    ("64:ff9b:1::/48", "local-use nat64 prefix", "embeds"),
    ("100::/64", "discard-only", "refuse"),
    ("100:0:0:1::/64", "dummy ipv6 prefix", "refuse"),
    ("2001::/23", "ietf protocol assignments", "refuse"),
    ("2001::/32", "teredo", "embeds"),
    ("2001:1::1/128", "port control protocol anycast", "public"),
    ("2001:1::2/128", "traversal using relays around nat anycast", "public"),
    ("2001:1::3/128", "dns-sd service registration protocol anycast", "public"),
    ("2001:2::/48", "benchmarking", "refuse"),
    ("2001:3::/32", "automatic multicast tunneling", "public"),
    ("2001:4:112::/48", "as112-v6", "public"),
    ("2001:10::/28", "deprecated orchid", "refuse"),
    ("2001:20::/28", "orchidv2", "public"),
    ("2001:30::/28", "drone remote id", "public"),
    ("2001:db8::/32", "documentation", "refuse"),
    ("2002::/16", "6to4", "embeds"),
    ("2620:4f:8000::/48", "direct delegation as112 service", "public"),
    ("3fff::/20", "documentation", "refuse"),
    ("5f00::/16", "segment routing (srv6) sids", "refuse"),
    ("fc00::/7", "unique-local", "refuse"),
    ("fe80::/10", "link-local", "refuse"),
    ("fec0::/10", "deprecated site-local", "refuse"),
    ("ff00::/8", "multicast", "refuse"),
)

#: (network, name, verdict), most specific first: the first match decides.
RANGES: tuple[tuple[Network, str, Verdict], ...] = tuple(
    sorted(
        ((ipaddress.ip_network(net), name, verdict) for net, name, verdict in _TABLE),
        key=lambda row: -row[0].prefixlen,
    )
)


def _match(addr: IPAddress) -> tuple[Network, str, Verdict] | None:
    for row in RANGES:
        if row[0].version == addr.version and addr in row[0]:
            return row
    return None


def embedded_ipv4(addr: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address embeds (RFC 4291, 6052, 3056, 4380), else []."""
    value = int(addr)
    if addr in _MAPPED or addr in _NAT64 or addr in _COMPATIBLE:
        return [ipaddress.IPv4Address(value & 0xFFFFFFFF)]
    if addr in _LOCAL_NAT64:  # RFC 6052 /48: bits 48-63 and 72-87, the u octet between
        high = (value >> 64) & 0xFFFF
        low = (value >> 40) & 0xFFFF
        return [ipaddress.IPv4Address((high << 16) | low)]
    if addr in _SIX_TO_FOUR:
        return [ipaddress.IPv4Address((value >> 80) & 0xFFFFFFFF)]
    if addr in _TEREDO:  # the server, and the client stored bit-inverted
        server = (value >> 64) & 0xFFFFFFFF
        client = ~value & 0xFFFFFFFF
        return [ipaddress.IPv4Address(server), ipaddress.IPv4Address(client)]
    return []


_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_LOCAL_NAT64 = ipaddress.IPv6Network("64:ff9b:1::/48")
_SIX_TO_FOUR = ipaddress.IPv6Network("2002::/16")
_TEREDO = ipaddress.IPv6Network("2001::/32")
_COMPATIBLE = ipaddress.IPv6Network("::/96")


def refusal(addr: IPAddress) -> str | None:
    """Why `addr` may not be reached (``loopback 127.0.0.0/8``), or None when it is public."""
    found = _match(addr)
    if found is None:
        return None
    network, name, verdict = found
    if verdict == "public":
        return None
    if verdict == "refuse" and network != _COMPATIBLE:
        return f"{name} {network}"
    assert isinstance(addr, ipaddress.IPv6Address)
    for inner in embedded_ipv4(addr):
        why = refusal(inner)
        if why is not None:
            return f"{why} embedded in {name} {network}"
    if verdict == "refuse":  # IPv4-compatible with a public IPv4: still never routed
        return f"{name} {network}"
    return None


def _allowed(host: str, addr: IPAddress | None, allow: list[str]) -> bool:
    for entry in allow:
        if entry == host.lower():
            return True
        if addr is not None:
            try:
                if addr in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                continue
    return False


async def check_target(host: str, port: int, allow: list[str]) -> IPAddress | None:
    """The address to connect to, or ApiError when any address of `host` is refused."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise ApiError(
            502, f"cannot resolve `{host}`", code="upstream_unreachable", retryable=True
        ) from None
    addrs = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    for addr in addrs:
        why = refusal(addr)
        if why is not None and not _allowed(host, addr, allow):
            raise ApiError(
                422,
                f"target `{host}` resolves to the non-public address `{addr}` ({why}): "
                "refused (SSRF protection); permit it with AGENTFIREWALL_WEBHOOK_ALLOW_HOSTS",
                code="target_refused",
            )
    return addrs[0] if addrs else None
