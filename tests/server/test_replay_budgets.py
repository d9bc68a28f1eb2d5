"""Policy replay compares like with like, on SQLite and PostgreSQL: a request a budget
refused or held names the budget in its record (gateway and SDK), and replays refused or
held again over the rules' verdict, whatever then became of it (approved, denied, let
through by a grant); a live verdict replay cannot give (a kill switch's, or a budget's
an older record does not name) is not "drifted": it is counted under `outside_rules`,
as shadow mode leaves them out. A true drift (the rules changed since) still counts.

Before: replaying the live configuration against itself reported every budget refusal as
drifted ("the live configuration changed since"), though nothing had changed; then a
request a budget held still drifted once a person (or a grant) had let it through.
"""

from __future__ import annotations

import asyncio
import socket
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from agentfirewall.actions import parse_action_spec
from agentfirewall.policy import EvaluationContext
from agentfirewall.policy.record import record_input
from agentfirewall_proxy.control import HttpControl
from agentfirewall_proxy.options import parse_resolve
from agentfirewall_server.replaystore import input_text
from agentfirewall_server.store.schema import traffic
from tests.proxy.rawclient import auth_header, read_all, status_of
from tests.proxy.rawupstream import RawUpstream
from tests.proxy.support import RunningGateway, gateway_options
from tests.proxy.test_grants_live import poll
from tests.server.conftest import Harness

CHARGE = {
    "type": "stripe.charge.create",
    "resource": {"provider": "stripe"},
    "parameters": {"amount": 1, "currency": "usd"},
}


def _replay(h: Harness, **body: Any) -> dict[str, Any]:
    answer = h.admin("POST", "/v1/policies/replay", json=body)
    assert answer.status_code == 200, answer.text
    report: dict[str, Any] = answer.json()
    return report


def _counts(report: dict[str, Any]) -> dict[str, Any]:
    return {k: report[k] for k in ("total", "unchanged", "changed", "drifted", "outside_rules")}


#: Three records replayed under the live configuration: nothing changed, drifted, left out.
UNCHANGED = {"total": 3, "unchanged": 3, "changed": 0, "drifted": 0, "outside_rules": {}}


def test_budget_refusals_on_the_sdk_path_are_not_drift(harness: Harness) -> None:
    """The report's case: a count budget of 1, three SDK actions, two refused by it (their
    records name it: replayed refused, compared)."""
    h = harness
    key = h.create_agent("Bot")
    body = {"connector": "stripe", "action": "stripe.charge.*", "measure": "count", "limit": 1}
    assert h.admin("PUT", "/v1/budgets/one", json=body).status_code == 201
    statuses = [
        h.agent(key, "POST", "/v1/actions", json={"action_spec": CHARGE}).json()["status"]
        for _ in range(3)
    ]
    assert statuses == ["allowed", "denied", "denied"]
    assert _counts(_replay(h)) == UNCHANGED


def test_an_sdk_action_a_budget_held_replays_held_when_a_grant_let_it_through(
    harness: Harness,
) -> None:
    """A `require_approval` budget of one call: the first action is allowed, the second
    held by the budget and approved with a grant, the third let through by the grant
    (`approved by grant ...`). Each replays as live decided it (its record names the
    budget): nothing drifted, nothing left out.

    Before: the third was compared as the rules' verdict (its reason is the grant's, not
    the budget's): `require_approval` live, `allow` replayed, drifted."""
    h = harness
    key = h.create_agent("Bot")
    body = {"connector": "stripe", "action": "stripe.charge.*", "measure": "count", "limit": 1,
            "outcome": "require_approval"}  # fmt: skip
    assert h.admin("PUT", "/v1/budgets/one", json=body).status_code == 201

    def request() -> dict[str, Any]:
        answer = h.agent(key, "POST", "/v1/actions", json={"action_spec": CHARGE})
        data: dict[str, Any] = answer.json()
        return data

    assert request()["status"] == "allowed"
    held = request()
    assert held["status"] == "pending_approval"
    grant = {"grant": {"max_uses": 5}}
    approved = h.admin("POST", f"/v1/approvals/{held['approval']['id']}/approve", json=grant)
    assert approved.status_code == 200, approved.text
    granted = request()
    assert (granted["status"], granted["decision"]["reason"][:17]) == (
        "allowed",
        "approved by grant",
    )
    assert _counts(_replay(h)) == UNCHANGED


def test_a_kill_switch_refusal_is_not_drift(harness: Harness) -> None:
    h = harness
    key = h.create_agent("Bot")
    switch = {"active": True, "scope": "agent:Bot", "reason": "incident"}
    assert h.admin("POST", "/v1/kill-switch", json=switch).status_code == 200
    denied = h.agent(key, "POST", "/v1/actions", json={"action_spec": CHARGE}).json()
    assert denied["status"] == "denied"
    off = {"active": False, "scope": "agent:Bot"}
    assert h.admin("POST", "/v1/kill-switch", json=off).status_code == 200
    assert _counts(_replay(h)) == {
        "total": 1,
        "unchanged": 1,
        "changed": 0,
        "drifted": 0,
        "outside_rules": {"kill_switch": 1},
    }


def test_gateway_records_a_budget_refused_or_a_kill_switch_cut(harness: Harness) -> None:
    """Traffic rows as an older gateway recorded them: a budget's refusal (its reason names
    the budget, its input does not), a request the kill switch cut (`killed`), and one the
    rules allowed."""
    h = harness
    permission = {
        "agent": "Bot",
        "connector": "stripe",
        "action_pattern": "stripe.*",
        "decision": "allow",
    }
    assert h.admin("POST", "/v1/permissions", json=permission).status_code in (200, 201)
    now = datetime.now(UTC)
    spec = parse_action_spec(CHARGE)
    stored = input_text(
        record_input(
            spec, EvaluationContext(agent="Bot", mode="proxy", connector="stripe", now=now)
        )
    )
    rows = [
        ("deny", "budget `one` exceeded: 1 of 1 requests used this day, this request needs 1"),
        ("deny", "budget `usd`: the request names no currency"),
        ("killed", "kill_switch_active: the exchange was cut by the kill switch"),
        ("allow", "allowed by permission `stripe.*`"),
    ]
    records = [
        {
            "request_id": f"req_{i}",
            "agent": "Bot",
            "connector": "stripe",
            "decision": decision,
            "reason": reason,
            "created_at": now.timestamp(),
            "decision_input": stored,
        }
        for i, (decision, reason) in enumerate(rows)
    ]
    h.state.db.write_sync(lambda c: c.execute(traffic.insert(), records))
    assert _counts(_replay(h)) == {
        "total": 4,
        "unchanged": 4,
        "changed": 0,
        "drifted": 0,
        "outside_rules": {"budget": 2, "kill_switch": 1},
    }


def test_a_rule_changed_since_still_drifts(harness: Harness) -> None:
    """The verdicts compared still say when the rules changed: a charge allowed, then a
    deny rule on charges."""
    h = harness
    key = h.create_agent("Bot")
    assert h.agent(key, "POST", "/v1/actions", json={"action_spec": CHARGE}).json()["status"] == (
        "allowed"
    )
    rule = {
        "agent": "Bot",
        "connector": "stripe",
        "action_pattern": "stripe.charge.*",
        "decision": "deny",
    }
    assert h.admin("POST", "/v1/permissions", json=rule).status_code in (200, 201)
    report = _replay(h)
    assert (report["drifted"], report["outside_rules"]) == (1, {})


# -- through a real gateway ---------------------------------------------------------------


class _InProcess(httpx.AsyncBaseTransport):
    """The control plane in this process (the harness's app) behind the gateway's
    ``HttpControl``: each call is made by the harness's client in a worker thread."""

    def __init__(self, h: Harness) -> None:
        self.client = h.client

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        target = request.url.raw_path.decode("ascii")
        answer = await asyncio.to_thread(
            self.client.request, request.method, target, headers=request.headers, content=body
        )
        headers = [(k, v) for k, v in answer.headers.items()
                   if k.lower() not in ("content-encoding", "content-length")]  # fmt: skip
        return httpx.Response(answer.status_code, headers=headers, content=answer.content)


def test_a_request_a_budget_held_replays_held_whatever_its_approval_said(
    harness: Harness, tmp_path: Path
) -> None:
    """A `require_approval` budget of one call: the first passes, the next two are held by
    the budget; a person approves one and denies the other. Replaying the live
    configuration over the gateway's records changes nothing and nothing drifted: each
    held request replays held (its record names the budget), not as the rules' `allow`.
    A candidate denying the action shows the held ones as `require_approval->deny`.

    Before: the held requests were recorded `require_approval` with the approval's reason
    (`approved`, `the approval was denied`), and replayed `allow` (the rules' verdict, no
    budget): 2 drifted under a configuration that had not changed."""
    h = harness
    key = h.create_agent("Bot")
    host = "budget.example.org"
    connector = {"type": "generic", "name": "held", "domains": [host], "base_url": f"http://{host}"}
    assert h.admin("POST", "/v1/connectors", json=connector).status_code == 201
    allow = {"agent": "Bot", "connector": "generic", "action_pattern": "http.*",
             "decision": "allow"}  # fmt: skip
    assert h.admin("POST", "/v1/permissions", json=allow).status_code in (200, 201)
    budget = {"connector": "generic", "measure": "count", "window": "day", "limit": 1,
              "outcome": "require_approval"}  # fmt: skip
    assert h.admin("PUT", "/v1/budgets/one-call", json=budget).status_code == 201
    control = HttpControl(str(h.client.base_url), h.gateway_token, transport=_InProcess(h))
    upstream = RawUpstream()
    resolve = parse_resolve([f"{host}:80=127.0.0.1:{upstream.port}"])
    running = RunningGateway(gateway_options(tmp_path, None, resolve=resolve), control).start()
    try:
        poll(lambda: running.gateway and running.gateway.config and running.gateway.config.budgets)

        def call(path: str) -> int:
            lines = f"GET http://{host}{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n"
            with socket.create_connection(("127.0.0.1", running.port), timeout=20) as sock:
                sock.sendall(lines.encode() + auth_header(key) + b"\r\n")
                return status_of(read_all(sock, 20))

        assert call("/first") == 200
        with ThreadPoolExecutor(2) as pool:
            for path, verb, status in (("/approved", "approve", 200), ("/denied", "deny", 403)):
                answer = pool.submit(call, path)
                held = poll(lambda: h.admin("GET", "/v1/approvals?status=pending").json()[
                    "approvals"])  # fmt: skip
                assert "budget `one-call` exceeded" in held[0]["reason"]
                assert h.admin("POST", f"/v1/approvals/{held[0]['id']}/{verb}").status_code == 200
                assert answer.result(30) == status
        poll(lambda: len(h.admin("GET", "/v1/traffic").json()["traffic"]) == 3)
    finally:
        running.stop()
        upstream.stop()
    assert _counts(_replay(h)) == UNCHANGED
    deny = {**allow, "decision": "deny"}
    assert _replay(h, permissions=[deny])["changes"] == {
        "allow->deny": 1,
        "require_approval->deny": 2,
    }
