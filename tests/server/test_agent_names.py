"""A removed agent's name can be registered again, and the new agent inherits nothing.

Revoking (`tf agent remove`) is for good: the old agent keeps its id, rows and audit trail,
and cannot come back. Its name is free for a new agent, which starts with new keys and no
access rules, no grants and no approvals: everything the old one held by name is deleted,
revoked, denied or closed when it is removed (on SQLite and PostgreSQL alike).
"""

from __future__ import annotations

import concurrent.futures
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from agentfirewall.actions import parse_action_spec
from agentfirewall_server.store.db import Database
from agentfirewall_server.store.migrate import upgrade
from agentfirewall_server.store.schema import agents, api_keys
from tests.server.conftest import SPEC, Harness

_STRIPE: dict[str, Any] = {
    "type": "stripe.transfer.create",
    "resource": {"provider": "stripe", "target": "transfers"},
    "parameters": {"amount": 5000, "currency": "usd", "destination": "acct_1"},
}


def _held(h: Harness, digest: str, amount: int = 5000) -> dict[str, Any]:
    spec = parse_action_spec({**_STRIPE, "parameters": {**_STRIPE["parameters"], "amount": amount}})
    request = {"method": "POST", "host": "api.stripe.com", "path": "/v1/transfers", "query": "",
               "body_size": 2, "body_preview": "{}", "digest": digest}  # fmt: skip
    body = {"agent": "Bot", "connector": "stripe", "action_spec": spec.to_dict(),
            "action_hash": spec.action_hash, "reason": "held", "request": request}  # fmt: skip
    answer = h.gateway("POST", "/v1/gateway/approvals", json=body)
    assert answer.status_code == 200, answer.text
    data: dict[str, Any] = answer.json()
    return data


def _permit(h: Harness, pattern: str = "github.*") -> None:
    rule = {"agent": "Bot", "connector": "github", "action_pattern": pattern, "decision": "allow"}
    assert h.admin("POST", "/v1/permissions", json=rule).status_code in (200, 201)


def _rules(h: Harness) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = h.admin("GET", "/v1/permissions").json()["permissions"]
    return [r for r in rows if r["agent"] == "Bot"]


def test_a_removed_name_registers_anew_with_nothing_of_the_old(harness: Harness) -> None:
    h = harness
    old_key = h.create_agent("Bot")
    old_id = h.admin("GET", "/v1/agents/Bot").json()["id"]
    _permit(h)
    approved = _held(h, "a" * 64)
    assert h.admin("POST", f"/v1/approvals/{approved['id']}/approve").status_code == 200
    granted = _held(h, "b" * 64)
    bounded = {"max_uses": 5, "where": ["amount<=6000"]}
    grant = h.admin("POST", f"/v1/approvals/{granted['id']}/approve", json={"grant": bounded})
    assert grant.status_code == 200, grant.text
    pending = _held(h, "c" * 64, amount=9000)
    assert pending["status"] == "pending"

    assert h.admin("POST", "/v1/agents/Bot/revoke").json()["status"] == "revoked"
    assert _rules(h) == []
    gone = h.admin("GET", f"/v1/grants/{grant.json()['grant']['id']}").json()
    assert gone["status"] == "revoked"
    denied = h.admin("GET", f"/v1/approvals/{pending['id']}").json()
    assert (denied["status"], denied["note"]) == ("denied", "agent `Bot` removed")
    events = h.admin("GET", "/v1/audit?limit=1000").json()["events"]
    revoked = next(e for e in events if e["event_type"] == "agent.revoked")
    assert revoked["data"]["permissions_deleted"] == [
        {"connector": "github", "action_pattern": "github.*", "decision": "allow"}
    ]
    assert revoked["data"]["approvals_denied"] == [pending["id"]]
    assert sorted(revoked["data"]["approvals_closed"]) == sorted([approved["id"], granted["id"]])
    assert revoked["data"]["grants_revoked"] == [grant.json()["grant"]["id"]]

    # `tf run --name Bot` does not bring it back on its own: it says how
    ensure = h.admin("POST", "/v1/agents/ensure", json={"name": "Bot"})
    assert ensure.status_code == 409
    assert 'register a new agent under it (`tf agent add "Bot"`' in ensure.json()["message"]

    made = h.admin("POST", "/v1/agents", json={"name": "Bot"})
    assert made.status_code == 201, made.text
    new_id, new_key = made.json()["agent"]["id"], made.json()["api_key"]
    assert new_id != old_id
    assert new_key != old_key
    assert h.admin("GET", "/v1/agents/Bot").json()["id"] == new_id  # the name: the live one
    assert h.admin("GET", f"/v1/agents/{old_id}").json()["status"] == "revoked"
    assert _rules(h) == []  # no permission inherited
    assert _held(h, "a" * 64)["status"] == "pending"  # the old approval is not reusable
    assert _held(h, "b" * 64)["status"] == "pending"  # nor the old grant
    assert h.agent(old_key, "POST", "/v1/actions", json={"action_spec": SPEC}).status_code == 401
    assert h.agent(new_key, "POST", "/v1/actions", json={"action_spec": SPEC}).status_code == 200
    names = [a["name"] for a in h.admin("GET", "/v1/agents").json()["agents"]]
    assert names.count("Bot") == 2


def test_the_old_agent_stays_removed_and_cannot_touch_the_new_one(harness: Harness) -> None:
    h = harness
    h.create_agent("Bot")
    old_id = h.admin("GET", "/v1/agents/Bot").json()["id"]
    assert h.admin("POST", f"/v1/agents/{old_id}/revoke").status_code == 200
    h.create_agent("Bot")
    _permit(h)
    for verb in ("activate", "suspend", "rotate"):
        r = h.admin("POST", f"/v1/agents/{old_id}/{verb}")
        assert r.status_code == 409, verb
        assert "register a new agent under it" in r.json()["message"]
    # revoking the old one again changes nothing: the new one keeps its rules and status
    again = h.admin("POST", f"/v1/agents/{old_id}/revoke")
    assert again.status_code == 200
    assert again.json()["id"] == old_id
    assert len(_rules(h)) == 1
    assert h.admin("GET", "/v1/agents/Bot").json()["status"] == "active"
    taken = h.admin("POST", "/v1/agents", json={"name": "Bot"})
    assert taken.status_code == 409  # one live agent per name


def test_two_registrations_of_a_freed_name_at_once_make_one_agent(harness: Harness) -> None:
    h = harness
    h.create_agent("Bot")
    assert h.admin("POST", "/v1/agents/Bot/revoke").status_code == 200
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: h.admin("POST", "/v1/agents", json={"name": "Bot"}),
                                range(6)))  # fmt: skip
    codes = [a.status_code for a in answers]
    assert sorted(codes) == [201] + [409] * 5
    live = h.state.db.read_sync(
        lambda c: c.execute(select(agents.c.id).where(agents.c.status == "active")).all()
    )
    assert len(live) == 1


def test_the_migration_keeps_agents_and_their_keys(database_url: str, tmp_path: Path) -> None:
    db = Database(database_url)
    try:
        with db.writer_engine.connect() as conn:
            upgrade(conn, "0010")
            conn.commit()
        with db.writer_engine.connect() as conn:
            for aid, status in (("agt_old", "revoked"), ("agt_live", "active")):
                conn.execute(
                    text(
                        "INSERT INTO agents (id, name, status, environment, description,"
                        " enforcement_level, sdk_default, created_at, updated_at)"
                        " VALUES (:id, :name, :status, 'live', '', 'full_enforce', 'allow', 1, 1)"
                    ),
                    {"id": aid, "name": "Bot" if aid == "agt_live" else "Old", "status": status},
                )
                conn.execute(
                    api_keys.insert().values(
                        agent_id=aid, key_hash=aid * 2, prefix="p", kind="sdk", created_at=1
                    )
                )
            conn.commit()
        db.migrate()
        db.migrate()  # idempotent
        with db.writer_engine.connect() as conn:
            assert conn.execute(select(agents.c.id).order_by(agents.c.id)).scalars().all() == [
                "agt_live",
                "agt_old",
            ]
            assert len(conn.execute(select(api_keys)).all()) == 2
            conn.execute(
                text("UPDATE agents SET status = 'revoked' WHERE id = 'agt_live'"),
            )
            conn.execute(text("UPDATE agents SET name = 'Bot' WHERE id = 'agt_old'"))
            conn.execute(  # a live Bot again: allowed once both old ones are revoked
                agents.insert().values(
                    id="agt_new",
                    name="Bot",
                    status="active",
                    environment="live",
                    description="",
                    enforcement_level="full_enforce",
                    sdk_default="allow",
                    created_at=2,
                    updated_at=2,
                )
            )
            with pytest.raises(IntegrityError, match=r"(?i)unique|duplicate"):
                conn.execute(text("UPDATE agents SET status = 'active' WHERE id = 'agt_old'"))
            conn.rollback()
        with db.writer_engine.connect() as conn:  # foreign keys are enforced again
            with pytest.raises(IntegrityError, match=r"(?i)foreign key"):
                conn.execute(
                    api_keys.insert().values(
                        agent_id="agt_none", key_hash="x", prefix="p", kind="sdk", created_at=1
                    )
                )
            conn.rollback()
    finally:
        db.close()
