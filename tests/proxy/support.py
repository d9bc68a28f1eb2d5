"""Test support for the gateway suite: snapshots, an in-thread gateway, agent environments.

The gateway runs on its own event loop in a daemon thread (uvloop when available, as in
production), so sync clients, subprocess clients and anyio tests can all drive it.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentfirewall_proxy.control import Control, StaticControl
from agentfirewall_proxy.gateway import Gateway
from agentfirewall_proxy.main import build_gateway
from agentfirewall_proxy.options import Options, parse_resolve
from tests.fakes import FakeUpstreams
from tests.livesrv import LiveServer

KEY = "aaf_live_" + "k" * 32
OTHER_KEY = "aaf_live_" + "o" * 32
#: What the agent holds instead of real API keys: it must never reach an upstream.
PLACEHOLDER = "sk-agent-placeholder-never-forwarded"

CREDENTIALS = {
    "github": "ghp_realGithubToken0000000000000000000",
    "stripe": "sk_test_realStripeKey000000000000",
    "slack": "xoxb-real-slack-token-0000",
    "openai": "sk-realOpenAIKey000000000000000000",
    "anthropic": "sk-ant-realAnthropicKey0000000000",
    "mcp": "mcp-real-token-000000",
}
DOMAINS = {
    "github": ["api.github.com", "github.com"],
    "stripe": ["api.stripe.com"],
    "slack": ["slack.com", "api.slack.com"],
    "openai": ["api.openai.com"],
    "anthropic": ["api.anthropic.com"],
    "mcp": ["mcp.example.com"],
}


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_span(count: int) -> tuple[int, int]:
    """`count` consecutive free ports below the ephemeral range."""
    try:
        ephemeral = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral = 32768
    top = max(min(ephemeral, 32768), 12000)
    for _ in range(200):
        first = random.randrange(10000, top - count)
        if all(_bindable(port) for port in range(first, first + count)):
            return first, first + count - 1
    raise AssertionError("no free port range below the ephemeral range")


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def connector(kind: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": f"conn_{kind}_1",
        "type": kind,
        "name": kind,
        "domains": DOMAINS.get(kind, []),
        "base_url": None,
        "auth_type": None,
        "auth_header": None,
        "credential": CREDENTIALS.get(kind),
        **extra,
    }


def rule(action: str, decision: str, connector: str = "*", agent: str = "Bot") -> dict[str, Any]:
    return {"agent": agent, "connector": connector, "action_pattern": action, "decision": decision}


def snapshot(
    permissions: Iterable[dict[str, Any]] = (),
    *,
    connectors: Iterable[dict[str, Any]] | None = None,
    level: str = "full_enforce",
    kill_switches: Iterable[dict[str, Any]] = (),
    agents: Iterable[dict[str, Any]] | None = None,
    approval_timeout: int = 300,
    policies: Iterable[dict[str, Any]] = (),
) -> dict[str, Any]:
    return {
        "version": 1,
        "settings": {
            "approval_timeout_seconds": approval_timeout,
            "default_enforcement_level": "full_enforce",
        },
        "agents": list(agents)
        if agents is not None
        else [
            {
                "id": "agt_1",
                "name": "Bot",
                "status": "active",
                "enforcement_level": level,
                "key_hashes": [key_hash(KEY)],
                "proxy_port": None,
            },
            {
                "id": "agt_2",
                "name": "Other",
                "status": "active",
                "enforcement_level": level,
                "key_hashes": [key_hash(OTHER_KEY)],
                "proxy_port": None,
            },
        ],
        "connectors": list(connectors)
        if connectors is not None
        else [connector(k) for k in DOMAINS],
        "permissions": list(permissions),
        "policies": list(policies),
        "kill_switches": list(kill_switches),
    }


class RunningGateway:
    """A gateway on its own loop and thread; stop() cancels it."""

    def __init__(self, options: Options, control: Control, addons: Iterable[object] = ()) -> None:
        self.options = options
        self.control = control
        self.addons = list(addons)
        self.gateway: Gateway | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    @property
    def port(self) -> int:
        assert self.gateway is not None
        assert self.gateway.port is not None
        return self.gateway.port

    def proxy_url(self, key: str = KEY, name: str = "Bot") -> str:
        return f"http://{name}:{key}@127.0.0.1:{self.port}"

    @property
    def ca_path(self) -> Path:
        return self.options.ca_dir / "ca.crt"

    def start(self) -> RunningGateway:
        ready = threading.Event()

        def run() -> None:
            try:
                import uvloop

                loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
            except ImportError:
                loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            self.gateway = build_gateway(self.options, control=self.control, addons=self.addons)

            async def main() -> None:
                assert self.gateway is not None
                self._task = asyncio.ensure_future(self.gateway.run())
                waiter = asyncio.ensure_future(self.gateway.ready.wait())
                await asyncio.wait({self._task, waiter}, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                ready.set()
                try:
                    await self._task
                except asyncio.CancelledError:
                    pass
                except BaseException as exc:
                    self._error = exc

            loop.run_until_complete(main())
            left = asyncio.all_tasks(loop)
            for task in left:
                task.cancel()
            if left:
                loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
            loop.run_until_complete(asyncio.sleep(0.05))
            loop.close()

        self._thread = threading.Thread(target=run, name="tf-gateway", daemon=True)
        self._thread.start()
        ready.wait(30)
        if self._task is not None and self._task.done() and not self._task.cancelled():
            self._task.result()
        return self

    def call(self, fn: Any, *args: Any) -> None:
        """Run `fn(*args)` on the gateway's loop (thread-safe)."""
        assert self._loop is not None
        self._loop.call_soon_threadsafe(fn, *args)

    def stop(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            return
        if self._loop is not None and self._task is not None:
            self._loop.call_soon_threadsafe(self._task.cancel)
        if self._thread is not None:
            self._thread.join(10)


def gateway_options(tmp: Path, fakes: FakeUpstreams | None, **overrides: Any) -> Options:
    options = Options(
        listen_port=0,
        ca_dir=tmp / "ca",
        resolve=parse_resolve(fakes.resolve_entries()) if fakes else {},
        upstream_ca=fakes.ca_path if fakes else None,
        traffic_interval=0.1,
        heartbeat_interval=0.5,
        config_wait=1.0,
    )
    return replace(options, **overrides)


def start_gateway(
    tmp: Path,
    fakes: FakeUpstreams | None,
    snap: dict[str, Any],
    addons: Iterable[object] = (),
    **overrides: Any,
) -> tuple[RunningGateway, StaticControl]:
    control = StaticControl(snap)
    running = RunningGateway(gateway_options(tmp, fakes, **overrides), control, addons).start()
    return running, control


def ca_bundle(gateway_ca: Path, target: Path) -> Path:
    """System CAs + the gateway's CA, as `tf run` gives agents."""
    system = Path(ssl.get_default_verify_paths().openssl_cafile)
    parts = [system.read_bytes()] if system.exists() else []
    parts.append(gateway_ca.read_bytes())
    target.write_bytes(b"\n".join(parts))
    return target


#: A download from the fake GitHub long enough to be cut while it streams.
DOWNLOAD = "/fake/bytes/400000000"


def cut_download(
    running: RunningGateway,
    records: StaticControl,
    cut: Callable[[], object],
    heal: Callable[[], object] = lambda: None,
) -> dict[str, Any]:
    """Stream :data:`DOWNLOAD` through `running` (intercepted HTTPS), `cut()` once its first
    bytes are in and read on until the gateway ends it (it must), then `heal()`; the one
    traffic record of it that `records` received (waited for, up to 10 s)."""
    bundle = ca_bundle(running.ca_path, running.options.ca_dir / "bundle.pem")
    verify = ssl.create_default_context(cafile=str(bundle))
    with (
        httpx.Client(proxy=running.proxy_url(), verify=verify, trust_env=False, timeout=20) as http,
        http.stream("GET", f"https://api.github.com{DOWNLOAD}") as response,
    ):
        assert response.status_code == 200, response.read()
        chunks = response.iter_raw()
        next(chunks)
        cut()
        with pytest.raises(httpx.HTTPError):
            for _ in chunks:
                pass
    heal()
    deadline = time.monotonic() + 10
    while not (found := [r for r in records.traffic if r["path"] == DOWNLOAD]):
        assert time.monotonic() < deadline, "no traffic record of the download"
        time.sleep(0.05)
    assert len(found) == 1
    return found[0]


def agent_env(running: RunningGateway, bundle: Path, key: str = KEY) -> dict[str, str]:
    """An agent's environment: only the proxy variables and the CA bundle are ours."""
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    proxy = running.proxy_url(key)
    env.update(
        HTTP_PROXY=proxy, HTTPS_PROXY=proxy, http_proxy=proxy, https_proxy=proxy,
        SSL_CERT_FILE=str(bundle), REQUESTS_CA_BUNDLE=str(bundle), CURL_CA_BUNDLE=str(bundle),
        GIT_SSL_CAINFO=str(bundle), NODE_EXTRA_CA_CERTS=str(bundle), NO_PROXY="", no_proxy="",
        PYTHONPATH=os.pathsep.join(p for p in sys.path if p),
    )  # fmt: skip
    env.pop("SSL_CERT_DIR", None)
    return env


class Background:
    """A tiny asyncio server on its own thread (an upstream proxy, a WebSocket echo)."""

    def __init__(
        self, handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Any]
    ) -> None:
        self.port = 0
        self.writers: list[asyncio.StreamWriter] = []
        ready = threading.Event()

        async def wrapped(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.writers.append(writer)
            try:
                await handler(reader, writer)
            finally:
                writer.transport.abort()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self.loop = loop
            server = loop.run_until_complete(asyncio.start_server(wrapped, "127.0.0.1", 0))
            self.port = server.sockets[0].getsockname()[1]
            ready.set()
            loop.run_forever()
            server.close()
            for writer in self.writers:
                writer.transport.abort()
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            if tasks:
                loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.run_until_complete(server.wait_closed())
            loop.close()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        ready.wait(10)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


class ConnectRelay(Background):
    """An upstream (corporate) proxy: answers each CONNECT with 200 and relays the bytes to
    the local port `routes` gives for its target (`host:port`); `heads` keeps each request
    head as received."""

    def __init__(self, routes: dict[str, int]) -> None:
        self.heads: list[bytes] = []

        async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            head = await reader.readuntil(b"\r\n\r\n")
            self.heads.append(head)
            target = head.split(b" ", 2)[1].decode()
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", routes[target])
            self.writers.append(up_writer)
            writer.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            await asyncio.gather(_pump(reader, up_writer), _pump(up_reader, writer),
                                 return_exceptions=True)  # fmt: skip

        super().__init__(relay)

    @property
    def targets(self) -> list[str]:
        return [head.split(b" ", 2)[1].decode() for head in self.heads]


async def _pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    while data := await src.read(65536):
        dst.write(data)
    dst.close()


#: A GitHub bot's access rules: everything, but deleting a repository is denied and merging
#: is held for an approval.
GITHUB_BOT_RULES = [("github.*", "allow"), ("github.repo.delete", "deny"),
                    ("github.pr.merge", "require_approval")]  # fmt: skip


def github_bot(live_server: LiveServer, fakes: FakeUpstreams) -> str:
    """Register the agent `Bot` with a GitHub connector and :data:`GITHUB_BOT_RULES` on
    `live_server` (the fake GitHub's record cleared); its key."""
    fakes["github"].clear()
    key = live_server.create_agent("Bot")
    answer = live_server.admin(
        "POST", "/v1/connectors", json={"type": "github", "token": CREDENTIALS["github"]}
    )
    assert answer.status_code == 201, answer.text
    for pattern, decision in GITHUB_BOT_RULES:
        body = {"agent": "Bot", "connector": "github", "action_pattern": pattern,
                "decision": decision}  # fmt: skip
        answer = live_server.admin("POST", "/v1/permissions", json=body)
        assert answer.status_code in (200, 201), answer.text
    return key
