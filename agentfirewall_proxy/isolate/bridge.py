"""The `tf run` side of `--isolate`: start the sandbox, relay its loopback ports to the
gateway (and the control plane), count what the namespace refused.

The sandbox hands back listening sockets that live in its network namespace; `tf run`, still
in the host's, accepts on them and connects each accepted stream to the one address that
port leads to. No other address is ever dialled for the agent. The packet socket on the
namespace's ``lo`` shows every refused attempt (:mod:`agentfirewall_proxy.isolate.packets`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agentfirewall_proxy.isolate import kernel
from agentfirewall_proxy.isolate.packets import PACKET_OUTGOING, Blocked, parse_frame

__all__ = ["AcceptFailures", "Bridge", "IsolationError", "Sandbox", "start_sandbox"]

_MAX_FDS = 64
# -P: neither the working directory nor any other writable place the agent could plant an
# `agentfirewall_proxy/` in goes first on the helper's sys.path; it also starts in `/`, so a
# relative or empty PYTHONPATH entry does not name the agent's directory either.
_HELPER = ("-P", "-m", "agentfirewall_proxy.isolate.sandbox")


@dataclass(frozen=True, slots=True)
class Bridge:
    """Port `port` on the namespace's loopback leads to `host`:`target_port` outside."""

    port: int
    host: str
    target_port: int

    def inside(self) -> list[tuple[str, int]]:
        """Where it listens in the namespace: 127.0.0.1 and ::1, and `host` when it is an
        address (any address is the namespace's own), so a URL naming it works unchanged."""
        places = ["127.0.0.1", "::1"]
        with contextlib.suppress(ValueError):
            address = ipaddress.ip_address(self.host)
            if not address.is_unspecified and str(address) not in places:
                places.append(str(address))
        return [(host, self.port) for host in places]


_SYSCTLS = (
    ("/proc/sys/kernel/unprivileged_userns_clone", "0", "kernel.unprivileged_userns_clone=1"),
    (
        "/proc/sys/kernel/apparmor_restrict_unprivileged_userns",
        "1",
        "kernel.apparmor_restrict_unprivileged_userns=0",
    ),
    ("/proc/sys/user/max_user_namespaces", "0", "user.max_user_namespaces=15000"),
)


class IsolationError(Exception):
    """The kernel refused a step of the sandbox's setup (or the sandbox died)."""

    def __init__(
        self, step: str, error: str, errno: int | None = None, *, hint: str | None = None
    ) -> None:
        super().__init__(f"{step}: {error}")
        self.step = step
        self.error = error
        self.errno = errno
        self.hint = hint

    def advice(self, euid: int) -> str:
        """How to make it work: the blocking sysctl, root, or a container that allows it (or
        `hint`, when it was not the kernel that refused)."""
        if self.hint is not None:
            return self.hint
        if euid == 0:
            return (
                "creating namespaces needs CAP_SYS_ADMIN: in a container, give it that "
                "capability (e.g. `docker run --privileged`), or run on the host"
            )
        sysctl = "allow unprivileged user namespaces (sysctl)"
        for path, blocking, fix in _SYSCTLS:
            try:
                with open(path, encoding="ascii") as handle:
                    if handle.read().strip() == blocking:
                        sysctl = f"`sudo sysctl -w {fix}`"
                        break
            except OSError:
                continue
        return (
            f"{sysctl}, or run `tf run --isolate` as root, or in a container that allows user "
            "namespaces; `tf doctor --isolate` checks again"
        )


async def _copy(source: asyncio.StreamReader, sink: asyncio.StreamWriter, both: list[Any]) -> None:
    try:
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
        if sink.can_write_eof():
            sink.write_eof()
    except (OSError, RuntimeError):
        for writer in both:
            writer.transport.abort()


async def _relay(
    bridge: Bridge, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    try:
        up_reader, up_writer = await asyncio.open_connection(bridge.host, bridge.target_port)
    except OSError:
        writer.transport.abort()  # the gateway is down: the agent sees a reset, nothing else
        return
    both = [writer, up_writer]
    try:
        await asyncio.gather(_copy(reader, up_writer, both), _copy(up_reader, writer, both))
    finally:
        for one in both:
            one.close()


class AcceptFailures:
    """The relay loop's exception handler. asyncio logs a traceback each time a listener's
    accept() finds no descriptor free (and tries again a second later), a flood on the
    terminal an agent that holds connections can cause: those are counted, the rest logged."""

    MESSAGE = "socket.accept() out of system resource"

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if context.get("message") == self.MESSAGE:
            self.count += 1
        else:
            loop.default_exception_handler(context)


class Sandbox:
    """A started sandbox: `wait()` for the agent's exit code; blocked attempts go to
    `on_blocked` (called on a background thread); after `close()`, `missed` counts those
    that came faster than it was called (the kernel dropped their frames), `complete`
    says whether every frame was read (else the counts are lower bounds), and
    `accept_failures` how often the relay found no descriptor to accept a connection with."""

    def __init__(
        self,
        process: subprocess.Popen[bytes],
        listeners: list[tuple[socket.socket, Bridge]],
        sniffer: socket.socket,
        on_blocked: Callable[[Blocked], None],
    ) -> None:
        self.process = process
        self._listeners = listeners
        self._sniffer = sniffer
        self._on_blocked = on_blocked
        self._stop = threading.Event()
        self.missed = 0  # attempts the kernel dropped before the counter read them
        self.complete = True
        self._accept_failures = AcceptFailures()
        self._loop = asyncio.new_event_loop()
        self._loop.set_exception_handler(self._accept_failures)
        self._threads = [
            threading.Thread(target=self._serve, name="tf-isolate-relay", daemon=True),
            threading.Thread(target=self._count, name="tf-isolate-count", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    @property
    def accept_failures(self) -> int:
        return self._accept_failures.count

    def _serve(self) -> None:
        loop = self._loop
        asyncio.set_event_loop(loop)
        servers: list[asyncio.Server] = []

        async def serve() -> None:
            for sock, bridge in self._listeners:

                async def handle(
                    r: asyncio.StreamReader, w: asyncio.StreamWriter, b: Bridge = bridge
                ) -> None:
                    await _relay(b, r, w)

                servers.append(await asyncio.start_server(handle, sock=sock))

        try:
            loop.run_until_complete(serve())
            loop.run_forever()
        finally:
            for server in servers:
                server.close()
            for task in asyncio.all_tasks(loop):
                task.cancel()
            loop.run_until_complete(asyncio.sleep(0))
            loop.close()

    def _count(self) -> None:
        self._sniffer.settimeout(0.2)
        while True:
            try:
                frame, address = self._sniffer.recvfrom(65535)
            except TimeoutError:
                if self._stop.is_set():
                    return  # stopped, and nothing left queued
                continue
            except OSError:
                return
            if address[2] == PACKET_OUTGOING:
                blocked = parse_frame(frame)
                if blocked is not None:
                    self._on_blocked(blocked)

    def close(self) -> None:
        """After the agent ended: count what is still queued, stop relaying."""
        self._stop.set()
        counter = self._threads[1]
        counter.join(timeout=5)
        self.missed = kernel.packet_drops(self._sniffer)
        self.complete = not counter.is_alive()  # else frames may be left unread
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._threads[0].join(timeout=5)
        self._sniffer.close()


def _receive(ctl: socket.socket) -> tuple[dict[str, Any], list[int]]:
    """The sandbox's answer and the sockets it sent; ``{}`` when it ended without one (a reset
    or end of stream: it died, e.g. it could not import this package)."""
    fds: list[int] = []
    try:
        data, fds, _flags, _addr = socket.recv_fds(ctl, 65536, _MAX_FDS)
        while data and not data.endswith(b"\n"):
            more = ctl.recv(65536)
            if not more:
                break
            data += more
        reply = json.loads(data) if data.endswith(b"\n") else None
    except (OSError, ValueError):
        reply = None
    return (reply if isinstance(reply, dict) else {}), fds


def _helper_env() -> dict[str, str]:
    """The sandbox's own environment: only what finds Python and this package. Never `tf
    run`'s: it may hold the admin token or the secrets the agent's environment leaves out."""
    keep = ("PATH", "PYTHONPATH", "LANG", "LC_ALL", "VIRTUAL_ENV")
    return {name: os.environ[name] for name in keep if name in os.environ}


def start_sandbox(
    command: Sequence[str],
    agent_env: Mapping[str, str],
    bridges: Sequence[Bridge],
    *,
    on_blocked: Callable[[Blocked], None],
    probe: bool = False,
) -> Sandbox:
    """Start the sandbox around `command`; raise :class:`IsolationError` when the kernel
    refuses a step (then nothing has run)."""
    try:
        cwd = os.getcwd()  # the agent's: the helper itself starts in `/`
    except OSError as exc:
        raise IsolationError(
            "find the working directory",
            exc.strerror or str(exc),
            hint="run it from a directory that exists",
        ) from None
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with ours, theirs:
        process = subprocess.Popen(
            [sys.executable, *_HELPER, str(theirs.fileno()), str(os.getpid())],
            env=_helper_env(),
            cwd="/",
            pass_fds=[theirs.fileno()],
        )
        theirs.close()
        spec = {
            "command": list(command),
            "env": dict(agent_env),
            "cwd": cwd,
            "listen": sorted({place for b in bridges for place in b.inside()}),
            "probe": probe,
        }
        with contextlib.suppress(OSError):
            ours.sendall((json.dumps(spec) + "\n").encode())
        reply, fds = _receive(ours)
    if not reply.get("ok"):
        for fd in fds:
            os.close(fd)
        process.wait()
        if reply:
            step, error, hint = str(reply.get("step")), str(reply.get("error")), reply.get("hint")
            raise IsolationError(step, error, reply.get("errno"), hint=hint and str(hint))
        raise IsolationError(
            "start the sandbox",
            f"its helper exited with status {process.returncode} before it answered",
            hint=f"the helper's own error is above; it runs `{sys.executable} "
            f"{' '.join(_HELPER)}` in `/`",
        )
    by_port = {b.port: b for b in bridges}
    places: list[list[Any]] = reply.get("listeners") or []
    listeners = [
        (socket.socket(fileno=fd), by_port[int(place[1])])
        for fd, place in zip(fds[:-1], places, strict=True)
    ]
    return Sandbox(process, listeners, socket.socket(fileno=fds[-1]), on_blocked)
