"""No byte of a request cut in flight reaches its upstream after the cut, at any stage.

Every reason to cut (the kill switch, its agent suspended, a config the gateway cannot
apply, the control plane lost past ``--max-config-age``) stops every request in flight at
once, over plain HTTP and intercepted HTTPS alike, wherever it waits (``flow.Cut``):

- its upstream connection opening: an upstream whose accept queue is full (its SYN is
  dropped) or whose TLS handshake stalls (a sluice holds its bytes): refused at once as
  not sent (an upload too, its body still coming in), and once the sluice opens nothing
  reaches the upstream;
- its budget reserved (a budget slice the control plane grants only later): refused at
  once; the slice granted later is given back;
- its request sent and its response awaited: answered as cut, never sent again;
- its body still coming in: both sockets aborted, and what the agent sends after the cut
  never reaches the upstream;
- its response relayed: both sockets aborted, no second answer;
- a passthrough tunnel still opening: its CONNECT refused at once (one that cannot open
  is answered 502, not dropped).

The upstream counts every byte it receives, per connection. An attacker's view: whatever
the agent sends after the cut, and whatever the stalled connections would carry once they
could, the upstream must have received exactly what it had when the cut came.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import socket
import ssl
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trustme

from agentfirewall_proxy.control import StaticControl
from agentfirewall_proxy.options import parse_resolve
from tests.proxy.rawclient import auth_header, read_all, read_response, status_of, tunnel
from tests.proxy.rawupstream import json_body
from tests.proxy.support import RunningGateway, connector, gateway_options, rule, snapshot
from tests.proxy.test_control_plane_lost import Partitioned

HOSTS = {
    "tcp": "tcp.cut.example.org",  # its accept queue full: connecting never ends
    "tls": "tls.cut.example.org",  # its TLS handshake held in a sluice
    "up": "up.cut.example.org",  # reached at once (plain and TLS), counting what it gets
    "budget": "budget.cut.example.org",  # as `up`, its POSTs covered by a budget
}
#: Passthrough hosts (tunnelled blind): one whose accept queue is full, one that refuses.
PASSTHROUGH = {"opening": "opening.pass.example.org", "closed": "closed.pass.example.org"}
CONNECTORS = [
    connector("generic", id=f"c_{name}", name=name, domains=[host], credential=None)
    for name, host in HOSTS.items()
]
SNAPSHOT = {
    **snapshot([rule("http.*", "allow")], connectors=CONNECTORS),
    "budgets": [{"name": "calls", "connector": "generic", "action": "http.post"}],
}
#: What the upstream answers a request whose path begins so: a head and the first bytes
#: of a long body, then nothing (`/response`, `/body`: nothing at all; else 200 "ok").
RELAYING = "/relaying"
RELAYED = b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\nfirst bytes"
SILENT = ("/response", "/body")
PART = b"x" * 1000  # the part of a streamed body sent before the cut
SENT = "its request was sent before the cut: the upstream may have acted on it"
#: How long the gateway enforces its config without word from the control plane.
MAX_CONFIG_AGE = 2.0
#: What each reason to cut answers: (status, error).
ANSWERS = {
    "kill_switch": (403, "kill_switch"),
    "suspended": (403, "agent_inactive"),
    "config_refused": (403, "kill_switch"),
    "outage": (503, "control_plane_unreachable"),
}


def wait_until(check: Callable[[], Any], what: str) -> Any:
    deadline = time.monotonic() + 10
    while not (found := check()):
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.01)
    return found


class Served:
    """An asyncio server on 127.0.0.1, on its own thread and loop (TLS with `tls`)."""

    def __init__(
        self,
        handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.loop = asyncio.new_event_loop()
        self.port = 0
        ready = threading.Event()

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                await handler(reader, writer)
            except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
                pass
            finally:
                writer.transport.abort()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            server = self.loop.run_until_complete(
                asyncio.start_server(serve, "127.0.0.1", 0, ssl=tls)
            )
            self.port = server.sockets[0].getsockname()[1]
            ready.set()
            self.loop.run_forever()
            server.close()
            tasks = asyncio.all_tasks(self.loop)
            for task in tasks:
                task.cancel()
            self.loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            self.loop.close()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        ready.wait(10)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@dataclass
class Received:
    """What one connection to the upstream carried, and whether it ended."""

    data: bytearray = field(default_factory=bytearray)
    ended: bool = False

    @property
    def path(self) -> str:
        return self.data.split(b" ", 2)[1].decode() if self.data.count(b" ") >= 2 else ""


class Counting:
    """An upstream recording every byte of every connection (plain, or TLS with `tls`)."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.connections: list[Received] = []
        self.server = Served(self._serve, tls)
        self.port = self.server.port

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen = Received()
        self.connections.append(seen)
        answered = False
        try:
            while data := await reader.read(65536):
                seen.data += data
                if answered or b"\r\n\r\n" not in seen.data or seen.path.startswith(SILENT):
                    continue
                answered = True
                writer.write(RELAYED if seen.path.startswith(RELAYING) else
                             b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")  # fmt: skip
        finally:
            seen.ended = True

    def all_ended(self) -> bool:
        return all(seen.ended for seen in list(self.connections))

    def to(self, path: str) -> list[Received]:
        return [seen for seen in list(self.connections) if seen.path == path]


@dataclass
class Held:
    """One connection the sluice holds: what came, and whether it ended before opening."""

    data: bytearray = field(default_factory=bytearray)
    ended_early: bool = False
    done: bool = False


class Sluice:
    """A TCP relay to `port` that holds what it receives until `opened` is set: a TLS
    handshake through it stalls; once opened it passes on what it holds, and then both ways
    while both sides are open."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.opened = threading.Event()
        self.held: list[Held] = []
        self.server = Served(self._serve)
        self.port = self.server.port

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held = Held()
        self.held.append(held)
        try:
            while not self.opened.is_set() and not held.ended_early:
                try:
                    async with asyncio.timeout(0.02):
                        data = await reader.read(65536)
                except TimeoutError:
                    continue
                except ConnectionError:
                    data = b""
                held.data += data
                held.ended_early = not data
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
            up_writer.write(bytes(held.data))
            if held.ended_early:
                up_writer.close()
                return
            await asyncio.gather(_pump(reader, up_writer), _pump(up_reader, writer))
        finally:
            held.done = True


async def _pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await src.read(65536):
            dst.write(data)
            await dst.drain()
    dst.transport.abort()


class Controlled(Partitioned):
    """The control plane behind a link that can be cut (``Partitioned``), granting budget
    slices only once `grant` is set: one slice of one request each (`leases` counts them,
    `leasing` is set once one is asked for)."""

    def __init__(self, inner: StaticControl) -> None:
        super().__init__(inner)
        self.grant = threading.Event()
        self.leasing = threading.Event()
        self.leases = 0

    async def lease_budget(self, payload: dict[str, Any]) -> dict[str, Any]:
        self.leasing.set()
        while not (self.grant.is_set() and self.link.is_set()):
            await asyncio.sleep(0.02)
        self.leases += 1
        lease = {"amount": 1, "budget": "calls", "lease": f"ls_{self.leases}", "seconds": 600,
                 "request": 1}  # fmt: skip
        return {"leases": {"calls": lease}}

    async def report_leases(self, reports: list[dict[str, Any]]) -> None:
        return None


def cut(control: Controlled, how: str) -> None:
    """Cut every request in flight, for reason `how`."""
    if how == "outage":
        control.link.clear()  # (the gateway's --max-config-age passes)
        return
    changed = copy.deepcopy(SNAPSHOT)
    if how == "kill_switch":
        changed["kill_switches"] = [{"scope": "all", "target": None, "reason": "incident"}]
    elif how == "suspended":
        changed["agents"][0]["status"] = "suspended"
    else:  # what a later version might send: a kill switch scope this one does not know
        changed["kill_switches"] = [{"scope": "galaxy", "reason": "stop"}]
    control.inner.update(changed)


def heal(control: Controlled) -> None:
    control.link.set()
    control.inner.update(copy.deepcopy(SNAPSHOT))


class NoAccept:
    """A port whose accept queue is full: a connection to it waits (its SYN dropped)."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(0)
        self.port = self.listener.getsockname()[1]
        self.fillers = []
        for _ in range(4):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", self.port))
            self.fillers.append(filler)

    def close(self) -> None:
        for filler in self.fillers:
            filler.close()
        self.listener.close()


@dataclass
class World:
    running: RunningGateway
    control: Controlled
    plain: Counting
    tls: Counting
    sluice: Sluice
    ca: Path
    #: Every socket of the test's agent (closed at its end, whatever happened).
    sockets: list[socket.socket] = field(default_factory=list)

    @property
    def gateway(self) -> Any:
        assert self.running.gateway is not None
        return self.running.gateway

    def in_flight(self, path: str) -> list[Any]:
        return [flow for flow in list(self.gateway.active) if flow.path == path]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    ca = trustme.CA()
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*HOSTS.values()).configure_cert(server_tls)
    ca_path = tmp_path / "upstream-ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    plain, tls = Counting(), Counting(server_tls)
    sluice, no_accept = Sluice(tls.port), NoAccept()
    ports = {"tcp": (no_accept.port, no_accept.port), "tls": (plain.port, sluice.port),
             "up": (plain.port, tls.port), "budget": (plain.port, tls.port)}  # fmt: skip
    with socket.socket() as closed:  # (a port nothing listens on)
        closed.bind(("127.0.0.1", 0))
        refusing = closed.getsockname()[1]
    resolve = parse_resolve([entry for name, (http, https) in ports.items() for entry in
                             (f"{HOSTS[name]}:80=127.0.0.1:{http}",
                              f"{HOSTS[name]}:443=127.0.0.1:{https}")]
                            + [f"{PASSTHROUGH['opening']}:443=127.0.0.1:{no_accept.port}",
                               f"{PASSTHROUGH['closed']}:443=127.0.0.1:{refusing}"])  # fmt: skip
    control = Controlled(StaticControl(copy.deepcopy(SNAPSHOT)))
    options = gateway_options(tmp_path, None, resolve=resolve, upstream_ca=ca_path,
                              connect_timeout=60.0, max_config_age=MAX_CONFIG_AGE,
                              passthrough=tuple(PASSTHROUGH.values()))  # fmt: skip
    running = RunningGateway(options, control).start()  # type: ignore[arg-type]
    world = World(running, control, plain, tls, sluice, running.ca_path)
    try:
        yield world
    finally:
        for sock in world.sockets:
            sock.close()
        control.grant.set()
        control.link.set()
        sluice.opened.set()
        running.stop()
        for server in (plain.server, tls.server, sluice.server):
            server.stop()
        no_accept.close()


def request(method: str, target: str, host: str, *extra: str) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}", "Connection: close", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def send_plain(world: World, method: str, name: str, path: str, *extra: str) -> socket.socket:
    """A plain-HTTP request through the gateway (its body, if any, sent by the caller)."""
    host = HOSTS[name]
    line, rest = request(method, f"http://{host}{path}", host, *extra).split(b"\r\n", 1)
    sock = socket.create_connection(("127.0.0.1", world.running.port), timeout=10)
    world.sockets.append(sock)
    sock.sendall(line + b"\r\n" + auth_header() + rest)
    return sock


def send_connect(world: World, host: str) -> socket.socket:
    """A CONNECT to `host` (a passthrough host: tunnelled blind once its answer is 200)."""
    sock = socket.create_connection(("127.0.0.1", world.running.port), timeout=10)
    world.sockets.append(sock)
    sock.sendall(f"CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\n".encode()
                 + auth_header() + b"\r\n")  # fmt: skip
    return sock


def send_intercepted(world: World, method: str, name: str, path: str, *extra: str) -> ssl.SSLSocket:
    """The same request inside a CONNECT tunnel the gateway intercepts."""
    host = HOSTS[name]
    sock = tunnel(world.running.port, host, world.ca)
    world.sockets.append(sock)
    sock.sendall(request(method, path, host, *extra))
    return sock


SEND = {"http": send_plain, "https": send_intercepted}
UPLOAD = ("Content-Type: application/octet-stream", f"Content-Length: {100 * len(PART)}")
POST = ("Content-Type: application/json", "Content-Length: 2")


def read_until(sock: socket.socket, marker: bytes) -> bytes:
    got = b""
    while marker not in got:
        data = sock.recv(65536)
        assert data, f"closed before {marker!r}: {got!r}"
        got += data
    return got


@dataclass
class Stage:
    """One request of the test and how it stands when the cut comes."""

    name: str
    scheme: str
    sock: socket.socket = field(init=False)
    counted: Counting | None = None  # the upstream it reaches
    before: bytes = b""  # what that upstream had of it when the cut came

    @property
    def path(self) -> str:
        return f"/{self.name}-{self.scheme}"

    def send(self, world: World, method: str, host: str, *extra: str, body: bytes = b"") -> Stage:
        self.sock = SEND[self.scheme](world, method, host, self.path, *extra)
        self.sock.sendall(body)  # (an upload: its first part only)
        return self


def open_every_stage(world: World) -> list[Stage]:
    """A request in flight at each stage, over each scheme, all at once."""
    stages: list[Stage] = []
    for scheme in SEND:
        counted = world.plain if scheme == "http" else world.tls
        stages += [
            Stage("connecting", scheme).send(world, "GET", "tcp"),
            Stage("budget", scheme).send(world, "POST", "budget", *POST, body=b"{}"),
            Stage("response", scheme, counted=counted).send(world, "GET", "up"),
            Stage("body", scheme, counted=counted).send(world, "PUT", "up", *UPLOAD, body=PART),
            Stage("relaying", scheme, counted=counted).send(world, "GET", "up"),
        ]
    stages += [  # (its body coming in while its connection opens; its TLS handshake stalled)
        Stage("upload", "http").send(world, "PUT", "tcp", *UPLOAD, body=PART),
        Stage("handshake", "https").send(world, "GET", "tls"),
    ]
    for stage in stages:
        reached(world, stage)
    return stages


def reached(world: World, stage: Stage) -> None:
    """Wait until `stage`'s request is where its name says."""
    if stage.name == "relaying":
        read_until(stage.sock, b"first bytes")
    if stage.counted is not None:  # sent: all of it (the upload: its first part)
        last = PART if stage.name == "body" else b"\r\n\r\n"

        def arrived() -> list[Received]:
            assert stage.counted is not None
            return [s for s in stage.counted.to(stage.path) if s.data.endswith(last)]

        (seen,) = wait_until(arrived, f"{stage.path} at its upstream")
        stage.before = bytes(seen.data)
    elif stage.name == "handshake":
        wait_until(lambda: [h for h in world.sluice.held if h.data], "the TLS handshake held")
    else:  # decided, not sent: connecting, or its budget slice asked for
        wait_until(lambda: [f for f in world.in_flight(stage.path) if not f.sent],
                   f"{stage.path} in flight")  # fmt: skip
        if stage.name == "budget":
            wait_until(world.control.leasing.is_set, "a budget slice asked for")


def check_answer(stage: Stage, how: str, answer: bytes) -> None:
    """What the agent reads after the cut: a refusal saying why (as sent or not), or
    nothing more (an upload's body still coming in; a response under way: no second one)."""
    where = f"{stage.path}: {answer[:300]!r}"
    if stage.name in ("body", "relaying"):
        assert answer == b"", where
        return
    status, error = ANSWERS[how]
    assert status_of(answer) == status, where
    body = json_body(answer)
    assert body["error"] == error, where
    sent = stage.name == "response"
    assert body["reason"].endswith(SENT) == sent, where
    if how == "config_refused" and not sent:
        assert "could not apply configuration" in body["reason"], where


@pytest.mark.parametrize("how", list(ANSWERS))
def test_no_byte_of_a_cut_request_reaches_the_upstream_at_any_stage(world: World, how: str) -> None:
    stages = open_every_stage(world)
    cut(world.control, how)
    for stage in stages:
        with stage.sock:
            # (a request left waiting: 60 s of connecting, a slice never granted)
            aborted = stage.name in ("body", "relaying")
            read = read_all if aborted else read_response
            check_answer(stage, how, read(stage.sock, 15))
            if stage.name in ("body", "upload"):  # the agent sends on after the cut
                with contextlib.suppress(OSError):
                    stage.sock.sendall(PART)
    wait_until(lambda: all(h.ended_early for h in world.sluice.held), "TLS handshake given up")
    # what stalled may go on now: the TLS handshake, the budget slice, the control plane
    world.sluice.opened.set()
    world.control.grant.set()
    world.control.link.set()
    wait_until(lambda: not world.gateway.active, "every request of the test ended")
    wait_until(lambda: all(h.done for h in world.sluice.held), "the sluice passed on")
    for counted, scheme in ((world.plain, "http"), (world.tls, "https")):
        wait_until(counted.all_ended, "the upstream's connections closed")
        reached_it = sorted(s.path for s in counted.connections)  # not the others, ever
        assert reached_it == [f"/{name}-{scheme}" for name in ("body", "relaying", "response")]
    for stage in stages:
        if stage.counted is not None:
            (seen,) = stage.counted.to(stage.path)
            assert bytes(seen.data) == stage.before, stage.path  # not a byte more
            assert seen.data.count(b" HTTP/1.1\r\n") == 1  # never sent again


@pytest.mark.parametrize(
    ("scheme", "name"), [("http", "tcp"), ("https", "tcp"), ("https", "tls")],
    ids=["tcp-http", "tcp-https", "tls-https"],
)  # fmt: skip
def test_a_request_opening_its_upstream_connection_is_answered_at_once_when_control_is_lost(
    world: World, scheme: str, name: str
) -> None:
    """Past --max-config-age a request still opening its upstream connection was answered
    only once the connect ended (or timed out, 60 s here): now at once, 503."""
    with SEND[scheme](world, "GET", name, "/opening") as sock:
        wait_until(lambda: world.in_flight("/opening"), "connecting")
        world.control.link.clear()
        answer = read_all(sock, 15)
    assert status_of(answer) == 503, answer
    body = json_body(answer)
    assert body["error"] == "control_plane_unreachable"
    assert not body["reason"].endswith(SENT)
    world.control.link.set()
    world.sluice.opened.set()
    wait_until(lambda: not world.gateway.active, "the request ended")
    assert world.tls.connections == []
    assert world.plain.connections == []


@pytest.mark.parametrize("how", list(ANSWERS))
def test_a_budget_slice_granted_for_a_request_cut_meanwhile_is_given_back(
    world: World, how: str
) -> None:
    """Cut while its budget slice is leased, the request is refused at once; the slice
    granted after the cut is not spent by it: the next request spends it, without
    another lease."""
    with send_plain(world, "POST", "budget", "/budget", *POST) as sock:
        sock.sendall(b"{}")
        wait_until(world.control.leasing.is_set, "a budget slice asked for")
        cut(world.control, how)
        answer = read_all(sock, 15)
    assert (status_of(answer), json_body(answer)["error"]) == ANSWERS[how], answer
    world.control.grant.set()
    world.control.link.set()
    wait_until(lambda: world.control.leases == 1, "the slice granted")
    heal(world.control)

    def spend() -> int:
        with send_plain(world, "POST", "budget", "/budget", *POST) as again:
            again.sendall(b"{}")
            return status_of(read_all(again, 10))

    wait_until(lambda: spend() == 200, "a request allowed again")
    assert world.control.leases == 1  # spent from the slice given back
    assert [s.path for s in world.plain.connections] == ["/budget"]


@pytest.mark.parametrize("how", list(ANSWERS))
def test_a_passthrough_tunnel_still_opening_is_refused_at_once_when_cut(
    world: World, how: str
) -> None:
    """A CONNECT to a passthrough host waits for its tunnel to open (60 s here): cut
    meanwhile, it is refused at once (not left waiting, never answered 200)."""
    host = PASSTHROUGH["opening"]
    sock = send_connect(world, host)
    wait_until(lambda: [f for f in list(world.gateway.active) if f.host == host], "opening")
    cut(world.control, how)
    answer = read_all(sock, 15)
    assert (status_of(answer), json_body(answer)["error"]) == ANSWERS[how], answer
    wait_until(lambda: not world.gateway.active, "the tunnel's flow ended")


def test_a_passthrough_host_that_cannot_be_reached_is_answered_502(world: World) -> None:
    """Its tunnel's connection refused: a 502 saying so, not a connection dropped."""
    answer = read_all(send_connect(world, PASSTHROUGH["closed"]), 10)
    assert status_of(answer) == 502, answer
    body = json_body(answer)
    assert body["error"] == "upstream_error"
    assert body["reason"].startswith(f"cannot reach `{PASSTHROUGH['closed']}:443`")
    assert not world.gateway.active
