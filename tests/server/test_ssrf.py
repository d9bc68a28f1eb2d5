"""The outbound address guard, smokescreen-style: a table of addresses and outcomes.

One row per range of the IANA IPv4 and IPv6 Special-Purpose Address Registries (and the
multicast, reserved and broadcast ranges), each with the reason the guard must give, or
None where the range is globally reachable and passes on purpose. IPv6 spellings that
embed an IPv4 address are judged by that address. Extend the table when IANA adds a range.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentfirewall_server.netguard import check_target, embedded_ipv4, refusal
from agentfirewall_server.web import ApiError
from tests.fakes import FakeUpstreams
from tests.server.conftest import Harness

# (address, the start of the reason, or None: allowed)
TABLE: list[tuple[str, str | None]] = [
    # IPv4 special-purpose registry
    ("0.0.0.0", "unspecified 0.0.0.0/32"),
    ("0.1.2.3", "this network 0.0.0.0/8"),
    ("10.1.2.3", "private-use 10.0.0.0/8"),
    ("100.64.0.1", "shared address space 100.64.0.0/10"),
    ("100.127.255.254", "shared address space 100.64.0.0/10"),
    ("127.0.0.1", "loopback 127.0.0.0/8"),
    ("127.255.255.254", "loopback 127.0.0.0/8"),
    ("169.254.169.254", "link-local 169.254.0.0/16"),
    ("172.16.0.1", "private-use 172.16.0.0/12"),
    ("172.31.255.255", "private-use 172.16.0.0/12"),
    ("192.0.0.1", "ipv4 service continuity prefix 192.0.0.0/29"),
    ("192.0.0.8", "ipv4 dummy address 192.0.0.8/32"),
    ("192.0.0.9", None),  # port control protocol anycast: globally reachable (IANA)
    ("192.0.0.10", None),  # TURN anycast: globally reachable (IANA)
    ("192.0.0.100", "ietf protocol assignments 192.0.0.0/24"),
    ("192.0.0.170", "nat64/dns64 discovery 192.0.0.170/31"),
    ("192.0.0.171", "nat64/dns64 discovery 192.0.0.170/31"),
    ("192.0.2.1", "documentation (test-net-1) 192.0.2.0/24"),
    ("192.31.196.1", None),  # AS112-v4: globally reachable (IANA)
    ("192.52.193.1", None),  # AMT: globally reachable (IANA)
    ("192.88.99.1", "deprecated 6to4 relay anycast 192.88.99.0/24"),
    ("192.168.1.1", "private-use 192.168.0.0/16"),
    ("192.175.48.1", None),  # direct delegation AS112: globally reachable (IANA)
    ("198.18.0.1", "benchmarking 198.18.0.0/15"),
    ("198.19.255.255", "benchmarking 198.18.0.0/15"),
    ("198.51.100.7", "documentation (test-net-2) 198.51.100.0/24"),
    ("203.0.113.7", "documentation (test-net-3) 203.0.113.0/24"),
    ("224.0.0.1", "multicast 224.0.0.0/4"),
    ("239.255.255.250", "multicast 224.0.0.0/4"),
    ("240.0.0.1", "reserved 240.0.0.0/4"),
    ("255.255.255.254", "reserved 240.0.0.0/4"),
    ("255.255.255.255", "limited broadcast 255.255.255.255/32"),
    # public IPv4 next to the ranges
    ("8.8.8.8", None),
    ("100.63.255.255", None),
    ("100.128.0.0", None),
    ("172.15.255.255", None),
    ("172.32.0.0", None),
    ("192.0.1.1", None),
    ("198.17.255.255", None),
    ("223.255.255.255", None),
    # IPv6 special-purpose registry
    ("::", "unspecified ::/128"),
    ("::1", "loopback ::1/128"),
    ("::ffff:127.0.0.1", "loopback 127.0.0.0/8 embedded in ipv4-mapped ::ffff:0:0/96"),
    ("::ffff:a9fe:a9fe", "link-local 169.254.0.0/16 embedded in ipv4-mapped"),
    ("::ffff:8.8.8.8", None),  # the socket connects to 8.8.8.8
    ("64:ff9b::7f00:1", "loopback 127.0.0.0/8 embedded in nat64 well-known prefix"),
    ("64:ff9b::a9fe:a9fe", "link-local 169.254.0.0/16 embedded in nat64 well-known prefix"),
    ("64:ff9b::e000:1", "multicast 224.0.0.0/4 embedded in nat64 well-known prefix"),
    ("64:ff9b::808:808", None),  # NAT64 of 8.8.8.8: globally reachable (IANA)
    ("64:ff9b:1:7f00:0:100::", "loopback 127.0.0.0/8 embedded in local-use nat64 prefix"),
    ("64:ff9b:1:a00:0:100::", "private-use 10.0.0.0/8 embedded in local-use nat64 prefix"),
    ("64:ff9b:1:808:8:800::", None),  # local-use NAT64 of 8.8.8.8 (RFC 6052 /48 layout)
    ("100::1", "discard-only 100::/64"),
    ("100:0:0:1::1", "dummy ipv6 prefix 100:0:0:1::/64"),
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "documentation (test-net-1) 192.0.2.0/24"),
    ("2001:0:7f00:1:8000:63bf:f7f6:5432", "loopback 127.0.0.0/8 embedded in teredo"),
    ("2001:0:808:808:0:0:f7f7:f7f7", None),  # teredo between two public IPv4 addresses
    ("2001:1::1", None),  # PCP anycast: globally reachable (IANA)
    ("2001:1::2", None),  # TURN anycast: globally reachable (IANA)
    ("2001:1::3", None),  # DNS-SD SRP anycast: globally reachable (IANA)
    ("2001:1::4", "ietf protocol assignments 2001::/23"),
    ("2001:2::1", "benchmarking 2001:2::/48"),
    ("2001:3::1", None),  # AMT: globally reachable (IANA)
    ("2001:4:112::1", None),  # AS112-v6: globally reachable (IANA)
    ("2001:10::1", "deprecated orchid 2001:10::/28"),
    ("2001:20::1", None),  # ORCHIDv2: globally reachable (IANA)
    ("2001:30::1", None),  # drone remote ID: globally reachable (IANA)
    ("2001:1ff::1", "ietf protocol assignments 2001::/23"),
    ("2001:db8::1", "documentation 2001:db8::/32"),
    ("2002:7f00:1::", "loopback 127.0.0.0/8 embedded in 6to4 2002::/16"),
    ("2002:a9fe:a9fe::1", "link-local 169.254.0.0/16 embedded in 6to4"),
    ("2002:808:808::1", None),  # 6to4 of 8.8.8.8
    ("2620:4f:8000::1", None),  # AS112 direct delegation: globally reachable (IANA)
    ("3fff::1", "documentation 3fff::/20"),
    ("5f00::1", "segment routing (srv6) sids 5f00::/16"),
    ("fc00::1", "unique-local fc00::/7"),
    ("fd12:3456::1", "unique-local fc00::/7"),
    ("fe80::1", "link-local fe80::/10"),
    ("fec0::1", "deprecated site-local fec0::/10"),
    ("ff02::1", "multicast ff00::/8"),
    ("ff0e::1", "multicast ff00::/8"),
    # deprecated IPv4-compatible: refused whatever it embeds
    ("::7f00:1", "loopback 127.0.0.0/8 embedded in deprecated ipv4-compatible ::/96"),
    ("::a9fe:a9fe", "link-local 169.254.0.0/16 embedded in deprecated ipv4-compatible"),
    ("::808:808", "deprecated ipv4-compatible ::/96"),
    # reserved space outside global unicast 2000::/3
    ("4000::1", "reserved (outside global unicast 2000::/3)"),
    ("1::1", "reserved (outside global unicast 2000::/3)"),
    ("e000::1", "reserved (outside global unicast 2000::/3)"),
    # public IPv6
    ("2606:4700:4700::1111", None),
    ("2a00:1450:4001:80b::200e", None),
]


@pytest.mark.parametrize(("address", "reason"), TABLE, ids=[row[0] for row in TABLE])
def test_every_special_purpose_range(address: str, reason: str | None) -> None:
    got = refusal(ipaddress.ip_address(address))
    if reason is None:
        assert got is None
    else:
        assert got is not None, f"{address} was let through"
        assert got.startswith(reason), got


@pytest.mark.anyio
@pytest.mark.parametrize(
    "address", [row[0] for row in TABLE if row[1] is not None], ids=lambda a: str(a)
)
async def test_check_target_refuses_every_refused_literal(address: str) -> None:
    with pytest.raises(ApiError) as caught:
        await check_target(address, 80, [])
    assert caught.value.code == "target_refused"
    assert caught.value.status == 422


_ipv4 = st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address)


def _wrap(kind: str, v4: ipaddress.IPv4Address) -> ipaddress.IPv6Address:
    v = int(v4)
    if kind == "mapped":
        return ipaddress.IPv6Address((0xFFFF << 32) | v)
    if kind == "nat64":
        return ipaddress.IPv6Address((0x64FF9B << 96) | v)
    if kind == "nat64-local":  # RFC 6052 /48: 16 bits, the u octet, 16 bits
        prefix = 0x0064FF9B0001 << 80
        return ipaddress.IPv6Address(prefix | ((v >> 16) << 64) | ((v & 0xFFFF) << 40))
    if kind == "6to4":
        return ipaddress.IPv6Address((0x2002 << 112) | (v << 80))
    # teredo: a public server, the client stored bit-inverted
    return ipaddress.IPv6Address(
        (0x20010000 << 96) | (int(ipaddress.IPv4Address("8.8.8.8")) << 64) | (~v & 0xFFFFFFFF)
    )


@given(_ipv4, st.sampled_from(["mapped", "nat64", "nat64-local", "6to4", "teredo"]))
def test_an_embedded_ipv4_address_is_judged_as_itself(v4: ipaddress.IPv4Address, kind: str) -> None:
    wrapped = _wrap(kind, v4)
    assert v4 in embedded_ipv4(wrapped)
    assert (refusal(wrapped) is None) == (refusal(v4) is None)


_PUBLIC_ON_PURPOSE = [
    ipaddress.ip_network(n)
    for n in (
        "192.0.0.9/32",
        "192.0.0.10/32",
        "192.31.196.0/24",
        "192.52.193.0/24",
        "192.175.48.0/24",
    )
]


@given(_ipv4)
def test_at_least_as_strict_as_the_standard_library(v4: ipaddress.IPv4Address) -> None:
    """A second implementation: what Python calls non-global is refused (or public on purpose)."""
    if not v4.is_global and not any(v4 in n for n in _PUBLIC_ON_PURPOSE):
        assert refusal(v4) is not None


@given(st.integers(0, 2**128 - 1).map(ipaddress.IPv6Address))
def test_ipv6_outside_global_unicast_is_refused_unless_it_embeds_a_public_ipv4(
    v6: ipaddress.IPv6Address,
) -> None:
    if v6 not in ipaddress.ip_network("2000::/3") and refusal(v6) is None:
        assert v6 in ipaddress.ip_network("::ffff:0:0/96") or v6 in ipaddress.ip_network(
            "64:ff9b::/32"
        )
        assert all(refusal(inner) is None for inner in embedded_ipv4(v6))


@pytest.mark.parametrize("address", ["[64:ff9b::7f00:1]", "[::ffff:127.0.0.1]", "[::7f00:1]"])
def test_a_webhook_to_an_embedded_loopback_is_refused_even_with_loopback_allowed(
    harness_factory: Any, fakes: FakeUpstreams, address: str
) -> None:
    """The allow-list names 127.0.0.1 as before; an IPv6 spelling of it is still refused."""
    h: Harness = harness_factory(webhook_allow_hosts=["127.0.0.1", "127.0.0.0/8"])
    upstream = fakes["github"]
    upstream.clear()
    key = h.create_agent("Bot")
    spec = {
        "type": "webhook.post",
        "resource": {
            "provider": "webhook",
            "target": f"http://{address}:{upstream.http_port}/collect",
        },
        "parameters": {"body": {"x": 1}},
    }
    body = h.agent(key, "POST", "/v1/actions", json={"action_spec": spec}).json()
    r = h.agent(
        key,
        "POST",
        f"/v1/actions/{body['action_request_id']}/execute",
        json={"decision_token": body["decision_token"]},
    )
    assert r.status_code == 422, r.text
    assert r.json()["error"] == "target_refused"
    assert "embedded in" in r.json()["message"]
    assert upstream.received() == []
