"""`tf up` binds its ports once and serves those very sockets: no port checked free, released,
and bound later (another `tf up`, or any process, could take it in between, and `.tf/up.json`
would name a port someone else holds).

In-process: `listen_socket` (the choice), `tf up` as `main([...])` up to its first bind, and
`run_up` on sockets a test bound.
"""

from __future__ import annotations

import asyncio
import errno
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from agentfirewall_proxy import up
from agentfirewall_proxy.cli.app import main
from agentfirewall_proxy.up import StoreProblem, UpError, UpInfo, UpOptions, listen_socket, run_up


def _ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


HOSTS = ["127.0.0.1", pytest.param("::1", marks=pytest.mark.skipif(not _ipv6(), reason="no ::1"))]


def _port(sock: socket.socket) -> int:
    return int(sock.getsockname()[1])


@pytest.fixture
def bound(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[socket.socket]]:
    """Every socket `listen_socket` gives, to check that each is closed in the end."""
    given: list[socket.socket] = []
    real = up.listen_socket

    def recording(*args: object, **kwargs: object) -> socket.socket:
        sock = real(*args, **kwargs)  # type: ignore[arg-type]
        given.append(sock)
        return sock

    monkeypatch.setattr(up, "listen_socket", recording)
    yield given
    for sock in given:
        sock.close()


@pytest.mark.parametrize("host", HOSTS)
def test_a_port_chosen_stays_taken_until_it_is_served(host: str) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with listen_socket(host, 0, "server") as first:
        port = _port(first)
        # a second `tf up` choosing at the same time moves on: the first holds the port
        with listen_socket(host, port, "gateway", move=True) as second:
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
    with listen_socket("127.0.0.1", 0, "server") as held:
        port = _port(held)
        with pytest.raises(UpError) as taken:
            listen_socket("127.0.0.1", port, "gateway")  # as `--proxy-port PORT`
    assert str(taken.value) == (
        "the gateway could not start: [Errno 98] error while attempting to bind on address "
        f"('127.0.0.1', {port}): address already in use"
    )
    with pytest.raises(UpError, match="cannot assign requested address") as foreign:
        listen_socket("192.0.2.1", 3000, "server", move=True)  # TEST-NET: not this machine's
    assert str(foreign.value).startswith("the control plane did not start: ")
    assert "3000)" in str(foreign.value)  # said at once, not after 99 more ports


@pytest.mark.parametrize("taken", ["--port", "--proxy-port"])
def test_tf_up_on_a_taken_port_says_so_and_leaves_no_socket_open(
    taken: str,
    bound: list[socket.socket],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
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
async def test_run_up_serves_on_the_sockets_it_is_given_and_closes_them(tmp_path: Path) -> None:
    proxy_host = "::1" if _ipv6() else "127.0.0.1"  # an IPv6 socket too
    server = listen_socket("127.0.0.1", 0, "server")
    proxy = listen_socket(proxy_host, 0, "gateway")
    ports = _port(server), _port(proxy)
    stop = asyncio.Event()
    seen: list[UpInfo] = []
    answers: list[object] = []

    async def ask(info: UpInfo) -> None:
        try:
            async with httpx.AsyncClient() as client:
                answers.append((await client.get(info.server_url + "/api/health")).status_code)
            reader, writer = await asyncio.open_connection(proxy_host, ports[1])
            writer.write(b"GET http://example.invalid/ HTTP/1.1\r\nHost: example.invalid\r\n\r\n")
            answers.append((await reader.readline()).split(b" ")[1])
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
        port=1,  # never bound: the sockets are
        proxy_port=1,
        proxy_host=proxy_host,
        server_socket=server,
        proxy_socket=proxy,
    )
    await run_up(options, on_ready, stop)
    await asyncio.gather(*tasks)
    assert seen[0].server_url == f"http://127.0.0.1:{ports[0]}"
    shown = f"[{proxy_host}]" if ":" in proxy_host else proxy_host
    assert seen[0].proxy_url == f"http://{shown}:{ports[1]}"
    assert answers == [200, b"407"]  # each answered on its own socket
    assert (server.fileno(), proxy.fileno()) == (-1, -1)


@pytest.mark.anyio
async def test_run_up_closes_its_sockets_when_it_cannot_start(
    tmp_path: Path, bound: list[socket.socket]
) -> None:
    server = listen_socket("127.0.0.1", 0, "server")
    proxy = listen_socket("127.0.0.1", 0, "gateway")
    (tmp_path / "file").touch()
    broken = UpOptions(
        state_dir=tmp_path / ".tf",
        database_url=f"sqlite:///{tmp_path / 'file' / 'x.db'}",  # a directory that is a file
        server_socket=server,
        proxy_socket=proxy,
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
