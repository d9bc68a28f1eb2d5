"""Pure pieces of the SDK: wire parsing, Retry-After, JWKS helpers, tool action names."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentfirewall.actions import is_action_type
from agentfirewall.client import Approved, NotApproved
from agentfirewall.client._wire import (
    error_for_response,
    parse_action_result,
    parse_retry_after,
    parse_wait,
)
from agentfirewall.errors import APIError, ServerError, TokenError
from agentfirewall.integrations._common import tool_action_type
from agentfirewall.jwks import JWKSCache, jwks_url_for, keys_from_jwks, verify_with_jwks
from agentfirewall.tokens import generate_signing_key, jwks_from_keys, sign_decision_token

SEED_RESPONSE = {
    "action_request_id": "act_abc123",
    "status": "allowed",
    "decision": {
        "outcome": "allow",
        "reason": "No deny rules matched",
        "risk_score": 0.3,
        "matched_policies": ["github-safe-defaults"],
    },
    "decision_token": "eyJhbGciOiJFUzI1NiIs...",
}


def test_the_seed_response_parses() -> None:
    result = parse_action_result(SEED_RESPONSE)
    assert result.status == "allowed"
    assert result.action_request_id == "act_abc123"
    assert result.decision.risk_score == 0.3
    assert result.decision.matched_policies == ("github-safe-defaults",)
    assert result.decision_token == "eyJhbGciOiJFUzI1NiIs..."


@pytest.mark.parametrize(
    "bad",
    [
        [],
        {"status": "allowed"},
        {**SEED_RESPONSE, "status": "maybe"},
        {**SEED_RESPONSE, "decision": {"outcome": "perhaps"}},
        {**SEED_RESPONSE, "decision": None},
    ],
)
def test_malformed_answers_are_server_errors(bad: object) -> None:
    with pytest.raises(ServerError, match="unexpected answer"):
        parse_action_result(bad)


def state(status: str, token: str | None = None) -> dict[str, object]:
    outcome = {"allowed": "allow", "denied": "deny"}.get(status, "require_approval")
    return {
        "action_request_id": "act_1",
        "status": status,
        "decision_token": token,
        "decision": {"outcome": outcome, "reason": f"r-{status}"},
    }


def test_wait_answers() -> None:
    assert parse_wait(state("pending_approval")) is None
    approved = parse_wait(state("allowed", "tok"))
    assert isinstance(approved, Approved)
    assert approved.decision_token == "tok"
    for status in ("denied", "expired"):
        outcome = parse_wait(state(status))
        assert isinstance(outcome, NotApproved)
        assert not outcome
        assert outcome.status == status
    # no approval in the answer: a denial falls back on the decision's reason
    assert parse_wait(state("denied")).reason == "r-denied"  # type: ignore[union-attr]
    assert parse_wait(state("expired")).reason == "no decision before the approval expired"  # type: ignore[union-attr]
    # a person's denial: who, and their note (not the rule's reason for holding it)
    decided = {"status": "denied", "decided_by": "ana@example.com", "note": "CI is red"}
    outcome = parse_wait({**state("denied"), "approval": decided})
    assert outcome is not None
    assert outcome.reason == "denied by ana@example.com: CI is red"
    outcome = parse_wait({**state("denied"), "approval": {**decided, "note": None}})
    assert outcome is not None
    assert outcome.reason == "denied by ana@example.com"
    expiry = {"status": "expired", "expires_at": "2026-12-05T07:00:00Z"}
    outcome = parse_wait({**state("expired"), "approval": expiry})
    assert outcome is not None
    assert outcome.reason == "no decision before the approval expired at 2026-12-05T07:00:00Z"
    used = parse_wait(state("allowed"))  # allowed but no token: already used
    assert isinstance(used, NotApproved)
    assert used.status == "executed"


def test_an_executed_action_says_its_token_was_used_as_node_does() -> None:
    """0.1.0 gave the allow's reason ("No deny rules matched") for an action whose token an
    execution had taken; the Node SDK's whyNotApproved says what happened, in these words."""
    used = "its decision token was used; request the action again to act again"
    for body in (
        state("executed"),
        state("allowed"),
        {**state("allowed"), "execution_state": "executed"},
    ):
        outcome = parse_wait(body)
        assert outcome is not None
        assert (outcome.status, outcome.reason) == (
            "executed",
            f"the action was already executed: {used}",
        )
    running = parse_wait({**state("allowed"), "execution_state": "executing"})
    assert running is not None
    assert running.reason == f"the action is being executed: {used}"


def test_retry_after_forms() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("1.5") == 1.5
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after(None, {"retry_after": 12}) == 12.0
    assert parse_retry_after("soon") is None
    future = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    seconds = parse_retry_after(future)
    assert seconds is not None
    assert 0 < seconds <= 30


def test_jwks_url_sits_at_the_server_root() -> None:
    assert jwks_url_for("http://localhost:3000/api") == (
        "http://localhost:3000/.well-known/jwks.json"
    )
    assert jwks_url_for("https://tf.example.com/api/") == (
        "https://tf.example.com/.well-known/jwks.json"
    )
    assert jwks_url_for("https://example.com/tameflare/api") == (
        "https://example.com/tameflare/.well-known/jwks.json"
    )


def test_verify_with_jwks_and_the_cache() -> None:
    key, other = generate_signing_key(), generate_signing_key()
    token = sign_decision_token(
        key, agent="Bot", action_request_id="act_1", action_hash="h" * 64, now=1_000
    )
    document = jwks_from_keys([other, key])
    assert verify_with_jwks(token, document, now=1_010, action_request_id="act_1").agent == "Bot"
    with pytest.raises(TokenError) as info:
        verify_with_jwks(token, jwks_from_keys([other]), now=1_010)
    assert info.value.code == "bad_signature"
    with pytest.raises(TokenError):
        keys_from_jwks({"keys": [{"kty": "RSA", "n": "x", "e": "AQAB"}]})
    cache = JWKSCache(ttl_seconds=300)
    assert cache.current(0.0) is None
    cache.store(document, 100.0)
    assert cache.current(200.0) == document
    assert cache.current(401.0) is None
    assert not cache.may_refresh(105.0)
    assert cache.may_refresh(111.0)


@given(st.text(min_size=0, max_size=80))
def test_tool_action_types_are_always_valid(name: str) -> None:
    action = tool_action_type("langchain", name)
    assert action.startswith("langchain.tool.")
    assert is_action_type(action)


def test_tool_action_type_examples() -> None:
    assert tool_action_type("crewai", "Send Email") == "crewai.tool.send_email"
    assert tool_action_type("langchain", "read_file") == "langchain.tool.read_file"
    assert tool_action_type("langchain", "!!!") == "langchain.tool.tool"


def test_long_polls_never_pass_the_deadline_nor_the_server_cap() -> None:
    from agentfirewall.client._base import BaseClient

    assert [BaseClient._poll_seconds(s) for s in (300.0, 60.0, 59.9, 5.2, 0.9, 0.0, -2.0)] == [
        60,
        60,
        59,
        5,
        0,
        0,
        0,
    ]


@given(
    status=st.sampled_from([400, 401, 403, 404, 409, 422, 429, 500, 502, 503, 504]),
    said=st.one_of(st.booleans(), st.none(), st.integers(), st.text(max_size=5)),
    present=st.booleans(),
)
def test_retryable_is_the_servers_boolean_or_none(status: int, said: object, present: bool) -> None:
    """Every error class carries `retryable`: the body's boolean as it is, else None (a
    number or a string is not the server's word: 1 is not True here)."""
    body: dict[str, object] = {"error": "upstream_unreachable", "message": "m"}
    if present:
        body["retryable"] = said
    error = error_for_response(status, body, None)
    assert isinstance(error, APIError)
    assert error.status_code == status
    expected = said if present and isinstance(said, bool) else None
    assert error.retryable is expected
    assert error_for_response(status, "plain text", None).retryable is None
