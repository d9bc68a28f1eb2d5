"""SDK mode: what content detectors found in an action is never shown — not in its approval
(`GET /approvals`, what `tf approvals show` and Slack read), not in `GET /actions/{id}` or
its `/wait` — while the approval still binds the action as requested and Mode A executes
the real parameters (docs/policies.md, Content guardrails: "the marker, never the text")."""

from __future__ import annotations

import base64
from typing import Any

from agentfirewall.actions import parse_action_spec
from tests.fakes import FakeUpstreams
from tests.server.conftest import Harness

AWS_KEY = "AKIA" + "Q7RZ4XMPL2VN5KWD"
KEY_MATERIAL = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC"
PEM = f"-----BEGIN PRIVATE KEY-----\n{KEY_MATERIAL}\n-----END PRIVATE KEY-----"
STRIPE_KEY = "sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc"
POLICY = """\
name: guardrails
rules:
  - name: no-stripe-keys
    conditions: [{field: content.secrets, operator: contains, value: stripe_key}]
    decision: deny
  - name: hold-secrets
    conditions: [{field: content.secrets, operator: exists}]
    decision: require_approval
"""


def _comment(text: str) -> dict[str, Any]:
    return {"type": "github.issue.comment",
            "resource": {"provider": "github", "account": "acme", "target": "acme/api"},
            "parameters": {"issue_number": 1, "body": text}}  # fmt: skip


def _shows_nothing_found(answer: Any) -> None:
    assert answer.status_code == 200, answer.text
    for secret in (AWS_KEY, KEY_MATERIAL, STRIPE_KEY):
        assert secret not in answer.text


def _guarded(h: Harness, fakes: FakeUpstreams) -> str:
    connector = {"type": "github", "token": "ghp_secret_value",
                 "base_url": fakes["github"].http_url}  # fmt: skip
    assert h.admin("POST", "/v1/connectors", json=connector).status_code == 201
    assert h.admin("POST", "/v1/policies", json={"document": POLICY}).status_code == 201
    return h.create_agent("Bot", sdk_default="allow")


def test_a_held_action_shows_markers_binds_and_executes_the_real_parameters(
    harness: Harness, fakes: FakeUpstreams
) -> None:
    h = harness
    key = _guarded(h, fakes)
    fakes["github"].clear()
    spec = _comment(f"key {AWS_KEY} and {PEM}")
    held = h.agent(key, "POST", "/v1/actions", json={"action_spec": spec})
    _shows_nothing_found(held)
    assert held.json()["status"] == "pending_approval"
    action_id = held.json()["action_request_id"]

    listed = h.admin("GET", "/v1/approvals")
    _shows_nothing_found(listed)
    (approval,) = listed.json()["approvals"]
    shown = "key [REDACTED:aws_access_key] and [REDACTED:private_key]"
    assert approval["action_spec"]["parameters"]["body"] == shown
    assert approval["action_hash"] == parse_action_spec(spec).action_hash  # the real action
    _shows_nothing_found(h.admin("GET", f"/v1/approvals/{approval['id']}"))
    for path in (f"/v1/actions/{action_id}", f"/v1/actions/{action_id}/wait?timeout=0"):
        seen = h.admin("GET", path)
        _shows_nothing_found(seen)
        assert seen.json()["action_spec"]["parameters"]["body"] == shown

    approved = h.admin("POST", f"/v1/approvals/{approval['id']}/approve", json={})
    assert approved.status_code == 200, approved.text
    waited = h.agent(key, "GET", f"/v1/actions/{action_id}/wait?timeout=0")
    _shows_nothing_found(waited)
    token = waited.json()["decision_token"]
    assert token
    done = h.agent(key, "POST", f"/v1/actions/{action_id}/execute",
                   json={"decision_token": token})  # fmt: skip
    assert done.status_code == 200, done.text
    (sent,) = fakes["github"].received("POST", "/repos/acme/api/issues/1/comments")
    assert sent.json() == {"body": f"key {AWS_KEY} and {PEM}"}  # what was requested
    _shows_nothing_found(h.admin("GET", f"/v1/actions/{action_id}"))


def test_a_denied_action_shows_markers_and_a_clean_one_shows_its_parameters(
    harness: Harness, fakes: FakeUpstreams
) -> None:
    h = harness
    key = _guarded(h, fakes)
    denied = h.agent(key, "POST", "/v1/actions",
                     json={"action_spec": _comment(f"pay with {STRIPE_KEY}")})  # fmt: skip
    _shows_nothing_found(denied)
    assert denied.json()["status"] == "denied"
    seen = h.admin("GET", f"/v1/actions/{denied.json()['action_request_id']}")
    _shows_nothing_found(seen)
    assert seen.json()["action_spec"]["parameters"]["body"] == "pay with [REDACTED:stripe_key]"
    clean = h.agent(key, "POST", "/v1/actions", json={"action_spec": _comment("all good")})
    assert clean.json()["status"] == "allowed"
    seen = h.admin("GET", f"/v1/actions/{clean.json()['action_request_id']}")
    assert seen.json()["action_spec"]["parameters"]["body"] == "all good"


def test_a_held_file_sent_base64_encoded_is_shown_redacted_inside(
    harness: Harness, fakes: FakeUpstreams
) -> None:
    """A key in a file `github.file.create` carries base64-encoded (its `content`): the
    approval shows the file redacted and re-encoded, never the key's base64."""
    h = harness
    key = _guarded(h, fakes)
    content = base64.b64encode(f"deploy:\n{PEM}\n".encode()).decode()
    spec = {"type": "github.file.create",
            "resource": {"provider": "github", "account": "acme", "target": "acme/api"},
            "parameters": {"path": "key.pem", "message": "m", "content": content}}  # fmt: skip
    held = h.agent(key, "POST", "/v1/actions", json={"action_spec": spec})
    assert held.json()["status"] == "pending_approval", held.text
    listed = h.admin("GET", "/v1/approvals")
    (approval,) = listed.json()["approvals"]
    shown = approval["action_spec"]["parameters"]["content"]
    assert base64.b64decode(shown) == b"deploy:\n[REDACTED:private_key]\n"
    assert content not in listed.text
    assert content[8:40] not in listed.text
    assert approval["action_hash"] == parse_action_spec(spec).action_hash  # the real action
    seen = h.admin("GET", f"/v1/actions/{held.json()['action_request_id']}")
    assert content[8:40] not in seen.text
