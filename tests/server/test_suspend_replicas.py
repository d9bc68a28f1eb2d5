"""Two replicas on one PostgreSQL: a suspension on replica A closes what replica B allowed.

The execute claim reads the agent's `closed_before` from the store in its own transaction,
so B refuses an action decided before A's suspension, whatever B's snapshot has heard yet
(tests/server/test_suspend_closes_allowed.py: the same on one server).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.fakes import FakeUpstreams
from tests.scale.conftest import Pair, module_database, pair, wait_for
from tests.server.conftest import SPEC, Harness
from tests.server.test_execute import _execute

__all__ = ["module_database", "pair"]  # (fixtures, used here)

pytestmark = pytest.mark.postgres


def _status(h: Harness, agent_id: str) -> str | None:
    record = h.state.snapshot.agent(agent_id)
    return None if record is None else str(record.status)


def _allowed(h: Harness, key: str, number: int) -> dict[str, Any]:
    spec = {**SPEC, "parameters": {"pull_number": number}}
    body: dict[str, Any] = h.agent(key, "POST", "/v1/actions", json={"action_spec": spec}).json()
    assert body["status"] == "allowed", body
    return body


def test_an_action_allowed_on_one_replica_is_closed_by_a_suspension_on_the_other(
    pair: Pair, fakes: FakeUpstreams
) -> None:
    a, b = pair.a, pair.b
    github = fakes["github"]
    github.clear()
    connector = {"type": "github", "token": "ghp_x", "base_url": github.http_url}
    made = a.admin("POST", "/v1/connectors", json=connector)
    assert made.status_code == 201, made.text
    key = a.create_agent("Bot")
    agent_id = a.state.snapshot.agent("Bot").id
    wait_for(lambda: _status(b, agent_id) == "active", what="B knows of the agent")
    wait_for(lambda: b.state.snapshot.version == a.state.snapshot.version, what="B has A's config")
    body = _allowed(b, key, 7)
    action = body["action_request_id"]

    for change in ("suspend", "activate"):
        assert a.admin("POST", f"/v1/agents/{agent_id}/{change}").status_code == 200
    early = _execute(b, key, action, body["decision_token"])  # whatever B has heard yet
    assert early.status_code in (401, 409), early.text  # (401: B has it suspended still)
    wait_for(lambda: b.state.snapshot.version == a.state.snapshot.version, what="B hears")
    late = _execute(b, key, action, body["decision_token"])
    assert (late.status_code, late.json()["error"]) == (409, "not_allowed")
    assert github.received("PUT") == []

    again = _allowed(b, key, 8)  # decided after the activation: runs on either replica
    done = _execute(a, key, again["action_request_id"], again["decision_token"])
    assert done.status_code == 200, done.text
    assert len(github.received("PUT")) == 1
    github.clear()
