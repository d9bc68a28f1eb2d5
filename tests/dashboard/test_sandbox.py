"""`POST /dashboard/sandbox/evaluate` over HTTP against a live server (no browser)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

PASSWORD = "correct horse battery staple"
SPEC = {"type": "github.repo.delete", "resource": {"provider": "github", "target": "acme/api"}}


@pytest.fixture
def admin(live_server: Any) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {live_server.admin_token}"}
    with httpx.Client(base_url=live_server.url, headers=headers, timeout=30) as client:
        _configure(client)
        yield client


def _configure(client: httpx.Client) -> None:
    for path, body in (
        ("/api/v1/agents", {"name": "Sandbox Bot", "environment": "live"}),
        ("/api/v1/connectors", {"type": "github", "token": "ghp_sandboxTest000000000000"}),
        ("/api/v1/permissions", {"agent": "Sandbox Bot", "connector": "github",
                                 "action_pattern": "github.repo.*", "decision": "allow"}),
        ("/api/v1/policy-packs/github-safe-defaults/install", None),
    ):  # fmt: skip
        assert client.post(path, json=body).status_code in (200, 201)


def _evaluate(client: httpx.Client, **body: Any) -> httpx.Response:
    return client.post("/dashboard/sandbox/evaluate", json=body)


def test_explains_each_step_and_records_nothing(admin: httpx.Client) -> None:
    before = admin.get("/api/v1/audit").json()["events"]
    answer = _evaluate(admin, agent="Sandbox Bot", action_spec=SPEC, mode="proxy")
    assert answer.status_code == 200, answer.text
    data = answer.json()
    assert data["status"] == "denied"
    assert data["decision"]["outcome"] == "deny"
    assert data["decision"]["matched_policies"] == ["github-safe-defaults"]
    steps = [step["step"] for step in data["explanation"]]
    assert steps[:3] == ["kill_switch", "access_rules", "policies"]
    assert admin.get("/api/v1/audit").json()["events"] == before


def test_mode_changes_the_default_when_no_rule_matches(admin: httpx.Client) -> None:
    other = {"type": "email.send", "resource": {"provider": "mail"}}
    sdk = _evaluate(admin, agent="Sandbox Bot", action_spec=other, mode="sdk").json()
    proxy = _evaluate(admin, agent="Sandbox Bot", action_spec=other, mode="proxy").json()
    assert sdk["decision"]["outcome"] == "allow"  # SDK default: allow
    assert proxy["decision"]["outcome"] == "deny"  # proxy: no access rule, deny


def test_refuses_what_it_should(admin: httpx.Client, live_server: Any) -> None:
    assert _evaluate(admin, agent="Nobody", action_spec=SPEC).status_code == 404
    bad = _evaluate(admin, agent="Sandbox Bot", action_spec={"type": "NOT A TYPE"})
    assert bad.status_code == 422
    assert bad.json()["error"] == "invalid_request"
    assert _evaluate(admin, agent="Sandbox Bot", action_spec=SPEC, mode="x").status_code == 422
    anonymous = httpx.post(f"{live_server.url}/dashboard/sandbox/evaluate", json={})
    assert anonymous.status_code == 401
    key = admin.post("/api/v1/agents", json={"name": "Key Holder"}).json()["api_key"]
    as_agent = httpx.post(
        f"{live_server.url}/dashboard/sandbox/evaluate",
        json={"agent": "Key Holder", "action_spec": SPEC},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert as_agent.status_code == 403  # people only, not agents


def test_a_session_needs_the_csrf_token(admin: httpx.Client, live_server: Any) -> None:
    token = (Path(live_server.data_dir) / "setup.token").read_text().strip()
    setup = {"setup_token": token, "email": "o@example.com", "password": PASSWORD}
    assert httpx.post(f"{live_server.url}/api/v1/auth/setup", json=setup).status_code < 300
    with httpx.Client(base_url=live_server.url) as browser:
        login = browser.post("/api/v1/auth/login", json={"email": "o@example.com",
                                                        "password": PASSWORD})  # fmt: skip
        csrf = login.json()["csrf_token"]
        body = {"agent": "Sandbox Bot", "action_spec": SPEC}
        assert browser.post("/dashboard/sandbox/evaluate", json=body).status_code == 403
        ok = browser.post("/dashboard/sandbox/evaluate", json=body, headers={"X-CSRF-Token": csrf})
        assert ok.status_code == 200
