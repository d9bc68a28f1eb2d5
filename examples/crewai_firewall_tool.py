"""CrewAI with ``@firewall_tool``: the seed's email tool without the boilerplate.

The decorator asks TameFlare before each call; with ``execute=True`` the gateway sends
the email with the credential it holds (Mode A) and the tool answers with the result::

    AAF_API_KEY=aaf_test_... python examples/crewai_firewall_tool.py
"""

from typing import Any

from crewai import Agent, Crew, Task

from agentfirewall import AgentFirewall
from agentfirewall.integrations.crewai import firewall_tool

firewall = AgentFirewall()  # AAF_API_KEY, AAF_BASE_URL


@firewall_tool(
    firewall,
    "Send Email",
    action_type="email.send",
    provider="sendgrid",
    account="main",
    target=lambda args: args["to"],
    environment="production",
    risk_hints=lambda args: {"external_recipient": not args["to"].endswith("@yourcompany.com")},
    parameters=lambda args: {**args, "from": "updates@yourcompany.com"},  # SendGrid's sender
    execute=True,
    approval_timeout=120,
)
def send_email(to: str, subject: str, body: str) -> str:
    """Send an email. Checked by TameFlare policy engine."""
    # Never called: with execute=True the gateway sends the email (Mode A). The function
    # gives the tool its name, description and arguments.


def run(llm: Any = None, request: str = "Send the weekly update to bob@example.com") -> str:
    agent = Agent(
        role="Communications Manager",
        goal="Send project updates to stakeholders",
        backstory="You keep stakeholders informed, by email.",
        tools=[send_email],
        llm=llm,
    )
    task = Task(description=request, expected_output="what was sent", agent=agent)
    return str(Crew(agents=[agent], tasks=[task]).kickoff().raw)


if __name__ == "__main__":
    print(run())
