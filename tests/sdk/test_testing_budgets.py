"""agentfirewall.testing applies budgets as the control plane does on the SDK path.

Before, FirewallTransport took no budgets: an agent whose configuration caps its spend got
`allowed` in its tests where the server denies or holds the action once the budget is
spent. Now `budgets=` takes the server's definitions and the transport reserves, releases
and settles as the server does (docs/budgets.md, "The SDK path");
tests/server/test_testing_parity.py runs the same requests against both.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from agentfirewall.testing import TEST_BASE_URL, FirewallTransport
from tests.sdk.test_docs_samples import _block, _run

SLACK = {"slack-daily": {"connector": "slack", "action": "slack.*", "limit": 1}}
SPENT = "budget `slack-daily` exceeded: 1 of 1 requests used this day, this request needs 1"
HOLD_ALL = """\
name: hold-slack
rules:
  - name: every-message
    conditions: [{field: context.connector, operator: equals, value: slack}]
    decision: require_approval
"""


def _post(firewall: FirewallTransport) -> tuple[str, str]:
    with firewall.client() as tf:
        result = tf.request_action("slack.message.post", parameters={"text": "hi"})
    return result.status, result.decision.reason


def test_a_spent_budget_denies_and_a_dry_run_says_so_without_spending() -> None:
    firewall = FirewallTransport(budgets=SLACK)
    with firewall.client() as tf:
        for _ in range(3):  # reads the budget, reserves nothing
            dry = tf.dry_run("slack.message.post", parameters={"text": "hi"})
            assert dry.status == "allowed"
            assert dry.explanation[-1].step == "budgets"
            assert dry.explanation[-1].detail == SPENT.replace(" exceeded", "").replace(
                "1 of 1", "0 of 1"
            )
    assert _post(firewall)[0] == "allowed"
    assert _post(firewall) == ("denied", SPENT)
    with firewall.client() as tf:
        assert tf.dry_run("slack.message.post", parameters={"text": "hi"}).status == "denied"


def test_a_held_actions_spend_is_released_when_denied_and_counted_when_approved() -> None:
    firewall = FirewallTransport(policies=[HOLD_ALL], budgets=SLACK)
    assert _post(firewall)[0] == "pending_approval"  # reserved while a person decides
    firewall.deny()  # released
    assert _post(firewall)[0] == "pending_approval"  # fits again: held, reserved
    firewall.approve()
    status, reason = _post(firewall)
    assert (status, reason) == ("denied", SPENT)


def test_an_expired_approval_releases_its_spend() -> None:
    """`approval_timeout_seconds=0`: a held action expires at once, as one left too long."""
    firewall = FirewallTransport(policies=[HOLD_ALL], budgets=SLACK, approval_timeout_seconds=0)
    assert _post(firewall)[0] == "pending_approval"
    with firewall.client() as tf:
        expired = tf.get_action(firewall.actions[0].id)
    assert expired.status == "expired"
    assert firewall.pending == []
    assert _post(firewall)[0] == "pending_approval"  # the budget fits again


def test_an_executed_action_is_shown_as_the_server_shows_it() -> None:
    firewall = FirewallTransport(budgets=SLACK, executor=lambda spec: {"ok": True})
    with firewall.client() as tf:
        allowed = tf.request_action("slack.message.post", parameters={"text": "hi"})
        assert tf.execute(allowed.action_request_id, allowed.decision_token).body == {"ok": True}
    headers = {"Authorization": f"Bearer {firewall.api_key}"}
    with httpx.Client(base_url=TEST_BASE_URL, transport=firewall, headers=headers) as raw_client:
        raw = raw_client.get(f"/v1/actions/{allowed.action_request_id}").json()
    assert raw["status"] == raw["execution_state"] == "executed"
    assert sorted(raw["execution"]) == ["executed_at", "status_code"]  # never the body
    assert _post(firewall) == ("denied", SPENT)  # settled: it stays spent


def test_a_policy_reads_a_budgets_usage() -> None:
    policy = """\
name: hold-when-low
rules:
  - name: low
    conditions: [{field: budget.slack-daily.remaining, operator: lt, value: 2}]
    decision: require_approval
"""
    budgets = {"slack-daily": {"connector": "slack", "limit": 2}}
    firewall = FirewallTransport(policies=[policy], budgets=budgets)
    assert _post(firewall)[0] == "allowed"  # 2 remained
    assert _post(firewall)[0] == "pending_approval"  # 1 remains


@pytest.mark.parametrize(
    "body",
    [
        {"connector": "slack", "limit": 1, "limt": 2},  # a field the server does not know
        {"connector": "slack", "limit": 0},
        {"connector": "slack", "limit": 1, "window": "week"},
        {"connector": "slack", "limit": 1, "measure": "tokens"},  # LLM connectors only
    ],
)
def test_a_budget_the_server_would_refuse_is_refused(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        FirewallTransport(budgets={"slack-daily": body})


def test_the_budgets_sample_of_the_sdk_docs_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    ran = _run(_block("FirewallTransport(budgets="), {}, monkeypatch)
    assert ran["over"].decision.reason.startswith("budget `stripe-daily` exceeded: 90000 of")
