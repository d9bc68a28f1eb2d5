# ruff: noqa: E501  (frames and scripts are tables, one per line)
"""Which loopback frames count as a refused direct connection: a table of frames built the
way the kernel sends them, and any bytes at all never raise; the packet counter's socket
filter (run by the kernel) keeps exactly the frames the table counts, and every record made
of a frame is one the control plane accepts (an agent cannot get its attempts refused)."""

from __future__ import annotations

import ipaddress
import json
import os
import struct
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentfirewall_proxy.isolate.bridge import start_sandbox
from agentfirewall_proxy.isolate.packets import Blocked, parse_frame
from agentfirewall_proxy.isolate.report import traffic_record
from agentfirewall_server.routes.gateway import TrafficBatch
from agentfirewall_server.web import parse_model
from tests.isolate.conftest import needs_isolation

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


def dns_query(name: str | list[bytes]) -> bytes:
    parts = [p.encode() for p in name.split(".")] if isinstance(name, str) else name
    labels = b"".join(bytes([len(p)]) + p for p in parts)
    return struct.pack("!HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0) + labels + b"\x00\x00\x01\x00\x01"


def dns_refused(query: bytes, family: int = 4) -> bytes:
    """The ICMP port unreachable the namespace answers a DNS query with (ICMPv6 for 6)."""
    if family == 6:
        quoted = ipv6(17, "::1", "2001:db8::53", udp(5353, 53, query))
        return ETH_V6 + ipv6(58, "::1", "::1", bytes([1, 4, 0, 0, 0, 0, 0, 0]) + quoted)
    quoted = ipv4(17, "127.0.0.1", "10.9.9.9", udp(5353, 53, query))
    return ETH_V4 + ipv4(1, "127.0.0.1", "127.0.0.1", bytes([3, 3, 0, 0, 0, 0, 0, 0]) + quoted)


def option_headers(payload: bytes, *headers: tuple[int, int]) -> tuple[int, bytes]:
    """(the first header's number, `headers` then `payload`): IPv6 option headers, each
    (number, length in 8-byte units past the first 8), carrying UDP."""
    numbers = [number for number, _ in headers] + [17]
    out = b"".join(
        bytes([numbers[i + 1], units]) + bytes(6 + 8 * units)
        for i, (_, units) in enumerate(headers)
    )
    return numbers[0], out + payload


def unreachable6(first: int, quoted: bytes) -> bytes:
    """The ICMPv6 port unreachable quoting a datagram to 2001:db8::53 with headers `quoted`."""
    inner = ipv6(first, "::1", "2001:db8::53", quoted)
    return ETH_V6 + ipv6(58, "::1", "::1", bytes([1, 4, 0, 0, 0, 0, 0, 0]) + inner)


RST_ACK, SYN_ACK, RST = 0x14, 0x12, 0x04
QUERY_V4 = ipv4(17, "127.0.0.1", "10.255.255.53", udp(5353, 53, dns_query("api.github.com")))
QUERY_V6 = ipv6(17, "::1", "2001:db8::53", udp(5353, 53, dns_query("example.org")))
# The longest name there is: 253 characters, 255 bytes on the wire
LONGEST = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61])
# probe_3's: 6 labels of 63 (383 characters), over the server's 300 for a record's host
TOO_LONG = [b"a" * 63] * 6

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
    ("dns name of 253 characters", dns_refused(dns_query(LONGEST), 6),
     Blocked("dns", "2001:db8::53", 53, LONGEST)),
    ("dns name of 254 characters", dns_refused(dns_query(LONGEST + "d")), Blocked("dns", "10.9.9.9", 53, None)),
    ("dns name of 6 x 63 characters", dns_refused(dns_query(TOO_LONG)), Blocked("dns", "10.9.9.9", 53, None)),
    ("dns name with control bytes and a NUL", dns_refused(dns_query([b"\x1b]0;x\x07\n", b"a\x00.b"])),
     Blocked("dns", "10.9.9.9", 53, "\\027]0;x\\007\\010.a\\000\\046b")),
    # IPv6 option headers before the quoted UDP header: routing (43, a segment-routing header
    # of one segment), destination options (60), hop-by-hop (0), as many as a kernel puts on
    # one datagram; a fifth, or one cut short, is not followed
    ("dns6 after a routing header", unreachable6(*option_headers(udp(5353, 53, dns_query("a.example")), (43, 2))),
     Blocked("dns", "2001:db8::53", 53, "a.example")),
    ("udp6 after destination options", unreachable6(*option_headers(udp(5353, 9, b"x"), (60, 0))),
     Blocked("udp", "2001:db8::53", 9)),
    ("udp6 after four option headers", unreachable6(*option_headers(udp(5353, 9, b"x"), (0, 0), (60, 1), (43, 2), (60, 0))),
     Blocked("udp", "2001:db8::53", 9)),
    ("udp6 after five option headers", unreachable6(*option_headers(udp(5353, 9, b"x"), (0, 0), (60, 0), (60, 0), (43, 2), (60, 0))), None),
    ("udp6 option header cut short", unreachable6(*option_headers(udp(5353, 9, b"x"), (60, 2)))[:-24], None),
    ("tcp6 quoted", unreachable6(6, tcp(5353, 443, 0, 0x02)), None),
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
    invalid = Blocked("dns", "10.0.0.2", 53, None)
    assert invalid.describe() == (
        "DNS lookup of a malformed name or one over 253 characters (server 10.0.0.2:53)"
    )


@given(st.binary(max_size=200))
def test_any_bytes_never_raise(frame: bytes) -> None:
    parse_frame(frame)


@given(st.binary(max_size=120), st.sampled_from([ETH_V4 + bytes([0x45]), ETH_V6 + bytes([0x60])]))
def test_any_ip_payload_never_raises(rest: bytes, head: bytes) -> None:
    parse_frame(head + rest)


AGENT_NAMES = st.text(st.characters(blacklist_characters="\x00"), min_size=1, max_size=300)


@given(st.lists(st.binary(min_size=1, max_size=63), min_size=1, max_size=8), AGENT_NAMES)
def test_every_record_is_one_the_control_plane_accepts(labels: list[bytes], agent: str) -> None:
    """Whatever name the agent asks for: a record the server refused would take the records
    sent with it along (the whole batch is refused)."""
    blocked = parse_frame(dns_refused(dns_query(labels)))
    assert blocked is not None
    record = traffic_record(agent, blocked, "3f9c0a12", 1)
    parse_model(json.dumps({"records": [record]}).encode(), TrafficBatch)  # the server's


FILTERED = """
import json, os, socket, sys
from agentfirewall_proxy.isolate import kernel
try:
    if os.geteuid() == 0:
        kernel.unshare(kernel.CLONE_NEWNET)
    else:
        kernel.unshare(kernel.CLONE_NEWUSER | kernel.CLONE_NEWNET)
        kernel.map_current_user(os.geteuid(), os.getegid())
except OSError as exc:
    print(json.dumps({"refused": str(exc)}))
    sys.exit(0)
kernel.loopback_up()
counter = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
kernel.attach_socket_filter(counter, kernel.refusal_frames_filter(), 1 << 20)
counter.bind(("lo", 3))
sender = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
sender.bind(("lo", 3))
for frame in json.loads(sys.stdin.read()):
    if len(frame) >= 28:  # lo takes no shorter frame
        sender.send(bytes.fromhex(frame))
counter.setblocking(False)
kept = []
while True:
    try:
        kept.append(counter.recv(65535).hex())
    except BlockingIOError:
        break
print(json.dumps({"kept": kept, "drops": kernel.packet_drops(counter)}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="packet sockets are Linux's")
def test_the_counters_socket_filter_keeps_exactly_the_frames_counted() -> None:
    """The kernel runs the filter: what reaches the counter is what `parse_frame` counts (the
    bridge's traffic and the rest never fill its queue), cut short enough to keep the name."""
    frames = [frame for _, frame, _ in TABLE]
    done = subprocess.run(
        [sys.executable, "-c", FILTERED], input=json.dumps([f.hex() for f in frames]),
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    result = json.loads(done.stdout)
    if "refused" in result:
        pytest.skip(f"no network namespace here: {result['refused']}")
    kept = [parse_frame(bytes.fromhex(frame)) for frame in result["kept"]]
    assert kept == [expected for _, _, expected in TABLE if expected is not None]
    assert result["drops"] == 0


FLOOD = 3000
FLOODING = f"""
import socket
for i in range({FLOOD}):
    s = socket.socket()
    s.setblocking(False)
    s.connect_ex(("127.%d.%d.%d" % (1 + i // 65536, (i // 256) % 256, i % 256), 9))
    s.close()
"""


@needs_isolation
def test_a_flood_of_attempts_is_counted_whole() -> None:
    """Each refused attempt is either told to `on_blocked` or counted as missed (the kernel
    dropped its frame: the agent was faster than `tf run`), however fast the agent goes."""
    seen: list[Blocked] = []
    box = start_sandbox([sys.executable, "-c", FLOODING], {"PATH": os.environ.get("PATH", "")},
                        [], on_blocked=seen.append)  # fmt: skip
    assert box.process.wait() == 0
    box.close()
    assert box.complete  # every frame was read before it stopped
    assert len(seen) + box.missed == FLOOD
    assert {b.protocol for b in seen} == {"tcp"}
