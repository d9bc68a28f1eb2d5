"""Where the isolated agent finds the gateway and the control plane: at the address its
environment names, whatever loopback (or other) address `tf up --host` chose, IPv6 included;
a host name (which no DNS answers inside) is renamed 127.0.0.1."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from agentfirewall_proxy.isolate.bridge import AcceptFailures, Bridge, start_sandbox
from agentfirewall_proxy.isolate.packets import Blocked
from agentfirewall_proxy.isolate.run import _inside, bridges_for
from tests.isolate.conftest import echo_server, needs_isolation


def _inside_places(proxy: str, server: str) -> list[list[tuple[str, int]]]:
    return [bridge.inside() for bridge in bridges_for(proxy, server)]


@pytest.mark.parametrize(
    ("proxy", "server", "places"),
    [
        ("http://127.0.0.2:8443", "http://127.0.0.2:3000", [
            [("127.0.0.1", 8443), ("::1", 8443), ("127.0.0.2", 8443)],
            [("127.0.0.1", 3000), ("::1", 3000), ("127.0.0.2", 3000)],
        ]),
        ("http://[::1]:8443", "http://0.0.0.0:3000", [
            [("127.0.0.1", 8443), ("::1", 8443)],
            [("127.0.0.1", 3000), ("::1", 3000)],  # 0.0.0.0 is dialled as 127.0.0.1
        ]),
        ("http://[fd00::2]:9000", "http://localhost:3000", [
            [("127.0.0.1", 9000), ("::1", 9000), ("fd00::2", 9000)],
            [("127.0.0.1", 3000), ("::1", 3000)],
        ]),
        # a control plane elsewhere gets no bridge (SDK calls to it fail closed)
        ("http://10.0.0.5:9000", "https://tf.example.com", [
            [("127.0.0.1", 9000), ("::1", 9000), ("10.0.0.5", 9000)],
        ]),
    ],
    ids=["another-loopback-address", "ipv6-loopback-and-any", "ipv6-address", "remote"],
)  # fmt: skip
def test_every_address_the_agent_is_given_is_listened_on_inside(
    proxy: str, server: str, places: list[list[tuple[str, int]]]
) -> None:
    assert _inside_places(proxy, server) == places


def test_a_control_plane_on_an_address_of_this_machine_is_bridged() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # no packet: only the route's source address
        except OSError:
            pytest.skip("no IPv4 route off this machine")
        own = probe.getsockname()[0]
    if own.startswith("127."):
        pytest.skip("no address but loopback")
    bridges = bridges_for("http://127.0.0.1:8443", f"http://{own}:3000")
    assert [(b.host, b.port) for b in bridges] == [("127.0.0.1", 8443), (own, 3000)]


def test_only_a_gateway_named_by_a_host_name_is_renamed() -> None:
    env = {
        "HTTP_PROXY": "http://Bot:key@[fd00::2]:9000",
        "NO_PROXY": "127.0.0.1,localhost",
        "PATH": "/usr/bin",
    }
    assert _inside(env, "http://[fd00::2]:9000") == env  # listened on at that address
    named = {**env, "HTTP_PROXY": "http://Bot:key@gw.example:9000"}
    assert _inside(named, "http://gw.example:9000")["HTTP_PROXY"] == (
        "http://Bot:key@127.0.0.1:9000"
    )


@pytest.fixture
def echo_on_127_0_0_2() -> Iterator[int]:
    with echo_server("127.0.0.2") as port:
        yield port


AGENT = """
import socket, sys
port, v6 = int(sys.argv[1]), int(sys.argv[2])
s = socket.create_connection(("127.0.0.2", port), timeout=5)
s.sendall(b"ping")
assert s.recv(64) == b"pong:ping"
socket.create_connection(("fd00::2", v6), timeout=5).close()  # accepted by the bridge
"""


@needs_isolation
def test_the_agent_reaches_a_gateway_on_another_loopback_address(echo_on_127_0_0_2: int) -> None:
    """The agent exits 0 only when both connections were accepted (and the echo came back)."""
    port = echo_on_127_0_0_2
    v6 = port + 1 if port < 65535 else port - 1
    blocked: list[Blocked] = []
    bridges = [Bridge(port, "127.0.0.2", port), Bridge(v6, "fd00::2", v6)]
    box = start_sandbox(
        [sys.executable, "-c", AGENT, str(port), str(v6)], {"PATH": os.environ.get("PATH", "")},
        bridges, on_blocked=blocked.append,
    )  # fmt: skip
    assert box.process.wait() == 0
    box.close()
    assert blocked == []
    assert box.accept_failures == 0


class _OutOfDescriptors(socket.socket):
    """A listener whose accept() finds no descriptor free (EMFILE), as an agent that holds
    many connections to the bridge can make `tf run`'s."""

    def accept(self) -> tuple[socket.socket, Any]:
        raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))


def test_a_bridge_out_of_descriptors_counts_instead_of_flooding_stderr(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """asyncio logged a traceback at each failed accept() (thousands on the terminal)."""
    failures = AcceptFailures()
    loop = asyncio.new_event_loop()
    loop.set_exception_handler(failures)
    listener = _OutOfDescriptors(socket.AF_INET, socket.SOCK_STREAM)

    async def serve() -> None:
        listener.bind(("127.0.0.1", 0))
        server = await asyncio.start_server(lambda _r, _w: None, sock=listener)
        with socket.create_connection(listener.getsockname()):
            while not failures.count:
                await asyncio.sleep(0.01)
        server.close()

    try:
        with caplog.at_level(logging.DEBUG, logger="asyncio"):
            loop.run_until_complete(asyncio.wait_for(serve(), 5))
            loop.call_exception_handler({"message": "something else"})
    finally:
        loop.close()
    assert failures.count > 0  # asyncio tries again 100 times at once, then every second
    assert [r.getMessage() for r in caplog.records if r.name == "asyncio"] == ["something else"]
