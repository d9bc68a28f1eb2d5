"""The seed's LangChain snippet (tool + AgentExecutor) and the decorator example."""

from __future__ import annotations

import pytest

from tests.examples.runner import load_example
from tests.sdk.liveagent import ExecutingServer, LiveAgent
from tests.sdk.scripted import calls_tool, scripted


@pytest.fixture
def agent_env(agent: LiveAgent, monkeypatch: pytest.MonkeyPatch) -> LiveAgent:
    for name, value in agent.env().items():
        monkeypatch.setenv(name, value)
    return agent


def create_issue_model() -> object:
    return scripted(
        calls_tool(
            "create_github_issue", repo="acme/api", title="Login bug", body="Users cannot log in"
        ),
        "I opened the issue.",
    )


def test_seed_tool_creates_the_issue_through_the_gateway(
    agent_env: LiveAgent, mode_a: ExecutingServer
) -> None:
    example = load_example("langchain_agent.py")
    try:
        result = example["run"](create_issue_model())
    finally:
        example["TameFlare"].close()
    assert result["output"] == "I opened the issue."
    created = mode_a.fake("github").received("POST", "/repos/acme/api/issues")
    assert len(created) == 1
    assert created[0].json() == {"title": "Login bug", "body": "Users cannot log in"}
    assert created[0].header("authorization") == "token ghp_vaulted_github"


def test_seed_tool_answers_a_deny_with_the_reason(
    agent_env: LiveAgent, mode_a: ExecutingServer
) -> None:
    agent_env.deny("github.issue.create", "issues are opened by humans")
    example = load_example("langchain_agent.py")
    try:
        answer = example["create_github_issue"].invoke(
            {"repo": "acme/api", "title": "Login bug", "body": "x"}
        )
    finally:
        example["TameFlare"].close()
    assert answer == "Action blocked by policy: issues are opened by humans"
    assert mode_a.fake("github").received() == []


def test_seed_tool_reports_a_held_action(agent_env: LiveAgent) -> None:
    agent_env.require_approval("github.issue.create")
    example = load_example("langchain_agent.py")
    try:
        answer = example["create_github_issue"].invoke(
            {"repo": "acme/api", "title": "Login bug", "body": "x"}
        )
    finally:
        example["TameFlare"].close()
    assert answer == "Action requires human approval. Waiting..."


def test_decorator_example_merges_and_guards_the_toolkit(agent_env: LiveAgent) -> None:
    agent_env.deny("langchain.tool.read_file", "no reading today")
    example = load_example("langchain_firewall_tool.py")
    llm = scripted(
        calls_tool("merge_pull_request", repo="acme/api", pull_number=42),
        calls_tool("read_file", path="README.md"),
        "Merged; could not read.",
    )
    try:
        result = example["run"](llm)
    finally:
        example["firewall"].close()
    assert result["output"] == "Merged; could not read."
    assert example["merged"] == [42]
