"""Characters that change how text reads or hide it (bidirectional overrides, zero-width and
tag characters, control characters, line separators) are shown as their escapes on every
text the dashboard shows (docs/dashboard.md, Security), as `tf` and Slack show them
(agentfirewall/display.py): on every page against one live server with such data, in the
helpers that write text, and in the sources (no script writes text another way)."""

from __future__ import annotations

import json
import re
import sqlite3
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from playwright.sync_api import expect
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient

import agentfirewall_server.dashboard as dashboard
from agentfirewall.display import visible
from tests.dashboard.conftest import Dashboard, _create_people, admin_client, run_module
from tests.dashboard.scenario import HELD_TYPE, request_action, spec
from tests.livesrv import LiveServer

pytestmark = pytest.mark.browser

#: Reads as `deploy-bot-admin` when shown raw.
SPOOF = "deploy-bot\u202enimda-"
#: One of each kind (YAML takes all but the control character and the line separator).
HIDDEN = "\u202e\u200b\u2066\U000e0041"
POLICY = f"""name: hold{HIDDEN}-transfers
description: transfers wait for a human
priority: 10
rules:
  - name: transfers-need-approval
    conditions:
      all:
        - {{field: action_spec.type, operator: equals, value: {HELD_TYPE}}}
    decision: requires_approval
    reason: transfers need a human{HIDDEN}
    risk_score: 80
"""
HELD_BOT = f"Held{HIDDEN} Bot"
#: What a crafted link to the agent page would like the page to say.
PHISH = "Session expired - sign in again at https://tameflare-login.example"
STATIC = Path(dashboard.__file__).parent / "static" / "js"


def hidden_in(text: str) -> list[str]:
    """The characters of `text` that should have been shown as escapes (layout aside)."""
    kinds = {"Cc", "Cf", "Cs", "Zl", "Zp"}
    return [c for c in text if unicodedata.category(c) in kinds and c not in "\n\t"]


@pytest.fixture(scope="module")
def board(browser: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    """One live server whose agent, policy, held action and kill switch hold such characters."""
    server = LiveServer.start(tmp_path_factory.mktemp("hidden") / "tf")
    headers = {"Authorization": f"Bearer {server.admin_token}"}
    try:
        with admin_client(server.url, headers) as admin:
            _create_people(server.url, admin, server.data_dir)
            dash = Dashboard(server.url, admin, browser, server.data_dir)
            _populate(dash)
            yield dash
            for context in dash.contexts:
                context.close()
    finally:
        server.stop()


def _stored_agent(dash: Dashboard, name: str, placeholder: str) -> str:
    """An agent named `name` as an earlier version stored it (a new name cannot hold such
    characters any more: 422), its key; the next write's reload reads the name."""
    made = dash.api("POST", "/agents", {"name": placeholder, "environment": "live"})
    with sqlite3.connect(dash.data_dir / "agentfirewall.db") as db:
        db.execute("UPDATE agents SET name = ? WHERE id = ?", (name, made["agent"]["id"]))
    key: str = made["api_key"]
    return key


def _populate(dash: Dashboard) -> None:
    _stored_agent(dash, SPOOF, "spoof")
    held_key = _stored_agent(dash, HELD_BOT, "held")
    policy = dash.api("POST", "/policies", {"document": POLICY})
    # a second version: the policies page diffs the two
    changed = POLICY.replace("priority: 10", "priority: 11")
    dash.api("PUT", f"/policies/{policy['id']}", {"document": changed})
    request_action(
        dash, held_key, 10, target=f"acme/{HIDDEN}api", note=f"line\u2028two{HIDDEN}\x1b"
    )
    reason = f"stop{HIDDEN}\x1b[2J now"
    dash.api("POST", "/kill-switch", {"active": True, "scope": SPOOF, "reason": reason})


_SHOWN_TEXT = """() => {
  const texts = [document.title, document.body.innerText];
  for (const node of document.querySelectorAll("*")) {
    for (const name of ["title", "aria-label", "placeholder", "alt", "label"]) {
      const value = node.getAttribute(name);
      if (value) texts.push(value);
    }
  }
  // option texts and the tooltips of the charts (an SVG <title> is not in innerText)
  for (const node of document.querySelectorAll("option, svg title")) texts.push(node.textContent);
  return texts.join("\\n");
}"""


def _policies_diff(page: Any) -> None:
    page.locator("#policies-table").get_by_role("button", name=re.compile("^hold")).click()
    page.get_by_role("button", name="diff with v1").click()
    expect(page.locator("#diff")).to_be_visible()


def _sandbox_result(page: Any) -> None:
    page.get_by_label("Agent").select_option(HELD_BOT)
    page.get_by_label("Action spec (JSON)").fill(json.dumps(spec(10)))
    page.get_by_role("button", name="Evaluate").click()
    expect(page.locator("#sb-result")).to_be_visible()


def _approval_parameters(page: Any) -> None:
    page.locator("#pending summary", has_text="Parameters").click()
    expect(page.locator("#pending .a-params")).to_be_visible()


#: What to do on a page before reading it, beyond opening it.
_STEPS = {
    "/approvals": _approval_parameters,
    "/policies": _policies_diff,
    "/sandbox": _sandbox_result,
}


def test_no_page_shows_a_hidden_character(board: Dashboard) -> None:
    """Every signed-in page (and the agent page, the policy diff and a sandbox result): no
    such character in its text, its tooltips, labels or options; the escapes instead."""
    watched = board.open()
    page = watched.page
    pages = [p.path for p in dashboard.PAGES if p.signed_in]
    for path in [*pages, f"/agents/{quote(SPOOF, safe='')}"]:
        board.goto(page, path)
        step = _STEPS.get(path)
        if step:
            step(page)
        shown = page.evaluate(_SHOWN_TEXT)
        assert hidden_in(shown) == [], f"{path}: {hidden_in(shown)}"
        assert visible(SPOOF) in shown, path  # the kill switch's agent, in the header
    watched.assert_clean()


def test_every_text_from_the_data_is_shown_with_escapes(board: Dashboard) -> None:
    """The places the report named: the agent page's heading, the header's kill-switch
    badge, the sandbox's reason and matched policies, a policy version diff."""
    watched = board.open()
    page = watched.page
    board.goto(page, f"/agents/{quote(SPOOF, safe='')}")
    expect(page.locator("#agent-h")).to_have_text(visible(SPOOF))
    expect(page.locator("#kill-indicator")).to_have_text(f"Kill switch: agent {visible(SPOOF)}")

    board.goto(page, "/sandbox")
    _sandbox_result(page)
    expect(page.locator("#sb-reason")).to_contain_text(visible(f"transfers need a human{HIDDEN}"))
    expect(page.locator("#sb-policies")).to_have_text(visible(f"hold{HIDDEN}-transfers"))

    board.goto(page, "/policies")
    _policies_diff(page)
    expect(page.locator("#diff")).to_contain_text(
        visible(f"reason: transfers need a human{HIDDEN}")
    )
    # the editor keeps the document as stored (it is saved back) and names the lines
    assert HIDDEN in page.locator("#policy-doc").input_value()
    expect(page.locator("#policy-hidden")).to_contain_text(
        f"line 1: {visible(f'name: hold{HIDDEN}')}"
    )
    watched.assert_clean()


def test_a_link_puts_no_words_on_the_agent_page(board: Dashboard) -> None:
    """The agent page's heading is the agent found: a link to a name no agent has puts
    none of its words on the page."""
    watched = board.open()
    page = watched.page
    board.goto(page, f"/agents/{quote(PHISH, safe='')}")
    expect(page.locator("#agent-missing")).to_be_visible()
    expect(page.locator("#agent-h")).to_have_text("No such agent")
    assert "tameflare-login" not in page.evaluate(_SHOWN_TEXT)
    watched.assert_clean()


def test_the_agent_shell_shows_no_name_from_the_address() -> None:
    """The shell keeps the name for its script, in an attribute, and shows none of it."""
    client = TestClient(Starlette(routes=[Mount("/dashboard", routes=dashboard.routes())]))
    text = client.get(f"/dashboard/agents/{quote(PHISH, safe='')}").text
    assert text.count("tameflare-login") == 1
    assert f'data-agent="{PHISH}"' in text


def test_the_helpers_write_escapes(module_page: Any) -> None:
    """`el` (text and the attributes people read or hear), `setText`, `notify` (and so every
    error shown) and the policy diff."""
    body = """
        const dom = await import('/dashboard/static/js/dom.js');
        const attrs = {title: arg, 'aria-label': arg, placeholder: arg, value: arg};
        const node = dom.el('span', {text: arg, ...attrs});
        const set = document.createElement('p');
        dom.setText(set, arg);
        dom.notify(arg, 'error');
        const pre = document.createElement('pre');
        m.renderDiff(pre, 'same\\n' + arg, 'same\\n' + arg + '!');
        return [node.textContent, node.title, node.getAttribute('aria-label'),
                node.getAttribute('placeholder'), node.getAttribute('value'), set.textContent,
                document.querySelector('#notice').textContent, pre.textContent];
    """
    text = f"acme/{HIDDEN}\x1b\u2028api"
    got = run_module(module_page, "diff.js", body, text)
    escaped = visible(text)
    assert got[:4] == [escaped] * 4
    assert got[4] == text  # a value is data, not text shown: kept as it is
    assert got[5:7] == [escaped] * 2
    assert got[7] == f"  same\n- {escaped}\n+ {escaped}!\n"


#: Where a script could write text other than through dom.js's helpers.
_RAW_SINKS = re.compile(
    r"\.(?:textContent|innerText|outerText|nodeValue)\s*=(?!=)"
    r"|\.title\s*=(?!=)(?!\s*shown\()"
    r"|createTextNode\("
    r"|setAttribute\(\s*\"(?:title|aria-label|placeholder|alt|label)\"\s*,(?!\s*shown\()"
    r"|\b(?:alert|confirm|prompt)\((?!shown\()"
)


def test_no_script_writes_text_but_through_the_helper() -> None:
    """Every text goes through `shown` (dom.js): `el`, `append`, `setText`, `notify`, or
    `shown(...)` itself where a tooltip, a label or a dialog is set directly."""
    found = []
    for file in sorted(STATIC.rglob("*.js")):
        if file.name == "dom.js":
            continue
        for number, line in enumerate(file.read_text().splitlines(), 1):
            if _RAW_SINKS.search(line):
                found.append(f"{file.relative_to(STATIC)}:{number}: {line.strip()}")
    assert found == []
