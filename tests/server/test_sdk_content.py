"""Content guardrails in SDK mode (issue 23's left-out): when a policy reads `content.*`, the
strings of an SDK action (every string in `parameters`, at any depth, and the resource
names) are scanned as the gateway scans a request; a `redact` rule, which cannot rewrite
what the agent itself sends, refuses instead. Never the detected text in an answer."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzzscale import examples
from tests.server.conftest import Harness
from tests.server.sdkcontent import AWS_KEY, NO_SECRETS, content_policy, sdk_bot

CARD = "4111 1111 1111 1111"  # a Luhn-valid card number
REDACT_CARDS = """\
  - name: redact-cards
    conditions: [{field: content.pii, operator: contains, value: card_number}]
    decision: redact
"""
POLICY = content_policy("content", NO_SECRETS, REDACT_CARDS)


@pytest.fixture
def guarded(harness_factory: Any) -> tuple[Harness, str]:
    # a property test below asks once per example: more than the default 60 a minute
    # when the examples are scaled up (tests/fuzzscale.py)
    harness: Harness = harness_factory(rate_limit_per_minute=100_000)
    return harness, sdk_bot(harness, POLICY)


def _ask(h: Harness, key: str, parameters: dict[str, Any], **resource: str) -> dict[str, Any]:
    spec = {"type": "slack.message.post",
            "resource": {"provider": "slack", **resource}, "parameters": parameters}  # fmt: skip
    answer = h.agent(key, "POST", "/v1/actions", json={"action_spec": spec})
    assert answer.status_code == 200, answer.text
    assert AWS_KEY not in answer.text
    assert CARD not in answer.text
    body: dict[str, Any] = answer.json()
    return body


def test_a_secret_in_the_parameters_is_denied_and_located(guarded: tuple[Harness, str]) -> None:
    h, key = guarded
    denied = _ask(h, key, {"channel": "C1", "blocks": [{"text": f"key: {AWS_KEY}"}]})
    assert denied["status"] == "denied"
    assert denied["decision"]["matched_rules"] == ["content/no-secrets"]
    assert "content: aws_access_key at parameters.blocks.0.text+5" in denied["decision"]["reason"]
    assert _ask(h, key, {"channel": "C1", "text": "hello"})["status"] == "allowed"
    in_target = _ask(h, key, {"text": "hi"}, target=f"https://hooks.example.com/{AWS_KEY}")
    assert in_target["status"] == "denied"
    assert "at resource.target+" in in_target["decision"]["reason"]


def test_a_redact_rule_refuses_what_it_cannot_redact(guarded: tuple[Harness, str]) -> None:
    h, key = guarded
    refused = _ask(h, key, {"channel": "C1", "text": f"card {CARD}"})
    assert refused["status"] == "denied"
    assert refused["decision"]["matched_rules"] == ["content/redact-cards"]
    assert "cannot be redacted" in refused["decision"]["reason"]
    assert "card_number at parameters.text+5" in refused["decision"]["reason"]
    dry = h.agent(key, "POST", "/v1/actions/dry-run",
                  json={"action_spec": {"type": "slack.message.post", "resource": {
                      "provider": "slack"}, "parameters": {"text": f"card {CARD}"}}})  # fmt: skip
    assert dry.json()["status"] == "denied"
    assert CARD not in dry.text


def test_monitor_records_what_it_would_deny(harness: Harness) -> None:
    harness.admin("POST", "/v1/policies", json={"document": POLICY}).raise_for_status()
    key = harness.create_agent("Watcher", sdk_default="allow", enforcement_level="monitor")
    answer = _ask(harness, key, {"text": f"card {CARD}"})
    assert answer["status"] == "allowed"
    assert answer["decision"]["would_outcome"] == "would_deny"


def test_a_file_sent_base64_encoded_is_scanned_decoded(guarded: tuple[Harness, str]) -> None:
    """`github.file.create` carries its file base64-encoded in `content` (the contents API):
    scanned decoded, as the gateway scans that field; the alias `github.file.commit` takes
    the text itself (the control plane encodes it), scanned as it is."""
    h, key = guarded
    file = f"[default]\naws_access_key_id = {AWS_KEY}\n"

    def ask(action: str, content: str) -> dict[str, Any]:
        spec = {"type": action, "resource": {"provider": "github", "target": "o/r"},
                "parameters": {"path": "creds", "message": "m", "content": content}}  # fmt: skip
        answer = h.agent(key, "POST", "/v1/actions", json={"action_spec": spec})
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body

    denied = ask("github.file.create", base64.b64encode(file.encode()).decode())
    assert denied["status"] == "denied"
    assert "aws_access_key at parameters.content(base64)+30" in denied["decision"]["reason"]
    plain = ask("github.file.commit", file)
    assert plain["status"] == "denied"
    assert "aws_access_key at parameters.content+30" in plain["decision"]["reason"]
    clean = base64.b64encode(b"print('hello')\n").decode()
    assert ask("github.file.create", clean)["status"] == "allowed"


_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)
_JSON: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers() | _TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
    max_leaves=8,
)


@settings(
    max_examples=examples(40),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(parameters=st.dictionaries(_TEXT, _JSON, max_size=3), where=st.integers(0, 5))
def test_a_secret_anywhere_in_the_parameters_is_found(
    guarded: tuple[Harness, str], parameters: dict[str, Any], where: int
) -> None:
    """Put the key in any place of any JSON: the action is denied, whatever surrounds it."""
    h, key = guarded
    holder: Any = parameters
    path = ["parameters"]
    for _ in range(where):  # walk down into a random existing container, if any
        children = list(holder.items()) if isinstance(holder, dict) else list(enumerate(holder))
        nested = [(k, v) for k, v in children if isinstance(v, dict | list)]
        if not nested:
            break
        k, holder = nested[0]
        path.append(str(k))
    if isinstance(holder, dict):
        holder["planted"] = f" {AWS_KEY} "
    else:
        holder.append(f" {AWS_KEY} ")
    denied = _ask(h, key, parameters)
    assert denied["status"] == "denied", denied


BUDGET_POLICY = """\
name: hold-when-low
scope: {action_types: [slack.message.post]}
rules:
  - name: low-budget
    decision: require_approval
    conditions:
      all:
        - {field: budget.slack-daily.remaining, operator: lt, value: 2}
"""


def test_a_budget_condition_reads_the_budget_in_sdk_mode(harness: Harness) -> None:
    """`budget.<name>.remaining` in a policy condition reads the budget's state on the SDK
    path too (it read as missing there before, so the rule never held anything)."""
    harness.admin("POST", "/v1/policies", json={"document": BUDGET_POLICY}).raise_for_status()
    budget = {"agents": ["Spender"], "connector": "slack", "action": "slack.*",
              "measure": "count", "limit": 3}  # fmt: skip
    assert harness.admin("PUT", "/v1/budgets/slack-daily", json=budget).status_code == 201
    key = harness.create_agent("Spender", sdk_default="allow")
    statuses = [_ask(harness, key, {"text": str(n)})["status"] for n in range(3)]
    # 3 left, then 2 (not below 2): allowed; then 1 left: the rule holds it
    assert statuses == ["allowed", "allowed", "pending_approval"]
    held = _ask(harness, key, {"text": "again"})
    assert held["decision"]["matched_rules"] == ["hold-when-low/low-budget"]
