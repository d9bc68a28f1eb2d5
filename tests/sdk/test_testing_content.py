"""agentfirewall.testing decides an action as the control plane does: content guardrails
(the action's strings scanned, the parameters its connector declares base64-encoded decoded
too), a ``redact`` rule refusing in SDK mode, and build aliases. Before, FirewallTransport
ran the bare engine: a private key in the parameters was allowed where the server denies
it, and `payment.transfer.initiate` escaped a rule on `stripe.transfer.*`.
tests/server/test_content_parity.py compares its answers with the server's."""

from __future__ import annotations

import base64

from pydantic import JsonValue

from agentfirewall.decisions import Decision
from agentfirewall.policy import AccessRule
from agentfirewall.testing import FirewallTransport

AWS_KEY = "AKIA" + "Q7RZ4XMPL2VN5KWD"  # the aws_access_key detector's shape
KEY_MATERIAL = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC"
PEM = f"-----BEGIN PRIVATE KEY-----\n{KEY_MATERIAL}\n-----END PRIVATE KEY-----"
POLICY = """\
name: content
rules:
  - name: no-private-keys
    conditions: [{field: content.secrets, operator: contains, value: private_key}]
    decision: deny
  - name: redact-aws-keys
    conditions: [{field: content.secrets, operator: contains, value: aws_access_key}]
    decision: redact
"""


def test_a_secret_is_denied_and_a_redact_rule_refuses() -> None:
    firewall = FirewallTransport(policies=[POLICY])
    with firewall.client() as tf:
        denied = tf.request_action("slack.message.post", parameters={"text": f"key {PEM}"})
        refused = tf.request_action("slack.message.post", parameters={"text": f"id {AWS_KEY}"})
        dry = tf.dry_run("slack.message.post", parameters={"text": f"id {AWS_KEY}"})
        clean = tf.request_action("slack.message.post", parameters={"text": "hello"})
    assert denied.status == "denied"
    assert denied.decision.matched_rules == ("content/no-private-keys",)
    assert "content: private_key at parameters.text+4" in denied.decision.reason
    assert refused.status == "denied"
    assert refused.decision.matched_rules == ("content/redact-aws-keys",)
    assert "cannot be redacted" in refused.decision.reason
    assert dry.decision == refused.decision  # dry-run answers as request_action decides
    assert clean.status == "allowed"
    for result in (denied, refused, dry):  # where the detectors fired, never the text
        assert KEY_MATERIAL not in result.decision.reason
        assert AWS_KEY not in result.decision.reason


def test_a_file_sent_base64_encoded_is_scanned_decoded() -> None:
    """`github.file.create` carries its file base64-encoded in `content` (the contents API)."""
    firewall = FirewallTransport(policies=[POLICY])

    def create(text: str) -> Decision:
        content = base64.b64encode(text.encode()).decode()
        parameters: dict[str, JsonValue] = {"path": "id", "message": "m", "content": content}
        with firewall.client() as tf:
            return tf.check("github.file.create", target="o/r", parameters=parameters)

    denied = create(PEM)
    assert denied.outcome == "deny"
    assert "content: private_key at parameters.content(base64)+0" in denied.reason
    assert create("print('hello')\n").outcome == "allow"


def test_a_build_alias_is_decided_as_the_action_it_runs_as() -> None:
    rule = AccessRule("test-agent", "stripe", "stripe.transfer.*", "deny")
    firewall = FirewallTransport(access_rules=[rule])
    with firewall.client() as tf:
        denied = tf.request_action("payment.transfer.initiate", provider="stripe",
                                   parameters={"amount": 100, "destination": "acct_x"})  # fmt: skip
    assert denied.status == "denied"
    assert "the action `payment.transfer.initiate` runs as" in denied.decision.reason


def test_a_rule_on_the_connector_reads_the_actions_provider() -> None:
    policy = """\
name: by-connector
rules:
  - name: no-slack
    conditions: [{field: context.connector, operator: equals, value: slack}]
    decision: deny
"""
    with FirewallTransport(policies=[policy]).client() as tf:
        assert tf.request_action("slack.message.post", provider="slack").status == "denied"


def test_an_action_is_shown_with_each_detection_masked() -> None:
    """`GET /actions/{id}` echoed the spec as sent, the secret a detector found in it too;
    the server shows it masked (never the text), and so does the transport now."""
    firewall = FirewallTransport(policies=[POLICY])
    with firewall.client() as tf:
        refused = tf.request_action("slack.message.post", parameters={"text": f"id {AWS_KEY}"})
        shown = tf.get_action(refused.action_request_id)
    assert shown.action_spec["parameters"] == {"text": "id [REDACTED:aws_access_key]"}
    assert shown.approval is None
