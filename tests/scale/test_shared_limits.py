"""Rate limits and idempotency keys hold across replicas sharing one PostgreSQL."""

from __future__ import annotations

import math
import threading
import time
from typing import Any

import psycopg
import pytest

from agentfirewall_server.ratelimit import CHECK_SQL
from tests.scale.conftest import Pair, wait_for
from tests.server.conftest import SPEC, Harness

pytestmark = pytest.mark.postgres


def _post(h: Harness, key: str, spec: dict[str, Any] = SPEC, idem: str | None = None) -> Any:
    headers = {"Idempotency-Key": idem} if idem else {}
    return h.agent(key, "POST", "/v1/actions", json={"action_spec": spec}, headers=headers)


def _allow_github(h: Harness, agent: str, decision: str = "allow") -> None:
    rule = {"agent": agent, "connector": "github", "action_pattern": "github.*",
            "decision": decision}  # fmt: skip
    assert h.admin("POST", "/v1/permissions", json=rule).status_code in (200, 201)


def _has_rule(h: Harness, agent: str) -> bool:
    return any(p["agent"] == agent for p in h.state.snapshot.permissions)


def test_the_rate_limit_is_one_budget_whichever_replica_answers(
    pair: Pair,
) -> None:
    a, b = pair.a, pair.b
    key = a.create_agent("Limited", sdk_default="allow", rate_limit_per_minute=6)
    wait_for(lambda: b.state.agent_for_key(key), what="B knows the agent")
    started = time.monotonic()
    answers = [(_post(h, key), h) for h in (a, b) * 6]
    elapsed = time.monotonic() - started
    allowed = [r for r, _ in answers if r.status_code == 200]
    refused = [(r, h) for r, h in answers if r.status_code == 429]
    # one bucket of 6 (plus what refilled meanwhile: 6 a minute); two would allow 12
    assert 6 <= len(allowed) <= 6 + math.ceil(elapsed / 10)
    assert {h.data_dir.name for _, h in refused} == {"a", "b"}
    for r, _ in refused:
        assert r.json()["error"] == "rate_limited"
        assert int(r.headers["Retry-After"]) >= 1
        assert r.json()["retry_after"] == int(r.headers["Retry-After"])


def test_the_shared_check_is_atomic_under_concurrent_callers(pair: Pair) -> None:
    """40 connections race for one bucket of 20: exactly the budget is handed out."""
    outcomes: list[bool] = []
    barrier = threading.Barrier(40)

    def check() -> None:
        with psycopg.connect(pair.url, autocommit=True) as conn:
            barrier.wait()
            row = conn.execute(
                CHECK_SQL, {"key": "agt_race", "limit": 20.0, "rate": 20 / 60}
            ).fetchone()
            assert row is not None
            outcomes.append(bool(row[0]))

    started = time.monotonic()
    threads = [threading.Thread(target=check) for _ in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    elapsed = time.monotonic() - started
    assert len(outcomes) == 40
    assert 20 <= outcomes.count(True) <= 20 + math.ceil(elapsed / 3)


def test_an_idempotency_key_replayed_on_another_replica_gets_the_first_answer(
    pair: Pair,
) -> None:
    a, b = pair.a, pair.b
    key = a.create_agent("Idem", sdk_default="allow")
    _allow_github(a, "Idem")
    wait_for(lambda: _has_rule(b, "Idem"), what="B has the rule")
    first = _post(a, key, idem="k-1")
    again = _post(b, key, idem="k-1")
    assert first.status_code == again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    one, two = first.json(), again.json()
    assert two["action_request_id"] == one["action_request_id"]
    assert (two["status"], two["decision"]) == (one["status"], one["decision"])
    other = {**SPEC, "parameters": {"pull_number": 43}}
    assert _post(b, key, other, idem="k-1").status_code == 409


def test_a_held_request_replayed_on_another_replica_names_the_same_approval(
    pair: Pair,
) -> None:
    a, b = pair.a, pair.b
    key = a.create_agent("Held")
    _allow_github(a, "Held", "require_approval")
    wait_for(lambda: _has_rule(b, "Held"), what="B has the rule")
    first = _post(a, key, idem="held-1").json()
    again = _post(b, key, idem="held-1").json()
    assert first["status"] == again["status"] == "pending_approval"
    assert again["approval"] == first["approval"]
    assert again["action_request_id"] == first["action_request_id"]


def test_the_same_key_sent_to_both_replicas_at_once_is_one_action(
    pair: Pair,
) -> None:
    a, b = pair.a, pair.b
    key = a.create_agent("Racer", sdk_default="allow", rate_limit_per_minute=1000)
    wait_for(lambda: b.state.agent_for_key(key), what="B knows the agent")
    for n in range(5):
        answers: dict[str, Any] = {}
        barrier = threading.Barrier(2)

        def send(
            h: Harness,
            n: int = n,
            answers: dict[str, Any] = answers,
            barrier: threading.Barrier = barrier,
        ) -> None:
            barrier.wait()
            answers[h.data_dir.name] = _post(h, key, idem=f"race-{n}")

        threads = [threading.Thread(target=send, args=(h,)) for h in (a, b)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert {r.status_code for r in answers.values()} == {200}
        assert len({r.json()["action_request_id"] for r in answers.values()}) == 1
