"""A suspended agent's held requests never pass: suspending denies its pending approvals,
and an approval of an agent that is not active cannot be approved (SQLite and PostgreSQL).

Suspending left them pending: an approver who then approved one (the dashboard still listed
it) let the suspended agent's held request through to the upstream.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from agentfirewall.actions import parse_action_spec
from agentfirewall_server.approvals import create_approval, decide_approval
from agentfirewall_server.web import ApiError
from tests.server.conftest import SPEC, Harness


def _needs_approval(h: Harness, agent: str) -> None:
    rule = {"agent": agent, "connector": "github", "action_pattern": "github.pr.merge",
            "decision": "require_approval"}  # fmt: skip
    assert h.admin("POST", "/v1/permissions", json=rule).status_code == 200


def _gateway_hold(h: Harness, agent: str) -> str:
    spec = parse_action_spec(SPEC)
    body = {"agent": agent, "connector": "github", "action_spec": spec.to_dict(),
            "action_hash": spec.action_hash}  # fmt: skip
    r = h.gateway("POST", "/v1/gateway/approvals", json=body)
    assert r.json()["status"] == "pending", r.text
    return str(r.json()["id"])


def test_suspending_denies_the_agents_pending_approvals(harness: Harness) -> None:
    key = harness.create_agent("Bot")
    harness.create_agent("Other")
    _needs_approval(harness, "Bot")
    action = harness.agent(key, "POST", "/v1/actions", json={"action_spec": SPEC}).json()
    assert action["status"] == "pending_approval"
    held = _gateway_hold(harness, "Bot")
    other = _gateway_hold(harness, "Other")

    assert harness.admin("POST", "/v1/agents/Bot/suspend").status_code == 200
    mine = [action["approval"]["id"], held]
    for apv in mine:
        shown = harness.admin("GET", f"/v1/approvals/{apv}").json()
        assert (shown["status"], shown["note"]) == ("denied", "agent `Bot` suspended")
        approve = harness.admin("POST", f"/v1/approvals/{apv}/approve")
        assert approve.status_code == 409
    assert harness.admin("GET", f"/v1/approvals/{other}").json()["status"] == "pending"
    events = harness.admin("GET", "/v1/audit?event_type=agent.suspended").json()["events"]
    assert sorted(events[0]["data"]["approvals_denied"]) == sorted(mine)

    # the SDK path: active again, the action stays denied and gets no token
    assert harness.admin("POST", "/v1/agents/Bot/activate").status_code == 200
    path = f"/v1/actions/{action['action_request_id']}/wait?timeout=0"
    waited = harness.agent(key, "GET", path).json()
    assert (waited["status"], waited["decision_token"]) == ("denied", None)


def test_an_action_approved_before_the_suspension_is_not_executed_during_it(
    harness: Harness,
) -> None:
    key = harness.create_agent("Bot")
    _needs_approval(harness, "Bot")
    action = harness.agent(key, "POST", "/v1/actions", json={"action_spec": SPEC}).json()
    harness.admin("POST", f"/v1/approvals/{action['approval']['id']}/approve")
    path = f"/v1/actions/{action['action_request_id']}"
    token = harness.agent(key, "GET", path + "/wait?timeout=0").json()["decision_token"]
    assert token
    assert harness.admin("POST", "/v1/agents/Bot/suspend").status_code == 200
    assert harness.agent(key, "GET", path + "/wait?timeout=0").status_code == 401
    run = harness.agent(key, "POST", path + "/execute", json={"decision_token": token})
    assert run.status_code == 401


@pytest.mark.parametrize("status", ["suspend", "revoke"])
def test_an_approval_of_an_agent_not_active_cannot_be_approved(
    harness: Harness, status: str
) -> None:
    """An approval created after the suspension (a gateway on an outdated configuration),
    approved before any sweep could deny it: refused, in the same writer transaction."""
    harness.create_agent("Bot")
    assert harness.admin("POST", f"/v1/agents/Bot/{status}").status_code == 200
    spec = parse_action_spec(SPEC)

    def race(conn: Any) -> tuple[int, dict[str, Any]]:
        stamp = time.time()
        row = create_approval(
            conn, agent="Bot", connector="github", action_request_id=None, source="proxy",
            spec=spec.to_dict(), action_hash=spec.action_hash, risk_score=0.0, reason="held",
            request=None, roles=(), timeout_seconds=60, now=stamp,
        )  # fmt: skip
        try:
            decide_approval(conn, row["id"], approve=True, by="admin-token", role="owner",
                            note=None, now=stamp)  # fmt: skip
        except ApiError as exc:
            return exc.status, exc.extra
        return 200, {}

    answer: tuple[int, dict[str, Any]] = harness.state.db.write_sync(race)
    expected = "suspended" if status == "suspend" else "revoked"
    assert answer == (409, {"agent_status": expected})
