"""Grants and budgets end to end: `tf` as a user types it, stripe-python through the gateway.

A held transfer approved with `tf approvals approve ID --for 1h --max-uses 3 --where
'amount<=10000'` lets the next matching transfers through at once (traffic says which
grant), never past a deny rule or the kill switch, until revoked with `tf grants revoke`;
the budget set with `tf budget set` counts them all. Runs with
``AGENTFIREWALL_TEST_BUDGETS=1`` (``nox -s budgets``); the default run covers grants at the
API (``tests/server/test_grants_api.py``) and in Slack.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import stripe

from agentfirewall_proxy.control import HttpControl
from tests.fakes import FakeUpstreams
from tests.livesrv import LiveServer
from tests.proxy.support import CREDENTIALS, PLACEHOLDER, RunningGateway, ca_bundle, gateway_options

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(
    not os.environ.get("AGENTFIREWALL_TEST_BUDGETS"),
    reason="about a minute of `tf` subprocesses: `nox -s budgets` (AGENTFIREWALL_TEST_BUDGETS=1)",
)
DENY_BLOCKED = """\
name: no-blocked-accounts
rules:
  - name: blocked
    conditions:
      all:
        - {field: action_spec.parameters.destination, operator: equals, value: acct_blocked}
    decision: deny
    reason: that account is blocked
"""


def tf(server: LiveServer, *args: str) -> Any:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_")}
    env.update(TF_SERVER=server.url, TF_ADMIN_TOKEN=server.admin_token, PYTHONPATH=str(REPO))
    command = [sys.executable, "-m", "agentfirewall_proxy.cli", *args, "--json"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60,
                          check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr + done.stdout
    return json.loads(done.stdout) if done.stdout.strip() else None


def poll(fn: Callable[[], Any], timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = fn()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


@pytest.fixture
def setup(
    live_server: LiveServer, fakes: FakeUpstreams, tmp_path: Path
) -> Iterator[tuple[stripe.StripeClient, RunningGateway]]:
    fakes["stripe"].clear()
    key = live_server.create_agent("Finance-Bot")
    assert live_server.admin("POST", "/v1/connectors", json={
        "type": "stripe", "token": CREDENTIALS["stripe"]}).status_code == 201  # fmt: skip
    for pattern, decision in (
        ("stripe.*", "allow"),
        ("stripe.transfer.create", "require_approval"),
    ):
        body = {"agent": "Finance-Bot", "connector": "stripe", "action_pattern": pattern,
                "decision": decision}  # fmt: skip
        assert live_server.admin("POST", "/v1/permissions", json=body).status_code in (200, 201)
    policy = live_server.admin("POST", "/v1/policies", json={"document": DENY_BLOCKED})
    assert policy.status_code == 201, policy.text
    tf(live_server, "budget", "set", "stripe-daily", "--agent", "Finance-Bot", "--connector",
       "stripe", "--action", "stripe.transfer.*", "--measure", "sum", "--currency", "usd",
       "--limit", "100000")  # fmt: skip
    control = HttpControl(live_server.url, live_server.gateway_token)
    running = RunningGateway(gateway_options(tmp_path, fakes), control).start()
    poll(lambda: running.gateway and running.gateway.config and running.gateway.config.budgets)
    saved = stripe.ca_bundle_path
    stripe.ca_bundle_path = str(ca_bundle(running.ca_path, tmp_path / "bundle.pem"))
    try:
        client = stripe.StripeClient(
            PLACEHOLDER,
            http_client=stripe.RequestsClient(proxy=running.proxy_url(key, "Finance-Bot")),
            max_network_retries=0,
        )
        yield client, running
    finally:
        stripe.ca_bundle_path = saved
        running.stop()


def _transfer(client: stripe.StripeClient, amount: int, destination: str = "acct_1") -> str:
    try:
        client.v1.transfers.create(params={"amount": amount, "currency": "usd",
                                           "destination": destination})  # fmt: skip
    except stripe.StripeError as exc:
        body: Any = exc.json_body or {}
        return str((body.get("error") or {}).get("code"))
    return "ok"


def _pending(server: LiveServer) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = server.admin("GET", "/v1/approvals").json()["approvals"]
    return found


def _held_then_denied(server: LiveServer, client: stripe.StripeClient, amount: int) -> str:
    """Send a transfer that must be held; deny it once its approval shows; its answer."""
    out: list[str] = []
    thread = threading.Thread(target=lambda: out.append(_transfer(client, amount)))
    thread.start()
    found = poll(lambda: [a for a in _pending(server)
                          if a["action_spec"]["parameters"]["amount"] == amount])  # fmt: skip
    assert server.admin("POST", f"/v1/approvals/{found[0]['id']}/deny").status_code == 200
    thread.join(30)
    return out[0]


def test_grant_from_the_cli_bounded_and_never_past_a_deny(
    live_server: LiveServer, setup: tuple[stripe.StripeClient, RunningGateway]
) -> None:
    client, running = setup

    def killed() -> bool:
        assert running.gateway is not None
        return bool(running.gateway.config and running.gateway.config.kill.active)

    out: list[str] = []
    held = threading.Thread(target=lambda: out.append(_transfer(client, 5000)))
    held.start()
    approval = poll(lambda: _pending(live_server))[0]
    approved = tf(live_server, "approvals", "approve", approval["id"][:12], "--for", "1h",
                  "--max-uses", "3", "--where", "amount<=10000")  # fmt: skip
    grant = approved["grant"]
    held.join(30)
    assert out == ["ok"]
    assert _transfer(client, 8000) == "ok"  # the grant: no human this time
    assert _held_then_denied(live_server, client, 20000) == "approval_denied"  # past `where`
    assert _transfer(client, 1000, "acct_blocked") == "denied"  # a deny rule wins
    switch = {"active": True, "scope": "stripe"}
    assert live_server.admin("POST", "/v1/kill-switch", json=switch).status_code == 200
    poll(killed)
    assert _transfer(client, 1000) == "kill_switch"
    switch["active"] = False
    assert live_server.admin("POST", "/v1/kill-switch", json=switch).status_code == 200
    poll(lambda: not killed())
    assert _transfer(client, 1000) == "ok"  # the grant's second use
    listed = tf(live_server, "grants", "list")["grants"]
    assert [(g["id"], g["uses"]) for g in listed] == [(grant["id"], 2)]
    tf(live_server, "grants", "revoke", grant["id"])
    assert live_server.admin("GET", "/v1/grants").json()["grants"] == []
    assert _held_then_denied(live_server, client, 1000) == "approval_denied"  # revoked
    used = tf(live_server, "budget", "show", "stripe-daily")["state"]
    assert used["used"] == 5000 + 8000 + 1000
    traffic = poll(lambda: [t for t in live_server.admin("GET", "/v1/traffic").json()["traffic"]
                            if "grant" in (t.get("reason") or "")])  # fmt: skip
    assert {t["reason"] for t in traffic} == {f"approved by grant {grant['id']}"}
    events = live_server.admin("GET", "/v1/audit", params={"limit": 1000}).json()["events"]
    assert [e["subject"] for e in events if e["event_type"] == "grant.used"] == [grant["id"]] * 2


def test_a_deny_budget_refuses_before_a_grant_is_used(
    live_server: LiveServer, setup: tuple[stripe.StripeClient, RunningGateway]
) -> None:
    """A transfer a `deny` budget refuses spends no use of the grant that would have let it
    through (it did: two refusals counted `2/3`), and no person is asked about it."""
    client, running = setup
    tf(live_server, "budget", "set", "two-transfers", "--agent", "Finance-Bot", "--connector",
       "stripe", "--action", "stripe.transfer.*", "--measure", "count", "--limit", "2")  # fmt: skip
    poll(lambda: running.gateway and len(running.gateway.require_config().budgets) == 2)
    out: list[str] = []
    held = threading.Thread(target=lambda: out.append(_transfer(client, 5000)))
    held.start()
    approval = poll(lambda: _pending(live_server))[0]
    grant = tf(live_server, "approvals", "approve", approval["id"][:12], "--for", "1h",
               "--max-uses", "3")["grant"]  # fmt: skip
    held.join(30)
    assert out == ["ok"]  # the budget's first
    assert _transfer(client, 1000) == "ok"  # its second, through the grant (use 1)
    assert _transfer(client, 1000) == "budget_exceeded"
    assert _transfer(client, 1000) == "budget_exceeded"
    assert _pending(live_server) == []  # nobody was asked about the refused ones
    listed = tf(live_server, "grants", "list")["grants"]
    assert [(g["id"], g["uses"]) for g in listed] == [(grant["id"], 1)]
    events = live_server.admin("GET", "/v1/audit", params={"limit": 1000}).json()["events"]
    assert [e["subject"] for e in events if e["event_type"] == "grant.used"] == [grant["id"]]
