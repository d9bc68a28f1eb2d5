"""A request cut in flight while it waits for its upstream's answer is answered, not dropped.

The kill switch, a suspension and the control plane lost past ``--max-config-age`` cut the
exchanges in flight (each through its cut handle, ``flow.Cut``). One whose request went
upstream and which waits for the response head, nothing of an answer written to its client
yet, loses its upstream connection only and is answered with the cut's error (403
``kill_switch``, 403 ``agent_inactive``, 503 ``control_plane_unreachable``) saying that its
request was sent (the upstream may have acted on it), never closed unanswered ("Empty reply
from server"), never answered as not forwarded, and never sent again on a fresh pooled
connection. Once part of an answer went out (a response streaming), and while the request's
body still comes in (a streamed upload), the cut stays an abort of both sockets: no second
answer.

The upstream (``rawupstream.py``) reads each request and, for the paths scripted so, never
answers or never ends its answer: the window is the test's to hold open.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agentfirewall_proxy import exchange
from agentfirewall_proxy.control import StaticControl
from agentfirewall_proxy.options import parse_resolve
from tests.proxy.rawclient import auth_header, read_all
from tests.proxy.rawupstream import RawUpstream, json_body, record_at, status_of
from tests.proxy.support import (
    RunningGateway,
    connector,
    gateway_options,
    rule,
    snapshot,
)
from tests.proxy.test_control_plane_lost import Partitioned

HOST = "cut.example.org"
SILENT = "/silent"  # read, never answered
STREAM = "/stream"  # a head and the first bytes of a 1000-byte body, then nothing
CONNECTORS = [connector("generic", id="c_cut", name="cut", domains=[HOST], credential=None)]
RULES = [rule("http.*", "allow")]
SENT = "its request was sent before the cut: the upstream may have acted on it"


@pytest.fixture(scope="module")
def upstream() -> Iterator[RawUpstream]:
    raw = RawUpstream()
    raw.answers[SILENT] = []
    raw.answers[STREAM] = [b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nfirst bytes"]
    yield raw
    raw.stop()


Start = Callable[..., tuple[RunningGateway, StaticControl]]


@pytest.fixture
def start(upstream: RawUpstream, tmp_path: Path) -> Iterator[Start]:
    """A gateway in front of `upstream`; its control plane wrapped by `wrap` if given."""
    started: list[RunningGateway] = []
    upstream.received.clear()

    def run(wrap: Callable[[StaticControl], Any] = lambda c: c, **overrides: Any) -> Any:
        control = StaticControl(snapshot(RULES, connectors=CONNECTORS))
        resolve = parse_resolve([f"{HOST}:80=127.0.0.1:{upstream.port}"])
        options = gateway_options(tmp_path, None, resolve=resolve, **overrides)
        started.append(RunningGateway(options, wrap(control)).start())
        return started[-1], control

    yield run
    for running in started:
        running.stop()


def wait_until(check: Callable[[], Any]) -> Any:
    deadline = time.monotonic() + 10
    while not (found := check()):
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)
    return found


def send(running: RunningGateway, method: str, path: str, *extra: str) -> socket.socket:
    lines = [f"{method} http://{HOST}{path} HTTP/1.1", f"Host: {HOST}", *extra]
    line, rest = ("\r\n".join(lines) + "\r\n\r\n").encode().split(b"\r\n", 1)
    sock = socket.create_connection(("127.0.0.1", running.port), timeout=10)
    sock.sendall(line + b"\r\n" + auth_header() + rest)
    return sock


def waiting(running: RunningGateway, upstream: RawUpstream, *, pooled: bool) -> socket.socket:
    """A GET the upstream received and does not answer (sent on a pooled upstream
    connection when `pooled`, one a fresh request may be retried on)."""
    if pooled:
        with send(running, "GET", "/warm", "Connection: close") as sock:
            assert status_of(read_all(sock, 10)) == 200
    sock = send(running, "GET", SILENT)
    wait_until(lambda: SILENT in upstream.paths())
    return sock


def stopped(how: str) -> dict[str, Any]:
    snap = snapshot(RULES, connectors=CONNECTORS)
    if how == "kill_switch":
        snap["kill_switches"] = [{"scope": "all", "target": None, "reason": "incident"}]
    else:
        snap["agents"][0]["status"] = "suspended"
    return snap


def stop(control: StaticControl, how: str) -> None:
    control.update(stopped(how))


@pytest.mark.parametrize("pooled", [False, True], ids=["fresh", "pooled"])
@pytest.mark.parametrize(("how", "error"), [("kill_switch", "kill_switch"),
                                            ("suspended", "agent_inactive")])  # fmt: skip
def test_a_request_waiting_for_its_answer_is_answered_when_stopped(
    start: Start, upstream: RawUpstream, how: str, error: str, pooled: bool
) -> None:
    running, control = start()
    with waiting(running, upstream, pooled=pooled) as sock:
        stop(control, how)
        answer = read_all(sock, 10)
    assert status_of(answer) == 403, answer
    assert (b"X-TameFlare-Kill-Switch: active" in answer) == (how == "kill_switch")
    body = json_body(answer)
    assert body["error"] == error
    assert body["reason"].endswith(SENT)  # not "not forwarded": the upstream may have acted
    assert body["request_id"]
    assert upstream.paths().count(SILENT) == 1  # cut, not sent again on a fresh connection
    record = record_at(control, SILENT)
    assert record["status_code"] == 403
    if how == "kill_switch":
        assert record["decision"] == "killed"
        assert record["reason"].startswith("kill_switch_active: the exchange was cut")
    else:
        assert record["reason"].startswith("agent_inactive: the exchange was cut")


@pytest.mark.parametrize("pooled", [False, True], ids=["fresh", "pooled"])
def test_a_request_waiting_for_its_answer_is_answered_when_the_control_plane_is_lost(
    start: Start, upstream: RawUpstream, pooled: bool
) -> None:
    """The flaky CI failure: a GET in flight as `--max-config-age` passed got no answer."""
    running, control = start(Partitioned, max_config_age=0.5)
    partition = running.control
    assert isinstance(partition, Partitioned)
    with waiting(running, upstream, pooled=pooled) as sock:
        partition.link.clear()
        answer = read_all(sock, 10)
    partition.link.set()  # (its traffic record is shipped)
    assert status_of(answer) == 503, answer
    body = json_body(answer)
    assert body["error"] == "control_plane_unreachable"
    assert body["reason"].startswith("the exchange was cut: no word from the control plane")
    assert body["reason"].endswith(SENT)
    assert upstream.paths().count(SILENT) == 1
    record = record_at(control, SILENT)
    assert record["status_code"] == 503
    assert record["reason"].startswith("control_plane_unreachable: the exchange was cut")


def test_a_response_head_read_as_the_cut_came_is_not_relayed(
    start: Start, upstream: RawUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kill switch came with the upstream's whole answer read, before the exchange
    went on with it: it is answered as cut, the upstream's answer is not relayed."""
    running, _ = start()
    gateway = running.gateway
    assert gateway is not None
    read_head = exchange.response_head

    async def head_then_kill(*args: Any) -> Any:
        response = await read_head(*args)
        gateway.apply(stopped("kill_switch"))  # (on the gateway's loop, as the config task)
        return response

    monkeypatch.setattr(exchange, "response_head", head_then_kill)
    with send(running, "GET", "/answered") as sock:
        answer = read_all(sock, 10)
    assert status_of(answer) == 403, answer
    assert json_body(answer)["reason"].endswith(SENT)
    assert b'"ok"' not in answer


def test_a_response_under_way_is_aborted_when_stopped_not_answered_twice(
    start: Start, upstream: RawUpstream
) -> None:
    running, control = start()
    with send(running, "GET", STREAM) as sock:
        got = b""
        while b"first bytes" not in got:
            got += sock.recv(65536)
        stop(control, "kill_switch")
        answer = got + read_all(sock, 10)  # (until the gateway closes it)
    assert status_of(answer) == 200
    assert answer.count(b"HTTP/1.1") == 1  # no refusal after the head that went out
    assert answer.endswith(b"first bytes")
    assert record_at(control, STREAM)["decision"] == "killed"


def test_a_streamed_upload_is_aborted_when_stopped_its_body_not_read_on(
    start: Start, upstream: RawUpstream
) -> None:
    running, control = start()
    gateway = running.gateway
    assert gateway is not None
    head = ("Content-Type: application/octet-stream", "Content-Length: 100000")
    with send(running, "PUT", "/upload", *head) as sock:
        sock.sendall(b"x" * 1000)  # its head and these go upstream; the rest never comes
        wait_until(lambda: [flow for flow in list(gateway.active) if flow.sent])
        stop(control, "kill_switch")
        assert read_all(sock, 10) == b""  # closed without an answer, as before
    assert record_at(control, "/upload")["decision"] == "killed"
    assert "/upload" not in upstream.paths()  # (its body never ended)


@pytest.fixture
def unreachable() -> Iterator[int]:
    """A port whose accept queue is full: a connection to it waits (its SYN dropped)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        fillers = []
        for _ in range(4):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
            fillers.append(filler)
        yield port
        for filler in fillers:
            filler.close()


@pytest.mark.parametrize(("how", "error"), [("kill_switch", "kill_switch"),
                                            ("suspended", "agent_inactive")])  # fmt: skip
def test_a_request_whose_upstream_connection_is_opening_is_answered_when_stopped(
    tmp_path: Path, unreachable: int, how: str, error: str
) -> None:
    """Cut before it was sent (its upstream connection opening), the request was dropped
    unanswered and recorded as the connect that timed out: now its wait ends at once and
    it is refused as `check_forward` refuses (not "sent before the cut": it was not)."""
    control = StaticControl(snapshot(RULES, connectors=CONNECTORS))
    resolve = parse_resolve([f"{HOST}:80=127.0.0.1:{unreachable}"])
    options = gateway_options(tmp_path, None, resolve=resolve, connect_timeout=60.0)
    running = RunningGateway(options, control).start()
    gateway = running.gateway
    assert gateway is not None
    try:
        with send(running, "GET", "/opening", "Connection: close") as sock:
            wait_until(lambda: list(gateway.active))  # decided: connecting (never done)
            stop(control, how)
            answer = read_all(sock, 10)  # (without the cut's wake: 60 s of connecting)
        assert status_of(answer) == 403, answer
        body = json_body(answer)
        assert body["error"] == error
        assert not body["reason"].endswith(SENT)
        record = record_at(control, "/opening")
        assert record["status_code"] == 403
        if how == "kill_switch":
            assert record["decision"] == "killed"
        else:  # (not the connect's 504: "connecting ... timed out")
            assert "is no longer active" in record["reason"]
    finally:
        running.stop()


def test_a_request_whose_budget_is_being_reserved_is_answered_when_stopped(
    start: Start, upstream: RawUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kill switch came while its spend was being reserved: refused (403), never sent,
    its reservation given back (released as never sent)."""
    snap = snapshot(RULES, connectors=CONNECTORS)
    snap["budgets"] = [{"name": "calls", "connector": "generic", "action": "*"}]
    running, control = start()
    gateway = running.gateway
    assert gateway is not None
    control.update(snap)
    wait_until(lambda: gateway.config is not None and gateway.config.budgets)

    async def reserve_then_kill(scopes: Any, flow: Any, *, force: bool) -> None:
        gateway.apply({**stopped("kill_switch"), "budgets": snap["budgets"]})
        flow.reservation = "rsv_1"  # (what a reservation made sets)

    monkeypatch.setattr(gateway.budgets, "reserve", reserve_then_kill)
    settled: list[bool] = []
    monkeypatch.setattr(gateway.budgets, "settle", lambda flow: settled.append(flow.sent))
    with send(running, "GET", "/reserving", "Connection: close") as sock:
        answer = read_all(sock, 10)
    assert status_of(answer) == 403, answer
    assert json_body(answer)["error"] == "kill_switch"
    assert "/reserving" not in upstream.paths()
    assert settled == [False]  # released: never sent
    assert record_at(control, "/reserving")["decision"] == "killed"
