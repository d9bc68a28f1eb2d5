"""`tf up` binds its ports once and serves those very sockets: no port checked free, released,
and bound later (another `tf up`, or any process, could take it in between, and `.tf/up.json`
would name a port someone else holds).

It listens on every address its host resolves to (`localhost`: 127.0.0.1 and ::1), all on one
port, as asyncio and uvicorn did; `--host ::` takes IPv4 too, so its 127.0.0.1 URLs answer; a
Ctrl-C while it starts is an interruption, not a failure.

In-process: `listen_sockets` (the choice), `tf up` as `main([...])` up to its first bind, and
`run_up` on sockets a test bound.
"""

from __future__ import annotations

import asyncio
import errno
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from agentfirewall_proxy import up
from agentfirewall_proxy.cli.app import main
from agentfirewall_proxy.up import (
    StoreProblem,
    UpError,
    UpInfo,
    UpOptions,
    closing_all,
    listen_sockets,
    run_up,
)


def _ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


needs_ipv6 = pytest.mark.skipif(not _ipv6(), reason="no ::1")
HOSTS = ["127.0.0.1", pytest.param("::1", marks=needs_ipv6)]
#: What `localhost` resolves to in the tests below (both, as in many /etc/hosts).
LOOPBACKS = ["127.0.0.1", "::1"] if _ipv6() else ["127.0.0.1"]


def _port(sock: socket.socket) -> int:
    return int(sock.getsockname()[1])


@pytest.fixture
def localhost(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """`localhost` resolves to each of `LOOPBACKS` (this machine's /etc/hosts may name one)."""
    real = socket.getaddrinfo

    def resolve(host: object, *args: object, **kwargs: object) -> list[object]:
        hosts = LOOPBACKS if host == "localhost" else [host]
        return [info for one in hosts for info in real(one, *args, **kwargs)]  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    return LOOPBACKS


def _answers(address: str, port: int) -> bool:
    """A connection is taken (by the listening socket's backlog: no accept needed)."""
    try:
        socket.create_connection((address, port), timeout=5).close()
    except OSError:
        return False
    return True


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The directory `tf up` runs in (it makes `.tf/` there)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def bound(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[socket.socket]]:
    """Every socket `listen_sockets` gives, to check that each is closed in the end."""
    given: list[socket.socket] = []
    real = up.listen_sockets

    def recording(*args: object, **kwargs: object) -> tuple[socket.socket, ...]:
        socks = real(*args, **kwargs)  # type: ignore[arg-type]
        given.extend(socks)
        return socks

    monkeypatch.setattr(up, "listen_sockets", recording)
    yield given
    for sock in given:
        sock.close()


@pytest.mark.parametrize("host", HOSTS)
def test_a_port_chosen_stays_taken_until_it_is_served(host: str) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with closing_all(listen_sockets(host, 0, "server")) as (first,):
        port = _port(first)
        # a second `tf up` choosing at the same time moves on: the first holds the port
        with closing_all(listen_sockets(host, port, "gateway", move=True)) as (second,):
            assert second.getsockname()[0] == host
            assert _port(second) != port
        # and so does any program binding as uvicorn and asyncio do (SO_REUSEADDR): a
        # socket only bound, not listening, would let it
        with socket.socket(family) as other:
            other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            with pytest.raises(OSError) as refused:
                other.bind((host, port))
            assert refused.value.errno == errno.EADDRINUSE


def test_a_port_named_and_taken_is_an_error_and_a_foreign_host_is_not_walked() -> None:
    with closing_all(listen_sockets("127.0.0.1", 0, "server")) as (held,):
        port = _port(held)
        with pytest.raises(UpError) as taken:
            listen_sockets("127.0.0.1", port, "gateway")  # as `--proxy-port PORT`
    assert str(taken.value) == (
        "the gateway could not start: [Errno 98] error while attempting to bind on address "
        f"('127.0.0.1', {port}): address already in use"
    )
    with pytest.raises(UpError, match="cannot assign requested address") as foreign:
        listen_sockets("192.0.2.1", 3000, "server", move=True)  # TEST-NET: not this machine's
    assert str(foreign.value).startswith("the control plane did not start: ")
    assert "3000)" in str(foreign.value)  # said at once, not after 99 more ports


def test_a_host_listens_on_every_address_it_resolves_to_on_one_port(localhost: list[str]) -> None:
    with closing_all(listen_sockets("localhost", 0, "server")) as socks:
        assert sorted(sock.getsockname()[0] for sock in socks) == sorted(localhost)
        port = _port(socks[0])
        assert {_port(sock) for sock in socks} == {port}
        assert all(_answers(address, port) for address in localhost)
        for sock in socks:  # each IPv6 one stays IPv6 only, as asyncio binds several
            if sock.family == socket.AF_INET6:
                assert sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 1


@needs_ipv6
def test_a_port_taken_on_one_address_is_taken_for_all(localhost: list[str]) -> None:
    with socket.create_server(("::1", 0), family=socket.AF_INET6) as held:
        port = _port(held)  # free on 127.0.0.1 (bound first), taken on ::1
        with pytest.raises(UpError, match="address already in use") as taken:
            listen_sockets("localhost", port, "server")
        assert f"('::1', {port}, 0, 0)" in str(taken.value)
        with closing_all(listen_sockets("localhost", port, "server", move=True)) as moved:
            assert len(moved) == 2
            assert {_port(sock) for sock in moved} == {_port(moved[0])} != {port}
        # the 127.0.0.1 socket of each failed try was closed: the port is free there again
        with closing_all(listen_sockets("127.0.0.1", port, "server")) as (again,):
            assert _port(again) == port


@needs_ipv6
def test_the_ipv6_wildcard_takes_ipv4_too_so_its_urls_answer() -> None:
    with closing_all(listen_sockets("::", 0, "server")) as (sock,):
        port = _port(sock)
        assert up._url("::", port) == f"http://127.0.0.1:{port}"  # the URL printed
        assert _answers("127.0.0.1", port)
        assert _answers("::1", port)


@pytest.mark.parametrize("taken", ["--port", "--proxy-port"])
def test_tf_up_on_a_taken_port_says_so_and_leaves_no_socket_open(
    taken: str, bound: list[socket.socket], project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["up", "--port", "0", "--proxy-port", "0"]
    with socket.create_server(("127.0.0.1", 0)) as held:
        port = args[args.index(taken) + 1] = str(_port(held))
        assert main(args) == 1
    err = capsys.readouterr().err
    part = "the control plane did not start" if taken == "--port" else "the gateway could not start"
    assert f"error: {part}: [Errno 98] error while attempting to bind on address " in err
    assert f"('127.0.0.1', {port}): address already in use" in err
    assert "another program uses the port (pick others with --port/--proxy-port)" in err
    assert "is taken" not in err  # ports named (0 too) never move
    assert len(bound) == (0 if taken == "--port" else 1)
    assert all(sock.fileno() == -1 for sock in bound)  # the server's, bound first: closed


@pytest.mark.anyio
async def test_run_up_serves_every_socket_it_is_given_and_closes_them(
    tmp_path: Path, localhost: list[str]
) -> None:
    server = listen_sockets("localhost", 0, "server")  # 127.0.0.1 and ::1 (IPv6 too)
    proxy = listen_sockets("localhost", 0, "gateway")
    ports = _port(server[0]), _port(proxy[0])
    stop = asyncio.Event()
    seen: list[UpInfo] = []
    answers: list[object] = []

    async def ask(info: UpInfo) -> None:
        try:
            for address in localhost:  # each part answers on each of its addresses
                shown = f"[{address}]" if ":" in address else address
                async with httpx.AsyncClient() as client:
                    health = await client.get(f"http://{shown}:{ports[0]}/api/health")
                answers.append(health.status_code)
                reader, writer = await asyncio.open_connection(address, ports[1])
                writer.write(
                    b"GET http://example.invalid/ HTTP/1.1\r\nHost: example.invalid\r\n\r\n"
                )
                status = await asyncio.wait_for(reader.readline(), 10)  # (not served: hangs)
                answers.append(status.split(b" ")[1])
                writer.close()
                await writer.wait_closed()
        finally:
            stop.set()

    tasks: list[asyncio.Task[None]] = []

    def on_ready(info: UpInfo) -> None:
        seen.append(info)
        tasks.append(asyncio.ensure_future(ask(info)))

    options = UpOptions(
        state_dir=tmp_path / ".tf",
        host="localhost",
        port=1,  # never bound: the sockets are
        proxy_host="localhost",
        proxy_port=1,
        server_sockets=server,
        proxy_sockets=proxy,
    )
    await run_up(options, on_ready, stop)
    await asyncio.gather(*tasks)
    assert seen[0].server_url == f"http://localhost:{ports[0]}"
    assert seen[0].proxy_url == f"http://localhost:{ports[1]}"
    assert answers == [200, b"407"] * len(localhost)
    assert all(sock.fileno() == -1 for sock in server + proxy)


@pytest.mark.anyio
async def test_run_up_closes_its_sockets_when_it_cannot_start(
    tmp_path: Path, bound: list[socket.socket]
) -> None:
    (server,) = listen_sockets("127.0.0.1", 0, "server")
    (proxy,) = listen_sockets("127.0.0.1", 0, "gateway")
    (tmp_path / "file").touch()
    broken = UpOptions(
        state_dir=tmp_path / ".tf",
        database_url=f"sqlite:///{tmp_path / 'file' / 'x.db'}",  # a directory that is a file
        server_sockets=(server,),
        proxy_sockets=(proxy,),
    )
    with pytest.raises(StoreProblem):
        await run_up(broken, lambda info: None, asyncio.Event())
    assert (server.fileno(), proxy.fileno()) == (-1, -1)
    # bound by run_up itself (no sockets given): the server's, when the gateway's port is taken
    with socket.create_server(("127.0.0.1", 0)) as held:
        taken = UpOptions(state_dir=tmp_path / ".tf", port=0, proxy_port=_port(held))
        with pytest.raises(UpError, match="the gateway could not start"):
            await run_up(taken, lambda info: None, asyncio.Event())
    assert len(bound) == 1
    assert bound[0].fileno() == -1


def test_ctrl_c_while_tf_up_starts_is_an_interruption_not_a_failure(
    bound: list[socket.socket],
    project: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The stop (SIGINT, SIGTERM) comes once the sockets listen, before the server is up."""
    real = up.run_up

    async def ctrl_c_at_once(
        options: UpOptions, on_ready: Callable[[UpInfo], None], stop: asyncio.Event
    ) -> None:
        stop.set()
        await real(options, on_ready, stop)

    monkeypatch.setattr(up, "run_up", ctrl_c_at_once)
    assert main(["up", "--port", "0", "--proxy-port", "0"]) == 130  # as a Ctrl-C before
    err = capsys.readouterr().err
    assert "error: interrupted" in err
    assert "did not start" not in err
    assert len(bound) == 2
    assert all(sock.fileno() == -1 for sock in bound)
    assert not (project / ".tf" / "up.json").exists()
