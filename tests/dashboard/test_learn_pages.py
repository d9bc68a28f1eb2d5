"""The dashboard's learn, grant and budget flows in a real browser, against one live server:
the policy editor's replay preview, suggest-and-apply on the agent page, approve with a
grant, set and remove a budget, and what a viewer may not do. Each flow is checked through
the API (and, where it decides calls, by the calls it then decides)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx
import pytest
from playwright.sync_api import expect

from tests.dashboard.conftest import Dashboard, _create_people, admin_client
from tests.dashboard.scenario import HELD_TYPE, HOLD_POLICY, request_action, wait_action
from tests.livesrv import LiveServer

if TYPE_CHECKING:
    from tests.dashboard.conftest import Watched

pytestmark = pytest.mark.browser

PAYOUT = "ledger.payout.create"
GUARD_POLICY = f"""name: guard-payouts
description: large payouts are refused, the others wait for a human
rules:
  - name: big-payouts-denied
    conditions:
      all:
        - {{field: action_spec.type, operator: equals, value: {PAYOUT}}}
        - {{field: action_spec.parameters.amount, operator: gt, value: 10000}}
    decision: deny
    reason: too much money
  - name: payouts-held
    conditions:
      all:
        - {{field: action_spec.type, operator: equals, value: {PAYOUT}}}
    decision: requires_approval
    reason: payouts need a human
"""
#: Hostile names: shown as text or the page runs them (they would set window.__xss).
PAY_BOT = 'Pay <img src=x onerror="window.__xss=1"> Bot'
OPS_BOT = "<svg onload=window.__xss=2>Ops Bot"


@pytest.fixture(scope="module")
def board(browser: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    """One live server and its people for every flow of this module."""
    server = LiveServer.start(tmp_path_factory.mktemp("learn") / "tf")
    headers = {"Authorization": f"Bearer {server.admin_token}"}
    try:
        with admin_client(server.url, headers) as admin:
            _create_people(server.url, admin, server.data_dir)
            dash = Dashboard(server.url, admin, browser, server.data_dir)
            yield dash
            for context in dash.contexts:
                context.close()
    finally:
        server.stop()


def _agent(board: Dashboard, name: str) -> str:
    body = {"name": name, "environment": "live", "sdk_default": "allow"}
    key: str = board.api("POST", "/agents", body)["api_key"]
    return key


def _act(board: Dashboard, key: str, kind: str, provider: str, **parameters: Any) -> str:
    spec = {"type": kind, "resource": {"provider": provider}, "parameters": parameters}
    answer = httpx.post(f"{board.url}/api/v1/actions", json={"action_spec": spec},
                        headers={"Authorization": f"Bearer {key}"}, timeout=30)  # fmt: skip
    assert answer.status_code == 200, answer.text
    status: str = answer.json()["status"]
    return status


def _no_script_ran(watched: Watched) -> None:
    assert watched.page.evaluate("() => window.__xss === undefined")


def test_policy_editor_replays_a_change_before_saving_it(board: Dashboard) -> None:
    watched = board.open()
    page = watched.page
    board.goto(page, "/policies")
    editor = page.get_by_label("Policy document (YAML or JSON)")
    editor.fill(GUARD_POLICY)
    page.locator("#validation").get_by_text("Valid policy").wait_for()
    # Nothing recorded yet (the module's first flow): said so, and nothing saved before Save.
    page.get_by_role("button", name="Review change").click()
    summary = page.locator("#replay-summary")
    expect(summary).to_have_text(re.compile("^No recorded traffic in the last 7 days"))
    page.get_by_role("button", name="Cancel").click()
    expect(page.locator("#replay-preview")).to_be_hidden()
    assert board.api("GET", "/policies")["policies"] == []

    key = _agent(board, PAY_BOT)
    for amount in (500, 5_000, 50_000):
        assert _act(board, key, PAYOUT, "ledger", amount=amount, currency="usd") == "allowed"
    assert _act(board, key, "crm.contact.update", "crm", id="c_1") == "allowed"
    page.get_by_role("button", name="Review change").click()
    expected = r"^This change would have denied 1 and held 2 of the last \d+ calls \(last 7 days\)"
    expect(summary).to_have_text(re.compile(expected))
    rows = page.locator("#replay-table tbody tr")
    expect(rows).to_have_count(3)
    denied = page.locator("#replay-table tbody tr[data-change='allow->deny']")
    expect(denied).to_contain_text(PAY_BOT)  # the hostile name, as text
    expect(denied).to_contain_text("big-payouts-denied")
    held = page.locator("#replay-table tbody tr[data-change='allow->require_approval']")
    expect(held).to_have_count(2)
    board.screenshot(page, "policies-replay-1280")
    _no_script_ran(watched)

    page.get_by_role("button", name="Save", exact=True).click()
    page.locator("#policies-table tbody tr[data-policy='guard-payouts']").wait_for()
    expect(page.locator("#replay-preview")).to_be_hidden()
    saved = board.api("GET", "/policies/guard-payouts")
    assert (saved["version"], saved["enabled"]) == (1, True)
    # The saved policy decides what the preview said it would.
    assert _act(board, key, PAYOUT, "ledger", amount=60_000, currency="usd") == "denied"
    assert _act(board, key, PAYOUT, "ledger", amount=600, currency="usd") == "pending_approval"
    watched.assert_clean()


def test_agent_page_suggests_rules_and_applies_them_only_when_asked(board: Dashboard) -> None:
    key = _agent(board, OPS_BOT)
    for kind in ("github.pr.list", "github.pr.list", "github.issue.get", "github.branch.delete"):
        _act(board, key, kind, "github", owner="acme", repo="api")
    watched = board.open()
    page = watched.page
    board.goto(page, f"/agents/{quote(OPS_BOT, safe='')}")
    page.get_by_role("button", name="Suggest rules").click()
    expect(page.locator("#suggest-summary")).to_contain_text(
        f"4 recorded calls of {OPS_BOT} in the last 7 days: 4 rules proposed"
    )
    table = page.locator("#suggest-table tbody")
    expect(table.locator("tr")).to_have_count(4)
    expect(table.locator("tr[data-pattern='github.branch.delete']")).to_contain_text(
        "require_approval"
    )
    expect(table.locator("tr[data-pattern='*']")).to_contain_text("deny")
    _no_script_ran(watched)
    page.get_by_role("button", name="Discard").click()
    expect(page.locator("#suggest-result")).to_be_hidden()
    assert board.api("GET", f"/permissions?agent={quote(OPS_BOT)}")["permissions"] == []

    page.get_by_label("Traffic of the last").select_option(label="30 days")
    page.get_by_role("button", name="Suggest rules").click()
    expect(page.locator("#suggest-summary")).to_contain_text("in the last 30 days")
    board.screenshot(page, "agent-suggest-1280")
    page.get_by_role("button", name="Apply these rules").click()
    expect(page.locator("#perm-table tbody tr")).to_have_count(4)
    rules = board.api("GET", f"/permissions?agent={quote(OPS_BOT)}")["permissions"]
    assert {(r["connector"], r["action_pattern"], r["decision"]) for r in rules} == {
        ("github", "github.pr.list", "allow"),
        ("github", "github.issue.get", "allow"),
        ("github", "github.branch.delete", "require_approval"),
        ("*", "*", "deny"),
    }
    # The observed traffic passes, a high-risk one waits, an unseen action is denied.
    assert _act(board, key, "github.pr.list", "github", owner="acme", repo="api") == "allowed"
    assert _act(board, key, "github.branch.delete", "github", owner="acme") == "pending_approval"
    assert _act(board, key, "github.repo.delete", "github", owner="acme", repo="api") == "denied"
    _no_script_ran(watched)
    watched.assert_clean()


def test_approve_with_a_grant_and_see_it_on_the_budgets_page(board: Dashboard) -> None:
    key = _agent(board, "Grant Bot")
    if not any(p["name"] == "hold-transfers" for p in board.api("GET", "/policies")["policies"]):
        board.api("POST", "/policies", {"document": HOLD_POLICY})
    watched = board.open("member")
    page = watched.page
    board.goto(page, "/approvals")
    held = request_action(board, key, 12_000)
    card = page.locator(f"article[data-approval-id='{held['approval']['id']}']")
    card.locator("summary", has_text="Grant more than this request").click()
    card.get_by_label("For how long").fill("1h")
    card.get_by_label("Max uses").fill("5")
    where = card.get_by_label("Only where")
    where.fill("amount between 5")
    card.get_by_role("button", name="Approve with grant").click()
    expect(card.locator(".g-error")).to_contain_text("constraint on `amount`")
    assert board.api("GET", f"/approvals/{held['approval']['id']}")["status"] == "pending"
    where.fill("amount<=20000\ncurrency in [EUR]")
    board.screenshot(page, "approvals-grant-1280")
    card.get_by_role("button", name="Approve with grant").click()
    assert wait_action(board, key, held["action_request_id"])["status"] == "allowed"
    card.wait_for(state="detached")

    grants = [g for g in board.api("GET", "/grants")["grants"] if g["agent"] == "Grant Bot"]
    assert len(grants) == 1
    grant = grants[0]
    assert (grant["action_type"], grant["max_uses"], grant["uses"]) == (HELD_TYPE, 5, 0)
    assert grant["expires_at"]
    assert grant["approval_id"] == held["approval"]["id"]
    assert [(c["field"], c["operator"], c["value"]) for c in grant["constraints"]] == [
        ("action_spec.parameters.amount", "lte", 20000),
        ("action_spec.parameters.currency", "in", ["EUR"]),
    ]
    board.goto(page, "/budgets")
    row = page.locator("#grants-table tbody tr", has_text=grant["id"])
    expect(row).to_contain_text("amount lte 20000")
    expect(row).to_contain_text("0 / 5")
    watched.assert_clean("422")  # the refused constraint


def test_budgets_page_sets_changes_and_removes_a_budget(board: Dashboard) -> None:
    watched = board.open()
    page = watched.page
    board.goto(page, "/budgets")
    page.get_by_label("Name").fill("stripe-daily")
    page.get_by_label("Agents").fill("Finance Bot, Refund Bot")
    page.get_by_label("Connector").fill("stripe")
    page.get_by_label("Action glob").fill("stripe.transfer.*")
    page.get_by_label("Measure").select_option("sum")
    page.get_by_label("Currency").fill("USD")
    page.get_by_label("Limit", exact=True).fill("100000")
    page.get_by_label("Time zone").fill("Mars/Olympus")
    page.get_by_role("button", name="Save budget").click()
    expect(page.locator("#budget-error")).to_contain_text("unknown time zone `Mars/Olympus`")
    expect(page.get_by_label("Time zone")).to_have_attribute("aria-invalid", "true")
    board.screenshot(page, "budgets-error-1280")
    page.get_by_label("Time zone").fill("Europe/Paris")
    page.get_by_role("button", name="Save budget").click()
    row = page.locator("#budgets-table tbody tr[data-budget='stripe-daily']")
    expect(row).to_contain_text("0 / 100,000 usd")
    expect(page.locator("#budget-error")).to_be_hidden()
    saved = board.api("GET", "/budgets/stripe-daily")
    assert {k: saved[k] for k in ("agents", "connector", "action", "measure", "currency",
                                  "limit", "window", "timezone", "outcome")} == {
        "agents": ["Finance Bot", "Refund Bot"], "connector": "stripe",
        "action": "stripe.transfer.*", "measure": "sum", "currency": "usd", "limit": 100000,
        "window": "calendar_day", "timezone": "Europe/Paris", "outcome": "deny",
    }  # fmt: skip

    # A description (the form has none) set elsewhere survives an edit in the form.
    described = {k: v for k, v in saved.items() if k not in ("id", "name", "state")}
    board.api("PUT", "/budgets/stripe-daily", {**described, "description": "finance caps"})
    board.goto(page, "/budgets")
    row.get_by_role("button", name="Edit stripe-daily").click()
    expect(page.get_by_label("Time zone")).to_have_value("Europe/Paris")
    page.get_by_label("Limit", exact=True).fill("50000")
    page.get_by_label("Past the limit").select_option("require_approval")
    page.get_by_role("button", name="Save budget").click()
    expect(row).to_contain_text("0 / 50,000 usd")
    changed = board.api("GET", "/budgets/stripe-daily")
    assert (changed["limit"], changed["outcome"]) == (50000, "require_approval")
    assert changed["id"] == saved["id"]  # replaced in place
    assert changed["description"] == "finance caps"

    row.get_by_role("button", name="Remove stripe-daily").click()
    row.get_by_role("button", name="Confirm remove").click()
    row.wait_for(state="detached")
    assert board.admin.get("/api/v1/budgets/stripe-daily").status_code == 404
    watched.assert_clean("422")  # the refused time zone


def test_viewer_sees_suggestions_and_budgets_but_no_control_that_writes(board: Dashboard) -> None:
    key = _agent(board, "Viewer Bot")
    _act(board, key, "github.pr.list", "github", owner="acme", repo="api")
    board.api("PUT", "/budgets/viewer-count", {"connector": "github", "limit": 10})
    watched = board.open("viewer")
    page = watched.page
    board.goto(page, "/agents/Viewer%20Bot")
    page.get_by_role("button", name="Suggest rules").click()
    expect(page.locator("#suggest-table tbody tr")).to_have_count(2)
    expect(page.get_by_role("button", name="Apply these rules")).to_have_count(0)
    board.goto(page, "/policies")
    expect(page.get_by_role("button", name="Review change")).to_have_count(0)
    board.goto(page, "/budgets")
    expect(page.locator("#budgets-table tbody tr[data-budget='viewer-count']")).to_be_visible()
    expect(page.get_by_role("button", name="Save budget")).to_have_count(0)
    expect(page.get_by_role("button", name=re.compile("^(Edit|Remove) "))).to_have_count(0)
    watched.assert_clean()
