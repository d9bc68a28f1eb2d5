"""Nothing decided before a suspension runs after it, whatever the replicas' clocks say
(SQLite and PostgreSQL).

The execute claim compared the action's `created_at` (the deciding replica's clock) with the
agent's `closed_before` (the clock of the replica that suspended or activated it): a decide
replica 5 s ahead let an action decided before a suspension run after it, and one 5 s behind
had an action decided after the activation refused. The agent now counts its closures
(`agents.closed_epoch`), each action records the epoch it was decided under, and the claim
compares the two: no clock is read. Here one server stands for the replicas: the decide
route reads one clock (`routes.actions.now`), the agents route another (`routes.agents.now`),
each set off the real one by any amount, and the outcome depends only on what happened in
what order.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, select, update

import agentfirewall_server.routes.actions as actions_route
import agentfirewall_server.routes.agents as agents_route
from agentfirewall_server.clock import now as real_now
from agentfirewall_server.routes.agents import _set_status
from agentfirewall_server.store.schema import action_requests, agents
from tests.server.conftest import Harness
from tests.server.test_execute import _execute
from tests.server.test_suspend_closes_allowed import (
    _allowed,
    _assert_closed,
    _cycle,
    _merge,
    github,
)

__all__ = ["github"]  # (the fixture, used here)

_numbers = itertools.count(5000)  # a pull request number per action, an agent name per example
_HOUR = 3600.0
#: How far off the real clock a replica's clock is (seconds): a minute's skew or an hour's.
_skews = st.floats(min_value=-_HOUR, max_value=_HOUR, allow_nan=False, allow_infinity=False)


def _epochs(h: Harness, agent_id: str) -> tuple[int, dict[str, int]]:
    """The agent's stored epoch and, by action id, the epoch each action was decided under."""

    def read(conn: Connection) -> tuple[int, dict[str, int]]:
        agent = conn.execute(select(agents.c.closed_epoch).where(agents.c.id == agent_id))
        rows = conn.execute(
            select(action_requests.c.id, action_requests.c.agent_epoch).where(
                action_requests.c.agent_id == agent_id
            )
        )
        return agent.scalar_one(), {action_id: epoch for action_id, epoch in rows}

    return h.state.db.read_sync(read)


def _decide(h: Harness, key: str) -> tuple[str, str, str]:
    """An allowed action: its id, token and the upstream path it merges."""
    number = next(_numbers)
    body = _allowed(h, key, _merge(number))
    return (
        body["action_request_id"],
        body["decision_token"],
        f"/repos/acme/api/pulls/{number}/merge",
    )


@pytest.fixture
def clocks(monkeypatch: pytest.MonkeyPatch) -> dict[str, float]:
    """Each route's clock, as an offset from the real one (seconds)."""
    offsets = {"decide": 0.0, "close": 0.0}
    monkeypatch.setattr(actions_route, "now", lambda: real_now() + offsets["decide"])
    monkeypatch.setattr(agents_route, "now", lambda: real_now() + offsets["close"])
    return offsets


def test_nothing_decided_before_a_suspension_runs_after_it_whatever_the_clocks(
    harness: Harness, github: Any, clocks: dict[str, float]
) -> None:
    """For any two clocks: an action decided before a suspension (or by a replica that had
    not heard of it, during it) is refused after the activation, with every suspension and
    activation repeated any number of times; one decided after the last activation runs."""

    @settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(decide=_skews, close=_skews, cycles=st.integers(1, 3), unheard=st.booleans())
    def check(decide: float, close: float, cycles: int, unheard: bool) -> None:
        clocks.update(decide=decide, close=close)
        name = f"bot{next(_numbers)}"
        key = harness.create_agent(name)
        record = harness.state.snapshot.agent(name)
        closed = [_decide(harness, key)]  # decided before the suspension
        for _ in range(cycles - 1):
            _cycle(harness, name, "suspend", "activate")
        if unheard:  # suspended by a replica this one has not heard from: it decides on
            harness.state.db.write_sync(_set_status(record, "suspended", "user:other-replica"))
            closed.append(_decide(harness, key))
        else:
            _cycle(harness, name, "suspend")
        _cycle(harness, name, "activate")
        after = _decide(harness, key)  # decided after the last activation

        for action_id, token, _ in closed:
            _assert_closed(_execute(harness, key, action_id, token))
        done = _execute(harness, key, after[0], after[1])
        assert done.status_code == 200, done.text
        assert [len(github.received("PUT", path)) for *_, path in [*closed, after]] == [
            *(0 for _ in closed),
            1,
        ]

    check()


@pytest.mark.parametrize("skew", [5.0, -5.0])
def test_the_reported_skews(
    harness: Harness, github: Any, clocks: dict[str, float], skew: float
) -> None:
    """The reviewer's probe: the deciding replica 5 s ahead (an action decided before the
    suspension ran after it) and 5 s behind (one decided after the activation was refused)."""
    clocks["decide"] = skew
    key = harness.create_agent("Bot")
    before = _decide(harness, key)
    _cycle(harness, "Bot", "suspend", "activate")
    after = _decide(harness, key)

    _assert_closed(_execute(harness, key, before[0], before[1]))
    done = _execute(harness, key, after[0], after[1])
    assert done.status_code == 200, done.text
    assert len(github.received("PUT", before[2])) == 0
    assert len(github.received("PUT", after[2])) == 1


def test_a_removal_ends_the_epoch_of_what_the_agent_decided(
    harness: Harness, github: Any, clocks: dict[str, float]
) -> None:
    """Removing counts as a closure too, and a newcomer under the name starts at epoch 0
    with its own actions (the removed agent's action stays closed, whatever the clocks)."""
    clocks.update(decide=_HOUR, close=-_HOUR)
    key = harness.create_agent("Bot")
    agent_id = harness.state.snapshot.agent("Bot").id
    before = _decide(harness, key)
    _cycle(harness, "Bot", "revoke")
    assert _execute(harness, key, before[0], before[1]).status_code == 401
    assert _epochs(harness, agent_id) == (1, {before[0]: 0})
    newcomer = harness.create_agent("Bot")
    mine = _decide(harness, newcomer)
    done = _execute(harness, newcomer, mine[0], mine[1])
    assert done.status_code == 200, done.text
    assert len(github.received("PUT", before[2])) == 0


def test_an_action_stored_without_an_epoch_never_executes(harness: Harness, github: Any) -> None:
    """Fail closed: a row written with no epoch (NULL) is refused, even for an agent
    never closed (epoch 0)."""
    key = harness.create_agent("Bot")
    action_id, token, path = _decide(harness, key)
    harness.state.db.write_sync(
        lambda c: c.execute(
            update(action_requests)
            .where(action_requests.c.id == action_id)
            .values(agent_epoch=None)
        )
    )
    _assert_closed(_execute(harness, key, action_id, token))
    assert github.received("PUT", path) == []
