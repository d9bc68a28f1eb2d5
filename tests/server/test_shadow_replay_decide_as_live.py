"""Shadow mode and replay decide an SDK action as the live path does: under its build alias
(`payment.transfer.initiate` runs as `stripe.transfer.create`, the stricter answer
standing), with the SDK content step (a `redact` rule refuses) on what the detectors found,
and with the budgets a shadow policy reads. Before, both called the bare engine: a live
alias deny showed as a divergence and as drift, a shadow deny on the performed name or on
`content.*` predicted nothing, and promoting it then changed live decisions unannounced."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from agentfirewall.actions import ActionSpec, parse_action_spec
from agentfirewall.connectors import connector_types, get_connector
from agentfirewall.policy import Engine, EvaluationContext, load_policy
from agentfirewall.policy.replay import verdict
from agentfirewall_server.decide import evaluate_sdk
from agentfirewall_server.shadow import ShadowConfig, judge_action
from tests.server.conftest import Harness

TRANSFER = {"type": "payment.transfer.initiate", "resource": {"provider": "stripe"},
            "parameters": {"amount": 100, "currency": "usd", "destination": "acct_1"}}  # fmt: skip
NO_TRANSFERS = """\
name: no-transfers
rules:
  - name: deny-transfer
    conditions: [{field: action_spec.type, operator: equals, value: stripe.transfer.create}]
    decision: deny
"""
UNRELATED = """\
name: unrelated
rules:
  - name: nothing
    conditions: [{field: action_spec.type, operator: equals, value: nothing.here}]
    decision: deny
"""
CARD = "4111 1111 1111 1111"  # Luhn-valid
MESSAGE = {"type": "slack.message.post", "resource": {"provider": "slack"},
           "parameters": {"channel": "C1", "text": f"card {CARD}"}}  # fmt: skip
REDACT = """\
name: content
rules:
  - name: redact-cards
    conditions: [{field: content.pii, operator: contains, value: card_number}]
    decision: redact
"""
DENY_CARDS = REDACT.replace("redact", "deny").replace("name: content", "name: content2")


def _ok(response: Any) -> Any:
    assert response.status_code in (200, 201, 204), response.text
    return response.json() if response.status_code != 204 else None


def _ask(h: Harness, key: str, spec: dict[str, Any]) -> str:
    return str(_ok(h.agent(key, "POST", "/v1/actions", json={"action_spec": spec}))["status"])


def _diverged(h: Harness) -> list[tuple[str, str, str]]:
    rows = _ok(h.admin("GET", "/v1/traffic?shadow=diverged"))["traffic"]
    return [(r["decision"], r["shadow_decision"], r["shadow_rule"]) for r in rows]


def _replay(h: Harness, **body: Any) -> dict[str, Any]:
    report: dict[str, Any] = _ok(h.admin("POST", "/v1/policies/replay", json=body))
    return report


def _swap(h: Harness, live: str | None, shadow: str | None) -> None:
    """Make `live` the only live policy and `shadow` the only shadow one."""
    for row in _ok(h.admin("GET", "/v1/policies"))["policies"]:
        _ok(h.admin("DELETE", f"/v1/policies/{row['id']}"))
    for row in _ok(h.admin("GET", "/v1/shadow"))["policies"]:
        _ok(h.admin("DELETE", f"/v1/shadow/policies/{row['id']}"))
    if live:
        _ok(h.admin("POST", "/v1/policies", json={"document": live}))
    if shadow:
        _ok(h.admin("POST", "/v1/shadow/policies", json={"document": shadow}))


def test_a_build_alias_is_judged_by_shadow_and_replay_as_live_decides_it(harness: Harness) -> None:
    key = harness.create_agent("Bot")
    _swap(harness, NO_TRANSFERS, UNRELATED)
    assert _ask(harness, key, TRANSFER) == "denied"  # as `stripe.transfer.create`
    assert _diverged(harness) == []  # the shadow keeps the live policy: no divergence
    same = _replay(harness)
    assert (same["total"], same["drifted"], same["changed"]) == (1, 0, 0)
    assert _replay(harness, policies=[UNRELATED])["changes"] == {"deny->allow": 1}
    # the other way: the shadow adds the deny on the performed name
    _swap(harness, None, NO_TRANSFERS)
    assert _ask(harness, key, TRANSFER) == "allowed"
    assert _diverged(harness) == [("allow", "deny", "no-transfers/deny-transfer")]


def test_the_sdk_content_step_is_judged_by_shadow_and_replay_as_live(harness: Harness) -> None:
    key = harness.create_agent("Bot", sdk_default="allow")
    _swap(harness, REDACT, UNRELATED)  # live: a redact rule refuses in SDK mode
    assert _ask(harness, key, MESSAGE) == "denied"
    assert _diverged(harness) == []
    assert _replay(harness)["drifted"] == 0
    _swap(harness, None, REDACT)  # live reads no content: scanned for the shadow alone
    live = _ok(harness.agent(key, "POST", "/v1/actions", json={"action_spec": MESSAGE}))
    assert live["status"] == "allowed"
    assert "content:" not in live["decision"]["reason"]  # the live decision is untouched
    assert _diverged(harness) == [("allow", "deny", "content/redact-cards")]
    _swap(harness, None, DENY_CARDS)
    assert _ask(harness, key, MESSAGE) == "allowed"
    assert _diverged(harness)[0] == ("allow", "deny", "content2/deny-cards")


BUDGET_POLICY = """\
name: hold-when-low
scope: {action_types: [slack.message.post]}
rules:
  - name: low-budget
    decision: require_approval
    conditions: [{field: budget.slack-daily.remaining, operator: lt, value: 2}]
"""


def test_a_shadow_policy_reads_the_budgets_live_policies_do_not(harness: Harness) -> None:
    budget = {"agents": ["Bot"], "connector": "slack", "action": "slack.*",
              "measure": "count", "limit": 3}  # fmt: skip
    assert harness.admin("PUT", "/v1/budgets/slack-daily", json=budget).status_code == 201
    key = harness.create_agent("Bot", sdk_default="allow")
    _swap(harness, None, BUDGET_POLICY)
    spec = {"type": "slack.message.post", "resource": {"provider": "slack"},
            "parameters": {"channel": "C1"}}  # fmt: skip
    assert [_ask(harness, key, spec) for _ in range(3)] == ["allowed"] * 3
    # 3, 2 then 1 left: the third is below 2, held under the shadow
    assert _diverged(harness) == [("allow", "require_approval", "hold-when-low/low-budget")]


def _aliases() -> list[tuple[ActionSpec, str]]:
    """Every build alias of every connector: (the aliased spec, the action it runs as)."""
    found = []
    for kind in connector_types():
        for name, alias in getattr(get_connector(kind), "build_aliases", {}).items():
            spec = parse_action_spec({"type": name, "resource": {"provider": kind}})
            found.append((spec, alias.action))
    return found


@pytest.mark.parametrize(
    ("spec", "performed"), _aliases(), ids=lambda v: str(getattr(v, "type", v))
)
def test_every_build_alias_is_judged_by_the_shadow_as_live(
    spec: ActionSpec, performed: str
) -> None:
    deny = load_policy(
        "name: p\nrules:\n  - name: r\n    decision: deny\n"
        f"    conditions: [{{field: action_spec.type, operator: equals, value: {performed}}}]\n"
    )
    ctx = EvaluationContext(agent="Bot", mode="sdk", now=datetime.now(UTC), sdk_default="allow",
                            connector=spec.provider)  # fmt: skip
    denying = Engine(policies=[deny])
    live = evaluate_sdk(denying, spec, ctx)
    assert verdict(live) == "deny"
    kept = judge_action(ShadowConfig(denying, [], []), spec, ctx, live)
    dropped = judge_action(ShadowConfig(Engine(), [], []), spec, ctx, live)
    allowed = evaluate_sdk(Engine(), spec, ctx)
    added = judge_action(ShadowConfig(denying, [], []), spec, ctx, allowed)
    assert kept is not None
    assert dropped is not None
    assert added is not None
    assert not kept.diverged
    assert (dropped.live, dropped.shadow) == ("deny", "allow")
    assert (added.live, added.shadow, added.rule) == ("allow", "deny", "p/r")
