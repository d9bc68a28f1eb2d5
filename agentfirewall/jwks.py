"""Offline verification of decision tokens against a server's JWKS.

The server publishes its ES256 public keys at ``/.well-known/jwks.json`` (at the server's
root, beside ``/api``). A tool that wants to check a decision token before acting fetches
that document once (the clients cache it), then verifies locally with
:func:`agentfirewall.tokens.verify_decision_token`: signature, issuer, audience, expiry and,
when given, the binding to one action request id, action hash and agent. Replay (single use) is
only enforced by the server at ``execute``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

from agentfirewall.errors import TokenError
from agentfirewall.tokens import (
    DecisionClaims,
    jwks_from_keys,
    public_key_from_jwk,
    verify_decision_token,
)

__all__ = ["JWKSCache", "jwks_url_for", "keys_from_jwks", "verify_with_jwks"]

#: How long fetched keys are trusted before the next fetch.
DEFAULT_TTL_SECONDS = 300.0
#: The soonest a cache refetches after an unknown signature (key rotation).
REFRESH_AFTER_SECONDS = 10.0


def jwks_url_for(base_url: str) -> str:
    """``http://h:3000/api`` -> ``http://h:3000/.well-known/jwks.json``."""
    parts = urlsplit(base_url)
    path = parts.path.rstrip("/")
    if path.endswith("/api"):
        path = path[: -len("/api")]
    return urlunsplit((parts.scheme, parts.netloc, f"{path}/.well-known/jwks.json", "", ""))


def keys_from_jwks(document: object) -> list[ec.EllipticCurvePublicKey]:
    """The P-256 signing keys of a JWKS document. Other key types, and keys marked for
    another use (``use`` not ``sig``) or another algorithm (``alg`` not ES256), are skipped;
    so is a P-256 key that does not load (no point of the curve, a coordinate that is not
    32 bytes), as RFC 7517 section 5 asks: the keys beside it still verify their tokens (a
    token naming it is refused, see `verify_with_jwks`). A document without a usable key is
    TokenError ``bad_key``, saying why its first P-256 key did not load."""
    keys, unloadable = _load_keys(document)
    if not keys:
        raise next(iter(unloadable.values()), None) or TokenError(
            "JWKS document holds no EC P-256 key", code="bad_key"
        )
    return keys


def _load_keys(
    document: object,
) -> tuple[list[ec.EllipticCurvePublicKey], dict[str | None, TokenError]]:
    """The keys of `keys_from_jwks`, and why each P-256 key that did not load did not (by
    its ``kid``; None for one without)."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise TokenError("JWKS document has no `keys` list", code="bad_key")
    keys = []
    unloadable: dict[str | None, TokenError] = {}
    for jwk in document["keys"]:
        if not isinstance(jwk, dict) or jwk.get("kty") != "EC" or jwk.get("crv") != "P-256":
            continue
        if jwk.get("use", "sig") != "sig" or jwk.get("alg", "ES256") != "ES256":
            continue
        try:
            keys.append(public_key_from_jwk(jwk))
        except TokenError as exc:
            kid = jwk.get("kid")
            unloadable.setdefault(kid if isinstance(kid, str) else None, exc)
    return keys, unloadable


def verify_with_jwks(
    token: str,
    document: object,
    *,
    now: int,
    action_request_id: str | None = None,
    action_hash: str | None = None,
    agent: str | None = None,
) -> DecisionClaims:
    """Verify `token` with the keys of a JWKS document (raises TokenError). A token whose
    ``kid`` names a key the document holds but cannot load is refused with ``bad_key``."""
    keys = keys_from_jwks(document)
    try:
        return verify_decision_token(
            token,
            keys,
            now=now,
            action_request_id=action_request_id,
            action_hash=action_hash,
            agent=agent,
        )
    except TokenError as exc:
        if exc.code != "bad_signature" or (broken := _broken_key(token, document)) is None:
            raise
        raise broken from None


def _broken_key(token: str, document: object) -> TokenError | None:
    """``bad_key`` when `token` names (by its ``kid``) a key of `document` that did not load
    and none that did; else None. The header is read unverified: only to word the refusal."""
    try:
        kid = jwt.get_unverified_header(token).get("kid")
    except (jwt.PyJWTError, TypeError, ValueError):
        return None
    if not isinstance(kid, str):
        return None
    keys, unloadable = _load_keys(document)
    why = unloadable.get(kid)
    if why is None or kid in {jwk["kid"] for jwk in jwks_from_keys(keys)["keys"]}:
        return None
    return TokenError(
        f"decision token was signed by key `{kid[:60]}`, which the JWKS document holds but "
        f"cannot load ({why}): the server's published key is broken",
        code="bad_key",
    )


@dataclass(slots=True)
class JWKSCache:
    """The last JWKS document fetched and when (monotonic seconds)."""

    ttl_seconds: float = DEFAULT_TTL_SECONDS
    document: dict[str, Any] | None = None
    fetched_at: float = field(default=float("-inf"))

    def current(self, now: float) -> dict[str, Any] | None:
        """The cached document while fresh, else None (fetch again)."""
        if self.document is not None and now - self.fetched_at < self.ttl_seconds:
            return self.document
        return None

    def store(self, document: object, now: float) -> dict[str, Any]:
        keys_from_jwks(document)  # refuse a document without usable keys
        assert isinstance(document, dict)
        self.document, self.fetched_at = document, now
        return document

    def may_refresh(self, now: float) -> bool:
        """After a bad signature: refetch unless the keys are very recent."""
        return now - self.fetched_at >= REFRESH_AFTER_SECONDS
