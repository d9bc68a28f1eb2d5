"""Traffic rows name the agent that made the request, by id: an agent that takes a removed
agent's name does not inherit its traffic.

A row used to carry the agent's name only, and every view matched the name: after
`tf agent remove Bot` and a new `tf agent add Bot`, the new agent's `GET /api/v1/traffic?agent=Bot`,
its dashboard page, its rule suggestions and replays listed the old agent's requests. Rows
now carry `agent_id` (the gateway sends it; an older gateway's record is given the agent its
name stands for as it arrives) and the filters match it, on SQLite and PostgreSQL; rows
stored before are given theirs by migration 0015.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from agentfirewall.actions import parse_action_spec
from agentfirewall.policy import EvaluationContext
from agentfirewall.policy.record import record_input
from agentfirewall_server.store.db import Database
from agentfirewall_server.store.migrate import upgrade
from agentfirewall_server.store.schema import agents, traffic
from tests.server.conftest import Harness

_DENY_ALL = "name: deny-everything\nrules:\n  - {name: all, decision: deny}\n"


def _record(request_id: str, agent_id: str | None, action: str) -> dict[str, Any]:
    """A Stripe call by `Bot` as a gateway reports it (`agent_id` None: an older gateway)."""
    spec = parse_action_spec({"type": action, "resource": {"provider": "stripe"}})
    ctx = EvaluationContext(agent="Bot", mode="proxy", now=datetime.now(UTC), connector="stripe")
    record = {"request_id": request_id, "agent": "Bot", "connector": "stripe", "action": action,
              "method": "GET", "host": "api.stripe.com", "path": "/v1/x", "decision": "allow",
              "status_code": 200, "input": record_input(spec, ctx)}  # fmt: skip
    return record if agent_id is None else {**record, "agent_id": agent_id}


def _send(h: Harness, *records: dict[str, Any]) -> None:
    answer = h.gateway("POST", "/v1/gateway/traffic", json={"records": list(records)})
    assert answer.status_code == 200, answer.text


def _register(h: Harness, name: str) -> tuple[str, str]:
    made = h.admin("POST", "/v1/agents", json={"name": name})
    assert made.status_code == 201, made.text
    data = made.json()
    return data["agent"]["id"], data["api_key"]


def _listed(h: Harness, **query: str) -> list[str]:
    answer = h.admin("GET", "/v1/traffic", params=query)
    assert answer.status_code == 200, answer.text
    return sorted(r["request_id"] for r in answer.json()["traffic"])


def _sdk_call(h: Harness, key: str, action_id: str) -> str:
    spec = {"type": "crm.contact.update", "resource": {"provider": "crm"},
            "parameters": {"id": action_id}}  # fmt: skip
    answer = h.agent(key, "POST", "/v1/actions", json={"action_spec": spec})
    assert answer.status_code in (200, 201), answer.text
    return str(answer.json()["action_request_id"])


def test_a_new_agent_under_a_removed_agents_name_inherits_none_of_its_traffic(
    harness: Harness,
) -> None:
    h = harness
    assert h.admin("POST", "/v1/shadow/policies", json={"document": _DENY_ALL}).status_code == 201
    old_id, old_key = _register(h, "Bot")
    _send(h, _record("old-1", old_id, "stripe.balance.get"),
          _record("old-2", None, "stripe.charge.create"))  # fmt: skip
    old_sdk = _sdk_call(h, old_key, "c_old")  # diverged: listed with `shadow=diverged`
    assert h.admin("POST", f"/v1/agents/{old_id}/revoke").status_code == 200
    new_id, new_key = _register(h, "Bot")
    older_gateway = _record("new-2", None, "stripe.refund.create")  # sends no id
    _send(h, _record("new-1", new_id, "stripe.balance.get"), older_gateway)
    new_sdk = _sdk_call(h, new_key, "c_new")

    rows = h.admin("GET", "/v1/traffic").json()["traffic"]
    assert {r["request_id"]: r["agent_id"] for r in rows} == {
        "old-1": old_id, "old-2": old_id, "new-1": new_id, "new-2": new_id,
    }  # fmt: skip
    # the name stands for the live agent; the dashboard's agent page asks by id
    assert _listed(h, agent="Bot") == ["new-1", "new-2"]
    assert _listed(h, agent=new_id) == ["new-1", "new-2"]
    assert _listed(h, agent=old_id) == ["old-1", "old-2"]  # the revoked agent keeps its own
    # the SDK's diverged actions too (the proxy rows here do not diverge: no live rule)
    assert _listed(h, agent="Bot", shadow="diverged") == [new_sdk]
    assert _listed(h, agent=old_id, shadow="diverged") == [old_sdk]

    # suggestions and replays learn from the live agent's traffic only
    suggested = h.admin("GET", "/v1/permissions/suggest", params={"agent": "Bot"}).json()
    learnt = {action for rule in suggested["rules"] for action in rule["actions"]}
    assert learnt == {"stripe.balance.get", "stripe.refund.create", "crm.contact.update"}
    replayed = h.admin("POST", "/v1/policies/replay", json={"agents": ["Bot"], "permissions": []})
    assert replayed.status_code == 200, replayed.text
    assert replayed.json()["total"] == 3  # new-1, new-2 and the new agent's SDK call


def test_a_name_no_agent_has_lists_the_rows_recorded_under_it(harness: Harness) -> None:
    """A record no agent could be found for (its name unknown to the server) has no id:
    it stays listed under its name, and never under an agent registered later."""
    _send(harness, _record("orphan", None, "stripe.balance.get"))
    assert _listed(harness, agent="Bot") == ["orphan"]
    new_id, _ = _register(harness, "Bot")
    assert _listed(harness, agent="Bot") == []
    assert _listed(harness, agent=new_id) == []


def test_rows_stored_before_are_given_the_agent_of_their_time(
    database_url: str, harness_factory: Any
) -> None:
    """Migration 0015 on a database at 0014 with traffic rows: each row gets the id of the
    agent of its name registered last at or before it (the oldest, for a row before all);
    a name no agent has keeps none."""
    db = Database(database_url)
    agent = {"environment": "live", "description": "", "enforcement_level": "full_enforce",
             "sdk_default": "allow"}  # fmt: skip
    try:
        with db.writer_engine.connect() as conn:
            upgrade(conn, "0014")
            conn.execute(agents.insert(), [
                {**agent, "id": "agt_old", "name": "Bot", "status": "revoked",
                 "created_at": 100.0, "updated_at": 200.0},
                {**agent, "id": "agt_new", "name": "Bot", "status": "active",
                 "created_at": 300.0, "updated_at": 300.0},
                {**agent, "id": "agt_ops", "name": "Ops", "status": "active",
                 "created_at": 100.0, "updated_at": 100.0},
            ])  # fmt: skip
            conn.execute(traffic.insert(), [
                {"request_id": "skewed", "agent": "Bot", "created_at": 90.0},
                {"request_id": "old", "agent": "Bot", "created_at": 150.0},
                {"request_id": "new", "agent": "Bot", "created_at": 300.0},
                {"request_id": "ops", "agent": "Ops", "created_at": 400.0},
                {"request_id": "ghost", "agent": "Ghost", "created_at": 400.0},
                {"request_id": "nameless", "agent": None, "created_at": 400.0},
            ])  # fmt: skip
            conn.commit()
    finally:
        db.close()
    h = harness_factory()  # the app migrates to the newest revision on start
    stored = h.state.db.read_sync(
        lambda c: c.execute(select(traffic.c.request_id, traffic.c.agent_id)).all()
    )
    assert dict(stored) == {"skewed": "agt_old", "old": "agt_old", "new": "agt_new",
                            "ops": "agt_ops", "ghost": None, "nameless": None}  # fmt: skip
    assert _listed(h, agent="Bot") == ["new"]
    assert _listed(h, agent="agt_old") == ["old", "skewed"]
    assert _listed(h, agent="Ghost") == ["ghost"]


def test_a_record_whose_id_is_not_its_named_agents_is_given_the_names(harness: Harness) -> None:
    """A gateway's record names its agent twice (name and id): an id another agent has, or
    none has, never puts a row under another agent or under none; an id this replica has
    not loaded yet (an agent registered on another one) is checked in the store."""
    h = harness
    bot_id, _ = _register(h, "Bot")
    ops_id, _ = _register(h, "Ops")
    agent = {
        "environment": "live",
        "description": "",
        "enforcement_level": "full_enforce",
        "sdk_default": "allow",
        "status": "active",
        "created_at": 1.0,
        "updated_at": 1.0,
    }
    h.state.db.write_sync(  # (another replica's agent: not in this one's snapshot)
        lambda c: c.execute(agents.insert().values(id="agt_elsewhere", name="Late", **agent))
    )
    late = {**_record("late", "agt_elsewhere", "stripe.balance.get"), "agent": "Late"}
    _send(h, _record("forged", ops_id, "stripe.balance.get"),
          _record("made-up", "agt_NOSUCHAGENT", "stripe.balance.get"), late)  # fmt: skip
    rows = h.admin("GET", "/v1/traffic").json()["traffic"]
    assert {r["request_id"]: r["agent_id"] for r in rows} == {
        "forged": bot_id, "made-up": bot_id, "late": "agt_elsewhere",
    }  # fmt: skip
    assert _listed(h, agent=ops_id) == []
