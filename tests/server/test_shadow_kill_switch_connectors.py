"""The shadow configuration sees a kill switch on a connector's name or id as live does.

Since ea826ba a kill switch on a configured connector's name (`connector:gh-prod`) or id
stops the SDK actions executed through it: the live engine is built with the connectors.
The shadow engine was built without them, so while such a switch was on, every SDK action
through that connector was recorded as a divergence (live: denied by the switch; shadow:
decided by the rules, `allow` or `require_approval`), listed by `tf logs --diverged`, `tf
policy shadow list` and the dashboard. The shadow engine is now built from the live one's
inputs but the policies and the permission set: the same kill switches and connectors, so
a kill switch never shows as a divergence, and the shadow verdict is the switch's deny.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, select

from agentfirewall import AgentFirewall
from agentfirewall_server.store.db import normalize_url
from agentfirewall_server.store.schema import action_requests
from tests.fuzzscale import examples
from tests.livesrv import LiveServer
from tests.server.conftest import SPEC, Harness

KILLED = "kill_switch_active"
#: a rollout of a rule for merges: held for a human in the shadow, allowed live
HOLD_MERGES = """\
name: hold-merges
scope: {action_types: ["github.pr.*"]}
rules:
  - {name: merges, decision: require_approval}
"""


def _ok(response: Any) -> Any:
    assert response.status_code in (200, 201), response.text
    return response.json()


def _github(admin: Any, name: str) -> dict[str, Any]:
    """A configured GitHub connector `name` (the SDK's `github` actions run through it)."""
    body = {"type": "github", "name": name, "token": "ghp_not_a_real_token"}
    row: dict[str, Any] = _ok(admin("POST", "/v1/connectors", json=body))
    return row


def _allow_github(admin: Any, agent: str) -> None:
    rule = {"agent": agent, "connector": "github", "action_pattern": "github.*",
            "decision": "allow"}  # fmt: skip
    _ok(admin("POST", "/v1/permissions", json=rule))


def _shadow_judged(database_url: str, action_id: str) -> tuple[Any, Any, Any]:
    """The stored shadow columns of an SDK action: (decision, rule, diverged)."""
    engine = create_engine(normalize_url(database_url))
    try:
        with engine.connect() as conn:
            row = conn.execute(
                select(action_requests.c.shadow_decision, action_requests.c.shadow_rule,
                       action_requests.c.shadow_diverged)
                .where(action_requests.c.id == action_id)
            ).one()  # fmt: skip
    finally:
        engine.dispose()
    return row.shadow_decision, row.shadow_rule, row.shadow_diverged


def _shadow_counted(server: LiveServer) -> dict[str, float]:
    """``aaf_shadow_decisions_total`` of SDK actions, by ``live/shadow``."""
    text = server.admin("GET", "/metrics").text
    counted: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("aaf_shadow_decisions_total{") and 'source="sdk"' in line:
            labels, value = line.rsplit(" ", 1)
            live = labels.split('live="', 1)[1].split('"', 1)[0]
            shadow = labels.split('shadow="', 1)[1].split('"', 1)[0]
            counted[f"{live}/{shadow}"] = float(value)
    return counted


@pytest.fixture
def server(tmp_path: Path, database_url: str) -> Iterator[LiveServer]:
    running = LiveServer.start(tmp_path / "tf", env={"AGENTFIREWALL_DATABASE_URL": database_url})
    try:
        yield running
    finally:
        running.stop()


@pytest.mark.parametrize("by", ["name", "id"])
def test_a_switch_on_a_connectors_name_or_id_is_no_shadow_divergence(
    server: LiveServer, database_url: str, by: str
) -> None:
    key = server.create_agent("Bot")
    _allow_github(server.admin, "Bot")
    target = _github(server.admin, "gh-prod")[by]
    _ok(server.admin("POST", "/v1/shadow/policies", json={"document": HOLD_MERGES}))
    _ok(server.admin("POST", "/v1/kill-switch",
                     json={"active": True, "scope": f"connector:{target}"}))  # fmt: skip

    with AgentFirewall(api_key=key, base_url=server.api_url) as firewall:
        stopped = firewall.request_action(
            "github.pr.merge", provider="github", target="acme/api", parameters={"pull_number": 1}
        )
        assert (stopped.status, stopped.decision.reason) == ("denied", KILLED)
        listed = server.admin("GET", "/v1/traffic", params={"shadow": "diverged"}).json()
        assert listed["traffic"] == []  # `tf logs --diverged`, `tf policy shadow list`
        judged = _shadow_judged(database_url, stopped.action_request_id)
        assert judged == ("deny", f"kill_switch:connector:{target}", False)
        assert _shadow_counted(server) == {"deny/deny": 1}

        # lifted: the shadow policy is judged as before (held in the shadow, allowed live)
        _ok(server.admin("POST", "/v1/kill-switch", json={"active": False}))
        allowed = firewall.request_action(
            "github.pr.merge", provider="github", target="acme/api", parameters={"pull_number": 1}
        )
    assert allowed.status == "allowed"
    listed = server.admin("GET", "/v1/traffic", params={"shadow": "diverged"}).json()
    assert [row["request_id"] for row in listed["traffic"]] == [allowed.action_request_id]
    judged = _shadow_judged(database_url, allowed.action_request_id)
    assert judged == ("require_approval", "hold-merges/merges", True)


# -- which switches, which shadow rule: the shadow never disagrees with a kill switch ----

#: the switch targets: the connector the action runs through (by name, by id, its type), a
#: second connector of its type, and a connector of another type (which stops nothing here)
TARGETS = ("gh-prod", "gh-prod-id", "github", "gh-staging", "chat")
COVERING = frozenset({"gh-prod", "gh-prod-id", "github", "gh-staging"})
GLOBS = ("github.pr.*", "github.*", "*", "crm.*")
DECISIONS = ("deny", "require_approval", "allow")

#: the engines' inputs are read by the same code on either store (the live test above runs
#: on both); the property runs on SQLite only, for its many examples
sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def configured(harness: Harness) -> tuple[Harness, str, dict[str, str]]:
    """A harness with two GitHub connectors and a Slack one, and agent Bot allowed
    `github.*`; the agent's key and each target's scope name."""
    h = harness
    key = h.create_agent("Bot", rate_limit_per_minute=1_000_000)  # one request per example
    _allow_github(h.admin, "Bot")
    prod = _github(h.admin, "gh-prod")
    _github(h.admin, "gh-staging")
    _ok(h.admin("POST", "/v1/connectors", json={"type": "slack", "name": "chat",
                                               "token": "xoxb-not-a-real-token"}))  # fmt: skip
    names = {t: t for t in TARGETS} | {"gh-prod-id": prod["id"]}
    return h, key, names


def _shadow_policy(glob: str, decision: str) -> str:
    return (f"name: rollout\nscope: {{action_types: ['{glob}']}}\n"
            f"rules:\n  - {{name: r, decision: {decision}}}\n")  # fmt: skip


@sqlite_only
@settings(
    max_examples=examples(25),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    switched=st.sets(st.sampled_from(TARGETS), max_size=3),
    glob=st.sampled_from(GLOBS),
    decision=st.sampled_from(DECISIONS),
)
def test_the_shadow_verdict_under_any_connector_switches_is_the_live_switchs(
    configured: tuple[Harness, str, dict[str, str]],
    switched: set[str],
    glob: str,
    decision: str,
) -> None:
    h, key, names = configured
    _ok(h.admin("POST", "/v1/shadow/policies", json={"document": _shadow_policy(glob, decision)}))
    for target in sorted(switched):
        _ok(h.admin("POST", "/v1/kill-switch",
                    json={"active": True, "scope": f"connector:{names[target]}"}))  # fmt: skip
    try:
        answer = _ok(h.agent(key, "POST", "/v1/actions", json={"action_spec": SPEC}))
        judged = h.state.db.read_sync(
            lambda c: c.execute(
                select(action_requests).where(action_requests.c.id == answer["action_request_id"])
            ).one()
        )
    finally:
        _ok(h.admin("POST", "/v1/kill-switch", json={"active": False}))

    if switched & COVERING:  # live: stopped by a switch; the shadow: stopped by the same
        assert (answer["status"], answer["decision"]["reason"]) == ("denied", KILLED)
        live_rule = answer["decision"]["matched_rules"][0]
        assert live_rule.startswith("kill_switch:connector:")
        expected = ("deny", live_rule, False)
    else:  # no switch covers it: the shadow policy decides where its glob matches
        assert answer["status"] == "allowed"
        matches = glob != "crm.*"
        shadow = decision if matches else "allow"
        rule = "rollout/r" if matches else answer["decision"]["matched_rules"][0]  # Bot's
        expected = (shadow, rule, shadow != "allow")
    assert (judged.shadow_decision, judged.shadow_rule, judged.shadow_diverged) == expected
