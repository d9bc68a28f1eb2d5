"""LangChain (the seed's "Wrapping a LangChain tool" and "Using with an agent").

The tool asks TameFlare before it acts and lets the gateway create the issue (Mode A).
Run it with a real model (``pip install langchain-openai``, ``OPENAI_API_KEY``)::

    AAF_API_KEY=aaf_test_... python examples/langchain_agent.py

Tests call :func:`run` with a scripted chat model instead of ChatOpenAI.
"""

import os
from typing import Any

from langchain.agents import AgentExecutor, create_openai_tools_agent
from langchain.tools import tool
from langchain_core.language_models import BaseChatModel
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder

from agentfirewall import AgentFirewall

TameFlare = AgentFirewall(api_key=os.environ["AAF_API_KEY"])


@tool
def create_github_issue(repo: str, title: str, body: str) -> str:
    """Create a GitHub issue. Checked by TameFlare policy engine."""
    result = TameFlare.request_action(
        action_type="github.issue.create",
        provider="github",
        account=repo.split("/")[0],
        target=repo,
        environment="production",
        parameters={"title": title, "body": body},
    )
    if result.status == "allowed":
        exec_result = TameFlare.execute(result.action_request_id, result.decision_token)
        return f"Issue created: {exec_result}"
    elif result.status == "denied":
        return f"Action blocked by policy: {result.decision.reason}"
    elif result.status == "pending_approval":
        return "Action requires human approval. Waiting..."


prompt = ChatPromptTemplate.from_messages(
    [
        ("system", "You are a helpful engineering assistant."),
        ("human", "{input}"),
        MessagesPlaceholder("agent_scratchpad"),
    ]
)


def run(llm: BaseChatModel, request: str = "Create an issue about the login bug") -> Any:
    tools = [create_github_issue]  # TameFlare-wrapped tools
    agent = create_openai_tools_agent(llm, tools, prompt)
    executor = AgentExecutor(agent=agent, tools=tools)
    return executor.invoke({"input": request})


if __name__ == "__main__":
    from langchain_openai import ChatOpenAI  # type: ignore[import-not-found]

    llm = ChatOpenAI(model="gpt-4o")
    print(run(llm)["output"])
