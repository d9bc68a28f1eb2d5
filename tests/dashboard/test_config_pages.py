"""The dashboard in a real browser: policies, the sandbox, the kill switch, connectors, audit."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from playwright.sync_api import expect

from agentfirewall.actions import parse_action_spec
from tests.dashboard.scenario import (
    HOLD_POLICY,
    create_agent,
    spec,
)

if TYPE_CHECKING:
    from tests.dashboard.conftest import Dashboard
    from tests.livesrv import LiveServer

pytestmark = pytest.mark.browser


def test_policy_editor_shows_a_validation_error_then_saves_a_valid_policy(dash: Dashboard) -> None:
    watched = dash.open()
    page = watched.page
    dash.goto(page, "/policies")
    editor = page.get_by_label("Policy document (YAML or JSON)")
    editor.fill("name: broken\nrules:\n  - name: r\n    decision: explode\n")
    validation = page.locator("#validation")
    validation.get_by_text("Not valid").wait_for()
    assert editor.get_attribute("aria-invalid") == "true"
    dash.screenshot(page, "policies-invalid-1280")
    editor.fill(HOLD_POLICY)
    validation.get_by_text("Valid policy").wait_for()
    page.get_by_role("button", name="Review change").click()  # a replay preview, then Save
    page.get_by_role("button", name="Save", exact=True).click()
    page.get_by_role("row", name=re.compile("hold-transfers")).wait_for()
    # A second save is a new version, with a diff in the history.
    editor.fill(HOLD_POLICY.replace("risk_score: 80", "risk_score: 90"))
    validation.get_by_text("Valid policy").wait_for()
    page.get_by_role("button", name="Review change").click()
    page.get_by_role("button", name="Save", exact=True).click()
    page.get_by_text("diff with v1").click()
    page.locator("#diff .diff-add", has_text="risk_score: 90").wait_for()
    page.locator("#diff .diff-del", has_text="risk_score: 80").wait_for()
    page.get_by_label("Built-in pack").select_option("github-safe-defaults")
    page.get_by_role("button", name="Install pack").click()
    page.get_by_role("row", name=re.compile("github-safe-defaults")).wait_for()
    page.get_by_role("button", name="Disable hold-transfers").click()
    page.get_by_role("button", name="Enable hold-transfers").wait_for()
    dash.screenshot(page, "policies-history-1280")
    watched.assert_clean()


SLACK = {"type": "slack.message.post", "resource": {"provider": "slack"},
         "parameters": {"channel": "C1", "text": "hi"}}  # fmt: skip


def _host_grant(dash: Dashboard, live_server: LiveServer, agent: str, host: str) -> str:
    """A grant made on a held gateway request to `host` (bound to that host); its id."""
    request = {"method": "POST", "host": host, "path": "/api/chat.postMessage", "digest": "d" * 64}
    body = {"agent": agent, "connector": "slack", "action_spec": SLACK, "reason": "held",
            "action_hash": parse_action_spec(SLACK).action_hash, "request": request}  # fmt: skip
    held = live_server.gateway("POST", "/v1/gateway/approvals", json=body)
    assert held.json()["status"] == "pending", held.text
    approval = dash.api("GET", "/approvals?status=pending")["approvals"][0]["id"]
    answer = dash.api("POST", f"/approvals/{approval}/approve", {"grant": {"for_seconds": 3600}})
    assert answer["grant"]["host"] == host
    return str(answer["grant"]["id"])


def test_sandbox_explains_a_decision(dash: Dashboard, live_server: LiveServer) -> None:
    """An SDK action's decision step by step; in proxy mode, the request's URL reads the
    grants bound to its host (a bad URL is refused next to it; SDK mode sends none)."""
    create_agent(dash, "Sandbox Bot")
    dash.api("POST", "/policies", {"document": HOLD_POLICY})
    watched = dash.open()
    page = watched.page
    dash.goto(page, "/sandbox")
    page.get_by_label("Agent").select_option("Sandbox Bot")
    page.get_by_label("Action spec (JSON)").fill(json.dumps(spec(20_000)))
    page.get_by_role("button", name="Evaluate").click()
    page.locator("#sb-result").wait_for()
    assert page.locator("#sb-outcome").inner_text() == "require_approval"
    assert "transfers need a human" in page.locator("#sb-reason").inner_text()
    steps = page.locator("#sb-steps li")
    assert steps.count() >= 3
    assert "policies" in [steps.nth(i).get_attribute("data-step") for i in range(steps.count())]
    dash.screenshot(page, "sandbox-result-1280")
    # Nothing was recorded: no approval is pending.
    assert dash.api("GET", "/approvals?status=pending")["approvals"] == []

    rule = {"agent": "Sandbox Bot", "connector": "slack", "action_pattern": "slack.*",
            "decision": "require_approval"}  # fmt: skip
    dash.api("POST", "/permissions", rule)
    grant = _host_grant(dash, live_server, "Sandbox Bot", "slack.com")
    held = "permission `slack.*` requires approval (agent `Sandbox Bot`, connector `slack`)"
    url = page.get_by_label("Request URL (optional)")
    expect(url).to_be_hidden()  # SDK mode: no host of its own
    page.get_by_label("Mode").select_option("proxy")
    page.get_by_label("Action spec (JSON)").fill(json.dumps(SLACK))
    page.get_by_role("button", name="Evaluate").click()
    expect(page.locator("#sb-reason")).to_have_text(held)
    budgets = page.locator("#sb-steps li[data-step='budgets']")
    expect(budgets).to_contain_text("no grant covers it")  # no host: the grant is not read
    url.fill("https://Slack.COM./api/chat.postMessage")
    page.get_by_role("button", name="Evaluate").click()
    expect(page.locator("#sb-outcome")).to_have_text("allow")
    expect(page.locator("#sb-reason")).to_have_text(f"approved by grant {grant}")
    url.fill("ftp://slack.com/x")
    page.get_by_role("button", name="Evaluate").click()
    expect(page.locator("#sb-url-error")).to_contain_text("ftp")
    expect(url).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#sb-error")).to_be_hidden()
    page.get_by_label("Mode").select_option("sdk")  # the URL hidden, and not sent
    expect(url).to_be_hidden()
    page.get_by_role("button", name="Evaluate").click()
    expect(page.locator("#sb-reason")).to_have_text(held)  # evaluated (no 422), no host
    expect(budgets).to_contain_text("no grant covers it")
    expect(page.locator("#sb-error")).to_be_hidden()
    assert dash.api("GET", f"/grants/{grant}")["uses"] == 0  # read, never used
    watched.assert_clean("status of 422")


def _send(dash: Dashboard, key: str) -> dict[str, Any]:
    answer: dict[str, Any] = httpx.post(
        f"{dash.url}/api/v1/actions",
        json={"action_spec": {"type": "email.send", "resource": {"provider": "mail"}}},
        headers={"Authorization": f"Bearer {key}"},
    ).json()
    return answer


def test_kill_switch_activates_and_deactivates(dash: Dashboard) -> None:
    key = create_agent(dash, "Kill Test Bot")
    other = create_agent(dash, "Bystander Bot")
    watched = dash.open()
    page = watched.page
    dash.goto(page, "/settings")
    page.get_by_label("Scope").select_option("all")
    page.get_by_label("Reason").fill("incident 42")
    page.get_by_role("button", name="Activate kill switch").click()
    page.get_by_role("dialog").get_by_role("button", name="Cancel").click()  # changed its mind
    assert dash.api("GET", "/kill-switch")["active"] == []
    page.get_by_role("button", name="Activate kill switch").click()
    page.get_by_role("dialog").get_by_role("button", name="Confirm").click()
    page.locator("#kill-table").get_by_text("incident 42").wait_for()
    page.locator("#kill-indicator").wait_for()
    dash.screenshot(page, "settings-kill-switch-1280")
    answer = _send(dash, key)
    assert answer["status"] == "denied"
    assert answer["decision"]["reason"] == "kill_switch_active"
    page.get_by_role("button", name="Deactivate kill switch all").click()
    page.get_by_role("dialog").get_by_role("button", name="Confirm").click()
    page.get_by_text("No kill switch is active.").wait_for()
    page.locator("#kill-indicator").wait_for(state="hidden")
    assert dash.api("GET", "/kill-switch")["active"] == []
    assert _send(dash, key)["status"] == "allowed"
    # Scoped to one agent: only that agent stops.
    page.get_by_label("Scope").select_option("Kill Test Bot")
    page.get_by_role("button", name="Activate kill switch").click()
    page.get_by_role("dialog").get_by_role("button", name="Confirm").click()
    page.locator("#kill-table tr[data-scope='agent:Kill Test Bot']").wait_for()
    assert _send(dash, key)["status"] == "denied"
    assert _send(dash, other)["status"] == "allowed"
    page.get_by_role("button", name="Deactivate kill switch agent Kill Test Bot").click()
    page.get_by_role("dialog").get_by_role("button", name="Confirm").click()
    page.get_by_text("No kill switch is active.").wait_for()
    watched.assert_clean()


def test_add_a_connector_with_a_write_only_credential(dash: Dashboard) -> None:
    secret = "internal-api-secret-0123456789"
    watched = dash.open()
    page = watched.page
    dash.goto(page, "/connectors")
    page.get_by_label("Type", exact=True).select_option("generic")
    page.get_by_label("Name (optional)").fill("billing-api")
    page.get_by_label("Credential (write-only)").fill(secret)
    page.get_by_label("Domains (comma-separated)").fill(
        "billing.internal.example, api.billing.example"
    )
    page.get_by_role("button", name="Add connector").click()
    card = page.locator("article.connector", has_text="billing-api")
    card.wait_for()
    assert "billing.internal.example, api.billing.example" in card.inner_text()
    assert "stored (hidden)" in card.inner_text()
    expect(page.get_by_label("Credential (write-only)")).to_have_value("")
    assert secret not in page.content()
    (connector,) = dash.api("GET", "/connectors")["connectors"]
    assert connector["has_credential"] is True
    assert secret not in json.dumps(connector)
    card.locator("summary").click()  # the actions the connector type knows
    assert card.locator(".action-list li").count() >= 1
    dash.screenshot(page, "connectors-added-1280")
    watched.assert_clean()


def test_audit_log_verifies_the_chain_and_exports(dash: Dashboard) -> None:
    create_agent(dash, "Audit Bot")
    watched = dash.open()
    page = watched.page
    dash.goto(page, "/audit")
    page.locator("#verify-result", has_text="Chain intact").wait_for()
    page.get_by_label("Event type").fill("agent.registered")
    page.get_by_role("button", name="Filter").click()
    rows = page.locator("#audit-table tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Audit Bot")
    with page.expect_download() as download:
        page.get_by_role("link", name="Export CSV").click()
    text = Path(download.value.path()).read_text()
    assert text.splitlines()[0].startswith(("id,", "\ufeffid,"))
    assert "agent.registered" in text
    with page.expect_download() as download:
        page.get_by_role("link", name="Export JSON Lines").click()
    lines = Path(download.value.path()).read_text().splitlines()
    records = [json.loads(line) for line in lines]
    events = [r for r in records if "record" not in r]  # not checkpoints, stubs, selection
    assert events
    assert [r for r in records if r.get("record") == "selection"]  # the filter, signed
    assert all(event["event_type"] == "agent.registered" for event in events)
    # Signed checkpoints travel with the export so it can be verified offline.
    assert all("token" in r for r in records if r.get("record") == "checkpoint")
    watched.assert_clean()


def test_settings_integrations_defaults_and_users(dash: Dashboard) -> None:
    bot_token = "xoxb-settings-test-0000000000"
    watched = dash.open()
    page = watched.page
    dash.goto(page, "/settings")
    page.get_by_label("Slack bot token (write-only)").fill(bot_token)
    page.get_by_label("Slack signing secret (write-only)").fill("signing-secret-0000")
    page.get_by_label("Slack channel ID").fill("C0123456789")
    page.get_by_label("Gateway URL").fill("http://gateway.internal:8443")
    page.locator("#integrations-form").get_by_role("button", name="Save").click()
    page.get_by_text("Slack is configured").wait_for()
    expect(page.get_by_label("Slack bot token (write-only)")).to_have_value("")
    assert bot_token not in page.content()
    page.get_by_label("Default enforcement level").select_option("soft_enforce")
    page.get_by_label("Approval timeout (seconds)").fill("600")
    page.locator("#defaults-form").get_by_role("button", name="Save").click()
    page.get_by_text("Enforcement defaults saved.").wait_for()
    settings = dash.api("GET", "/settings")
    assert settings["slack"] == {"channel": "C0123456789", "configured": True, "approvers": {}}
    assert settings["gateway_url"] == "http://gateway.internal:8443"
    assert settings["default_enforcement_level"] == "soft_enforce"
    assert settings["approval_timeout_seconds"] == 600
    assert bot_token not in json.dumps(settings)
    # Users and roles: add a viewer, then make them a member.
    page.get_by_label("Email", exact=True).fill("new@example.com")
    page.get_by_label("Initial password").fill("a long enough password")
    page.get_by_role("button", name="Add user").click()
    role = page.get_by_label("Role of new@example.com")
    expect(role).to_have_value("viewer")
    role.select_option("member")
    page.get_by_text("new@example.com is now member").wait_for()
    users = {u["email"]: u["role"] for u in dash.api("GET", "/users")["users"]}
    assert users["new@example.com"] == "member"
    # Slack approvers: who may click Approve / Deny in Slack, acting as which user
    approvers = page.get_by_label("Slack approvers (member ID and user email, one per line)")
    approvers.fill("U012AB3CD new@example.com\n\nnot-a-pair")
    page.locator("#integrations-form").get_by_role("button", name="Save").click()
    page.get_by_text("Slack approvers, line 3: expected a member ID and an email").wait_for()
    assert dash.api("GET", "/settings")["slack"]["approvers"] == {}
    approvers.fill("U012AB3CD new@example.com\n")
    page.locator("#integrations-form").get_by_role("button", name="Save").click()
    page.get_by_text("Integrations saved.").wait_for()
    slack = dash.api("GET", "/settings")["slack"]
    assert slack["approvers"] == {"U012AB3CD": "new@example.com"}
    assert slack["configured"] is True  # the secrets, left empty, are kept
    page.reload()
    expect(approvers).to_have_value("U012AB3CD new@example.com")
    watched.assert_clean()
