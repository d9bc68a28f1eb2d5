"""Budgets and grants on the SDK path: `request_action` keeps the gateway's rules.

A server that executes actions (Mode A, a fake Stripe); each test has its own agent and
budgets scoped to it. Reserved when allowed (or held), refused or held past the limit with
the budget named, released when denied or refused upstream, settled when executed; a grant
turns a hold into allow within its constraints only, and never beats a deny rule or a
``deny`` budget.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from agentfirewall import AgentFirewall
from agentfirewall.client import ActionResult
from tests.livesrv import LiveServer
from tests.sdk.liveagent import ExecutingServer, LiveAgent

TRANSFER = "stripe.transfer.create"


@pytest.fixture
def bot(mode_a: ExecutingServer) -> Iterator[LiveAgent]:
    made = mode_a.agent("spend")
    yield made
    made.close()
    mode_a.fake("stripe").settings.pop("responses", None)


def transfer(tf: AgentFirewall, amount: int) -> ActionResult:
    return tf.request_action(
        TRANSFER,
        provider="stripe",
        target="transfers",
        parameters={"amount": amount, "currency": "usd", "destination": "acct_1"},
    )


def budget(server: LiveServer, agent: str, limit: int, outcome: str = "deny") -> str:
    name = f"sdk-{uuid.uuid4().hex[:8]}"
    body = {"agents": [agent], "connector": "stripe", "action": "stripe.transfer.*",
            "measure": "sum", "currency": "usd", "window": "day", "limit": limit,
            "outcome": outcome}  # fmt: skip
    answer = server.admin("PUT", f"/v1/budgets/{name}", json=body)
    assert answer.status_code == 201, answer.text
    return name


def state(server: LiveServer, name: str) -> dict[str, Any]:
    answer = server.admin("GET", f"/v1/budgets/{name}")
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()["state"]
    return found


def approve(server: LiveServer, approval_id: str, grant: dict[str, Any] | None = None) -> Any:
    body = {"grant": grant} if grant is not None else {}
    answer = server.admin("POST", f"/v1/approvals/{approval_id}/approve", json=body)
    assert answer.status_code == 200, answer.text
    return answer.json()


def grant_uses(server: LiveServer, grant_id: str) -> int:
    answer = server.admin("GET", f"/v1/grants/{grant_id}")
    assert answer.status_code == 200, answer.text
    uses: int = answer.json()["uses"]
    return uses


def test_reserved_refused_settled_and_released(mode_a: ExecutingServer, bot: LiveAgent) -> None:
    server = mode_a.server
    name = budget(server, bot.name, 10_000)
    with bot.firewall() as tf:
        first = transfer(tf, 6000)
        assert first.status == "allowed"
        assert state(server, name)["in_flight"] == 6000  # reserved, not yet executed
        over = transfer(tf, 6000)
        assert over.status == "denied"
        assert f"budget `{name}` exceeded" in over.decision.reason
        assert over.decision_token is None
        assert state(server, name)["used"] == 6000

        done = tf.execute(first.action_request_id, first.decision_token)
        assert done.status_code == 200
        after = state(server, name)
        assert (after["used"], after["in_flight"]) == (6000, 0)  # settled: it was spent

        refused = transfer(tf, 4000)  # fits exactly
        assert refused.status == "allowed"
        assert state(server, name)["used"] == 10_000
        mode_a.fake("stripe").settings["responses"] = {
            ("POST", "/v1/transfers"): (402, {"error": {"type": "card_error"}})}  # fmt: skip
        answer = tf.execute(refused.action_request_id, refused.decision_token)
        assert answer.status_code == 402
        after = state(server, name)
        assert (after["used"], after["in_flight"]) == (6000, 0)  # released: not spent


def test_held_past_a_require_approval_budget(mode_a: ExecutingServer, bot: LiveAgent) -> None:
    server = mode_a.server
    name = budget(server, bot.name, 5000, outcome="require_approval")
    with bot.firewall() as tf:
        assert transfer(tf, 4000).status == "allowed"
        held = transfer(tf, 3000)
        assert held.status == "pending_approval"
        assert f"budget `{name}` exceeded" in held.decision.reason
        assert held.approval is not None
        assert state(server, name)["used"] == 7000  # reserved while a human decides
        denied = server.admin("POST", f"/v1/approvals/{held.approval.id}/deny", json={})
        assert denied.status_code == 200, denied.text
        assert state(server, name)["used"] == 4000  # released
        again = transfer(tf, 3000)
        assert again.status == "pending_approval"
        assert again.approval is not None
        approve(server, again.approval.id)
        assert tf.get_action(again.action_request_id).status == "allowed"
        assert state(server, name)["used"] == 7000  # approved past the limit


def test_a_grant_allows_within_its_constraints_only(
    mode_a: ExecutingServer, bot: LiveAgent
) -> None:
    server = mode_a.server
    bot.require_approval(TRANSFER, "transfers need a human")
    with bot.firewall() as tf:
        held = transfer(tf, 5000)
        assert held.status == "pending_approval"
        assert held.approval is not None
        bounds = {"for_seconds": 3600, "max_uses": 5, "where": ["amount<=10000"]}
        grant = approve(server, held.approval.id, bounds)["grant"]
        granted = transfer(tf, 7000)
        assert granted.status == "allowed"
        assert granted.decision.reason == f"approved by grant {grant['id']}"
        assert granted.decision_token
        assert tf.execute(granted.action_request_id, granted.decision_token).status_code == 200
        outside = transfer(tf, 20_000)  # past the grant's constraint: held as before
        assert outside.status == "pending_approval"
        assert outside.decision.reason == "transfers need a human"
    assert grant_uses(server, grant["id"]) == 1
    events = server.admin("GET", f"/v1/audit?event_type=grant.used&agent={bot.name}").json()
    assert [e["subject"] for e in events["events"]] == [grant["id"]]


def test_a_deny_rule_beats_a_grant(mode_a: ExecutingServer, bot: LiveAgent) -> None:
    server = mode_a.server
    bot.require_approval(TRANSFER)
    with bot.firewall() as tf:
        held = transfer(tf, 100)
        assert held.approval is not None
        grant = approve(server, held.approval.id, {"for_seconds": 3600})["grant"]
        assert transfer(tf, 100).status == "allowed"
        bot.deny(TRANSFER, "transfers are frozen")
        denied = transfer(tf, 100)
        assert denied.status == "denied"
        assert denied.decision.reason == "transfers are frozen"
    assert grant_uses(server, grant["id"]) == 1


def test_a_grant_never_passes_a_deny_budget(mode_a: ExecutingServer, bot: LiveAgent) -> None:
    server = mode_a.server
    name = budget(server, bot.name, 5000)
    bot.require_approval(TRANSFER)
    with bot.firewall() as tf:
        held = transfer(tf, 5000)  # fits: reserved while it waits
        assert held.status == "pending_approval"
        assert held.approval is not None
        grant = approve(server, held.approval.id, {"max_uses": 5})["grant"]
        assert state(server, name)["used"] == 5000
        over = transfer(tf, 1000)
        assert over.status == "denied"
        assert f"budget `{name}` exceeded" in over.decision.reason
    assert grant_uses(server, grant["id"]) == 0  # the refused use was rolled back
    assert state(server, name)["used"] == 5000


def test_a_held_reservation_returns_when_the_approval_expires(
    mode_a: ExecutingServer, bot: LiveAgent
) -> None:
    server = mode_a.server
    name = budget(server, bot.name, 10_000)
    bot.policy(
        "  - name: hold briefly\n"
        f"    conditions: {{all: [{{field: action_spec.type, operator: equals, "
        f"value: {TRANSFER}}}]}}\n"
        "    decision: requires_approval\n"
        "    approval: {timeout_seconds: 1}\n"
    )
    with bot.firewall() as tf:
        held = transfer(tf, 4000)
        assert held.status == "pending_approval"
        assert state(server, name)["used"] == 4000
        deadline = time.monotonic() + 30  # the expiry loop runs about once a second
        while state(server, name)["used"] != 0:
            assert time.monotonic() < deadline, "the expired hold kept its reservation"
            time.sleep(0.1)
        assert tf.get_action(held.action_request_id).status == "expired"
