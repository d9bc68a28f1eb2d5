"""An answer is read up to MAX_ANSWER_BYTES, decoded, a piece at a time: a small gzip answer
that inflates past it (a gzip bomb from a wrong ``base_url``) is a ServerError, read no
further and never retried. Against a real HTTP server on 127.0.0.1, since the bug lives in
how the socket is read.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from agentfirewall import AgentFirewall, AsyncAgentFirewall
from agentfirewall.client._base import MAX_ANSWER_BYTES
from agentfirewall.errors import ServerError

KEY = "aaf_test_" + "k" * 32
ALLOWED = {
    "action_request_id": "act_1",
    "status": "allowed",
    "decision": {"outcome": "allow", "reason": "ok", "risk_score": 0, "matched_policies": []},
    "decision_token": "tok",
}


def gzip_bomb(size: int) -> bytes:
    """`size` spaces, gzipped a MiB at a time: twice the cap costs ~600 KB on the wire."""
    piece = b" " * (1 << 20)
    gzip = zlib.compressobj(1, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    return b"".join([gzip.compress(piece) for _ in range(size // len(piece))] + [gzip.flush()])


class Answers(ThreadingHTTPServer):
    """Answers every request with `status`, `headers` and `body`; counts requests."""

    daemon_threads = True

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.status, self.headers, self.body = status, headers, body
        self.requests: list[dict[str, str]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/api"


class _Handler(BaseHTTPRequestHandler):
    server: Answers

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.requests.append(dict(self.headers))
        self.send_response(self.server.status)
        for name, value in {"Content-Type": "application/json", **self.server.headers}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(self.server.body)))
        self.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client stopped
            self.wfile.write(self.server.body)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def serve() -> Iterator[list[Answers]]:
    servers: list[Answers] = []
    yield servers
    for server in servers:
        server.shutdown()
        server.server_close()


def start(servers: list[Answers], status: int, headers: dict[str, str], body: bytes) -> Answers:
    server = Answers(status, headers, body)
    threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True).start()
    servers.append(server)
    return server


@pytest.mark.parametrize("status", [200, 503])
def test_a_gzip_answer_inflating_past_the_cap_is_a_server_error_not_retried(
    serve: list[Answers], status: int
) -> None:
    server = start(serve, status, {"Content-Encoding": "gzip"}, gzip_bomb(2 * MAX_ANSWER_BYTES))
    larger = "^" + re.escape(
        f"the answer is larger than {MAX_ANSWER_BYTES} bytes: is `{server.url}` "
    )
    with AgentFirewall(api_key=KEY, base_url=server.url, retry_backoff=0) as fw:
        with pytest.raises(ServerError, match=larger) as caught:
            fw.request_action("github.pr.merge")
    assert caught.value.status_code == status
    assert caught.value.retryable is False
    assert len(server.requests) == 1


@pytest.mark.anyio
async def test_the_async_client_stops_at_the_cap_too(serve: list[Answers]) -> None:
    server = start(serve, 503, {"Content-Encoding": "gzip"}, gzip_bomb(2 * MAX_ANSWER_BYTES))
    async with AsyncAgentFirewall(api_key=KEY, base_url=server.url, retry_backoff=0) as fw:
        with pytest.raises(ServerError, match=r"^the answer is larger than"):
            await fw.request_action("github.pr.merge")
    assert len(server.requests) == 1


def test_an_encoding_not_asked_for_is_a_server_error_not_decoded(serve: list[Answers]) -> None:
    # httpx would inflate a zstd answer a whole network read at a time: 32 KiB can be 1 GiB
    zstandard = pytest.importorskip("zstandard")
    body = zstandard.ZstdCompressor().compress(json.dumps(ALLOWED).encode())
    server = start(serve, 200, {"Content-Encoding": "zstd"}, body)
    with AgentFirewall(api_key=KEY, base_url=server.url, retry_backoff=0) as fw:
        with pytest.raises(ServerError, match=r"^the answer is encoded with `zstd`"):
            fw.request_action("github.pr.merge")
    assert server.requests[0]["Accept-Encoding"] == "gzip, deflate"
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    ("encoding", "wbits"),
    [("gzip", 16 + zlib.MAX_WBITS), ("deflate", zlib.MAX_WBITS), ("identity", None)],
)
def test_an_answer_within_the_cap_is_read_as_before(
    serve: list[Answers], encoding: str, wbits: int | None
) -> None:
    body = json.dumps(ALLOWED).encode()
    if wbits is not None:
        encoder = zlib.compressobj(6, zlib.DEFLATED, wbits)
        body = encoder.compress(body) + encoder.flush()
    server = start(serve, 200, {"Content-Encoding": encoding}, body)
    with AgentFirewall(api_key=KEY, base_url=server.url) as fw:
        assert fw.request_action("github.pr.merge").allowed


def test_a_broken_compression_is_a_server_error(serve: list[Answers]) -> None:
    server = start(serve, 200, {"Content-Encoding": "gzip"}, b"not gzip at all")
    with AgentFirewall(api_key=KEY, base_url=server.url, retry_backoff=0) as fw:
        with pytest.raises(ServerError, match="not readable"):
            fw.request_action("github.pr.merge")
    assert len(server.requests) == 1
