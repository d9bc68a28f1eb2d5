"""A traffic record is stored, counted and published once, however often it is delivered.

A gateway resends a batch whose answer it did not get (a timeout, a fail-over to another
replica, its own stop with the batch in flight); `tf mcp wrap` does the same. The control
plane used to store every copy (CI saw a `tf mcp wrap` session's two records listed twice).
"""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from agentfirewall.actions import parse_action_spec
from agentfirewall.policy import EvaluationContext
from agentfirewall.policy.record import record_input
from agentfirewall_server.store.db import Database
from agentfirewall_server.store.migrate import upgrade
from agentfirewall_server.store.schema import traffic
from tests.fuzzscale import examples
from tests.server.conftest import Harness


def _record(request_id: str, decision: str = "allow", second: int = 0) -> dict[str, Any]:
    return {
        "request_id": request_id,
        "agent": "Bot",
        "connector": "github",
        "action": "github.pr.merge",
        "method": "PUT",
        "host": "api.github.com",
        "path": "/repos/acme/api/pulls/1/merge",
        "decision": decision,
        "status_code": 200,
        "created_at": f"2026-12-06T09:00:{second:02d}.123456Z",
    }


def _listed(h: Harness, prefix: str = "") -> list[str]:
    rows = h.admin("GET", "/v1/traffic", params={"limit": 1000}).json()["traffic"]
    return sorted(r["request_id"] for r in rows if r["request_id"].startswith(prefix))


def _counted(h: Harness) -> float:
    text = h.call("GET", "/metrics", h.admin_token).text
    lines = [x for x in text.splitlines() if x.startswith("aaf_requests_total{")]
    return sum(float(x.rsplit(" ", 1)[1]) for x in lines)


def test_a_resent_batch_is_stored_and_counted_once(harness: Harness) -> None:
    batch = [_record("r0"), _record("r1", "deny"), _record("r2")]
    for _ in range(3):
        answer = harness.gateway("POST", "/v1/gateway/traffic", json={"records": batch})
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"accepted": 3}  # the sender's records are all in
    overlapping = [_record("r2"), _record("r3")]
    assert harness.gateway("POST", "/v1/gateway/traffic", json={"records": overlapping}).json()
    assert _listed(harness) == ["r0", "r1", "r2", "r3"]
    assert _counted(harness) == 4
    status = harness.admin("GET", "/v1/status").json()
    assert status["decisions_by_source"]["proxy"] == {"allow": 3, "deny": 1, "require_approval": 0}


def test_a_resent_record_is_judged_by_the_shadow_configuration_once(harness: Harness) -> None:
    """With a shadow policy installed, each stored record counts once in
    ``aaf_shadow_decisions_total``, however often its batch arrives."""
    document = "name: deny-everything\nrules:\n  - {name: all, decision: deny}\n"
    installed = harness.admin("POST", "/v1/shadow/policies", json={"document": document})
    assert installed.status_code == 201, installed.text
    spec = parse_action_spec({"type": "stripe.balance.get", "resource": {"provider": "stripe"}})
    context = EvaluationContext(agent="Bot", mode="proxy", now=datetime.now(UTC),
                                connector="stripe")  # fmt: skip
    record = {**_record("s0"), "input": record_input(spec, context)}
    for _ in range(3):
        answer = harness.gateway("POST", "/v1/gateway/traffic", json={"records": [record]})
        assert answer.status_code == 200, answer.text
    text = harness.call("GET", "/metrics", harness.admin_token).text
    judged = [x for x in text.splitlines() if x.startswith("aaf_shadow_decisions_total{")]
    assert sum(float(x.rsplit(" ", 1)[1]) for x in judged) == 1
    listed = harness.admin("GET", "/v1/traffic").json()["traffic"]
    assert [(r["request_id"], r["shadow_decision"]) for r in listed] == [("s0", "deny")]


def test_the_same_id_at_another_time_is_another_record(harness: Harness) -> None:
    """Two gateway processes can draw the same request-id prefix: the time tells them apart."""
    batch = [_record("r0", second=1), _record("r0", second=2)]
    harness.gateway("POST", "/v1/gateway/traffic", json={"records": batch})
    harness.gateway("POST", "/v1/gateway/traffic", json={"records": batch[1:]})
    assert _listed(harness) == ["r0", "r0"]


def test_copies_delivered_concurrently_are_stored_once(harness: Harness) -> None:
    batch = [_record(f"c{i}") for i in range(50)]
    errors: list[object] = []

    def deliver() -> None:
        answer = harness.gateway("POST", "/v1/gateway/traffic", json={"records": batch})
        if answer.status_code != 200:
            errors.append(answer.text)

    threads = [threading.Thread(target=deliver) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert _listed(harness) == sorted(f"c{i}" for i in range(50))
    assert _counted(harness) == 50


@settings(
    max_examples=examples(25),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    deliveries=st.lists(
        st.lists(st.integers(min_value=0, max_value=9), min_size=1, max_size=10),
        min_size=1,
        max_size=6,
    )
)
def test_any_redelivery_stores_each_record_once(
    harness: Harness, deliveries: list[list[int]]
) -> None:
    """Whatever batches carry (repeats, overlaps, any order), each record is kept once."""
    prefix = f"h{uuid.uuid4().hex[:8]}-"
    for batch in deliveries:
        records = [_record(f"{prefix}{i}", second=i) for i in batch]
        answer = harness.gateway("POST", "/v1/gateway/traffic", json={"records": records})
        assert answer.status_code == 200, answer.text
    sent = {i for batch in deliveries for i in batch}
    assert _listed(harness, prefix) == sorted(f"{prefix}{i}" for i in sent)


def test_copies_stored_before_the_fix_are_removed_keeping_the_first(
    database_url: str, harness_factory: Any
) -> None:
    db = Database(database_url)
    rows = [
        {"request_id": "r0", "agent": "Bot", "decision": "allow", "created_at": 10.5},
        {"request_id": "r0", "agent": "Bot", "decision": "deny", "created_at": 10.5},  # a copy
        {"request_id": "r0", "agent": "Bot", "decision": "allow", "created_at": 11.0},
        {"request_id": "r1", "agent": "Bot", "decision": "allow", "created_at": 10.5},
        {"request_id": "r1", "agent": "Bot", "decision": "allow", "created_at": 10.5},  # a copy
    ]
    try:
        with db.writer_engine.connect() as conn:
            upgrade(conn, "0012")
            conn.execute(traffic.insert(), rows)
            conn.commit()
    finally:
        db.close()
    h = harness_factory()  # the app migrates to the newest revision on start
    kept = h.state.db.read_sync(
        lambda c: c.execute(
            select(traffic.c.id, traffic.c.request_id, traffic.c.decision).order_by(traffic.c.id)
        ).all()
    )
    assert [(r.request_id, r.decision) for r in kept] == [
        ("r0", "allow"),
        ("r0", "allow"),
        ("r1", "allow"),
    ]
    assert [r.id for r in kept] == [1, 3, 4]  # the first ingested of each is kept
    count = h.state.db.read_sync(
        lambda c: c.execute(select(func.count()).select_from(traffic)).scalar()
    )
    assert count == 3
