"""The dashboard with a real gateway: held proxy requests, live traffic, every page."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from playwright.sync_api import expect

from tests.dashboard.scenario import (
    GITHUB_TOKEN,
    PAGES,
    create_agent,
    merge_through_gateway,
    populate,
    proxy_traffic,
)

if TYPE_CHECKING:
    from tests.dashboard.conftest import Dashboard

pytestmark = pytest.mark.browser


def test_approve_a_held_proxy_request_and_the_agents_call_completes(
    dash: Dashboard, start_gateway: Any, github_fake: Any
) -> None:
    key = create_agent(dash, "Merge Bot")
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
    agent = threading.Thread(target=merge_through_gateway, args=(gateway, key, result))
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


def test_every_page_loads_without_console_errors_on_desktop_and_phone(
    dash: Dashboard, start_gateway: Any
) -> None:
    key = populate(dash)
    proxy_traffic(dash, start_gateway(), key)
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


SHADOW_HOLD_READS = """\
name: hold-reads
scope: {action_types: ["github.repo.get"]}
rules:
  - {name: reads, decision: require_approval}
"""


def test_traffic_arrives_live_and_filters_by_decision(dash: Dashboard, start_gateway: Any) -> None:
    key = populate(dash)
    # a shadow policy holding repo reads: marked on its row, never enforced (it stays allowed)
    dash.api("POST", "/shadow/policies", {"document": SHADOW_HOLD_READS})
    gateway = start_gateway()
    watched = dash.open("viewer")
    page = watched.page
    dash.goto(page, "/traffic")
    expect(page.locator("#traffic-empty")).to_be_visible()
    proxy_traffic(dash, gateway, key)  # while the page is open: no reload
    rows = page.locator("#traffic-table tbody tr")
    expect(rows).to_have_count(2)
    assert "github.repo.get" in rows.nth(1).inner_text()  # newest first
    assert "github.pr.merge" in rows.nth(0).inner_text()
    expect(rows.nth(1).locator(".shadow-marker")).to_have_text(" shadow: require_approval")
    expect(rows.nth(0).locator(".shadow-marker")).to_have_count(0)  # denied either way
    page.get_by_label("Shadow").select_option("diverged")
    page.get_by_role("button", name="Filter").click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("github.repo.get")
    page.get_by_label("Shadow").select_option("")
    page.get_by_label("Decision").select_option("deny")
    page.get_by_role("button", name="Filter").click()
    # the row the shadow filter left is also one row: wait for the deny filter's row itself
    expect(rows.first).to_contain_text("github.pr.merge")
    expect(rows).to_have_count(1)
    assert "decision=deny" in page.url  # a filtered view can be bookmarked
    page.reload()
    dash.wait_ready(page)
    expect(rows).to_have_count(1)
    expect(page.get_by_label("Decision")).to_have_value("deny")
    watched.assert_clean()
