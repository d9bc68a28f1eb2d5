"""Unnamed requests through the real gateway, for every route-table connector (issue 12,
item 7): an encoded or unknown path is named ``<connector>.unknown.<method>``, which the
connector's wildcard (``github.*``) does not allow and only a rule naming it does; a
``_method`` override in a form or JSON body is refused like one in the query. Driven by
raw bytes in a TLS tunnel (clients would normalise the paths) against the fakes."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from agentfirewall_proxy.control import StaticControl
from tests.fakes import FakeUpstreams
from tests.proxy.rawclient import read_response, status_of, tunnel
from tests.proxy.support import (
    KEY,
    OTHER_KEY,
    RunningGateway,
    connector,
    rule,
    snapshot,
    start_gateway,
)

HOSTS = {
    "github": "api.github.com",
    "stripe": "api.stripe.com",
    "slack": "slack.com",
    "openai": "api.openai.com",
    "anthropic": "api.anthropic.com",
}
#: A known route of each connector, and the same route with an encoded tail.
KNOWN = {
    "github": ("PUT", "/repos/acme/api/pulls/42/merge"),
    "stripe": ("POST", "/v1/refunds"),
    "slack": ("POST", "/api/chat.postMessage"),
    "openai": ("POST", "/v1/chat/completions"),
    "anthropic": ("POST", "/v1/messages"),
}
TAILS = ["%20", "%3Fx", "%2520", "%23", "%3B", "x"]


@pytest.fixture(scope="module")
def gateway(
    fakes: FakeUpstreams, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RunningGateway, StaticControl]]:
    permissions = [rule(f"{name}.*", "allow") for name in HOSTS]
    permissions += [rule(f"{name}.*", "allow", agent="Other") for name in HOSTS]
    permissions += [rule(f"{name}.unknown.*", "allow", agent="Other") for name in HOSTS]
    snap = snapshot(permissions, connectors=[connector(k) for k in HOSTS])
    running, control = start_gateway(tmp_path_factory.mktemp("unnamed"), fakes, snap)
    yield running, control
    running.stop()


def _send(
    running: RunningGateway, host: str, method: str, path: str, body: bytes = b"",
    ctype: str = "application/json", key: str = KEY,
) -> bytes:  # fmt: skip
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n"
    head += f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\n\r\n"
    with tunnel(running.port, host, running.ca_path, key=key) as tls:
        tls.sendall(head.encode() + body)
        return read_response(tls, timeout=10)


@pytest.mark.parametrize("tail", TAILS)
@pytest.mark.parametrize("name", sorted(HOSTS))
def test_an_unnamed_path_is_not_covered_by_the_connector_wildcard(
    gateway: tuple[RunningGateway, StaticControl], fakes: FakeUpstreams, name: str, tail: str
) -> None:
    running, _ = gateway
    method, path = KNOWN[name]
    before = len(fakes[name].received())
    answer = _send(running, HOSTS[name], method, path + tail, b"{}")
    assert status_of(answer) == 403
    body = json.loads(answer.partition(b"\r\n\r\n")[2])
    if body.get("action"):  # named (not refused outright): in the unknown family
        assert body["action"] == f"{name}.unknown.{method.lower()}"
    assert len(fakes[name].received()) == before


@pytest.mark.parametrize("name", sorted(HOSTS))
def test_a_rule_that_names_the_unknown_family_lets_it_through(
    gateway: tuple[RunningGateway, StaticControl], fakes: FakeUpstreams, name: str
) -> None:
    running, _ = gateway
    method, path = KNOWN[name]
    before = len(fakes[name].received())
    answer = _send(running, HOSTS[name], method, path + "x", b"{}", key=OTHER_KEY)
    assert status_of(answer) != 403
    arrived = fakes[name].received()[before:]
    assert [r.path for r in arrived] == [path + "x"]


@pytest.mark.parametrize(
    ("ctype", "body"),
    [
        ("application/x-www-form-urlencoded", b"_method=DELETE"),
        ("application/x-www-form-urlencoded", b"a=1&%5Fmethod=delete"),
        ("application/json", b'{"a": 1, "_method": "DELETE"}'),
        ("application/json", b'{"\\u005fmethod": "DELETE"}'),
        ("multipart/form-data; boundary=zz",
         b'--zz\r\nContent-Disposition: form-data; name="_method"\r\n\r\nDELETE\r\n--zz--\r\n'),
    ],
)  # fmt: skip
@pytest.mark.parametrize("name", sorted(HOSTS))
def test_method_override_in_a_body_is_refused(
    gateway: tuple[RunningGateway, StaticControl],
    fakes: FakeUpstreams,
    name: str,
    ctype: str,
    body: bytes,
) -> None:
    running, _ = gateway
    method, path = KNOWN[name]
    before = len(fakes[name].received())
    answer = _send(running, HOSTS[name], method, path, body, ctype)
    assert status_of(answer) == 403
    assert b"_method" in answer
    assert len(fakes[name].received()) == before
