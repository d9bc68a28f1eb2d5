"""An LLM token budget never counts a call as free: through the real gateway, with a content
rule reading responses or not, a raw upstream answering as OpenAI does, and a control
plane in memory that grants each call a reservation and keeps what it settles with.

- the usage is read on both ways back: relayed as it comes, and checked by content rules
  (before: any rule reading `response.*`, even one scoped to `mcp.` actions, sent every
  response through a path that read no usage, and every call settled at 0 tokens);
- a JSON answer past 8 MiB is read (before: dropped, 0 tokens);
- an agent that stops reading mid-stream does not stop the count: the rest is read for
  the usage (before: OpenAI's usage, in the last chunk, was never seen: 0 tokens);
- a usage that cannot be read (the stream broke off, a JSON answer that is not JSON)
  settles at the most the call may have used, and its traffic record says so (before: 0).
"""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentfirewall_proxy.control import StaticControl
from agentfirewall_proxy.options import parse_resolve
from tests.proxy.rawclient import auth_header, read_all
from tests.proxy.rawupstream import http_answer, sse_answer
from tests.proxy.support import RunningGateway, connector, gateway_options, rule, snapshot
from tests.proxy.test_budget_broken_responses import CLOSE, Breaking

HOST = "llm.example.org"
PATH = "/v1/chat/completions"
USAGE = {"prompt_tokens": 300, "completion_tokens": 100, "total_tokens": 400}
REQUEST = json.dumps({"model": "gpt-4o-mini", "max_tokens": 50, "n": 2,
                      "messages": [{"role": "user", "content": "hi"}]}).encode()  # fmt: skip
#: What a call of REQUEST may have used at most: its bytes in, max_tokens times n out.
ESTIMATE = {"prompt_tokens": len(REQUEST), "completion_tokens": 100}
BUDGET = {"id": "bdg_tokens", "name": "tokens", "connector": "openai", "action": "*",
          "measure": "tokens", "agents": ["*"]}  # fmt: skip
#: docs/policies.md's rule: reads every response, applies to `mcp.` actions only.
MCP_ONLY = {"name": "cut-injected-tool-output", "rules": [{
    "name": "cut-injected-tool-output", "decision": "deny", "conditions": {"all": [
        {"field": "response.injection", "operator": "exists"},
        {"field": "action_spec.type", "operator": "starts_with", "value": "mcp."}]}}]}  # fmt: skip


def chunk(delta: dict[str, Any], **extra: Any) -> bytes:
    event = {"object": "chat.completion.chunk", "model": "gpt-4o-mini",
             "choices": [{"index": 0, "delta": delta}], **extra}  # fmt: skip
    return b"data: " + json.dumps(event).encode() + b"\n\n"


#: A streamed answer as OpenAI's with `include_usage`: the usage in the last chunk.
STREAM = [chunk({"content": f"w{i} "}) for i in range(3)]
LAST = chunk({}, usage=USAGE) + b"data: [DONE]\n\n"


class Ledger(StaticControl):
    """The control plane's side of reservations: each call gets its own, and what the
    gateway settles it with is kept by the call's request id."""

    def __init__(self, snap: dict[str, Any]) -> None:
        super().__init__(snap)
        self.reserved: dict[str, str] = {}
        self.settled: dict[str, dict[str, Any]] = {}

    async def reserve_budget(self, payload: dict[str, Any]) -> dict[str, Any]:
        reservation = f"res_{len(self.reserved)}"
        self.reserved[reservation] = payload["request_id"]
        return {"reservation": reservation, "refused": None}

    async def settle_budgets(self, payloads: list[dict[str, Any]]) -> None:
        for payload in payloads:
            self.settled[self.reserved[payload["reservation"]]] = payload


def _until(found: Any) -> Any:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if (value := found()) is not None:
            return value
        time.sleep(0.02)
    raise AssertionError("not there in time")


class World:
    def __init__(self, running: RunningGateway, control: Ledger, upstream: Breaking) -> None:
        self.running, self.control, self.upstream = running, control, upstream

    def connect(self, receive_buffer: int | None = None) -> socket.socket:
        sock = socket.socket()
        if receive_buffer:  # (set before connecting: the window it offers stays small)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.settimeout(10)
        sock.connect(("127.0.0.1", self.running.port))
        head = (f"POST http://{HOST}{PATH} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n"
                "Content-Type: application/json\r\n")  # fmt: skip
        length = f"Content-Length: {len(REQUEST)}\r\n".encode()
        sock.sendall(head.encode() + length + auth_header() + b"\r\n" + REQUEST)
        return sock

    def settled(self) -> dict[str, Any]:
        """What the last call settled with (``usage``, ``model``)."""
        request_id = self.request_id()
        payload: dict[str, Any] = _until(lambda: self.control.settled.get(request_id))
        assert payload["ok"] is True
        return payload

    def request_id(self) -> str:
        head = _until(lambda: self.upstream.received[-1][0] if self.upstream.received else None)
        found = re.search(rb"X-TameFlare-Request-Id: (\S+)", head)
        assert found is not None
        return found.group(1).decode()

    def reason(self) -> str:
        """The last call's traffic record's reason."""
        request_id = self.request_id()
        records = lambda: [r for r in self.control.traffic if r["request_id"] == request_id]  # noqa: E731
        return str(_until(lambda: records() or None)[0]["reason"])

    def call(self, answer: list[bytes]) -> tuple[bytes, dict[str, Any]]:
        """The agent's answer to one call the upstream answers `answer`, and its settlement."""
        self.upstream.answers[PATH] = answer
        with self.connect() as sock:
            got = read_all(sock, 10)
        return got, self.settled()


def _world(tmp: Path, policies: list[dict[str, Any]]) -> Iterator[World]:
    upstream = Breaking()
    conn = connector("openai", domains=[HOST], base_url=f"http://{HOST}")
    snap = snapshot([rule("openai.*", "allow")], connectors=[conn], policies=policies)
    snap["budgets"] = [BUDGET]
    control = Ledger(snap)
    # (an agent that stops reading is given up on after io_timeout: the test waits that long)
    options = gateway_options(tmp, None, resolve=parse_resolve([f"{HOST}:80=127.0.0.1:"
                              f"{upstream.port}"]), io_timeout=0.5)  # fmt: skip
    running = RunningGateway(options, control).start()
    try:
        yield World(running, control, upstream)
    finally:
        running.stop()
        upstream.stop()


@pytest.fixture(scope="module", params=["relayed", "guarded"])
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    """The gateway relaying responses as they come, or checking them (a rule reads every
    response's content, for `mcp.` actions only)."""
    guarded = [{"name": "mcp", "document": MCP_ONLY}] if request.param == "guarded" else []
    yield from _world(tmp_path_factory.mktemp(request.param), guarded)


def test_the_usage_is_read_on_both_ways_back(world: World) -> None:
    body = json.dumps({"model": "gpt-4o-mini", "choices": [], "usage": USAGE}).encode()
    assert world.call(http_answer(body))[1]["usage"] == USAGE
    got, settled = world.call(sse_answer([*STREAM, LAST]))
    assert b"data: [DONE]" in got
    assert (settled["usage"], settled["model"]) == (USAGE, "gpt-4o-mini")


def test_a_json_answer_past_8_mib_is_read(world: World) -> None:
    reply = {"model": "gpt-4o-mini", "choices": [{"message": {"content": "x" * (9 << 20)}}],
             "usage": USAGE}  # fmt: skip
    got, settled = world.call(http_answer(json.dumps(reply).encode()))
    assert got.startswith(b"HTTP/1.1 200")
    assert settled["usage"] == USAGE


def test_an_agent_that_stops_reading_does_not_stop_the_count(world: World) -> None:
    """It reads the head and no more: the gateway gives up writing to it (io_timeout), and
    reads the rest of the stream for its usage, in the last chunk."""
    padding = chunk({"content": "x" * (64 << 10)})
    world.upstream.answers[PATH] = sse_answer([*STREAM, *[padding] * 160, LAST])
    with world.connect(receive_buffer=4096) as sock:
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        settled = world.settled()  # (while the agent still holds its connection)
    assert settled["usage"] == USAGE


def test_a_usage_that_cannot_be_read_is_estimated(world: World) -> None:
    """The most the call may have used: its request's bytes in, max_tokens x n out."""
    broken = [*sse_answer(STREAM)[:-1], CLOSE]  # (no last chunk: no usage)
    settled = world.call(broken)[1]
    assert (settled["usage"], settled["model"]) == (ESTIMATE, "gpt-4o-mini")
    assert "usage estimated: the response was not read to its end" in world.reason()
    not_json = http_answer(b"<html>502 Bad Gateway</html>")
    assert world.call(not_json)[1]["usage"] == ESTIMATE


def test_what_is_read_on_is_bounded(world: World) -> None:
    """The agent left and the upstream then stalls: read on for at most the io timeout
    per read (and 64 MiB, and the upstream timeout), the call is then estimated."""
    padding = chunk({"content": "x" * (64 << 10)})
    world.upstream.answers[PATH] = sse_answer([*STREAM, *[padding] * 160])[:-1]
    with world.connect(receive_buffer=4096) as sock:
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        assert world.settled()["usage"] == ESTIMATE


def test_a_gateway_stopped_mid_stream_settles_what_it_knows(tmp_path: Path) -> None:
    """Shutting down cuts the streams in flight: each settles, estimated, before it ends
    (before: settled after the budgets were drained, so never; and at 0 tokens)."""
    worlds = _world(tmp_path, [])
    world = next(worlds)
    try:
        world.upstream.answers[PATH] = sse_answer(STREAM)[:-1]  # (then the upstream stalls)
        with world.connect() as sock:
            assert sock.recv(4096).startswith(b"HTTP/1.1 200")
            request_id = world.request_id()
            world.running.stop()
        assert world.control.settled[request_id]["usage"] == ESTIMATE
    finally:
        next(worlds, None)
