"""Revoking an agent is for good, whatever runs at the same moment (SQLite and PostgreSQL).

A route checks the agent's status on its in-memory snapshot, which a revoke on another
replica, or a revoke of this one still being written, may have outdated by the time its own
write runs. The write checks again: an activate, suspend, rotate or ensure that meets a
revoked agent there is 409 and changes nothing, so a revoked agent stays revoked and every
key it had, or would have been given, stays dead.

Two ways in: a revoke the server has not seen yet (written to the store as another replica
writes it, this server's snapshot left as it was: the interleaving every race reduces to,
forced), and real concurrent requests, round after round.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select

from agentfirewall_server.routes.agents import _set_status
from agentfirewall_server.store.schema import agents, api_keys
from tests.server.conftest import SPEC, Harness

#: The writes that must never touch a revoked agent: (path suffix or `ensure`, body).
WRITES = [
    pytest.param("/activate", None, id="activate"),
    pytest.param("/suspend", None, id="suspend"),
    pytest.param("/rotate", None, id="rotate"),
    pytest.param("ensure", {}, id="ensure"),
]


def _call(h: Harness, name: str, suffix: str, body: dict[str, Any] | None) -> Any:
    if suffix == "ensure":
        return h.admin("POST", "/v1/agents/ensure", json={"name": name, **(body or {})})
    return h.admin("POST", f"/v1/agents/{name}{suffix}")


def _stored(h: Harness, agent_id: str) -> tuple[str, int]:
    """The agent's stored status and how many of its keys are not revoked."""

    def read(conn: Any) -> tuple[str, int]:
        status = conn.execute(select(agents.c.status).where(agents.c.id == agent_id)).scalar()
        live = conn.execute(
            select(api_keys.c.id).where(
                api_keys.c.agent_id == agent_id, api_keys.c.revoked_at.is_(None)
            )
        ).all()
        return str(status), len(live)

    result: tuple[str, int] = h.state.db.read_sync(read)
    return result


def _revoke_unseen(h: Harness, name: str) -> None:
    """Revoke `name` as another replica does (its write, in the store), leaving this
    server's snapshot as it was: its routes still read the agent as not revoked."""
    record = h.state.snapshot.agent(name)
    h.state.db.write_sync(_set_status(record, "revoked", "user:other-replica"))
    assert h.state.snapshot.agent(name).status != "revoked"  # still outdated


def _assert_dead(h: Harness, agent_id: str, keys: list[str]) -> None:
    h.create_agent(f"reload-{len(keys)}-{agent_id}")  # any change: the snapshot is read again
    assert _stored(h, agent_id) == ("revoked", 0)
    assert h.admin("GET", f"/v1/agents/{agent_id}").json()["status"] == "revoked"
    for key in keys:
        r = h.agent(key, "POST", "/v1/actions", json={"action_spec": SPEC})
        assert r.status_code == 401, (key[:12], r.text)


@pytest.mark.parametrize(("suffix", "body"), WRITES)
def test_a_write_meeting_a_revoke_it_has_not_seen_is_409(
    harness: Harness, suffix: str, body: dict[str, Any] | None
) -> None:
    h = harness
    key = h.create_agent("Bot")
    agent_id = h.state.snapshot.agent("Bot").id
    if suffix == "/activate":
        assert h.admin("POST", "/v1/agents/Bot/suspend").status_code == 200
    _revoke_unseen(h, "Bot")
    r = _call(h, "Bot", suffix, body)
    assert r.status_code == 409, r.text
    assert r.json()["error"] == "conflict"
    assert "revoked" in r.json()["message"]
    assert "api_key" not in r.json()
    # the 409 read the store again: this server now knows
    assert h.admin("GET", f"/v1/agents/{agent_id}").json()["status"] == "revoked"
    _assert_dead(h, agent_id, [key])


def test_revoking_an_agent_revoked_unseen_changes_nothing(harness: Harness) -> None:
    h = harness
    h.create_agent("Bot")
    agent_id = h.state.snapshot.agent("Bot").id
    _revoke_unseen(h, "Bot")
    r = h.admin("POST", f"/v1/agents/{agent_id}/revoke")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "revoked"
    events = h.admin("GET", "/v1/audit", params={"event_type": "agent.revoked"}).json()["events"]
    assert [e["actor"] for e in events] == ["user:other-replica"]  # revoked once, not twice


def test_ensure_meeting_a_suspend_it_has_not_seen_is_409(harness: Harness) -> None:
    h = harness
    h.create_agent("Bot")
    agent_id = h.state.snapshot.agent("Bot").id
    record = h.state.snapshot.agent("Bot")
    h.state.db.write_sync(_set_status(record, "suspended", "user:other-replica"))
    r = h.admin("POST", "/v1/agents/ensure", json={"name": "Bot"})
    assert r.status_code == 409, r.text
    assert "suspended" in r.json()["message"]
    assert _stored(h, agent_id) == ("suspended", 1)  # no proxy key added


def _race(*calls: Callable[[], Any]) -> list[Any]:
    """Run `calls` at once, one thread each (a barrier starts them together)."""
    barrier = threading.Barrier(len(calls))
    out: list[Any] = [None] * len(calls)

    def run(i: int) -> None:
        barrier.wait()
        out[i] = calls[i]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return out


ROUNDS = 15


def _round(h: Harness, name: str, suffix: str, body: dict[str, Any] | None) -> None:
    key = h.create_agent(name)
    agent_id = h.state.snapshot.agent(name).id
    if suffix == "/activate":
        assert h.admin("POST", f"/v1/agents/{name}/suspend").status_code == 200
    revoked, other = _race(
        lambda: h.admin("POST", f"/v1/agents/{agent_id}/revoke"),
        lambda: _call(h, name, suffix, body),
    )
    assert revoked.status_code == 200, revoked.text
    assert other.status_code in (200, 409), other.text  # before the revoke, or refused
    keys = [key] + ([other.json()["api_key"]] if "api_key" in other.json() else [])
    assert _stored(h, agent_id) == ("revoked", 0), f"{name}: {other.status_code}"
    _assert_dead(h, agent_id, keys)


@pytest.mark.parametrize(("suffix", "body"), WRITES)
def test_concurrent_revoke_always_ends_revoked(
    harness: Harness, suffix: str, body: dict[str, Any] | None
) -> None:
    for i in range(ROUNDS):
        _round(harness, f"bot{i}", suffix, body)
