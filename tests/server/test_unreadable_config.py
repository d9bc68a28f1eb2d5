"""Stored configuration this version cannot read fails closed, and says what to do.

A policy or budget row is validated on write, but another TameFlare version (a rolling
upgrade on PostgreSQL, a downgrade) or a hand edit can leave one this server cannot load.
Skipping it would enforce less than the operator wrote: a deny policy or a spending limit
gone without a word. Every action is denied instead, with the name and the way out.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select, update

from agentfirewall.actions import ActionSpec
from agentfirewall.policy import Engine, EvaluationContext, KillSwitch, unreadable_switch
from agentfirewall_proxy.snapshot import compile_snapshot
from agentfirewall_server.store.schema import (
    budgets,
    connectors,
    kill_switches,
    permissions,
    policies,
    settings_table,
)
from tests.server.conftest import SPEC, Harness

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
DENY_MERGE = """
name: no-merges
rules:
  - name: merge
    conditions:
      - {field: action_spec.type, operator: equals, value: github.pr.merge}
    decision: deny
"""
# what a later version might write: an operator this one does not know
LATER = DENY_MERGE.replace("operator: equals", "operator: rhymes_with")


def _act(h: Harness, key: str) -> dict[str, Any]:
    answer = h.agent(key, "POST", "/v1/actions", json={"action_spec": SPEC})
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def _store(h: Harness, table: Any, column: str, text: str) -> None:
    """Overwrite every row's stored text, then make the server reload (another change)."""
    h.state.db.write_sync(lambda c: c.execute(update(table).values(**{column: text})))
    assert h.admin("PATCH", "/v1/settings", json={"metrics_public": False}).status_code == 200


def _allowing(h: Harness) -> str:
    return h.create_agent("Bot")  # SDK mode: allowed unless something denies


def test_an_unreadable_policy_denies_everything_until_it_is_replaced(harness: Harness) -> None:
    h = harness
    key = _allowing(h)
    installed = h.admin("POST", "/v1/policies", json={"document": DENY_MERGE.replace(
        "github.pr.merge", "github.repo.delete")})  # fmt: skip
    assert installed.status_code == 201, installed.text
    assert _act(h, key)["status"] == "allowed"

    _store(h, policies, "document", LATER)
    body = _act(h, key)
    assert body["status"] == "denied"
    reason = body["decision"]["reason"]
    assert "stored policy `no-merges` cannot be read" in reason
    assert "rhymes_with" in reason
    assert "fixed, disabled or removed" in reason
    health = h.call("GET", "/api/health").json()
    assert health["status"] == "degraded"
    assert health["config"] == {"status": "degraded", "unreadable": 1}  # no names: no login
    listed = h.admin("GET", "/v1/kill-switch").json()["active"]
    assert listed == [{"scope": "all", "target": None, "reason": reason, "unreadable": True}]
    assert h.admin("GET", "/v1/status").json()["kill_switches"] == listed
    gateway = h.gateway("GET", "/v1/gateway/config").json()
    assert gateway["kill_switches"] == listed
    assert gateway["policies"] == []

    # the way out the reason names: a disabled one enforces nothing, so it stops nothing
    assert h.admin("POST", "/v1/policies/no-merges/disable").status_code == 200
    assert _act(h, key)["status"] == "allowed"
    assert h.admin("GET", "/v1/kill-switch").json()["active"] == []
    assert h.call("GET", "/api/health").json()["config"] == {"status": "ok", "unreadable": 0}
    assert h.admin("POST", "/v1/policies/no-merges/enable").status_code == 200
    assert _act(h, key)["status"] == "denied"
    replaced = h.admin("PUT", "/v1/policies/no-merges", json={"document": DENY_MERGE})
    assert replaced.status_code == 200, replaced.text
    body = _act(h, key)
    assert (body["status"], body["decision"]["matched_policies"]) == ("denied", ["no-merges"])


def test_an_unreadable_budget_denies_everything_until_it_is_removed(harness: Harness) -> None:
    h = harness
    key = _allowing(h)
    budget = {"connector": "github", "action": "github.*", "measure": "count", "limit": 1000}
    assert h.admin("PUT", "/v1/budgets/merges", json=budget).status_code == 201
    _store(h, budgets, "definition", '{"name": "merges", "measure": "vibes"}')
    body = _act(h, key)
    assert body["status"] == "denied"
    assert "stored budget `merges` cannot be read" in body["decision"]["reason"]
    assert h.admin("GET", "/v1/budgets").json()["budgets"] == []
    assert h.admin("DELETE", "/v1/budgets/merges").json() == {"removed": "merges"}
    assert _act(h, key)["status"] == "allowed"
    assert h.admin("DELETE", "/v1/budgets/merges").status_code == 404


def test_an_unreadable_kill_switch_or_access_rule_denies_everything_and_nothing_else_breaks(
    harness: Harness,
) -> None:
    """One such row used to fail the whole reload: every write after it committed but was
    answered from the refusing snapshot (a created agent 500, its key lost). Now the row
    alone is set aside, like a policy: listed, denying, left out of the gateway's config."""
    h = harness
    key = _allowing(h)
    assert (
        h.admin(
            "POST", "/v1/kill-switch", json={"active": True, "scope": "agent:Other"}
        ).status_code
        == 200
    )
    rule = {"agent": "Bot", "connector": "github", "action_pattern": "*", "decision": "allow"}
    assert h.admin("POST", "/v1/permissions", json=rule).status_code == 200
    _store(h, kill_switches, "target", "")  # an agent switch naming nobody
    body = _act(h, key)
    assert body["status"] == "denied"
    assert "stored kill switch `agent:` cannot be read" in body["decision"]["reason"]
    created = h.admin("POST", "/v1/agents", json={"name": "Second"})
    assert created.status_code == 201, created.text  # answered from the new snapshot
    assert created.json()["api_key"].startswith("aaf_live_")
    config = h.gateway("GET", "/v1/gateway/config").json()
    compiled = compile_snapshot(config)  # the gateway reads what it is sent
    assert compiled.kill.all is not None
    assert [k["scope"] for k in config["kill_switches"]] == ["all"]

    _store(h, permissions, "decision", "maybe")
    body = _act(h, key)
    assert "stored access rule `perm_" in body["decision"]["reason"]
    assert h.gateway("GET", "/v1/gateway/config").json()["permissions"] == []
    assert h.call("GET", "/api/health").json()["config"] == {"status": "degraded", "unreadable": 2}

    # the ways out: clear the switches, remove the rule
    assert h.admin("POST", "/v1/kill-switch", json={"active": False}).status_code == 200
    rule_id = h.state.db.read_sync(lambda c: c.execute(select(permissions.c.id)).scalar_one())
    assert h.admin("DELETE", f"/v1/permissions/{rule_id}").status_code == 204
    assert _act(h, key)["status"] == "allowed"
    assert h.call("GET", "/api/health").json()["config"] == {"status": "ok", "unreadable": 0}


@pytest.mark.parametrize(
    ("column", "text", "said"),
    [("domains", '["api.example.com:8443"]', "api.example.com:8443"),  # stored before the check
     ("options", "{", "Expecting property name")],
)  # fmt: skip
def test_an_unreadable_connector_denies_everything_until_it_is_removed(
    harness: Harness, column: str, text: str, said: str
) -> None:
    """Its row used to fail the whole reload (options), or every gateway's config (a
    domain the router refuses): now it alone is set aside, named, denying all."""
    h = harness
    key = _allowing(h)
    made = h.admin("POST", "/v1/connectors", json={"type": "generic", "domains": ["x.example"]})
    assert made.status_code == 201, made.text
    _store(h, connectors, column, text)
    body = _act(h, key)
    assert body["status"] == "denied"
    reason = body["decision"]["reason"]
    assert f"stored connector `{made.json()['id']}` cannot be read" in reason
    assert said in reason
    config = h.gateway("GET", "/v1/gateway/config").json()
    assert config["connectors"] == []
    assert compile_snapshot(config).kill.all is not None  # a gateway reads it: refusing all
    assert h.admin("DELETE", f"/v1/connectors/{made.json()['id']}").status_code == 204
    assert _act(h, key)["status"] == "allowed"
    assert h.admin("DELETE", f"/v1/connectors/{made.json()['id']}").status_code == 404


def test_the_gateway_denies_on_a_policy_it_cannot_read_and_on_the_servers_word() -> None:
    agent = {"id": "agt_1", "name": "Bot", "key_hashes": [], "enforcement_level": "monitor"}
    base = {"version": 3, "agents": [agent], "connectors": [],
            "permissions": [{"agent": "Bot", "connector": "github", "action_pattern": "*",
                             "decision": "allow"}]}  # fmt: skip
    ctx = EvaluationContext(agent="Bot", mode="proxy", now=NOW, connector="github",
                            enforcement_level="monitor")  # fmt: skip
    spec = ActionSpec.model_validate(SPEC)
    assert compile_snapshot(base).engine.evaluate(spec, ctx).outcome == "allow"

    own = compile_snapshot({**base, "policies": [{"name": "no-merges", "document": LATER}]})
    decision = own.engine.evaluate(spec, ctx)
    assert decision.outcome == "deny"
    assert decision.kill_switch
    assert decision.reason.startswith("stored policy `no-merges` cannot be read")
    assert decision.matched_rules == ("config_unreadable",)

    said = unreadable_switch("budget", "merges", "gone")
    told = compile_snapshot({**base, "kill_switches": [
        {"scope": "all", "target": None, "reason": said.reason, "unreadable": True}]})  # fmt: skip
    assert told.engine.evaluate(spec, ctx).reason == said.reason


def test_a_persons_kill_switch_keeps_its_reason_code() -> None:
    engine = Engine(kill_switches=[KillSwitch("all", reason="odd transfers")])
    ctx = EvaluationContext(agent="Bot", mode="proxy", now=NOW, connector="github")
    decision = engine.evaluate(ActionSpec.model_validate(SPEC), ctx)
    assert (decision.reason, decision.matched_rules) == ("kill_switch_active", ("kill_switch:all",))


def test_a_configuration_that_does_not_read_at_all_denies_everything(harness: Harness) -> None:
    """Not one row: the reload itself fails. The last snapshot would miss what changed."""
    h = harness
    key = _allowing(h)
    moved = "ALTER TABLE {} RENAME TO {}"
    h.state.db.write_sync(lambda c: c.exec_driver_sql(moved.format("budgets", "budgets_away")))
    switch = h.admin("POST", "/v1/kill-switch", json={"active": True, "scope": "agent:Other"})
    assert switch.status_code == 200, switch.text  # written; the reload after it fails
    body = _act(h, key)
    assert body["status"] == "denied"
    reason = body["decision"]["reason"]
    assert reason.startswith("the stored configuration (version ")
    assert "cannot be read by this server (" in reason
    gateway = h.gateway("GET", "/v1/gateway/config").json()
    assert gateway["kill_switches"][0] == {
        "scope": "all", "target": None, "reason": reason, "unreadable": True}  # fmt: skip
    assert h.call("GET", "/api/health").json()["config"] == {"status": "degraded", "unreadable": 1}

    h.state.db.write_sync(lambda c: c.exec_driver_sql(moved.format("budgets_away", "budgets")))
    h.create_agent("Third")  # the next change reads it all again
    assert _act(h, key)["status"] == "allowed"
    active = h.admin("GET", "/v1/kill-switch").json()["active"]
    assert [(k["scope"], k["target"]) for k in active] == [("agent", "Other")]


@pytest.mark.parametrize(
    ("setting", "text", "said"),
    [("metrics_public", "{", "Expecting property name"),  # not JSON
     ("metrics_public", '"yes"', "valid boolean"),  # JSON, not what PATCH /settings writes
     ("approval_timeout_seconds", '"600"', "valid integer"),
     ("approval_timeout_seconds", "0", "greater than or equal to 1"),
     ("default_enforcement_level", '"L1"', "'monitor', 'soft_enforce' or 'full_enforce'"),
     ("slack_approvers", '["U123"]', "valid dictionary"),
     ("llm_prices", '{"gpt-x": {"input": -1, "output": 1}}', "`gpt-x.input`")],
)  # fmt: skip
def test_an_unreadable_setting_denies_everything_until_it_is_set_again(
    harness: Harness, setting: str, text: str, said: str
) -> None:
    """A setting the routes would never write (a hand edit, another version) used to fail the
    whole reload (not JSON) or be served as it was, to fail later where it is read (a 500 on
    the settings page, a timeout of "600"). Now the setting alone is set aside: its default
    is used, every action is denied naming it, and writing it again is the way out."""
    h = harness
    key = _allowing(h)
    row = settings_table.c.key == setting
    h.state.db.write_sync(lambda c: c.execute(settings_table.delete().where(row)))
    h.state.db.write_sync(
        lambda c: c.execute(settings_table.insert().values(key=setting, value=text))
    )
    created = h.admin("POST", "/v1/agents", json={"name": "Second"})  # and a reload
    assert created.status_code == 201, created.text
    body = _act(h, key)
    assert body["status"] == "denied"
    reason = body["decision"]["reason"]
    assert f"stored setting `{setting}` cannot be read" in reason
    assert said in reason
    assert h.call("GET", "/api/health").json()["config"] == {"status": "degraded", "unreadable": 1}
    shown = h.admin("GET", "/v1/settings")
    assert shown.status_code == 200, shown.text  # the defaults, not a 500
    assert h.admin("GET", "/v1/llm-prices").status_code == 200

    fixes = {
        "metrics_public": ("PATCH", "/v1/settings", {"metrics_public": False}),
        "approval_timeout_seconds": ("PATCH", "/v1/settings", {"approval_timeout_seconds": 600}),
        "default_enforcement_level": ("PATCH", "/v1/settings", {"default_enforcement_level": "L1"}),
        "slack_approvers": ("PATCH", "/v1/settings", {"slack_approvers": {}}),
        "llm_prices": ("PUT", "/v1/llm-prices", {"prices": {"*": {"input": 1, "output": 2}}}),
    }
    method, path, fix = fixes[setting]
    assert h.admin(method, path, json=fix).status_code == 200
    assert _act(h, key)["status"] == "allowed"
    assert h.call("GET", "/api/health").json()["config"] == {"status": "ok", "unreadable": 0}
