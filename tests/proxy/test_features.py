"""Passthrough tunnels, upstream proxy chaining, WebSocket upgrades, dedicated agent ports,
MCP and the generic connector's `generic.get` alias, through a real gateway."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import random
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentfirewall_proxy.control import StaticControl
from agentfirewall_proxy.options import parse_resolve
from tests.fakes import FakeUpstreams
from tests.proxy.rawclient import auth_header, read_response, status_of
from tests.proxy.support import (
    CREDENTIALS,
    KEY,
    OTHER_KEY,
    PLACEHOLDER,
    Background,
    ConnectRelay,
    RunningGateway,
    ca_bundle,
    connector,
    rule,
    snapshot,
    start_gateway,
)

Start = Callable[..., tuple[RunningGateway, StaticControl]]


@pytest.fixture
def start(fakes: FakeUpstreams, tmp_path: Path) -> Iterator[Start]:
    started: list[RunningGateway] = []

    def run(snap: dict[str, Any], **options: Any) -> tuple[RunningGateway, StaticControl]:
        running, control = start_gateway(tmp_path, fakes, snap, **options)
        started.append(running)
        return running, control

    yield run
    for running in started:
        running.stop()


def client(
    running: RunningGateway, key: str = KEY, verify: ssl.SSLContext | None = None
) -> httpx.Client:
    bundle = ca_bundle(running.ca_path, running.options.ca_dir / "bundle.pem")
    ctx = verify or ssl.create_default_context(cafile=str(bundle))
    return httpx.Client(proxy=running.proxy_url(key), verify=ctx, trust_env=False, timeout=20)


def test_passthrough_tunnels_without_interception(start: Start, fakes: FakeUpstreams) -> None:
    fakes["github"].clear()
    running, _ = start(
        snapshot([], connectors=[connector("github")]), passthrough=("api.github.com",)
    )
    # The client sees the upstream's own certificate (the fakes' CA), not the gateway's.
    with client(running, verify=fakes.ssl_context()) as http:
        answer = http.get("https://api.github.com/user", headers={"Authorization": PLACEHOLDER})
    assert answer.status_code == 200
    assert (
        fakes["github"].last().header("authorization") == PLACEHOLDER
    )  # not decided, not injected


@pytest.mark.parametrize("scope", [{"scope": "all", "target": None},
                                   {"scope": "agent", "target": "Bot"}])  # fmt: skip
def test_the_kill_switch_cuts_an_open_passthrough_tunnel(
    start: Start, fakes: FakeUpstreams, scope: dict[str, Any]
) -> None:
    """A passthrough tunnel is in flight like any request: a kill switch that covers its
    agent cuts both its sides at once, and its record says so."""
    snap = snapshot([], connectors=[connector("github")])
    running, control = start(snap, passthrough=("api.github.com",))
    raw = socket.create_connection(("127.0.0.1", running.port), timeout=10)
    raw.sendall(b"CONNECT api.github.com:443 HTTP/1.1\r\nHost: api.github.com:443\r\n"
                + auth_header(KEY) + b"\r\n")  # fmt: skip
    assert status_of(read_response(raw)) == 200
    with fakes.ssl_context().wrap_socket(raw, server_hostname="api.github.com") as tls:
        tls.sendall(b"GET /user HTTP/1.1\r\nHost: api.github.com\r\n\r\n")
        assert status_of(read_response(tls)) == 200  # kept alive: the tunnel stays open

        control.update({**snap, "kill_switches": [{**scope, "reason": "incident"}]})
        assert running.gateway is not None
        deadline = time.monotonic() + 10
        while running.gateway.require_config().version == 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        tls.settimeout(5)  # still open after 5 s: a TimeoutError fails the test
        with contextlib.suppress(ssl.SSLError, ConnectionResetError):  # cut without close_notify
            assert tls.recv(1) == b""  # cut: closed
    deadline = time.monotonic() + 10
    records: list[dict[str, Any]] = []
    while not records and time.monotonic() < deadline:
        records = [r for r in control.traffic if r.get("decision") == "killed"]
        time.sleep(0.05)
    (record,) = records
    assert (record["host"], record["agent"]) == ("api.github.com", "Bot")
    assert "kill_switch_active" in record["reason"]
    assert running.gateway.active == {}


def test_upstream_proxy_chaining(start: Start, fakes: FakeUpstreams) -> None:
    relay = ConnectRelay({"api.github.com:443": fakes["github"].tls_port})
    try:
        running, _ = start(snapshot([rule("github.*", "allow")], connectors=[connector("github")]),
                           upstream_proxy=f"http://127.0.0.1:{relay.port}", resolve={})  # fmt: skip
        with client(running) as http:
            assert http.get("https://api.github.com/user").status_code == 200
    finally:
        relay.stop()
    assert [head.split(b"\r\n", 1)[0] for head in relay.heads] == [
        b"CONNECT api.github.com:443 HTTP/1.1"
    ]
    assert fakes["github"].last().header("authorization") == f"token {CREDENTIALS['github']}"


def test_websocket_upgrade_is_decided_then_relayed(start: Start) -> None:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        assert b"upgrade: websocket" in head.lower()
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     b"Connection: Upgrade\r\n\r\n")  # fmt: skip
        while data := await reader.read(65536):
            writer.write(data.upper())
        writer.close()

    upstream = Background(echo)
    try:
        ws = connector("generic", domains=["ws.example"], credential=None)
        snap = snapshot([rule("generic.get", "allow", connector="generic")], connectors=[ws])
        running, _ = start(
            snap, resolve=parse_resolve([f"ws.example:80=127.0.0.1:{upstream.port}"])
        )
        token = base64.b64encode(f"Bot:{KEY}".encode())
        import socket

        with socket.create_connection(("127.0.0.1", running.port), timeout=5) as sock:
            sock.sendall(b"GET http://ws.example/chat HTTP/1.1\r\nHost: ws.example\r\n"
                         b"Connection: Upgrade\r\nUpgrade: websocket\r\n"
                         b"Proxy-Authorization: Basic " + token + b"\r\n\r\n")  # fmt: skip
            head = b""
            while b"\r\n\r\n" not in head:
                head += sock.recv(4096)
            assert head.startswith(b"HTTP/1.1 101")
            sock.sendall(b"hello frames")
            assert sock.recv(4096) == b"HELLO FRAMES"
    finally:
        upstream.stop()


def test_dedicated_agent_ports(start: Start, fakes: FakeUpstreams) -> None:
    first = random.randrange(30000, 60000)
    snap = snapshot([rule("github.*", "allow")], connectors=[connector("github")])
    running, control = start(snap, agent_ports=(first, first + 40))
    assert running.gateway is not None
    ports = running.gateway.agent_ports.ports
    assert set(ports) == {"Bot", "Other"}
    assert all(first <= port <= first + 40 for port in ports.values())
    bundle = ca_bundle(running.ca_path, running.options.ca_dir / "bundle.pem")
    ctx = ssl.create_default_context(cafile=str(bundle))
    own = f"http://Bot:{KEY}@127.0.0.1:{ports['Bot']}"
    with httpx.Client(proxy=own, verify=ctx, trust_env=False) as http:
        assert http.get("http://api.github.com/user").status_code == 200
    stolen = f"http://Other:{OTHER_KEY}@127.0.0.1:{ports['Bot']}"
    with httpx.Client(proxy=stolen, verify=ctx, trust_env=False) as http:
        assert http.get("http://api.github.com/user").status_code == 407
    deadline = time.monotonic() + 5
    while not any(h["agent_ports"] for h in control.heartbeats) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert any(h["agent_ports"] == ports for h in control.heartbeats)


def test_mcp_tools_are_decided_per_tool(start: Start, fakes: FakeUpstreams) -> None:
    fakes["mcp"].clear()
    snap = snapshot([rule("mcp.tools.echo", "allow"), rule("mcp.rpc.*", "allow"),
                     rule("mcp.tools.delete_everything", "deny")],
                    connectors=[connector("mcp")])  # fmt: skip
    running, _ = start(snap)

    def call(http: httpx.Client, tool: str) -> httpx.Response:
        body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                "params": {"name": tool, "arguments": {"text": "hi"}}}  # fmt: skip
        return http.post("https://mcp.example.com/mcp", json=body)

    with client(running) as http:
        assert call(http, "echo").json()["result"]["content"][0]["text"] == 'echo: {"text": "hi"}'
        denied = call(http, "delete_everything")
    assert denied.status_code == 403
    assert denied.json()["action"] == "mcp.tools.delete_everything"
    assert [json.loads(r.body)["params"]["name"] for r in fakes["mcp"].received()] == ["echo"]


def test_generic_rule_spelled_generic_get_matches_http_get(
    start: Start, fakes: FakeUpstreams
) -> None:
    fakes["stripe"].clear()
    generic = connector("generic", domains=["api.stripe.com"], credential="sk_generic",
                        auth_type="bearer")  # fmt: skip
    snap = snapshot([rule("generic.get", "allow", connector="generic"),
                     rule("generic.post", "require_approval", connector="generic")],
                    connectors=[generic], approval_timeout=1)  # fmt: skip
    running, _ = start(snap)
    with client(running) as http:
        assert http.get("https://api.stripe.com/v1/customers").status_code == 200
        assert (
            http.post("https://api.stripe.com/v1/charges", data={"amount": "1"}).status_code == 408
        )
    assert fakes["stripe"].last().header("authorization") == "Bearer sk_generic"
