"""LangChain with ``@firewall_tool`` and ``guard_tools``: the check without the boilerplate.

``@firewall_tool`` asks TameFlare before every call of the tool: on allow the function
runs (Mode B: the agent acts with its own credentials), on deny the model reads the
reason, a held call waits for a human. ``guard_tools`` does the same for tools you did
not write (a toolkit's), as ``langchain.tool.<name>`` actions::

    AAF_API_KEY=aaf_test_... python examples/langchain_firewall_tool.py
"""

from typing import Any

from langchain.agents import AgentExecutor, create_openai_tools_agent
from langchain_core.language_models import BaseChatModel
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
from langchain_core.tools import BaseTool, tool

from agentfirewall import AgentFirewall
from agentfirewall.integrations.langchain import firewall_tool, guard_tools

firewall = AgentFirewall()  # AAF_API_KEY, AAF_BASE_URL
merged: list[int] = []


@firewall_tool(
    firewall,
    action_type="github.pr.merge",
    provider="github",
    account=lambda args: args["repo"].split("/")[0],
    target=lambda args: args["repo"],
    environment="production",
    approval_timeout=120,
)
def merge_pull_request(repo: str, pull_number: int) -> str:
    """Merge a pull request."""
    merged.append(pull_number)  # the agent's own GitHub call would go here
    return f"merged {repo}#{pull_number}"


@tool
def read_file(path: str) -> str:
    """Read a file of the repository."""
    return f"contents of {path}"


tools: list[BaseTool] = [merge_pull_request, *guard_tools([read_file], firewall)]
prompt = ChatPromptTemplate.from_messages(
    [
        ("system", "You maintain acme/api."),
        ("human", "{input}"),
        MessagesPlaceholder("agent_scratchpad"),
    ]
)


def run(llm: BaseChatModel, request: str = "Merge PR 42 of acme/api") -> Any:
    agent = create_openai_tools_agent(llm, tools, prompt)
    return AgentExecutor(agent=agent, tools=tools).invoke({"input": request})


if __name__ == "__main__":
    from langchain_openai import ChatOpenAI  # type: ignore[import-not-found]

    print(run(ChatOpenAI(model="gpt-4o"))["output"])
