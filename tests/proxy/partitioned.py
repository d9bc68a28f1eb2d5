"""A gateway whose control plane can be cut off, and requests sent to it one after another.

What the tests of ``--max-config-age`` share (``test_control_plane_lost.py``,
``test_config_never_older.py``, ``test_cut_answered.py``): an in-memory control plane seen
through a link a test breaks and heals (:class:`Partitioned`: calls hang; a replica behind
its database: ``test_config_never_older.BehindReplica``), a gateway in front of the fake
GitHub that must hear from it every second (:func:`gateway_cut_off_by`), and ``GET /user``
sent until its status says stop (:func:`answers_until`).
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from agentfirewall_proxy.control import StaticControl
from tests.fakes import FakeUpstreams
from tests.proxy.rawclient import auth_header, read_response, status_of
from tests.proxy.support import KEY, RunningGateway, connector, gateway_options, snapshot

__all__ = [
    "USER",
    "Link",
    "Partitioned",
    "answers_until",
    "ask",
    "gateway_cut_off_by",
    "statuses_until",
]

USER = b"GET http://api.github.com/user HTTP/1.1\r\nHost: api.github.com\r\n"


class Link:
    """An in-memory control plane (`inner`) behind a link: every coroutine method but
    `aclose` goes through :meth:`relay`, which a subclass breaks; :meth:`heal` mends it."""

    def __init__(self, inner: StaticControl) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)
        if name == "aclose" or not asyncio.iscoroutinefunction(method):
            return method

        async def call(*args: Any, **kwargs: Any) -> Any:
            return await self.relay(method, *args, **kwargs)

        return call

    async def relay(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await method(*args, **kwargs)

    def heal(self) -> None:
        """Let every call through again."""


class Partitioned(Link):
    """A control plane behind a link that can be cut: while it is cut, every call and every
    answer hangs (no error, no answer), as in a network partition."""

    def __init__(self, inner: StaticControl) -> None:
        super().__init__(inner)
        self.link = threading.Event()
        self.link.set()

    async def _through(self) -> None:
        while not self.link.is_set():
            await asyncio.sleep(0.02)

    async def relay(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        await self._through()
        answer = await method(*args, **kwargs)
        await self._through()  # an answer sent as the link went down is lost too
        return answer

    def heal(self) -> None:
        self.link.set()


LinkT = TypeVar("LinkT", bound=Link)


@contextmanager
def gateway_cut_off_by(
    link: Callable[[StaticControl], LinkT],
    rules: list[dict[str, Any]],
    fakes: FakeUpstreams,
    tmp_path: Path,
) -> Iterator[tuple[RunningGateway, LinkT]]:
    """A gateway in front of the fake GitHub (its requests cleared) with a one-second
    ``--max-config-age``, whose control plane serves `rules` through `link`; healed on the
    way out (the last traffic records are shipped then), and stopped."""
    fakes["github"].clear()
    control = link(StaticControl(snapshot(rules, connectors=[connector("github")])))
    options = gateway_options(tmp_path, fakes, max_config_age=1.0)
    running = RunningGateway(options, control).start()
    try:
        yield running, control
    finally:
        control.heal()
        running.stop()


def ask(
    running: RunningGateway, request: bytes = USER, body: bytes = b"", *, key: str = KEY
) -> bytes:
    with socket.create_connection(("127.0.0.1", running.port), timeout=10) as sock:
        sock.sendall(request + auth_header(key) + b"\r\n" + body)
        return read_response(sock, timeout=10)


def answers_until(running: RunningGateway, done: Callable[[int], bool]) -> list[int]:
    """The statuses of requests sent one after another until `done` says stop."""
    return statuses_until(lambda: ask(running), done)


def statuses_until(send: Callable[[], bytes], done: Callable[[int], bool]) -> list[int]:
    seen: list[int] = []
    deadline = time.monotonic() + 10
    while not seen or not done(seen[-1]):
        assert time.monotonic() < deadline, f"still {seen[-1]}"
        seen.append(status_of(send()))
        time.sleep(0.05)
    return seen
