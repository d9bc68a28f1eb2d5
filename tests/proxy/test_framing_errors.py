"""Smaller bindings (issue 12, item 9): a malformed chunk answered 400 at once, also in a
TLS tunnel; ``100 Continue`` only once the request may go on; one 407 for every bad proxy
credential (a valid key on another agent's port included); a stream cut by the kill
switch recorded as killed. Raw sockets and httpx through the real gateway."""

from __future__ import annotations

import base64
import json
import random
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agentfirewall_proxy.control import StaticControl
from tests.fakes import FakeUpstreams
from tests.proxy.rawclient import auth_header, read_response, status_of, tunnel
from tests.proxy.support import (
    KEY,
    OTHER_KEY,
    RunningGateway,
    connector,
    cut_download,
    rule,
    snapshot,
    start_gateway,
)

RULES = [
    rule("github.*", "allow"),
    rule("github.unknown.get", "allow"),
    rule("github.repo.delete", "deny"),
    rule("http.post", "deny", connector="generic"),
    rule("http.put", "allow", connector="generic"),
]
Start = Callable[..., tuple[RunningGateway, StaticControl]]


@pytest.fixture
def start(fakes: FakeUpstreams, tmp_path: Path) -> Iterator[Start]:
    started: list[RunningGateway] = []
    fakes["github"].clear()
    fakes["stripe"].clear()

    def run(snap: dict[str, Any] | None = None, **options: Any) -> tuple[RunningGateway, Any]:
        generic = connector("generic", domains=["api.stripe.com"], credential=None)
        snap = snap or snapshot(RULES, connectors=[connector("github"), generic])
        # io_timeout far above the client's own wait: a late 400 shows as a client timeout
        running, control = start_gateway(tmp_path, fakes, snap, io_timeout=120.0, **options)
        started.append(running)
        return running, control

    yield run
    for running in started:
        running.stop()


def _open(
    running: RunningGateway, where: str, host: str, head: bytes
) -> tuple[socket.socket, bytes]:
    """A socket to send `head` (origin-form, for `host`) on: inside a CONNECT tunnel, or
    plain to the gateway with the head in absolute form and the proxy credential added."""
    if where == "tunnel":
        return tunnel(running.port, host, running.ca_path), head
    sock = socket.create_connection(("127.0.0.1", running.port))
    target = head.split(b" ", 2)[1]
    head = head.replace(target, b"http://" + host.encode() + target, 1)
    return sock, head.replace(b"\r\n\r\n", b"\r\n" + auth_header() + b"\r\n", 1)


# -- a malformed chunk size is answered at once -------------------------------------------

BAD_CHUNKS = [b"zz\r\nhello\r\n0\r\n\r\n", b"5;\x00\r\nhello\r\n0\r\n\r\n", b"-5\r\nhello\r\n"]


@pytest.mark.parametrize("chunks", BAD_CHUNKS, ids=["not-hex", "bad-extension", "negative"])
@pytest.mark.parametrize("where", ["tunnel", "plain"])
def test_malformed_chunk_size_is_answered_400_at_once(
    start: Start, fakes: FakeUpstreams, where: str, chunks: bytes
) -> None:
    running, _ = start()
    head = b"POST /repos/acme/api/issues HTTP/1.1\r\nHost: api.github.com\r\n"
    head += b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    sock, head = _open(running, where, "api.github.com", head)
    with sock:
        sock.sendall(head + chunks)
        answer = read_response(sock, timeout=15)  # the client keeps the connection open
    assert status_of(answer) == 400, answer[:300]
    assert b'"error":"bad_request"' in answer
    assert fakes["github"].received("POST") == []


# -- 100 Continue only once the request may go on -----------------------------------------


def expect_request(target: bytes, host: bytes, body: bytes, *, proxy_auth: bool) -> bytes:
    lines = [b"PUT " + target + b" HTTP/1.1", b"Host: " + host,
             b"Content-Length: %d" % len(body), b"Expect: 100-continue"]  # fmt: skip
    head = b"\r\n".join(lines) + b"\r\n"
    return head + (auth_header() if proxy_auth else b"") + b"\r\n"


def first_answer(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("DELETE", b"/repos/acme/api", 403),  # a body-reading connector, denied on the path
        ("POST", b"/v1/charges", 403),  # generic (never reads bodies): http.post denied
        ("PUT", b"/v1/charges", 200),  # generic: http.put allowed, then the body is asked
    ],
)
def test_100_continue_only_after_the_decision(
    start: Start, fakes: FakeUpstreams, method: str, path: bytes, status: int
) -> None:
    running, _ = start()
    host = b"api.github.com" if path.startswith(b"/repos") else b"api.stripe.com"
    body = b'{"amount": 1}'
    request = expect_request(b"http://" + host + path, host, body, proxy_auth=True)
    request = method.encode() + request[3:]
    with socket.create_connection(("127.0.0.1", running.port), timeout=15) as sock:
        sock.sendall(request)  # the body waits for "100 Continue", as curl does
        answer = first_answer(sock)
        if status == 200:
            assert answer.startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
            sock.sendall(body)
            answer = read_response(sock)
            assert status_of(answer) == 200
            assert fakes["stripe"].last().body == body
        else:
            assert status_of(answer) == status, answer[:200]
            assert b"100 Continue" not in answer
            assert b"connection: close" in answer.lower()  # the unread body ends it
    if status != 200:
        assert fakes["github"].received(method) == []
        assert fakes["stripe"].received(method) == []


def test_100_continue_not_sent_for_a_kill_switched_request(start: Start) -> None:
    kill = [{"scope": "all", "target": None, "reason": "stop"}]
    running, _ = start(snapshot(RULES, connectors=[connector("github")], kill_switches=kill))
    request = expect_request(b"http://api.github.com/user", b"api.github.com", b"{}",
                             proxy_auth=True)  # fmt: skip
    with socket.create_connection(("127.0.0.1", running.port), timeout=15) as sock:
        sock.sendall(request)
        answer = first_answer(sock)
    assert status_of(answer) == 403
    assert b"100 Continue" not in answer


# -- one 407 for every bad proxy credential -----------------------------------------------


def _comparable(answer: bytes) -> tuple[bytes, dict[str, Any]]:
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = [x for x in head.split(b"\r\n") if not x.lower().startswith(b"x-tameflare-request-id")]
    data = json.loads(body)
    data.pop("request_id")
    return b"\r\n".join(lines), data


@pytest.mark.parametrize("how", ["plain", "connect"])
def test_a_valid_key_on_another_agents_port_gets_the_same_407_as_a_bad_key(
    start: Start, how: str
) -> None:
    first = random.randrange(30000, 60000)
    running, _ = start(agent_ports=(first, first + 40))
    assert running.gateway is not None
    port = running.gateway.agent_ports.ports["Bot"]

    def ask(key: str, name: str) -> bytes:
        auth = base64.b64encode(f"{name}:{key}".encode())
        if how == "plain":
            request = b"GET http://api.github.com/user HTTP/1.1\r\nHost: api.github.com\r\n"
        else:
            request = b"CONNECT api.github.com:443 HTTP/1.1\r\nHost: api.github.com:443\r\n"
        request += b"Proxy-Authorization: Basic " + auth + b"\r\n\r\n"
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(request)
            return read_response(sock)

    other = ask(OTHER_KEY, "Other")  # a valid key, but this port is Bot's
    bogus = ask("aaf_live_" + "z" * 32, "Other")
    assert status_of(other) == status_of(bogus) == 407
    assert _comparable(other) == _comparable(bogus)
    assert b"another agent" not in other
    assert status_of(ask(KEY, "Bot")) == 200  # the port's own agent


@pytest.mark.parametrize("status", ["suspended", "revoked"])
def test_an_inactive_agents_valid_key_gets_the_same_407_as_a_bad_key(
    start: Start, status: str
) -> None:
    snap = snapshot(RULES, connectors=[connector("github")])
    snap["agents"][1]["status"] = status  # "Other"
    running, _ = start(snap)

    def ask(key: str) -> bytes:
        request = b"GET http://api.github.com/user HTTP/1.1\r\nHost: api.github.com\r\n"
        request += auth_header(key, "Other") + b"\r\n"
        with socket.create_connection(("127.0.0.1", running.port), timeout=10) as sock:
            sock.sendall(request)
            return read_response(sock)

    inactive, bogus = ask(OTHER_KEY), ask("aaf_live_" + "z" * 32)
    assert status_of(inactive) == 407
    assert _comparable(inactive) == _comparable(bogus)
    assert status.encode() not in inactive


# -- a stream cut by the kill switch is recorded as killed --------------------------------


def test_a_stream_cut_by_the_kill_switch_is_recorded_killed(start: Start) -> None:
    running, control = start()
    kill = [{"scope": "all", "target": None, "reason": "stop"}]
    killed = snapshot(RULES, connectors=[connector("github")], kill_switches=kill)
    record = cut_download(running, control, lambda: control.update(killed))
    assert record["decision"] == "killed"
    assert record["reason"].startswith("kill_switch_active")
    assert running.gateway is not None
    assert running.gateway.stats["killed"] == 1


# -- a refused request's unread body: the client finishes sending and reads the answer ----


@pytest.mark.parametrize("where", ["tunnel", "plain"])
def test_a_client_still_sending_a_refused_body_reads_the_refusal(
    start: Start, fakes: FakeUpstreams, where: str
) -> None:
    """The refusal is written before the body is read (past 64 KiB the gateway stops
    reading it); the gateway then reads and drops the rest instead of resetting the
    connection under the client, which sends its whole body before it reads."""
    running, _ = start()
    body = b"x" * (1024 * 1024)
    head = b"POST /v1/charges HTTP/1.1\r\nHost: api.stripe.com\r\n"  # generic: http.post denied
    head += b"Content-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n" % len(body)
    sock, head = _open(running, where, "api.stripe.com", head)
    with sock:
        sock.sendall(head + body[:200_000])
        answer = read_response(sock, timeout=15)  # written while the body is still coming
        assert status_of(answer) == 403, answer[:300]
        time.sleep(0.3)  # a gateway that closed with unread bytes has reset us by now
        sock.sendall(body[200_000:])  # a reset would raise here
        sock.settimeout(15)
        assert sock.recv(65536) == b""  # then the gateway closes: the body has ended
    assert fakes["stripe"].received("POST") == []


@pytest.mark.parametrize("client", ["endless", "silent"])
def test_lingering_after_a_refusal_is_bounded(
    start: Start, monkeypatch: pytest.MonkeyPatch, client: str
) -> None:
    """A client that keeps sending (or sends nothing more) after its refusal does not keep
    the connection: the gateway drops at most LINGER_BYTES, waits at most LINGER_SECONDS."""
    from agentfirewall_proxy import client as client_module

    monkeypatch.setattr(client_module, "LINGER_BYTES", 4 * 1024 * 1024)
    monkeypatch.setattr(client_module, "LINGER_SECONDS", 1.0)
    running, _ = start()
    declared = 1024 * 1024 * 1024
    head = b"POST http://api.stripe.com/v1/charges HTTP/1.1\r\nHost: api.stripe.com\r\n"
    head += auth_header() + b"Content-Type: application/octet-stream\r\n"  # (decided unread)
    head += b"Content-Length: %d\r\n\r\n" % declared
    with socket.create_connection(("127.0.0.1", running.port)) as sock:
        sock.sendall(head + b"x" * 100_000)
        assert status_of(read_response(sock, timeout=15)) == 403
        sock.settimeout(15)
        assert _sent_until_closed(sock, client == "endless", declared) < 64 * 1024 * 1024


def _sent_until_closed(sock: socket.socket, endless: bool, declared: int) -> int:
    """Bytes sent (endless) or none (silent) until the gateway closed the connection."""
    sent, chunk = 0, b"x" * (256 * 1024)
    try:
        while sent < declared:
            if endless:
                sock.sendall(chunk)
                sent += len(chunk)
            elif sock.recv(65536) == b"":
                return sent
    except TimeoutError:
        raise AssertionError("the gateway kept the connection") from None
    except OSError:  # reset once the gateway stopped reading
        return sent
    raise AssertionError("the gateway read the whole declared body")
