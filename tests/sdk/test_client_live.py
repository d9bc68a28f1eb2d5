"""The sync client against the real server: the seed's flows, errors and approvals."""

from __future__ import annotations

import socket
import threading

import httpx
import pytest

from agentfirewall import ActionDenied, AgentFirewall, ApprovalError
from agentfirewall.actions import action_hash
from agentfirewall.errors import (
    AuthenticationError,
    NotFoundError,
    RateLimitError,
    TokenError,
    TransportError,
    ValidationError,
)
from tests.livesrv import LiveServer
from tests.sdk.liveagent import LiveAgent, new_agent

MERGE = {
    "action_type": "github.pr.merge",
    "provider": "github",
    "account": "acme",
    "target": "acme/api",
    "environment": "production",
    "parameters": {"pull_number": 42},
}
SPEC = {
    "type": "github.pr.merge",
    "resource": {
        "provider": "github",
        "account": "acme",
        "target": "acme/api",
        "environment": "production",
    },
    "parameters": {"pull_number": 42},
}


def in_thread(target: object) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)  # type: ignore[arg-type]
    thread.start()
    return thread


def test_allowed_action_has_the_seed_shape_and_a_verifiable_token(agent: LiveAgent) -> None:
    with agent.firewall() as tf:
        result = tf.request_action(**MERGE)  # type: ignore[arg-type]
        assert result.status == "allowed"
        assert result.action_request_id.startswith("act_")
        assert result.decision.outcome == "allow"
        assert result.decision.reason == "No deny rules matched"
        assert result.decision_token
        claims = tf.verify_decision_token(
            result.decision_token,
            action_request_id=result.action_request_id,
            action_hash=action_hash(SPEC),
        )
        assert claims.agent == agent.name
        with pytest.raises(TokenError) as info:
            tf.verify_decision_token(result.decision_token, action_request_id="act_other")
        assert info.value.code == "wrong_action"
        tf.verify_decision_token(result.decision_token, agent=agent.name)
        with pytest.raises(TokenError) as info:  # a token shown by another agent's process
            tf.verify_decision_token(result.decision_token, agent=agent.name + "-other")
        assert info.value.code == "wrong_agent"
        state = tf.get_action(result.action_request_id)
        assert state.status == "allowed"
        assert state.action_spec["parameters"] == {"pull_number": 42}
        assert state.agent == agent.name


def test_denied_is_data_until_raise_for_denial(agent: LiveAgent) -> None:
    agent.deny("github.repo.delete", "repository deletion is not allowed")
    with agent.firewall() as tf:
        result = tf.request_action("github.repo.delete", provider="github", target="acme/api")
        assert result.status == "denied"
        assert result.decision.reason == "repository deletion is not allowed"
        assert result.decision.risk_score == 90
        assert result.decision_token is None
        with pytest.raises(ActionDenied, match="repository deletion"):
            result.raise_for_denial()
        decision = tf.check("github.repo.delete", provider="github")
        assert decision.outcome == "deny"
        with pytest.raises(ActionDenied):
            with tf.guard("github.repo.delete", provider="github"):
                pytest.fail("the guarded block must not run")
        with pytest.raises(TokenError, match="no decision token"):
            tf.execute(result.action_request_id, result.decision_token)
        dry = tf.dry_run("github.repo.delete", provider="github")
        assert dry.status == "denied"
        assert {s.step for s in dry.explanation} >= {"kill_switch", "policies"}


def test_approval_through_the_api_gives_a_fresh_token(agent: LiveAgent) -> None:
    agent.require_approval("payment.transfer.initiate", "transfers need a human")
    with agent.firewall() as tf:
        result = tf.request_action(
            "payment.transfer.initiate", provider="stripe", parameters={"amount": 25000}
        )
        assert result.status == "pending_approval"
        assert result.approval is not None
        assert result.approval.id.startswith("apv_")
        thread = in_thread(lambda: agent.decide_next("approve"))
        approved = tf.wait_for_approval(result.action_request_id, timeout_seconds=30)
        thread.join(10)
        assert approved
        assert approved.action_request_id == result.action_request_id
        claims = tf.verify_decision_token(
            approved.decision_token, action_request_id=result.action_request_id
        )
        assert claims.outcome == "allow"


def test_a_denied_approval_is_falsy_and_guard_raises(agent: LiveAgent) -> None:
    agent.require_approval("payment.refund.create")
    with agent.firewall() as tf:
        result = tf.request_action("payment.refund.create", provider="stripe")
        thread = in_thread(lambda: agent.decide_next("deny"))
        outcome = tf.wait_for_approval(result.action_request_id, timeout_seconds=30)
        thread.join(10)
        assert not outcome
        assert outcome.status == "denied"
        # the person's denial and their note, not the rule's reason for holding it
        assert outcome.reason.startswith("denied by ")
        assert outcome.reason.endswith(": decided by a test")
        thread = in_thread(lambda: agent.decide_next("deny"))
        with pytest.raises(ApprovalError) as info:
            with tf.guard("payment.refund.create", provider="stripe", approval_timeout=30):
                pytest.fail("the guarded block must not run")
        thread.join(10)
        assert info.value.status == "denied"
        assert "decided by a test" in str(info.value)


def test_waiting_past_the_deadline_returns_timeout(agent: LiveAgent) -> None:
    agent.require_approval("payment.payout.create")
    with agent.firewall() as tf:
        result = tf.request_action("payment.payout.create")
        outcome = tf.wait_for_approval(result.action_request_id, timeout_seconds=1.5)
        assert not outcome
        assert outcome.status == "timeout"
        assert tf.get_action(result.action_request_id).status == "pending_approval"


def test_guard_decorator_runs_after_approval(agent: LiveAgent) -> None:
    agent.require_approval("github.release.create")
    calls: list[str] = []
    with agent.firewall() as tf:

        @tf.guard("github.release.create", provider="github", approval_timeout=30)
        def release(tag: str) -> str:
            calls.append(tag)
            return tag

        thread = in_thread(lambda: agent.decide_next("approve"))
        assert release("v1.0") == "v1.0"
        thread.join(10)
    assert calls == ["v1.0"]


def test_idempotency_key_replays_the_first_answer(agent: LiveAgent) -> None:
    with agent.firewall() as tf:
        first = tf.request_action("github.pr.merge", idempotency_key="same-key-1")
        again = tf.request_action("github.pr.merge", idempotency_key="same-key-1")
        other = tf.request_action("github.pr.merge")
    assert again.action_request_id == first.action_request_id
    assert again.replayed
    assert not first.replayed
    assert other.action_request_id != first.action_request_id


def test_errors_from_the_server(agent: LiveAgent, shared_live_server: LiveServer) -> None:
    with AgentFirewall(api_key="aaf_test_" + "x" * 32, base_url=shared_live_server.api_url) as bad:
        with pytest.raises(AuthenticationError) as info:
            bad.request_action("github.pr.merge")
        assert info.value.status_code == 401
    with agent.firewall() as tf:
        with pytest.raises(NotFoundError):
            tf.get_action("act_does_not_exist")
        allowed = tf.request_action("webhook.post", provider="webhook")
        with pytest.raises(ValidationError) as not_executable:
            tf.execute(allowed.action_request_id, allowed.decision_token)
        assert not_executable.value.status_code == 422


def test_rate_limit_is_a_rate_limit_error_with_retry_after(
    shared_live_server: LiveServer,
) -> None:
    slow = new_agent(shared_live_server, "slow", rate_limit_per_minute=2)
    with slow.firewall(max_retries=0) as tf:
        tf.check("github.pr.merge")
        tf.check("github.pr.merge")
        with pytest.raises(RateLimitError) as info:
            tf.check("github.pr.merge")
    assert info.value.retry_after is not None
    assert 0 < info.value.retry_after <= 60


def test_an_unreachable_server_is_a_transport_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with AgentFirewall(
        api_key="aaf_test_k",
        base_url=f"http://127.0.0.1:{port}/api",
        max_retries=1,
        retry_backoff=0,
    ) as tf:
        with pytest.raises(TransportError, match="cannot reach"):
            tf.request_action("github.pr.merge")


def test_defaults_come_from_the_environment(
    agent: LiveAgent, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in agent.env().items():
        monkeypatch.setenv(name, value)
    with AgentFirewall() as tf:
        assert tf.base_url == agent.server.api_url
        assert tf.check("github.pr.merge").allowed
    monkeypatch.delenv("AAF_API_KEY")
    with pytest.raises(AuthenticationError, match="AAF_API_KEY"):
        AgentFirewall()
    monkeypatch.delenv("AAF_BASE_URL")
    assert AgentFirewall(api_key="k").base_url == "http://localhost:3000/api"


class CountingTransport(httpx.HTTPTransport):
    """The real transport, counting the requests it sends and the statuses it gets."""

    def __init__(self) -> None:
        super().__init__()
        self.statuses: list[int] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        self.statuses.append(response.status_code)
        return response


def drain(firewall: AgentFirewall) -> None:
    """Spend the agent's bucket (60 tokens, refilling 1 per second) until a 429."""
    for _ in range(200):
        try:
            firewall.check("github.pr.merge")
        except RateLimitError:
            return
    pytest.fail("the rate limit never applied")


def test_the_sdk_retries_a_429_after_retry_after(shared_live_server: LiveServer) -> None:
    limited = new_agent(shared_live_server, "burst", rate_limit_per_minute=60)
    counting = CountingTransport()
    with limited.firewall(max_retries=0) as once, limited.firewall(transport=counting) as tf:
        for _ in range(5):  # a slow machine may refill a token between the two calls
            drain(once)
            counting.statuses.clear()
            assert tf.check("github.pr.merge").allowed
            if counting.statuses[0] == 429:
                break
    assert counting.statuses[0] == 429
    assert counting.statuses[-1] == 200
