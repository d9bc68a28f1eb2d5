"""A suspended agent's held requests never pass: suspending denies its pending approvals,
and an approval of an agent that is not active cannot be approved (SQLite and PostgreSQL).

Suspending left them pending: an approver who then approved one (the dashboard still listed
it) let the suspended agent's held request through to the upstream. It also left what was
approved before it, unused, usable: once active again, the identical request passed on the
old approval without asking, and an approved SDK action got a token and ran. An approved
SDK action whose send was under way at the suspension, and failed before a byte was sent,
went back to decided: active again, the token from before the suspension sent it.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
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


def _gateway_hold(h: Harness, agent: str, digest: str | None = None) -> dict[str, Any]:
    """A request the gateway holds (`digest`: bound to its bytes, an identical retry may
    reuse its approval), as `POST /gateway/approvals` answers it."""
    spec = parse_action_spec(SPEC)
    body: dict[str, Any] = {"agent": agent, "connector": "github", "action_spec": spec.to_dict(),
                            "action_hash": spec.action_hash}  # fmt: skip
    if digest is not None:
        body["request"] = {"method": "PUT", "host": "api.github.com",
                           "path": "/repos/acme/api/pulls/42/merge", "digest": digest}  # fmt: skip
    r = h.gateway("POST", "/v1/gateway/approvals", json=body)
    assert r.status_code == 200, r.text
    answer: dict[str, Any] = r.json()
    return answer


def _suspended_event(h: Harness) -> dict[str, Any]:
    events = h.admin("GET", "/v1/audit?event_type=agent.suspended").json()["events"]
    data: dict[str, Any] = events[0]["data"]
    return data


def test_suspending_denies_the_agents_pending_approvals(harness: Harness) -> None:
    key = harness.create_agent("Bot")
    harness.create_agent("Other")
    _needs_approval(harness, "Bot")
    action = harness.agent(key, "POST", "/v1/actions", json={"action_spec": SPEC}).json()
    assert action["status"] == "pending_approval"
    held = _gateway_hold(harness, "Bot")["id"]
    other = _gateway_hold(harness, "Other")["id"]

    assert harness.admin("POST", "/v1/agents/Bot/suspend").status_code == 200
    mine = [action["approval"]["id"], held]
    for apv in mine:
        shown = harness.admin("GET", f"/v1/approvals/{apv}").json()
        assert (shown["status"], shown["note"]) == ("denied", "agent `Bot` suspended")
        approve = harness.admin("POST", f"/v1/approvals/{apv}/approve")
        assert approve.status_code == 409
    assert harness.admin("GET", f"/v1/approvals/{other}").json()["status"] == "pending"
    assert sorted(_suspended_event(harness)["approvals_denied"]) == sorted(mine)

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


def test_a_held_request_approved_before_the_suspension_asks_again_after_it(
    harness: Harness,
) -> None:
    """Approved, its held client gone (unused): after suspend and activate, the identical
    request is held again instead of passing on the old approval."""
    harness.create_agent("Bot")
    held = _gateway_hold(harness, "Bot", "d" * 64)
    assert harness.admin("POST", f"/v1/approvals/{held['id']}/approve").status_code == 200
    assert harness.admin("POST", "/v1/agents/Bot/suspend").status_code == 200
    assert harness.admin("POST", "/v1/agents/Bot/activate").status_code == 200

    retry = _gateway_hold(harness, "Bot", "d" * 64)
    assert (retry["status"], retry["reused"]) == ("pending", False)
    assert retry["id"] != held["id"]
    consume = harness.gateway("POST", f"/v1/gateway/approvals/{held['id']}/consume")
    assert consume.status_code == 409
    shown = harness.admin("GET", f"/v1/approvals/{held['id']}").json()
    assert (shown["status"], shown["used"]) == ("approved", True)
    assert _suspended_event(harness)["approvals_closed"] == [held["id"]]


def _approved_transfer(h: Harness) -> tuple[str, dict[str, Any], str]:
    """An SDK action of `Bot` held, approved and handed its token, not executed: the
    agent's key, the action and the token; the 6000 it reserved of the budget `daily`."""
    key = h.create_agent("Bot")
    rule = {"agent": "Bot", "connector": "stripe", "action_pattern": "stripe.transfer.*",
            "decision": "require_approval"}  # fmt: skip
    assert h.admin("POST", "/v1/permissions", json=rule).status_code == 200
    budget = {"connector": "stripe", "action": "stripe.transfer.*", "measure": "sum",
              "currency": "usd", "window": "day", "limit": 10_000}  # fmt: skip
    assert h.admin("PUT", "/v1/budgets/daily", json=budget).status_code == 201
    transfer = {"type": "stripe.transfer.create", "resource": {"provider": "stripe"},
                "parameters": {"amount": 6000, "currency": "usd",
                               "destination": "acct_1"}}  # fmt: skip
    action = h.agent(key, "POST", "/v1/actions", json={"action_spec": transfer}).json()
    assert action["status"] == "pending_approval", action
    h.admin("POST", f"/v1/approvals/{action['approval']['id']}/approve")
    path = f"/v1/actions/{action['action_request_id']}/wait?timeout=0"
    token = h.agent(key, "GET", path).json()["decision_token"]
    assert token
    assert h.admin("GET", "/v1/budgets/daily").json()["state"]["used"] == 6000
    return key, action, str(token)


def test_an_sdk_action_approved_before_the_suspension_is_denied_by_it(
    harness: Harness,
) -> None:
    """Approved, not executed: after suspend and activate it gets no token, the token it
    had does not execute it, and what it reserved from a budget is released."""
    key, action, token = _approved_transfer(harness)
    assert harness.admin("POST", "/v1/agents/Bot/suspend").status_code == 200
    assert harness.admin("POST", "/v1/agents/Bot/activate").status_code == 200

    path = f"/v1/actions/{action['action_request_id']}"
    waited = harness.agent(key, "GET", path + "/wait?timeout=0").json()
    assert (waited["status"], waited["decision_token"]) == ("denied", None)
    run = harness.agent(key, "POST", path + "/execute", json={"decision_token": token})
    assert (run.status_code, run.json()["error"]) == (409, "not_allowed")
    assert harness.admin("GET", "/v1/budgets/daily").json()["state"]["used"] == 0
    data = _suspended_event(harness)
    assert data["approvals_closed"] == [action["approval"]["id"]]
    assert data["actions_denied"] == [action["action_request_id"]]


def test_revoking_denies_an_approved_sdk_action_and_releases_its_budget(
    harness: Harness,
) -> None:
    _, action, _ = _approved_transfer(harness)
    assert harness.admin("POST", "/v1/agents/Bot/revoke").status_code == 200
    shown = harness.admin("GET", f"/v1/actions/{action['action_request_id']}").json()
    assert shown["status"] == "denied"
    assert harness.admin("GET", "/v1/budgets/daily").json()["state"]["used"] == 0
    events = harness.admin("GET", "/v1/audit?event_type=agent.revoked").json()["events"]
    assert events[0]["data"]["actions_denied"] == [action["action_request_id"]]


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


class _Stall:
    """A TCP listener that never answers a TLS handshake: `arrived` is set when a
    connection came, `hang_up` closes them (the handshake fails: nothing was sent)."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"https://127.0.0.1:{self.server.getsockname()[1]}"
        self.arrived = threading.Event()
        self.accepted: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:  # closed: the test is over
                return
            self.accepted.append(conn)
            self.arrived.set()

    def hang_up(self) -> None:
        for conn in self.accepted:
            conn.close()


@pytest.fixture
def stall() -> Iterator[_Stall]:
    upstream = _Stall()
    yield upstream
    upstream.server.close()
    upstream.hang_up()


def _execute_while(h: Harness, stall: _Stall, key: str, path: str, token: str,
                   changes: tuple[str, ...]) -> Any:  # fmt: skip
    """Execute the action at `path` and, while its connection waits for the TLS handshake,
    make the `changes` to the agent (``suspend``, ``activate``, ``revoke``); then the
    upstream hangs up: a connect failure after them, by construction. The answer."""
    answers: list[Any] = []
    caller = threading.Thread(
        target=lambda: answers.append(
            h.agent(key, "POST", path + "/execute", json={"decision_token": token})
        )
    )
    caller.start()
    try:
        assert stall.arrived.wait(20)
        for change in changes:
            assert h.admin("POST", f"/v1/agents/Bot/{change}").status_code == 200
    finally:
        stall.hang_up()
        caller.join(30)
    return answers[0]


@pytest.mark.parametrize(
    "changes",
    [("suspend",), ("suspend", "activate"), ("revoke",)],
    ids=["suspended", "suspended-and-active-again", "revoked"],
)
def test_an_sdk_action_sent_during_the_suspension_is_denied_when_nothing_was_sent(
    harness: Harness, stall: _Stall, changes: tuple[str, ...]
) -> None:
    connector = {"type": "stripe", "token": "sk_test_x", "base_url": stall.url}
    assert harness.admin("POST", "/v1/connectors", json=connector).status_code == 201
    key, action, token = _approved_transfer(harness)
    path = f"/v1/actions/{action['action_request_id']}"

    answer = _execute_while(harness, stall, key, path, token, changes)
    assert answer.status_code == 502, answer.text
    body = answer.json()
    assert (body["error"], body["retryable"]) == ("upstream_unreachable", False)
    assert "suspended or removed meanwhile" in body["message"]
    shown = harness.admin("GET", path).json()
    assert (shown["status"], shown["execution_state"]) == ("denied", None)
    assert harness.admin("GET", "/v1/budgets/daily").json()["state"]["used"] == 0
    events = harness.admin("GET", "/v1/audit?event_type=action.execution_failed").json()
    assert [(e["data"]["retryable"], e["data"]["denied"]) for e in events["events"]] == [
        (False, True)
    ]
    if "revoke" in changes:
        return
    # active again: the token from before the suspension does not reach the upstream
    if changes[-1] != "activate":
        assert harness.admin("POST", "/v1/agents/Bot/activate").status_code == 200
    stall.arrived.clear()
    again = harness.agent(key, "POST", path + "/execute", json={"decision_token": token})
    assert (again.status_code, again.json()["error"]) == (409, "not_allowed")
    assert not stall.arrived.is_set()
    waited = harness.agent(key, "GET", path + "/wait?timeout=0").json()
    assert (waited["status"], waited["decision_token"]) == ("denied", None)


def test_an_approved_sdk_action_whose_send_failed_stays_retryable_while_active(
    harness: Harness, stall: _Stall
) -> None:
    """Nothing changed meanwhile: the action is decided again, its reservation kept."""
    connector = {"type": "stripe", "token": "sk_test_x", "base_url": stall.url}
    assert harness.admin("POST", "/v1/connectors", json=connector).status_code == 201
    key, action, token = _approved_transfer(harness)
    path = f"/v1/actions/{action['action_request_id']}"

    answer = _execute_while(harness, stall, key, path, token, ())
    assert (answer.status_code, answer.json()["retryable"]) == (502, True)
    shown = harness.admin("GET", path).json()
    assert (shown["status"], shown["execution_state"]) == ("allowed", None)
    assert harness.admin("GET", "/v1/budgets/daily").json()["state"]["used"] == 6000
