"""A kill switch on a configured connector's name or id stops the SDK actions it executes.

`connector:gh-prod` (a GitHub connector's name) was accepted, and the gateway refused the
traffic through that connector, but an SDK action on `github` was decided `allowed` and
executed through the same connector's credential: the SDK side compared a switch's target
with the action's provider (the type) only. Now the control plane, which executes an SDK
action through the configured connector(s) of its provider's type, holds a switch on the
type, the id or the name of any of them as covering it: deciding (and the dry run), a token
handed by `/wait` or an `Idempotency-Key` replay, the execute (from the snapshot, and from
the store in the claim), approving and the sweep of pending approvals (from the store).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Connection

from agentfirewall.actions import parse_action_spec
from agentfirewall.policy import Engine
from agentfirewall.policy.permissions import AccessRule, KillSwitch
from agentfirewall_server.approvals import deny_covered
from agentfirewall_server.store.schema import kill_switches
from tests.fakes import FakeUpstreams
from tests.server.conftest import SPEC, Harness
from tests.server.test_execute import _execute
from tests.server.test_suspended_approvals import _gateway_hold

KILLED = "kill_switch_active"
GH = [("github", "conn_gh_1", "gh-prod"), ("github", "conn_gh_2", "gh-staging")]
NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("target", ["gh-prod", "conn_gh_1", "gh-staging", "github"])
def test_the_engine_stops_an_sdk_action_on_a_switch_naming_a_connector_of_its_type(
    target: str,
) -> None:
    spec = parse_action_spec(SPEC)
    allow_all = [AccessRule("*", "*", "*", "allow")]
    chat = [("slack", "conn_slack_1", "chat")]
    engine = Engine(allow_all, (), [KillSwitch("connector", target)], connectors=[*GH, *chat])
    decision = engine.decide(spec, agent="Bot", mode="sdk", now=NOW)
    assert (decision.reason, decision.matched_rules) == (
        KILLED,
        (f"kill_switch:connector:{target}",),
    )
    over = engine.kill_switch_over("Bot", spec)
    assert over is not None
    assert over.kill_switch
    # the gateway decides its traffic by the connector it went through (`kill_switch_for`)
    if target != "github":
        assert engine.decide(spec, agent="Bot", mode="proxy", now=NOW, connector="github").allowed
    # a connector of another type stops nothing of GitHub's
    other = Engine(allow_all, (), [KillSwitch("connector", "chat")], connectors=[*GH, *chat])
    assert other.decide(spec, agent="Bot", mode="sdk", now=NOW).allowed
    assert other.kill_switch_over("Bot", spec) is None


def _gh_prod(h: Harness, fakes: FakeUpstreams) -> dict[str, Any]:
    made = h.admin("POST", "/v1/connectors", json={"type": "github", "name": "gh-prod",
                   "token": "ghp_secret_value", "base_url": fakes["github"].http_url})  # fmt: skip
    assert made.status_code == 201, made.text
    row: dict[str, Any] = made.json()
    return row


def _needs_approval(h: Harness) -> None:
    rule = {"agent": "Bot", "connector": "github", "action_pattern": "github.issue.*",
            "decision": "require_approval"}  # fmt: skip
    assert h.admin("POST", "/v1/permissions", json=rule).status_code == 200


ISSUE = {**SPEC, "type": "github.issue.comment", "parameters": {"issue_number": 1, "body": "x"}}


@pytest.mark.parametrize("by", ["name", "id"])
def test_a_switch_on_the_connectors_name_or_id_stops_sdk_actions_at_every_entry(
    harness: Harness, fakes: FakeUpstreams, by: str
) -> None:
    h, github = harness, fakes["github"]
    github.clear()
    target = _gh_prod(h, fakes)[by]
    key = h.create_agent("Bot")
    _needs_approval(h)
    before = h.agent(key, "POST", "/v1/actions", json={"action_spec": SPEC},
                     headers={"Idempotency-Key": "k1"}).json()  # fmt: skip
    held = h.agent(key, "POST", "/v1/actions", json={"action_spec": ISSUE}).json()
    assert (before["status"], held["status"]) == ("allowed", "pending_approval")
    proxy = _gateway_hold(h, "Bot")["id"]  # a gateway's: the connector it went through unknown

    switched = h.admin(
        "POST", "/v1/kill-switch", json={"active": True, "scope": f"connector:{target}"}
    )
    assert switched.status_code == 200, switched.text
    assert switched.json()["approvals_denied"] == 1  # the sweep: the SDK action's approval
    assert h.admin("GET", f"/v1/approvals/{held['approval']['id']}").json()["status"] == "denied"
    assert h.admin("GET", f"/v1/approvals/{proxy}").json()["status"] == "pending"

    label = f"kill_switch:connector:{target}"
    decided = h.agent(key, "POST", "/v1/actions", json={"action_spec": SPEC}).json()
    assert (decided["status"], decided["decision"]["reason"]) == ("denied", KILLED)
    assert decided["decision"]["matched_rules"] == [label]
    dry = h.agent(key, "POST", "/v1/actions/dry-run", json={"action_spec": SPEC}).json()
    assert (dry["status"], dry["explanation"][0]["result"]) == ("denied", "active")
    path = f"/v1/actions/{before['action_request_id']}"
    waited = h.agent(key, "GET", path + "/wait?timeout=0").json()
    assert (waited["status"], waited["decision_token"]) == ("denied", None)
    replayed = h.agent(key, "POST", "/v1/actions", json={"action_spec": SPEC},
                       headers={"Idempotency-Key": "k1"}).json()  # fmt: skip
    assert (replayed["status"], replayed["decision_token"]) == ("denied", None)
    run = _execute(h, key, before["action_request_id"], before["decision_token"])
    assert (run.status_code, run.json()["error"]) == (403, KILLED), run.text
    assert github.received("PUT") == []

    # lifted: the action allowed before it runs with its token (it stayed unspent)
    assert h.admin("POST", "/v1/kill-switch", json={"active": False}).status_code == 200
    run = _execute(h, key, before["action_request_id"], before["decision_token"])
    assert run.status_code == 200, run.text
    assert len(github.received("PUT")) == 1


def _stored_switch(target: str) -> Any:
    """The switch as another replica stores it: this replica's snapshot has not heard."""

    def job(conn: Connection) -> None:
        conn.execute(kill_switches.insert().values(
            scope="connector", target=target, reason="incident", activated_by="replica-a",
            activated_at=0.0))  # fmt: skip

    return job


@pytest.mark.parametrize("by", ["name", "id"])
def test_the_store_read_of_a_connector_switch_knows_its_name_and_id(
    harness: Harness, fakes: FakeUpstreams, by: str
) -> None:
    """The claim, approving and the sweep read the switches and the connectors from the
    store, in their transaction: a snapshot that has not heard of the switch decides none."""
    h, github = harness, fakes["github"]
    github.clear()
    target = _gh_prod(h, fakes)[by]
    key = h.create_agent("Bot")
    _needs_approval(h)
    before = h.agent(key, "POST", "/v1/actions", json={"action_spec": SPEC}).json()
    held = h.agent(key, "POST", "/v1/actions", json={"action_spec": ISSUE}).json()
    proxy = _gateway_hold(h, "Bot")["id"]
    version = h.state.snapshot.version
    h.state.db.write_sync(_stored_switch(target))
    assert h.state.snapshot.version == version

    run = _execute(h, key, before["action_request_id"], before["decision_token"])
    assert (run.status_code, run.json()["error"]) == (403, KILLED), run.text
    assert f"kill_switch:connector:{target}" in run.json()["message"]
    assert github.received("PUT") == []
    approving = h.admin("POST", f"/v1/approvals/{held['approval']['id']}/approve")
    assert approving.status_code == 409, approving.text
    assert approving.json()["kill_switch"] == f"connector:{target}"

    denied, _ = h.state.db.write_sync(lambda c: deny_covered(c, time.time()))
    assert [row["id"] for row in denied] == [held["approval"]["id"]]  # not the gateway's
    assert h.admin("GET", f"/v1/approvals/{proxy}").json()["status"] == "pending"
