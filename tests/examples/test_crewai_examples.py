"""The seed's CrewAI snippet and the decorator example, run by a crew (crewai extra)."""

from __future__ import annotations

import threading

import pytest

pytest.importorskip("crewai")

from tests.examples.runner import load_example
from tests.sdk.liveagent import ExecutingServer, LiveAgent
from tests.sdk.scripted_crewai import CREWAI_WARNINGS, QUIET_ENV, final, scripted_llm, uses_tool

pytestmark = [pytest.mark.crewai, *CREWAI_WARNINGS]

SEND = uses_tool("Send Email", to="bob@example.com", subject="Update", body="All good")


@pytest.fixture
def crew_agent(crew_mode_a: ExecutingServer, monkeypatch: pytest.MonkeyPatch) -> LiveAgent:
    crew_mode_a.clear()
    made = crew_mode_a.agent("crew-example")
    for name, value in {**QUIET_ENV, **made.env()}.items():
        monkeypatch.setenv(name, value)
    return made


def test_seed_tool_denied_answers_with_the_reason(
    crew_agent: LiveAgent, crew_mode_a: ExecutingServer
) -> None:
    crew_agent.deny("email.send", "external email needs review")
    example = load_example("crewai_agent.py")
    try:
        answer = example["send_email"].run(to="bob@example.com", subject="s", body="b")
        output = example["run"](scripted_llm(SEND, final("blocked")))
    finally:
        example["TameFlare"].close()
    assert answer == "Blocked by policy: external email needs review"
    assert output == "blocked"
    assert crew_mode_a.sendgrid.received() == []


def test_seed_tool_waits_for_the_approval_and_reports_a_refusal(
    crew_agent: LiveAgent, crew_mode_a: ExecutingServer
) -> None:
    crew_agent.require_approval("email.send")
    example = load_example("crewai_agent.py")
    approver = threading.Thread(target=crew_agent.decide_next, args=("deny",), daemon=True)
    approver.start()
    try:
        answer = example["send_email"].run(to="bob@example.com", subject="s", body="b")
    finally:
        example["TameFlare"].close()
    approver.join(10)
    assert answer == "Email blocked — approval denied or timed out"
    assert crew_mode_a.sendgrid.received() == []


def test_decorator_example_sends_through_the_gateway(
    crew_agent: LiveAgent, crew_mode_a: ExecutingServer
) -> None:
    example = load_example("crewai_firewall_tool.py")
    try:
        output = example["run"](scripted_llm(SEND, final("sent")))
    finally:
        example["firewall"].close()
    assert output == "sent"
    sent = crew_mode_a.sendgrid.received("POST", "/v3/mail/send")
    assert len(sent) == 1
    assert sent[0].json()["from"] == {"email": "updates@yourcompany.com"}
    assert sent[0].header("authorization") == "Bearer SG.vaulted_sendgrid"
