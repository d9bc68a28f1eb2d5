"""Decision tokens: ES256 only, bound to one action, short-lived; attacks refused."""

from __future__ import annotations

import base64
import json

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from agentfirewall.errors import TokenError
from agentfirewall.tokens import (
    generate_signing_key,
    jwks_from_keys,
    load_signing_key,
    public_key_from_jwk,
    sign_decision_token,
    verify_decision_token,
)

NOW = 1_800_000_000
KEY = generate_signing_key()


def _token(**overrides: object) -> str:
    args: dict[str, object] = {
        "agent": "Bot",
        "action_request_id": "act_1",
        "action_hash": "a" * 64,
        "now": NOW,
    }
    args.update(overrides)
    return sign_decision_token(KEY, **args)  # type: ignore[arg-type]


def test_round_trip_binds_the_action() -> None:
    claims = verify_decision_token(
        _token(), KEY.public_key, now=NOW + 10, action_request_id="act_1", action_hash="a" * 64
    )
    assert claims.agent == "Bot"
    assert claims.outcome == "allow"
    assert claims.expires_at == NOW + 300
    assert len(claims.jti) >= 16


def test_each_token_has_its_own_nonce() -> None:
    first = verify_decision_token(_token(), KEY.public_key, now=NOW)
    second = verify_decision_token(_token(), KEY.public_key, now=NOW)
    assert first.jti != second.jti


def test_another_actions_token_is_refused() -> None:
    with pytest.raises(TokenError) as err:
        verify_decision_token(_token(), KEY.public_key, now=NOW, action_request_id="act_2")
    assert err.value.code == "wrong_action"
    with pytest.raises(TokenError) as err:
        verify_decision_token(_token(), KEY.public_key, now=NOW, action_hash="b" * 64)
    assert err.value.code == "wrong_action"


def test_expired_token_is_refused() -> None:
    with pytest.raises(TokenError) as err:
        verify_decision_token(_token(ttl_seconds=60), KEY.public_key, now=NOW + 120)
    assert err.value.code == "expired"


def test_token_from_the_future_is_refused() -> None:
    with pytest.raises(TokenError) as err:
        verify_decision_token(_token(), KEY.public_key, now=NOW - 3600)
    assert err.value.code == "not_yet_valid"


def test_wrong_key_is_refused() -> None:
    other = generate_signing_key()
    with pytest.raises(TokenError) as err:
        verify_decision_token(_token(), other.public_key, now=NOW)
    assert err.value.code == "bad_signature"
    # with the right key among several, it verifies
    verify_decision_token(_token(), [other.public_key, KEY.public_key], now=NOW)


def test_wrong_audience_and_issuer_are_refused() -> None:
    with pytest.raises(TokenError) as err:
        verify_decision_token(_token(audience="other"), KEY.public_key, now=NOW)
    assert err.value.code == "wrong_audience"
    with pytest.raises(TokenError) as err:
        verify_decision_token(_token(issuer="evil"), KEY.public_key, now=NOW)
    assert err.value.code == "wrong_issuer"


def _unsigned(header: dict[str, object], claims: dict[str, object]) -> str:
    def enc(part: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=").decode()

    return f"{enc(header)}.{enc(claims)}."


def test_alg_none_is_refused() -> None:
    claims = jwt.decode(_token(), options={"verify_signature": False})
    forged = _unsigned({"alg": "none", "typ": "JWT"}, claims)
    with pytest.raises(TokenError) as err:
        verify_decision_token(forged, KEY.public_key, now=NOW)
    assert err.value.code == "bad_algorithm"


def test_hs256_with_the_public_key_is_refused() -> None:
    claims = jwt.decode(_token(), options={"verify_signature": False})
    pem = KEY.public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    import hashlib
    import hmac

    header = {"alg": "HS256", "typ": "JWT"}
    signing_input = _unsigned(header, claims)[:-1]
    sig = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    forged = signing_input + "." + base64.urlsafe_b64encode(sig).rstrip(b"=").decode()
    with pytest.raises(TokenError) as err:
        verify_decision_token(forged, KEY.public_key, now=NOW)
    assert err.value.code == "bad_algorithm"


def test_tampered_claims_are_refused() -> None:
    header, _, sig = _token().split(".")
    claims = jwt.decode(_token(), options={"verify_signature": False})
    claims["act"] = "act_other"
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    with pytest.raises(TokenError) as err:
        verify_decision_token(f"{header}.{body}.{sig}", KEY.public_key, now=NOW)
    assert err.value.code == "bad_signature"


@pytest.mark.parametrize("junk", ["", "abc", "a.b.c", "....", "eyJ.eyJ.x"])
def test_garbage_is_malformed(junk: str) -> None:
    with pytest.raises(TokenError):
        verify_decision_token(junk, KEY.public_key, now=NOW)


def test_pem_and_base64_pem_load_the_same_key() -> None:
    pem = KEY.to_pem()
    assert load_signing_key(pem).kid == KEY.kid
    assert load_signing_key(base64.b64encode(pem).decode()).kid == KEY.kid
    with pytest.raises(TokenError, match=r"P-256|PEM"):
        load_signing_key("not a key")


def test_jwks_verifies_offline() -> None:
    jwks = jwks_from_keys([KEY])
    (jwk,) = jwks["keys"]
    assert jwk["kid"] == KEY.kid
    assert "d" not in jwk  # never the private part
    claims = verify_decision_token(_token(), public_key_from_jwk(jwk), now=NOW)
    assert claims.action_request_id == "act_1"
