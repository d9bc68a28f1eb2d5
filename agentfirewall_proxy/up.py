"""`tf up`: control plane, dashboard and gateway proxy in one process and one event loop.

uvicorn serves the server package's app; the gateway (:func:`agentfirewall_proxy.main`'s
``build_gateway``) reaches that same app through ``httpx.ASGITransport`` — the code path of a
remote gateway, without the network hop. While running, ``<state>/up.json`` records the pid and
the bound addresses (ports may be 0 = any free port), so other `tf` commands find it. The
listening sockets (one per address the host resolves to) are bound once, before anything
serves, and handed to uvicorn and the gateway (:func:`listen_sockets`): the ports written and
printed are the sockets' own, never a port checked free and bound later (another process could
take it in between). From before it binds until it stops, it holds ``<state>/up.lock``
(:func:`holding_up_lock`): a second `tf up` and `tf init --force` are refused at once, naming
its pid, also while it starts; a server already running on the data directory is named before
anything opens (``server.lock``, taken then and held until it stops, as `python -m
agentfirewall_server` takes it: of the two started at once, the loser says so in one line).

Shutdown (SIGINT/SIGTERM): the gateway stops first and ships its last traffic records into the
still-running app; then the open long-polls (an SDK's ``wait_for_approval``) are answered with
the action's state and the dashboard's event streams end, as `python -m agentfirewall_server`
does; then uvicorn runs the app's lifespan shutdown, which closes the store. Pending
approvals live in the database and survive the restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import json
import os
import signal
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import httpx
import uvicorn

if TYPE_CHECKING:
    from agentfirewall_server.datalock import ServerLock
    from agentfirewall_server.settings import Settings

__all__ = [
    "UP_LOCK_FILE",
    "DataInUse",
    "StoreProblem",
    "UpError",
    "UpInfo",
    "UpOptions",
    "closing_all",
    "holding_up_lock",
    "listen_sockets",
    "run_up",
    "up",
]

#: Held (``flock``, its holder's pid in it) by a `tf up` from before it binds until it stops.
UP_LOCK_FILE = "up.lock"


class UpError(Exception):
    """`tf up` could not start (a port in use, an unreadable state directory...)."""


class StoreProblem(UpError):
    """The data cannot be served: the database does not open, the vault key does not fit, or
    another process holds it. The message says what to do (the server's own one-line error,
    the password masked)."""


class DataInUse(StoreProblem):
    """Another `tf up`, a server or an offline tool (rotate-key, `tf restore`) holds the
    project's data."""


@contextlib.contextmanager
def holding_up_lock(state_dir: Path) -> Iterator[None]:
    """Hold `state_dir`'s `tf up` lock for the block (its pid written in it), or raise
    `DataInUse` naming the holder at once. The kernel releases it when the holder dies."""
    from agentfirewall_server.store.db import make_private_dir

    make_private_dir(state_dir)
    fd = os.open(state_dir / UP_LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pid = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        os.close(fd)
        holder = f" (pid {pid})" if pid.isdigit() else ""
        raise DataInUse(
            f"another `tf up` is starting or running for {state_dir}{holder}: use it, or "
            "stop it first"
        ) from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)


@dataclass(frozen=True)
class UpOptions:
    state_dir: Path
    host: str = "127.0.0.1"
    port: int = 3000
    proxy_host: str = "127.0.0.1"
    proxy_port: int = 8443
    resolve: dict[tuple[str, int | None], tuple[str, int]] = field(default_factory=dict)
    upstream_ca: Path | None = None
    agent_ports: tuple[int, int] | None = None
    database_url: str | None = None
    log_level: str = "warning"
    access_log: bool = False
    #: Already listening (`tf up` binds them as it chooses the ports: :func:`listen_sockets`),
    #: served as they are and closed when :func:`run_up` ends; none: bound on host:port then.
    server_sockets: tuple[socket.socket, ...] = ()
    proxy_sockets: tuple[socket.socket, ...] = ()
    #: The caller holds `state_dir`'s up lock (:func:`holding_up_lock`) already: `tf up` takes
    #: it before it binds, so that the loser of two says only that; else taken here.
    up_lock_held: bool = False


@dataclass(frozen=True)
class UpInfo:
    server_url: str
    proxy_url: str
    dashboard_url: str
    setup_url: str | None
    ca_cert: Path
    state_dir: Path


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: `tf up` orders the shutdown itself."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _url(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
    return f"http://{f'[{shown}]' if ':' in shown else shown}:{port}"


#: What does not start when its socket cannot listen.
_PARTS = {"server": "the control plane did not start", "gateway": "the gateway could not start"}


class _InUse(UpError):
    """The port is taken."""


#: An address as ``getaddrinfo`` gives it: family and socket address (host, port[, IPv6's]).
_Address = tuple[socket.AddressFamily, tuple[object, ...]]


def listen_sockets(
    host: str, port: int, part: Literal["server", "gateway"], *, move: bool = False
) -> tuple[socket.socket, ...]:
    """Sockets listening on `host`:`port` (0: any free port), one per address `host` resolves
    to (`localhost`: 127.0.0.1 and ::1), all on the same port, as asyncio's ``create_server``
    listens, for uvicorn and the gateway to serve; with `move`, a port in use moves on to the
    next free one (any free one when none of the next 99 is). `UpError` when it cannot."""
    addresses = _addresses(host, port, part)
    if move and port:
        for candidate in range(port, min(port + 100, 65536)):
            with contextlib.suppress(_InUse):
                return _listening(addresses, candidate, part)
        port = 0
    if not port:  # the first address's free port may be taken on another: try another
        for _ in range(99):
            with contextlib.suppress(_InUse):
                return _listening(addresses, 0, part)
    return _listening(addresses, port, part)


def _addresses(host: str, port: int, part: Literal["server", "gateway"]) -> list[_Address]:
    try:
        infos = socket.getaddrinfo(  # "": every interface, as asyncio takes it
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except OSError as exc:
        raise _bind_error(exc, (host, port), part) from None
    return list(dict.fromkeys((info[0], info[4]) for info in infos))  # once each, in order


def _listening(
    addresses: list[_Address], port: int, part: Literal["server", "gateway"]
) -> tuple[socket.socket, ...]:
    dual = len(addresses) == 1 and addresses[0][1][0] == "::"  # `::` alone: IPv4 too
    socks: list[socket.socket] = []
    try:
        for family, address in addresses:
            sock = _listening_on(family, (address[0], port, *address[2:]), part, dual=dual)
            socks.append(sock)
            port = sock.getsockname()[1]  # the others on the first's (0: the one it got)
    except BaseException:
        for sock in socks:
            sock.close()
        raise
    return tuple(socks)


def _listening_on(
    family: socket.AddressFamily,
    address: tuple[object, ...],
    part: Literal["server", "gateway"],
    *,
    dual: bool,
) -> socket.socket:
    """Bound as asyncio binds (SO_REUSEADDR: a restart does not wait out TIME_WAIT; an IPv6
    socket IPv6 only, but `dual`: the wildcard `::` alone also takes IPv4, so that the
    127.0.0.1 URLs printed answer), and listening at once: a socket only bound holds nothing
    (another one with SO_REUSEADDR binds the same port)."""
    sock: socket.socket | None = None
    try:
        sock = socket.socket(family, socket.SOCK_STREAM)  # (a kernel without IPv6: an error)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, not dual)
        sock.bind(address)
        sock.listen()
    except OSError as exc:
        if sock is not None:
            sock.close()
        raise _bind_error(exc, address, part) from None
    return sock


def _bind_error(
    exc: OSError, address: tuple[object, ...], part: Literal["server", "gateway"]
) -> UpError:
    error = _InUse if exc.errno == errno.EADDRINUSE else UpError
    why = (exc.strerror or str(exc)).lower()  # worded as asyncio words it
    return error(
        f"{_PARTS[part]}: [Errno {exc.errno}] error while attempting to bind on address "
        f"{address!r}: {why}"
    )


async def _first(*aws: asyncio.Future[object] | asyncio.Task[object]) -> None:
    await asyncio.wait(set(aws), return_when=asyncio.FIRST_COMPLETED)


async def run_up(
    options: UpOptions, on_ready: Callable[[UpInfo], None], stop: asyncio.Event
) -> None:
    """Serve until `stop` is set (set before it is up: returns without `on_ready`); raise
    `UpError` when a part cannot start. The listening sockets (the options', else bound here
    on host:port) are closed when it returns."""
    server, proxy = options.server_sockets, options.proxy_sockets
    with (
        contextlib.nullcontext() if options.up_lock_held else holding_up_lock(options.state_dir),
        closing_all(server or listen_sockets(options.host, options.port, "server")) as server,
        closing_all(
            proxy or listen_sockets(options.proxy_host, options.proxy_port, "gateway")
        ) as proxy,
    ):
        await _run(options, server, proxy, on_ready, stop)


@contextlib.contextmanager
def closing_all(socks: tuple[socket.socket, ...]) -> Iterator[tuple[socket.socket, ...]]:
    """`socks`, each closed at the end of the block."""
    try:
        yield socks
    finally:
        for sock in socks:
            sock.close()


async def _run(
    options: UpOptions,
    server_sockets: tuple[socket.socket, ...],
    proxy_sockets: tuple[socket.socket, ...],
    on_ready: Callable[[UpInfo], None],
    stop: asyncio.Event,
) -> None:
    from agentfirewall_server.datalock import DataBusy, ServerLock
    from agentfirewall_server.settings import Settings

    port = server_sockets[0].getsockname()[1]
    settings = Settings(
        data_dir=options.state_dir,
        host=options.host,
        port=port,  # the real one: the server's own links name it
        database_url=options.database_url,
        log_level=options.log_level,
    )
    if options.upstream_ca is not None:  # SDK executions and token endpoints trust it too
        # (not given: AGENTFIREWALL_UPSTREAM_CA, as the server reads it, is kept)
        settings = settings.model_copy(update={"upstream_ca": options.upstream_ca})
    lock = ServerLock(settings.data_dir, settings.resolved_database_url)
    try:  # no server runs on the data (as `python -m agentfirewall_server` checks it); held
        lock.hold()  # from here until the app stops: of two started at once, one says so here
    except DataBusy as exc:
        raise DataInUse(str(exc)) from None
    except OSError as exc:  # a lock file that cannot be made (a SQLite path under a file)
        raise StoreProblem(
            f"cannot lock `{exc.filename}`: {(exc.strerror or str(exc)).lower()}: check the "
            "data directory and --database-url / AGENTFIREWALL_DATABASE_URL"
        ) from None
    try:
        await _run_holding(options, settings, lock, server_sockets, proxy_sockets, on_ready, stop)
    finally:
        lock.release()  # (once served: released by the app's stop already)


async def _run_holding(
    options: UpOptions,
    settings: Settings,
    lock: ServerLock,
    server_sockets: tuple[socket.socket, ...],
    proxy_sockets: tuple[socket.socket, ...],
    on_ready: Callable[[UpInfo], None],
    stop: asyncio.Event,
) -> None:
    from agentfirewall_proxy.main import build_gateway
    from agentfirewall_proxy.options import Options
    from agentfirewall_server.app import create_app
    from agentfirewall_server.bootstrap import SETUP_TOKEN_FILE, ensure_data_dir, read_secret_file
    from agentfirewall_server.store.db import StoreError
    from agentfirewall_server.vaultcheck import VaultStartError, preflight

    port, proxy_port = server_sockets[0].getsockname()[1], proxy_sockets[0].getsockname()[1]
    try:  # the database opens and the vault key fits, before anything is made
        preflight(settings)
    except (StoreError, VaultStartError) as exc:
        raise StoreProblem(str(exc)) from None
    boot = ensure_data_dir(settings)
    app = create_app(settings)
    app.state.af.lock = lock  # kept by its lifespan, released when it stops
    server = _Server(
        uvicorn.Config(
            app,
            host=options.host,
            port=port,
            log_level=options.log_level,
            access_log=False,
            lifespan="on",
            proxy_headers=False,
            server_header=False,
            ws="none",  # the control plane serves no WebSocket (uvicorn would load its own)
            # open dashboard event streams must not keep Ctrl-C waiting
            timeout_graceful_shutdown=5,
        )
    )
    server_task: asyncio.Task[object] = asyncio.ensure_future(_serve(server, server_sockets))
    stopped = asyncio.ensure_future(stop.wait())
    while not server.started and not server_task.done() and not stopped.done():
        # uvicorn exposes `started` as a flag only: look again every 20 ms
        await asyncio.wait({server_task, stopped}, timeout=0.02)
    if not server.started:
        stopped.cancel()
        await _finish(server, server_task)
        if stop.is_set():  # Ctrl-C while it started: not a failure
            return
        raise UpError(  # (its socket listens already: the database or the data directory)
            f"the control plane did not start on {options.host}:{port}: see the messages "
            "above (the database or data directory)"
        )
    server_url = _url(options.host, port)
    gateway = build_gateway(
        Options(
            control_plane=server_url,
            token=boot.gateway_token,
            listen_host=options.proxy_host,
            listen_port=proxy_port,
            listen_sockets=proxy_sockets,
            ca_dir=options.state_dir,
            resolve=options.resolve,
            upstream_ca=options.upstream_ca,
            agent_ports=options.agent_ports,
            access_log=options.access_log,
        ),
        control_transport=httpx.ASGITransport(app=app),
    )
    gateway_task: asyncio.Task[object] = asyncio.ensure_future(_run_gateway(gateway))
    ready = asyncio.ensure_future(gateway.ready.wait())
    await _first(ready, gateway_task, stopped)
    ready.cancel()
    try:
        if not gateway.ready.is_set():
            if gateway_task.done() and gateway_task.exception() is not None:
                raise UpError(f"the gateway could not start: {gateway_task.exception()}")
            return
        setup = read_secret_file(options.state_dir / SETUP_TOKEN_FILE)
        info = UpInfo(
            server_url=server_url,
            proxy_url=_url(options.proxy_host, proxy_port),
            dashboard_url=server_url + "/dashboard",
            setup_url=f"{server_url}/dashboard/setup?token={setup}" if setup else None,
            ca_cert=options.state_dir / "ca.crt",
            state_dir=options.state_dir,
        )
        _write_up_file(info)
        on_ready(info)
        await _first(stopped, gateway_task, server_task)
    finally:
        stopped.cancel()
        (options.state_dir / "up.json").unlink(missing_ok=True)
        gateway_task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await gateway_task
        app.state.af.hub.close()  # long-polls answer now, not cut at the graceful timeout
        await _finish(server, server_task)


async def _serve(server: uvicorn.Server, socks: tuple[socket.socket, ...]) -> object:
    try:
        await server.serve(sockets=list(socks))
    except SystemExit:  # uvicorn exits when its app does not start
        return None
    return None


async def _run_gateway(gateway: object) -> object:
    await gateway.run()  # type: ignore[attr-defined]
    return None


async def _finish(server: uvicorn.Server, task: asyncio.Task[object]) -> None:
    server.should_exit = True
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task


def _write_up_file(info: UpInfo) -> None:
    data = {
        "pid": os.getpid(),
        "server_url": info.server_url,
        "proxy_url": info.proxy_url,
        "dashboard_url": info.dashboard_url,
        "started_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
    }
    path = info.state_dir / "up.json"
    tmp = path.with_name("up.json.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(data, handle)
    tmp.replace(path)


def up(options: UpOptions, on_ready: Callable[[UpInfo], None]) -> None:
    """Run until SIGINT/SIGTERM; a second signal exits at once. A signal before it is up
    raises `KeyboardInterrupt`, as one before its handlers are in place does."""
    started: list[UpInfo] = []

    def ready(info: UpInfo) -> None:
        started.append(info)
        on_ready(info)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def on_signal() -> None:
            if stop.is_set():  # a second Ctrl-C: stop now (SQLite's WAL keeps what was written)
                os._exit(130)
            stop.set()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal)
        try:
            await run_up(options, ready, stop)
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    try:
        import uvloop
    except ImportError:
        asyncio.run(main())
    else:
        uvloop.run(main())
    if not started:
        raise KeyboardInterrupt
