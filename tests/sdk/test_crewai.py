"""CrewAI tools guarded by the firewall, run by a crew with a scripted LLM (crewai extra)."""

from __future__ import annotations

import threading
from typing import Any

import anyio
import anyio.to_thread
import pytest

pytest.importorskip("crewai")

from crewai import Agent, Crew, Task
from crewai.tools import BaseTool, tool
from crewai.tools.base_tool import EnvVar, Tool
from crewai.tools.tool_failure import ToolFailurePolicy
from pydantic import BaseModel

from agentfirewall import ActionDenied, AgentFirewallError
from agentfirewall.integrations.crewai import firewall_tool, guard_tools
from agentfirewall.testing import FirewallTransport
from tests.sdk.liveagent import ExecutingServer, LiveAgent
from tests.sdk.scripted_crewai import CREWAI_WARNINGS, QUIET_ENV, final, scripted_llm, uses_tool
from tests.sdk.toolargs import CAP, Dollars

pytestmark = [pytest.mark.crewai, *CREWAI_WARNINGS]


@pytest.fixture(autouse=True)
def quiet_crewai(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in QUIET_ENV.items():
        monkeypatch.setenv(name, value)


def crew_run(tools: list[object], *turns: str, **crew: Any) -> str:
    llm = scripted_llm(*turns)
    agent = Agent(
        role="Communications Manager",
        goal="Send project updates",
        backstory="You keep stakeholders informed.",
        tools=tools,
        llm=llm,
    )
    task = Task(
        description="Send the weekly update to bob@example.com",
        expected_output="what was sent",
        agent=agent,
    )
    return str(Crew(agents=[agent], tasks=[task], **crew).kickoff().raw)


def email_tool(firewall: object, sent: list[str], **options: object) -> object:
    @firewall_tool(
        firewall,
        "Send Email",
        action_type="email.send",
        provider="sendgrid",  # type: ignore[arg-type]
        target=lambda args: args["to"],
        environment="production",
        **options,
    )  # type: ignore[arg-type]
    def send_email(to: str, subject: str, body: str) -> str:
        """Send an email."""
        sent.append(to)
        return f"sent to {to}"

    return send_email


SEND = uses_tool("Send Email", to="bob@example.com", subject="Update", body="All good")


def test_tool_keeps_name_description_and_schema(agent: LiveAgent) -> None:
    guarded = email_tool(agent.firewall(), [])
    assert guarded.name == "Send Email"  # type: ignore[attr-defined]
    assert "Send an email." in guarded.description  # type: ignore[attr-defined]
    fields = guarded.args_schema.model_json_schema()["properties"]  # type: ignore[attr-defined]
    assert set(fields) == {"to", "subject", "body"}


def test_allowed_call_runs_the_tool(agent: LiveAgent) -> None:
    sent: list[str] = []
    output = crew_run([email_tool(agent.firewall(), sent)], SEND, final("sent it"))
    assert output == "sent it"
    assert sent == ["bob@example.com"]


def test_denied_call_answers_with_the_reason(agent: LiveAgent) -> None:
    agent.deny("email.send", "no external email")
    sent: list[str] = []
    guarded = email_tool(agent.firewall(), sent)
    answer = guarded.run(to="bob@example.com", subject="s", body="b")  # type: ignore[attr-defined]
    assert answer == "Action blocked by policy: no external email"
    assert crew_run([guarded], SEND, final("blocked")) == "blocked"
    assert sent == []


def test_deny_can_raise(agent: LiveAgent) -> None:
    agent.deny("email.send", "no external email")
    guarded = email_tool(agent.firewall(), [], on_deny="raise")
    with pytest.raises(ActionDenied):
        guarded.run(to="bob@example.com", subject="s", body="b")  # type: ignore[attr-defined]


def test_held_call_waits_for_the_approval(agent: LiveAgent) -> None:
    agent.require_approval("email.send")
    sent: list[str] = []
    approver = threading.Thread(target=agent.decide_next, args=("approve",), daemon=True)
    approver.start()
    output = crew_run(
        [email_tool(agent.firewall(), sent, approval_timeout=30)],
        SEND,
        final("sent after approval"),
    )
    approver.join(10)
    assert output == "sent after approval"
    assert sent == ["bob@example.com"]


@pytest.mark.anyio
async def test_async_run_with_the_async_client(agent: LiveAgent) -> None:
    agent.deny("email.send", "no email")
    sent: list[str] = []
    async with agent.async_firewall() as firewall:
        guarded = email_tool(firewall, sent)
        answer = await guarded.arun(to="bob@example.com", subject="s", body="b")  # type: ignore[attr-defined]
    assert answer == "Action blocked by policy: no email"
    assert sent == []


def test_guard_tools_uses_crewai_tool_actions(agent: LiveAgent) -> None:
    agent.deny("crewai.tool.delete_file", "no deleting")
    deleted: list[str] = []

    @tool("Delete File")
    def delete_file(path: str) -> str:
        """Delete a file."""
        deleted.append(path)
        return "deleted"

    (guarded,) = guard_tools([delete_file], agent.firewall())
    assert guarded.name == "Delete File"
    assert guarded.run(path="/etc/passwd") == "Action blocked by policy: no deleting"
    assert deleted == []


def test_mode_a_sends_the_email_through_the_gateway(crew_mode_a: ExecutingServer) -> None:
    agent = crew_mode_a.agent("crew")
    # SendGrid needs a sender; the seed's email.send parameters name none (see docs/sdk.md).
    sender = {"from": "updates@yourcompany.com"}
    guarded = email_tool(
        agent.firewall(),
        [],
        execute=True,
        parameters=lambda args: {**args, **sender},
        format_result=lambda r: f"Email sent: {r.status_code}",
    )
    output = crew_run([guarded], SEND, final("done"))
    assert output == "done"
    received = crew_mode_a.sendgrid.received("POST", "/v3/mail/send")
    assert len(received) == 1
    assert received[0].header("authorization") == "Bearer SG.vaulted_sendgrid"
    assert received[0].json()["personalizations"][0]["to"][0]["email"] == "bob@example.com"


def test_the_firewall_decides_on_exactly_what_the_tool_runs_with(agent: LiveAgent) -> None:
    """0.1.0 decided on the keyword arguments alone: ``run("acme/prod", reason="x")``
    was decided as ``{"reason": "x"}`` and deleted ``acme/prod`` past a policy that denies
    it; ``run("acme/prod")`` was decided as ``{"input": ...}``. Positional arguments are
    bound to the tool's fields (defaults filled in, as for a keyword call); ones that bind
    to nothing are refused."""
    agent.policy(
        "  - name: no-prod\n"
        "    conditions: {field: action_spec.parameters.repo, operator: equals, value: acme/prod}\n"
        "    decision: deny\n"
        "    reason: never delete prod\n"
        "  - name: no-force\n"
        "    conditions: {field: action_spec.parameters.force, operator: equals, value: true}\n"
        "    decision: deny\n"
        "    reason: no forcing\n"
    )
    deleted: list[str] = []

    @firewall_tool(agent.firewall(), "Delete Repo", action_type="github.repo.delete",
                   provider="github")  # type: ignore[arg-type]  # fmt: skip
    def delete_repo(repo: str, reason: str, force: bool = True) -> str:
        """Delete a repository."""
        deleted.append(repo)
        return "deleted"

    blocked = "Action blocked by policy: never delete prod"
    assert delete_repo.run("acme/prod", reason="cleanup") == blocked  # type: ignore[attr-defined]
    assert delete_repo.run("acme/prod", "cleanup") == blocked  # type: ignore[attr-defined]
    forced = delete_repo.run("acme/dev", "cleanup")  # type: ignore[attr-defined]
    assert forced == "Action blocked by policy: no forcing"  # (the default, decided on)
    with pytest.raises(AgentFirewallError, match="keyword arguments"):
        delete_repo.run("acme/prod", "x", False, "extra")  # type: ignore[attr-defined]
    with pytest.raises(AgentFirewallError, match="keyword arguments"):
        delete_repo.run("acme/prod", repo="acme/dev", reason="x")  # type: ignore[attr-defined]
    done = delete_repo.run("acme/dev", "cleanup", False)  # type: ignore[attr-defined]
    assert (done, deleted) == ("deleted", ["acme/dev"])


def pay_tools(ran: list[int], **limits: Any) -> list[BaseTool]:
    """The same tool as a function (CrewAI's Tool) and as a class of its own."""

    def pay(amount: int, to: str) -> str:
        ran.append(amount)
        return "paid"

    class PayTool(BaseTool):  # type: ignore[misc]
        args_schema: type[BaseModel] = Dollars

        def _run(self, amount: int, to: str) -> str:
            return pay(amount, to)

    return [
        Tool(name="pay", description="Pay.", func=pay, args_schema=Dollars, **limits),
        PayTool(name="pay", description="Pay.", **limits),
    ]


@pytest.mark.anyio
async def test_the_tool_runs_with_the_arguments_validated_once() -> None:
    """0.1.0 decided on the arguments validated once (or twice) and ran the tool on them
    validated again: $40 was decided as 4,000 cents and paid as 400,000."""
    fw = FirewallTransport(policies=[CAP])
    ran: list[int] = []
    async with fw.async_client() as client:
        for guarded in guard_tools(pay_tools(ran), client):
            assert await guarded.arun(amount=40, to="acct_1") == "paid"
    with fw.client() as client:
        for guarded in guard_tools(pay_tools(ran), client):
            assert guarded.run(amount=40, to="acct_1") == "paid"
            assert guarded.run(40, "acct_1") == "paid"
            as_agent = guarded.to_structured_tool()  # what a crew's agent calls
            assert as_agent.invoke({"amount": 40, "to": "acct_1"}) == "paid"
            assert guarded.run(amount=60, to="acct_1") == "Action blocked by policy: too big"
    assert ran == [4000] * 8
    assert [a.spec.parameters["amount"] for a in fw.actions] == [4000] * 2 + (
        [4000] * 3 + [6000]
    ) * 2


@pytest.mark.anyio
async def test_a_sync_tool_run_with_arun_acts_once() -> None:
    """CrewAI's Tool._arun calls a sync function and then raises NotImplementedError; 0.1.0
    caught it and ran the tool again: two payments on one decision."""
    fw = FirewallTransport()
    ran: list[str] = []

    @tool("Pay")
    def pay(to: str) -> str:
        """Pay."""
        ran.append(to)
        return "paid"

    @tool("Pay Later")
    async def pay_later(to: str) -> str:
        """Pay."""
        ran.append(to)
        return "paid later"

    async with fw.async_client() as client:
        guarded, guarded_later = guard_tools([pay, pay_later], client)
        assert await guarded.arun(to="a") == "paid"
        assert await guarded_later.arun(to="b") == "paid later"
    with fw.client() as client:
        [guarded_later] = guard_tools([pay_later], client)
        assert await anyio.to_thread.run_sync(lambda: guarded_later.run(to="c")) == "paid later"
    assert ran == ["a", "b", "c"]
    assert len(fw.actions) == 3


def test_the_usage_limit_is_checked_before_the_firewall_is_asked() -> None:
    """The wrapped tool's own `run`, which counted its uses, is no longer called."""
    fw = FirewallTransport()
    ran: list[int] = []
    with fw.client() as client:
        for guarded in guard_tools(pay_tools(ran, max_usage_count=1), client):
            assert guarded.run(amount=1, to="a") == "paid"
            assert guarded.run(amount=2, to="a") != "paid"
    assert (ran, len(fw.actions)) == ([100, 100], 2)


class Receipt(BaseModel):
    text: str


def test_a_guarded_tool_keeps_every_field_and_is_never_answered_from_the_cache() -> None:
    """guard_crew_tool kept five of the tool's fields: its failure policy, result schema
    and environment variables were lost, and its `cache_function` too. A tool its author
    never cached was cached once guarded, and a crew with `cache=True` answered the next
    identical call from its cache: the firewall was not asked (no audit record, and an
    allowed answer replayed after a deny). A guarded tool's answers are never cached."""
    fw = FirewallTransport()
    sent: list[str] = []

    @tool("Send Payment")
    def send_payment(to: str, amount: int) -> str:
        """Send a payment."""
        sent.append(to)
        return f"sent {amount} to {to}"

    @tool("Check")
    def check(what: str) -> str:
        """Check something."""
        return "ok"

    send_payment.tool_failure_policy = ToolFailurePolicy.RAISE
    send_payment.result_schema = Receipt
    send_payment.env_vars = [EnvVar(name="BANK_KEY", description="The bank's key.")]
    pay = uses_tool("Send Payment", to="bob", amount=10)
    with fw.client() as client:
        [guarded] = guard_tools([send_payment], client)
        for name in set(BaseTool.model_fields) - {"cache_function"}:
            assert getattr(guarded, name) == getattr(send_payment, name), name
        assert guarded.cache_function({"to": "bob", "amount": 10}, "sent") is False
        turns = (pay, uses_tool("Check", what="balance"), pay, final("paid"))
        assert crew_run([guarded, check], *turns, cache=True) == "paid"
    assert (sent, len(fw.actions)) == (["bob", "bob"], 2)
