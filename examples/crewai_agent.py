"""CrewAI (the seed's "CrewAI" section): a tool that asks TameFlare, run by a crew.

``pip install 'tameflare[crewai]'``; run it with a model CrewAI can reach::

    AAF_API_KEY=aaf_test_... python examples/crewai_agent.py

Differences from the seed, both needed by CrewAI itself: ``Agent`` requires a
``backstory``, and the model is passed in (tests use a scripted one).
"""

import os
from typing import Any

from crewai import Agent, Crew, Task
from crewai.tools import tool

from agentfirewall import AgentFirewall

TameFlare = AgentFirewall(api_key=os.environ["AAF_API_KEY"])


@tool("Send Email")
def send_email(to: str, subject: str, body: str) -> str:
    """Send an email. Checked by TameFlare policy engine."""
    result = TameFlare.request_action(
        action_type="email.send",
        provider="sendgrid",
        account="main",
        target=to,
        environment="production",
        parameters={"to": to, "subject": subject, "body": body},
        risk_hints={"external_recipient": not to.endswith("@yourcompany.com")},
    )
    if result.status == "allowed":
        exec_result = TameFlare.execute(result.action_request_id, result.decision_token)
        return f"Email sent: {exec_result}"
    elif result.status == "denied":
        return f"Blocked by policy: {result.decision.reason}"
    elif result.status == "pending_approval":
        approved = TameFlare.wait_for_approval(result.action_request_id, timeout_seconds=120)
        if approved:
            TameFlare.execute(result.action_request_id, approved.decision_token)
            return "Email sent after approval"
        return "Email blocked — approval denied or timed out"


def build_agent(llm: Any = None) -> Agent:
    return Agent(
        role="Communications Manager",
        goal="Send project updates to stakeholders",
        backstory="You keep stakeholders informed, by email.",
        tools=[send_email],
        llm=llm,
    )


def run(llm: Any = None, request: str = "Send the weekly update to bob@example.com") -> str:
    agent = build_agent(llm)
    task = Task(description=request, expected_output="what was sent", agent=agent)
    return str(Crew(agents=[agent], tasks=[task]).kickoff().raw)


if __name__ == "__main__":
    print(run())
