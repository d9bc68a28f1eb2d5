"""The overview's totals: SDK actions and proxy requests counted apart, in a real browser."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from playwright.sync_api import expect

from tests.dashboard.scenario import create_agent, request_action

if TYPE_CHECKING:
    from tests.dashboard.conftest import Dashboard

pytestmark = pytest.mark.browser


def _proxy_records(dash: Dashboard, decisions: list[str]) -> None:
    token = (Path(dash.data_dir) / "gateway.token").read_text().strip()
    records = [
        {"request_id": f"req_overview_{i}", "agent": "Proxy Bot", "decision": d,
         "action": "github.pr.create", "method": "POST", "host": "api.github.com",
         "path": "/repos/acme/api/pulls", "status_code": 201}
        for i, d in enumerate(decisions)
    ]  # fmt: skip
    response = httpx.post(
        f"{dash.url}/api/v1/gateway/traffic",
        json={"records": records},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code < 300, response.text


def test_sdk_totals_leave_out_proxy_traffic(dash: Dashboard) -> None:
    key = create_agent(dash, "Overview Bot")
    before = dash.api("GET", "/status")["decisions_by_source"]
    request_action(dash, key, 10)  # no policy allows it: an SDK deny
    _proxy_records(dash, ["allow", "allow", "allow"])
    status = dash.api("GET", "/status")["decisions_by_source"]
    sdk, proxy = status["sdk"], status["proxy"]
    assert proxy["allow"] == before["proxy"].get("allow", 0) + 3
    watched = dash.open("viewer")
    page = watched.page
    dash.goto(page, "/overview")
    text = page.locator("#decision-totals")
    expected_sdk = (
        f"SDK actions, all time: {sdk.get('allow', 0)} allowed · "
        f"{sdk.get('require_approval', 0)} held for approval · {sdk.get('deny', 0)} denied"
    )
    expect(text).to_contain_text(expected_sdk)
    expect(text).to_contain_text(f"proxy requests, all time: {proxy['allow']} allowed")
    watched.assert_clean()
