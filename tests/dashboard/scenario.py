"""Shared steps of the browser scenarios: agents, held actions, the gateway's traffic."""

from __future__ import annotations

import ssl
import time
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from tests.dashboard.conftest import Dashboard

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


def spec(amount: int) -> dict[str, Any]:
    return {
        "type": HELD_TYPE,
        "resource": {"provider": "bank", "account": "acme", "environment": "production"},
        "parameters": {"amount": amount, "currency": "EUR", "api_token": "sk_live_abcdefgh1234"},
    }


def request_action(
    dash: Dashboard, key: str, amount: int, *, target: str | None = None, note: str | None = None
) -> dict[str, Any]:
    """A held transfer of `amount` (with `target` as its resource's target and `note` as
    one more parameter when given)."""
    action = spec(amount)
    if target is not None:
        action["resource"]["target"] = target
    if note is not None:
        action["parameters"]["note"] = note
    response = httpx.post(
        f"{dash.url}/api/v1/actions",
        json={"action_spec": action},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def wait_action(dash: Dashboard, key: str, action_id: str) -> dict[str, Any]:
    response = httpx.get(
        f"{dash.url}/api/v1/actions/{action_id}/wait",
        params={"timeout": 20},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def create_agent(dash: Dashboard, name: str) -> str:
    key: str = dash.api("POST", "/agents", {"name": name, "environment": "live"})["api_key"]
    return key


GITHUB_TOKEN = "ghp_dashboardTestToken0000000000000000"


def merge_through_gateway(gateway: Any, key: str, out: dict[str, Any]) -> None:
    proxy = gateway.proxy_url("Merge Bot", key)
    trust = ssl.create_default_context(cafile=str(gateway.ca_path))
    with httpx.Client(proxy=proxy, verify=trust, timeout=90) as client:
        response = client.put(
            "https://api.github.com/repos/acme/api/pulls/7/merge",
            json={"merge_method": "squash"},
            headers={"Authorization": "token agent-placeholder"},
        )
    out.update(status=response.status_code, body=response.text)


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


def populate(dash: Dashboard) -> str:
    key = create_agent(dash, "DevOps Bot")
    create_agent(dash, "PR Review Agent")
    dash.api("POST", "/connectors", {"type": "github", "token": GITHUB_TOKEN})
    dash.api(
        "POST",
        "/permissions/preset",
        {"agent": "DevOps Bot", "connector": "github", "preset": "read-only"},
    )
    dash.api("POST", "/policies", {"document": HOLD_POLICY})
    dash.api("POST", "/policy-packs/github-safe-defaults/install")
    request_action(dash, key, 15_000)
    return key


def proxy_traffic(dash: Dashboard, gateway: Any, key: str) -> None:
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
