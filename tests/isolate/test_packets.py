# ruff: noqa: E501  (frames and scripts are tables, one per line)
"""Which loopback frames count as a refused direct connection: a table of frames built the
way the kernel sends them, and any bytes at all never raise."""

from __future__ import annotations

import ipaddress
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentfirewall_proxy.isolate.packets import Blocked, parse_frame

ETH_V4 = b"\x00" * 12 + b"\x08\x00"
ETH_V6 = b"\x00" * 12 + b"\x86\xdd"


def ipv4(proto: int, src: str, dst: str, payload: bytes) -> bytes:
    header = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0, 64, proto, 0,
        ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed,
    )  # fmt: skip
    return header + payload


def ipv6(proto: int, src: str, dst: str, payload: bytes) -> bytes:
    header = struct.pack("!IHBB", 6 << 28, len(payload), proto, 64)
    return header + ipaddress.IPv6Address(src).packed + ipaddress.IPv6Address(dst).packed + payload


def tcp(sport: int, dport: int, seq: int, flags: int) -> bytes:
    return struct.pack("!HHIIBBHHH", sport, dport, seq, 1, 5 << 4, flags, 0, 0, 0)


def udp(sport: int, dport: int, payload: bytes) -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def dns_query(name: str) -> bytes:
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split("."))
    return struct.pack("!HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0) + labels + b"\x00\x00\x01\x00\x01"


RST_ACK, SYN_ACK, RST = 0x14, 0x12, 0x04
QUERY_V4 = ipv4(17, "127.0.0.1", "10.255.255.53", udp(5353, 53, dns_query("api.github.com")))
QUERY_V6 = ipv6(17, "::1", "2001:db8::53", udp(5353, 53, dns_query("example.org")))

TABLE = [
    # the refusal of a SYN: RST+ACK, sequence 0, from the address dialled
    ("tcp refused", ETH_V4 + ipv4(6, "1.2.3.4", "1.2.3.4", tcp(443, 40000, 0, RST_ACK)),
     Blocked("tcp", "1.2.3.4", 443)),
    ("tcp6 refused", ETH_V6 + ipv6(6, "2001:db8::1", "::1", tcp(80, 40000, 0, RST_ACK)),
     Blocked("tcp", "2001:db8::1", 80)),
    ("accepted (the bridge)", ETH_V4 + ipv4(6, "127.0.0.1", "127.0.0.1", tcp(8443, 40000, 7, SYN_ACK)), None),
    ("reset of a live connection", ETH_V4 + ipv4(6, "127.0.0.1", "127.0.0.1", tcp(8443, 40000, 99, RST_ACK)), None),
    ("bare reset", ETH_V4 + ipv4(6, "127.0.0.1", "127.0.0.1", tcp(8443, 40000, 0, RST)), None),
    ("dns port unreachable", ETH_V4 + ipv4(1, "127.0.0.1", "127.0.0.1", bytes([3, 3, 0, 0, 0, 0, 0, 0]) + QUERY_V4),
     Blocked("dns", "10.255.255.53", 53, "api.github.com")),
    ("dns6 port unreachable", ETH_V6 + ipv6(58, "::1", "::1", bytes([1, 4, 0, 0, 0, 0, 0, 0]) + QUERY_V6),
     Blocked("dns", "2001:db8::53", 53, "example.org")),
    ("udp port unreachable",
     ETH_V4 + ipv4(1, "127.0.0.1", "127.0.0.1", bytes([3, 3, 0, 0, 0, 0, 0, 0]) + ipv4(17, "127.0.0.1", "9.9.9.9", udp(1, 123, b"x"))),
     Blocked("udp", "9.9.9.9", 123)),
    ("icmp echo", ETH_V4 + ipv4(1, "127.0.0.1", "127.0.0.1", bytes([8, 0, 0, 0, 0, 0, 0, 0])), None),
    ("truncated quote", ETH_V4 + ipv4(1, "127.0.0.1", "127.0.0.1", bytes([3, 3, 0, 0, 0, 0, 0, 0]) + QUERY_V4[:24]), None),
    ("arp", b"\x00" * 12 + b"\x08\x06" + b"\x00" * 28, None),
    ("short", b"\x00" * 10, None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("frame", "expected"), [(f, e) for _, f, e in TABLE], ids=[n for n, _, _ in TABLE]
)
def test_frame_table(frame: bytes, expected: Blocked | None) -> None:
    assert parse_frame(frame) == expected


def test_descriptions_name_the_target() -> None:
    assert Blocked("tcp", "2001:db8::1", 80).describe() == "TCP connection to [2001:db8::1]:80"
    dns = Blocked("dns", "10.0.0.2", 53, "api.github.com")
    assert dns.describe() == "DNS lookup of `api.github.com` (server 10.0.0.2:53)"


@given(st.binary(max_size=200))
def test_any_bytes_never_raise(frame: bytes) -> None:
    parse_frame(frame)


@given(st.binary(max_size=120), st.sampled_from([ETH_V4 + bytes([0x45]), ETH_V6 + bytes([0x60])]))
def test_any_ip_payload_never_raises(rest: bytes, head: bytes) -> None:
    parse_frame(head + rest)
