"""The credential an agent must not hold never reaches it (issue 12, item 4).

Every connector type injects its credential into a request to an upstream that reflects
it back (``tests/fakes/reflect.py``): in the body (raw, base64, percent-encoded), in
response headers, split across two reads at every point, as server-sent events, gzip'd
against our wish, and in WebSocket frames. The agent sees fillers of the same length;
the traffic record and the gateway's stats count the scrubs. Real clients (httpx,
requests, websockets) through the real gateway, over a TLS tunnel and over plain HTTP.
"""

from __future__ import annotations

import base64
import json
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
import requests
from websockets.sync.client import connect

from agentfirewall_proxy.scrub import MARKER
from tests.proxy.rawclient import auth_header
from tests.proxy.reflecting import CASES, TABLE, WS_GITHUB, WS_PLAIN, Case, Reflecting
from tests.proxy.support import ca_bundle
from tests.proxy.test_scrub import decode_frames, messages

WITH_SECRET = [case for case in TABLE if case.credential]
#: (case, scheme): TLS tunnel for every type; plain HTTP upgraded, and declared plain.
ROUTES = [(case, "https") for case in WITH_SECRET] + [
    (CASES[name], "http") for name in ("github", "stripe", "slack", "generic-plain")
]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Reflecting]:
    running = Reflecting(tmp_path_factory.mktemp("scrub"))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def bundle(world: Reflecting) -> Path:
    return ca_bundle(world.gateway.ca_path, world.gateway.options.ca_dir / "bundle.pem")


@pytest.fixture(scope="module")
def verify(bundle: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(bundle))


@pytest.fixture
def http(world: Reflecting, verify: ssl.SSLContext) -> Iterator[httpx.Client]:
    proxy = world.gateway.proxy_url()
    with httpx.Client(proxy=proxy, verify=verify, trust_env=False, timeout=30) as client:
        yield client


def forms(secret: str) -> list[str]:
    raw = secret.encode()
    return [secret, base64.b64encode(raw).decode(), quote(secret, safe="")]


def leaked(case: Case, text: str) -> list[str]:
    assert case.credential is not None
    return [form for form in forms(case.credential) if form in text]


def injected(world: Reflecting) -> str:
    """The credential header value the upstream received last."""
    last = world.upstream.last()
    value = last.header("authorization") or last.header("x-api-key")
    assert value is not None
    return value


@pytest.mark.parametrize(("case", "scheme"), ROUTES, ids=[f"{c.name}-{s}" for c, s in ROUTES])
def test_reflected_credential_is_scrubbed_from_body_and_headers(
    world: Reflecting, http: httpx.Client, case: Case, scheme: str
) -> None:
    reply = http.get(f"{scheme}://{case.host}{case.path}?forms=1")
    assert reply.status_code == 200
    assert case.credential is not None
    assert case.credential in world.upstream.last().raw_text()  # it was injected upstream
    headers = "\n".join(f"{k}: {v}" for k, v in reply.headers.multi_items())
    assert leaked(case, reply.text) == []
    assert leaked(case, headers) == []
    echoed = reply.json()  # same-length fillers: still valid JSON, still the same length
    value = next(v for k, v in echoed["headers"].items() if k in ("authorization", "x-api-key"))
    assert value.startswith(MARKER.decode()[: len(value)])
    assert len(value) == len(injected(world))
    assert MARKER.decode()[:10] in reply.headers.get(
        "x-echo-authorization", ""
    ) + reply.headers.get("x-echo-x-api-key", "")


SPLITS = [
    (CASES["github"], "https", True),
    (CASES["github"], "https", False),
    (CASES["generic-plain"], "http", True),
    (CASES["generic-plain"], "http", False),
]


@pytest.mark.parametrize(
    ("case", "scheme", "length"),
    SPLITS,
    ids=[f"{c.name}-{s}-{'length' if n else 'chunked'}" for c, s, n in SPLITS],
)
def test_secret_split_across_two_reads_at_every_point(
    world: Reflecting, http: httpx.Client, case: Case, scheme: str, length: bool
) -> None:
    http.get(f"{scheme}://{case.host}{case.path}")
    value = injected(world)
    for cut in range(1, len(value)):
        framing = "&length=1" if length else ""
        reply = http.get(f"{scheme}://{case.host}{case.path}?cut={cut}{framing}")
        assert reply.status_code == 200
        assert ("content-length" in reply.headers) is length
        assert leaked(case, reply.text) == [], cut
        assert len(reply.json()["headers"]["authorization"]) == len(value)


def test_server_sent_events_are_scrubbed_and_not_held(
    world: Reflecting, http: httpx.Client
) -> None:
    case = CASES["openai"]
    url = f"https://{case.host}{case.path}?mode=sse&cut=9"
    with http.stream("GET", url) as reply:
        assert reply.headers["content-type"] == "text/event-stream"
        events = [line for line in reply.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "data: second"
    assert leaked(case, "\n".join(events)) == []
    assert MARKER.decode() in events[0]


def test_a_gzip_answer_is_decoded_and_scrubbed(world: Reflecting, bundle: Path) -> None:
    case = CASES["stripe"]
    with requests.Session() as session:
        session.trust_env = False
        session.verify = str(bundle)
        proxy = world.gateway.proxy_url()
        url = f"https://{case.host}{case.path}?encoding=gzip&forms=1"
        reply = session.get(url, proxies={"https": proxy}, headers={"Accept-Encoding": "gzip"})
    assert reply.status_code == 200
    assert "content-encoding" not in reply.headers
    assert world.upstream.last().header("accept-encoding") == "identity"  # what we asked
    assert leaked(case, reply.text) == []
    assert reply.json()["headers"]["authorization"].startswith("[REDACTED")


def test_an_encoding_the_gateway_cannot_read_is_refused(
    world: Reflecting, http: httpx.Client
) -> None:
    case = CASES["github"]
    reply = http.get(f"https://{case.host}{case.path}?encoding=br")
    assert reply.status_code == 502
    assert "cannot be checked for the injected credential" in reply.json()["reason"]
    assert leaked(case, reply.text) == []


def test_ranges_are_not_asked_and_a_partial_answer_is_refused(
    world: Reflecting, http: httpx.Client
) -> None:
    """Byte ranges could hand a secret out piece by piece, none of them a whole form."""
    case = CASES["github"]
    reply = http.get(f"https://{case.host}{case.path}", headers={"Range": "bytes=20-30"})
    assert reply.status_code == 200
    assert world.upstream.last().header("range") is None
    partial = http.get(f"https://{case.host}{case.path}?status=206")
    assert partial.status_code == 502
    assert "partial response" in partial.json()["reason"]
    assert leaked(case, partial.text) == []


def test_websocket_frames_are_scrubbed_in_a_tls_tunnel(
    world: Reflecting, verify: ssl.SSLContext
) -> None:
    secret = WS_GITHUB.credential
    assert secret is not None
    url = f"wss://{WS_GITHUB.host}{WS_GITHUB.path}"
    got: list[str | bytes] = []
    with connect(url, proxy=world.gateway.proxy_url(), ssl=verify, open_timeout=10) as ws:
        got.append(ws.recv(timeout=10))
        got.append(ws.recv(timeout=10))
        with pytest.raises(Exception, match="1000"):
            ws.recv(timeout=10)
        reason = ws.close_reason or ""
    handshake = world.ws.handshakes[-1]
    assert secret in handshake["authorization"]  # injected upstream
    assert "sec-websocket-extensions" not in handshake  # nothing compressed: searchable
    text, binary = got
    assert isinstance(text, str)
    assert isinstance(binary, bytes)
    assert text.startswith("auth=[REDACTED")
    assert text.endswith(" end")
    assert len(text) == len("auth=") + len(handshake["authorization"]) + len(" end")
    assert secret not in text + reason
    assert base64.b64encode(handshake["authorization"].encode()) not in binary


def test_websocket_frames_are_scrubbed_over_plain_http(world: Reflecting) -> None:
    secret = WS_PLAIN.credential
    assert secret is not None
    request = (
        (
            f"GET http://{WS_PLAIN.host}{WS_PLAIN.path} HTTP/1.1\r\nHost: {WS_PLAIN.host}\r\n"
            "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Extensions: permessage-deflate\r\n"
        ).encode()
        + auth_header()
        + b"\r\n"
    )
    data = b""
    with socket.create_connection(("127.0.0.1", world.gateway.port), timeout=10) as sock:
        sock.sendall(request)
        while chunk := sock.recv(65536):
            data += chunk
            if b"\x88" in data.partition(b"\r\n\r\n")[2]:  # the close frame came
                time.sleep(0.05)
                sock.sendall(bytes((0x88, 0x80)) + b"mask")
                data += sock.recv(65536)
                break
    head, _, frames = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101")
    assert secret.encode() not in head + frames
    got = messages(decode_frames(frames))
    assert [opcode for opcode, _ in got] == [0x1, 0x2, 0x8]
    assert got[0][1].startswith(b"auth=[REDACTED")
    assert got[1][1].startswith(b"[REDACTED")  # it was base64 of the credential header


def test_scrubs_are_counted_in_traffic_and_stats(world: Reflecting, http: httpx.Client) -> None:
    gateway = world.gateway.gateway
    assert gateway is not None
    before = gateway.stats["secrets_scrubbed"]
    case = CASES["anthropic"]
    reply = http.get(f"https://{case.host}{case.path}?forms=1")
    request_id = reply.headers.get("x-tameflare-request-id") or world.upstream.last().header(
        "x-tameflare-request-id"
    )
    deadline = time.monotonic() + 10
    records: list[dict[str, object]] = []
    while time.monotonic() < deadline and not records:
        records = [r for r in world.control.traffic if r["request_id"] == request_id]
        time.sleep(0.05)
    (record,) = records
    assert "injected secret(s) scrubbed from the response" in str(record["reason"])
    assert gateway.stats["secrets_scrubbed"] >= before + 3
    assert json.dumps(record).find(case.credential or "?") < 0
