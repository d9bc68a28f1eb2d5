"""LangChain tools guarded by the firewall, driven by an AgentExecutor, on the live server."""

from __future__ import annotations

import threading
from typing import Any

import anyio
import anyio.to_thread
import pytest
from langchain.agents import AgentExecutor, create_openai_tools_agent
from langchain_core.language_models import BaseChatModel
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
from langchain_core.tools import BaseTool, Tool, tool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import BaseModel

from agentfirewall import ActionDenied, AgentFirewall, AgentFirewallError
from agentfirewall.integrations.langchain import firewall_tool, guard_tools
from tests.sdk.liveagent import ExecutingServer, LiveAgent
from tests.sdk.scripted import calls_tool, scripted

PROMPT = ChatPromptTemplate.from_messages(
    [
        ("system", "You maintain acme/api."),
        ("human", "{input}"),
        MessagesPlaceholder("agent_scratchpad"),
    ]
)


def executor(llm: BaseChatModel, tools: list[BaseTool]) -> AgentExecutor:
    agent = create_openai_tools_agent(llm, tools, PROMPT)
    return AgentExecutor(agent=agent, tools=tools, return_intermediate_steps=True)


def merge_tool(firewall: Any, ran: list[int], **options: Any) -> BaseTool:
    @firewall_tool(
        firewall,
        action_type="github.pr.merge",
        provider="github",
        account=lambda args: args["repo"].split("/")[0],
        target=lambda args: args["repo"],
        environment="production",
        **options,
    )
    def merge_pull_request(repo: str, pull_number: int) -> str:
        """Merge a pull request of a GitHub repository."""
        ran.append(pull_number)
        return f"merged {repo}#{pull_number}"

    return merge_pull_request


def test_the_tool_keeps_name_description_and_schema(agent: LiveAgent) -> None:
    guarded = merge_tool(agent.firewall(), [])
    assert guarded.name == "merge_pull_request"
    assert guarded.description == "Merge a pull request of a GitHub repository."
    assert set(guarded.args) == {"repo", "pull_number"}
    assert guarded.args["pull_number"]["type"] == "integer"


def test_allowed_call_runs_the_tool_and_is_recorded(agent: LiveAgent) -> None:
    ran: list[int] = []
    tools = [merge_tool(agent.firewall(), ran)]
    llm = scripted(calls_tool("merge_pull_request", repo="acme/api", pull_number=42), "Merged.")
    result = executor(llm, tools).invoke({"input": "Merge PR 42"})
    assert result["output"] == "Merged."
    assert result["intermediate_steps"][0][1] == "merged acme/api#42"
    assert ran == [42]


def test_denied_call_answers_the_model_with_the_reason(agent: LiveAgent) -> None:
    agent.deny("github.pr.merge", "merges are frozen")
    ran: list[int] = []
    tools = [merge_tool(agent.firewall(), ran)]
    llm = scripted(
        calls_tool("merge_pull_request", repo="acme/api", pull_number=42), "I could not merge it."
    )
    result = executor(llm, tools).invoke({"input": "Merge PR 42"})
    assert result["intermediate_steps"][0][1] == "Action blocked by policy: merges are frozen"
    assert ran == []


def test_deny_can_raise_instead(agent: LiveAgent) -> None:
    agent.deny("github.pr.merge", "merges are frozen")
    ran: list[int] = []
    guarded = merge_tool(agent.firewall(), ran, on_deny="raise")
    with pytest.raises(ActionDenied, match="merges are frozen"):
        guarded.invoke({"repo": "acme/api", "pull_number": 1})
    assert ran == []


def test_held_call_waits_for_an_approval_given_through_the_api(agent: LiveAgent) -> None:
    agent.require_approval("github.pr.merge", "merges need a human")
    ran: list[int] = []
    tools = [merge_tool(agent.firewall(), ran, approval_timeout=30)]
    llm = scripted(calls_tool("merge_pull_request", repo="acme/api", pull_number=7), "Done.")
    approver = threading.Thread(target=agent.decide_next, args=("approve",), daemon=True)
    approver.start()
    result = executor(llm, tools).invoke({"input": "Merge PR 7"})
    approver.join(10)
    assert result["intermediate_steps"][0][1] == "merged acme/api#7"
    assert ran == [7]


def test_held_call_refused_answers_not_approved(agent: LiveAgent) -> None:
    agent.require_approval("github.pr.merge", "merges need a human")
    ran: list[int] = []
    guarded = merge_tool(agent.firewall(), ran, approval_timeout=30)
    approver = threading.Thread(target=agent.decide_next, args=("deny",), daemon=True)
    approver.start()
    answer = guarded.invoke({"repo": "acme/api", "pull_number": 8})
    approver.join(10)
    assert answer.startswith("Action not approved (denied)")
    assert ran == []


@pytest.mark.anyio
async def test_async_tool_with_the_async_client_and_an_approval_from_another_task(
    agent: LiveAgent,
) -> None:
    agent.require_approval("github.pr.merge")
    ran: list[int] = []

    async with agent.async_firewall() as firewall:

        @firewall_tool(firewall, action_type="github.pr.merge", approval_timeout=30)
        async def merge(repo: str, pull_number: int) -> str:
            """Merge a pull request."""
            ran.append(pull_number)
            return "merged"

        llm = scripted(calls_tool("merge", repo="acme/api", pull_number=9), "Done.")
        async with anyio.create_task_group() as tg:
            tg.start_soon(anyio.to_thread.run_sync, agent.decide_next, "approve")
            result = await executor(llm, [merge]).ainvoke({"input": "Merge PR 9"})
        assert result["intermediate_steps"][0][1] == "merged"
        assert ran == [9]
        with pytest.raises(AgentFirewallError, match="AsyncAgentFirewall"):
            merge.invoke({"repo": "acme/api", "pull_number": 10})


@pytest.mark.anyio
async def test_sync_tool_under_ainvoke_runs_the_sync_client_in_a_thread(agent: LiveAgent) -> None:
    agent.deny("github.pr.merge", "frozen")
    ran: list[int] = []
    guarded = merge_tool(agent.firewall(), ran)
    assert await guarded.ainvoke({"repo": "acme/api", "pull_number": 1}) == (
        "Action blocked by policy: frozen"
    )
    assert ran == []


def test_guard_tools_wraps_existing_tools_as_langchain_tool_actions(agent: LiveAgent) -> None:
    agent.deny("langchain.tool.delete_repository", "deleting repositories is not allowed")
    deleted: list[str] = []

    @tool
    def delete_repository(name: str) -> str:
        """Delete a repository."""
        deleted.append(name)
        return "deleted"

    @tool
    def read_file(path: str) -> str:
        """Read a file."""
        return f"contents of {path}"

    firewall = agent.firewall()
    tools = guard_tools([delete_repository, read_file], firewall)
    assert [t.name for t in tools] == ["delete_repository", "read_file"]
    assert tools[0].args == delete_repository.args
    llm = scripted(
        calls_tool("read_file", path="README.md"),
        calls_tool("delete_repository", name="acme/api"),
        "Refused.",
    )
    result = executor(llm, tools).invoke({"input": "read, then delete"})
    observations = [step[1] for step in result["intermediate_steps"]]
    assert observations == [
        "contents of README.md",
        "Action blocked by policy: deleting repositories is not allowed",
    ]
    assert deleted == []


def test_resource_is_computed_from_the_tool_arguments(agent: LiveAgent) -> None:
    agent.policy(
        "  - name: only-acme\n"
        "    conditions: {all: [{field: action_spec.resource.account, operator: not_equals,"
        " value: acme}]}\n"
        "    decision: deny\n"
        "    reason: only acme repositories\n"
    )
    ran: list[int] = []
    guarded = merge_tool(agent.firewall(), ran)
    assert guarded.invoke({"repo": "acme/api", "pull_number": 1}) == "merged acme/api#1"
    assert guarded.invoke({"repo": "evil/api", "pull_number": 2}) == (
        "Action blocked by policy: only acme repositories"
    )
    assert ran == [1]


def test_mode_a_lets_the_server_execute(mode_a: ExecutingServer) -> None:
    agent = mode_a.agent()

    @firewall_tool(
        agent.firewall(),
        action_type="github.issue.create",
        provider="github",
        account=lambda args: args["repo"].split("/")[0],
        target=lambda args: args["repo"],
        environment="production",
        parameters=lambda args: {"title": args["title"], "body": args["body"]},
        execute=True,
        format_result=lambda r: f"Issue created: {r.body['number']}",
    )
    def create_github_issue(repo: str, title: str, body: str) -> str:
        """Create a GitHub issue."""
        raise AssertionError("Mode A: the server creates the issue")

    answer = create_github_issue.invoke({"repo": "acme/api", "title": "Login bug", "body": "b"})
    assert answer.startswith("Issue created: ")
    received = mode_a.fake("github").received("POST", "/repos/acme/api/issues")
    assert len(received) == 1
    assert received[0].json() == {"title": "Login bug", "body": "b"}
    assert received[0].header("authorization") == "token ghp_vaulted_github"


def test_a_firewall_from_the_environment(agent: LiveAgent, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in agent.env().items():
        monkeypatch.setenv(name, value)
    ran: list[int] = []
    with AgentFirewall() as firewall:
        assert merge_tool(firewall, ran).invoke({"repo": "acme/api", "pull_number": 3})
    assert ran == [3]


def test_guarded_tools_look_the_same_to_the_model(agent: LiveAgent) -> None:
    agent.policy(
        "  - name: no-secrets\n"
        "    conditions: {all: [{field: action_spec.parameters.input, operator: contains,"
        " value: secret}]}\n"
        "    decision: deny\n"
        "    reason: no searching for secrets\n"
    )

    @tool
    def lookup(repo: str, path: str) -> str:
        """Look up a file."""
        return f"{repo}:{path}"

    search = Tool(name="Search", func=lambda q: f"results for {q}", description="Search.")
    guarded = guard_tools([lookup, search], agent.firewall())
    for original, wrapped in zip([lookup, search], guarded, strict=True):
        assert convert_to_openai_tool(wrapped) == convert_to_openai_tool(original)
    simple = guarded[1]
    assert simple.invoke("cats") == "results for cats"
    assert simple.invoke({"__arg1": "dogs"}) == "results for dogs"
    assert simple.invoke("the secret key") == "Action blocked by policy: no searching for secrets"


#: Deny by what the tool would run with: the repository, the amount, a nested amount.
_PARAMETER_RULES = """\
  - name: no-prod
    conditions: {field: action_spec.parameters.repo, operator: equals, value: acme/prod}
    decision: deny
    reason: never delete prod
  - name: no-huge
    conditions: {field: action_spec.parameters.amount, operator: gt, value: 1000000}
    decision: deny
    reason: too big
  - name: no-huge-nested
    conditions: {field: action_spec.parameters.transfer.amount, operator: gt, value: 1000000}
    decision: deny
    reason: too big
"""


class _Transfer(BaseModel):
    amount: int
    to: str


def _parameter_tools(firewall: Any, ran: list[object]) -> tuple[BaseTool, BaseTool, BaseTool]:
    @firewall_tool(firewall, action_type="github.repo.delete", provider="github")
    def delete_repo(repo: str) -> str:
        """Delete a repository."""
        ran.append(repo)
        return "deleted"

    @firewall_tool(firewall, action_type="payment.transfer.initiate", provider="stripe")
    def pay(to: str, amount: int = 5_000_000) -> str:
        """Send money."""
        ran.append(amount)
        return "sent"

    @firewall_tool(firewall, action_type="payment.transfer.initiate", provider="stripe")
    def pay_by_model(transfer: _Transfer) -> str:
        """Send money."""
        ran.append(transfer.amount)
        return "sent"

    return delete_repo, pay, pay_by_model


@pytest.mark.anyio
@pytest.mark.parametrize("client", ["sync", "async"])
async def test_the_firewall_decides_on_exactly_what_the_tool_runs_with(
    agent: LiveAgent, client: str
) -> None:
    """0.1.0 decided on what the caller wrote, and the tool ran with what LangChain made of
    it: a plain string (``invoke("acme/prod")``) was decided as ``{"input": ...}`` and ran
    as ``repo``; an argument left to its default (``amount = 5_000_000``) was not decided
    on; a pydantic-model argument was decided as its string form, so a rule on
    ``parameters.transfer.amount`` never matched. Each ran past a policy that denies it."""
    agent.policy(_PARAMETER_RULES)
    firewall = agent.firewall() if client == "sync" else agent.async_firewall()
    ran: list[object] = []
    delete_repo, pay, pay_by_model = _parameter_tools(firewall, ran)
    calls = [
        (delete_repo, "acme/prod", "never delete prod"),
        (pay, {"to": "acct_1"}, "too big"),
        (pay_by_model, {"transfer": {"amount": 5_000_000, "to": "acct_1"}}, "too big"),
    ]
    for guarded, given, reason in calls:
        if client == "sync":
            answer = await anyio.to_thread.run_sync(guarded.invoke, given)
        else:
            answer = await guarded.ainvoke(given)
        assert answer == f"Action blocked by policy: {reason}", given
    assert ran == []  # (each reason names the parameter its rule read)
    small = {"transfer": {"amount": 5, "to": "acct_1"}}
    answer = await (anyio.to_thread.run_sync(pay_by_model.invoke, small) if client == "sync"
                    else pay_by_model.ainvoke(small))  # fmt: skip
    assert (answer, ran) == ("sent", [5])
    if client == "async":
        await firewall.aclose()  # type: ignore[union-attr]


def test_guard_tools_decides_on_what_an_existing_tool_runs_with(agent: LiveAgent) -> None:
    agent.policy(_PARAMETER_RULES)
    ran: list[object] = []

    @tool
    def pay(to: str, amount: int = 5_000_000) -> str:
        """Send money."""
        ran.append(amount)
        return "sent"

    [guarded] = guard_tools([pay], agent.firewall())
    assert guarded.invoke({"to": "acct_1"}) == "Action blocked by policy: too big"
    assert guarded.invoke({"to": "acct_1", "amount": 5}) == "sent"
    assert ran == [5]
