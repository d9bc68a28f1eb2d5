"""Agents: keys shown once and stored hashed, 401 for bad keys, RBAC 403 bodies."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from agentfirewall_server.store.schema import api_keys
from tests.server.conftest import SPEC, Harness


def _request(h: Harness, key: str | None) -> Any:
    return (
        h.agent(key or "", "POST", "/v1/actions", json={"action_spec": SPEC})
        if key
        else (h.call("POST", "/v1/actions", json={"action_spec": SPEC}))
    )


def test_register_shows_the_key_once_and_stores_only_hash_and_prefix(harness: Harness) -> None:
    r = harness.admin("POST", "/v1/agents", json={"name": "Bot", "environment": "test"})
    assert r.status_code == 201
    key = r.json()["api_key"]
    assert key.startswith("aaf_test_")
    assert len(key) == len("aaf_test_") + 32
    agent = r.json()["agent"]
    assert agent["key_prefix"] == key[:12]
    assert "api_key" not in harness.admin("GET", f"/v1/agents/{agent['id']}").json()
    assert key not in harness.admin("GET", "/v1/agents").text
    rows = harness.state.db.read_sync(lambda c: c.execute(select(api_keys)).all())
    assert [r.prefix for r in rows] == [key[:12]]
    assert all(key not in str(tuple(r)) for r in rows)
    live = harness.create_agent("Live Bot")
    assert live.startswith("aaf_live_")


def test_duplicate_name_is_409_and_names_are_case_sensitive(harness: Harness) -> None:
    harness.create_agent("Bot")
    r = harness.admin("POST", "/v1/agents", json={"name": "Bot"})
    assert r.status_code == 409
    assert r.json()["error"] == "conflict"
    assert harness.admin("POST", "/v1/agents", json={"name": "bot"}).status_code == 201


def test_missing_wrong_suspended_and_revoked_keys_get_401(harness: Harness) -> None:
    key = harness.create_agent("Bot")
    assert _request(harness, None).status_code == 401
    wrong = _request(harness, "aaf_live_" + "x" * 32)
    assert wrong.status_code == 401
    assert wrong.json()["message"] == "invalid API key: check AAF_API_KEY"
    pasted = _request(harness, "hello")  # not a key at all: says what a key looks like
    assert pasted.status_code == 401
    assert (
        "agent's API key (those start with `aaf_`: check AAF_API_KEY)" in pasted.json()["message"]
    )
    assert _request(harness, key).status_code == 200
    assert harness.admin("POST", "/v1/agents/Bot/suspend").json()["status"] == "suspended"
    r = _request(harness, key)
    assert r.status_code == 401
    assert "suspended" in r.json()["message"]
    assert harness.admin("POST", "/v1/agents/Bot/activate").json()["status"] == "active"
    assert _request(harness, key).status_code == 200
    assert harness.admin("POST", "/v1/agents/Bot/revoke").json()["status"] == "revoked"
    assert _request(harness, key).status_code == 401
    assert harness.admin("POST", "/v1/agents/Bot/activate").status_code == 409


def test_rotate_replaces_the_key(harness: Harness) -> None:
    old = harness.create_agent("Bot")
    r = harness.admin("POST", "/v1/agents/Bot/rotate")
    new = r.json()["api_key"]
    assert new != old
    assert _request(harness, old).status_code == 401
    assert _request(harness, new).status_code == 200


def test_ensure_creates_then_issues_more_proxy_keys(harness: Harness) -> None:
    first = harness.admin("POST", "/v1/agents/ensure", json={"name": "Bot"})
    assert first.status_code == 201
    second = harness.admin("POST", "/v1/agents/ensure", json={"name": "Bot"})
    assert second.status_code == 200
    assert first.json()["agent"]["id"] == second.json()["agent"]["id"]
    for key in (first.json()["api_key"], second.json()["api_key"]):
        assert _request(harness, key).status_code == 200
    config = harness.gateway("GET", "/v1/gateway/config").json()
    assert len(config["agents"][0]["key_hashes"]) == 2


def test_patch_changes_level_and_unknown_fields_are_refused(harness: Harness) -> None:
    harness.create_agent("Bot")
    r = harness.admin("PATCH", "/v1/agents/Bot", json={"enforcement_level": "L0"})
    assert r.json()["enforcement_level"] == "monitor"
    bad = harness.admin("PATCH", "/v1/agents/Bot", json={"colour": "red"})
    assert bad.status_code == 422
    assert "colour" in bad.json()["message"]
    assert harness.admin("GET", "/v1/agents/nobody").status_code == 404


def test_rbac_403_body_is_exact(harness: Harness) -> None:
    owner = harness.admin("POST", "/v1/tokens", json={"name": "me"})
    assert owner.status_code == 201
    harness.admin(
        "POST", "/v1/users", json={"email": "v@x.io", "password": "password-1", "role": "viewer"}
    )
    login = harness.call(
        "POST", "/v1/auth/login", json={"email": "v@x.io", "password": "password-1"}
    )
    assert login.status_code == 200
    csrf = login.json()["csrf_token"]
    r = harness.call("POST", "/v1/agents", json={"name": "X"}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 403
    body = r.json()
    assert set(body) == {"error", "message", "required_role", "your_role"}
    assert (body["error"], body["required_role"], body["your_role"]) == (
        "forbidden",
        "admin",
        "viewer",
    )
    assert harness.call("GET", "/v1/agents").status_code == 200
    harness.client.cookies.clear()
    key = harness.create_agent("Bot")
    r = harness.agent(key, "GET", "/v1/agents")
    assert r.status_code == 403
    assert r.json()["your_role"] == "agent"


def test_a_base_url_without_api_is_told_where_the_api_is(harness: Harness) -> None:
    key = harness.create_agent("Bot")
    missed = harness.client.post(  # an SDK whose base URL lacks `/api`
        "/v1/actions", json={"action_spec": SPEC}, headers={"Authorization": f"Bearer {key}"}
    )
    assert missed.status_code == 404
    assert "the API is under /api: a base URL ends in `/api` (AAF_BASE_URL)" in missed.text
    elsewhere = harness.call("GET", "/api/v1/nothing-here", key)
    assert elsewhere.json()["message"] == "no such endpoint: see docs/api.md"


def test_a_405_names_every_method_its_path_serves(harness: Harness) -> None:
    answer = harness.admin("PUT", "/v1/agents/Bot")  # GET, PATCH (and HEAD) are served there
    assert answer.status_code == 405
    assert answer.headers["allow"] == "GET, HEAD, PATCH"
    policies = harness.admin("POST", "/v1/policies/p_1")
    assert policies.headers["allow"] == "DELETE, GET, HEAD, PUT"


@pytest.mark.parametrize(
    "target",
    ["file:///etc/passwd", "http://h:0/", "not a url", "gopher://x/", "//host", "http:///x",
     "http://[::1/"],
)  # fmt: skip
def test_a_webhook_target_that_is_no_http_url_is_refused_when_requested(
    harness: Harness, target: str
) -> None:
    """docs/api.md, Input limits: refused as the action is requested, naming the field (it
    was decided `allowed`, with a token, and refused only at execution)."""
    key = harness.create_agent("Hook")
    spec = {"type": "webhook.post", "resource": {"provider": "webhook", "target": target}}
    for path in ("/v1/actions", "/v1/actions/dry-run"):
        answer = harness.agent(key, "POST", path, json={"action_spec": spec})
        assert answer.status_code == 422, answer.text
        assert answer.json()["field"] == "action_spec.resource.target"
        assert "invalid url" in answer.json()["message"]
    fine = {**spec, "resource": {"provider": "webhook", "target": "https://hooks.example/x"}}
    assert harness.agent(key, "POST", "/v1/actions", json={"action_spec": fine}).status_code == 200
