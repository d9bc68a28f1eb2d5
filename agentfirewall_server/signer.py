"""A fast ES256 signer for decision tokens (the hot path of ``POST /api/v1/actions``).

It writes exactly the JWT ``agentfirewall.tokens.sign_decision_token`` writes (same header,
same claims) but skips PyJWT's generic machinery, which costs about 100 µs per token
on top of the 35 µs signature. Tokens verify with ``verify_decision_token``.
"""

from __future__ import annotations

import binascii
import json

import orjson
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from agentfirewall.tokens import DEFAULT_AUDIENCE, DEFAULT_ISSUER, DEFAULT_TTL_SECONDS, SigningKey
from agentfirewall_server.clock import random_bytes

__all__ = ["TokenSigner"]


_URLSAFE = bytes.maketrans(b"+/", b"-_")


def _b64(raw: bytes) -> bytes:
    """``base64.urlsafe_b64encode(raw).rstrip(b"=")`` without its two Python wrappers."""
    return binascii.b2a_base64(raw, newline=False).translate(_URLSAFE).rstrip(b"=")


class TokenSigner:
    def __init__(self, key: SigningKey, ttl_seconds: int = DEFAULT_TTL_SECONDS) -> None:
        self._key = key.private_key
        self._ttl = ttl_seconds
        header = {"alg": "ES256", "kid": key.kid, "typ": "JWT"}
        self._header = _b64(json.dumps(header, separators=(",", ":")).encode())
        self._algorithm = ec.ECDSA(hashes.SHA256())

    def sign(self, *, agent: str, action_request_id: str, action_hash: str, now: int) -> str:
        claims = {
            "iss": DEFAULT_ISSUER,
            "aud": DEFAULT_AUDIENCE,
            "sub": agent,
            "jti": _b64(random_bytes(16)).decode("ascii"),
            "iat": now,
            "nbf": now,
            "exp": now + self._ttl,
            "act": action_request_id,
            "ahs": action_hash,
            "out": "allow",
        }
        signing_input = self._header + b"." + _b64(orjson.dumps(claims))
        r, s = decode_dss_signature(self._key.sign(signing_input, self._algorithm))
        signature = _b64(r.to_bytes(32, "big") + s.to_bytes(32, "big"))
        return (signing_input + b"." + signature).decode("ascii")
