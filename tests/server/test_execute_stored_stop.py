"""An execute reads the kill switches and its agent's status from the store, in its claim.

Another replica's kill switch or suspension reaches this replica's snapshot a moment later
(its listener, or its version poll when the listener is down: up to 2 s). 0.1.0's execute
checked only the snapshot, so an action sent to a replica that had not heard yet ran after
the switch had answered 200 elsewhere (the review saw 4 of 5 run on replica B). Here the
store is changed behind the snapshot's back, as another replica would have changed it.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Connection, update

from agentfirewall_server.store.schema import action_requests, agents, kill_switches
from tests.fakes import FakeUpstreams
from tests.server.conftest import SPEC, Harness
from tests.server.test_execute import _execute, _github


def _behind_the_snapshot(h: Harness, change: Any) -> None:
    version = h.state.snapshot.version
    h.state.db.write_sync(change)
    assert h.state.snapshot.version == version  # (this replica has not heard of it)


def _switch(scope: str, target: str) -> Any:
    def job(conn: Connection) -> None:
        conn.execute(kill_switches.insert().values(
            scope=scope, target=target, reason="incident", activated_by="replica-a",
            activated_at=0.0))  # fmt: skip

    return job


def _suspend(agent_id: str) -> Any:
    def job(conn: Connection) -> None:
        conn.execute(update(agents).where(agents.c.id == agent_id).values(status="suspended"))

    return job


@pytest.mark.parametrize(("stop", "status", "error"), [
    ("all", 403, "kill_switch_active"),
    ("agent", 403, "kill_switch_active"),
    ("connector", 403, "kill_switch_active"),
    ("suspended", 401, "unauthorized"),
])  # fmt: skip
def test_a_stop_another_replica_stored_is_read_by_the_claim(
    harness: Harness, fakes: FakeUpstreams, stop: str, status: int, error: str
) -> None:
    github = fakes["github"]
    github.clear()
    _github(harness, fakes)
    key = harness.create_agent(f"Bot-{stop}")
    agent_id = harness.state.snapshot.agent(f"Bot-{stop}").id
    body = harness.agent(key, "POST", "/v1/actions", json={"action_spec": SPEC}).json()
    assert body["status"] == "allowed", body
    change = {"all": _switch("all", ""), "agent": _switch("agent", f"Bot-{stop}"),
              "connector": _switch("connector", "github"),
              "suspended": _suspend(agent_id)}[stop]  # fmt: skip
    _behind_the_snapshot(harness, change)
    action = body["action_request_id"]
    refused = _execute(harness, key, action, body["decision_token"])
    assert (refused.status_code, refused.json()["error"]) == (status, error), refused.text
    assert github.received("PUT") == []

    def unclaimed(conn: Connection) -> Any:
        row = conn.execute(action_requests.select().where(action_requests.c.id == action))
        return row.first()

    row = harness.state.db.read_sync(unclaimed)
    assert (row.status, row.execution_state) == ("allowed", None)  # the token stays unspent
