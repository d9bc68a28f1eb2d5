"""What stops a request after it was decided stops it before its first byte goes upstream.

A request allowed (or approved) still waits before it is sent: for its upstream connection
to open (an upstream slow to accept), for a token, for its approval to be confirmed. A kill
switch or a suspension that arrives meanwhile must stop it there, on every forwarding path
(plain HTTP, inside a tunnel, a held request resumed once approved, an upgrade, a
passthrough tunnel), and the held and in-flight requests of an agent suspended are ended as
a kill switch ends them.

The upstream connection is held back on the gateway's side (its pool's ``acquire`` or
``open_tunnel`` waits for the test), the stop is applied, then the connection opens:
nothing may reach GitHub.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentfirewall_proxy.control import StaticControl
from tests.fakes import FakeUpstreams
from tests.proxy.rawclient import auth_header, read_all, read_response, status_of
from tests.proxy.support import (
    PLACEHOLDER,
    RunningGateway,
    ca_bundle,
    connector,
    rule,
    snapshot,
    start_gateway,
)

RULES = [rule("github.*", "allow"), rule("github.unknown.get", "allow"),
         rule("github.pr.merge", "require_approval")]  # fmt: skip
MERGE = "/repos/acme/api/pulls/7/merge"
ISSUES = "/repos/acme/api/issues"
Start = Callable[..., tuple[RunningGateway, StaticControl]]


@pytest.fixture
def start(fakes: FakeUpstreams, tmp_path: Path) -> Iterator[Start]:
    started: list[RunningGateway] = []
    fakes["github"].clear()

    def run(**options: Any) -> tuple[RunningGateway, StaticControl]:
        snap = snapshot(RULES, connectors=[connector("github")])
        running, control = start_gateway(tmp_path, fakes, snap, **options)
        started.append(running)
        return running, control

    yield run
    for running in started:
        running.stop()


def wait_until(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := check():
            return found
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


class SlowUpstream:
    """The gateway's upstream connections (`method`: the pool's that opens them) open
    only once the test says `go` (an upstream slow to accept): `waiting` is set when one is
    being opened."""

    def __init__(self, running: RunningGateway, method: str = "acquire") -> None:
        assert running.gateway is not None
        pool = running.gateway.pool
        opens = getattr(pool, method)
        self.waiting = threading.Event()
        self.go = threading.Event()

        async def slowly(*args: Any) -> Any:
            self.waiting.set()
            await asyncio.to_thread(self.go.wait, 10)
            return await opens(*args)

        setattr(pool, method, slowly)


def stop(running: RunningGateway, control: StaticControl, how: str) -> None:
    """Activate the kill switch or suspend `Bot`; return once the gateway applied it."""
    snap = snapshot(RULES, connectors=[connector("github")])
    if how == "kill_switch":
        snap["kill_switches"] = [{"scope": "all", "target": None, "reason": "stop"}]
    else:
        snap["agents"][0]["status"] = "suspended"
    control.update(snap)
    gateway = running.gateway
    assert gateway is not None
    wait_until(lambda: gateway.config and gateway.config.version == control.snapshot["version"])


def record_of(control: StaticControl, path: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = wait_until(
        lambda: [r for r in list(control.traffic) if r["path"] == path and r["status_code"]]
    )
    return found[-1]


def plain(running: RunningGateway, request: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", running.port), timeout=10)
    sock.sendall(request)
    return sock


def answer_of(sock: socket.socket) -> Callable[[], bytes]:
    """Everything the gateway answers on `sock` until it closes (then `sock` is closed)."""

    def read() -> bytes:
        with sock:
            return read_all(sock, 10)

    return read


def raw(method: str, path: str, *extra: bytes, body: bytes = b"") -> bytes:
    return (f"{method} http://api.github.com{path} HTTP/1.1\r\nHost: api.github.com\r\n".encode()
            + auth_header() + b"".join(h + b"\r\n" for h in extra)
            + b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
            + body)  # fmt: skip


def send_plain(running: RunningGateway, _: StaticControl) -> tuple[str, Callable[[], object]]:
    sock = plain(running, raw("POST", ISSUES, body=b'{"title":"x"}'))
    return ISSUES, answer_of(sock)


def send_intercepted(running: RunningGateway, _: StaticControl) -> tuple[str, Callable[[], object]]:
    """Inside a CONNECT tunnel, decided by the gateway."""
    bundle = ca_bundle(running.ca_path, running.options.ca_dir / "bundle.pem")
    http = httpx.Client(proxy=running.proxy_url(), trust_env=False, timeout=10,
                        verify=ssl.create_default_context(cafile=str(bundle)))  # fmt: skip
    out: list[object] = []

    def post() -> None:
        try:
            out.append(http.post(f"https://api.github.com{ISSUES}", json={"title": "x"},
                                 headers={"Authorization": PLACEHOLDER}))  # fmt: skip
        except httpx.HTTPError as exc:
            out.append(exc)
        finally:
            http.close()

    thread = threading.Thread(target=post, daemon=True)
    thread.start()
    return ISSUES, lambda: (thread.join(10), out)


def send_resumed(
    running: RunningGateway, control: StaticControl
) -> tuple[str, Callable[[], object]]:
    """Held for an approval (parked), approved: resumed, then it goes upstream."""
    sock = plain(running, raw("PUT", MERGE, body=b'{"merge_method":"squash"}'))
    (approval,) = wait_until(control.pending)
    gateway = running.gateway
    assert gateway is not None
    wait_until(lambda: not gateway.connections)  # parked: no coroutine, no connection
    control.approve(approval["id"])
    return MERGE, answer_of(sock)


def send_upgrade(running: RunningGateway, _: StaticControl) -> tuple[str, Callable[[], object]]:
    """An upgrade request (a WebSocket handshake): the gateway relays the upgraded stream."""
    path = "/fake/upgrade"
    sock = plain(running, raw("GET", path, b"Connection: Upgrade", b"Upgrade: websocket",
                              b"Sec-WebSocket-Version: 13",
                              b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="))  # fmt: skip
    return path, answer_of(sock)


PATHS = {"plain": send_plain, "intercepted": send_intercepted, "resumed": send_resumed,
         "upgrade": send_upgrade}  # fmt: skip


@pytest.mark.parametrize("how", ["kill_switch", "suspended"])
@pytest.mark.parametrize("path", list(PATHS))
def test_a_request_stopped_while_its_upstream_connection_opens_never_reaches_it(
    start: Start, fakes: FakeUpstreams, path: str, how: str
) -> None:
    running, control = start()
    slow = SlowUpstream(running)
    target, answer = PATHS[path](running, control)
    assert slow.waiting.wait(10), "the request never went for its upstream connection"
    stop(running, control, how)
    slow.go.set()
    answer()
    record = record_of(control, target)
    assert record["status_code"] == 403
    if how == "kill_switch":
        assert record["decision"] == "killed"
    else:
        assert "no longer active" in record["reason"]
    assert fakes["github"].received() == []  # not the request, not even its head


@pytest.mark.parametrize("parked", [True, False], ids=["parked", "in_its_coroutine"])
def test_a_suspended_agent_s_held_and_in_flight_requests_end(
    start: Start, fakes: FakeUpstreams, parked: bool
) -> None:
    """Suspending an agent ends its held requests (answered 403: an approval given later
    finds nothing to forward) and cuts its exchanges in flight, as a kill switch does."""
    running, control = start()
    merge = raw("PUT", MERGE, body=b'{"merge_method":"squash"}')
    if not parked:  # bytes of a next request already sent: it waits in its coroutine
        merge += b"GET http://api.github.com/user HTTP/1.1\r\n"
    with plain(running, merge) as held, \
            plain(running, raw("GET", "/fake/bytes/400000000")) as streaming:  # fmt: skip
        (approval,) = wait_until(control.pending)
        assert streaming.recv(65536).startswith(b"HTTP/1.1 200")
        stop(running, control, "suspended")
        answer = read_response(held, timeout=10)
        assert len(read_all(streaming, 10)) < 400_000_000  # cut, long before its end
    assert status_of(answer) == 403
    assert b'"error":"agent_inactive"' in answer.replace(b" ", b"")
    assert running.gateway is not None
    assert not running.gateway.holds.held  # an approval given now finds nothing to forward
    assert control.pending() == [approval]
    assert fakes["github"].received("PUT") == []


@pytest.mark.parametrize(("how", "error"), [("kill_switch", "kill_switch"),
                                            ("suspended", "agent_inactive")])  # fmt: skip
def test_a_passthrough_tunnel_stopped_while_it_opens_is_refused(
    start: Start, how: str, error: str
) -> None:
    running, control = start(passthrough=("api.github.com",))
    slow = SlowUpstream(running, "open_tunnel")
    connect = b"CONNECT api.github.com:443 HTTP/1.1\r\nHost: api.github.com:443\r\n"
    with plain(running, connect + auth_header() + b"\r\n") as sock:
        assert slow.waiting.wait(10), "the tunnel was never opened"
        stop(running, control, how)
        slow.go.set()
        answer = read_response(sock, timeout=10)
    assert status_of(answer) == 403  # not "200 Connection Established": no tunnel
    assert f'"error":"{error}"'.encode() in answer.replace(b" ", b"")
