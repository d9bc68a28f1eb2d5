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
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from agentfirewall.errors import TokenError

__all__ = [
    "DEFAULT_AUDIENCE",
    "DEFAULT_ISSUER",
    "DEFAULT_TTL_SECONDS",
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
_ALGORITHM = "ES256"


@dataclass(frozen=True, slots=True)
class SigningKey:
    """A P-256 private key with its key id (the RFC 7638 thumbprint)."""

    private_key: ec.EllipticCurvePrivateKey

    @property
    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self.private_key.public_key()

    @property
    def kid(self) -> str:
        return _thumbprint(self.public_key)

    def to_pem(self) -> bytes:
        """PKCS#8 PEM of the private key (write it with mode 0600)."""
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def public_jwk(self) -> dict[str, str]:
        return _public_jwk(self.public_key)


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


def generate_signing_key() -> SigningKey:
    """A fresh P-256 key."""
    return SigningKey(ec.generate_private_key(ec.SECP256R1()))


def load_signing_key(data: bytes | str) -> SigningKey:
    """Load a PEM private key, or the base64 of one (the ``SIGNING_KEY_PRIVATE`` form)."""
    raw = data.encode() if isinstance(data, str) else data
    if b"-----BEGIN" not in raw:
        try:
            raw = base64.b64decode(raw, validate=False)
        except ValueError:
            raise TokenError("signing key is neither PEM nor base64 PEM", code="bad_key") from None
    try:
        key = serialization.load_pem_private_key(raw, password=None)
    except (ValueError, TypeError):
        raise TokenError(
            "signing key could not be loaded: not a PEM private key", code="bad_key"
        ) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise TokenError("signing key must be an EC P-256 key (ES256)", code="bad_key")
    return SigningKey(key)


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
    return jwt.encode(claims, key.private_key, algorithm=_ALGORITHM, headers={"kid": key.kid})


def verify_decision_token(
    token: str,
    public_keys: list[ec.EllipticCurvePublicKey] | ec.EllipticCurvePublicKey,
    *,
    now: int,
    action_request_id: str | None = None,
    action_hash: str | None = None,
    issuer: str = DEFAULT_ISSUER,
    audience: str = DEFAULT_AUDIENCE,
    leeway: int = 5,
) -> DecisionClaims:
    """Verify signature (ES256 only), issuer, audience, times and the action binding.

    Raises TokenError with `code` one of: malformed, bad_algorithm, bad_signature, expired,
    not_yet_valid, wrong_audience, wrong_issuer, wrong_action, missing_claim.
    """
    keys = public_keys if isinstance(public_keys, list) else [public_keys]
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise TokenError("decision token is malformed", code="malformed") from None
    if header.get("alg") != _ALGORITHM:
        raise TokenError(
            f"decision token algorithm `{header.get('alg')}` refused: only ES256 is accepted",
            code="bad_algorithm",
        )
    claims = _decode_with_any(token, keys)
    _check_times(claims, now=now, leeway=leeway)
    if claims.get("iss") != issuer:
        raise TokenError("decision token has the wrong issuer", code="wrong_issuer")
    aud = claims.get("aud")
    if aud != audience and not (isinstance(aud, list) and audience in aud):
        raise TokenError("decision token has the wrong audience", code="wrong_audience")
    result = _claims(claims)
    if action_request_id is not None and not secrets.compare_digest(
        result.action_request_id, action_request_id
    ):
        raise TokenError(
            f"decision token was issued for another action, not `{action_request_id}`",
            code="wrong_action",
        )
    if action_hash is not None and not secrets.compare_digest(result.action_hash, action_hash):
        raise TokenError("decision token does not match this action's content", code="wrong_action")
    return result


def jwks_from_keys(keys: list[SigningKey] | list[ec.EllipticCurvePublicKey]) -> dict[str, Any]:
    """A JWKS document (``{"keys": [...]}``) of the public halves."""
    out = []
    for k in keys:
        pub = k.public_key if isinstance(k, SigningKey) else k
        out.append(_public_jwk(pub))
    return {"keys": out}


def public_key_from_jwk(jwk: dict[str, Any]) -> ec.EllipticCurvePublicKey:
    """An EC public key from one JWK of a JWKS (P-256 only)."""
    if jwk.get("kty") != "EC" or jwk.get("crv") != "P-256":
        raise TokenError("JWK is not an EC P-256 key", code="bad_key")
    x = int.from_bytes(_b64d(str(jwk["x"])), "big")
    y = int.from_bytes(_b64d(str(jwk["y"])), "big")
    return ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1()).public_key()


def _decode_with_any(token: str, keys: list[ec.EllipticCurvePublicKey]) -> dict[str, Any]:
    for key in keys:
        try:
            decoded: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[_ALGORITHM],
                options={
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "verify_aud": False,
                    "verify_iss": False,
                },
            )
            return decoded
        except jwt.InvalidSignatureError:
            continue
        except jwt.PyJWTError:
            raise TokenError("decision token is malformed", code="malformed") from None
    raise TokenError("decision token signature is not valid", code="bad_signature")


def _check_times(claims: dict[str, Any], *, now: int, leeway: int) -> None:
    exp, nbf = claims.get("exp"), claims.get("nbf", claims.get("iat"))
    if not isinstance(exp, int):
        raise TokenError("decision token has no expiry", code="missing_claim")
    if now > exp + leeway:
        raise TokenError("decision token has expired: request the action again", code="expired")
    if isinstance(nbf, int) and now + leeway < nbf:
        raise TokenError("decision token is not valid yet", code="not_yet_valid")


def _claims(claims: dict[str, Any]) -> DecisionClaims:
    try:
        return DecisionClaims(
            agent=str(claims["sub"]),
            action_request_id=str(claims["act"]),
            action_hash=str(claims["ahs"]),
            outcome=str(claims["out"]),
            jti=str(claims["jti"]),
            issued_at=int(claims["iat"]),
            expires_at=int(claims["exp"]),
        )
    except KeyError as exc:
        raise TokenError(
            f"decision token lacks the `{exc.args[0]}` claim", code="missing_claim"
        ) from None


def _public_jwk(pub: ec.EllipticCurvePublicKey) -> dict[str, str]:
    numbers = pub.public_numbers()
    return {
        "kty": "EC",
        "crv": "P-256",
        "x": _b64e(numbers.x.to_bytes(32, "big")),
        "y": _b64e(numbers.y.to_bytes(32, "big")),
        "use": "sig",
        "alg": _ALGORITHM,
        "kid": _thumbprint(pub),
    }


def _thumbprint(pub: ec.EllipticCurvePublicKey) -> str:
    n = pub.public_numbers()
    members = {
        "crv": "P-256",
        "kty": "EC",
        "x": _b64e(n.x.to_bytes(32, "big")),
        "y": _b64e(n.y.to_bytes(32, "big")),
    }
    digest = hashlib.sha256(
        json.dumps(members, separators=(",", ":"), sort_keys=True).encode()
    ).digest()
    return _b64e(digest)


def _b64e(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
