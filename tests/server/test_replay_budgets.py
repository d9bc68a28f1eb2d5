"""Policy replay compares the rules' verdicts only, on SQLite and PostgreSQL: a live verdict a
budget or a kill switch gave is not "drifted" (neither is part of a replayed configuration,
as shadow mode leaves them out); it is counted under `outside_rules`, and a true drift (the
rules changed since) still counts.

Before: replaying the live configuration against itself reported every budget refusal as
drifted ("the live configuration changed since"), though nothing had changed.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from agentfirewall.actions import parse_action_spec
from agentfirewall.policy import EvaluationContext
from agentfirewall.policy.record import record_input
from agentfirewall_server.replaystore import input_text
from agentfirewall_server.store.schema import traffic
from tests.server.conftest import Harness

CHARGE = {
    "type": "stripe.charge.create",
    "resource": {"provider": "stripe"},
    "parameters": {"amount": 1, "currency": "usd"},
}


def _replay(h: Harness, **body: Any) -> dict[str, Any]:
    answer = h.admin("POST", "/v1/policies/replay", json=body)
    assert answer.status_code == 200, answer.text
    report: dict[str, Any] = answer.json()
    return report


def _counts(report: dict[str, Any]) -> dict[str, Any]:
    return {k: report[k] for k in ("total", "unchanged", "changed", "drifted", "outside_rules")}


def test_budget_refusals_on_the_sdk_path_are_not_drift(harness: Harness) -> None:
    """The report's case: a count budget of 1, three SDK actions, two refused by it."""
    h = harness
    key = h.create_agent("Bot")
    body = {"connector": "stripe", "action": "stripe.charge.*", "measure": "count", "limit": 1}
    assert h.admin("PUT", "/v1/budgets/one", json=body).status_code == 201
    statuses = [
        h.agent(key, "POST", "/v1/actions", json={"action_spec": CHARGE}).json()["status"]
        for _ in range(3)
    ]
    assert statuses == ["allowed", "denied", "denied"]
    assert _counts(_replay(h)) == {
        "total": 3,
        "unchanged": 3,
        "changed": 0,
        "drifted": 0,
        "outside_rules": {"budget": 2},
    }


def test_a_kill_switch_refusal_is_not_drift(harness: Harness) -> None:
    h = harness
    key = h.create_agent("Bot")
    switch = {"active": True, "scope": "agent:Bot", "reason": "incident"}
    assert h.admin("POST", "/v1/kill-switch", json=switch).status_code == 200
    denied = h.agent(key, "POST", "/v1/actions", json={"action_spec": CHARGE}).json()
    assert denied["status"] == "denied"
    off = {"active": False, "scope": "agent:Bot"}
    assert h.admin("POST", "/v1/kill-switch", json=off).status_code == 200
    assert _counts(_replay(h)) == {
        "total": 1,
        "unchanged": 1,
        "changed": 0,
        "drifted": 0,
        "outside_rules": {"kill_switch": 1},
    }


def test_gateway_records_a_budget_refused_or_a_kill_switch_cut(harness: Harness) -> None:
    """Traffic rows as the gateway records them: a budget's refusal (its reason names the
    budget), a request the kill switch cut (`killed`), and one the rules allowed."""
    h = harness
    permission = {
        "agent": "Bot",
        "connector": "stripe",
        "action_pattern": "stripe.*",
        "decision": "allow",
    }
    assert h.admin("POST", "/v1/permissions", json=permission).status_code in (200, 201)
    now = datetime.now(UTC)
    spec = parse_action_spec(CHARGE)
    stored = input_text(
        record_input(
            spec, EvaluationContext(agent="Bot", mode="proxy", connector="stripe", now=now)
        )
    )
    rows = [
        ("deny", "budget `one` exceeded: 1 of 1 requests used this day, this request needs 1"),
        ("deny", "budget `usd`: the request names no currency"),
        ("killed", "kill_switch_active: the exchange was cut by the kill switch"),
        ("allow", "allowed by permission `stripe.*`"),
    ]
    records = [
        {
            "request_id": f"req_{i}",
            "agent": "Bot",
            "connector": "stripe",
            "decision": decision,
            "reason": reason,
            "created_at": now.timestamp(),
            "decision_input": stored,
        }
        for i, (decision, reason) in enumerate(rows)
    ]
    h.state.db.write_sync(lambda c: c.execute(traffic.insert(), records))
    assert _counts(_replay(h)) == {
        "total": 4,
        "unchanged": 4,
        "changed": 0,
        "drifted": 0,
        "outside_rules": {"budget": 2, "kill_switch": 1},
    }


def test_a_rule_changed_since_still_drifts(harness: Harness) -> None:
    """Only the verdicts the rules gave are compared, and those still say when the rules
    changed: a charge allowed, then a deny rule on charges."""
    h = harness
    key = h.create_agent("Bot")
    assert h.agent(key, "POST", "/v1/actions", json={"action_spec": CHARGE}).json()["status"] == (
        "allowed"
    )
    rule = {
        "agent": "Bot",
        "connector": "stripe",
        "action_pattern": "stripe.charge.*",
        "decision": "deny",
    }
    assert h.admin("POST", "/v1/permissions", json=rule).status_code in (200, 201)
    report = _replay(h)
    assert (report["drifted"], report["outside_rules"]) == (1, {})
