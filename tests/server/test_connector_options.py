"""Connector options: the sendgrid sender lets the seed's email.send execute as written."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import text

from agentfirewall_server.snapshot import load_snapshot
from agentfirewall_server.store.db import Database
from agentfirewall_server.store.migrate import upgrade
from tests.sdk.liveagent import SendGridFake
from tests.server.conftest import Harness

# The seed's CrewAI example: to/subject/body, no sender.
SEED_PARAMETERS = {"to": "bob@example.com", "subject": "Hi", "body": "Hello Bob"}
SEED_EMAIL: dict[str, Any] = {
    "type": "email.send",
    "resource": {
        "provider": "sendgrid",
        "account": "main",
        "target": "bob@example.com",
        "environment": "production",
    },
    "parameters": SEED_PARAMETERS,
    "risk_hints": {"external_recipient": True},
}


@pytest.fixture
def sendgrid() -> Iterator[SendGridFake]:
    fake = SendGridFake()
    yield fake
    fake.stop()


def _add(h: Harness, fake: SendGridFake, **extra: Any) -> Any:
    body = {"type": "sendgrid", "token": "SG.secret", "base_url": fake.http_url, **extra}
    return h.admin("POST", "/v1/connectors", json=body)


def _send(h: Harness, spec: dict[str, Any]) -> Any:
    key = h.create_agent("Crew")
    h.admin(
        "POST",
        "/v1/permissions",
        json={
            "agent": "Crew",
            "connector": "sendgrid",
            "action_pattern": "email.*",
            "decision": "allow",
        },
    )
    action = h.agent(key, "POST", "/v1/actions", json={"action_spec": spec}).json()
    assert action["status"] == "allowed", action
    return h.agent(
        key,
        "POST",
        f"/v1/actions/{action['action_request_id']}/execute",
        json={"decision_token": action["decision_token"]},
    )


def test_the_seeds_email_send_executes_with_the_connectors_sender(
    harness: Harness, sendgrid: SendGridFake
) -> None:
    r = _add(harness, sendgrid, options={"from": "agent@yourcompany.com"})
    assert r.status_code == 201, r.text
    assert r.json()["options"] == {"from": "agent@yourcompany.com"}
    listed = harness.admin("GET", "/v1/connectors").json()["connectors"]
    assert listed[0]["options"] == {"from": "agent@yourcompany.com"}
    done = _send(harness, SEED_EMAIL)
    assert done.status_code == 200, done.text
    assert done.json()["result"]["status_code"] == 202
    (sent,) = sendgrid.received("POST", "/v3/mail/send")
    assert sent.header("authorization") == "Bearer SG.secret"
    mail = sent.json()
    assert mail["from"] == {"email": "agent@yourcompany.com"}
    assert mail["personalizations"][0]["to"] == [{"email": "bob@example.com"}]
    assert mail["content"][0]["value"] == "Hello Bob"


def test_the_actions_own_sender_wins_over_the_option(
    harness: Harness, sendgrid: SendGridFake
) -> None:
    _add(harness, sendgrid, options={"from": "agent@yourcompany.com"})
    spec = {**SEED_EMAIL, "parameters": {**SEED_PARAMETERS, "from": "ops@acme.io"}}
    assert _send(harness, spec).status_code == 200
    (sent,) = sendgrid.received("POST", "/v3/mail/send")
    assert sent.json()["from"] == {"email": "ops@acme.io"}


def test_without_a_sender_execution_is_422(harness: Harness, sendgrid: SendGridFake) -> None:
    _add(harness, sendgrid)
    r = _send(harness, SEED_EMAIL)
    assert r.status_code == 422
    assert r.json()["error"] == "not_executable"
    assert "`from`" in r.json()["message"]
    assert sendgrid.received() == []


@pytest.mark.parametrize(
    ("ctype", "options", "field"),
    [
        ("sendgrid", {"sender": "a@b.c"}, "options.sender"),
        ("sendgrid", {"from": "not an address"}, "options.from"),
        ("sendgrid", {"from": "a@b.c\r\nBcc: x@y.z"}, "options.from"),
        ("github", {"from": "a@b.c"}, "options.from"),
    ],
)
def test_unknown_or_invalid_options_are_422(
    harness: Harness, ctype: str, options: dict[str, str], field: str
) -> None:
    r = harness.admin("POST", "/v1/connectors", json={"type": ctype, "options": options})
    assert r.status_code == 422
    assert r.json()["field"] == field
    assert harness.admin("GET", "/v1/connectors").json()["connectors"] == []


def test_migration_0002_keeps_existing_connectors(database_url: str) -> None:
    database = Database(database_url)
    try:
        with database.writer_engine.connect() as conn:
            upgrade(conn, "0001")
            conn.execute(
                text(
                    "INSERT INTO connectors (id, type, name, domains, base_url, auth_type, "
                    "auth_header, created_at) VALUES ('conn_sendgrid_1', 'sendgrid', 'mail', "
                    "'[\"api.sendgrid.com\"]', NULL, 'default', NULL, 1.0)"
                )
            )
            conn.commit()
        database.migrate()
        database.start()
        snap = database.read_sync(load_snapshot)
        assert [(c["id"], c["options"]) for c in snap.connectors] == [("conn_sendgrid_1", {})]
    finally:
        database.close()
