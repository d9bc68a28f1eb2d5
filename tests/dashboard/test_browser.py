"""The dashboard in a real browser (Debian's chromium, headless) against a live server."""

from __future__ import annotations

import json
import re
import ssl
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from playwright.sync_api import expect

if TYPE_CHECKING:
    from tests.dashboard.conftest import Dashboard

pytestmark = pytest.mark.browser

HELD_TYPE = "payment.transfer.initiate"
HOLD_POLICY = f"""name: hold-transfers
description: transfers wait for a human
priority: 10
rules:
  - name: transfers-need-approval
    conditions:
      all:
        - {{field: action_spec.type, operator: equals, value: {HELD_TYPE}}}
    decision: requires_approval
    reason: transfers need a human
    risk_score: 80
"""


def _spec(amount: int) -> dict[str, Any]:
    return {
        "type": HELD_TYPE,
        "resource": {"provider": "bank", "account": "acme", "environment": "production"},
        "parameters": {"amount": amount, "currency": "EUR", "api_token": "sk_live_abcdefgh1234"},
    }


def _request_action(dash: Dashboard, key: str, amount: int) -> dict[str, Any]:
    response = httpx.post(
        f"{dash.url}/api/v1/actions",
        json={"action_spec": _spec(amount)},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def _wait_action(dash: Dashboard, key: str, action_id: str) -> dict[str, Any]:
    response = httpx.get(
        f"{dash.url}/api/v1/actions/{action_id}/wait",
        params={"timeout": 20},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def _create_agent(dash: Dashboard, name: str) -> str:
    key: str = dash.api("POST", "/agents", {"name": name, "environment": "live"})["api_key"]
    return key


def test_first_run_setup_creates_the_owner_and_signs_in(
    live_server: Any, browser: Any, shots: type[Dashboard]
) -> None:
    token = (Path(live_server.data_dir) / "setup.token").read_text().strip()
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: m.type == "error" and errors.append(m.text))
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
    # Shown once: after a reload it is nowhere on the page.
    page.reload()
    dash.wait_ready(page)
    assert key not in page.content()
    assert key[:12] in page.content()  # only the prefix
    watched.assert_clean()


def test_approve_one_held_action_and_deny_another(dash: Dashboard) -> None:
    key = _create_agent(dash, "Finance Bot")
    dash.api("POST", "/policies", {"document": HOLD_POLICY})
    watched = dash.open("member")
    page = watched.page
    dash.goto(page, "/approvals")
    first = _request_action(dash, key, 12_000)
    assert first["status"] == "pending_approval"
    second = _request_action(dash, key, 50_000)
    # Live: both cards arrive by server-sent events, no reload.
    card = page.locator(f"article[data-approval-id='{first['approval']['id']}']")
    card.wait_for()
    other = page.locator(f"article[data-approval-id='{second['approval']['id']}']")
    other.wait_for()
    assert HELD_TYPE in card.inner_text()
    assert "Finance Bot" in card.inner_text()
    card.locator("summary").click()
    params = card.locator(".a-params").inner_text()
    assert "12000" in params
    assert "sk_live_" not in params  # secrets masked
    assert re.search(r"\d+:\d\d", card.locator(".a-countdown").inner_text())
    dash.screenshot(page, "approvals-live-1280")

    waited: dict[str, Any] = {}
    waiter = threading.Thread(
        target=lambda: waited.update(_wait_action(dash, key, first["action_request_id"]))
    )
    waiter.start()
    card.get_by_label("Note (optional)").fill("checked with finance")
    card.get_by_role("button", name="Approve").click()
    waiter.join(30)
    assert waited["status"] == "allowed"
    assert waited["decision_token"]

    other.get_by_label("Note (optional)").fill("too large")
    other.get_by_role("button", name="Deny").click()
    assert _wait_action(dash, key, second["action_request_id"])["status"] == "denied"
    other.wait_for(state="detached")
    recent = page.locator("#recent-table tbody")
    recent.get_by_text("too large").wait_for()
    recent.get_by_text("checked with finance").wait_for()
    watched.assert_clean()


GITHUB_TOKEN = "ghp_dashboardTestToken0000000000000000"


def _merge_through_gateway(gateway: Any, key: str, out: dict[str, Any]) -> None:
    proxy = gateway.proxy_url("Merge Bot", key)
    trust = ssl.create_default_context(cafile=str(gateway.ca_path))
    with httpx.Client(proxy=proxy, verify=trust, timeout=90) as client:
        response = client.put(
            "https://api.github.com/repos/acme/api/pulls/7/merge",
            json={"merge_method": "squash"},
            headers={"Authorization": "token agent-placeholder"},
        )
    out.update(status=response.status_code, body=response.text)


def test_approve_a_held_proxy_request_and_the_agents_call_completes(
    dash: Dashboard, start_gateway: Any, github_fake: Any
) -> None:
    key = _create_agent(dash, "Merge Bot")
    dash.api("POST", "/connectors", {"type": "github", "token": GITHUB_TOKEN})
    rule = {"agent": "Merge Bot", "connector": "github", "decision": "require_approval"}
    dash.api("POST", "/permissions", {**rule, "action_pattern": "github.pr.merge"})
    gateway = start_gateway()
    github = github_fake["github"]
    github.clear()
    watched = dash.open("member")
    page = watched.page
    dash.goto(page, "/approvals")
    result: dict[str, Any] = {}
    agent = threading.Thread(target=_merge_through_gateway, args=(gateway, key, result))
    agent.start()
    card = page.locator("article.approval", has_text="github.pr.merge")
    card.wait_for(timeout=30_000)
    assert "PUT api.github.com/repos/acme/api/pulls/7/merge" in card.inner_text()
    assert "Merge Bot" in card.inner_text()
    assert github.received("PUT") == []  # held: nothing reached GitHub yet
    dash.screenshot(page, "approvals-proxy-1280")
    card.get_by_role("button", name="Approve").click()
    agent.join(60)
    assert result["status"] == 200, result
    assert '"merged"' in result["body"]
    merged = github.received("PUT", "/repos/acme/api/pulls/7/merge")
    assert len(merged) == 1
    assert GITHUB_TOKEN in (merged[0].header("authorization") or "")  # the vaulted credential
    page.locator("#recent-table tbody").get_by_text("github.pr.merge").wait_for()
    watched.assert_clean()


def test_viewer_sees_approvals_but_cannot_approve(dash: Dashboard) -> None:
    key = _create_agent(dash, "Viewer Test Bot")
    dash.api("POST", "/policies", {"document": HOLD_POLICY})
    held = _request_action(dash, key, 9_000)
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
    dash.goto(page, "/policies")
    expect(page.get_by_label("Policy document (YAML or JSON)")).not_to_be_editable()
    assert page.get_by_role("button", name="Install pack").count() == 0
    dash.screenshot(page, "settings-viewer-1280")
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
    page.get_by_role("button", name="Save").click()
    page.get_by_role("row", name=re.compile("hold-transfers")).wait_for()
    # A second save is a new version, with a diff in the history.
    editor.fill(HOLD_POLICY.replace("risk_score: 80", "risk_score: 90"))
    validation.get_by_text("Valid policy").wait_for()
    page.get_by_role("button", name="Save").click()
    page.get_by_text("diff with v1").click()
    page.locator("#diff .diff-add", has_text="risk_score: 90").wait_for()
    page.locator("#diff .diff-del", has_text="risk_score: 80").wait_for()
    page.get_by_role("button", name="Disable hold-transfers").click()
    page.get_by_role("button", name="Enable hold-transfers").wait_for()
    dash.screenshot(page, "policies-history-1280")
    watched.assert_clean()


def test_sandbox_explains_a_decision(dash: Dashboard) -> None:
    _create_agent(dash, "Sandbox Bot")
    dash.api("POST", "/policies", {"document": HOLD_POLICY})
    watched = dash.open()
    page = watched.page
    dash.goto(page, "/sandbox")
    page.get_by_label("Agent").select_option("Sandbox Bot")
    page.get_by_label("Action spec (JSON)").fill(json.dumps(_spec(20_000)))
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
    watched.assert_clean()


def test_kill_switch_activates_and_deactivates(dash: Dashboard) -> None:
    key = _create_agent(dash, "Kill Test Bot")
    watched = dash.open()
    page = watched.page
    dash.goto(page, "/settings")
    page.get_by_label("Scope").select_option("all")
    page.get_by_label("Reason").fill("incident 42")
    page.get_by_role("button", name="Activate kill switch").click()
    page.get_by_role("dialog").get_by_role("button", name="Confirm").click()
    page.locator("#kill-table").get_by_text("incident 42").wait_for()
    page.locator("#kill-indicator").wait_for()
    dash.screenshot(page, "settings-kill-switch-1280")
    answer = httpx.post(
        f"{dash.url}/api/v1/actions",
        json={"action_spec": {"type": "email.send", "resource": {"provider": "mail"}}},
        headers={"Authorization": f"Bearer {key}"},
    ).json()
    assert answer["status"] == "denied"
    assert answer["decision"]["reason"] == "kill_switch_active"
    page.get_by_role("button", name="Deactivate kill switch all").click()
    page.get_by_role("dialog").get_by_role("button", name="Confirm").click()
    page.get_by_text("No kill switch is active.").wait_for()
    page.locator("#kill-indicator").wait_for(state="hidden")
    assert dash.api("GET", "/kill-switch")["active"] == []
    watched.assert_clean()


def test_an_agent_named_script_renders_as_text(dash: Dashboard) -> None:
    name = "<script>alert(1)</script>"
    _create_agent(dash, name)
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


PAGES = (
    "overview",
    "traffic",
    "approvals",
    "agents",
    "connectors",
    "policies",
    "sandbox",
    "audit",
    "settings",
)


def _populate(dash: Dashboard) -> str:
    key = _create_agent(dash, "DevOps Bot")
    _create_agent(dash, "PR Review Agent")
    dash.api("POST", "/connectors", {"type": "github", "token": GITHUB_TOKEN})
    dash.api(
        "POST",
        "/permissions/preset",
        {"agent": "DevOps Bot", "connector": "github", "preset": "read-only"},
    )
    dash.api("POST", "/policies", {"document": HOLD_POLICY})
    dash.api("POST", "/policy-packs/github-safe-defaults/install")
    _request_action(dash, key, 15_000)
    return key


def _proxy_traffic(dash: Dashboard, gateway: Any, key: str) -> None:
    """A read the preset allows and a merge it denies, through the real gateway."""
    deadline = time.monotonic() + 30
    while not dash.api("GET", "/status")["gateway"]["online"] and time.monotonic() < deadline:
        time.sleep(0.2)
    trust = ssl.create_default_context(cafile=str(gateway.ca_path))
    proxy = gateway.proxy_url("DevOps Bot", key)
    with httpx.Client(proxy=proxy, verify=trust, timeout=30) as client:
        assert client.get("https://api.github.com/repos/acme/api").status_code == 200
        assert client.put("https://api.github.com/repos/acme/api/pulls/3/merge").status_code == 403
    while len(dash.api("GET", "/traffic")["traffic"]) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)


def test_every_page_loads_without_console_errors_on_desktop_and_phone(
    dash: Dashboard, start_gateway: Any
) -> None:
    key = _populate(dash)
    _proxy_traffic(dash, start_gateway(), key)
    paths: list[Path] = []
    for label, viewport in (("1280", None), ("phone", dash.phone)):
        watched = dash.open(viewport=viewport)
        page = watched.page
        for name in PAGES:
            dash.goto(page, f"/{name}")
            if name == "audit":
                page.locator("#verify-result", has_text="Chain intact").wait_for()
            paths.append(dash.screenshot(page, f"{name}-{label}"))
        dash.goto(page, "/agents/DevOps%20Bot")
        page.get_by_role("cell", name="*.get", exact=True).wait_for()
        paths.append(dash.screenshot(page, f"agent-{label}"))
        watched.assert_clean()
        if viewport is dash.phone:
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= dash.phone["width"], (
                f"the page scrolls sideways at phone width: {width}"
            )
    assert all(path.stat().st_size > 0 for path in paths)
