"""Decision-token signing keys: P-256 private keys, their ids and their public JWKs.

Apart from `tokens` so that what only needs a key's id (`tf` proving a local server is its
project's, by the key id in the server's JWKS) loads neither PyJWT nor the token code.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from agentfirewall.errors import TokenError

__all__ = [
    "ALGORITHM",
    "SigningKey",
    "b64url",
    "generate_signing_key",
    "key_id",
    "load_signing_key",
    "public_jwk",
]

#: the one algorithm of decision tokens
ALGORITHM = "ES256"


@dataclass(frozen=True, slots=True)
class SigningKey:
    """A P-256 private key with its key id (the RFC 7638 thumbprint)."""

    private_key: ec.EllipticCurvePrivateKey

    @property
    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self.private_key.public_key()

    @property
    def kid(self) -> str:
        return key_id(self.public_key)

    def to_pem(self) -> bytes:
        """PKCS#8 PEM of the private key (write it with mode 0600)."""
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def public_jwk(self) -> dict[str, str]:
        return public_jwk(self.public_key)


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


def public_jwk(pub: ec.EllipticCurvePublicKey) -> dict[str, str]:
    """The JWK of a public key, as the server's JWKS lists it."""
    numbers = pub.public_numbers()
    return {
        "kty": "EC",
        "crv": "P-256",
        "x": b64url(numbers.x.to_bytes(32, "big")),
        "y": b64url(numbers.y.to_bytes(32, "big")),
        "use": "sig",
        "alg": ALGORITHM,
        "kid": key_id(pub),
    }


def key_id(pub: ec.EllipticCurvePublicKey) -> str:
    """A key's id: its RFC 7638 thumbprint (SHA-256 of the required JWK members)."""
    n = pub.public_numbers()
    members = {
        "crv": "P-256",
        "kty": "EC",
        "x": b64url(n.x.to_bytes(32, "big")),
        "y": b64url(n.y.to_bytes(32, "big")),
    }
    digest = hashlib.sha256(
        json.dumps(members, separators=(",", ":"), sort_keys=True).encode()
    ).digest()
    return b64url(digest)


def b64url(raw: bytes) -> str:
    """Base64url without padding (JOSE's form)."""
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
