"""A caller attacking the bearer credentials: each key kind opens only its own endpoints,
odd and repeated Authorization headers, revoked and replaced tokens."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from agentfirewall_server.checkpoints import CheckpointError, public_keys
from agentfirewall_server.settings import Settings
from tests.server.conftest import SPEC, Harness

#: One endpoint per kind of caller: (method, path, body).
ENDPOINTS = {
    "agent": ("POST", "/v1/actions/dry-run", {"action_spec": SPEC}),
    "admin": ("GET", "/v1/agents", None),
    "gateway": ("GET", "/v1/gateway/config", None),
}

#: What each kind of key gets on each kind of endpoint: only its own opens.
EXPECTED = {
    ("agent", "agent"): 200, ("agent", "admin"): 403, ("agent", "gateway"): 403,
    ("admin", "agent"): 401, ("admin", "admin"): 200, ("admin", "gateway"): 403,
    ("gateway", "agent"): 401, ("gateway", "admin"): 403, ("gateway", "gateway"): 200,
}  # fmt: skip


def _keys(h: Harness) -> dict[str, str]:
    return {"agent": h.create_agent("Bot"), "admin": h.admin_token, "gateway": h.gateway_token}


def _call(h: Harness, endpoint: str, headers: list[tuple[str, str]]) -> Any:
    method, path, body = ENDPOINTS[endpoint]
    return h.client.request(method, "/api" + path, headers=headers, json=body)


def _bearer(secret: str) -> list[tuple[str, str]]:
    return [("Authorization", f"Bearer {secret}")]


def test_each_key_kind_opens_only_its_own_endpoints(harness: Harness) -> None:
    keys = _keys(harness)
    for (kind, endpoint), status in EXPECTED.items():
        answer = _call(harness, endpoint, _bearer(keys[kind]))
        assert answer.status_code == status, (kind, endpoint, answer.text)


def test_a_key_dressed_as_another_kind_opens_nothing(harness: Harness) -> None:
    """Prefix confusion: a gateway or admin token given the agent prefix, an agent key
    without it, one kind's prefix on another's secret."""
    keys = _keys(harness)
    dressed = [
        "aaf_" + keys["gateway"],
        "aaf_live_" + keys["admin"][4:],
        keys["agent"].removeprefix("aaf_"),
        keys["agent"].replace("aaf_live_", "aaf_test_"),
        "tfa_" + keys["gateway"][4:],
        "tfg_" + keys["admin"][4:],
        keys["agent"].upper(),
        keys["admin"].upper(),
    ]
    for secret in dressed:
        for endpoint in ENDPOINTS:
            answer = _call(harness, endpoint, _bearer(secret))
            assert answer.status_code == 401, (secret[:8], endpoint, answer.text)


@pytest.mark.parametrize(
    ("template", "status"),
    [
        ("Bearer {t}", 200),
        ("bearer {t}", 200),  # the scheme is case-insensitive (RFC 9110 11.1)
        ("BEARER {t}", 200),
        ("Bearer   {t}", 200),
        ("Bearer {t}   ", 200),
        ("Basic {t}", 401),
        ("Token {t}", 401),
        ("{t}", 401),
        ("Bearer", 401),
        ("Bearer ", 401),
        ("Bearer {t} {t}", 401),
        ("Bearer {t}x", 401),
        ("Bearer {t}=", 401),
        ("Bearer\t{t}", 401),
        ("Bearer {t},Bearer {t}", 401),
        ('Bearer "{t}"', 401),
    ],
)
def test_authorization_header_spellings(harness: Harness, template: str, status: int) -> None:
    header = [("Authorization", template.format(t=harness.admin_token))]
    answer = _call(harness, "admin", header)
    assert answer.status_code == status, answer.text


def test_two_authorization_headers_are_refused(harness: Harness) -> None:
    """Which of two headers counts depends on the reader (first here, last in some
    proxies): two are 401, whatever they hold, in either order."""
    keys = _keys(harness)
    viewer = {"email": "v@example.com", "password": "password-1", "role": "viewer"}
    made = harness.admin("POST", "/v1/users", viewer)
    assert made.status_code == 201
    pairs = [
        (keys["agent"], keys["admin"]),
        (keys["gateway"], keys["admin"]),
        (keys["admin"], keys["admin"]),
        ("wrong", keys["admin"]),
    ]
    for first, second in pairs:
        for order in ((first, second), (second, first)):
            headers = [("Authorization", f"Bearer {order[0]}"),
                       ("Authorization", f"Bearer {order[1]}")]  # fmt: skip
            for endpoint in ENDPOINTS:
                answer = _call(harness, endpoint, headers)
                assert answer.status_code == 401, (endpoint, answer.text)
                assert "one `Authorization` header" in answer.json()["message"]


def test_revoked_tokens_stay_revoked_across_restarts(harness_factory: Any) -> None:
    """A leaked token, the bootstrap ones included, can be revoked; a restart does not
    register a revoked bootstrap token again."""
    h: Harness = harness_factory("revoke")
    spare = h.admin("POST", "/v1/tokens", json={"name": "spare"}).json()
    made = h.admin("POST", "/v1/tokens", json={"name": "leaked"}).json()
    listed = h.admin("GET", "/v1/tokens").json()["tokens"]
    assert {t["name"]: t["kind"] for t in listed} == {
        "bootstrap admin token": "admin", "bootstrap gateway token": "gateway",
        "spare": "admin", "leaked": "admin"}  # fmt: skip
    assert all(set(t) == {"prefix", "kind", "name", "role", "user_id", "created_at"}
               for t in listed)  # fmt: skip
    assert made["token"] not in str(listed)
    assert h.admin("DELETE", f"/v1/tokens/{made['prefix']}").status_code == 204
    refused = h.call("GET", "/v1/agents", made["token"])
    assert refused.status_code == 401
    assert refused.json()["message"] == "this token was revoked"
    assert h.admin("DELETE", f"/v1/tokens/{made['prefix']}").status_code == 404  # once
    gateway_prefix = h.gateway_token[:12]
    assert h.call("DELETE", f"/v1/tokens/{gateway_prefix}", spare["token"]).status_code == 204
    assert h.gateway("GET", "/v1/gateway/config").status_code == 401
    admin_prefix = h.admin_token[:12]
    assert h.admin("DELETE", f"/v1/tokens/{admin_prefix}").status_code == 204  # itself
    assert h.admin("GET", "/v1/agents").status_code == 401
    events = h.call("GET", "/v1/audit?event_type=token.revoked", spare["token"]).json()
    assert sorted(e["data"]["kind"] for e in events["events"]) == ["admin", "admin", "gateway"]
    h.client.__exit__(None, None, None)
    again: Harness = harness_factory("revoke")  # the same token files: registered again?
    assert again.admin_token == h.admin_token
    assert again.admin("GET", "/v1/agents").status_code == 401
    assert again.gateway("GET", "/v1/gateway/config").status_code == 401
    assert again.call("GET", "/v1/agents", made["token"]).status_code == 401
    assert again.call("GET", "/v1/agents", spare["token"]).status_code == 200


def test_a_token_the_bootstrap_token_mints_is_audited_as_itself(harness: Harness) -> None:
    """A token minted with the bootstrap admin token has no user: it acts and is audited
    under its own name, never as the bootstrap token (`admin-token`), and cannot take the
    bootstrap tokens' names to pass for one."""
    made = harness.admin("POST", "/v1/tokens", json={"name": "ci"}).json()
    me = harness.call("GET", "/v1/auth/me", made["token"]).json()
    assert me["user"]["email"] == "token:ci"
    assert harness.call("POST", "/v1/tokens", made["token"], json={"name": "x"}).status_code == 201
    minted = harness.call("GET", "/v1/audit?event_type=token.created", made["token"]).json()
    assert [e["actor"] for e in minted["events"]].count("token:ci") == 1
    for name in ("bootstrap admin token", " Bootstrap Gateway Token"):
        refused = harness.admin("POST", "/v1/tokens", json={"name": name})
        assert refused.status_code == 422, refused.text
        assert "bootstrap tokens" in refused.text


def test_only_an_owner_lists_or_revokes_tokens(harness: Harness) -> None:
    key = harness.create_agent("Bot")
    assert harness.agent(key, "GET", "/v1/tokens").status_code == 403
    assert harness.gateway("DELETE", f"/v1/tokens/{harness.admin_token[:12]}").status_code == 403
    assert harness.admin("DELETE", "/v1/tokens/tfa_nothing").status_code == 404
    assert harness.admin("GET", "/v1/agents").status_code == 200


def test_bootstrap_tokens_are_one_kind_each_and_errors_hide_them() -> None:
    """The same secret as admin and gateway token would give the gateway host owner
    power; an `aaf_` one would be read as an agent key. A refused value is never shown."""
    secret = "tfa_" + "s3cr3t" * 8
    cases: list[dict[str, Any]] = [
        {"admin_token": secret, "gateway_token": secret},
        {"gateway_token": secret, "metrics_token": secret},
        {"admin_token": "aaf_live_" + secret},
        {"gateway_token": "tfg_short"},
    ]
    for fields in cases:
        with pytest.raises(ValidationError) as err:
            Settings(**fields)
        shown = str(err.value)
        assert "s3cr3t" not in shown
        assert "tfg_short" not in shown
    Settings(admin_token=secret, gateway_token=secret.replace("tfa_", "tfg_"))


def test_a_jwks_of_another_key_type_is_a_checkpoint_error() -> None:
    """`tf audit verify --key` with a JWKS holding an RSA or broken EC key: a clear
    error, not a TokenError escaping the command."""
    for jwk in ({"kty": "RSA", "kid": "r", "n": "AQAB", "e": "AQAB"},
                {"kty": "EC", "crv": "P-256", "kid": "k", "x": "AA", "y": "AA"}):  # fmt: skip
        with pytest.raises(CheckpointError, match="not a JWKS document"):
            public_keys(json.dumps({"keys": [jwk]}))
