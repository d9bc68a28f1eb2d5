"""agentfirewall.testing: the in-memory transport decides with the real engine."""

from __future__ import annotations

import threading

import anyio
import httpx
import pytest

from agentfirewall import ActionDenied, ActionSpecError, AgentFirewall, ApprovalError
from agentfirewall.errors import AuthenticationError, ConflictError, NotFoundError
from agentfirewall.policy import AccessRule, KillSwitch
from agentfirewall.testing import (
    TEST_BASE_URL,
    FirewallTransport,
    make_action_result,
    make_decision,
)

PAYMENTS = """
name: payments
scope: {action_types: ["payment.*"]}
rules:
  - name: big-transfers
    conditions:
      all:
        - {field: action_spec.parameters.amount, operator: gt, value: 10000}
    decision: requires_approval
    reason: transfers over 10k need a human
    risk_score: 80
  - name: no-crypto
    conditions:
      all:
        - {field: action_spec.parameters.currency, operator: equals, value: btc}
    decision: deny
    reason: no crypto transfers
    risk_score: 95
"""


def transfer(amount: int, currency: str = "usd") -> dict[str, object]:
    return {
        "action_type": "payment.transfer.initiate",
        "provider": "stripe",
        "parameters": {"amount": amount, "currency": currency},
    }


def executor(spec: object) -> dict[str, str]:
    return {"id": "tr_1"}


def test_make_helpers_build_what_the_sdk_returns() -> None:
    denied = make_action_result("denied", "no crypto transfers")
    assert denied.status == "denied"
    assert denied.decision.reason == "no crypto transfers"
    assert denied.decision_token is None
    with pytest.raises(ActionDenied, match="no crypto"):
        denied.raise_for_denial()
    allowed = make_action_result()
    assert allowed.decision.reason == "No deny rules matched"
    assert allowed.decision_token
    assert make_action_result("pending_approval").approval is not None
    assert make_decision("deny", risk_score=90).risk_score == 90


def test_policies_decide_allow_deny_and_hold() -> None:
    firewall = FirewallTransport(policies=[PAYMENTS])
    with firewall.client() as tf:
        assert tf.request_action(**transfer(100)).status == "allowed"  # type: ignore[arg-type]
        denied = tf.request_action(**transfer(100, "btc"))  # type: ignore[arg-type]
        assert denied.status == "denied"
        assert denied.decision.reason == "no crypto transfers"
        assert denied.decision.risk_score == 95
        held = tf.request_action(**transfer(25_000))  # type: ignore[arg-type]
        assert held.status == "pending_approval"
        assert held.approval is not None
    assert firewall.pending == [held.action_request_id]


def test_access_rules_and_kill_switches_apply() -> None:
    rules = [
        AccessRule(
            agent="test-agent",
            connector="github",
            action_pattern="github.repo.delete",
            decision="deny",
        )
    ]
    firewall = FirewallTransport(access_rules=rules)
    with firewall.client() as tf:
        assert tf.check("github.repo.delete", provider="github").outcome == "deny"
        assert tf.check("github.pr.merge", provider="github").outcome == "allow"
    stopped = FirewallTransport(kill_switches=[KillSwitch(scope="all", target=None, reason="x")])
    with stopped.client() as tf:
        assert tf.check("github.pr.merge").reason == "kill_switch_active"


def test_approval_then_execute_once_with_a_real_token() -> None:
    firewall = FirewallTransport(policies=[PAYMENTS], executor=executor)
    with firewall.client() as tf:
        held = tf.request_action(**transfer(25_000))  # type: ignore[arg-type]
        threading.Timer(0.2, firewall.approve).start()
        approved = tf.wait_for_approval(held.action_request_id, timeout_seconds=10)
        assert approved
        claims = tf.verify_decision_token(
            approved.decision_token, action_request_id=held.action_request_id
        )
        assert claims.agent == "test-agent"
        assert tf.execute(held.action_request_id, approved.decision_token).body == {"id": "tr_1"}
        with pytest.raises(ConflictError, match="already executed"):
            tf.execute(held.action_request_id, approved.decision_token)
        assert tf.get_action(held.action_request_id).status == "executed"


def test_denied_approval_and_timeout_are_falsy() -> None:
    firewall = FirewallTransport(policies=[PAYMENTS])
    with firewall.client() as tf:
        held = tf.request_action(**transfer(25_000))  # type: ignore[arg-type]
        firewall.deny(held.action_request_id)
        outcome = tf.wait_for_approval(held.action_request_id, timeout_seconds=5)
        assert not outcome
        assert outcome.status == "denied"
        other = tf.request_action(**transfer(30_000))  # type: ignore[arg-type]
        timed_out = tf.wait_for_approval(other.action_request_id, timeout_seconds=0.2)
        assert not timed_out
        assert timed_out.status == "timeout"
        with pytest.raises(ApprovalError) as info:
            with tf.guard(
                "payment.transfer.initiate", approval_timeout=0.1, parameters={"amount": 50_000}
            ):
                pytest.fail("a held action must not run")
        assert info.value.status == "timeout"


def test_a_wrong_key_an_unknown_action_and_a_bad_spec_are_refused() -> None:
    firewall = FirewallTransport()
    with firewall.client() as tf:
        with pytest.raises(NotFoundError):
            tf.execute("act_000001", "token")
        with pytest.raises(ActionSpecError):  # caught before anything is sent
            tf.check("Not A Type")
    raw = httpx.Client(
        base_url=TEST_BASE_URL,
        transport=firewall,
        headers={"Authorization": f"Bearer {firewall.api_key}"},
    )
    answer = raw.post("/v1/actions", json={"action_spec": {"type": "Not A Type"}})
    assert answer.status_code == 422
    assert answer.json()["error"] == "invalid_request"
    with AgentFirewall(
        api_key="aaf_test_wrong", base_url=TEST_BASE_URL, transport=firewall
    ) as wrong:
        with pytest.raises(AuthenticationError):
            wrong.check("github.pr.merge")


@pytest.mark.anyio
async def test_a_wait_the_server_refuses_is_refused_at_once_not_held() -> None:
    """A wait the control plane refuses (a query parameter it does not read, a timeout that
    is no number) gets its 400 before any hold, sync or async; it used to be held for its
    timeout and answered 200 (tests/server/test_testing_parity.py compares the rest)."""
    firewall = FirewallTransport(policies=[PAYMENTS])
    with firewall.client() as tf:
        held = tf.request_action(**transfer(25_000))  # type: ignore[arg-type]
    path = f"/v1/actions/{held.action_request_id}/wait"
    headers = {"Authorization": f"Bearer {firewall.api_key}"}
    with httpx.Client(base_url=TEST_BASE_URL, transport=firewall, headers=headers) as raw:
        answer = raw.get(path, params={"timeout": "1", "since": "0"})
    async with httpx.AsyncClient(
        base_url=TEST_BASE_URL, transport=firewall, headers=headers
    ) as raw_async:
        again = await raw_async.get(path, params={"timeout": "nan"})
    assert (answer.status_code, answer.json()["field"]) == (400, "since")
    assert (again.status_code, again.json()["field"]) == (400, "timeout")
    assert firewall.pending == [held.action_request_id]


def test_monitor_level_reports_would_deny() -> None:
    firewall = FirewallTransport(policies=[PAYMENTS], enforcement_level="monitor")
    with firewall.client() as tf:
        decision = tf.check(**transfer(5, "btc"))  # type: ignore[arg-type]
    assert decision.outcome == "allow"
    assert decision.would_outcome == "would_deny"


@pytest.mark.anyio
async def test_async_client_over_the_same_transport() -> None:
    firewall = FirewallTransport(policies=[PAYMENTS], executor=executor)
    async with firewall.async_client() as tf:
        held = await tf.request_action(**transfer(25_000))  # type: ignore[arg-type]

        async def approve_soon() -> None:
            await anyio.sleep(0.2)
            firewall.approve()

        async with anyio.create_task_group() as tg:
            tg.start_soon(approve_soon)
            approved = await tf.wait_for_approval(held.action_request_id, timeout_seconds=10)
        assert approved
        result = await tf.execute(held.action_request_id, approved.decision_token)
        assert result.ok
        dry = await tf.dry_run(
            "payment.transfer.initiate", parameters={"amount": 1, "currency": "btc"}
        )
        assert dry.status == "denied"
        assert dry.explanation[0].step == "kill_switch"


def test_users_can_test_their_guarded_tools_without_a_server() -> None:
    from agentfirewall.integrations.langchain import firewall_tool

    firewall = FirewallTransport(policies=[PAYMENTS])
    sent: list[int] = []
    with firewall.client() as tf:

        @firewall_tool(
            tf, action_type="payment.transfer.initiate", provider="stripe", approval_timeout=5
        )
        def transfer_money(amount: int, currency: str) -> str:
            """Transfer money."""
            sent.append(amount)
            return "sent"

        assert transfer_money.invoke({"amount": 5, "currency": "btc"}) == (
            "Action blocked by policy: no crypto transfers"
        )
        threading.Timer(0.2, firewall.approve).start()
        assert transfer_money.invoke({"amount": 20_000, "currency": "usd"}) == "sent"
    assert sent == [20_000]
    assert [a.status for a in firewall.actions] == ["denied", "allowed"]
