"""The async client against the real server; approvals come from another task."""

from __future__ import annotations

import anyio
import anyio.to_thread
import pytest

from agentfirewall import ActionDenied, ApprovalError
from tests.sdk.liveagent import LiveAgent

pytestmark = pytest.mark.anyio


async def decide_soon(agent: LiveAgent, verdict: str) -> None:
    await anyio.to_thread.run_sync(agent.decide_next, verdict)


async def test_request_check_and_dry_run(agent: LiveAgent) -> None:
    agent.deny("github.repo.delete", "no deletes")
    async with agent.async_firewall() as tf:
        allowed = await tf.request_action(
            "github.pr.merge", provider="github", target="acme/api", parameters={"pull_number": 42}
        )
        assert allowed.status == "allowed"
        claims = await tf.verify_decision_token(
            allowed.decision_token or "", action_request_id=allowed.action_request_id
        )
        assert claims.agent == agent.name
        assert (await tf.check("github.repo.delete")).reason == "no deletes"
        dry = await tf.dry_run("github.repo.delete")
        assert dry.status == "denied"
        state = await tf.get_action(allowed.action_request_id)
        assert state.status == "allowed"


async def test_wait_for_approval_while_another_task_approves(agent: LiveAgent) -> None:
    agent.require_approval("payment.transfer.initiate")
    async with agent.async_firewall() as tf:
        held = await tf.request_action(
            "payment.transfer.initiate", provider="stripe", parameters={"amount": 25000}
        )
        assert held.pending
        async with anyio.create_task_group() as tg:
            tg.start_soon(decide_soon, agent, "approve")
            approved = await tf.wait_for_approval(held.action_request_id, timeout_seconds=30)
        assert approved
        await tf.verify_decision_token(
            approved.decision_token, action_request_id=held.action_request_id
        )


async def test_async_guard_raises_on_deny_and_on_a_refused_approval(agent: LiveAgent) -> None:
    agent.deny("github.repo.delete")
    agent.require_approval("github.release.delete")
    async with agent.async_firewall() as tf:
        with pytest.raises(ActionDenied):
            async with tf.guard("github.repo.delete"):
                pytest.fail("the guarded block must not run")
        refused: list[ApprovalError] = []

        async def guarded() -> None:
            try:
                async with tf.guard("github.release.delete", approval_timeout=30):
                    pytest.fail("the guarded block must not run")
            except ApprovalError as exc:
                refused.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(decide_soon, agent, "deny")
            tg.start_soon(guarded)
        assert [e.status for e in refused] == ["denied"]

        @tf.guard("github.pr.merge")
        async def merge(number: int) -> int:
            return number

        assert await merge(7) == 7


async def test_wait_timeout_returns_a_falsy_timeout(agent: LiveAgent) -> None:
    agent.require_approval("payment.payout.create")
    async with agent.async_firewall() as tf:
        held = await tf.request_action("payment.payout.create")
        outcome = await tf.wait_for_approval(held.action_request_id, timeout_seconds=1.2)
        assert not outcome
        assert outcome.status == "timeout"
