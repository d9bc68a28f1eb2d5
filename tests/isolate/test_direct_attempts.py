# ruff: noqa: E501  (the agent's script is embedded verbatim)
"""Direct attempts the namespace would neither refuse nor report, as root (plain namespaces)
and as an ordinary user (a user namespace): each is refused at once, where the agent makes
it (no client waits for a timeout):

- a socket of another protocol (UDP-Lite, SCTP, ICMP) or a raw one: socket() fails (the
  namespace answered UDP-Lite with an ICMP error the counter does not read, a root agent's
  raw ICMP echo to 8.8.8.8 with a reply from itself);
- an IPv6 routing header, which any user may add (``IPV6_RTHDR``): the namespace dropped
  the datagram without an answer; headers only CAP_NET_RAW may add (IPv6 destination
  options, which can say "drop silently"; IPv4 source routes, dropped silently): a root
  agent no longer has it;
- multicast and broadcast (mDNS, LLMNR, ``ff02::fb``, ``255.255.255.255``, lo's
  ``127.255.255.255``), which the kernel never answers: ``sendto`` fails (EACCES).
"""

from __future__ import annotations

import pytest

from tests.isolate.conftest import AGENT_USERS, needs_isolation, run_agent_as

pytestmark = needs_isolation

AGENT = r"""
import errno, json, socket
out = {}
QUERY = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x04leak\x07example\x00\x00\x01\x00\x01"
SRH = bytes([0, 2, 4, 0, 0, 0, 0, 0]) + socket.inet_pton(socket.AF_INET6, "2001:db8::9")

def attempt(name, call):
    try:
        call()
        out[name] = "done"
    except socket.timeout:
        out[name] = "timeout"
    except OSError as exc:
        out[name] = errno.errorcode.get(exc.errno, str(exc.errno))

def open_socket(family, kind, protocol=0):
    socket.socket(family, kind, protocol).close()

def udp(family, address, option):
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.setsockopt(*option)
        sock.connect(address)
        sock.send(QUERY)
        sock.recv(512)

def group(family, address):
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sock.sendto(QUERY, address)

IP4, IP6 = socket.AF_INET, socket.AF_INET6
out["ipv6"] = socket.has_ipv6
sockets = {
    "udp-lite": (IP4, socket.SOCK_DGRAM, 136), "udp-lite6": (IP6, socket.SOCK_DGRAM, 136),
    "sctp": (IP4, socket.SOCK_STREAM, 132), "sctp seqpacket": (IP6, socket.SOCK_SEQPACKET, 132),
    "raw icmp": (IP4, socket.SOCK_RAW, 1), "raw ipv6": (IP6, socket.SOCK_RAW, 255),
    "ping": (IP4, socket.SOCK_DGRAM, 1), "ping6": (IP6, socket.SOCK_DGRAM, 58),
    "sock_packet": (IP4, 10, 0),
    "tcp": (IP4, socket.SOCK_STREAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC, 0),
    "tcp6": (IP6, socket.SOCK_STREAM, socket.IPPROTO_TCP), "udp": (IP4, socket.SOCK_DGRAM, socket.IPPROTO_UDP),
    "netlink": (socket.AF_NETLINK, socket.SOCK_RAW, 0),
}
for name, args in sockets.items():
    attempt(f"socket {name}", lambda: open_socket(*args))
attempt("udp6 routing header", lambda: udp(IP6, ("2001:db8::53", 53), (socket.IPPROTO_IPV6, 57, SRH)))
attempt("udp6 routing header (RFC 2292)", lambda: udp(IP6, ("2001:db8::53", 53), (socket.IPPROTO_IPV6, 5, SRH)))
attempt("udp6 destination options", lambda: udp(IP6, ("2001:db8::53", 53), (socket.IPPROTO_IPV6, 59, bytes([0, 0, 0x41, 4, 0, 0, 0, 0]))))
attempt("udp4 source route", lambda: udp(IP4, ("10.9.9.9", 53), (socket.IPPROTO_IP, socket.IP_OPTIONS, bytes([131, 7, 4, 10, 1, 1, 1, 0]))))
attempt("udp4 record route", lambda: udp(IP4, ("10.9.9.9", 53), (socket.IPPROTO_IP, socket.IP_OPTIONS, bytes([7, 7, 4, 0, 0, 0, 0, 0]))))
for address in (("224.0.0.251", 5353), ("224.0.0.252", 5355), ("239.1.2.3", 9), ("255.255.255.255", 53), ("127.255.255.255", 53)):
    attempt(f"group {address[0]}", lambda: group(IP4, address))
for address in (("ff02::fb", 5353, 0, 1), ("ff05::1:3", 547)):
    attempt(f"group {address[0]}", lambda: group(IP6, address))
print("agent-result", json.dumps(out), flush=True)
"""


@pytest.mark.parametrize("who", AGENT_USERS)
def test_only_tcp_and_udp_sockets_are_made(who: str) -> None:
    agent = run_agent_as(who, AGENT)
    refused = {
        "udp-lite": "EPROTONOSUPPORT", "udp-lite6": "EPROTONOSUPPORT", "sctp": "EPROTONOSUPPORT",
        "ping": "EPROTONOSUPPORT", "ping6": "EPROTONOSUPPORT", "sctp seqpacket": "ESOCKTNOSUPPORT",
        "raw icmp": "ESOCKTNOSUPPORT", "raw ipv6": "ESOCKTNOSUPPORT", "sock_packet": "ESOCKTNOSUPPORT",
    }  # fmt: skip
    assert {name: agent[f"socket {name}"] for name in refused} == refused
    for name in ("tcp", "tcp6", "udp", "netlink"):  # flags in the type change nothing
        assert agent[f"socket {name}"] == "done", name


@pytest.mark.parametrize("who", AGENT_USERS)
def test_headers_the_namespace_would_drop_silently_cannot_be_set(who: str) -> None:
    agent = run_agent_as(who, AGENT)
    if agent["ipv6"]:
        assert agent["udp6 routing header"] == "EPERM"
        assert agent["udp6 routing header (RFC 2292)"] == "EPERM"
        assert agent["udp6 destination options"] == "EPERM"
    assert agent["udp4 source route"] == "EPERM"
    assert agent["udp4 record route"] == "ECONNREFUSED"  # refused, and counted (test_packets)


@pytest.mark.parametrize("who", AGENT_USERS)
def test_multicast_and_broadcast_fail_at_once(who: str) -> None:
    agent = run_agent_as(who, AGENT)
    groups = {name: result for name, result in agent.items() if name.startswith("group ")}
    if not agent["ipv6"]:
        groups = {name: result for name, result in groups.items() if ":" not in name}
    assert len(groups) >= 5
    assert set(groups.values()) == {"EACCES"}, groups
