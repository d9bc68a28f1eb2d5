"""Budgets and upgraded connections (WebSocket, HTTP 101) through a real gateway and control
plane: an OpenAI Realtime session is spent like any answered request (a `count` budget of 2
sessions refuses the third), and a token budget, whose usage an upgraded connection does
not report, refuses the session outright (403 `budget_unmetered`) before any frame passes.

Before: a 101 counted as a failed request, so its leased debit went back to the slice (a
reservation was released) and the budget never moved, whatever the sessions spent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from agentfirewall_proxy.control import HttpControl
from agentfirewall_proxy.options import parse_resolve
from tests.fakes import FakeUpstreams
from tests.livesrv import LiveServer
from tests.proxy.support import CREDENTIALS, PLACEHOLDER, RunningGateway, ca_bundle, gateway_options

REALTIME = "wss://api.openai.com/v1/realtime?model=gpt-4o-realtime-preview"
USAGE = {"total_tokens": 5000, "input_tokens": 2000, "output_tokens": 3000}


class Realtime:
    """A Realtime-like WebSocket upstream for api.openai.com (TLS, 127.0.0.1): answers each
    message with a `response.done` event carrying `usage`; counts sessions and messages."""

    def __init__(self, fakes: FakeUpstreams, tmp: Path) -> None:
        leaf = fakes.ca.issue_cert("api.openai.com")
        leaf.private_key_and_cert_chain_pem.write_to_path(str(tmp / "realtime.pem"))
        self._tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._tls.load_cert_chain(str(tmp / "realtime.pem"))
        self.sessions = 0
        self.messages = 0
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Future[None] | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(
            target=self._loop.run_until_complete, args=(self._main(),), daemon=True
        )

    async def _handler(self, ws: ServerConnection) -> None:
        self.sessions += 1
        with contextlib.suppress(ConnectionClosed):  # (a refused session is cut)
            async for _ in ws:
                self.messages += 1
                event = {
                    "type": "response.done",
                    "response": {"model": "gpt-4o-realtime-preview", "usage": USAGE},
                }
                await ws.send(json.dumps(event))

    async def _main(self) -> None:
        self._stop = self._loop.create_future()
        async with serve(self._handler, "127.0.0.1", 0, ssl=self._tls) as server:
            self.port = next(iter(server.sockets)).getsockname()[1]
            self._ready.set()
            await self._stop

    def start(self) -> Realtime:
        self._thread.start()
        assert self._ready.wait(10), "the realtime upstream did not start"
        return self

    def stop(self) -> None:
        def done() -> None:
            if self._stop is not None and not self._stop.done():
                self._stop.set_result(None)

        self._loop.call_soon_threadsafe(done)
        self._thread.join(10)
        self._loop.close()


Session = Callable[[], tuple[int, Any]]


@pytest.fixture
def realtime(fakes: FakeUpstreams, tmp_path: Path) -> Iterator[Realtime]:
    upstream = Realtime(fakes, tmp_path).start()
    try:
        yield upstream
    finally:
        upstream.stop()


def _gateway(
    server: LiveServer, fakes: FakeUpstreams, realtime: Realtime, tmp: Path
) -> tuple[RunningGateway, Session]:
    """A gateway whose api.openai.com is `realtime`, for the agent `Voice-Bot` (allowed the
    Realtime API), and a function opening one session: (status, upstream event or body)."""
    key = server.create_agent("Voice-Bot")
    body = {"type": "openai", "token": CREDENTIALS["openai"]}
    assert server.admin("POST", "/v1/connectors", json=body).status_code == 201
    for pattern in ("openai.*", "openai.unknown.*"):  # (the Realtime path has no route)
        rule = {
            "agent": "Voice-Bot",
            "connector": "openai",
            "action_pattern": pattern,
            "decision": "allow",
        }
        assert server.admin("POST", "/v1/permissions", json=rule).status_code in (200, 201)
    options = replace(
        gateway_options(tmp / "gw", fakes),
        resolve=parse_resolve([f"api.openai.com=127.0.0.1:{realtime.port}"]),
    )
    running = RunningGateway(options, HttpControl(server.url, server.gateway_token)).start()
    verify = ssl.create_default_context(cafile=str(ca_bundle(running.ca_path, tmp / "b.pem")))
    proxy = running.proxy_url(key, "Voice-Bot")

    def session() -> tuple[int, Any]:
        try:
            with connect(
                REALTIME,
                ssl=verify,
                proxy=proxy,
                open_timeout=45,  # (a loaded machine: the first opens the interception)
                additional_headers={"Authorization": f"Bearer {PLACEHOLDER}"},
            ) as ws:
                ws.send(json.dumps({"type": "response.create"}))
                return 101, json.loads(ws.recv(timeout=20))
        except InvalidStatus as exc:
            return exc.response.status_code, json.loads(bytes(exc.response.body or b"{}"))

    return running, session


def _wait_budgets(running: RunningGateway, count: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        config = running.gateway.config if running.gateway else None
        if config is not None and len(config.budgets) >= count:
            return
        time.sleep(0.05)
    raise AssertionError("the gateway never got the budgets")


def _state(server: LiveServer, name: str, done: Callable[[dict[str, Any]], bool]) -> Any:
    """The budget's state once `done` holds (slices handed back and reported: seconds)."""
    deadline = time.monotonic() + 30
    state: dict[str, Any] = {}
    while time.monotonic() < deadline:
        state = server.admin("GET", f"/v1/budgets/{name}").json()["state"]
        if done(state):
            return state
        time.sleep(0.1)
    raise AssertionError(f"budget `{name}` never settled: {state}")


def test_a_websocket_session_is_spent_from_a_count_budget(
    live_server: LiveServer, fakes: FakeUpstreams, realtime: Realtime, tmp_path: Path
) -> None:
    budget = {"connector": "openai", "measure": "count", "window": "day", "limit": 2}
    assert live_server.admin("PUT", "/v1/budgets/sessions", json=budget).status_code == 201
    running, session = _gateway(live_server, fakes, realtime, tmp_path)
    try:
        _wait_budgets(running, 1)
        first, second = session(), session()
        assert [first[0], second[0]] == [101, 101]
        assert first[1]["response"]["usage"] == USAGE  # (the sessions did spend)
        status, refused = session()
        assert status == 403, refused
        assert refused["error"] == "budget_exceeded"
        assert "budget `sessions` exceeded" in refused["reason"]
        assert realtime.sessions == 2  # the third never reached the upstream
        state = _state(live_server, "sessions", lambda s: s["leased"] == 0 and s["used"] == 2)
        assert (state["remaining"], state["in_flight"]) == (0, 0)
    finally:
        running.stop()


def test_a_token_budget_refuses_a_websocket_it_could_not_measure(
    live_server: LiveServer, fakes: FakeUpstreams, realtime: Realtime, tmp_path: Path
) -> None:
    budget = {"connector": "openai", "measure": "tokens", "window": "day", "limit": 1000}
    assert live_server.admin("PUT", "/v1/budgets/tokens", json=budget).status_code == 201
    running, session = _gateway(live_server, fakes, realtime, tmp_path)
    try:
        _wait_budgets(running, 1)
        for _ in range(2):  # and again: nothing was spent, nothing is stuck in flight
            status, refused = session()
            assert status == 403, refused
            assert refused["error"] == "budget_unmetered"
            assert "budget `tokens` counts LLM usage" in refused["reason"]
        assert realtime.messages == 0  # no frame ever reached the upstream
        state = _state(live_server, "tokens", lambda s: s["in_flight"] == 0)
        assert (state["used"], state["remaining"]) == (0, 1000)  # released: nothing relayed
        records = _traffic(live_server, 2)
        assert {(r["decision"], r["status_code"]) for r in records} == {("deny", 403)}
    finally:
        running.stop()


def _traffic(server: LiveServer, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 20
    rows: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        rows = server.admin("GET", "/v1/traffic").json()["traffic"]
        if len(rows) >= count:
            return rows
        time.sleep(0.1)
    raise AssertionError(f"{count} traffic records expected, got {rows}")
