"""An SDK action named by a build alias is decided under the name of the action it runs
as too: `payment.transfer.initiate` (provider stripe) is executed as
`stripe.transfer.create`, so a permission or policy on `stripe.transfer.*` holds it.
Before, it was allowed with "No deny rules matched" and executed."""

from __future__ import annotations

from typing import Any

import pytest

from agentfirewall.actions import parse_action_spec
from agentfirewall.connectors import get_connector, performed_as
from tests.server.conftest import Harness

TRANSFER = {
    "type": "payment.transfer.initiate",
    "resource": {"provider": "stripe"},
    "parameters": {"amount": 5_000_000, "currency": "usd", "destination": "acct_x"},
}
COMMENT = {
    "type": "github.pr.comment",
    "resource": {"provider": "github", "target": "acme/api"},
    "parameters": {"pr_number": 7, "body": "hi"},
}


def _permit(harness: Harness, connector: str, pattern: str, decision: str) -> None:
    rule = {"agent": "Bot", "connector": connector, "action_pattern": pattern, "decision": decision}
    assert harness.admin("POST", "/v1/permissions", json=rule).status_code in (200, 201)


def _request(harness: Harness, key: str, spec: dict[str, Any]) -> dict[str, Any]:
    response = harness.agent(key, "POST", "/v1/actions", {"action_spec": spec})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.mark.parametrize(
    ("spec", "connector", "pattern"),
    [(TRANSFER, "stripe", "stripe.transfer.*"), (COMMENT, "github", "github.issue.comment")],
)
@pytest.mark.parametrize(
    ("decision", "status"), [("deny", "denied"), ("require_approval", "pending_approval")]
)
def test_a_permission_on_the_action_performed_holds_its_alias(
    harness: Harness, spec: dict[str, Any], connector: str, pattern: str, decision: str, status: str
) -> None:
    key = harness.create_agent("Bot")
    _permit(harness, connector, pattern, decision)
    body = _request(harness, key, spec)
    assert body["status"] == status
    assert body["decision_token"] is None
    assert "the action `" in body["decision"]["reason"]
    dry = harness.agent(key, "POST", "/v1/actions/dry-run", {"action_spec": spec})
    assert dry.status_code == 200, dry.text  # the dry run answers as request_action decides
    assert dry.json()["decision"]["outcome"] == body["decision"]["outcome"]


def test_a_policy_scoped_to_the_action_performed_holds_its_alias(harness: Harness) -> None:
    key = harness.create_agent("Bot")
    policy = (
        "name: big-transfers\nscope: {action_types: ['stripe.transfer.*']}\n"
        "rules:\n- name: over-1000\n  decision: deny\n"
        "  conditions: [{field: parameters.amount, operator: gt, value: 100000}]\n"
    )
    assert harness.admin("POST", "/v1/policies", {"document": policy}).status_code == 201
    body = _request(harness, key, TRANSFER)
    assert body["status"] == "denied"
    assert "big-transfers/over-1000" in body["decision"]["matched_rules"]
    small = {**TRANSFER, "parameters": {**TRANSFER["parameters"], "amount": 500}}
    assert _request(harness, key, small)["status"] == "allowed"


def test_the_alias_keeps_what_was_granted_under_its_own_name(harness: Harness) -> None:
    """An agent whose default is deny, allowed `payment.*`: the performed name has no rule
    of its own, and a default answer for it does not overrule the grant."""
    key = harness.create_agent("Bot", sdk_default="deny")
    _permit(harness, "stripe", "payment.*", "allow")
    assert _request(harness, key, TRANSFER)["status"] == "allowed"


def test_performed_as_names_every_build_alias() -> None:
    for connector in ("stripe", "github"):
        for alias, built in get_connector(connector).build_aliases.items():  # type: ignore[attr-defined]
            spec = parse_action_spec({"type": alias, "resource": {"provider": connector}})
            performed = performed_as(spec)
            assert performed is not None
            assert performed.type == built.action
    plain = parse_action_spec(
        {"type": "stripe.transfer.create", "resource": {"provider": "stripe"}}
    )
    assert performed_as(plain) is None
