"""SDK Mode A execution: single-use tokens, vaulted credentials, SSRF refusal."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import select

from agentfirewall.tokens import sign_decision_token
from agentfirewall_server.netguard import check_target
from agentfirewall_server.store.schema import credentials
from agentfirewall_server.web import ApiError
from tests.fakes import FakeUpstreams
from tests.server.conftest import SPEC, Harness


def _github(h: Harness, fakes: FakeUpstreams) -> None:
    r = h.admin(
        "POST",
        "/v1/connectors",
        json={"type": "github", "token": "ghp_secret_value", "base_url": fakes["github"].http_url},
    )
    assert r.status_code == 201, r.text
    assert r.json()["has_credential"] is True
    assert "ghp_secret" not in r.text


def _request(h: Harness, key: str, spec: dict[str, Any] = SPEC) -> dict[str, Any]:
    body: dict[str, Any] = h.agent(key, "POST", "/v1/actions", json={"action_spec": spec}).json()
    return body


def _execute(h: Harness, key: str, action_id: str, token: str) -> Any:
    return h.agent(key, "POST", f"/v1/actions/{action_id}/execute", json={"decision_token": token})


def test_execute_uses_the_vaulted_credential_once(harness: Harness, fakes: FakeUpstreams) -> None:
    github = fakes["github"]
    github.clear()
    _github(harness, fakes)
    stored = harness.state.db.read_sync(lambda c: c.execute(select(credentials)).all())
    assert "ghp_secret_value" not in str(stored)
    key = harness.create_agent("Bot")
    body = _request(harness, key)
    r = _execute(harness, key, body["action_request_id"], body["decision_token"])
    assert r.status_code == 200, r.text
    result = r.json()
    assert result["status"] == "executed"
    assert result["result"]["status_code"] == 200
    assert result["result"]["body"]["merged"] is True
    seen = github.received("PUT", "/repos/acme/api/pulls/42/merge")
    assert len(seen) == 1
    assert seen[0].header("authorization") == "token ghp_secret_value"
    replay = _execute(harness, key, body["action_request_id"], body["decision_token"])
    assert replay.status_code == 409
    assert replay.json()["error"] == "token_used"
    assert len(github.received("PUT")) == 1
    events = harness.admin("GET", "/v1/audit?event_type=action.executed").json()["events"]
    assert events[0]["data"]["status_code"] == 200
    status = harness.agent(key, "GET", f"/v1/actions/{body['action_request_id']}").json()
    assert status["executed"] is True
    assert status["status"] == "executed"


def test_tokens_bound_to_another_action_or_expired_are_refused(
    harness: Harness, fakes: FakeUpstreams
) -> None:
    _github(harness, fakes)
    key = harness.create_agent("Bot")
    first = _request(harness, key)
    second = _request(harness, key, {**SPEC, "parameters": {"pull_number": 7}})
    r = _execute(harness, key, first["action_request_id"], second["decision_token"])
    assert r.status_code == 401
    assert r.json()["error"] == "invalid_token"
    r = _execute(harness, key, first["action_request_id"], "not.a.token")
    assert r.status_code == 401
    stale = sign_decision_token(
        harness.state.signing_key,
        agent="Bot",
        action_request_id=first["action_request_id"],
        action_hash=harness.agent(key, "GET", f"/v1/actions/{first['action_request_id']}").json()[
            "action_spec"
        ]
        and _hash(harness, first["action_request_id"]),
        now=int(time.time()) - 3600,
    )
    r = _execute(harness, key, first["action_request_id"], stale)
    assert r.status_code == 401
    assert r.json()["reason"] == "expired"
    other = harness.create_agent("Other")
    r = _execute(harness, other, first["action_request_id"], first["decision_token"])
    assert r.status_code == 404
    ok = _execute(harness, key, first["action_request_id"], first["decision_token"])
    assert ok.status_code == 200


def _hash(h: Harness, action_id: str) -> str:
    rows = h.admin("GET", "/v1/audit?event_type=action.requested").json()["events"]
    return str(next(e["data"]["action_hash"] for e in rows if e["subject"] == action_id))


def test_denied_action_is_not_executable_even_with_a_forged_valid_token(
    harness: Harness,
) -> None:
    key = harness.create_agent("Bot")
    harness.admin(
        "POST",
        "/v1/permissions",
        json={"agent": "Bot", "connector": "github", "action_pattern": "*", "decision": "deny"},
    )
    body = _request(harness, key)
    assert body["status"] == "denied"
    token = sign_decision_token(
        harness.state.signing_key,
        agent="Bot",
        action_request_id=body["action_request_id"],
        action_hash=_hash(harness, body["action_request_id"]),
        now=int(time.time()),
    )
    r = _execute(harness, key, body["action_request_id"], token)
    assert r.status_code == 409
    assert r.json()["error"] == "not_allowed"


def test_no_connector_is_422_and_the_token_stays_usable(
    harness: Harness, fakes: FakeUpstreams
) -> None:
    key = harness.create_agent("Bot")
    body = _request(harness, key)
    r = _execute(harness, key, body["action_request_id"], body["decision_token"])
    assert r.status_code == 422
    assert r.json()["error"] == "not_executable"
    assert "github" in r.json()["message"]
    _github(harness, fakes)
    ok = _execute(harness, key, body["action_request_id"], body["decision_token"])
    assert ok.status_code == 200


WEBHOOK = {
    "type": "webhook.post",
    "resource": {"provider": "webhook", "target": "{url}/v1/action"},
    "parameters": {
        "method": "POST",
        "headers": {"Authorization": "Bearer secret"},
        "body": {"key": "value"},
    },
}


def _webhook_spec(url: str) -> dict[str, Any]:
    return {**WEBHOOK, "resource": {"provider": "webhook", "target": f"{url}/v1/action"}}


def test_webhook_to_loopback_is_refused_without_the_allow_list(
    harness: Harness, fakes: FakeUpstreams
) -> None:
    target = fakes["github"]
    target.clear()
    key = harness.create_agent("Bot")
    body = _request(harness, key, _webhook_spec(target.http_url))
    r = _execute(harness, key, body["action_request_id"], body["decision_token"])
    assert r.status_code == 422
    assert r.json()["error"] == "target_refused"
    assert target.received("POST", "/v1/action") == []


def test_webhook_with_the_allow_list_sends_the_seed_shape(
    harness_factory: Any, fakes: FakeUpstreams
) -> None:
    h: Harness = harness_factory(webhook_allow_hosts=["127.0.0.1"])
    target = fakes["github"]
    target.clear()
    key = h.create_agent("Bot")
    body = _request(h, key, _webhook_spec(target.http_url))
    r = _execute(h, key, body["action_request_id"], body["decision_token"])
    assert r.status_code == 200, r.text
    seen = target.received("POST", "/v1/action")
    assert len(seen) == 1
    assert seen[0].header("authorization") == "Bearer secret"
    assert seen[0].json() == {"key": "value"}


@pytest.mark.anyio
@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "localhost",
        "10.1.2.3",
        "169.254.169.254",
        "::1",
        "192.168.0.10",
        "100.64.0.1",
        "0.0.0.0",
    ],
)
async def test_non_public_targets_are_refused(host: str) -> None:
    with pytest.raises(ApiError) as caught:
        await check_target(host, 80, [])
    assert caught.value.code == "target_refused"


@pytest.mark.anyio
async def test_allow_list_accepts_names_and_networks() -> None:
    assert await check_target("127.0.0.1", 80, ["127.0.0.0/8"]) is not None
    assert await check_target("localhost", 80, ["localhost"]) is not None
    with pytest.raises(ApiError):
        await check_target("10.0.0.1", 80, ["127.0.0.0/8"])


@pytest.mark.parametrize("scope", ["all", "agent:Bot", "github"])
def test_an_action_allowed_before_a_kill_switch_is_not_executed_nor_given_a_token(
    harness: Harness, fakes: FakeUpstreams, scope: str
) -> None:
    """0.1.0 consulted the kill switch only when deciding: an action allowed a moment
    before it was still executed afterwards (Mode A), and ``/wait`` and an idempotent
    replay handed out fresh tokens for it. Now each answers as denied while a switch covers
    the action's agent or connector, and executes (with the same token) once it is off."""
    github = fakes["github"]
    github.clear()
    _github(harness, fakes)
    key = harness.create_agent("Bot")
    keyed = {"Idempotency-Key": "merge-42"}
    body = harness.agent(key, "POST", "/v1/actions", json={"action_spec": SPEC},
                         headers=keyed).json()  # fmt: skip
    assert body["status"] == "allowed"
    on = harness.admin("POST", "/v1/kill-switch", json={"active": True, "scope": scope})
    assert on.status_code == 200, on.text
    action = body["action_request_id"]
    refused = _execute(harness, key, action, body["decision_token"])
    assert refused.status_code == 403
    assert refused.json()["error"] == "kill_switch_active"
    assert refused.headers["X-TameFlare-Kill-Switch"] == "active"
    waited = harness.agent(key, "GET", f"/v1/actions/{action}/wait?timeout=0").json()
    replayed = harness.agent(key, "POST", "/v1/actions", json={"action_spec": SPEC},
                             headers=keyed).json()  # fmt: skip
    for answer in (waited, replayed):
        assert (answer["status"], answer["decision_token"]) == ("denied", None)
        assert answer["decision"]["reason"] == "kill_switch_active"
    assert github.received("PUT") == []
    assert harness.admin("POST", "/v1/kill-switch", json={"active": False}).status_code == 200
    done = _execute(harness, key, action, body["decision_token"])
    assert done.status_code == 200, done.text
    assert len(github.received("PUT")) == 1
