"""Decision tokens: short-lived ES256 JWTs bound to one action.

Pure functions: keys and the clock come in as arguments. The server signs a token when
an action is allowed (or approved); ``execute`` verifies it and then consumes its
``jti`` in the nonce store, which makes it single use.

Claims::

    iss  issuer ("tameflare")           aud  audience ("tameflare-execute")
    sub  agent name                     jti  random nonce (single use)
    iat  issued at (unix seconds)       exp  iat + ttl (default 300 s)
    act  action_request_id              ahs  action_hash (SHA-256 of the canonical spec)
    out  outcome ("allow")

Verification reads the compact form itself rather than through PyJWT, so that what is
accepted does not depend on the PyJWT installed: one token has one spelling (canonical
base64url, no repeated JSON member, a header of ``alg``/``kid``/``typ`` only), ES256 is the
only algorithm, ``kid`` picks the key. ECDSA lets anyone holding a token write a second
signature of the same claims, ``(r, n - s)``; that is no replay, since single use is kept
by the ``jti`` and the action's own state, never by the token's text.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
from dataclasses import dataclass
from typing import Any, TypeGuard

import jwt
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from agentfirewall.errors import TokenError
from agentfirewall.signingkeys import (
    ALGORITHM,
    SigningKey,
    b64url,
    generate_signing_key,
    key_id,
    load_signing_key,
    public_jwk,
)

__all__ = [
    "DEFAULT_AUDIENCE",
    "DEFAULT_ISSUER",
    "DEFAULT_TTL_SECONDS",
    "MAX_TOKEN_CHARS",
    "DecisionClaims",
    "SigningKey",
    "generate_signing_key",
    "jwks_from_keys",
    "load_signing_key",
    "public_key_from_jwk",
    "sign_decision_token",
    "verify_decision_token",
]

DEFAULT_ISSUER = "tameflare"
DEFAULT_AUDIENCE = "tameflare-execute"
DEFAULT_TTL_SECONDS = 300
#: The longest token verified (the server's are about 500 characters).
MAX_TOKEN_CHARS = 8192
_HEADER_MEMBERS = frozenset({"alg", "kid", "typ"})
_B64URL = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True, slots=True)
class DecisionClaims:
    """The verified content of a decision token."""

    agent: str
    action_request_id: str
    action_hash: str
    outcome: str
    jti: str
    issued_at: int
    expires_at: int


def sign_decision_token(
    key: SigningKey,
    *,
    agent: str,
    action_request_id: str,
    action_hash: str,
    now: int,
    outcome: str = "allow",
    ttl_seconds: int = DEFAULT_TTL_SECONDS,
    issuer: str = DEFAULT_ISSUER,
    audience: str = DEFAULT_AUDIENCE,
    jti: str | None = None,
) -> str:
    """Sign a single-use token for one action. `now` is unix seconds."""
    claims = {
        "iss": issuer,
        "aud": audience,
        "sub": agent,
        "jti": jti or secrets.token_urlsafe(16),
        "iat": now,
        "nbf": now,
        "exp": now + ttl_seconds,
        "act": action_request_id,
        "ahs": action_hash,
        "out": outcome,
    }
    return jwt.encode(claims, key.private_key, algorithm=ALGORITHM, headers={"kid": key.kid})


def verify_decision_token(
    token: str,
    public_keys: list[ec.EllipticCurvePublicKey] | ec.EllipticCurvePublicKey,
    *,
    now: int,
    action_request_id: str | None = None,
    action_hash: str | None = None,
    agent: str | None = None,
    issuer: str = DEFAULT_ISSUER,
    audience: str = DEFAULT_AUDIENCE,
    leeway: int = 5,
) -> DecisionClaims:
    """Verify signature (ES256 only), issuer, audience, times and the bindings (action id,
    action hash, agent: each only when given).

    One token has one spelling: canonical base64url without padding, JSON objects without
    repeated members, a header of ``alg`` (ES256), ``kid`` and ``typ`` only, and a 64-byte
    ``r || s`` signature; anything else is refused before a key is tried.

    Raises TokenError with `code` one of: malformed, bad_algorithm, bad_signature, expired,
    not_yet_valid, wrong_audience, wrong_issuer, wrong_action, wrong_agent, missing_claim.
    """
    keys = public_keys if isinstance(public_keys, list) else [public_keys]
    header, claims, signing_input, signature = _parse(token)
    _check_signature(header, signing_input, signature, keys)
    _check_times(claims, now=now, leeway=leeway)
    if claims.get("iss") != issuer:
        raise TokenError("decision token has the wrong issuer", code="wrong_issuer")
    aud = claims.get("aud")
    if aud != audience and not (isinstance(aud, list) and audience in aud):
        raise TokenError("decision token has the wrong audience", code="wrong_audience")
    result = _claims(claims)
    if action_request_id is not None and not _same(result.action_request_id, action_request_id):
        raise TokenError(
            f"decision token was issued for another action, not `{action_request_id}`",
            code="wrong_action",
        )
    if action_hash is not None and not _same(result.action_hash, action_hash):
        raise TokenError("decision token does not match this action's content", code="wrong_action")
    if agent is not None and not _same(result.agent, agent):
        raise TokenError("decision token was issued to another agent", code="wrong_agent")
    return result


def jwks_from_keys(keys: list[SigningKey] | list[ec.EllipticCurvePublicKey]) -> dict[str, Any]:
    """A JWKS document (``{"keys": [...]}``) of the public halves."""
    out = []
    for k in keys:
        pub = k.public_key if isinstance(k, SigningKey) else k
        out.append(public_jwk(pub))
    return {"keys": out}


def public_key_from_jwk(jwk: dict[str, Any]) -> ec.EllipticCurvePublicKey:
    """An EC public key from one JWK of a JWKS (P-256 only; TokenError ``bad_key``)."""
    if jwk.get("kty") != "EC" or jwk.get("crv") != "P-256":
        raise TokenError("JWK is not an EC P-256 key", code="bad_key")
    coordinates = []
    for name in ("x", "y"):
        text = jwk.get(name)
        try:
            raw = _segment(text, f"key `{name}`") if isinstance(text, str) else b""
        except TokenError:
            raw = b""
        if len(raw) != 32:
            raise TokenError(f"JWK `{name}` is not 32 bytes of base64url", code="bad_key")
        coordinates.append(int.from_bytes(raw, "big"))
    try:
        x, y = coordinates
        return ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1()).public_key()
    except ValueError:
        raise TokenError("JWK is not a point on P-256", code="bad_key") from None


def _parse(token: object) -> tuple[dict[str, Any], dict[str, Any], bytes, bytes]:
    """Header, claims, signing input and signature of a compact JWS, spelled one way only."""
    if not isinstance(token, str):
        raise TokenError("decision token must be a string", code="malformed")
    if len(token) > MAX_TOKEN_CHARS:
        raise TokenError(
            f"decision token is longer than {MAX_TOKEN_CHARS} characters", code="malformed"
        )
    parts = token.split(".")
    if len(parts) != 3:
        raise TokenError("decision token is malformed: not three dot-separated parts",
                         code="malformed")  # fmt: skip
    header = _json_object(_segment(parts[0], "header"), "header")
    alg = header.get("alg")
    if alg != ALGORITHM:
        shown = (alg if isinstance(alg, str) else json.dumps(alg))[:40]
        raise TokenError(
            f"decision token algorithm `{shown}` refused: only ES256 is accepted",
            code="bad_algorithm",
        )
    extra = sorted(set(header) - _HEADER_MEMBERS)
    if extra:  # jwk, jku, x5u, x5c, crit, b64...: nothing this verifier would honour
        raise TokenError(f"decision token header has `{extra[0]}`: only alg, kid and typ "
                         "are accepted", code="malformed")  # fmt: skip
    if not isinstance(header.get("kid", ""), str) or header.get("typ", "JWT") != "JWT":
        raise TokenError("decision token header has a bad `kid` or `typ`", code="malformed")
    claims = _json_object(_segment(parts[1], "claims"), "claims")
    signature = _segment(parts[2], "signature")
    return header, claims, f"{parts[0]}.{parts[1]}".encode("ascii"), signature


def _segment(text: str, name: str) -> bytes:
    """Canonical base64url (RFC 7515: no padding, no other alphabet, no stray bits)."""
    raw = b""
    if _B64URL.fullmatch(text) and len(text) % 4 != 1:
        raw = _b64d(text)
    if not text or b64url(raw) != text:
        raise TokenError(f"decision token {name} is not canonical base64url", code="malformed")
    return raw


def _json_object(raw: bytes, name: str) -> dict[str, Any]:
    """A JSON object with each member once (no NaN or Infinity), else TokenError."""
    try:
        value = json.loads(
            raw.decode("utf-8"), object_pairs_hook=_unique_members, parse_constant=_no_constant
        )
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError included
        raise TokenError(f"decision token {name} is not a JSON object", code="malformed") from None
    if not isinstance(value, dict):
        raise TokenError(f"decision token {name} is not a JSON object", code="malformed")
    return value


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found = dict(pairs)
    if len(found) != len(pairs):
        raise ValueError("a member appears twice")
    return found


def _no_constant(name: str) -> Any:
    raise ValueError(f"`{name}` is not JSON")


def _check_signature(
    header: dict[str, Any],
    signing_input: bytes,
    signature: bytes,
    keys: list[ec.EllipticCurvePublicKey],
) -> None:
    """The ES256 signature by the key `kid` names (every key when it names none)."""
    if len(signature) != 64:
        raise TokenError("decision token signature is not an ES256 signature",
                         code="bad_signature")  # fmt: skip
    kid = header.get("kid")
    candidates = [k for k in keys if kid is None or key_id(k) == kid]
    if not candidates:
        raise TokenError(f"decision token was signed by an unknown key `{str(kid)[:60]}`",
                         code="bad_signature")  # fmt: skip
    der = encode_dss_signature(
        int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    )
    for key in candidates:
        try:
            key.verify(der, signing_input, ec.ECDSA(hashes.SHA256()))
            return
        except InvalidSignature:
            continue
    raise TokenError("decision token signature is not valid", code="bad_signature")


def _same(a: str, b: str) -> bool:
    """Constant-time equality of two strings, any characters (compare_digest takes ASCII)."""
    return secrets.compare_digest(
        a.encode("utf-8", "surrogatepass"), b.encode("utf-8", "surrogatepass")
    )


def _check_times(claims: dict[str, Any], *, now: int, leeway: int) -> None:
    exp, nbf = claims.get("exp"), claims.get("nbf", claims.get("iat"))
    if not _is_int(exp):
        raise TokenError("decision token has no expiry", code="missing_claim")
    if nbf is not None and not _is_int(nbf):
        raise TokenError("decision token has a bad `nbf`", code="malformed")
    if now > exp + leeway:
        raise TokenError("decision token has expired: request the action again", code="expired")
    if nbf is not None and now + leeway < nbf:
        raise TokenError("decision token is not valid yet", code="not_yet_valid")


def _claims(claims: dict[str, Any]) -> DecisionClaims:
    for name in ("sub", "act", "ahs", "out", "jti", "iat"):
        if name not in claims:
            raise TokenError(f"decision token lacks the `{name}` claim", code="missing_claim")
    texts = [claims[n] for n in ("sub", "act", "ahs", "out", "jti")]
    if not all(isinstance(t, str) and t for t in texts) or not _is_int(claims["iat"]):
        raise TokenError("decision token has a claim of the wrong type", code="malformed")
    return DecisionClaims(
        agent=claims["sub"],
        action_request_id=claims["act"],
        action_hash=claims["ahs"],
        outcome=claims["out"],
        jti=claims["jti"],
        issued_at=claims["iat"],
        expires_at=claims["exp"],
    )


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
