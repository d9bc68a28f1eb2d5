"""Two replicas on one PostgreSQL, their clocks apart: a suspension on replica A closes
what replica B decided before it, and only that.

B decides with its clock `skew` seconds off A's (the decide route's clock is set off; A
only suspends and activates, with the real one). The claim compares the epoch B decided
under with the agent's stored one, so B ahead does not let an action decided before the
suspension run after it, and B behind does not have one decided after the activation
refused (tests/server/test_suspend_epoch.py: the same on one server, any clocks).
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

import agentfirewall_server.routes.actions as actions_route
from agentfirewall_server.clock import now as real_now
from tests.fakes import FakeUpstreams
from tests.scale.conftest import Pair, module_database, pair, wait_for
from tests.server.test_execute import _execute
from tests.server.test_suspend_closes_allowed import _assert_closed
from tests.server.test_suspend_replicas import _allowed, _status

__all__ = ["module_database", "pair"]  # (fixtures, used here)

pytestmark = pytest.mark.postgres

_numbers = itertools.count(7000)  # a pull request number per action: what ran is counted


@pytest.fixture(scope="module")
def github(pair: Pair, fakes: FakeUpstreams) -> Any:
    """The GitHub fake, declared once on the pair (the connectors are shared)."""
    upstream = fakes["github"]
    connector = {"type": "github", "token": "ghp_x", "base_url": upstream.http_url}
    made = pair.a.admin("POST", "/v1/connectors", json=connector)
    assert made.status_code == 201, made.text
    return upstream


def _merged(github: Any, number: int) -> int:
    return len(github.received("PUT", f"/repos/acme/api/pulls/{number}/merge"))


@pytest.mark.parametrize("skew", [3600.0, 5.0, -5.0, -3600.0])
def test_replica_clocks_apart_neither_run_what_a_suspension_closed_nor_refuse_what_came_after(
    pair: Pair, github: Any, monkeypatch: pytest.MonkeyPatch, skew: float
) -> None:
    a, b = pair.a, pair.b
    name = f"bot{next(_numbers)}"
    key = a.create_agent(name)
    agent_id = a.state.snapshot.agent(name).id
    wait_for(lambda: _status(b, agent_id) == "active", what="B knows of the agent")
    wait_for(lambda: b.state.snapshot.version == a.state.snapshot.version, what="B has A's config")
    monkeypatch.setattr(actions_route, "now", lambda: real_now() + skew)  # B's clock

    early = next(_numbers)
    before = _allowed(b, key, early)
    for change in ("suspend", "activate"):
        assert a.admin("POST", f"/v1/agents/{agent_id}/{change}").status_code == 200
    wait_for(lambda: b.state.snapshot.version == a.state.snapshot.version, what="B hears")
    late = next(_numbers)
    after = _allowed(b, key, late)  # decided after the activation, which B has heard of

    for replica in (b, a):
        closed = _execute(replica, key, before["action_request_id"], before["decision_token"])
        _assert_closed(closed)
    done = _execute(a, key, after["action_request_id"], after["decision_token"])
    assert done.status_code == 200, done.text
    assert (_merged(github, early), _merged(github, late)) == (0, 1)
