"""Which frames on the isolated namespace's ``lo`` are a direct connection the namespace
refused. Pure: bytes in, a :class:`Blocked` (or None) out; never raises on any input.

Inside the namespace every address is local (``local default dev lo``), so a client that
ignores the proxy variables gets an answer from the kernel at once, and that answer is the
evidence counted here:

- TCP: the refusal of a SYN, an RST+ACK with sequence number 0, from the address dialled;
- UDP (a DNS lookup among them): ICMP / ICMPv6 "port unreachable", which quotes the datagram
  (for port 53 the queried name is read from the quote), past the IPv6 option headers it
  may carry (the agent can set none: a second line of defence).

The gateway bridge's ports accept, so they never answer with either.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

__all__ = [
    "IPV6_OPTION_HEADERS",
    "MAX_OPTION_HEADERS",
    "PACKET_OUTGOING",
    "Blocked",
    "parse_frame",
]

PACKET_OUTGOING = 4  # sll_pkttype: lo shows each packet twice, incoming and outgoing
_ETH_HEADER = 14
_IPV4, _IPV6 = 0x0800, 0x86DD
_TCP, _UDP, _ICMP, _ICMPV6 = 6, 17, 1, 58
_RST, _ACK = 0x04, 0x10
_MAX_NAME = 253
#: The IPv6 headers a datagram may carry before its UDP header: hop-by-hop, routing and
#: destination options (the ones a socket can be given), each (its length + 1) x 8 bytes.
IPV6_OPTION_HEADERS = (0, 43, 60)
#: As many as the kernel puts on one datagram: hop-by-hop, destination options, routing,
#: destination options; past that a quote is not counted.
MAX_OPTION_HEADERS = 4


@dataclass(frozen=True, slots=True)
class Blocked:
    """One direct connection attempt the namespace refused."""

    protocol: str  # "tcp", "udp" or "dns"
    host: str  # the address dialled
    port: int
    name: str | None = None  # the name looked up (DNS); None: no valid name

    @property
    def target(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def describe(self) -> str:
        if self.protocol == "dns":
            looked = (
                f"`{self.name}`" if self.name else "a malformed name or one over 253 characters"
            )
            return f"DNS lookup of {looked} (server {self.target})"
        return f"{self.protocol.upper()} connection to {self.target}"


def _ip(family: int, data: bytes, offset: int) -> tuple[int, str, str, int] | None:
    """(protocol, source, destination, payload offset) of the IP header at `offset`."""
    if family == 4:
        if len(data) < offset + 20 or data[offset] >> 4 != 4:
            return None
        header = (data[offset] & 0x0F) * 4
        if header < 20:
            return None
        src = str(ipaddress.IPv4Address(data[offset + 12 : offset + 16]))
        dst = str(ipaddress.IPv4Address(data[offset + 16 : offset + 20]))
        return data[offset + 9], src, dst, offset + header
    if len(data) < offset + 40 or data[offset] >> 4 != 6:
        return None
    src = str(ipaddress.IPv6Address(data[offset + 8 : offset + 24]))
    dst = str(ipaddress.IPv6Address(data[offset + 24 : offset + 40]))
    return data[offset + 6], src, dst, offset + 40


def _label(raw: bytes) -> str:
    """A label as `dig` writes it: each byte but printable ASCII (a dot and a backslash too)
    as ``\\DDD``, so no name holds a control character or a NUL (which no store takes)."""
    return "".join(chr(b) if 0x21 <= b <= 0x7E and b not in b".\\" else f"\\{b:03d}" for b in raw)


def _dns_name(payload: bytes) -> str | None:
    """The first question's name of a DNS query (no compression in a question we send); None
    when it is no name: cut short, a label over 63 bytes, or over 253 characters written out
    (255 bytes on the wire), which no resolver sends and no record holds."""
    labels: list[str] = []
    at, written = 12, -1
    while at < len(payload):
        length = payload[at]
        if length == 0:
            return ".".join(labels) or "."
        written += 1 + length
        if length > 63 or written > _MAX_NAME or at + 1 + length > len(payload):
            return None
        labels.append(_label(payload[at + 1 : at + 1 + length]))
        at += 1 + length
    return None


def _past_options(protocol: int, data: bytes, at: int) -> tuple[int, int]:
    """(protocol, offset) after the IPv6 option headers at `at` (the first of `protocol`)."""
    for _ in range(MAX_OPTION_HEADERS):
        if protocol not in IPV6_OPTION_HEADERS or len(data) < at + 2:
            break
        protocol, at = data[at], at + (data[at + 1] + 1) * 8
    return protocol, at


def _quoted_udp(family: int, data: bytes, offset: int) -> Blocked | None:
    """The datagram an ICMP "port unreachable" quotes, from its IP header at `offset`."""
    inner = _ip(family, data, offset)
    if inner is None:
        return None
    protocol, _, dst, at = inner
    if family == 6:
        protocol, at = _past_options(protocol, data, at)
    if protocol != _UDP or len(data) < at + 8:
        return None
    port = struct.unpack_from("!H", data, at + 2)[0]
    if port == 53:
        return Blocked("dns", dst, port, _dns_name(data[at + 8 :]))
    return Blocked("udp", dst, port)


def parse_frame(frame: bytes) -> Blocked | None:
    """The refused attempt this loopback frame (Ethernet header first) proves, if any."""
    if len(frame) < _ETH_HEADER:
        return None
    ethertype = struct.unpack_from("!H", frame, 12)[0]
    family = {_IPV4: 4, _IPV6: 6}.get(ethertype)
    if family is None:
        return None
    parsed = _ip(family, frame, _ETH_HEADER)
    if parsed is None:
        return None
    protocol, src, _dst, at = parsed
    if protocol == _TCP and len(frame) >= at + 14:
        port, _, seq = struct.unpack_from("!HHI", frame, at)
        flags = frame[at + 13]
        if flags & _RST and flags & _ACK and seq == 0:
            return Blocked("tcp", src, port)
        return None
    unreachable = (_ICMP, 3, 3) if family == 4 else (_ICMPV6, 1, 4)
    if protocol == unreachable[0] and frame[at : at + 2] == bytes(unreachable[1:]):
        return _quoted_udp(family, frame, at + 8)
    return None
