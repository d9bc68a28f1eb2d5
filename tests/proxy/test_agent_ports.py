"""`--agent-ports` end to end: `python -m agentfirewall_proxy` against a real control plane
(`live_server`), its agents' own ports, and `tf run` choosing an agent's port.

The port range is chosen at run time: consecutive ports below the kernel's ephemeral range
(which `bind(0)` in every other test draws from), each checked free, at a random offset so
parallel runs of this file rarely meet (and when they do, the gateway skips a taken port).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes import FakeUpstreams
from tests.livesrv import LiveServer
from tests.proxy.support import CREDENTIALS, PLACEHOLDER, ca_bundle, free_span

REPO = Path(__file__).resolve().parents[2]
SPAN = 6  # ports in the range: room for every agent these tests register
#: The gateway's periodic heartbeat is every 10 s: a port seen sooner was announced at once.
ANNOUNCED_WITHIN = 8.0
_LISTENING = re.compile(rb"listening on 127\.0\.0\.1:(\d+)")


@dataclass
class Gateway:
    process: subprocess.Popen[bytes]
    log: Path
    port: int
    span: tuple[int, int]
    ca_path: Path

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


def start_gateway(
    server: LiveServer,
    fakes: FakeUpstreams,
    tmp: Path,
    span: tuple[int, int] | None = None,
    log_name: str = "gateway",
) -> Gateway:
    """The gateway in a subprocess; its CA and state in `tmp / "ca"` (kept across restarts)."""
    span = span or free_span(SPAN)
    log = tmp / f"{log_name}.log"
    resolve = [arg for entry in fakes.resolve_entries() for arg in ("--resolve", entry)]
    command = [
        sys.executable, "-m", "agentfirewall_proxy",
        "--control-plane", server.url, "--token", server.gateway_token,
        "--listen", "127.0.0.1:0", "--agent-ports", f"{span[0]}-{span[1]}",
        "--ca-dir", str(tmp / "ca"), "--upstream-ca", str(fakes.ca_path), *resolve,
    ]  # fmt: skip
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
    gateway = Gateway(process, log, 0, span, tmp / "ca" / "ca.crt")
    deadline = time.monotonic() + 30
    found = None
    while found is None and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
        found = _LISTENING.search(log.read_bytes())
    if found is None:
        gateway.stop()
        raise AssertionError(f"the gateway did not start: {log.read_text()}")
    gateway.port = int(found.group(1))
    return gateway


def poll(fn: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = fn()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def announced(server: LiveServer, listen_port: int | None = None) -> dict[str, int]:
    """Agent → port, as the gateways' heartbeats (or the one listening on `listen_port`)
    reported them to the control plane."""
    status = server.admin("GET", "/v1/status").json()
    ports: dict[str, int] = {}
    for proxy in status["gateway"].get("proxies") or []:
        if listen_port is None or proxy.get("listen") == f"127.0.0.1:{listen_port}":
            ports.update(proxy.get("agent_ports") or {})
    return ports


@dataclass
class World:
    server: LiveServer
    gateway: Gateway
    keys: dict[str, str]
    bundle: Path

    def client(self, port: int, agent: str | None) -> httpx.Client:
        auth = f"{agent}:{self.keys[agent]}@" if agent else ""
        context = ssl.create_default_context(cafile=str(self.bundle))
        return httpx.Client(proxy=f"http://{auth}127.0.0.1:{port}", verify=context,
                            trust_env=False, timeout=30)  # fmt: skip

    def traffic(self, agent: str) -> list[dict[str, Any]]:
        answer = self.server.admin("GET", "/v1/traffic", params={"agent": agent})
        rows: list[dict[str, Any]] = answer.json()["traffic"]
        return rows


@pytest.fixture
def world(live_server: LiveServer, fakes: FakeUpstreams, tmp_path: Path) -> Iterator[World]:
    fakes["github"].clear()
    keys = {name: live_server.create_agent(name) for name in ("Alpha", "Beta")}
    answer = live_server.admin(
        "POST", "/v1/connectors", json={"type": "github", "token": CREDENTIALS["github"]}
    )
    assert answer.status_code == 201, answer.text
    for name in ("Alpha", "Beta", "Gamma", "Delta", "Aaron"):
        rule = {"agent": name, "connector": "github", "action_pattern": "github.*",
                "decision": "allow"}  # fmt: skip
        assert live_server.admin("POST", "/v1/permissions", json=rule).status_code < 300
    gateway = start_gateway(live_server, fakes, tmp_path)
    bundle = ca_bundle(gateway.ca_path, tmp_path / "bundle.pem")
    world = World(live_server, gateway, keys, bundle)
    try:
        yield world
    finally:
        world.gateway.stop()


def test_each_agent_gets_its_own_port_and_traffic_there_is_its_own(
    world: World, fakes: FakeUpstreams
) -> None:
    ports = poll(lambda: (p := announced(world.server)).keys() >= {"Alpha", "Beta"} and p,
                 what="agent ports in a heartbeat")  # fmt: skip
    first, last = world.gateway.span
    assert ports["Alpha"] != ports["Beta"]
    assert all(first <= ports[name] <= last for name in ("Alpha", "Beta"))
    assert world.gateway.port not in ports.values()

    for name in ("Alpha", "Beta"):
        with world.client(ports[name], name) as http:
            answer = http.get(f"https://api.github.com/user?by={name}",
                              headers={"Authorization": PLACEHOLDER})  # fmt: skip
        assert answer.status_code == 200, answer.text
        assert fakes["github"].last().header("authorization") == f"token {CREDENTIALS['github']}"
    for name in ("Alpha", "Beta"):
        rows = poll(lambda n=name: world.traffic(n), what=f"traffic of {name}")  # type: ignore[misc]
        assert [(r["agent"], r["host"], r["status_code"]) for r in rows] == [
            (name, "api.github.com", 200)
        ]


def test_another_agents_credential_is_refused_on_a_port(world: World, fakes: FakeUpstreams) -> None:
    ports = poll(lambda: (p := announced(world.server)).keys() >= {"Alpha", "Beta"} and p,
                 what="agent ports in a heartbeat")  # fmt: skip
    alpha = ports["Alpha"]
    with world.client(alpha, "Beta") as http:
        plain = http.get("http://api.github.com/user")
        assert plain.status_code == 407
        assert plain.json()["error"] == "proxy_auth_required"
        with pytest.raises(httpx.ProxyError, match="407"):
            http.get("https://api.github.com/user")  # the CONNECT is refused
    with world.client(alpha, None) as http:
        assert http.get("http://api.github.com/user").status_code == 407
    assert fakes["github"].received() == []
    # Beta's own port and the shared port still serve Beta
    for port in (ports["Beta"], world.gateway.port):
        with world.client(port, "Beta") as http:
            assert http.get("https://api.github.com/user").status_code == 200


def test_each_agent_keeps_its_port_across_a_gateway_restart(
    world: World, fakes: FakeUpstreams, tmp_path: Path
) -> None:
    poll(lambda: announced(world.server).keys() >= {"Alpha", "Beta"}, what="first heartbeat")
    world.keys["Aaron"] = world.server.create_agent("Aaron")  # sorts before the others
    before = poll(lambda: (p := announced(world.server)).get("Aaron") and p,
                  timeout=ANNOUNCED_WITHIN, what="Aaron's port")  # fmt: skip
    assert (tmp_path / "ca" / "agent-ports.json").stat().st_mode & 0o777 == 0o600
    world.gateway.stop()
    span = world.gateway.span
    world.gateway = start_gateway(world.server, fakes, tmp_path, span, log_name="restarted")
    after = poll(lambda: (p := announced(world.server, world.gateway.port)).get("Aaron") and p,
                 what="the restarted gateway's heartbeat")  # fmt: skip
    assert after == before
    for name in ("Aaron", "Alpha"):  # an agent still using its old port is served there
        with world.client(before[name], name) as http:
            assert http.get("https://api.github.com/user").status_code == 200


def test_a_new_agent_gets_a_port_while_running_and_loses_it_when_suspended(
    world: World,
) -> None:
    poll(lambda: announced(world.server).keys() >= {"Alpha", "Beta"}, what="first heartbeat")
    world.keys["Gamma"] = world.server.create_agent("Gamma")
    ports = poll(lambda: (p := announced(world.server)).get("Gamma") and p,
                 timeout=ANNOUNCED_WITHIN, what="Gamma's port")  # fmt: skip
    gamma = ports["Gamma"]
    first, last = world.gateway.span
    assert first <= gamma <= last
    assert gamma not in (ports["Alpha"], ports["Beta"])
    with world.client(gamma, "Gamma") as http:
        assert http.get("https://api.github.com/user").status_code == 200
    assert poll(lambda: world.traffic("Gamma"), what="traffic of Gamma")[0]["agent"] == "Gamma"

    answer = world.server.admin("POST", "/v1/agents/Gamma/suspend")
    assert answer.status_code == 200, answer.text
    poll(lambda: "Gamma" not in announced(world.server), timeout=ANNOUNCED_WITHIN,
         what="Gamma's port released")  # fmt: skip
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", gamma), timeout=5).close()


AGENT = (
    "import os, urllib.parse, urllib.request\n"
    "print(urllib.parse.urlsplit(os.environ['HTTPS_PROXY']).port)\n"
    "print(urllib.request.urlopen('https://api.github.com/user', timeout=30).status)\n"
)


def tf(*args: str, env: dict[str, str], cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "agentfirewall_proxy.cli", *args],
        env=env, cwd=cwd, capture_output=True, text=True, timeout=90, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"tf {' '.join(args)}: {done.stdout}{done.stderr}"
    return done


def clean_env(**extra: str) -> dict[str, str]:
    """This environment less proxies and `TF_*` settings (they would point elsewhere)."""
    env = {k: v for k, v in os.environ.items()
           if "proxy" not in k.lower() and not k.startswith("TF_")}  # fmt: skip
    return {**env, "PYTHONPATH": str(REPO), **extra}


def tf_run(name: str, env: dict[str, str], cwd: Path = REPO) -> tuple[int, str]:
    """`tf run --name NAME` a Python agent that calls GitHub through its proxy: (port, status)."""
    done = tf("run", "--name", name, sys.executable, "-c", AGENT, env=env, cwd=cwd)
    port, status = done.stdout.split()
    return int(port), status


def _tf_run(world: World, name: str) -> tuple[int, str]:
    env = clean_env(
        TF_SERVER=world.server.url, TF_ADMIN_TOKEN=world.server.admin_token,
        TF_PROXY=f"http://127.0.0.1:{world.gateway.port}", TF_CA_CERT=str(world.gateway.ca_path),
        XDG_CACHE_HOME=str(world.bundle.parent / "cache"),
    )  # fmt: skip
    return tf_run(name, env)


def test_tf_run_picks_the_agents_port(world: World) -> None:
    ports = poll(lambda: (p := announced(world.server)).get("Alpha") and p,
                 what="Alpha's port")  # fmt: skip
    assert _tf_run(world, "Alpha") == (ports["Alpha"], "200")
    rows = poll(lambda: world.traffic("Alpha"), what="traffic of Alpha")
    assert rows[0]["status_code"] == 200

    # an agent `tf run` itself creates: it waits for the gateway to give it a port
    port, status = _tf_run(world, "Delta")
    assert status == "200"
    first, last = world.gateway.span
    assert first <= port <= last
    assert announced(world.server)["Delta"] == port
    assert poll(lambda: world.traffic("Delta"), what="traffic of Delta")[0]["agent"] == "Delta"


def test_tf_up_agent_ports(fakes: FakeUpstreams, tmp_path: Path) -> None:
    """The same through `tf up --agent-ports` (gateway and server in one process)."""
    root = tmp_path / "project"
    root.mkdir()
    env = clean_env(COLUMNS="200")
    span = free_span(SPAN)
    resolve = [arg for entry in fakes.resolve_entries() for arg in ("--resolve", entry)]
    log = tmp_path / "up.log"
    with open(log, "wb") as out:
        up = subprocess.Popen(
            [sys.executable, "-m", "agentfirewall_proxy.cli", "up", "--port", "0",
             "--proxy-port", "0", "--agent-ports", f"{span[0]}-{span[1]}",
             "--upstream-ca", str(fakes.ca_path), *resolve],
            cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        poll(lambda: (root / ".tf" / "up.json").exists() or up.poll() is not None,
             timeout=60, what="tf up")  # fmt: skip
        assert up.poll() is None, log.read_text()
        tf("connector", "add", "github", "--token", CREDENTIALS["github"], env=env, cwd=root)
        tf("permissions", "set", "--gateway", "Zeta", "--connector", "github",
           "--action", "github.*", "--decision", "allow", env=env, cwd=root)  # fmt: skip
        port, status = tf_run("Zeta", env, cwd=root)
        assert status == "200"
        assert span[0] <= port <= span[1]
        status_json = tf("status", "--json", env=env, cwd=root).stdout
        assert f'"Zeta": {port}' in status_json
        memory = root / ".tf" / "agent-ports.json"  # kept in the state dir, 0600 like the rest
        assert memory.stat().st_mode & 0o777 == 0o600
    finally:
        up.send_signal(signal.SIGINT)
        try:
            up.wait(30)
        except subprocess.TimeoutExpired:
            up.kill()
            up.wait(10)


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ("not json", {}),
        ("[10001]", {}),
        ('{"agt_a": "10001", "agt_b": true, "agt_c": 70000, "agt_d": 10001}', {"agt_d": 10001}),
    ],
)
def test_an_unreadable_port_memory_counts_as_none(
    tmp_path: Path, text: str, kept: dict[str, int]
) -> None:
    from agentfirewall_proxy.agentports import MEMORY_FILE, _load

    path = tmp_path / MEMORY_FILE
    path.write_text(text)
    assert _load(path) == kept
    assert _load(tmp_path / "missing.json") == {}


def test_sigterm_ships_the_last_traffic_records(world: World) -> None:
    """`docker stop`, systemd and `kill` send SIGTERM: the gateway stops as on Ctrl-C and
    ships the records still queued (they were lost with the process)."""
    before = len(world.traffic("Alpha"))
    with world.client(world.gateway.port, "Alpha") as http:
        answer = http.get("https://api.github.com/user", headers={"Authorization": PLACEHOLDER})
    assert answer.status_code == 200, answer.text
    world.gateway.process.send_signal(signal.SIGTERM)  # at once: before its next batch
    assert world.gateway.process.wait(30) == 0
    rows = poll(lambda: (r := world.traffic("Alpha"))[before:] and r,
                what="the record shipped on the way out")  # fmt: skip
    assert len(rows) == before + 1
