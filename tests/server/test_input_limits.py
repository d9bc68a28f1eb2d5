"""Input limits (docs/api.md): each input the fuzzer found a 500 with is a 4xx naming the field.

A real server in a subprocess, on SQLite and PostgreSQL; keep-alive reuse is checked on
one raw socket, so a reset after a 4xx cannot hide behind a client's reconnect.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h11
import pytest

from agentfirewall.jsonlimits import json_problem
from tests.livesrv import LiveServer
from tests.server.apiwalk import SPEC, World
from tests.slices import FUZZ_ALL_ENV, engine_half


@pytest.fixture
def world(tmp_path: Path, database_url: str) -> Iterator[World]:
    server = LiveServer.start(tmp_path / "tf", env={"AGENTFIREWALL_DATABASE_URL": database_url})
    try:
        yield World.build(server)
    finally:
        server.stop()


def _raw(body: Any) -> bytes:
    return body if isinstance(body, bytes) else json.dumps(body).encode()


def _deep(depth: int) -> bytes:
    return b'{"action_spec": ' + b"[" * depth + b"1" + b"]" * depth + b"}"


DEPTHS = (65, 1000, 1025, 100_000)


def test_deep_nesting_is_refused_on_every_json_endpoint(world: World, database_url: str) -> None:
    """Every (depth, JSON endpoint) pair: CI sends every other pair on each engine (the odd
    ones on SQLite, the even ones on PostgreSQL: each pair once, `tests/slices.py`), nox -s
    fuzz every pair on both; `POST /v1/actions` gets every depth on both."""
    pairs = [(depth, endpoint) for depth in DEPTHS for endpoint in world.endpoints]
    for depth, endpoint in engine_half(pairs, database_url, FUZZ_ALL_ENV):
        r = world.server.request(
            endpoint.method,
            endpoint.path,
            endpoint.token,
            content=_deep(depth),
            headers={"content-type": "application/json"},
        )
        assert r.status_code < 500, (endpoint.template, depth, r.text)
        if r.status_code == 400 and "slack" not in endpoint.template:
            assert "nest" in r.json()["message"], r.text
    for depth in DEPTHS:
        r = world.server.agent(world.agent_key, "POST", "/v1/actions", content=_deep(depth))
        assert r.status_code == 400
        assert r.json()["error"] == "invalid_request"


SURROGATES = [
    ({"action_spec": {**SPEC, "type": "\ud800"}}, "action_spec.type"),
    ({"action_spec": {**SPEC, "parameters": {"x": "a\ud800"}}}, "action_spec.parameters.x"),
    ({"action_spec": {**SPEC, "risk_hints": {"\udfff": 1}}}, "action_spec.risk_hints.\\udfff"),
    ({"action_spec": {**SPEC, "resource": {"target": "\ud800"}}}, "action_spec.resource.target"),
]


def test_lone_surrogates_are_refused_and_never_echoed(world: World) -> None:
    for body, field in SURROGATES:
        r = world.server.agent(world.agent_key, "POST", "/v1/actions", content=_raw(body))
        assert r.status_code == 400, r.text
        assert r.json()["field"] == field
        assert "invalid unicode" in r.json()["message"]
        assert json_problem(r.json()) is None  # nothing in the answer decodes to a surrogate
    for body, field in CONNECTOR_SURROGATES:
        r = world.server.admin("POST", "/v1/connectors", content=_raw(body))
        assert r.status_code == 400, r.text
        assert r.json()["field"] == field
        assert json_problem(r.json()) is None


CONNECTOR_SURROGATES = [
    ({"type": "webhook", "domains": ["a\ud800.example.com"]}, "domains.0"),
    ({"type": "sendgrid", "options": {"from": "\ud800@x.y"}}, "options.from"),
    ({"type": "generic", "domains": ["x.io"], "base_url": "https://\udc80/"}, "base_url"),
]
HUGE = [b"1" + b"0" * 400, b"1e400", b"1e300", b"18446744073709551616", b"-9223372036854775809"]


def test_traffic_numbers_out_of_range_are_refused(world: World) -> None:
    for raw in HUGE:
        body = b'{"records": [{"request_id": "r1", "bytes_in": ' + raw + b"}]}"
        r = world.server.gateway("POST", "/v1/gateway/traffic", content=body)
        assert r.status_code == 422, r.text
        assert r.json()["field"] == "records.0.bytes_in"
    ok = world.server.gateway(
        "POST", "/v1/gateway/traffic", {"records": [{"request_id": "r2", "bytes_in": 2**63 - 1}]}
    )
    assert ok.status_code == 200, ok.text
    listed = world.server.admin("GET", "/v1/traffic").json()
    stored = [t for t in listed["traffic"] if t["request_id"] == "r2"]
    assert [t["bytes_in"] for t in stored] == [2**31 - 1]  # saturated, the record kept


BAD_URLS = [
    "file:///etc/passwd",
    "gopher://127.0.0.1:70/_x",
    "ftp://example.com/x",
    "http://127.0.0.1:99999/",
    "http://[::1/",
    "not a url",
    "http:///x",
    "//host",
    "http://host:0/",
    "http://" + "a" * 64 + ".example.com/",
]


def test_bad_urls_are_422(world: World) -> None:
    for url in BAD_URLS:
        _refuse_url(world, url)


def _refuse_url(world: World, url: str) -> None:
    connector = {"type": "generic", "domains": ["api.example.com"], "base_url": url}
    r = world.server.admin("POST", "/v1/connectors", connector)
    assert r.status_code == 422, r.text
    assert r.json()["field"] == "base_url"
    spec = {**SPEC, "resource": {"provider": "webhook", "target": url}}
    # refused as the action is requested, naming the field (it was decided, then refused
    # only at execution)
    r = world.server.agent(world.agent_key, "POST", "/v1/actions", {"action_spec": spec})
    assert r.status_code == 422, r.text
    assert r.json()["field"] == "action_spec.resource.target"
    assert r.json()["message"].startswith("invalid url")


class _Conn:
    """One HTTP/1.1 connection (h11 over a socket): every request must reuse it."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.h11 = h11.Connection(h11.CLIENT)

    def call(self, method: str, path: str, token: str, body: bytes) -> tuple[int, bytes]:
        if self.h11.our_state is h11.DONE:
            self.h11.start_next_cycle()
        headers = [
            ("host", "127.0.0.1"),
            ("authorization", f"Bearer {token}"),
            ("content-type", "application/json"),
            ("content-length", str(len(body))),
        ]
        self.sock.sendall(self.h11.send(h11.Request(method=method, target=path, headers=headers)))
        self.sock.sendall(self.h11.send(h11.Data(data=body)) + self.h11.send(h11.EndOfMessage()))
        status, chunks = 0, []
        while True:
            event = self.h11.next_event()
            if event is h11.NEED_DATA:
                data = self.sock.recv(65536)
                assert data, "the server closed the connection"
                self.h11.receive_data(data)
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                return status, b"".join(chunks)

    def head_only(
        self, path: str, token: str, length: int
    ) -> tuple[int, dict[bytes, bytes], bytes]:
        """Announce a body of `length` bytes, send none, read the answer."""
        headers = [
            ("host", "127.0.0.1"),
            ("authorization", f"Bearer {token}"),
            ("content-length", str(length)),
        ]
        self.sock.sendall(self.h11.send(h11.Request(method="POST", target=path, headers=headers)))
        status, seen, chunks = 0, {}, []
        while True:
            event = self.h11.next_event()
            if event is h11.NEED_DATA:
                self.h11.receive_data(self.sock.recv(65536))
            elif isinstance(event, h11.Response):
                status, seen = event.status_code, dict(event.headers)
            elif isinstance(event, h11.Data):
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                return status, seen, b"".join(chunks)

    def close(self) -> None:
        self.sock.close()


def test_the_connection_stays_usable_after_each_4xx(world: World) -> None:
    conn = _Conn(world.server.port)
    key = world.agent_key
    good = _raw({"action_spec": SPEC})
    bad = [
        (_deep(5000), 400),
        (_raw({"action_spec": {**SPEC, "type": "\ud800"}}), 400),
        (b"{not json", 400),
        (b"[]", 422),
        (b'{"action_spec": {"type": "a.b", "parameters": {"n": 1e400}}}', 422),
        (b"x" * (2 * 1024 * 1024), 413),  # twice the limit: read and dropped, then 413
    ]
    try:
        for body, status in bad:
            got, answer = conn.call("POST", "/api/v1/actions", key, body)
            assert got == status, answer
            assert {"error", "message"} <= json.loads(answer).keys()
            got, answer = conn.call("POST", "/api/v1/actions", key, good)
            assert got == 200, answer
    finally:
        conn.close()


def test_a_body_far_over_the_limit_is_refused_with_connection_close(world: World) -> None:
    conn = _Conn(world.server.port)
    try:
        status, headers, answer = conn.head_only("/api/v1/actions", world.agent_key, 5 * 2**20)
    finally:
        conn.close()
    assert status == 413
    assert headers.get(b"connection") == b"close"
    assert json.loads(answer)["limit_bytes"] == 1024 * 1024


@pytest.mark.parametrize("action", ["github.pr.merge", "github.repo.delete"])  # allowed, held
def test_a_nul_in_a_resource_name_is_422_and_nothing_is_recorded(world: World, action: str) -> None:
    """A resource name is stored as text (the approval's connector, the action's columns):
    a NUL, which no PostgreSQL text column holds, is refused by name, not a 500."""
    before = world.server.admin("GET", "/v1/approvals").json()
    for field in ("provider", "account", "target", "environment"):
        resource = {"provider": "github", "account": "acme", "target": "acme/app#1", field: "a\0b"}
        spec = {"type": action, "resource": resource}
        r = world.server.agent(world.agent_key, "POST", "/v1/actions", json={"action_spec": spec})
        assert r.status_code == 422, r.text
        assert r.json()["field"] == f"action_spec.resource.{field}"
        assert "NUL" in r.json()["message"]
    assert world.server.admin("GET", "/v1/approvals").json() == before
