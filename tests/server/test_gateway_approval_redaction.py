"""The Gateway API's approvals for held requests content detectors fired on (``redact``):
recorded with the spec shown with markers, never the text, while every check still reads the
request's own spec — its hash must match it, and a grant's constraints are judged on it (a
constraint that excludes the secret is not fooled by its marker). Single and batch alike.

Also the one limit of an approval's timeout: the gateway's approvals may wait as long as a
policy rule may say (``MAX_APPROVAL_TIMEOUT_SECONDS``), as SDK approvals do.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from agentfirewall.actions import parse_action_spec
from agentfirewall.policy.models import MAX_APPROVAL_TIMEOUT_SECONDS
from agentfirewall_server.actionstore import shown_spec
from tests.server.conftest import Harness

KEY_MATERIAL = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC"
PEM = f"-----BEGIN PRIVATE KEY-----\n{KEY_MATERIAL}\n-----END PRIVATE KEY-----"
SHOWN = "deploy key:\n[REDACTED:private_key]"


def _spec(text: str) -> dict[str, Any]:
    return {"type": "slack.message.send", "resource": {"provider": "slack", "target": "C1"},
            "parameters": {"channel": "C1", "text": text}}  # fmt: skip


def _body(text: str = f"deploy key:\n{PEM}", **extra: Any) -> dict[str, Any]:
    spec = parse_action_spec(_spec(text))
    return {"agent": "Bot", "connector": "slack", "action_spec": spec.to_dict(),
            "action_hash": spec.action_hash, "reason": "held", "redact": True,
            "request": {"method": "POST", "host": "slack.com", "path": "/api/chat.postMessage"},
            **extra}  # fmt: skip


def test_a_redacted_hold_is_shown_with_markers_and_keeps_the_real_hash(harness: Harness) -> None:
    single = harness.gateway("POST", "/v1/gateway/approvals", json=_body())
    assert single.status_code == 200, single.text
    batch = harness.gateway("POST", "/v1/gateway/approvals/batch",
                            json={"approvals": [_body(), _body(f"again:\n{PEM}")]})  # fmt: skip
    assert batch.status_code == 200, batch.text
    made = [single.json(), *batch.json()["approvals"]]
    assert [a["status"] for a in made] == ["pending"] * 3
    listed = harness.admin("GET", "/v1/approvals")
    assert KEY_MATERIAL not in single.text + batch.text + listed.text
    by_id = {a["id"]: a for a in listed.json()["approvals"]}
    texts = [by_id[a["id"]]["action_spec"]["parameters"]["text"] for a in made]
    assert texts == [SHOWN, SHOWN, "again:\n[REDACTED:private_key]"]
    assert by_id[made[0]["id"]]["action_hash"] == _body()["action_hash"]
    plain = harness.gateway("POST", "/v1/gateway/approvals", json=_body(redact=False))
    assert plain.json()["action_spec"]["parameters"]["text"] == f"deploy key:\n{PEM}"


def test_redact_excuses_no_hash_that_is_not_the_specs(harness: Harness) -> None:
    """The hash must be the spec's own: a gateway cannot send the shown spec instead."""
    body = _body()
    shown = {**body, "action_spec": shown_spec(body["action_spec"])}
    single = harness.gateway("POST", "/v1/gateway/approvals", json=shown)
    assert single.status_code == 422
    assert single.json()["field"] == "action_hash"
    batch = harness.gateway("POST", "/v1/gateway/approvals/batch", json={"approvals": [shown]})
    assert batch.json()["approvals"][0]["error"]["field"] == "action_hash"
    assert harness.admin("GET", "/v1/approvals").json()["approvals"] == []


def test_a_grant_judges_the_real_parameters_not_their_markers(harness: Harness) -> None:
    held = harness.gateway("POST", "/v1/gateway/approvals", json=_body("hello", redact=False))
    where = [{"field": "action_spec.parameters.text", "operator": "not_contains",
              "value": "PRIVATE KEY"}]  # fmt: skip
    grant = {"max_uses": 10, "where": where}
    made = harness.admin("POST", f"/v1/approvals/{held.json()['id']}/approve",
                         json={"grant": grant})  # fmt: skip
    assert made.status_code == 200, made.text
    covered = harness.gateway("POST", "/v1/gateway/approvals", json=_body("fine words"))
    assert covered.json()["grant_id"] == made.json()["grant"]["id"]
    # the marker reads `[REDACTED:private_key]`: judged on it, the grant would let it through
    with_key = harness.gateway("POST", "/v1/gateway/approvals", json=_body())
    assert with_key.json()["status"] == "pending"
    assert with_key.json()["action_spec"]["parameters"]["text"] == SHOWN


@pytest.mark.parametrize("route", ["/v1/gateway/approvals", "/v1/gateway/approvals/batch"])
def test_a_gateway_approval_waits_as_long_as_a_policy_may_say(harness: Harness, route: str) -> None:
    def ask(seconds: int) -> Any:
        body = _body("hello", redact=False, timeout_seconds=seconds)
        return harness.gateway("POST", route, json={"approvals": [body]} if "batch" in route
                               else body)  # fmt: skip

    longest = ask(MAX_APPROVAL_TIMEOUT_SECONDS)
    assert longest.status_code == 200, longest.text
    made = longest.json()["approvals"][0] if "batch" in route else longest.json()
    created, expires = (datetime.fromisoformat(made[k]) for k in ("created_at", "expires_at"))
    assert (expires - created).total_seconds() == MAX_APPROVAL_TIMEOUT_SECONDS
    over = ask(MAX_APPROVAL_TIMEOUT_SECONDS + 1)
    assert over.status_code == 422
    assert "timeout_seconds" in over.json()["field"]


def test_an_sdk_approval_waits_as_long_as_a_policy_may_say(harness: Harness) -> None:
    def policy(seconds: int) -> str:
        return ("name: slow\nrules:\n  - name: hold\n    decision: require_approval\n"
                f"    approval: {{timeout_seconds: {seconds}}}\n")  # fmt: skip

    over = harness.admin("POST", "/v1/policies",
                         json={"document": policy(MAX_APPROVAL_TIMEOUT_SECONDS + 1)})  # fmt: skip
    assert over.status_code == 422
    made = harness.admin("POST", "/v1/policies",
                         json={"document": policy(MAX_APPROVAL_TIMEOUT_SECONDS)})  # fmt: skip
    assert made.status_code == 201, made.text
    key = harness.create_agent("Bot", sdk_default="allow")
    held = harness.agent(key, "POST", "/v1/actions", json={"action_spec": _spec("hello")})
    assert held.json()["status"] == "pending_approval"
    (approval,) = harness.admin("GET", "/v1/approvals").json()["approvals"]
    created, expires = (datetime.fromisoformat(approval[k]) for k in ("created_at", "expires_at"))
    assert (expires - created).total_seconds() == MAX_APPROVAL_TIMEOUT_SECONDS
