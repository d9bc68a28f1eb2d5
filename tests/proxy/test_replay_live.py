"""Learn and replay end to end: stripe-python through the real gateway and SDK calls are
recorded with their decision input; `tf policy replay` shows what a candidate would have
changed (and nothing under the live configuration); `tf permissions suggest --apply` lets
the observed traffic through in full enforcement and denies an unseen action."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import stripe

from agentfirewall_proxy.control import HttpControl
from tests.fakes import FakeUpstreams
from tests.livesrv import LiveServer
from tests.proxy.support import CREDENTIALS, PLACEHOLDER, RunningGateway, ca_bundle, gateway_options
from tests.proxy.test_grants_live import poll, tf

NO_BIG = """\
name: no-big-transfers
rules:
  - name: big
    conditions:
      all:
        - {field: action_spec.parameters.amount, operator: gt, value: 1000}
    decision: deny
    reason: too much money
"""
CRM = {"type": "crm.contact.update", "resource": {"provider": "crm"},
       "parameters": {"id": "c_1", "notes": "call back on monday"}}  # fmt: skip


@pytest.fixture(name="gateway")
def stripe_gateway(live_server: LiveServer, fakes: FakeUpstreams, tmp_path: Path) -> Iterator[Any]:
    """The real gateway in this process with a Stripe connector; stripe-python trusts its CA."""
    assert live_server.admin("POST", "/v1/connectors", json={
        "type": "stripe", "token": CREDENTIALS["stripe"]}).status_code == 201  # fmt: skip
    control = HttpControl(live_server.url, live_server.gateway_token)
    running = RunningGateway(gateway_options(tmp_path, fakes), control).start()
    poll(lambda: running.gateway and running.gateway.config)
    saved = stripe.ca_bundle_path
    stripe.ca_bundle_path = str(ca_bundle(running.ca_path, tmp_path / "bundle.pem"))
    try:
        yield running
    finally:
        stripe.ca_bundle_path = saved
        running.stop()


def _client(running: RunningGateway, name: str, key: str) -> stripe.StripeClient:
    return stripe.StripeClient(
        PLACEHOLDER,
        http_client=stripe.RequestsClient(proxy=running.proxy_url(key, name)),
        max_network_retries=0,
    )


def _agent_known(running: RunningGateway, name: str, level: str = "") -> bool:
    config = running.gateway.config if running.gateway else None
    agents = config.agents.values() if config else ()
    return any(a.name == name and (not level or a.level == level) for a in agents)


def _stripe_code(call: Any) -> str:
    try:
        call()
    except stripe.StripeError as exc:
        body: Any = exc.json_body or {}
        return str((body.get("error") or {}).get("code"))
    return "ok"


def _replayable(server: LiveServer, count: int, agent: str) -> None:
    def ready() -> bool:
        found = server.admin("POST", "/api/v1/policies/replay", json={"agents": [agent]})
        return bool(found.json()["total"] >= count)

    poll(ready)


def test_replay_live_config_is_unchanged_and_a_candidate_shows_its_diff(
    live_server: LiveServer, gateway: RunningGateway, tmp_path: Path
) -> None:
    key = live_server.create_agent("Bot")
    for pattern in ("stripe.*", "crm.*"):
        body = {"agent": "Bot", "connector": pattern.split(".")[0], "action_pattern": pattern,
                "decision": "allow"}  # fmt: skip
        assert live_server.admin("POST", "/v1/permissions", json=body).status_code in (200, 201)
    poll(lambda: _agent_known(gateway, "Bot"))
    client = _client(gateway, "Bot", key)
    for amount in (100, 5000, 20000):
        client.v1.transfers.create(params={"amount": amount, "currency": "usd",
                                           "destination": "acct_1"})  # fmt: skip
    client.v1.customers.list()
    assert (
        live_server.agent(key, "POST", "/api/v1/actions", json={"action_spec": CRM}).status_code
        == 200
    )
    _replayable(live_server, 5, "Bot")

    same = tf(live_server, "policy", "replay", "--since", "1h")
    assert (same["total"], same["changed"], same["drifted"]) == (5, 0, 0)

    (tmp_path / "candidate").mkdir()
    (tmp_path / "candidate" / "no-big.yaml").write_text(NO_BIG)
    diff = tf(live_server, "policy", "replay", "--policies", str(tmp_path / "candidate"),
              "--agent", "Bot")  # fmt: skip
    assert diff["changes"] == {"allow->deny": 2}
    assert diff["rules"] == {"allow->deny": {"no-big-transfers/big": 2}}
    shown = diff["examples"]["allow->deny"]
    assert {e["action"] for e in shown} == {"stripe.transfer.create"}
    assert all(e["source"] == "proxy" for e in shown)

    perms = tmp_path / "perms.yaml"  # candidate permissions: crm no longer allowed
    perms.write_text(
        json.dumps(
            [
                {
                    "agent": "Bot",
                    "connector": "stripe",
                    "action_pattern": "stripe.*",
                    "decision": "allow",
                }
            ]
        )
    )
    diff = tf(live_server, "policy", "replay", "--permissions", str(perms))
    assert diff["changed"] == 0  # no crm rule left: the SDK default (allow) decides
    perms.write_text(
        json.dumps(
            [
                {
                    "agent": "Bot",
                    "connector": "stripe",
                    "action_pattern": "stripe.*",
                    "decision": "allow",
                },
                {"agent": "Bot", "connector": "crm", "action_pattern": "*", "decision": "deny"},
            ]
        )
    )
    diff = tf(live_server, "policy", "replay", "--permissions", str(perms))
    assert diff["changes"] == {"allow->deny": 1}
    assert diff["examples"]["allow->deny"][0]["source"] == "sdk"

    bad = live_server.admin("POST", "/api/v1/policies/replay", json={"policies": ["rules: 3"]})
    assert bad.status_code == 422
    assert bad.json()["field"] == "policies.0"


def test_suggest_then_apply_lets_observed_traffic_through_and_denies_the_unseen(
    live_server: LiveServer, gateway: RunningGateway
) -> None:
    key = live_server.create_agent("Learner", enforcement_level="monitor")
    poll(lambda: _agent_known(gateway, "Learner", "monitor"))
    client = _client(gateway, "Learner", key)
    observed = (
        lambda: client.v1.customers.list(),
        lambda: client.v1.balance.retrieve(),
        lambda: client.v1.transfers.create(params={"amount": 100, "currency": "usd",
                                                   "destination": "acct_1"}),
    )  # fmt: skip
    for call in observed:
        assert _stripe_code(call) == "ok"  # monitor: let through, recorded
    assert (
        live_server.agent(key, "POST", "/api/v1/actions", json={"action_spec": CRM}).status_code
        == 200
    )
    _replayable(live_server, 4, "Learner")

    review = tf(live_server, "permissions", "suggest", "--agent", "Learner", "--since", "1h")
    assert review["applied"] is False
    assert live_server.admin("GET", "/v1/permissions").json()["permissions"] == []
    rules = {(r["connector"], r["action_pattern"]): r["decision"] for r in review["rules"]}
    assert rules[("stripe", "stripe.transfer.create")] == "require_approval"  # high risk
    assert rules[("crm", "crm.contact.update")] == "allow"
    assert rules[("*", "*")] == "deny"
    assert not any(p in ("stripe.*", "stripe.customer.*") for _, p in rules)  # never unseen

    tf(live_server, "permissions", "suggest", "--agent", "Learner", "--since", "1h", "--apply")
    tf(live_server, "enforcement", "set", "--agent", "Learner", "full_enforce")
    poll(lambda: _agent_known(gateway, "Learner", "full_enforce"))
    client = _client(gateway, "Learner", key)  # a new tunnel: the agent's level is per tunnel
    for call in observed[:2]:
        assert _stripe_code(call) == "ok"
    unseen = _stripe_code(lambda: client.v1.customers.create(params={"email": "a@b.c"}))
    assert unseen != "ok"

    def logged() -> bool:  # the traffic log shows the decision input beside the verdict
        rows = live_server.admin("GET", "/api/v1/traffic", params={"agent": "Learner"}).json()
        return any(t["action"] == "stripe.customer.create" and t["decision"] == "deny"
                   and t["input"]["l"] == "full_enforce" for t in rows["traffic"])  # fmt: skip

    poll(logged)
    crm = live_server.agent(key, "POST", "/api/v1/actions", json={"action_spec": CRM}).json()
    assert crm["status"] == "allowed"
    other = {**CRM, "type": "crm.contact.delete"}
    assert live_server.agent(key, "POST", "/api/v1/actions", json={"action_spec": other}).json()[
        "status"
    ] == ("denied")
