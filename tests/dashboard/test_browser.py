"""The dashboard in a real browser: signing in, agents, approvals, roles, escaping."""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.dashboard.scenario import (
    HELD_TYPE,
    HOLD_POLICY,
    create_agent,
    request_action,
    wait_action,
)

if TYPE_CHECKING:
    from tests.dashboard.conftest import Dashboard

pytestmark = pytest.mark.browser


def test_first_run_setup_creates_the_owner_and_signs_in(
    live_server: Any, browser: Any, shots: type[Dashboard]
) -> None:
    token = (Path(live_server.data_dir) / "setup.token").read_text().strip()
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: m.type == "error" and errors.append(m.text))
    # A wrong token is refused with a readable message.
    page.goto(f"{live_server.url}/dashboard/setup?token=not-the-token")
    page.get_by_label("Email").fill("first@example.com")
    page.get_by_label("Password", exact=True).fill(shots.password)
    page.get_by_label("Repeat the password").fill(shots.password)
    page.get_by_role("button", name="Create the owner account").click()
    expect(page.locator("#setup-error")).to_be_visible()
    assert all("status of 40" in e for e in errors), errors
    errors.clear()
    page.goto(f"{live_server.url}/dashboard/setup?token={token}")
    assert "token=" not in page.url  # the one-time token leaves the address bar at once
    shots.screenshot(page, "setup-1280")
    page.get_by_label("Email").fill("first@example.com")
    page.get_by_label("Password", exact=True).fill(shots.password)
    page.get_by_label("Repeat the password").fill(shots.password)
    page.get_by_role("button", name="Create the owner account").click()
    page.wait_for_url(f"{live_server.url}/dashboard/overview")
    shots.wait_ready(page)
    assert "first@example.com · owner" in page.locator("#who").inner_text()
    cookie = next(c for c in context.cookies() if c["name"] == "tf_session")
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Lax"
    assert errors == []
    # the first-run offer of the safe-default packs was kept (checked by default)
    names = {p["name"] for p in live_server.admin("GET", "/v1/policies").json()["policies"]}
    assert {"github-safe-defaults", "stripe-safe-defaults"} <= names
    context.close()


def test_sign_in_rejects_a_wrong_password_then_signs_in_and_out(dash: Dashboard) -> None:
    watched = dash.open(role=None)
    page = watched.page
    page.goto(f"{dash.url}/dashboard/approvals")
    page.wait_for_url(re.compile(r".*/dashboard/login\?next=.*approvals"))
    dash.screenshot(page, "login-1280")
    page.get_by_label("Email").fill("owner@example.com")
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    page.get_by_text("Wrong email or password.").wait_for()
    page.get_by_label("Password").fill(dash.password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{dash.url}/dashboard/approvals")  # back where the user was going
    dash.wait_ready(page)
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(f"{dash.url}/dashboard/login")
    assert not [c for c in page.context.cookies() if c["name"] == "tf_session" and c["value"]]
    # The failed sign-in and the redirect from a signed-out page are the only errors.
    watched.assert_clean("401")


def test_register_an_agent_and_read_its_key_once(dash: Dashboard) -> None:
    watched = dash.open()
    page = watched.page
    dash.goto(page, "/agents")
    page.get_by_label("Name").fill("DevOps Bot")
    page.get_by_role("button", name="Register agent").click()
    expect(page.locator("#new-key-value")).to_have_text(re.compile(r"^aaf_live_"))
    key = page.locator("#new-key-value").inner_text()
    assert re.fullmatch(r"aaf_live_[A-Za-z0-9]{32}", key)
    page.get_by_role("button", name="Copy").click()
    page.get_by_role("row", name=re.compile("DevOps Bot")).wait_for()
    dash.screenshot(page, "agents-new-key-1280")
    # The key is real: the agent can use it.
    answer = httpx.post(
        f"{dash.url}/api/v1/actions/dry-run",
        json={"action_spec": {"type": "email.send", "resource": {"provider": "mail"}}},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert answer.status_code == 200, answer.text
    # Rotating shows a new key once; the old one stops working.
    page.get_by_role("button", name="I have stored it").click()
    page.get_by_role("button", name="Rotate key DevOps Bot").click()
    expect(page.locator("#new-key-value")).to_have_text(re.compile(r"^aaf_live_"))
    rotated = page.locator("#new-key-value").inner_text()
    assert rotated != key
    old = httpx.post(
        f"{dash.url}/api/v1/actions/dry-run",
        json={"action_spec": {"type": "email.send", "resource": {"provider": "mail"}}},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert old.status_code == 401
    key = rotated
    # Shown once: after a reload it is nowhere on the page.
    page.reload()
    dash.wait_ready(page)
    assert key not in page.content()
    assert key[:12] in page.content()  # only the prefix
    watched.assert_clean()


def test_approve_one_held_action_and_deny_another(dash: Dashboard) -> None:
    key = create_agent(dash, "Finance Bot")
    dash.api("POST", "/policies", {"document": HOLD_POLICY})
    watched = dash.open("member")
    page = watched.page
    dash.goto(page, "/approvals")
    first = request_action(dash, key, 12_000)
    assert first["status"] == "pending_approval"
    second = request_action(dash, key, 50_000)
    # Live: both cards arrive by server-sent events, no reload.
    card = page.locator(f"article[data-approval-id='{first['approval']['id']}']")
    card.wait_for()
    other = page.locator(f"article[data-approval-id='{second['approval']['id']}']")
    other.wait_for()
    assert HELD_TYPE in card.inner_text()
    assert "Finance Bot" in card.inner_text()
    card.locator("summary", has_text="Parameters").click()
    params = card.locator(".a-params").inner_text()
    assert "12000" in params
    assert "sk_live_" not in params  # secrets masked
    assert re.search(r"\d+:\d\d", card.locator(".a-countdown").inner_text())
    dash.screenshot(page, "approvals-live-1280")

    waited: dict[str, Any] = {}
    waiter = threading.Thread(
        target=lambda: waited.update(wait_action(dash, key, first["action_request_id"]))
    )
    waiter.start()
    # A note typed in one card survives the live update another decision causes.
    other.get_by_label("Note (optional)").fill("too large")
    card.get_by_label("Note (optional)").fill("checked with finance")
    card.get_by_role("button", name="Approve").click()
    waiter.join(30)
    assert waited["status"] == "allowed"
    assert waited["decision_token"]

    page.locator("#recent-table tbody").get_by_text("checked with finance").wait_for()
    expect(other.get_by_label("Note (optional)")).to_have_value("too large")
    other.get_by_role("button", name="Deny").click()
    assert wait_action(dash, key, second["action_request_id"])["status"] == "denied"
    other.wait_for(state="detached")
    recent = page.locator("#recent-table tbody")
    recent.get_by_text("too large").wait_for()
    recent.get_by_text("checked with finance").wait_for()
    watched.assert_clean()


def test_viewer_sees_approvals_but_cannot_approve(dash: Dashboard) -> None:
    key = create_agent(dash, "Viewer Test Bot")
    dash.api("POST", "/policies", {"document": HOLD_POLICY})
    held = request_action(dash, key, 9_000)
    watched = dash.open("viewer")
    page = watched.page
    dash.goto(page, "/approvals")
    card = page.locator(f"article[data-approval-id='{held['approval']['id']}']")
    card.wait_for()
    assert card.get_by_role("button", name="Approve").count() == 0
    assert page.get_by_text("Your role is viewer").is_visible()
    dash.screenshot(page, "approvals-viewer-1280")
    # The server refuses too, even with a valid session and CSRF token.
    answer = page.evaluate(
        """async (id) => {
            const me = await (await fetch('/api/v1/auth/me')).json();
            const r = await fetch(`/api/v1/approvals/${id}/approve`, {method: 'POST',
                headers: {'Content-Type': 'application/json', 'X-CSRF-Token': me.csrf_token},
                body: '{}'});
            return {status: r.status, body: await r.json()};
        }""",
        held["approval"]["id"],
    )
    assert answer["status"] == 403
    assert answer["body"]["required_role"] == "member"
    assert answer["body"]["your_role"] == "viewer"
    assert dash.api("GET", f"/approvals/{held['approval']['id']}")["status"] == "pending"
    # Elsewhere too the viewer sees state but no control that changes it.
    dash.goto(page, "/agents")
    assert page.get_by_role("button", name="Register agent").count() == 0
    assert page.get_by_role("button", name=re.compile("^(Suspend|Revoke|Rotate)")).count() == 0
    dash.goto(page, "/agents/Viewer%20Test%20Bot")
    expect(page.get_by_label("Enforcement level")).to_be_disabled()
    expect(page.get_by_label("Enforcement level")).to_have_value("full_enforce")
    dash.goto(page, "/settings")
    assert page.get_by_role("button", name="Activate kill switch").count() == 0
    assert page.get_by_role("heading", name="Users and roles").count() == 0
    expect(page.get_by_label("Default enforcement level")).to_be_disabled()
    dash.screenshot(page, "settings-viewer-1280")
    dash.goto(page, "/policies")
    expect(page.get_by_label("Policy document (YAML or JSON)")).not_to_be_editable()
    assert page.get_by_role("button", name="Install pack").count() == 0
    expect(page.locator("#editing")).to_have_text("— hold-transfers v1")
    dash.screenshot(page, "policies-viewer-1280")
    watched.assert_clean("403")


def test_a_write_without_the_csrf_token_is_refused(dash: Dashboard) -> None:
    watched = dash.open()
    answer = watched.page.evaluate(
        """async () => {
            const r = await fetch('/api/v1/agents', {method: 'POST',
                headers: {'Content-Type': 'application/json'},
                body: JSON.stringify({name: 'csrf-bot', environment: 'live'})});
            return r.status;
        }"""
    )
    assert answer == 403
    names = [a["name"] for a in dash.api("GET", "/agents")["agents"]]
    assert "csrf-bot" not in names
    watched.assert_clean("403")


def test_an_agent_named_script_renders_as_text(dash: Dashboard) -> None:
    name = "<script>alert(1)</script>"
    create_agent(dash, name)
    watched = dash.open()
    page = watched.page
    for path in ("/agents", "/overview"):
        dash.goto(page, path)
        assert page.get_by_role("link", name=name).first.is_visible()
    page.get_by_role("link", name=name).first.click()
    dash.wait_ready(page)
    assert page.locator("#agent-h").inner_text() == name
    assert page.locator("body").get_attribute("data-agent") == name
    watched.assert_clean()  # no dialog opened, no error


def test_an_approvers_card_shows_the_target_as_sent(dash: Dashboard) -> None:
    """A target written to read as another (a right-to-left override), with escape
    sequences and invisible characters, is shown with each of them as its escape; the
    card names the SDK action's resource, which is what the approver decides on."""
    key = create_agent(dash, "Spoof Bot")
    dash.api("POST", "/policies", {"document": HOLD_POLICY})
    target = "acme/\u202eipa\u200b\x1b[2J\U000e0041"
    held = request_action(dash, key, 10, target=target, note="line\u2028two\u2066")
    assert held["status"] == "pending_approval"
    watched = dash.open("member")
    page = watched.page
    dash.goto(page, "/approvals")
    card = page.locator(f"article[data-approval-id='{held['approval']['id']}']")
    card.wait_for()
    assert card.locator(".a-request").inner_text() == (
        "SDK action on acme/\\u202eipa\\u200b\\x1b[2J\\U000e0041 (bank, account acme, production)"
    )
    card.locator("summary", has_text="Parameters").click()
    params = card.locator(".a-params").inner_text()
    assert '"note": "line\\u2028two\\u2066"' in params
    assert not any(c in card.inner_text() for c in "\u202e\u200b\x1b\u2028\u2066")
    watched.assert_clean()


def test_agent_page_sets_enforcement_presets_and_custom_rules(dash: Dashboard) -> None:
    create_agent(dash, "Rules Bot")
    dash.api("POST", "/connectors", {"type": "github", "token": "ghp_rulesTest0000000000000"})
    watched = dash.open()
    page = watched.page
    dash.goto(page, "/agents")
    page.get_by_role("link", name="Rules Bot").click()
    dash.wait_ready(page)
    expect(page.locator("#agent-no-rules")).to_contain_text("no rules")  # issue 13, item 8
    page.get_by_label("Enforcement level").select_option("monitor")
    page.get_by_label("Rate limit per minute").fill("120")
    # A live update (someone adds a rule) leaves the unsaved form alone.
    rule = {"agent": "Rules Bot", "connector": "github", "decision": "allow"}
    dash.api("POST", "/permissions", {**rule, "action_pattern": "github.issue.*"})
    issue_rule = page.locator("#perm-table").get_by_role("cell", name="github.issue.*", exact=True)
    issue_rule.wait_for()
    expect(page.get_by_label("Enforcement level")).to_have_value("monitor")
    page.get_by_role("button", name="Remove rule github.issue.*").click()
    issue_rule.wait_for(state="detached")
    page.get_by_role("button", name="Save").click()
    page.get_by_text("Saved.").wait_for()
    agent = dash.api("GET", "/agents/Rules%20Bot")
    assert (agent["enforcement_level"], agent["rate_limit_per_minute"]) == ("monitor", 120)
    page.get_by_label("Rate limit per minute").fill("")  # empty: the server's default again
    with page.expect_response(lambda r: r.request.method == "PATCH") as saved:
        page.get_by_role("button", name="Save").click()
    assert saved.value.status == 200  # it kept 120 before (an empty field sent nothing)
    assert dash.api("GET", "/agents/Rules%20Bot")["rate_limit_per_minute"] is None
    expect(page.locator("#preset-connector")).to_have_value("github")  # configured first
    page.get_by_label("Preset").select_option("require-approval")
    page.get_by_role("button", name="Apply preset").click()
    table = page.locator("#perm-table tbody")
    table.get_by_role("row", name=re.compile(r"github\s+\*\s+require_approval")).wait_for()
    expect(page.locator("#agent-no-rules")).to_have_count(0)  # a rule now applies
    page.get_by_label("Action pattern").fill("github.repo.delete")
    page.locator("#rule-decision").select_option("deny")
    page.get_by_role("button", name="Add custom rule").click()
    table.get_by_role("cell", name="github.repo.delete", exact=True).wait_for()
    rules = dash.api("GET", "/permissions?agent=Rules%20Bot")["permissions"]
    assert {(r["action_pattern"], r["decision"]) for r in rules} == {
        ("*", "require_approval"),
        ("github.repo.delete", "deny"),
    }
    page.get_by_role("button", name="Remove rule github.repo.delete").click()
    table.get_by_role("cell", name="github.repo.delete", exact=True).wait_for(state="detached")
    page.get_by_role("button", name="Suspend").click()
    page.locator("#agent-facts").get_by_text("suspended").wait_for()
    dash.screenshot(page, "agent-rules-1280")
    watched.assert_clean()


def test_budgets_page_shows_spend_and_revokes_a_grant(dash: Dashboard) -> None:
    key = create_agent(dash, "Finance Bot")
    budget = {"agents": ["Finance Bot"], "connector": "stripe", "action": "stripe.transfer.*",
              "measure": "sum", "currency": "usd", "limit": 100_000}  # fmt: skip
    dash.api("PUT", "/budgets/stripe-daily", budget)
    gateway = (dash.data_dir / "gateway.token").read_text().strip()
    spend = {"agent": "Finance Bot", "connector": "stripe", "action": "stripe.transfer.create",
             "parameters": {"amount": 25_000, "currency": "usd"}}  # fmt: skip
    reserved = httpx.post(f"{dash.url}/api/v1/gateway/budgets/reserve", json=spend,
                          headers={"Authorization": f"Bearer {gateway}"}, timeout=30)  # fmt: skip
    assert reserved.json()["reservation"]
    dash.api("POST", "/policies", {"document": HOLD_POLICY})
    held = request_action(dash, key, 12_000)
    grant = {"grant": {"for_seconds": 3600, "max_uses": 5, "where": ["amount<=20000"]}}
    made = dash.api("POST", f"/approvals/{held['approval']['id']}/approve", grant)["grant"]
    watched = dash.open("member")
    page = watched.page
    dash.goto(page, "/budgets")
    row = page.locator("#budgets-table tbody tr", has_text="stripe-daily")
    expect(row).to_contain_text("25,000 / 100,000 usd")
    expect(row).to_contain_text("Finance Bot: 25,000")
    assert row.locator("svg[role='img']").count() == 1
    grant_row = page.locator("#grants-table tbody tr", has_text=made["id"])
    expect(grant_row).to_contain_text("amount lte 20000")
    dash.screenshot(page, "budgets-1280")
    grant_row.get_by_role("button", name="Revoke").click()
    grant_row.wait_for(state="detached")
    assert dash.api("GET", f"/grants/{made['id']}")["status"] == "revoked"
    watched.assert_clean()
