"""MCP through the real gateway: only the endpoint, only Streamable HTTP, no argument stored.

Hunt H7 (defects 3 and 4) and H2 (defect 2), each reproduced through a gateway on
127.0.0.1 in front of real upstreams, requests as raw bytes in CONNECT+TLS tunnels, the
cases of a test sent concurrently, the decisive header last in its own write:

- a WebSocket handshake to an MCP connector was ``mcp.stream.open`` and answered 101, after
  which every ``tools/call`` on the connection reached the server unread; now 403, nothing
  reaches the upstream;
- with ``base_url: https://mcp.example.com/mcp``, ``DELETE /api/v1/repos/acme/prod`` was
  ``mcp.session.close`` and a POST anywhere with a JSON-RPC body an MCP call; now
  ``mcp.unknown.<method>``, which ``mcp.*`` does not grant;
- a tool call's arguments were in the traffic record the gateway ships (and the control
  plane stores and shows for 30 days), though the docs say they never are.
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import pytest

from agentfirewall.connectors import HttpRequest
from agentfirewall_proxy.control import StaticControl
from agentfirewall_proxy.options import parse_resolve
from agentfirewall_proxy.snapshot import compile_snapshot
from tests.fakes import FakeUpstreams
from tests.fakes.reflect import WebSocketReflector
from tests.proxy.rawclient import read_response, status_of, tunnel
from tests.proxy.support import (
    KEY,
    RunningGateway,
    connector,
    key_hash,
    rule,
    snapshot,
    start_gateway,
)

ENDPOINT = "mcp.example.com"  # the fake MCP server; the connector's base_url ends in /mcp
WS_HOST = "mcp-ws.example.com"  # a WebSocket server; its connector has domains only


@pytest.fixture(scope="module")
def world(
    fakes: FakeUpstreams, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RunningGateway, StaticControl, WebSocketReflector]]:
    ws = WebSocketReflector(fakes.ca, (WS_HOST,)).start()
    connectors = [
        connector("mcp", domains=[ENDPOINT], base_url=f"https://{ENDPOINT}/mcp"),
        connector("mcp", id="conn_mcp_ws", name="mcp-ws", domains=[WS_HOST]),
    ]
    # every MCP operation allowed but one tool: what a request is named decides everything
    rules = [rule("mcp.*", "allow"), rule("mcp.tools.delete_repo", "deny")]
    resolve = parse_resolve(fakes.resolve_entries() + ws.resolve_entries())
    running, control = start_gateway(
        tmp_path_factory.mktemp("mcp-h7"), fakes, snapshot(rules, connectors=connectors),
        resolve=resolve,
    )  # fmt: skip
    try:
        yield running, control, ws
    finally:
        running.stop()
        ws.stop()


def _exchange(running: RunningGateway, host: str, head: str, last: str, body: bytes) -> bytes:
    """Send `head`, then `last` (the decisive header) and the body in a second write: the
    answer."""
    with tunnel(running.port, host, running.ca_path) as tls:
        tls.sendall(head.encode())
        time.sleep(0.02)  # (two TLS records: the gateway reads the head in two parts)
        tls.sendall(f"{last}\r\n\r\n".encode() + body)
        return read_response(tls, 10)


def _records(control: StaticControl, paths: set[str], count: int) -> dict[str, dict[str, Any]]:
    """The traffic records of `paths` (one each), waiting until `count` are in."""
    found: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + 10
    while len(found) < count and time.monotonic() < deadline:
        found = {r["path"]: r for r in list(control.traffic) if r["path"] in paths}
        time.sleep(0.02)
    return found


def _handshake(spelling: str, path: str) -> tuple[str, str]:
    key = base64.b64encode(os.urandom(16)).decode()
    head = (
        f"GET {path} HTTP/1.1\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Protocol: mcp\r\nConnection: Upgrade\r\n"
    )
    return head, f"Upgrade: {spelling}"


SPELLINGS = ["websocket", "WebSocket", "WEBSOCKET", " websocket "]


def test_a_websocket_handshake_to_an_mcp_connector_is_refused(world, fakes) -> None:
    running, control, ws = world
    before = len(fakes["mcp"].received())
    cases = [
        (host, f"/mcp/{host.split('.')[0]}{index}", spelling)
        for host in (WS_HOST, ENDPOINT)
        for index, spelling in enumerate(SPELLINGS)
    ]

    def attempt(case: tuple[str, str, str]) -> bytes:
        host, path, spelling = case
        head, last = _handshake(spelling, path)
        return _exchange(running, host, f"{head}Host: {host}\r\n", last, b"")

    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(attempt, cases))
    records = _records(control, {path for _, path, _ in cases}, len(cases))
    for (host, path, spelling), answer in zip(cases, answers, strict=True):
        record, status = records[path], status_of(answer)
        assert status == 403, f"{host}{path} `Upgrade: {spelling}` answered {status}"
        assert b'"denied"' in answer
        assert b"streamable http" in answer
        assert (record["decision"], record["action"]) == ("deny", None), record
        assert "websocket" in record["reason"]
        assert "streamable http" in record["reason"]
    assert ws.handshakes == []  # nothing reached either upstream
    assert fakes["mcp"].received()[before:] == []


#: (method, path, body): every MCP operation's shape, on paths outside the endpoint `/mcp`
LIST = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "confirm": True})
OUTSIDE = [
    ("DELETE", "/api/v1/repos/acme/prod", ""),
    ("GET", "/api/v1/repos/acme/prod/events", ""),
    ("POST", "/api/v1/repos/acme/prod/delete", LIST),
    ("POST", "/mcpx", LIST),
    ("POST", "/MCP", LIST),
    ("DELETE", "/x/mcp", ""),
]


def _plain(running: RunningGateway, method: str, path: str, body: str) -> int:
    extra = f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n" if body else ""
    head = f"{method} {path} HTTP/1.1\r\n{extra}Connection: close\r\n"
    return status_of(_exchange(running, ENDPOINT, head, f"Host: {ENDPOINT}", body.encode()))


def test_a_request_outside_the_endpoint_is_no_mcp_operation(world, fakes) -> None:
    running, control, _ = world
    fake = fakes["mcp"]
    before = len(fake.received())
    with ThreadPoolExecutor(4) as pool:
        statuses = list(pool.map(lambda case: _plain(running, *case), OUTSIDE))
    records = _records(control, {path for _, path, _ in OUTSIDE}, len(OUTSIDE))
    for (method, path, _), status in zip(OUTSIDE, statuses, strict=True):
        record = records[path]
        named = (status, record["action"], record["decision"])
        assert named == (403, f"mcp.unknown.{method.lower()}", "deny"), f"{method} {path}: {named}"
    assert [(r.method, r.path) for r in fake.received()[before:]] == []


def test_the_endpoint_is_still_mcp(world, fakes) -> None:
    running, control, _ = world
    fake = fakes["mcp"]
    call = {"jsonrpc": "2.0", "id": 3, "method": "tools/call",
            "params": {"name": "delete_repo", "arguments": {"repo": "prod"}}}  # fmt: skip
    assert _plain(running, "POST", "/mcp", json.dumps(call)) == 403  # denied by name
    assert _plain(running, "POST", "/%6Dcp", LIST.replace("1", "4")) == 200  # = /mcp
    assert _plain(running, "DELETE", "/mcp/", "") == 307  # forwarded (Starlette: to /mcp)
    records = _records(control, {"/mcp", "/%6Dcp", "/mcp/"}, 3)
    assert {p: (r["action"], r["decision"]) for p, r in records.items()} == {
        "/mcp": ("mcp.tools.delete_repo", "deny"),
        "/%6Dcp": ("mcp.tools.list", "allow"),
        "/mcp/": ("mcp.session.close", "allow"),
    }
    forwarded = [(r.method, r.path) for r in fake.received()][-2:]
    assert forwarded == [("POST", "/%6Dcp"), ("DELETE", "/mcp/")]  # (the denied call: not)


MEMO = "Patient Jane Roe, diagnosis: HIV positive"
EMAIL = "jane.roe@example.org"


def test_no_tool_argument_is_in_the_traffic_record(world) -> None:
    """What the gateway ships is what the control plane stores (``decision_input``) and
    ``GET /api/v1/traffic`` shows: the tool's name, never what it was called with."""
    running, control, _ = world
    transfer = {"name": "transfer", "arguments": {"to": EMAIL, "memo": MEMO, "amount": 5}}
    single = {"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": transfer}
    batch = [
        {"jsonrpc": "2.0", "id": 6, "method": "tools/call", "params": transfer},
        {"jsonrpc": "2.0", "id": 7, "method": "prompts/get",
         "params": {"name": "p", "arguments": {"patient": MEMO}}},
    ]  # fmt: skip
    sent = {"/mcp/single": single, "/mcp/batch": batch}
    with ThreadPoolExecutor(2) as pool:
        statuses = list(pool.map(lambda p: _plain(running, "POST", p, json.dumps(sent[p])), sent))
    assert statuses == [404, 404]  # allowed and forwarded (the fake serves /mcp alone)
    records = _records(control, set(sent), 2)
    for path, record in records.items():
        stored = json.dumps(record["input"])
        assert MEMO not in stored, f"{path}: {stored}"
        assert EMAIL not in stored, f"{path}: {stored}"
    one = records["/mcp/single"]["input"]
    assert (one["t"], one["p"], sorted(one["w"])) == (
        "mcp.tools.transfer", {"tool": "transfer"}, ["amount", "memo", "to"],
    )  # fmt: skip
    whole = records["/mcp/batch"]["input"]  # the batch and each member, as decided
    actions = {whole["t"]: whole, **{m["t"]: m for m in whole["x"]}}
    assert set(actions) == {"mcp.rpc.batch", "mcp.tools.transfer", "mcp.rpc.prompts_get"}
    assert actions["mcp.tools.transfer"]["p"] == {"tool": "transfer"}
    assert actions["mcp.rpc.prompts_get"]["p"] == {"name": "p"}
    assert "p" not in actions["mcp.rpc.batch"] or "members" not in actions["mcp.rpc.batch"]["p"]


@pytest.mark.parametrize("level", ["monitor", "soft_enforce", "full_enforce"])
def test_a_websocket_handshake_is_refused_at_every_level(level: str) -> None:
    """What cannot be decided is refused whatever the agent's enforcement level (guarantee
    1): a monitored agent's handshake is no `would_deny` relayed unread."""
    config = compile_snapshot(snapshot([rule("mcp.*", "allow")], level=level,
                                       connectors=[connector("mcp")]))  # fmt: skip
    agent = config.agent_for_key(key_hash(KEY))
    entry = config.route(ENDPOINT)
    assert agent is not None
    assert entry is not None
    headers = (("Upgrade", "websocket"), ("Connection", "Upgrade"))
    handshake = HttpRequest.from_url("GET", f"https://{ENDPOINT}/mcp", headers=headers)
    parsed, decision, _ = config.decide(agent, entry, handshake, datetime.now(UTC))
    assert (parsed, decision.outcome) == (None, "deny"), decision
    assert "refused websocket upgrade" in decision.reason
