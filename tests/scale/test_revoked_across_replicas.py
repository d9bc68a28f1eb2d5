"""A revoke on one replica holds against an activate, suspend or rotate on another.

Replica B answers from its snapshot, which learns of A's revoke a moment later: a write B
starts meanwhile must still find the agent revoked in the store (409), never bring it back
or give it a key (tests/server/test_agent_status_races.py: the same on one server).
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from agentfirewall_server.store.schema import agents, api_keys
from tests.scale.conftest import Pair, wait_for
from tests.server.conftest import SPEC, Harness
from tests.server.test_agent_status_races import _race

pytestmark = pytest.mark.postgres

ROUNDS = 10


def _stored(h: Harness, agent_id: str) -> tuple[str, int]:
    def read(conn: Any) -> tuple[str, int]:
        status = conn.execute(select(agents.c.status).where(agents.c.id == agent_id)).scalar()
        live = select(api_keys.c.id).where(
            api_keys.c.agent_id == agent_id, api_keys.c.revoked_at.is_(None)
        )
        return str(status), len(conn.execute(live).all())

    result: tuple[str, int] = h.state.db.read_sync(read)
    return result


def _status(h: Harness, agent_id: str) -> str | None:
    """The agent's status in `h`'s snapshot (None: not known there yet)."""
    record = h.state.snapshot.agent(agent_id)
    return None if record is None else str(record.status)


def _round(pair: Pair, name: str, write: str) -> None:
    a, b = pair.a, pair.b
    key = a.create_agent(name)
    agent_id = a.state.snapshot.agent(name).id
    if write == "activate":
        assert a.admin("POST", f"/v1/agents/{agent_id}/suspend").status_code == 200
    expected = "suspended" if write == "activate" else "active"
    wait_for(lambda: _status(b, agent_id) == expected, what="B has the agent as A has")
    revoked, other = _race(
        lambda: a.admin("POST", f"/v1/agents/{agent_id}/revoke"),
        lambda: b.admin("POST", f"/v1/agents/{agent_id}/{write}"),
    )
    assert revoked.status_code == 200, revoked.text
    assert other.status_code in (200, 409), other.text
    assert _stored(a, agent_id) == ("revoked", 0), f"{name}: {other.status_code}"
    keys = [key] + ([other.json()["api_key"]] if "api_key" in other.json() else [])
    wait_for(lambda: _status(b, agent_id) == "revoked", what="B knows of the revoke")
    for h in (a, b):
        assert h.admin("GET", f"/v1/agents/{agent_id}").json()["status"] == "revoked"
        for k in keys:
            r = h.agent(k, "POST", "/v1/actions", json={"action_spec": SPEC})
            assert r.status_code == 401, r.text


@pytest.mark.parametrize("write", ["activate", "suspend", "rotate"])
def test_a_revoke_on_one_replica_wins_over_a_write_on_the_other(pair: Pair, write: str) -> None:
    for i in range(ROUNDS):
        _round(pair, f"{write}-{i}", write)
