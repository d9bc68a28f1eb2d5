"""Held plain-HTTP requests are parked as bare sockets and resumed on a new transport.

Every test checks the gateway really parked the request (``Parked`` records in the holds,
no connection object left for it) and then that the resumed exchange answers exactly as a
held request must: forwarded with the credential once approved, 403 when denied or killed,
408 on timeout, and the connection keeps serving afterwards.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agentfirewall_proxy.control import StaticControl
from agentfirewall_proxy.parking import Parked
from tests.fakes import FakeUpstreams
from tests.proxy.rawclient import auth_header, read_response, status_of, tunnel
from tests.proxy.support import (
    CREDENTIALS,
    PLACEHOLDER,
    RunningGateway,
    connector,
    rule,
    snapshot,
    start_gateway,
)

RULES = [rule("github.*", "allow"), rule("github.pr.merge", "require_approval")]
MERGE = b"/repos/acme/api/pulls/7/merge"


def merge_request(body: bytes = b'{"merge_method":"squash"}') -> bytes:
    return (
        b"PUT http://api.github.com" + MERGE + b" HTTP/1.1\r\nHost: api.github.com\r\n"
        + auth_header() + b"Authorization: Bearer " + PLACEHOLDER.encode() + b"\r\n"
        + b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    )  # fmt: skip


def in_tunnel(request: bytes) -> bytes:
    """The same request in origin form, as a client sends it inside a CONNECT tunnel."""
    line, rest = request.split(b"\r\n", 1)
    method, target, version = line.split(b" ")
    origin = b"/" + target.split(b"/", 3)[3]
    return b" ".join((method, origin, version)) + b"\r\n" + rest.replace(auth_header(), b"")


def user_request() -> bytes:
    return b"GET http://api.github.com/user HTTP/1.1\r\nHost: api.github.com\r\n" + auth_header()


@pytest.fixture
def start(
    fakes: FakeUpstreams, tmp_path: Path
) -> Iterator[Callable[..., tuple[RunningGateway, StaticControl]]]:
    started: list[RunningGateway] = []
    fakes["github"].clear()

    def run(**kw: Any) -> tuple[RunningGateway, StaticControl]:
        snap = snapshot(RULES, connectors=[connector("github")], **kw)
        running, control = start_gateway(tmp_path, fakes, snap)
        started.append(running)
        return running, control

    yield run
    for running in started:
        running.stop()


def wait_until(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


def held_parked(running: RunningGateway, count: int = 1) -> list[str]:
    """Approval ids of `count` held requests, once every one of them is parked."""
    gateway = running.gateway
    assert gateway is not None

    def parked() -> list[str] | None:
        held = gateway.holds.held
        owners = [getattr(h.gone, "__self__", None) for h in held.values()]
        if len(held) != count or not all(isinstance(o, Parked) for o in owners):
            return None
        ids = list(held)
        return ids if not gateway.active and not gateway.connections else None

    found: list[str] = wait_until(parked)
    return found


def connect(running: RunningGateway) -> socket.socket:
    assert running.gateway is not None
    assert running.gateway.port is not None
    return socket.create_connection(("127.0.0.1", running.gateway.port), timeout=10)


def test_an_approved_parked_request_is_forwarded_and_the_connection_serves_on(
    start: Callable[..., tuple[RunningGateway, StaticControl]], fakes: FakeUpstreams
) -> None:
    running, control = start()
    with connect(running) as sock:
        sock.sendall(merge_request())
        (approval,) = held_parked(running)
        control.approve(approval)
        answer = read_response(sock)
        assert status_of(answer) == 200
        (merged,) = fakes["github"].received("PUT")
        assert merged.header("authorization") == f"token {CREDENTIALS['github']}"
        assert PLACEHOLDER not in str(merged)
        assert merged.body == b'{"merge_method":"squash"}'
        sock.sendall(user_request() + b"\r\n")  # the same connection, after resuming
        assert status_of(read_response(sock)) == 200
    assert control.approvals[approval]["used"] is True


@pytest.mark.parametrize(
    ("settle", "status", "error"),
    [("deny", 403, "approval_denied"), ("kill", 403, "kill_switch")],
)
def test_a_parked_request_denied_or_killed_is_refused(
    start: Callable[..., tuple[RunningGateway, StaticControl]],
    fakes: FakeUpstreams,
    settle: str,
    status: int,
    error: str,
) -> None:
    running, control = start()
    with connect(running) as sock:
        sock.sendall(merge_request())
        (approval,) = held_parked(running)
        if settle == "deny":
            control.deny(approval)
        else:
            kill = [{"scope": "all", "target": None, "reason": "stop"}]
            control.update(snapshot(RULES, connectors=[connector("github")], kill_switches=kill))
        answer = read_response(sock)
    assert status_of(answer) == status
    assert f'"error":"{error}"'.encode() in answer.replace(b" ", b"")
    assert (b"x-tameflare-kill-switch: active" in answer.lower()) is (settle == "kill")
    assert fakes["github"].received("PUT") == []


def test_a_parked_request_times_out_with_408(
    start: Callable[..., tuple[RunningGateway, StaticControl]], fakes: FakeUpstreams
) -> None:
    running, _ = start(approval_timeout=1)
    with connect(running) as sock:
        sock.sendall(merge_request())
        held_parked(running)
        answer = read_response(sock, timeout=10)
    assert status_of(answer) == 408
    assert fakes["github"].received("PUT") == []


def test_a_client_leaving_releases_its_parked_request_and_the_approval_stays(
    start: Callable[..., tuple[RunningGateway, StaticControl]], fakes: FakeUpstreams
) -> None:
    running, control = start()
    sock = connect(running)
    sock.sendall(merge_request())
    (approval,) = held_parked(running)
    sock.close()
    assert running.gateway is not None
    wait_until(lambda: not running.gateway.holds.held)  # type: ignore[union-attr]
    records = wait_until(lambda: [r for r in control.traffic if r["status_code"] == 499])
    assert records[0]["action"] == "github.pr.merge"
    assert control.approvals[approval]["status"] == "pending"
    control.approve(approval)
    with connect(running) as again:  # the identical retry goes through on that approval
        again.sendall(merge_request())
        assert status_of(read_response(again)) == 200
    assert len(fakes["github"].received("PUT")) == 1


def test_many_parked_requests_settle_independently(
    start: Callable[..., tuple[RunningGateway, StaticControl]], fakes: FakeUpstreams
) -> None:
    running, control = start()
    socks = [connect(running) for _ in range(20)]
    try:
        for number, sock in enumerate(socks):
            body = b'{"merge_method":"squash","n":%d}' % number
            sock.sendall(merge_request(body))
        held = held_parked(running, 20)
        for index, approval in enumerate(held):
            (control.approve if index % 2 else control.deny)(approval)
        statuses = [status_of(read_response(sock)) for sock in socks]
    finally:
        for sock in socks:
            sock.close()
    assert sorted(statuses) == [200] * 10 + [403] * 10
    assert len(fakes["github"].received("PUT")) == 10


def test_a_request_with_bytes_pipelined_behind_it_waits_unparked(
    start: Callable[..., tuple[RunningGateway, StaticControl]], fakes: FakeUpstreams
) -> None:
    running, control = start()
    assert running.gateway is not None
    with connect(running) as sock:
        sock.sendall(merge_request() + user_request() + b"\r\n")
        (approval,) = wait_until(lambda: list(running.gateway.holds.held))  # type: ignore[union-attr]
        assert running.gateway.connections, "a pipelined request keeps its connection"
        control.approve(approval)
        assert status_of(read_response(sock)) == 200
        assert status_of(read_response(sock)) == 200
    assert len(fakes["github"].received("PUT")) == 1


def test_a_request_held_inside_an_intercepted_tunnel_is_parked_with_its_tls_connection(
    start: Callable[..., tuple[RunningGateway, StaticControl]], fakes: FakeUpstreams
) -> None:
    running, control = start()
    assert running.gateway is not None
    assert running.gateway.port is not None
    with tunnel(running.gateway.port, "api.github.com", running.ca_path) as tls:
        tls.sendall(in_tunnel(merge_request()))
        (approval,) = held_parked(running)
        control.approve(approval)
        assert status_of(read_response(tls)) == 200
        tls.sendall(in_tunnel(user_request() + b"\r\n"))  # the same TLS connection
        assert status_of(read_response(tls)) == 200
    (merged,) = fakes["github"].received("PUT")
    assert merged.header("authorization") == f"token {CREDENTIALS['github']}"


def test_a_client_leaving_its_tunnel_releases_the_parked_request(
    start: Callable[..., tuple[RunningGateway, StaticControl]], fakes: FakeUpstreams
) -> None:
    running, control = start()
    assert running.gateway is not None
    assert running.gateway.port is not None
    tls = tunnel(running.gateway.port, "api.github.com", running.ca_path)
    tls.sendall(in_tunnel(merge_request()))
    (approval,) = held_parked(running)
    tls.close()
    wait_until(lambda: not running.gateway.holds.held)  # type: ignore[union-attr]
    assert wait_until(lambda: [r for r in control.traffic if r["status_code"] == 499])
    assert control.approvals[approval]["status"] == "pending"
    assert fakes["github"].received("PUT") == []
