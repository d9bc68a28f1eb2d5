"""Migration 0019 on stores an earlier version wrote (SQLite and PostgreSQL).

Each agent is given, as `closed_before`, the time of its last suspension, activation or
removal its audit log records: an action the rules allowed before a suspension an earlier
version recorded does not execute after the upgrade, and one decided after it does. A
downgrade denies the actions the column closed (the earlier version's only way to close
one), so they do not run there either.
"""

from __future__ import annotations

import json
from typing import Any

from alembic import command
from sqlalchemy import Connection, select

from agentfirewall.actions import parse_action_spec
from agentfirewall_server.actionstore import load_action
from agentfirewall_server.audit import append_event
from agentfirewall_server.decide import issue_token
from agentfirewall_server.identity import hash_secret, new_agent_key, prefix_of
from agentfirewall_server.store.db import Database
from agentfirewall_server.store.migrate import alembic_config, upgrade
from agentfirewall_server.store.schema import action_requests, agents, api_keys
from tests.fakes import FakeUpstreams
from tests.server.conftest import SPEC
from tests.server.test_execute import _execute, _github


def _signed(h: Any, action_id: str) -> str:
    """A token for the stored action as the server signs them: a closed action is handed
    none (`/wait`), and the execute claim refuses it with one all the same."""
    row = h.state.db.read_sync(lambda c: load_action(c, action_id))
    return issue_token(h.state, row["agent"], action_id, row["action_hash"])


#: (agent id, name) -> its status changes an earlier version recorded: (event, time).
_HISTORY = {
    ("agt_bot", "Bot"): [("agent.suspended", 200.0), ("agent.activated", 300.0)],
    ("agt_ops", "Ops"): [],
}


def _agent(agent_id: str, name: str) -> dict[str, Any]:
    return {"id": agent_id, "name": name, "name_key": None, "status": "active",
            "environment": "live", "description": "", "enforcement_level": "full_enforce",
            "sdk_default": "allow", "created_at": 100.0, "updated_at": 300.0}  # fmt: skip


def _allowed(action_id: str, agent_id: str, name: str, at: float, number: int) -> dict[str, Any]:
    """An action the rules allowed at `at`, as 0.1's request route stored it."""
    spec = parse_action_spec({**SPEC, "parameters": {"pull_number": number}})
    decision = {"outcome": "allow", "reason": "No deny rules matched", "risk_score": 0,
                "matched_policies": []}  # fmt: skip
    return {"id": action_id, "agent_id": agent_id, "agent": name, "action_type": spec.type,
            "action_spec": spec.canonical().decode(), "action_hash": spec.action_hash,
            "status": "allowed", "decision": json.dumps(decision), "risk_score": 0.0,
            "idempotency_key": None, "approval_id": None,
            "response": json.dumps({"status": "allowed", "approval": None}),
            "execution": None, "execution_state": None, "created_at": at,
            "updated_at": at}  # fmt: skip


def _store_at_0018(url: str) -> dict[str, str]:
    """The earlier version's store: agents, their keys, actions and recorded history.
    Returns each agent's key."""
    keys = {name: new_agent_key("live") for _, name in _HISTORY}
    db = Database(url)
    try:
        with db.writer_engine.connect() as conn:
            upgrade(conn, "0018")
            for (agent_id, name), changes in _HISTORY.items():
                conn.execute(agents.insert().values(**_agent(agent_id, name)))
                conn.execute(api_keys.insert().values(
                    agent_id=agent_id, key_hash=hash_secret(keys[name]),
                    prefix=prefix_of(keys[name]), kind="sdk", created_at=100.0))  # fmt: skip
                for event, at in changes:
                    append_event(conn, event, actor="admin", now=at, agent=name, subject=agent_id)
            conn.execute(action_requests.insert(), [
                _allowed("act_before", "agt_bot", "Bot", 150.0, 1),
                _allowed("act_suspended", "agt_bot", "Bot", 250.0, 2),
                _allowed("act_after", "agt_bot", "Bot", 400.0, 3),
                _allowed("act_ops", "agt_ops", "Ops", 150.0, 4),
            ])  # fmt: skip
            conn.commit()
    finally:
        db.close()
    return keys


def _closed_before(conn: Connection) -> dict[str, float | None]:
    rows = conn.execute(select(agents.c.id, agents.c.closed_before))
    return {agent_id: closed for agent_id, closed in rows}


def test_an_action_allowed_before_a_recorded_suspension_stays_closed_after_the_upgrade(
    database_url: str, harness_factory: Any, fakes: FakeUpstreams
) -> None:
    keys = _store_at_0018(database_url)
    h = harness_factory()  # the app migrates to the newest revision on start
    assert h.state.db.read_sync(_closed_before) == {"agt_bot": 300.0, "agt_ops": None}
    github = fakes["github"]
    github.clear()
    _github(h, fakes)

    def run(key: str, action_id: str) -> Any:
        waited = h.agent(key, "GET", f"/v1/actions/{action_id}/wait?timeout=0").json()
        if waited["decision_token"] is None:  # closed: `/wait` hands it none, denies it
            assert waited["status"] == "denied", waited
        return _execute(h, key, action_id, waited["decision_token"] or _signed(h, action_id))

    for closed in ("act_before", "act_suspended"):
        refused = run(keys["Bot"], closed)
        assert (refused.status_code, refused.json()["error"]) == (409, "not_allowed")
    assert github.received("PUT") == []
    assert run(keys["Bot"], "act_after").status_code == 200
    assert run(keys["Ops"], "act_ops").status_code == 200
    assert len(github.received("PUT")) == 2
    github.clear()


def test_a_downgrade_denies_what_the_column_closed(database_url: str) -> None:
    _store_at_0018(database_url)
    db = Database(database_url)
    try:
        with db.writer_engine.connect() as conn:
            upgrade(conn)
            command.downgrade(alembic_config(conn), "0018")
            conn.commit()
            rows = conn.execute(select(action_requests.c.id, action_requests.c.status))
            statuses = {action_id: status for action_id, status in rows}
    finally:
        db.close()
    assert statuses == {"act_before": "denied", "act_suspended": "denied",
                        "act_after": "allowed", "act_ops": "allowed"}  # fmt: skip
