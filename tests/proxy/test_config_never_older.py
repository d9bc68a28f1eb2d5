"""A gateway never goes back to a configuration older than the one it enforces.

A control-plane replica cut off from the database still answers with the snapshot it last
read: older than the one another replica served, and without the kill switch engaged
since. The gateway fails over to it (its replica died): that answer must neither replace
the config in force nor count as word from the control plane, so the kill switch holds
until ``--max-config-age`` passes, and then every request is refused (503).
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentfirewall_proxy.control import ControlError, StaticControl
from tests.fakes import FakeUpstreams
from tests.proxy.rawclient import auth_header, read_response, status_of
from tests.proxy.support import RunningGateway, connector, gateway_options, rule, snapshot

RULES = [rule("github.*", "allow")]
USER = b"GET http://api.github.com/user HTTP/1.1\r\nHost: api.github.com\r\n"


class BehindReplica:
    """A control plane that, once `behind` holds an older snapshot, answers every config
    fetch with it and fails every write (as a replica cut off from its database does)."""

    def __init__(self, inner: StaticControl) -> None:
        self.inner = inner
        self.behind: dict[str, Any] | None = None

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)
        if name in ("aclose", "fetch_config") or not asyncio.iscoroutinefunction(method):
            return method

        async def call(*args: Any, **kwargs: Any) -> Any:
            if self.behind is not None:
                raise ControlError("control plane answered 503", 503)
            return await method(*args, **kwargs)

        return call

    async def fetch_config(self, since: int | None, wait: float) -> dict[str, Any] | None:
        old = self.behind
        if old is None:
            return await self.inner.fetch_config(since, wait)
        return None if since == old["version"] else dict(old)


@pytest.fixture
def gateway(fakes: FakeUpstreams, tmp_path: Path) -> Iterator[tuple[RunningGateway, BehindReplica]]:
    fakes["github"].clear()
    control = BehindReplica(StaticControl(snapshot(RULES, connectors=[connector("github")])))
    options = gateway_options(tmp_path, fakes, max_config_age=1.0)
    running = RunningGateway(options, control).start()  # type: ignore[arg-type]
    try:
        yield running, control
    finally:
        control.behind = None
        running.stop()


def _status(running: RunningGateway) -> int:
    with socket.create_connection(("127.0.0.1", running.port), timeout=10) as sock:
        sock.sendall(USER + auth_header() + b"\r\n")
        return status_of(read_response(sock, timeout=10))


def _statuses_until(running: RunningGateway, last: int, allowed: set[int]) -> None:
    """Requests one after another until one answers `last`; each answers one of `allowed`."""
    seen: list[int] = []
    deadline = time.monotonic() + 10
    while not seen or seen[-1] != last:
        assert time.monotonic() < deadline, f"still {seen[-1]}"
        seen.append(_status(running))
        assert seen[-1] in allowed, seen
        time.sleep(0.05)


def test_an_older_config_is_never_applied_nor_taken_for_contact(
    gateway: tuple[RunningGateway, BehindReplica], fakes: FakeUpstreams
) -> None:
    running, control = gateway
    assert _status(running) == 200
    old = dict(control.inner.snapshot)
    kill = [{"scope": "all", "target": None, "reason": "incident"}]
    control.inner.update(snapshot(RULES, connectors=[connector("github")], kill_switches=kill))
    _statuses_until(running, 403, {200, 403})
    forwarded = len(fakes["github"].received("GET"))
    control.behind = old  # the gateway now hears only from a replica behind
    _statuses_until(running, 503, {403, 503})  # the kill switch held, then the bound passed
    config = running.gateway.config if running.gateway is not None else None
    assert config is not None
    assert config.version == old["version"] + 1  # the newer one, still in force
    assert len(fakes["github"].received("GET")) == forwarded
    control.behind = None  # the replicas that are current answer again
    _statuses_until(running, 403, {403, 503})
