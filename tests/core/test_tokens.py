"""Decision tokens: ES256 only, bound to one action, short-lived; attacks refused."""

from __future__ import annotations

import base64
import json

import jwt
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from hypothesis import given, settings
from hypothesis import strategies as st

from agentfirewall.errors import TokenError
from agentfirewall.tokens import (
    MAX_TOKEN_CHARS,
    SigningKey,
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

    header: dict[str, object] = {"alg": "HS256", "typ": "JWT"}
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


# -- attacks on the encoding: one token, one spelling -------------------------------------


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _signed(header: str, claims: str, key: SigningKey = KEY) -> str:
    """A token of exactly these header and claims texts, really signed by `key`."""
    signing_input = f"{_b64(header.encode())}.{_b64(claims.encode())}"
    der = key.private_key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    return f"{signing_input}.{_b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def _header(**extra: object) -> str:
    return json.dumps({"alg": "ES256", "kid": KEY.kid, "typ": "JWT", **extra})


def _claims_text(**changes: object) -> str:
    claims: dict[str, object] = {
        "iss": "tameflare", "aud": "tameflare-execute", "sub": "Bot", "jti": "n1",
        "iat": NOW, "nbf": NOW, "exp": NOW + 300, "act": "act_1", "ahs": "a" * 64,
        "out": "allow",
    }  # fmt: skip
    claims.update(changes)
    return json.dumps({k: v for k, v in claims.items() if v is not _DROP})


class _Drop:
    def __repr__(self) -> str:
        return "DROP"


_DROP = _Drop()  # a claim left out


def _b64e_padded(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode()


def _refused(token: str, code: str | None = None, **binding: str) -> TokenError:
    with pytest.raises(TokenError) as err:
        verify_decision_token(token, KEY.public_key, now=NOW, **binding)  # type: ignore[arg-type]
    if code is not None:
        assert err.value.code == code, err.value
    return err.value


def test_the_helper_signs_what_the_verifier_accepts() -> None:
    claims = verify_decision_token(_signed(_header(), _claims_text()), KEY.public_key, now=NOW)
    assert (claims.agent, claims.jti) == ("Bot", "n1")


_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _respellings(segment: str) -> list[str]:
    """Other spellings of one base64url segment that lenient decoders read as the same bytes."""
    last = _ALPHABET.index(segment[-1])
    return [
        segment + "=" * (-len(segment) % 4 or 4),  # padding
        segment + "==",
        segment.replace("-", "+").replace("_", "/"),  # the other alphabet
        segment[:-1] + _ALPHABET[last ^ 1],  # a stray low bit (the signature's last char)
        segment[:5] + " " + segment[5:],  # whitespace inside
        segment[:5] + "\n" + segment[5:],
        segment + ".",
        " " + segment,
        segment[:5] + "!" + segment[5:],  # junk a lenient decoder skips
        segment + "A",  # one more character: a length no encoding has
    ]


@pytest.mark.parametrize("part", [0, 1, 2], ids=["header", "claims", "signature"])
def test_non_canonical_base64url_is_refused(part: int) -> None:
    """A token has one spelling: padding, `+` and `/`, stray bits, whitespace or junk in
    any part are refused before a key is tried (GHSA-hxm8-2xgr-2p9m, JWS malleability)."""
    token = _token()
    parts = token.split(".")
    for other in _respellings(parts[part]):
        if other == parts[part]:
            continue
        respelled = ".".join([*parts[:part], other, *parts[part + 1 :]])
        assert _refused(respelled).code in ("malformed", "bad_signature"), other


@given(st.data())
@settings(max_examples=300, deadline=None)
def test_no_respelling_of_a_token_verifies(data: st.DataObject) -> None:
    """Any edit of a token's text (insert, delete or replace characters anywhere) gives a
    token that is refused, or the very same token."""
    token = _token()
    chars = list(token)
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(chars)))
        edit = data.draw(st.sampled_from(["insert", "delete", "replace"]))
        char = data.draw(st.sampled_from(_ALPHABET + "=+/. \t\n!%\x00é"))
        if edit == "insert":
            chars.insert(at, char)
        elif at < len(chars):
            if edit == "delete":
                del chars[at]
            else:
                chars[at] = char
    edited = "".join(chars)
    if edited != token:
        _refused(edited)


def test_repeated_json_members_are_refused() -> None:
    """`{"alg": "none", "alg": "ES256"}` reads one way here and another way in a
    first-wins parser: a repeated member is refused in the header and in the claims."""
    header = f'{{"alg":"none","alg":"ES256","kid":"{KEY.kid}"}}'
    _refused(_signed(header, _claims_text()), "malformed")
    claims = _claims_text()[:-1] + ', "act": "act_2"}'
    _refused(_signed(_header(), claims), "malformed", action_request_id="act_2")
    nested = _claims_text(aud={"a": 1, "b": 2})[:-1] + "}"
    _refused(_signed(_header(), nested.replace('"b": 2', '"a": 2')), "malformed")


@pytest.mark.parametrize(
    "member",
    [
        {"jwk": {"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}},  # embedded key
        {"jku": "https://evil.example/jwks.json"},  # key URL
        {"x5u": "https://evil.example/cert.pem"},
        {"x5c": ["MIIB"]},
        {"crit": ["exp"]},  # an extension this verifier does not understand
        {"b64": False, "crit": ["b64"]},  # detached payload (RFC 7797)
        {"zip": "DEF"},
    ],
    ids=lambda m: next(iter(m)),
)
def test_header_members_beyond_alg_kid_typ_are_refused(member: dict[str, object]) -> None:
    _refused(_signed(_header(**member), _claims_text()), "malformed")


@pytest.mark.parametrize(
    "alg", ["none", "None", "NONE", "HS256", "ES384", "ES256K", "RS256", "PS256", "es256", "", 1]
)
def test_every_algorithm_but_es256_is_refused(alg: object) -> None:
    """alg confusion, with a really valid ES256 signature under the lying header."""
    _refused(_signed(_header(alg=alg), _claims_text()), "bad_algorithm")
    header = json.dumps({"kid": KEY.kid, "typ": "JWT"})  # no alg at all
    _refused(_signed(header, _claims_text()), "bad_algorithm")


def test_kid_picks_the_key_and_an_unknown_kid_is_refused() -> None:
    other = generate_signing_key()
    both = [other.public_key, KEY.public_key]
    verify_decision_token(_token(), both, now=NOW)
    # signed by KEY, but naming the other key (or none we have): refused
    for kid in (other.kid, "no-such-key", ""):
        token = _signed(_header(kid=kid), _claims_text())
        with pytest.raises(TokenError) as err:
            verify_decision_token(token, both, now=NOW)
        assert err.value.code == "bad_signature"
    # a kid is text; a kid that is not is malformed
    _refused(_signed(_header(kid=7), _claims_text()), "malformed")
    _refused(_signed(_header(typ="JOSE+JSON"), _claims_text()), "malformed")
    # no kid: every key is tried
    header = json.dumps({"alg": "ES256", "typ": "JWT"})
    verify_decision_token(_signed(header, _claims_text()), both, now=NOW)


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"exp": _DROP}, "missing_claim"),
        ({"exp": float(NOW + 300)}, "missing_claim"),
        ({"exp": str(NOW + 300)}, "missing_claim"),
        ({"exp": True}, "missing_claim"),  # a bool is no int: `true` is not 1 second
        ({"exp": None}, "missing_claim"),
        ({"exp": NOW - 60}, "expired"),
        ({"nbf": NOW + 3600}, "not_yet_valid"),
        ({"nbf": _DROP, "iat": NOW + 3600}, "not_yet_valid"),
        ({"nbf": "0"}, "malformed"),
        ({"nbf": 1.5}, "malformed"),
        ({"iat": "now"}, "malformed"),
        ({"iat": _DROP}, "missing_claim"),
        ({"sub": 7}, "malformed"),
        ({"sub": ""}, "malformed"),
        ({"act": ["act_1"]}, "malformed"),
        ({"jti": None}, "malformed"),
        ({"jti": _DROP}, "missing_claim"),
        ({"out": _DROP}, "missing_claim"),
        ({"iss": _DROP}, "wrong_issuer"),
        ({"aud": _DROP}, "wrong_audience"),
        ({"aud": ["other"]}, "wrong_audience"),
    ],
    ids=repr,
)
def test_claims_missing_or_of_the_wrong_type_are_refused(
    changes: dict[str, object], code: str
) -> None:
    _refused(_signed(_header(), _claims_text(**changes)), code)


@pytest.mark.parametrize("text", ["NaN", "Infinity", "-Infinity", "1" * 5000])
def test_non_json_numbers_are_refused(text: str) -> None:
    claims = _claims_text()[:-1] + f', "x": {text}}}'
    _refused(_signed(_header(), claims), "malformed")


def test_claims_that_are_not_an_object_are_refused() -> None:
    for claims in ("[]", '"x"', "1", "null", "\ufeff{}", "{" * 100_000):
        _refused(_signed(_header(), claims), "malformed")


def test_a_huge_token_is_refused_before_any_work() -> None:
    token = _token()
    assert len(token) < MAX_TOKEN_CHARS
    huge = _signed(_header(), _claims_text(pad="x" * MAX_TOKEN_CHARS))
    assert "longer than" in str(_refused(huge, "malformed"))
    _refused(token + "A" * 10_000_000, "malformed")


def test_a_token_for_another_agent_is_refused() -> None:
    verify_decision_token(_token(), KEY.public_key, now=NOW, agent="Bot")
    for other in ("bot", "Bot ", "Other", "Bôt"):
        _refused(_token(), "wrong_agent", agent=other)


def test_bindings_with_any_characters_are_refused_not_crashed() -> None:
    """compare_digest refuses non-ASCII str; the binding must still answer TokenError."""
    _refused(_token(), "wrong_action", action_request_id="act_é")
    _refused(_token(), "wrong_action", action_hash="é" * 64)
    _refused(_token(), "wrong_action", action_request_id="act_\ud800")  # a lone surrogate
    lone = _signed(_header(), _claims_text(sub="\ud800"))  # JSON allows one in a string
    _refused(lone, "wrong_agent", agent="Bot")
    named = _token(agent="Agent ünïcode")
    assert verify_decision_token(named, KEY.public_key, now=NOW, agent="Agent ünïcode")
    _refused(named, "wrong_agent", agent="Agent unicode")


def test_a_malleated_signature_verifies_with_the_same_nonce() -> None:
    """ECDSA's (r, n - s) is a second valid signature anyone can write: it must not be a
    second token, so single use keys on the jti (tests/server/test_execute.py replays it)."""
    token = _token()
    malleated = malleate(token)
    assert malleated != token
    first = verify_decision_token(token, KEY.public_key, now=NOW)
    second = verify_decision_token(malleated, KEY.public_key, now=NOW)
    assert first.jti == second.jti


def malleate(token: str) -> str:
    """The same token with the other valid ECDSA signature, (r, n - s)."""
    head, _, sig = token.rpartition(".")
    raw = base64.urlsafe_b64decode(sig + "==")
    r, s = int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
    return f"{head}.{_b64(r.to_bytes(32, 'big') + (_P256_ORDER - s).to_bytes(32, 'big'))}"


_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


@pytest.mark.parametrize(
    "signature",
    [b"", b"\x00" * 64, b"\x01" * 63, b"\x01" * 65, b"\x00" * 32 + b"\x01" * 32],
    ids=["empty", "zeros", "short", "long", "r=0"],
)
def test_signatures_of_the_wrong_shape_are_refused(signature: bytes) -> None:
    head = _token().rpartition(".")[0]
    token = f"{head}.{_b64(signature)}"
    assert _refused(token).code in ("malformed", "bad_signature")


@pytest.mark.parametrize(
    "change",
    [
        {"x": _DROP},
        {"x": 5},
        {"x": "AA"},  # 1 byte
        {"x": _b64(b"\x01" * 33)},
        {"y": _b64(b"\x01" * 32)},  # not on the curve
        {"x": _b64e_padded(b"\x01" * 32)},
        {"kty": "RSA"},
        {"crv": "P-384"},
    ],
    ids=repr,
)
def test_bad_jwks_are_bad_keys_not_crashes(change: dict[str, object]) -> None:
    jwk: dict[str, object] = {**KEY.public_jwk(), **change}
    jwk = {k: v for k, v in jwk.items() if v is not _DROP}
    with pytest.raises(TokenError) as err:
        public_key_from_jwk(jwk)
    assert err.value.code == "bad_key"
