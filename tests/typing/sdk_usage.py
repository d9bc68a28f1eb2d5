"""The SDK used the way users write it; `test_typing.py` runs mypy --strict on this file.

Not collected by pytest (no ``test_`` prefix); it is never run, only type-checked.
"""

from __future__ import annotations

import os

from agentfirewall import (
    ActionDenied,
    ActionResult,
    AgentFirewall,
    ApprovalError,
    AsyncAgentFirewall,
    Decision,
    ExecutionResult,
    RateLimitError,
)
from agentfirewall.client import Approved, DryRunResult, NotApproved
from agentfirewall.integrations.langchain import firewall_tool, guard_tools
from agentfirewall.testing import FirewallTransport, make_action_result
from agentfirewall.tokens import DecisionClaims


def seed_mode_a() -> None:
    TameFlare = AgentFirewall(
        api_key=os.environ["AAF_API_KEY"],
        base_url=os.environ.get("AAF_BASE_URL", "http://localhost:3000/api"),
    )
    result = TameFlare.request_action(
        action_type="payment.transfer.initiate",
        provider="stripe",
        account="acct_main",
        target="transfers",
        environment="production",
        parameters={"amount": 25000, "currency": "usd", "destination": "acct_xyz"},
        risk_hints={"financial_impact": True, "irreversible": True},
    )
    if result.status == "allowed":
        TameFlare.execute(result.action_request_id, result.decision_token)
    elif result.status == "pending_approval":
        approved = TameFlare.wait_for_approval(result.action_request_id, timeout_seconds=300)
        if approved:
            token: str = approved.decision_token
            TameFlare.execute(result.action_request_id, token)
        else:
            why: str = approved.status
            print(why)
    elif result.status == "denied":
        print(f"Blocked: {result.decision.reason}")


def conveniences(tf: AgentFirewall) -> None:
    decision: Decision = tf.check("github.pr.merge", provider="github", target="acme/api")
    decision.raise_for_denial()
    score: float = decision.risk_score
    policies: tuple[str, ...] = decision.matched_policies
    dry: DryRunResult = tf.dry_run("github.pr.merge", parameters={"pull_number": 42})
    steps = [step.step for step in dry.explanation]
    with tf.guard("github.pr.merge", approval_timeout=60, provider="github") as allowed:
        done: ExecutionResult = tf.execute(allowed.action_request_id, allowed.decision_token)
        assert done.ok
    claims: DecisionClaims = tf.verify_decision_token("eyJ...", action_request_id="act_1")
    print(score, policies, steps, claims.agent)

    @tf.guard("github.repo.delete")
    def delete_repo(name: str) -> int:
        return len(name)

    count: int = delete_repo("acme/api")
    print(count)


def errors(tf: AgentFirewall) -> None:
    try:
        tf.request_action("github.pr.merge").raise_for_denial()
    except ActionDenied as exc:
        print(exc.decision.reason)
    except RateLimitError as exc:
        wait: float | None = exc.retry_after
        print(wait)
    except ApprovalError as exc:
        print(exc.status)


async def asynchronous() -> None:
    async with AsyncAgentFirewall(api_key="aaf_test_x") as tf:
        result: ActionResult = await tf.request_action("email.send", target="bob@example.com")
        if result.pending:
            outcome: Approved | NotApproved = await tf.wait_for_approval(
                result.action_request_id, timeout_seconds=30
            )
            if outcome:
                await tf.execute(result.action_request_id, outcome.decision_token)
        async with tf.guard("email.send") as allowed:
            print(allowed.decision.reason)


def integrations(tf: AgentFirewall) -> None:
    @firewall_tool(tf, action_type="github.issue.create", target=lambda args: str(args["repo"]))
    def create_issue(repo: str, title: str) -> str:
        """Create an issue."""
        return f"{repo}: {title}"

    tools = guard_tools([create_issue], tf, on_deny="raise")
    print(tools[0].name)


def testing_helpers() -> None:
    firewall = FirewallTransport(policies=["name: p\nrules: []\n"])
    with firewall.client() as tf:
        result = tf.request_action("github.pr.merge")
        print(result.status, firewall.pending)
    fake: ActionResult = make_action_result("denied", "nope")
    print(fake.decision.outcome)
