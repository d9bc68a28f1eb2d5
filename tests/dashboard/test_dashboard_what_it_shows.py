"""The dashboard acts on what it shows, and shows no credential, against one live server:

- a kill switch is chosen and lifted with its kind (`agent:NAME`, `connector:TYPE`, `all`):
  an agent named `github` is that agent, never the connector (no agent may be named `all`);
- an agent page shows the agent its link names (by id), and its controls and its traffic
  are that one's, also when a revoked agent's name was registered again;
- a policy saved from an editor opened on an older version is refused (409
  `version_conflict`), never a silent overwrite of someone else's change;
- an approval card masks a credential in the held request's path, query and body preview.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from agentfirewall.actions import parse_action_spec
from tests.dashboard.conftest import Dashboard, Watched, _create_people, admin_client
from tests.livesrv import LiveServer

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    started = LiveServer.start(tmp_path_factory.mktemp("shows") / "tf")
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="module")
def board(server: LiveServer, browser: Any) -> Iterator[Dashboard]:
    headers = {"Authorization": f"Bearer {server.admin_token}"}
    with admin_client(server.url, headers) as admin:
        _create_people(server.url, admin, server.data_dir)
        dash = Dashboard(server.url, admin, browser, server.data_dir)
        yield dash
        for context in dash.contexts:
            context.close()


@pytest.fixture(scope="module")
def signed_in(board: Dashboard) -> Watched:
    return board.open()


@pytest.fixture
def owner(signed_in: Watched) -> Watched:
    """The owner's page, signed in once for the module; what went wrong before is past."""
    signed_in.errors.clear()
    signed_in.dialogs.clear()
    return signed_in


def _switches(board: Dashboard) -> set[tuple[str, str | None]]:
    return {(k["scope"], k["target"]) for k in board.api("GET", "/kill-switch")["active"]}


def test_kill_switch_scopes_name_their_kind(board: Dashboard, owner: Watched) -> None:
    board.api("POST", "/agents", {"name": "github"})  # an agent named as a connector type
    board.api("POST", "/connectors", {"type": "github", "token": "ghp_killScopeTestToken000000"})
    watched = owner
    page = watched.page
    try:
        board.goto(page, "/settings")
        agent_github = page.locator("#kill-scope optgroup[label='Agent'] option", has_text="github")
        page.locator("#kill-scope").select_option(agent_github.get_attribute("value"))
        page.get_by_role("button", name="Activate kill switch").click()
        page.get_by_role("dialog").get_by_role("button", name="Confirm").click()
        expect(page.locator("#kill-indicator")).to_have_text("Kill switch: agent github")
        assert _switches(board) == {("agent", "github")}  # the agent, not the connector

        board.api("POST", "/kill-switch", {"active": True, "scope": "connector:github"})
        board.api("POST", "/kill-switch", {"active": True, "scope": "all"})
        board.goto(page, "/settings")
        page.get_by_role("button", name="Deactivate kill switch agent github").click()
        page.get_by_role("dialog").get_by_role("button", name="Confirm").click()
        expect(page.locator("#kill-table tbody tr")).to_have_count(2)
        assert _switches(board) == {("all", None), ("connector", "github")}  # both: still
        watched.assert_clean()
    finally:
        board.api("POST", "/kill-switch", {"active": False})


def test_agent_page_shows_and_changes_the_agent_its_link_names(
    server: LiveServer, board: Dashboard, owner: Watched
) -> None:
    board.api("POST", "/agents", {"name": "Deploy Bot"})
    old = next(a for a in board.api("GET", "/agents")["agents"] if a["name"] == "Deploy Bot")
    board.api("POST", f"/agents/{old['id']}/revoke")
    new = board.api("POST", "/agents", {"name": "Deploy Bot"})["agent"]
    records = [{"request_id": f"r-{a['id']}", "agent": "Deploy Bot", "agent_id": a["id"],
                "action": f"github.{tag}.get", "decision": "allow"}
               for a, tag in ((old, "old"), (new, "new"))]  # fmt: skip
    assert server.gateway("POST", "/v1/gateway/traffic", {"records": records}).status_code == 200
    watched = owner
    page = watched.page
    board.goto(page, "/agents")
    live_row = page.locator("#agents-table tbody tr", has=page.locator(".badge", has_text="active"))
    live_row.filter(has_text="Deploy Bot").get_by_role("link").click()
    board.wait_ready(page)
    facts = page.locator("#agent-facts")
    expect(facts).to_contain_text(new["id"])
    page.get_by_label("SDK default when no rule matches").select_option("deny")
    page.locator("#enforcement-form").get_by_role("button", name="Save").click()
    expect(page.locator("#notice")).to_have_text("Saved.")
    agents = {a["id"]: a for a in board.api("GET", "/agents")["agents"]}
    assert (agents[new["id"]]["sdk_default"], agents[old["id"]]["sdk_default"]) == ("deny", "allow")

    board.goto(page, "/agents/Deploy%20Bot")  # a name alone: the agent not revoked, as the API
    expect(facts).to_contain_text(new["id"])
    expect(page.locator("#agent-traffic tbody code")).to_have_text(["github.new.get"])  # its own
    board.goto(page, f"/agents/Deploy%20Bot?id={old['id']}")  # the revoked one: nothing to change
    expect(facts).to_contain_text(old["id"])
    expect(page.locator("#agent-traffic tbody code")).to_have_text(["github.old.get"])
    expect(page.locator("#agent-revoked")).to_be_visible()
    expect(page.locator("#enforcement-form").get_by_role("button", name="Save")).to_be_hidden()
    expect(page.locator("#rule-form")).to_be_hidden()
    watched.assert_clean()


POLICY = """name: payments
rules:
  - name: hold-big-transfers
    conditions:
      field: action_spec.type
      operator: equals
      value: payment.transfer.initiate
    decision: requires_approval
    reason: transfers need a human
"""
BLOCK_REFUNDS = """  - name: block-refunds
    conditions:
      field: action_spec.type
      operator: equals
      value: stripe.refund.create
    decision: deny
"""


def test_policy_editor_refuses_to_overwrite_a_newer_version(
    board: Dashboard, owner: Watched
) -> None:
    policy = board.api("POST", "/policies", {"document": POLICY})
    watched = owner
    page = watched.page
    board.goto(page, "/policies")
    page.locator("#policies-table").get_by_role("button", name="payments", exact=True).click()
    editor = page.get_by_label("Policy document (YAML or JSON)")
    expect(editor).to_have_value(POLICY)
    editor.fill(POLICY.replace("need a human", "need a human (A)"))
    # meanwhile someone else adds a deny rule: v2; the open editor says so
    board.api("PUT", f"/policies/{policy['id']}", {"document": POLICY + BLOCK_REFUNDS})
    stale = page.locator("#policy-stale")
    expect(stale).to_contain_text("v2")
    page.get_by_role("button", name="Review change").click()
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator("#notice")).to_contain_text("version 2")
    assert "block-refunds" in board.api("GET", f"/policies/{policy['id']}")["document"]
    page.get_by_role("button", name="Reload v2").click()
    expect(editor).to_have_value(POLICY + BLOCK_REFUNDS)
    expect(stale).to_be_hidden()
    watched.assert_clean("409")  # (the refused save, in the console)


AGENT_TOKEN = "ghp_AgentOwnToken1234567890abcdefghij"
SECRETS = (AGENT_TOKEN, "hunter2-webhook-shared-secret", "Sup3rS3cret!")


def test_approval_card_masks_credentials_in_the_request(
    server: LiveServer, board: Dashboard
) -> None:
    board.api("POST", "/agents", {"name": "Hook Bot"})
    spec = parse_action_spec(
        {"type": "github.hook.create", "resource": {"provider": "github", "target": "acme/api"}}
    )
    preview = (
        '{"name": "web", "config": {"url": "https://ci.example.com/hook", '
        '"secret": "hunter2-webhook-shared-secret", "password": "Sup3rS3cret!"}}'
    )
    request = {"method": "POST", "host": "api.github.com", "path": "/repos/acme/api/hooks",
               "query": f"access_token={AGENT_TOKEN}", "body_size": len(preview),
               "body_preview": preview, "digest": "d" * 64}  # fmt: skip
    held = {"agent": "Hook Bot", "connector": "github", "action_spec": spec.to_dict(),
            "action_hash": spec.action_hash, "reason": "held", "request": request}  # fmt: skip
    answer = server.gateway("POST", "/v1/gateway/approvals", json=held)
    assert answer.status_code == 200, answer.text
    watched = board.open("viewer")
    page = watched.page
    board.goto(page, "/approvals")
    card = page.locator("article.approval", has_text="github.hook.create")
    shown = card.locator(".a-request").inner_text() + card.locator(".a-body").inner_text()
    assert not [s for s in SECRETS if s in shown], shown
    assert "/repos/acme/api/hooks?access_token=••••••" in shown  # what is no secret stays
    assert "https://ci.example.com/hook" in shown
    watched.assert_clean()
