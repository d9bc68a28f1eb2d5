"""Stuck executions on the Approvals page: listed for everyone, settled by an admin.

The crash itself is tested against a killed server (tests/server/test_stuck_executions.py);
here the store is put in the state a crash leaves: an allowed action claimed an hour ago.
"""

from __future__ import annotations

import sqlite3
import time
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.dashboard.scenario import spec

if TYPE_CHECKING:
    from tests.dashboard.conftest import Dashboard

pytestmark = pytest.mark.browser


def _crashed_execution(dash: Dashboard, agent: str) -> str:
    """An allowed action whose execution a crash cut short an hour ago."""
    key = dash.api("POST", "/agents", {"name": agent, "sdk_default": "allow"})["api_key"]
    answer = httpx.post(
        f"{dash.url}/api/v1/actions",
        json={"action_spec": spec(700)},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert answer.json()["status"] == "allowed", answer.text
    action_id: str = answer.json()["action_request_id"]
    with sqlite3.connect(dash.data_dir / "agentfirewall.db", timeout=30) as db:
        changed = db.execute(
            "UPDATE action_requests SET execution_state = 'executing', updated_at = ? WHERE id = ?",
            (time.time() - 3600, action_id),
        ).rowcount
    assert changed == 1
    return action_id


def test_an_admin_settles_a_stuck_execution_and_a_viewer_only_sees_it(dash: Dashboard) -> None:
    action_id = _crashed_execution(dash, "Crashed Bot")
    viewer = dash.open("viewer")
    dash.goto(viewer.page, "/approvals")
    row = viewer.page.locator(f"#stuck-table tr[data-action-id='{action_id}']")
    row.wait_for()
    assert "Crashed Bot" in row.inner_text()
    assert row.get_by_role("button", name="Settle").count() == 0
    assert "an admin settles it" in row.inner_text()
    viewer.assert_clean()

    watched = dash.open("owner")
    page = watched.page
    dash.goto(page, "/approvals")
    row = page.locator(f"#stuck-table tr[data-action-id='{action_id}']")
    row.wait_for()
    assert "payment.transfer.initiate" in row.inner_text()
    assert page.locator("#stuck-count").inner_text() == "1"
    dash.screenshot(page, "approvals-stuck-1280")
    row.get_by_label("Outcome of payment.transfer.initiate for Crashed Bot").select_option("retry")
    row.get_by_label("Note on payment.transfer.initiate for Crashed Bot").fill(
        "no transfer at the bank"
    )
    row.get_by_role("button", name="Settle").click()
    row.wait_for(state="detached")
    assert page.locator("#stuck").is_hidden()
    state = dash.api("GET", f"/actions/{action_id}")
    assert (state["status"], state["execution_state"]) == ("allowed", None)
    [event] = dash.api("GET", "/audit?event_type=action.execution_resolved")["events"]
    assert event["data"]["note"] == "no transfer at the bank"
    assert event["actor"] == "owner@example.com"
    watched.assert_clean()
