"""An LLM token budget counts a request that was sent upstream and got no response head at
all as the most it may have used: the provider may have billed it (docs/budgets.md). Only
a request never sent counts nothing.

Through the real gateway, with a real control plane and the fake OpenAI (``tests/fakes``)
behind a TCP link the test can break: the official `openai` client, or a raw TLS client
that hangs up mid-body. The spend is read from the control plane (``GET
/v1/budgets/{name}``), and the traffic record says it was estimated.

Before: each of these settled 0 tokens (``Budgets.settle`` sent no usage: the control
plane counted the call as free), whichever way the head failed to come.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import pytest

from agentfirewall_proxy.control import HttpControl
from agentfirewall_proxy.options import parse_resolve
from tests.fakes import FakeUpstream, FakeUpstreams, start_fakes
from tests.livesrv import LiveServer
from tests.proxy.support import (
    CREDENTIALS,
    PLACEHOLDER,
    Background,
    RunningGateway,
    ca_bundle,
    gateway_options,
)

HOST = "api.openai.com"
AGENT = "Chat-Bot"
BUDGET = "llm-tokens"
MODEL = "gpt-4o-mini"
MAX_TOKENS = 50
USAGE = {"prompt_tokens": 300, "completion_tokens": 100, "total_tokens": 400}
#: How long the gateway waits for the upstream's head (then 504).
UPSTREAM_TIMEOUT = 2.0
#: The request body the gateway reads before deciding: more is streamed after the head.
INSPECT_LIMIT = 4096
#: The longest the fake holds a request (bounded: a failed test never hangs).
HOLD_LIMIT = 30.0


def poll(found: Callable[[], Any], timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := found():
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


class Holding:
    """The fake OpenAI's app, holding each request it received (recorded) unanswered
    while `holding`, until `release` (at most :data:`HOLD_LIMIT` seconds)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.holding = False
        self.released = threading.Event()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self.holding and scope["type"] == "http":
            deadline = time.monotonic() + HOLD_LIMIT
            while not self.released.is_set() and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
        await self.app(scope, receive, send)


class Link(Background):
    """The network between the gateway and the fake OpenAI: a TCP relay to its TLS port
    (TLS passes through untouched) that can reset every connection it carries (`reset`)
    or refuse new ones (`refusing`: closed before the TLS handshake)."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.refusing = False
        self.carried: list[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = []
        super().__init__(self._relay)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refusing:
            return  # (Background aborts the connection)
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        self.carried.append((writer, up_writer))
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            up_writer.transport.abort()

    def reset(self) -> None:
        """Reset every connection carried now, both sides (RST, not FIN)."""

        def abort() -> None:
            for pair in self.carried:
                for writer in pair:
                    sock = writer.get_extra_info("socket")
                    with contextlib.suppress(OSError):
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                        struct.pack("ii", 1, 0))  # fmt: skip
                    writer.transport.abort()
            self.carried.clear()

        self.loop.call_soon_threadsafe(abort)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.transport.abort()


@dataclass
class World:
    server: LiveServer
    running: RunningGateway
    fake: FakeUpstream
    held: Holding
    link: Link
    key: str
    verify: ssl.SSLContext
    client: openai.OpenAI

    def used(self) -> float:
        """The budget's spend once nothing is in flight."""

        def settled() -> dict[str, Any] | None:
            state: dict[str, Any] = self.server.admin("GET", f"/v1/budgets/{BUDGET}").json()
            return state["state"] if state["state"]["in_flight"] == 0 else None

        return float(poll(settled)["used"])

    def spent(self, before: float, expected: float) -> None:
        """The budget's spend grows by `expected`, once settled."""
        deadline = time.monotonic() + 30
        used = self.used()
        while used != pytest.approx(before + expected) and time.monotonic() < deadline:
            time.sleep(0.05)
            used = self.used()
        assert used - before == pytest.approx(expected)

    def ask(self) -> Any:
        """One chat completion through the gateway: its answer or the error it raised."""
        try:
            return self.client.chat.completions.create(
                model=MODEL, max_tokens=MAX_TOKENS, messages=[{"role": "user", "content": "hi"}]
            )
        except openai.APIError as exc:
            return exc

    def ask_held(self) -> tuple[threading.Thread, list[Any], bytes]:
        """A call the fake receives and holds: the thread making it, where its outcome
        goes, and the body the upstream received."""
        count = len(self.fake.requests)
        self.held.holding = True
        self.held.released.clear()
        out: list[Any] = []
        thread = threading.Thread(target=lambda: out.append(self.ask()), daemon=True)
        thread.start()
        received = self.fake.wait_for(count + 1, timeout=20)[-1]
        return thread, out, received.body

    def release(self, thread: threading.Thread) -> None:
        self.held.released.set()
        self.held.holding = False
        thread.join(30)
        assert not thread.is_alive()

    def killed(self) -> bool | None:
        """Whether the gateway's config has a kill switch on (None: no config yet)."""
        gateway = self.running.gateway
        config = gateway.config if gateway is not None else None
        return None if config is None else config.kill.active

    def reasons(self) -> list[str]:
        rows = self.server.admin("GET", "/v1/traffic", params={"limit": 1000}).json()["traffic"]
        return [str(r.get("reason") or "") for r in rows]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("nohead")
    server = LiveServer.start(tmp / "tf")
    fakes: FakeUpstreams = start_fakes(["openai"])
    fake = fakes["openai"]
    fake.settings["usage"] = USAGE
    held = Holding(fake.app)
    fake.app = held
    link = Link(fake.tls_port)
    running: RunningGateway | None = None
    http: httpx.Client | None = None
    try:
        key = server.create_agent(AGENT)
        body = {"type": "openai", "token": CREDENTIALS["openai"]}
        assert server.admin("POST", "/v1/connectors", json=body).status_code == 201
        rule = {"agent": AGENT, "connector": "openai", "action_pattern": "openai.*",
                "decision": "allow"}  # fmt: skip
        assert server.admin("POST", "/v1/permissions", json=rule).status_code in (200, 201)
        budget = {"connector": "openai", "measure": "tokens", "window": "day",
                  "limit": 100_000_000}  # fmt: skip
        assert server.admin("PUT", f"/v1/budgets/{BUDGET}", json=budget).status_code == 201
        options = gateway_options(tmp, fakes, resolve=parse_resolve([f"{HOST}=127.0.0.1:"
                                  f"{link.port}"]), upstream_timeout=UPSTREAM_TIMEOUT,
                                  body_inspect_limit=INSPECT_LIMIT)  # fmt: skip
        control = HttpControl(server.url, server.gateway_token)
        running = RunningGateway(options, control).start()
        gateway = running
        poll(lambda: gateway.gateway and gateway.gateway.config and gateway.gateway.config.budgets)
        bundle = ca_bundle(running.ca_path, tmp / "bundle.pem")
        verify = ssl.create_default_context(cafile=str(bundle))
        http = httpx.Client(proxy=running.proxy_url(key, AGENT), trust_env=False, verify=verify,
                            timeout=20)  # fmt: skip
        client = openai.OpenAI(api_key=PLACEHOLDER, http_client=http, max_retries=0)
        yield World(server, running, fake, held, link, key, verify, client)
    finally:
        held.released.set()
        if http is not None:
            http.close()
        if running is not None:
            running.stop()
        link.stop()
        fakes.stop()
        server.stop()


def test_a_request_never_sent_counts_nothing(world: World) -> None:
    """The upstream cannot be reached (its connection closed before TLS): released. (First:
    no upstream connection is pooled yet, so the call must open one.)"""
    before = world.used()
    world.link.refusing = True
    try:
        answer = world.ask()
    finally:
        world.link.refusing = False
    assert isinstance(answer, openai.APIStatusError)
    assert answer.status_code == 502
    assert world.used() == pytest.approx(before)


def test_an_answered_call_counts_its_usage(world: World) -> None:
    """(The baseline: the head came, the usage is read.)"""
    before = world.used()
    answer = world.ask()
    assert not isinstance(answer, Exception), answer
    world.spent(before, 400)


def test_an_upstream_reset_after_the_request_counts_the_most(world: World) -> None:
    before = world.used()
    thread, out, body = world.ask_held()
    world.link.reset()
    thread.join(30)
    assert isinstance(out[0], openai.APIStatusError)
    assert out[0].status_code == 502
    world.release(thread)
    world.spent(before, len(body) + MAX_TOKENS)
    said = (f"usage estimated: no response came: counted as the most it may have used "
            f"({len(body)} input, {MAX_TOKENS} output tokens)")  # fmt: skip
    poll(lambda: any(said in reason for reason in world.reasons()))


def test_an_upstream_timeout_after_the_request_counts_the_most(world: World) -> None:
    before = world.used()
    thread, out, body = world.ask_held()
    thread.join(UPSTREAM_TIMEOUT + 20)
    assert isinstance(out[0], openai.APIStatusError)
    assert out[0].status_code == 504
    world.release(thread)
    world.spent(before, len(body) + MAX_TOKENS)


def test_a_call_the_kill_switch_cuts_before_its_head_counts_the_most(world: World) -> None:
    before = world.used()
    thread, out, body = world.ask_held()
    switch = {"active": True, "scope": "openai", "reason": "incident"}
    assert world.server.admin("POST", "/v1/kill-switch", json=switch).status_code == 200
    try:
        thread.join(30)
        assert isinstance(out[0], openai.PermissionDeniedError)
    finally:
        switch["active"] = False
        assert world.server.admin("POST", "/v1/kill-switch", json=switch).status_code == 200
        poll(lambda: world.killed() is False)
        world.release(thread)
    world.spent(before, len(body) + MAX_TOKENS)


def test_an_agent_that_hangs_up_mid_body_counts_the_most(world: World) -> None:
    """The body is longer than the gateway reads before deciding: its head and first part
    are sent upstream, then the agent leaves before the rest (and before any head)."""
    before = world.used()
    messages = [{"role": "user", "content": "x" * 20_000}]
    body = json.dumps({"model": MODEL, "max_tokens": MAX_TOKENS, "messages": messages}).encode()
    sent = body[: 3 * INSPECT_LIMIT]
    token = base64.b64encode(f"{AGENT}:{world.key}".encode()).decode()
    with socket.create_connection(("127.0.0.1", world.running.port), timeout=10) as raw:
        raw.sendall(f"CONNECT {HOST}:443 HTTP/1.1\r\nHost: {HOST}:443\r\n"
                    f"Proxy-Authorization: Basic {token}\r\n\r\n".encode())  # fmt: skip
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += raw.recv(4096)
        assert answer.startswith(b"HTTP/1.1 200")
        with world.verify.wrap_socket(raw, server_hostname=HOST) as tls:
            head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: {HOST}\r\n"
                    f"Authorization: Bearer {PLACEHOLDER}\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n").encode()  # fmt: skip
            tls.sendall(head + sent)
    world.spent(before, len(sent) + MAX_TOKENS)
