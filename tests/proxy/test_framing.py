"""Request bodies are re-framed for the upstream whatever the method: a GET that carries a
body (``requests.get(url, json={})``, a chunked GET) reaches the fake upstream (uvicorn,
strict) well-formed, and a bodiless GET/DELETE gains no framing of its own.

Two connectors cover both forwarding paths: github reads the body before deciding (the
whole small body is re-sent with its exact length), generic reads none (the body is
streamed, keeping the client's length or re-chunked).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.fakes import FakeUpstreams
from tests.proxy.rawclient import auth_header, read_response, send, status_of
from tests.proxy.support import (
    RunningGateway,
    ca_bundle,
    connector,
    rule,
    snapshot,
    start_gateway,
)

#: (fake, host, path): github parses bodies, the generic connector on stripe's host does not.
TARGETS = [
    ("github", "api.github.com", "/user"),
    ("stripe", "api.stripe.com", "/v1/framing-check"),
]
IDS = ["body-read", "body-streamed"]


@pytest.fixture(scope="module")
def gateway(
    fakes: FakeUpstreams, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RunningGateway, Path]]:
    tmp = tmp_path_factory.mktemp("framing")
    generic = connector("generic", domains=["api.stripe.com"], credential=None)
    snap = snapshot(
        # DELETE /user names no github action: only a rule naming the reserved
        # `unknown` segment exactly lets it through (wildcards never grant it).
        [
            rule("github.*", "allow"),
            rule("github.unknown.delete", "allow"),
            rule("http.*", "allow"),
        ],
        connectors=[connector("github"), generic],
    )
    running, _ = start_gateway(tmp, fakes, snap)
    yield running, ca_bundle(running.ca_path, tmp / "bundle.pem")
    running.stop()


@pytest.fixture(autouse=True)
def _clear(fakes: FakeUpstreams) -> None:
    for name in ("github", "stripe"):
        fakes[name].clear()


def _session(running: RunningGateway, bundle: Path) -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    proxy = running.proxy_url()
    session.proxies = {"http": proxy, "https": proxy}
    session.verify = str(bundle)
    return session


def _framing(fakes: FakeUpstreams, name: str) -> list[tuple[str, str | None, str | None, bytes]]:
    return [
        (r.method, r.header("content-length"), r.header("transfer-encoding"), r.body)
        for r in fakes[name].received()
    ]


@pytest.mark.parametrize(("name", "host", "path"), TARGETS, ids=IDS)
@pytest.mark.parametrize("scheme", ["https", "http"])
def test_requests_get_with_json_body(
    gateway: tuple[RunningGateway, Path],
    fakes: FakeUpstreams,
    scheme: str,
    name: str,
    host: str,
    path: str,
) -> None:
    running, bundle = gateway
    url = f"{scheme}://{host}{path}"
    with _session(running, bundle) as session:
        sized = session.get(url, json={})
        chunked = session.get(url, data=iter([b"{", b"}"]))
        bare = session.get(url)
        gone = session.delete(url)
    assert [sized.status_code, chunked.status_code, bare.status_code, gone.status_code] == [
        200
    ] * 4, sized.text
    received = _framing(fakes, name)
    assert received[0] == ("GET", "2", None, b"{}")
    assert (received[1][0], received[1][3]) == ("GET", b"{}")
    assert received[1][1:3] in (("2", None), (None, "chunked"))  # read whole, or streamed
    # requests sends DELETE with `Content-Length: 0`, GET with nothing: both kept as sent
    assert received[2:] == [("GET", None, None, b""), ("DELETE", "0", None, b"")]


def _raw_get(host: str, path: str, framing: bytes) -> bytes:
    return (
        f"GET http://{host}{path} HTTP/1.1\r\nHost: {host}\r\n".encode() + auth_header() + framing
    )


@pytest.mark.parametrize(("name", "host", "path"), TARGETS, ids=IDS)
def test_raw_get_with_content_length_body(
    gateway: tuple[RunningGateway, Path], fakes: FakeUpstreams, name: str, host: str, path: str
) -> None:
    running, _ = gateway
    answer = send(running.port, _raw_get(host, path, b'Content-Length: 7\r\n\r\n{"a":1}'))
    assert status_of(answer) == 200, answer[:300]
    assert _framing(fakes, name) == [("GET", "7", None, b'{"a":1}')]


@pytest.mark.parametrize(("name", "host", "path"), TARGETS, ids=IDS)
def test_raw_chunked_get_then_bodiless_get_on_one_connection(
    gateway: tuple[RunningGateway, Path], fakes: FakeUpstreams, name: str, host: str, path: str
) -> None:
    running, _ = gateway
    chunked = _raw_get(
        host, path, b'Transfer-Encoding: chunked\r\n\r\n3\r\n{"a\r\n4\r\n":1}\r\n0\r\n\r\n'
    )
    with socket.create_connection(("127.0.0.1", running.port), timeout=5) as sock:
        sock.sendall(chunked)
        first = read_response(sock)
        sock.sendall(_raw_get(host, path, b"\r\n"))
        second = read_response(sock)
    assert (status_of(first), status_of(second)) == (200, 200), first[:300]
    received = _framing(fakes, name)
    assert [(r[0], r[3]) for r in received] == [("GET", b'{"a":1}'), ("GET", b"")]
    assert received[0][1:3] in (("7", None), (None, "chunked"))
    assert received[1][1:3] == (None, None)
