"""Reserved usage counts in a rolling window from when it is known spent, on SQLite and
PostgreSQL, with the server's clock (``agentfirewall_server.clock.now``) moved by the test.

A reservation was dated when it was made and kept that date when it settled: a streamed
completion that took 78 s settled its 900 tokens already outside a one-minute window (the
budget read `used: 0` right after), and an SDK action a human approved two minutes after
it asked fell out of the window before it even ran. Now settled usage is dated at its
settlement, and an approved action's reservation at its approval.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import pytest

from agentfirewall_server import clock
from tests.fakes import FakeUpstreams
from tests.server.conftest import Harness

USAGE = {"prompt_tokens": 600, "completion_tokens": 300, "total_tokens": 900}
#: 10,000 USD of Stripe transfers a minute, and a transfer of 6,000 (two pass no minute).
PER_MINUTE = {
    "connector": "stripe",
    "action": "stripe.transfer.*",
    "measure": "sum",
    "currency": "usd",
    "window": "minute",
    "limit": 10_000,
}
TRANSFER = {
    "type": "stripe.transfer.create",
    "resource": {"provider": "stripe"},
    "parameters": {"amount": 6000, "currency": "usd", "destination": "acct_1"},
}


class Clock:
    """The server's `now`, moved by hand (every module that imported it sees this one)."""

    def __init__(self) -> None:
        self.at = time.time()

    def __call__(self) -> float:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += seconds


@pytest.fixture
def moved(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> Clock:
    """The clock of `harness`'s app (its modules are loaded by then)."""
    fake, real = Clock(), clock.now
    for name, module in list(sys.modules.items()):
        if name.startswith("agentfirewall_server") and getattr(module, "now", None) is real:
            monkeypatch.setattr(module, "now", fake)
    return fake


def _state(h: Harness, name: str) -> dict[str, Any]:
    answer = h.admin("GET", f"/v1/budgets/{name}")
    assert answer.status_code == 200, answer.text
    state: dict[str, Any] = answer.json()["state"]
    return state


def _reserve(h: Harness, **body: Any) -> dict[str, Any]:
    answer = h.gateway("POST", "/v1/gateway/budgets/reserve", json=body)
    assert answer.status_code == 200, answer.text
    data: dict[str, Any] = answer.json()
    return data


def test_a_long_stream_counts_from_when_its_usage_is_known(harness: Harness, moved: Clock) -> None:
    h = harness
    budget = {"connector": "openai", "measure": "tokens", "window": "minute", "limit": 1000}
    assert h.admin("PUT", "/v1/budgets/tpm", json=budget).status_code == 201
    chat = {"agent": "Chat-Bot", "connector": "openai", "action": "openai.chat.create"}
    stream = _reserve(h, **chat)["reservation"]
    moved.advance(78)  # a streamed completion that took 78 s
    settled = h.gateway(
        "POST",
        "/v1/gateway/budgets/settle",
        json={"reservation": stream, "ok": True, "usage": USAGE},
    )
    assert settled.json()["settled"] == 1
    moved.advance(1)
    state = _state(h, "tpm")
    assert (state["used"], state["remaining"], state["in_flight"]) == (900, 100, 0)
    second = _reserve(h, **chat)["reservation"]  # 100 left: an LLM budget lets it start
    assert (
        h.gateway(
            "POST",
            "/v1/gateway/budgets/settle",
            json={"reservation": second, "ok": True, "usage": USAGE},
        ).status_code
        == 200
    )
    moved.advance(1)
    refused = _reserve(h, **chat)["refused"]  # 1800 tokens in the last minute
    assert refused is not None
    assert "budget `tpm` exceeded: 1800 of 1000 tokens" in refused["reason"]
    moved.advance(60)  # and the window moves past them all the same
    assert _state(h, "tpm")["used"] == 0


def test_an_action_approved_after_a_window_counts_from_its_approval(
    harness: Harness, moved: Clock
) -> None:
    h = harness
    key = h.create_agent("Finance-Bot")
    rule = {
        "agent": "Finance-Bot",
        "connector": "stripe",
        "action_pattern": "stripe.transfer.*",
        "decision": "require_approval",
    }
    assert h.admin("POST", "/v1/permissions", json=rule).status_code in (200, 201)
    assert h.admin("PUT", "/v1/budgets/per-minute", json=PER_MINUTE).status_code == 201
    spec = TRANSFER
    held = h.agent(key, "POST", "/v1/actions", json={"action_spec": spec}).json()
    assert held["status"] == "pending_approval", held
    assert _state(h, "per-minute")["used"] == 6000  # reserved while a human decides
    moved.advance(120)  # a human approves two minutes later: the transfer happens now
    approved = h.admin("POST", f"/v1/approvals/{held['approval']['id']}/approve", json={})
    assert approved.status_code == 200, approved.text
    moved.advance(1)
    assert _state(h, "per-minute")["used"] == 6000
    again = h.agent(key, "POST", "/v1/actions", json={"action_spec": spec}).json()
    assert again["status"] == "denied", again  # 6000 + 6000 past 10000 in this minute
    assert "budget `per-minute` exceeded" in again["decision"]["reason"]


def test_an_action_executed_after_a_window_counts_from_its_execution(
    harness: Harness, moved: Clock, fakes: FakeUpstreams
) -> None:
    h = harness
    stripe = fakes["stripe"]
    connector = {"type": "stripe", "token": "sk_test_secret", "base_url": stripe.http_url}
    assert h.admin("POST", "/v1/connectors", json=connector).status_code == 201
    key = h.create_agent("Finance-Bot")
    assert h.admin("PUT", "/v1/budgets/per-minute", json=PER_MINUTE).status_code == 201
    spec = TRANSFER
    allowed = h.agent(key, "POST", "/v1/actions", json={"action_spec": spec}).json()
    assert allowed["status"] == "allowed", allowed
    moved.advance(90)  # executed (Mode A) a minute and a half later
    done = h.agent(
        key,
        "POST",
        f"/v1/actions/{allowed['action_request_id']}/execute",
        json={"decision_token": allowed["decision_token"]},
    )
    assert done.status_code == 200, done.text
    moved.advance(1)
    state = _state(h, "per-minute")
    assert (state["used"], state["in_flight"]) == (6000, 0)
