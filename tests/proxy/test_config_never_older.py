"""A gateway never goes back to a configuration older than the one it enforces.

A control-plane replica cut off from the database still answers with the snapshot it last
read: older than the one another replica served, and without the kill switch engaged
since. The gateway fails over to it (its replica died): that answer must neither replace
the config in force nor count as word from the control plane, so the kill switch holds
until ``--max-config-age`` passes, and then every request is refused (503).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agentfirewall_proxy.control import ControlError, StaticControl
from tests.fakes import FakeUpstreams
from tests.proxy.partitioned import Link, answers_until, ask, gateway_cut_off_by
from tests.proxy.rawclient import status_of
from tests.proxy.support import RunningGateway, connector, rule, snapshot

RULES = [rule("github.*", "allow")]


class BehindReplica(Link):
    """A control plane that, once `behind` holds an older snapshot, answers every config
    fetch with it and fails every write (as a replica cut off from its database does)."""

    def __init__(self, inner: StaticControl) -> None:
        super().__init__(inner)
        self.behind: dict[str, Any] | None = None

    async def relay(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if self.behind is not None:
            raise ControlError("control plane answered 503", 503)
        return await method(*args, **kwargs)

    async def fetch_config(self, since: int | None, wait: float) -> dict[str, Any] | None:
        old = self.behind
        if old is None:
            return await self.inner.fetch_config(since, wait)
        return None if since == old["version"] else dict(old)

    def heal(self) -> None:
        self.behind = None


@pytest.fixture
def gateway(fakes: FakeUpstreams, tmp_path: Path) -> Iterator[tuple[RunningGateway, BehindReplica]]:
    with gateway_cut_off_by(BehindReplica, RULES, fakes, tmp_path) as both:
        yield both


def _status(running: RunningGateway) -> int:
    return status_of(ask(running))


def _statuses_until(running: RunningGateway, last: int, allowed: set[int]) -> None:
    """Requests one after another until one answers `last`; each answers one of `allowed`."""
    seen = answers_until(running, lambda status: status == last)
    assert set(seen) <= allowed, seen


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
