"""Admin API for connectors, permissions, policies (versions, packs), settings, people."""

from __future__ import annotations

from typing import Any

import pytest

from agentfirewall_server.bootstrap import SETUP_TOKEN_FILE
from tests.server.conftest import SPEC, Harness

POLICY = """name: no-merges
rules:
  - name: block
    conditions:
      all:
        - {field: action_spec.type, operator: equals, value: github.pr.merge}
    decision: deny
    reason: no merges today
"""


def test_connectors_never_return_credentials(harness: Harness) -> None:
    r = harness.admin(
        "POST",
        "/v1/connectors",
        json={
            "type": "generic",
            "token": "sk-1",
            "domains": ["api.example.com"],
            "auth_type": "bearer",
        },
    )
    assert r.status_code == 201
    assert r.json()["id"] == "conn_generic_1"
    second = harness.admin(
        "POST", "/v1/connectors", json={"type": "generic", "domains": ["b.example.com"]}
    )
    assert second.json()["id"] == "conn_generic_2"
    assert second.json()["has_credential"] is False
    listing = harness.admin("GET", "/v1/connectors")
    assert "sk-1" not in listing.text
    assert harness.admin("POST", "/v1/connectors", json={"type": "generic"}).status_code == 422
    assert harness.admin("POST", "/v1/connectors", json={"type": "nope"}).status_code == 422
    assert harness.admin("DELETE", "/v1/connectors/conn_generic_1").status_code == 204
    assert harness.admin("DELETE", "/v1/connectors/conn_generic_1").status_code == 404
    catalogue = harness.admin("GET", "/v1/connectors/catalogue").json()["connectors"]
    github = next(c for c in catalogue if c["type"] == "github")
    assert any(a["type"] == "github.pr.merge" for a in github["actions"])


def test_permissions_upsert_preset_and_delete(harness: Harness) -> None:
    body = {
        "agent": "Bot",
        "connector": "github",
        "action_pattern": "github.pr.*",
        "decision": "allow",
    }
    first = harness.admin("POST", "/v1/permissions", json=body).json()
    second = harness.admin("POST", "/v1/permissions", json={**body, "decision": "deny"}).json()
    assert first["id"] == second["id"]
    assert second["decision"] == "deny"
    preset = harness.admin(
        "POST",
        "/v1/permissions/preset",
        json={"agent": "Bot", "connector": "stripe", "preset": "read-only"},
    )
    assert preset.status_code == 200
    assert preset.json()["permissions"]
    listed = harness.admin("GET", "/v1/permissions?agent=Bot").json()["permissions"]
    assert len(listed) == 1 + len(preset.json()["permissions"])
    assert harness.admin("GET", "/v1/permissions?agent=Other").json()["permissions"] == []
    bad = harness.admin("POST", "/v1/permissions", json={**body, "decision": "maybe"})
    assert bad.status_code == 422
    assert harness.admin("DELETE", f"/v1/permissions/{first['id']}").status_code == 204


def test_policies_versions_enable_disable_and_effect(harness: Harness) -> None:
    key = harness.create_agent("Bot")
    created = harness.admin("POST", "/v1/policies", json={"document": POLICY})
    assert created.status_code == 201
    pid = created.json()["id"]
    decision = harness.agent(key, "POST", "/v1/actions", json={"action_spec": SPEC}).json()
    assert decision["status"] == "denied"
    assert decision["decision"]["reason"] == "no merges today"
    assert decision["decision"]["matched_policies"] == ["no-merges"]
    harness.admin("POST", f"/v1/policies/{pid}/disable")
    assert (
        harness.agent(key, "POST", "/v1/actions", json={"action_spec": SPEC}).json()["status"]
        == "allowed"
    )
    harness.admin("POST", f"/v1/policies/{pid}/enable")
    updated = harness.admin(
        "PUT",
        f"/v1/policies/{pid}",
        json={"document": POLICY.replace("no merges today", "still no merges")},
    )
    assert updated.json()["version"] == 2
    versions = harness.admin("GET", f"/v1/policies/{pid}/versions").json()["versions"]
    assert [v["version"] for v in versions] == [1, 2]
    assert versions[0]["created_by"] == "admin-token"
    assert harness.admin("POST", "/v1/policies", json={"document": POLICY}).status_code == 409
    assert harness.admin("DELETE", f"/v1/policies/{pid}").status_code == 204
    assert harness.admin("GET", f"/v1/policies/{pid}").status_code == 404


def test_invalid_policies_name_the_line_and_write_nothing(harness: Harness) -> None:
    broken = POLICY.replace("decision: deny", "decision: perhaps")
    r = harness.admin("POST", "/v1/policies", json={"document": broken})
    assert r.status_code == 422
    assert r.json()["line"] == 7
    check = harness.admin("POST", "/v1/policies/validate", json={"document": broken}).json()
    assert check["valid"] is False
    assert check["errors"][0]["line"] == 7
    assert (
        harness.admin("POST", "/v1/policies/validate", json={"document": POLICY}).json()["valid"]
        is True
    )
    assert harness.admin("GET", "/v1/policies").json()["policies"] == []


def test_policy_packs_install(harness: Harness) -> None:
    packs = harness.admin("GET", "/v1/policy-packs").json()["packs"]
    names = [p["name"] for p in packs]
    assert "github-safe-defaults" in names
    r = harness.admin("POST", "/v1/policy-packs/github-safe-defaults/install")
    assert r.status_code == 201
    assert r.json()["name"] == "github-safe-defaults"
    again = harness.admin("POST", "/v1/policy-packs/github-safe-defaults/install")
    assert again.status_code == 409
    assert harness.admin("POST", "/v1/policy-packs/nope/install").status_code == 404


def test_settings_are_owner_only_and_secrets_write_only(harness: Harness) -> None:
    r = harness.admin(
        "PATCH",
        "/v1/settings",
        json={"default_enforcement_level": "L1", "slack_bot_token": "xoxb-1"},
    )
    assert r.json()["default_enforcement_level"] == "soft_enforce"
    assert "xoxb" not in harness.admin("GET", "/v1/settings").text
    assert harness.create_agent("Bot")
    agent = harness.admin("GET", "/v1/agents/Bot").json()
    assert agent["enforcement_level"] == "soft_enforce"
    assert harness.admin("PATCH", "/v1/settings", json={"nope": 1}).status_code == 422


def test_setup_login_session_csrf_and_tokens(harness: Harness) -> None:
    setup_token = (harness.data_dir / SETUP_TOKEN_FILE).read_text().strip()
    wrong = harness.call(
        "POST",
        "/v1/auth/setup",
        json={"setup_token": "nope", "email": "o@x.io", "password": "password-1"},
    )
    assert wrong.status_code == 403
    ok = harness.call(
        "POST",
        "/v1/auth/setup",
        json={"setup_token": setup_token, "email": "o@x.io", "password": "password-1"},
    )
    assert ok.status_code == 200
    assert ok.json()["user"]["role"] == "owner"
    assert not (harness.data_dir / SETUP_TOKEN_FILE).exists()
    csrf = ok.json()["csrf_token"]
    me = harness.call("GET", "/v1/auth/me").json()
    assert me["user"]["email"] == "o@x.io"
    assert me["csrf_token"] == csrf
    no_csrf = harness.call("POST", "/v1/agents", json={"name": "A"})
    assert no_csrf.status_code == 403
    with_csrf = harness.call(
        "POST", "/v1/agents", json={"name": "A"}, headers={"X-CSRF-Token": csrf}
    )
    assert with_csrf.status_code == 201
    token = harness.call("POST", "/v1/tokens", json={}, headers={"X-CSRF-Token": csrf})
    assert token.json()["token"].startswith("tfa_")
    assert (
        harness.call("POST", "/v1/auth/logout", headers={"X-CSRF-Token": csrf}).status_code == 204
    )
    assert harness.call("GET", "/v1/auth/me").status_code == 401
    api = harness.call("GET", "/v1/users", token.json()["token"])
    assert [u["email"] for u in api.json()["users"]] == ["o@x.io"]
    bad = harness.call("POST", "/v1/auth/login", json={"email": "o@x.io", "password": "bad"})
    assert bad.status_code == 401
    again = harness.call(
        "POST",
        "/v1/auth/setup",
        json={"setup_token": setup_token, "email": "p@x.io", "password": "password-1"},
    )
    assert again.status_code == 403


def test_setup_creates_the_owner_while_there_is_none(harness: Harness) -> None:
    """Users made with the admin token first: the one-time link still makes the owner (it
    said an owner existed when none did), and an email already taken is named."""
    setup_token = (harness.data_dir / SETUP_TOKEN_FILE).read_text().strip()
    member = {"email": "m@x.io", "password": "password-1", "role": "member"}
    assert harness.admin("POST", "/v1/users", json=member).status_code == 201

    def setup(email: str) -> Any:
        body = {"setup_token": setup_token, "email": email, "password": "password-1"}
        return harness.call("POST", "/v1/auth/setup", json=body)

    taken = setup("M@x.io")
    assert taken.status_code == 409
    assert taken.json()["field"] == "email"
    made = setup("o@x.io")
    assert made.status_code == 200, made.text
    assert made.json()["user"]["role"] == "owner"
    assert not (harness.data_dir / SETUP_TOKEN_FILE).exists()


def test_role_changes_and_the_last_owner(harness: Harness) -> None:
    user = harness.admin(
        "POST", "/v1/users", json={"email": "a@x.io", "password": "password-1", "role": "member"}
    ).json()
    assert (
        harness.admin(
            "POST", "/v1/users", json={"email": "a@x.io", "password": "password-1"}
        ).status_code
        == 409
    )
    r = harness.admin("PATCH", f"/v1/users/{user['id']}", json={"role": "admin"})
    assert r.json()["role"] == "admin"
    assert harness.admin("PATCH", "/v1/users/usr_nope", json={"role": "admin"}).status_code == 404
    owner = harness.admin("PATCH", f"/v1/users/{user['id']}", json={"role": "owner"}).json()
    down = harness.admin("PATCH", f"/v1/users/{owner['id']}", json={"role": "viewer"})
    assert down.status_code == 409


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("POST", "/v1/kill-switch", {"active": "yes"}, "active"),
        ("POST", "/v1/kill-switch", {"active": 1}, "active"),
        ("PATCH", "/v1/settings", {"metrics_public": "yes"}, "metrics_public"),
        ("POST", "/v1/agents", {"name": "C5", "rate_limit_per_minute": "5"},
         "rate_limit_per_minute"),
        ("POST", "/v1/agents", {"name": "C6", "rate_limit_per_minute": 5.0},
         "rate_limit_per_minute"),
    ],
)  # fmt: skip
def test_a_value_of_the_wrong_json_type_is_refused(
    harness: Harness, method: str, path: str, body: dict[str, object], field: str
) -> None:
    """`{"active": "yes"}` turned the kill switch on for everything, `"5"` was read as 5: a
    JSON string is not a boolean or a number, and nothing changes when it is refused."""
    answer = harness.admin(method, path, json=body)
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] == field
    assert harness.admin("GET", "/v1/kill-switch").json()["active"] == []
    assert harness.admin("GET", "/v1/settings").json()["metrics_public"] is False
    assert harness.admin("GET", "/v1/agents").json()["agents"] == []
