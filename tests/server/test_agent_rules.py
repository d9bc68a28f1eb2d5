"""Agents with no rules at all are named (issue 13 item 8): the SDK default stays allow."""

from __future__ import annotations

from agentfirewall_server.coverage import SAFE_DEFAULT_PACKS
from tests.server.conftest import Harness

SCOPED = """name: only-ops-bots
scope: {agents: ["ops-*"]}
rules:
- name: hold-deletes
  conditions: {field: action_spec.type, operator: ends_with, value: .delete}
  decision: require_approval
"""


def _rules(h: Harness, name: str) -> dict[str, object]:
    rules: dict[str, object] = h.admin("GET", f"/v1/agents/{name}").json()["rules"]
    return rules


def _without(h: Harness) -> list[str]:
    names: list[str] = h.admin("GET", "/v1/status").json()["agents"]["without_rules"]
    return names


def test_agents_with_no_rules_are_named_until_a_rule_applies(harness: Harness) -> None:
    key = harness.create_agent("loose")
    harness.create_agent("ops-bot")
    harness.create_agent("guarded")
    assert _rules(harness, "loose") == {"permissions": 0, "policies": 0, "none": True}
    assert _without(harness) == ["guarded", "loose", "ops-bot"]
    # the SDK default is unchanged: a new agent is allowed what no rule denies
    spec = {"type": "payment.transfer.initiate"}
    r = harness.agent(key, "POST", "/v1/actions", {"action_spec": spec})
    assert r.json()["status"] == "allowed"
    rule = {"agent": "guarded", "connector": "github", "action_pattern": "*", "decision": "deny"}
    assert harness.admin("POST", "/v1/permissions", rule).status_code == 200
    assert harness.admin("POST", "/v1/policies", {"document": SCOPED}).status_code == 201
    assert _rules(harness, "guarded") == {"permissions": 1, "policies": 0, "none": False}
    assert _rules(harness, "ops-bot") == {"permissions": 0, "policies": 1, "none": False}
    assert _without(harness) == ["loose"]
    listed = {
        a["name"]: a["rules"]["none"] for a in harness.admin("GET", "/v1/agents").json()["agents"]
    }
    assert listed == {"loose": True, "ops-bot": False, "guarded": False}
    for pack in SAFE_DEFAULT_PACKS:
        assert harness.admin("POST", f"/v1/policy-packs/{pack}/install").status_code == 201
    assert _without(harness) == []
    assert _rules(harness, "loose")["policies"] == len(SAFE_DEFAULT_PACKS)


def test_the_safe_default_packs_are_the_provider_packs() -> None:
    assert set(SAFE_DEFAULT_PACKS) >= {
        "github-safe-defaults",
        "stripe-safe-defaults",
        "slack-safe-defaults",
    }
    assert "read-only" not in SAFE_DEFAULT_PACKS
