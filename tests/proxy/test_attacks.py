"""Hostile clients: each ends in a clear refusal or the correct action, never a request
forwarded under the wrong action or to the wrong host."""

from __future__ import annotations

import json
import re
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes import FakeUpstreams
from tests.proxy.rawclient import auth_header, read_all, read_response, send, status_of, tunnel
from tests.proxy.support import RunningGateway, connector, rule, snapshot, start_gateway

AUTH = auth_header()


@pytest.fixture(scope="module")
def gateway(
    fakes: FakeUpstreams, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningGateway]:
    snap = snapshot(
        [
            rule("github.*", "allow"),
            rule("github.unknown.get", "allow"),  # /fake/bytes: no route names it
            rule("github.repo.delete", "deny"),
        ],
        connectors=[connector("github")],
    )
    running, _ = start_gateway(
        tmp_path_factory.mktemp("gw"), fakes, snap, header_timeout=0.5, io_timeout=1.0
    )
    yield running
    running.stop()


@pytest.fixture(autouse=True)
def _clear(fakes: FakeUpstreams) -> None:
    fakes["github"].clear()


def plain(method: str, url: str, *extra: bytes, host: str = "api.github.com") -> bytes:
    head = f"{method} {url} HTTP/1.1\r\nHost: {host}\r\n".encode() + AUTH
    return head + b"".join(extra)


@pytest.mark.parametrize(
    ("name", "raw", "status"),
    [
        (
            "cl+te",
            plain(
                "POST",
                "http://api.github.com/repos/a/b/issues",
                b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            ),
            400,
        ),
        (
            "duplicate cl",
            plain(
                "POST",
                "http://api.github.com/repos/a/b/issues",
                b"Content-Length: 2\r\nContent-Length: 3\r\n\r\nabc",
            ),
            400,
        ),
        ("obs-fold", plain("GET", "http://api.github.com/user", b"X-A: b\r\n c\r\n\r\n"), 400),
        ("bare lf", b"GET http://api.github.com/user HTTP/1.1\nHost: api.github.com\n\n", 400),
        (
            "te not chunked",
            plain(
                "POST",
                "http://api.github.com/repos/a/b/issues",
                b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
            ),
            501,
        ),
        (
            "host mismatch",
            plain("GET", "http://api.github.com/user", b"\r\n", host="evil.example"),
            421,
        ),
        ("https absolute-form", plain("GET", "https://api.github.com/user", b"\r\n"), 400),
        ("userinfo in url", plain("GET", "http://x@api.github.com/user", b"\r\n"), 400),
        ("ip literal", plain("GET", "http://127.0.0.1/user", b"\r\n", host="127.0.0.1"), 403),
        ("no connector", plain("GET", "http://example.com/", b"\r\n", host="example.com"), 403),
        (
            "dot-segments to a denied action",
            plain("DELETE", "http://api.github.com/repos/acme/api/pulls/..", b"\r\n"),
            403,
        ),
        (
            "encoded dot-segments",
            plain("DELETE", "http://api.github.com/repos/acme/api/issues/%2e%2e", b"\r\n"),
            403,
        ),
        ("backslash path", plain("GET", "http://api.github.com/user\\..\\x", b"\r\n"), 400),
    ],
    ids=lambda value: value if isinstance(value, str) and "\n" not in value else "",
)
def test_refused_and_nothing_forwarded(
    gateway: RunningGateway, fakes: FakeUpstreams, name: str, raw: bytes, status: int
) -> None:
    answer = send(gateway.port, raw)
    assert status_of(answer) == status, (name, answer[:300])
    time.sleep(0.05)
    assert fakes["github"].received() == [], name


def test_denied_body_names_action_rule_reason_and_request_id(gateway: RunningGateway) -> None:
    answer = send(gateway.port, plain("DELETE", "http://api.github.com/repos/acme/api/pulls/..",
                                      b"Connection: close\r\n\r\n"))  # fmt: skip
    head, _, body = answer.partition(b"\r\n\r\n")
    data = json.loads(body)
    assert data["error"] == "denied"
    assert data["action"] == "github.repo.delete"
    assert data["rule"]
    assert data["reason"]
    assert data["request_id"].encode() in head


def test_trailing_dot_is_the_same_host_and_the_same_action(
    gateway: RunningGateway, fakes: FakeUpstreams
) -> None:
    with tunnel(gateway.port, "api.github.com.", gateway.ca_path) as tls:
        tls.sendall(b"DELETE /repos/acme/api HTTP/1.1\r\nHost: api.github.com.\r\n\r\n")
        assert status_of(read_response(tls)) == 403
        tls.sendall(b"GET /user HTTP/1.1\r\nHost: api.github.com\r\nConnection: close\r\n\r\n")
        assert status_of(read_response(tls)) == 200
    assert [r.path for r in fakes["github"].received()] == ["/user"]


def test_connect_to_ip_literal_or_unknown_host_is_refused_inside_the_tunnel(
    gateway: RunningGateway, fakes: FakeUpstreams
) -> None:
    before = len(fakes["github"].received())
    for host in ("127.0.0.1", "140.82.112.5", "evil.example", "api.github.com.evil.example"):
        with tunnel(gateway.port, host, gateway.ca_path) as tls:
            tls.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            answer = read_response(tls)
        assert status_of(answer) == 403, host
        assert b'"error":"no_connector"' in answer
    assert len(fakes["github"].received()) == before


def test_sni_other_than_connect_host_fails_the_handshake(gateway: RunningGateway) -> None:
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        tunnel(gateway.port, "api.github.com", gateway.ca_path, sni="api.stripe.com")


def test_inner_host_other_than_connect_host_is_misdirected(
    gateway: RunningGateway, fakes: FakeUpstreams
) -> None:
    with tunnel(gateway.port, "api.github.com", gateway.ca_path) as tls:
        tls.sendall(b"GET /v1/charges HTTP/1.1\r\nHost: api.stripe.com\r\n\r\n")
        assert status_of(read_response(tls)) == 421
    assert fakes["github"].received() == []


def test_inner_absolute_form_is_refused(gateway: RunningGateway) -> None:
    with tunnel(gateway.port, "api.github.com", gateway.ca_path) as tls:
        tls.sendall(
            b"GET https://api.stripe.com/v1/charges HTTP/1.1\r\nHost: api.github.com\r\n\r\n"
        )
        assert status_of(read_response(tls)) == 400


def test_pipelined_requests_are_decided_one_by_one(
    gateway: RunningGateway, fakes: FakeUpstreams
) -> None:
    raw = (
        plain("GET", "http://api.github.com/user", b"\r\n")
        + plain("DELETE", "http://api.github.com/repos/acme/api", b"\r\n")
        + plain("GET", "http://api.github.com/user", b"Connection: close\r\n\r\n")
    )
    answer = send(gateway.port, raw, everything=True)
    statuses = [int(code) for code in re.findall(rb"HTTP/1\.1 (\d{3}) ", answer)]
    assert statuses == [200, 403, 200]
    assert [(r.method, r.path) for r in fakes["github"].received()] == [("GET", "/user")] * 2


def test_pipelined_inside_tunnel(gateway: RunningGateway, fakes: FakeUpstreams) -> None:
    with tunnel(gateway.port, "api.github.com", gateway.ca_path) as tls:
        tls.sendall(
            b"GET /user HTTP/1.1\r\nHost: api.github.com\r\n\r\n"
            b"DELETE /repos/acme/api HTTP/1.1\r\nHost: api.github.com\r\nConnection: close\r\n\r\n"
        )
        answer = read_all(tls)
    assert answer.count(b"HTTP/1.1 200") == 1
    assert answer.count(b"HTTP/1.1 403") == 1
    assert [r.method for r in fakes["github"].received()] == ["GET"]


def test_oversized_headers_get_431(gateway: RunningGateway) -> None:
    big = b"X-Big: " + b"a" * 100_000 + b"\r\n"
    answer = send(gateway.port, plain("GET", "http://api.github.com/user", big, b"\r\n"))
    assert status_of(answer) == 431


def test_slowloris_head_times_out(gateway: RunningGateway) -> None:
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=5) as sock:
        sock.sendall(b"GET http://api.github.com/user HTTP/1.1\r\nHost: api.github.com\r\n")
        for _ in range(3):  # dribble: 0.3 s apart, past the 0.5 s head deadline
            time.sleep(0.3)
            try:
                sock.sendall(b"X-Slow: 1\r\n")
            except OSError:
                break
        answer = read_all(sock, timeout=3)
    assert status_of(answer) == 408


def test_missing_or_wrong_credential_gets_407(gateway: RunningGateway) -> None:
    raw = b"GET http://api.github.com/user HTTP/1.1\r\nHost: api.github.com\r\n\r\n"
    answer = send(gateway.port, raw)
    assert status_of(answer) == 407
    assert b"Proxy-Authenticate: Basic" in answer
    wrong = auth_header("aaf_live_" + "x" * 32)
    answer = send(gateway.port, raw[:-2] + wrong + b"\r\n")
    assert status_of(answer) == 407


def test_client_that_never_reads_is_cut_and_the_gateway_stays_up(
    gateway: RunningGateway, fakes: FakeUpstreams
) -> None:
    sock = socket.create_connection(("127.0.0.1", gateway.port), timeout=5)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.sendall(plain("GET", "http://api.github.com/fake/bytes/50000000", b"\r\n"))
    deadline = time.monotonic() + 10
    assert gateway.gateway is not None
    while time.monotonic() < deadline:
        time.sleep(0.2)
        if not gateway.gateway.active:
            break
    assert not gateway.gateway.active  # the stuck exchange was cut by the io timeout
    sock.close()
    answer = send(
        gateway.port, plain("GET", "http://api.github.com/user", b"Connection: close\r\n\r\n")
    )
    assert status_of(answer) == 200


def test_the_gateway_ca_key_is_private(gateway: RunningGateway) -> None:
    key = Path(gateway.options.ca_dir) / "ca.key"
    assert key.stat().st_mode & 0o777 == 0o600
