"""POST /api/v1/actions and friends: decisions, idempotency, dry-run, status, bad input."""

from __future__ import annotations

import json

import pytest

from agentfirewall.tokens import public_key_from_jwk, verify_decision_token
from tests.server.conftest import SPEC, Harness


def _post(h: Harness, key: str, spec: object = SPEC, **kw: object) -> object:
    return h.agent(key, "POST", "/v1/actions", json={"action_spec": spec}, **kw)


def test_allowed_answer_has_the_seed_shape_and_a_verifiable_token(harness: Harness) -> None:
    key = harness.create_agent("Bot")
    r = harness.agent(key, "POST", "/v1/actions", json={"action_spec": SPEC})
    assert r.status_code == 200
    body = r.json()
    assert body["action_request_id"].startswith("act_")
    assert body["status"] == "allowed"
    assert body["decision"]["outcome"] == "allow"
    assert body["decision"]["reason"] == "No deny rules matched"
    assert set(body["decision"]) >= {"outcome", "reason", "risk_score", "matched_policies"}
    jwks = harness.call("GET", "/.well-known/jwks.json").json()
    claims = verify_decision_token(
        body["decision_token"],
        [public_key_from_jwk(k) for k in jwks["keys"]],
        now=int(__import__("time").time()),
        action_request_id=body["action_request_id"],
    )
    assert claims.agent == "Bot"


def test_denied_and_pending_have_no_token(harness: Harness) -> None:
    key = harness.create_agent("Bot")
    for pattern, decision, status in (
        ("github.pr.merge", "deny", "denied"),
        ("github.pr.merge", "require_approval", "pending_approval"),
    ):
        harness.admin(
            "POST",
            "/v1/permissions",
            json={
                "agent": "Bot",
                "connector": "github",
                "action_pattern": pattern,
                "decision": decision,
            },
        )
        body = _post(harness, key).json()  # type: ignore[attr-defined]
        assert body["status"] == status
        assert body["decision_token"] is None
    assert body["approval"]["id"].startswith("apv_")
    assert body["approval"]["required_approver_roles"] == ["owner", "admin", "member"]


def test_idempotency_key_replays_the_first_answer(harness: Harness) -> None:
    key = harness.create_agent("Bot")
    first = _post(harness, key, headers={"Idempotency-Key": "k-1"})
    again = _post(harness, key, headers={"Idempotency-Key": "k-1"})
    assert again.status_code == 200  # type: ignore[attr-defined]
    assert again.headers["Idempotent-Replayed"] == "true"  # type: ignore[attr-defined]
    a, b = first.json(), again.json()  # type: ignore[attr-defined]
    assert a["action_request_id"] == b["action_request_id"]
    assert b["decision_token"]
    other = {**SPEC, "parameters": {"pull_number": 43}}
    clash = _post(harness, key, other, headers={"Idempotency-Key": "k-1"})
    assert clash.status_code == 409  # type: ignore[attr-defined]
    fresh = _post(harness, key, headers={"Idempotency-Key": "k-2"}).json()  # type: ignore[attr-defined]
    assert fresh["action_request_id"] != a["action_request_id"]
    events = harness.admin("GET", "/v1/audit?event_type=action.requested").json()["events"]
    assert len(events) == 2


def test_dry_run_explains_and_records_nothing(harness: Harness) -> None:
    key = harness.create_agent("Bot")
    before = harness.audit_count()
    r = harness.agent(key, "POST", "/v1/actions/dry-run", json={"action_spec": SPEC})
    assert r.status_code == 200
    steps = [s["step"] for s in r.json()["explanation"]]
    assert steps[0] == "kill_switch"
    assert "enforcement" in steps
    assert harness.audit_count() == before


def test_get_shows_own_actions_only(harness: Harness) -> None:
    key = harness.create_agent("Bot")
    other = harness.create_agent("Other")
    aid = _post(harness, key).json()["action_request_id"]  # type: ignore[attr-defined]
    mine = harness.agent(key, "GET", f"/v1/actions/{aid}").json()
    assert mine["status"] == "allowed"
    assert mine["agent"] == "Bot"
    assert mine["action_spec"]["type"] == "github.pr.merge"
    assert mine["executed"] is False
    assert harness.agent(other, "GET", f"/v1/actions/{aid}").status_code == 404
    assert harness.agent(key, "GET", "/v1/actions/act_nope").status_code == 404


def test_monitor_level_allows_and_reports_would_deny(harness: Harness) -> None:
    key = harness.create_agent("Bot", enforcement_level="monitor")
    harness.admin(
        "POST",
        "/v1/permissions",
        json={
            "agent": "Bot",
            "connector": "github",
            "action_pattern": "github.*",
            "decision": "deny",
        },
    )
    body = _post(harness, key).json()  # type: ignore[attr-defined]
    assert body["status"] == "allowed"
    assert body["decision"]["would_outcome"] == "would_deny"


def test_rate_limit_answers_429_with_retry_after(harness: Harness) -> None:
    key = harness.create_agent("Bot", rate_limit_per_minute=3)
    codes = [_post(harness, key).status_code for _ in range(4)]  # type: ignore[attr-defined]
    assert codes[:3] == [200, 200, 200]
    r = _post(harness, key)
    assert r.status_code == 429  # type: ignore[attr-defined]
    assert int(r.headers["Retry-After"]) >= 1  # type: ignore[attr-defined]
    assert r.json()["error"] == "rate_limited"  # type: ignore[attr-defined]
    metrics = harness.call("GET", "/metrics", harness.admin_token).text
    assert 'aaf_rate_limit_hits_total{agent="Bot"}' in metrics


def test_a_null_rate_limit_goes_back_to_the_servers_default(harness: Harness) -> None:
    """It used to be dropped like every other `null` (422 "nothing to change"): an agent's
    own limit, once set, could not be taken back (the dashboard's emptied field neither)."""
    key = harness.create_agent("Bot", rate_limit_per_minute=1)
    assert _post(harness, key).status_code == 200  # type: ignore[attr-defined]
    assert _post(harness, key).status_code == 429  # type: ignore[attr-defined]
    reset = harness.admin("PATCH", "/v1/agents/Bot", json={"rate_limit_per_minute": None})
    assert reset.status_code == 200, reset.text
    assert reset.json()["rate_limit_per_minute"] is None
    default = harness.state.settings.rate_limit_per_minute
    after = _post(harness, key)  # the bucket keeps its tokens; it refills at the default's rate
    assert after.status_code == 200 or f"rate limit of {default} requests" in after.text  # type: ignore[attr-defined]
    assert harness.admin("GET", "/v1/agents/Bot").json()["rate_limit_per_minute"] is None
    events = harness.admin("GET", "/v1/audit", params={"event_type": "agent.updated"}).json()
    assert events["events"][0]["data"] == {"rate_limit_per_minute": None}
    nothing = harness.admin("PATCH", "/v1/agents/Bot", json={"description": None})
    assert nothing.status_code == 422  # a `null` that changes nothing is still nothing


BAD = [
    (b"{not json", 400, None),
    (b"[]", 422, None),
    (b'{"action_spec": {"type": "github.pr.merge"}, "extra": 1}', 422, "extra"),
    (b'{"action_spec": {"type": "Not A Type"}}', 422, "action_spec.type"),
    (b'{"action_spec": {"type": "a.b", "parameters": []}}', 422, "action_spec.parameters"),
    (
        b'{"action_spec": {"type": "a.b", "resource": {"colour": 1}}}',
        422,
        "action_spec.resource.colour",
    ),
    (b'{"action_spec": "github.pr.merge"}', 422, "action_spec"),
    (b"", 400, None),
]


@pytest.mark.parametrize(("raw", "status", "field"), BAD)
def test_bad_input_is_a_4xx_json_error_and_writes_nothing(
    harness: Harness, raw: bytes, status: int, field: str | None
) -> None:
    key = harness.create_agent("Bot")
    before = harness.audit_count()
    r = harness.agent(
        key, "POST", "/v1/actions", content=raw, headers={"Content-Type": "application/json"}
    )
    assert r.status_code == status, r.text
    body = r.json()
    assert body["error"] == "invalid_request"
    assert body["message"]
    if field:
        assert body["field"] == field
    assert harness.audit_count() == before


def test_oversized_body_is_413(harness: Harness) -> None:
    key = harness.create_agent("Bot")
    big = json.dumps({"action_spec": {**SPEC, "parameters": {"x": "a" * (1024 * 1024)}}})
    r = harness.agent(
        key,
        "POST",
        "/v1/actions",
        content=big.encode(),
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 413
    assert r.json()["error"] == "payload_too_large"


def test_unknown_routes_and_methods_answer_json(harness: Harness) -> None:
    r = harness.admin("GET", "/v1/nothing-here")
    assert r.status_code == 404
    assert r.json()["error"] == "not_found"
    r = harness.admin("DELETE", "/v1/actions")
    assert r.status_code == 405
    assert r.json()["error"] == "method_not_allowed"
