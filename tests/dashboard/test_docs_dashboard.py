"""docs/dashboard.md, read as a newcomer and clicked in a real browser, on one live server.

Each test takes a paragraph of the page and does what it says as a user would: the
Traffic filters and paging, the Audit log's filters and exports, the agent page for any
name, each role's controls, the live header. And what a user gets wrong: a used setup
link, a `next` that leaves the dashboard, a session that expired before the click, a card
the role may not decide, a role taken away while the page is open, half-filled forms. The
message must say what happened, and nothing may be half-done.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx
import pytest
from playwright.sync_api import expect

from tests.dashboard.conftest import USERS, Dashboard, _create_people, admin_client
from tests.dashboard.scenario import HELD_TYPE, HOLD_POLICY
from tests.livesrv import LiveServer

if TYPE_CHECKING:
    from tests.dashboard.conftest import Watched

pytestmark = pytest.mark.browser

WIRE = "treasury.wire.send"
ADMINS_DECIDE = f"""name: admins-decide-wires
rules:
  - name: wires-need-an-admin
    conditions:
      all:
        - {{field: action_spec.type, operator: equals, value: {WIRE}}}
    decision: requires_approval
    reason: wires need an admin
    approval: {{approver_roles: [admin, owner]}}
"""
ADMIN = "admin@example.com"


@pytest.fixture(scope="module")
def board(browser: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    """One live server with an owner, an admin, a member and a viewer, for every test."""
    server = LiveServer.start(tmp_path_factory.mktemp("docs-dashboard") / "tf")
    headers = {"Authorization": f"Bearer {server.admin_token}"}
    try:
        with admin_client(server.url, headers) as admin:
            _create_people(server.url, admin, server.data_dir)
            dash = Dashboard(server.url, admin, browser, server.data_dir)
            dash.api("POST", "/users", {"email": ADMIN, "password": dash.password, "role": "admin"})
            dash.api("POST", "/policies", {"document": HOLD_POLICY})
            dash.api("POST", "/policies", {"document": ADMINS_DECIDE})
            yield dash
            for context in dash.contexts:
                context.close()
    finally:
        server.stop()


def _open_as(board: Dashboard, email: str) -> Watched:
    watched = board.open(role=None)
    board.sign_in(watched.page, email)
    return watched


def _agent(board: Dashboard, name: str) -> str:
    key: str = board.api("POST", "/agents", {"name": name, "sdk_default": "allow"})["api_key"]
    return key


def _held(board: Dashboard, key: str, kind: str = HELD_TYPE) -> dict[str, Any]:
    spec = {"type": kind, "resource": {"provider": "bank"}, "parameters": {"amount": 10}}
    answer = httpx.post(f"{board.url}/api/v1/actions", json={"action_spec": spec},
                        headers={"Authorization": f"Bearer {key}"}, timeout=30)  # fmt: skip
    assert answer.json()["status"] == "pending_approval", answer.text
    held: dict[str, Any] = answer.json()["approval"]
    return held


def _status(board: Dashboard, approval: dict[str, Any]) -> str:
    status: str = board.api("GET", f"/approvals/{approval['id']}")["status"]
    return status


def _gateway_records(board: Dashboard, records: list[dict[str, Any]]) -> None:
    token = (board.data_dir / "gateway.token").read_text().strip()
    answer = httpx.post(f"{board.url}/api/v1/gateway/traffic", json={"records": records},
                        headers={"Authorization": f"Bearer {token}"}, timeout=30)  # fmt: skip
    assert answer.status_code == 200, answer.text


def test_a_used_setup_link_says_to_sign_in(board: Dashboard) -> None:
    """First run: the link stops working once the owner exists; the page says what to do."""
    watched = board.open(role=None)
    page = watched.page
    page.goto(f"{board.url}/dashboard/setup?token=the-link-of-last-week")
    board.wait_ready(page)
    assert "token=" not in page.url
    page.get_by_label("Email").fill("late@example.com")
    page.get_by_label("Password", exact=True).fill(board.password)
    page.get_by_label("Repeat the password").fill(board.password + "!")
    page.get_by_role("button", name="Create the owner account").click()
    expect(page.locator("#setup-error")).to_have_text("The two passwords differ.")
    page.get_by_label("Repeat the password").fill(board.password)
    page.get_by_role("button", name="Create the owner account").click()
    expect(page.locator("#setup-error")).to_have_text(
        "This setup link is wrong or was already used: once the owner account exists, "
        "sign in instead. Sign in"
    )
    page.locator("#setup-error").get_by_role("link", name="Sign in").click()
    page.wait_for_url(f"{board.url}/dashboard/login")
    emails = {u["email"] for u in board.api("GET", "/users")["users"]}
    assert "late@example.com" not in emails
    watched.assert_clean("status of 403")


@pytest.mark.parametrize(
    ("next_path", "lands_on"),
    [
        ("/dashboard/audit?event_type=user.login", "/dashboard/audit?event_type=user.login"),
        ("https://evil.example/dashboard/audit", "/dashboard/overview"),
        ("//evil.example/dashboard/audit", "/dashboard/overview"),
        ("/api/v1/agents", "/dashboard/overview"),
        ("/dashboard/../api/v1/agents", "/dashboard/overview"),
        ("/dashboard/%2e%2e/api/v1/agents", "/dashboard/overview"),
    ],
)
def test_sign_in_returns_only_to_a_dashboard_page(
    board: Dashboard, next_path: str, lands_on: str
) -> None:
    """`?next=`, dashboard paths only: also once the browser has resolved the path."""
    watched = board.open(role=None)
    page = watched.page
    page.goto(f"{board.url}/dashboard/login?next={quote(next_path, safe='')}")
    board.wait_ready(page)
    page.get_by_label("Email").fill(USERS["viewer"])
    page.get_by_label("Password").fill(board.password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/dashboard/login" not in url)
    assert page.url == board.url + lands_on
    watched.assert_clean()


def test_an_expired_session_sends_the_click_to_sign_in_and_decides_nothing(
    board: Dashboard,
) -> None:
    signed_in = httpx.post(f"{board.url}/api/v1/auth/login", timeout=30,
                           json={"email": USERS["member"], "password": board.password})  # fmt: skip
    assert "Max-Age=43200" in signed_in.headers["set-cookie"]  # a session lasts 12 hours
    key = _agent(board, "Expiry Bot")
    held = _held(board, key)
    watched = board.open("member")
    page = watched.page
    board.goto(page, "/approvals")
    card = page.locator(f"article[data-approval-id='{held['id']}']")
    card.get_by_label("Note (optional)").fill("checked")
    with sqlite3.connect(board.data_dir / "agentfirewall.db", timeout=30) as db:
        expired = db.execute(
            "UPDATE sessions SET expires_at = 0 WHERE user_id = "
            "(SELECT id FROM users WHERE email = ?)",
            (USERS["member"],),
        ).rowcount
    assert expired >= 1
    card.get_by_role("button", name="Approve once").click()
    # (the first refused call sends it there, once: test_expired_session.py)
    expect(page).to_have_url(f"{board.url}/dashboard/login?next=%2Fdashboard%2Fapprovals")
    board.wait_ready(page)
    assert _status(board, held) == "pending"
    page.get_by_label("Email").fill(USERS["member"])
    page.get_by_label("Password").fill(board.password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{board.url}/dashboard/approvals")  # back where the click was
    board.wait_ready(page)
    card.get_by_role("button", name="Approve once").click()
    card.wait_for(state="detached")
    assert _status(board, held) == "approved"
    watched.assert_clean("status of 401")


def test_a_card_the_role_may_not_decide_shows_who_may(board: Dashboard) -> None:
    """Roles: controls the role may not use are hidden, also where the rule names the
    approvers (`approver_roles: [admin, owner]`): a member sees who may, not a button."""
    key = _agent(board, "Wire Bot")
    held = _held(board, key, WIRE)
    member = board.open("member")
    board.goto(member.page, "/approvals")
    card = member.page.locator(f"article[data-approval-id='{held['id']}']")
    expect(card.locator(".a-roles")).to_have_text(
        "Deciding this needs the role admin or owner; you are member."
    )
    expect(card.get_by_role("button")).to_have_count(0)
    expect(card.get_by_text("Grant more than this request")).to_have_count(0)
    member.assert_clean()

    admin = _open_as(board, ADMIN)
    board.goto(admin.page, "/approvals")
    card = admin.page.locator(f"article[data-approval-id='{held['id']}']")
    expect(card.locator(".a-roles")).to_be_hidden()
    # A grant form left empty says what it needs and decides nothing.
    card.locator("summary", has_text="Grant more than this request").click()
    card.get_by_role("button", name="Approve with grant").click()
    expect(card.locator(".g-error")).to_have_text(
        "a grant needs a duration and/or a number of uses"
    )
    card.get_by_label("For how long").fill("soon")
    card.get_by_role("button", name="Approve with grant").click()
    expect(card.locator(".g-error")).to_contain_text("invalid duration “soon”")
    assert _status(board, held) == "pending"
    card.get_by_role("button", name="Deny").click()
    card.wait_for(state="detached")
    assert _status(board, held) == "denied"
    admin.assert_clean()


def test_a_role_taken_away_meanwhile_ends_the_session_and_changes_nothing(
    board: Dashboard,
) -> None:
    """A role change ends the person's sessions: the next click signs in again, as what
    they now are, and decides nothing on the way."""
    email = "demoted@example.com"
    person = board.api("POST", "/users", {"email": email, "password": board.password,
                                          "role": "member"})  # fmt: skip
    held = _held(board, _agent(board, "Demotion Bot"))
    watched = _open_as(board, email)
    page = watched.page
    board.goto(page, "/approvals")
    card = page.locator(f"article[data-approval-id='{held['id']}']")
    board.api("PATCH", f"/users/{person['id']}", {"role": "viewer"})
    card.get_by_role("button", name="Approve once").click()
    # (the first refused call sends it there, once: test_expired_session.py)
    expect(page).to_have_url(f"{board.url}/dashboard/login?next=%2Fdashboard%2Fapprovals")
    board.wait_ready(page)
    assert _status(board, held) == "pending"
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(board.password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{board.url}/dashboard/approvals")
    board.wait_ready(page)
    expect(page.get_by_text("Your role is viewer")).to_be_visible()
    expect(card).to_be_visible()
    expect(card.get_by_role("button")).to_have_count(0)
    watched.assert_clean("status of 401")


def test_a_refusal_names_the_roles_once(board: Dashboard) -> None:
    """The server's 403 already says `this needs the owner role; you are viewer`: shown as
    it is, not followed by the same in brackets; a refusal that is not about a role (a used
    setup link) gets no role words."""
    watched = board.open("viewer")
    shown = watched.page.evaluate(
        """async () => {
            const { api } = await import('/dashboard/static/js/api.js');
            const { errorMessage } = await import('/dashboard/static/js/dom.js');
            const refusals = [];
            const setup = { setup_token: 'used', email: 'x@example.com', password: 'long enough' };
            const calls = [() => api('/users'),
                           () => api('/auth/setup', { method: 'POST', json: setup })];
            for (const call of calls) {
              try { await call(); } catch (error) { refusals.push(errorMessage(error)); }
            }
            return refusals;
        }"""
    )
    assert shown == [
        "this needs the owner role; you are viewer",
        "setup token is wrong or was already used",
    ]
    watched.assert_clean("status of 403")


def test_traffic_filters_pages_and_follows_live(board: Dashboard) -> None:
    """Traffic: filters by agent, connector, action, decision and status code (kept in the
    address), *Older* / *Newest* 50 at a time, new records while *Live*."""
    records = [
        {"request_id": f"docs_t{i}", "agent": "Traffic A" if i % 2 else "Traffic B",
         "connector": "github", "method": "GET", "host": "api.github.com", "path": f"/r/{i}",
         "action": "github.pr.merge" if i % 3 == 0 else "github.pr.list",
         "decision": "deny" if i % 3 == 0 else "allow", "status_code": 403 if i % 3 == 0 else 200}
        for i in range(120)
    ]  # fmt: skip
    killed = {
        "request_id": "docs_killed",
        "agent": "Traffic A",
        "connector": "stripe",
        "action": "stripe.refund.create",
        "decision": "killed",
        "status_code": 403,
    }
    _gateway_records(board, [*records, killed])
    watched = board.open("viewer")
    page = watched.page
    board.goto(page, "/traffic")
    rows = page.locator("#traffic-table tbody tr")
    form = page.locator("#traffic-filters")
    form.get_by_label("Agent").fill("Traffic A")
    expect(form.get_by_label("Action (exact name)")).to_have_attribute(
        "placeholder", "github.pr.merge"
    )
    form.get_by_label("Action (exact name)").fill("github.pr.merge")
    form.get_by_label("Status code").press_sequentially("4x03")  # a number, nothing else
    expect(form.get_by_label("Status code")).to_have_value("403")
    page.get_by_role("button", name="Filter").click()
    expect(rows).to_have_count(20)
    for text in rows.all_inner_texts():
        assert re.search(r"Traffic A\tgithub\tgithub\.pr\.merge\t.*\tdeny\t403", text), text
    assert "agent=Traffic+A" in page.url
    assert "status=403" in page.url
    page.reload()  # the filters live in the address
    board.wait_ready(page)
    expect(form.get_by_label("Action (exact name)")).to_have_value("github.pr.merge")
    expect(rows).to_have_count(20)
    # the kill switch's refusals have a decision of their own
    form.get_by_label("Action (exact name)").fill("")
    form.get_by_label("Status code").fill("")
    form.get_by_label("Connector").fill("stripe")
    form.get_by_label("Decision").select_option("killed")
    page.get_by_role("button", name="Filter").click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("stripe.refund.create")
    expect(rows.first.locator(".badge")).to_have_class("badge badge-deny")
    # paging: 61 records of Traffic A, 50 a page
    form.get_by_label("Connector").fill("")
    form.get_by_label("Decision").select_option("")
    page.get_by_role("button", name="Filter").click()
    expect(rows.first).to_contain_text("stripe.refund.create")
    expect(rows).to_have_count(50)
    expect(page.get_by_role("button", name="Newest")).to_be_disabled()
    page.get_by_role("button", name="Older").click()
    expect(rows).to_have_count(11)
    expect(page.get_by_role("button", name="Older")).to_be_disabled()
    expect(rows.last.get_by_role("cell", name="GET api.github.com /r/1", exact=True)).to_have_count(
        1
    )
    page.get_by_role("button", name="Newest").click()
    expect(rows).to_have_count(50)
    # Live: a new record of the filtered agent arrives without a reload
    _gateway_records(board, [{"request_id": "docs_live", "agent": "Traffic A",
                              "connector": "github", "action": "github.issue.create",
                              "decision": "allow", "status_code": 201}])  # fmt: skip
    expect(rows.first).to_contain_text("github.issue.create")
    watched.assert_clean()


def test_audit_log_filters_exports_and_verifies(board: Dashboard) -> None:
    key = _agent(board, "Audit Docs Bot")
    for _ in range(3):
        answer = httpx.post(f"{board.url}/api/v1/actions", timeout=30,
                            json={"action_spec": {"type": "crm.contact.get",
                                                  "resource": {"provider": "crm"}}},
                            headers={"Authorization": f"Bearer {key}"})  # fmt: skip
        assert answer.json()["status"] == "allowed"
    watched = _open_as(board, ADMIN)
    page = watched.page
    board.goto(page, "/audit")
    expect(page.locator("#verify-result")).to_have_text(
        re.compile(r"^✓ Chain intact: \d+ events checked\.$")
    )
    form = page.locator("#audit-filters")
    form.get_by_label("Event type").fill("action.allowed")
    form.get_by_label("Agent").fill("Audit Docs Bot")
    page.get_by_role("button", name="Filter").click()
    rows = page.locator("#audit-table tbody tr")
    expect(rows).to_have_count(3)
    for text in rows.all_inner_texts():
        assert "\taction.allowed\t" in text
        assert "Audit Docs Bot" in text
    with page.expect_download() as csv:
        page.get_by_role("link", name="Export CSV").click()
    assert csv.value.suggested_filename == "audit.csv"
    lines = Path(csv.value.path()).read_text(encoding="utf-8").splitlines()
    assert len(lines) == 1 + 3
    assert all('","action.allowed","' in line for line in lines[1:])  # every cell quoted
    with page.expect_download() as jsonl:
        page.get_by_role("link", name="Export JSON Lines").click()
    assert jsonl.value.suggested_filename == "audit.jsonl"
    form.get_by_label("Since").fill("2099-01-01T00:00")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("#audit-empty")).to_be_visible()
    expect(rows).to_have_count(0)
    watched.assert_clean()

    viewer = board.open("viewer")  # sees the log, not the exports (admin), nor through a link
    board.goto(viewer.page, "/audit")
    expect(viewer.page.get_by_role("link", name="Export CSV")).to_be_hidden()
    refused = viewer.page.evaluate("async () => (await fetch('/api/v1/audit/export')).status")
    assert refused == 403
    viewer.assert_clean("status of 403")


def test_agent_pages_for_any_name_and_for_none(board: Dashboard) -> None:
    """The agent page looks the agent up by name (even one with a `/`); a name no agent has
    says so and offers no control; a revoked agent shows no key."""
    _agent(board, "ops/deploy-bot")
    _agent(board, "Revoked Docs Bot")
    watched = board.open()
    page = watched.page
    board.goto(page, "/agents")
    page.get_by_role("link", name="ops/deploy-bot").click()
    board.wait_ready(page)
    expect(page.locator("#agent-h")).to_have_text("ops/deploy-bot")
    expect(page.locator("#agent-facts")).to_contain_text("active")
    page.get_by_role("button", name="Suspend").click()
    expect(page.locator("#agent-facts")).to_contain_text("suspended")

    board.goto(page, "/agents/Nobody%20Bot")
    expect(page.locator("#agent-missing")).to_have_text(
        "No agent has the name this link gives: pick one from the list of agents."
    )
    for name in ("Suspend", "Rotate key", "Revoke", "Apply preset", "Suggest rules"):
        expect(page.get_by_role("button", name=name, exact=True)).to_be_hidden()

    board.goto(page, "/agents")
    page.evaluate("() => { window.confirm = (text) => { window.__asked = text; return true; }; }")
    page.get_by_role("button", name="Revoke Revoked Docs Bot").click()
    row = page.locator("#agents-table tr[data-agent='Revoked Docs Bot']")
    expect(row.locator(".badge")).to_have_text("revoked")
    expect(row.locator("code")).to_have_text("—")  # no key left
    asked = page.evaluate("() => window.__asked")
    assert asked == "Revoke Revoked Docs Bot? Its key stops working for good."
    watched.assert_clean()


def test_each_role_sees_only_the_controls_it_may_use(board: Dashboard) -> None:
    """Roles: viewer changes nothing; member also approves, denies and revokes grants;
    admin manages agents, connectors, permissions, policies, budgets and exports the audit
    log; owner also the kill switch, settings and users."""
    _agent(board, "Roles Docs Bot")
    held = _held(board, _agent(board, "Grant Docs Bot"))
    grant = {"grant": {"for_seconds": 3600, "max_uses": 2}}
    board.api("POST", f"/approvals/{held['id']}/approve", grant)
    board.api("PUT", "/budgets/docs-roles", {"connector": "github", "limit": 10})
    controls = {
        "/agents": ["Register agent", "Suspend Roles Docs Bot"],
        "/connectors": ["Add connector"],
        "/policies": ["Review change", "Install pack"],
        "/budgets": ["Save budget", "Edit docs-roles", "Revoke"],  # the one grant
        "/settings": ["Activate kill switch", "Add user"],
    }
    minimum = {"Revoke": "member", "Activate kill switch": "owner", "Add user": "owner"}
    rank = {"viewer": 1, "member": 2, "admin": 3, "owner": 4}
    for role, email in (*USERS.items(), ("admin", ADMIN)):
        watched = _open_as(board, email)
        page = watched.page
        for path, names in controls.items():
            board.goto(page, path)
            for name in names:
                allowed = rank[role] >= rank[minimum.get(name, "admin")]
                expect(page.get_by_role("button", name=name), f"{role} {name}").to_have_count(
                    1 if allowed else 0
                )
        board.goto(page, "/audit")
        expect(page.get_by_role("link", name="Export CSV")).to_be_visible(
            visible=rank[role] >= rank["admin"]
        )
        watched.assert_clean()


def test_every_pages_header_follows_the_kill_switch_and_lists_follow_changes(
    board: Dashboard,
) -> None:
    """Live: every page's header follows `kill_switch`, configuration pages `config`."""
    _agent(board, "Switched Docs Bot")
    watched = board.open("viewer")
    page = watched.page
    board.goto(page, "/traffic")
    indicator = page.locator("#kill-indicator")
    expect(indicator).to_be_hidden()
    board.api("POST", "/kill-switch", {"active": True, "scope": "Switched Docs Bot"})
    try:
        expect(indicator).to_have_text("Kill switch: agent Switched Docs Bot")
    finally:
        board.api("POST", "/kill-switch", {"active": False, "scope": "Switched Docs Bot"})
    expect(indicator).to_be_hidden()
    board.goto(page, "/agents")
    _agent(board, "Arrived Docs Bot")
    expect(page.locator("#agents-table tr[data-agent='Arrived Docs Bot']")).to_be_visible()
    watched.assert_clean()


def test_half_filled_forms_say_what_is_missing_and_save_nothing(board: Dashboard) -> None:
    _agent(board, "Sandbox Docs Bot")
    watched = board.open()
    page = watched.page
    board.goto(page, "/settings")
    approvers = page.get_by_label("Slack approvers (member ID and user email, one per line)")
    approvers.fill("U012AB3CD")
    page.locator("#integrations-form").get_by_role("button", name="Save").click()
    expect(page.locator("#notice")).to_have_text(
        'Slack approvers, line 1: expected a member ID and an email, like "U012AB3CD '
        'alice@example.com"'
    )
    assert board.api("GET", "/settings")["slack"]["approvers"] == {}

    board.goto(page, "/policies")
    before = board.api("GET", "/policies")["policies"]
    page.get_by_label("Policy document (YAML or JSON)").fill("name: half-written\nrules: [")
    page.get_by_role("button", name="Review change").click()
    expect(page.locator("#validation")).to_contain_text("✗ Not valid")
    expect(page.locator("#replay-preview")).to_be_hidden()
    assert board.api("GET", "/policies")["policies"] == before

    board.goto(page, "/sandbox")
    page.get_by_label("Agent").select_option("Sandbox Docs Bot")
    spec = page.get_by_label("Action spec (JSON)")
    spec.fill('{"type": "github.pr.merge",')
    page.get_by_role("button", name="Evaluate").click()
    expect(page.locator("#sb-error")).to_contain_text("the action spec is not valid JSON")
    spec.fill('{"type": "merge"}')
    page.get_by_role("button", name="Evaluate").click()
    expect(page.locator("#sb-error")).to_contain_text("invalid action type `merge`")
    expect(page.locator("#sb-result")).to_be_hidden()
    watched.assert_clean("status of 422")
