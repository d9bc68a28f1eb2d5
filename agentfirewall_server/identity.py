"""Secrets people and agents present: agent keys, admin/gateway tokens, passwords, sessions.

Agent keys (``aaf_live_``/``aaf_test_`` + 32 chars) and tokens (``tfa_``/``tfg_`` + 40 chars)
are shown once and stored as SHA-256 hex plus a 12-character prefix. Lookups go by hash and
the final comparison is constant-time. Passwords use argon2id (a slow KDF).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from agentfirewall_server.bootstrap import new_token

__all__ = [
    "PREFIX_LENGTH",
    "hash_password",
    "hash_secret",
    "new_agent_key",
    "new_session_token",
    "prefix_of",
    "same_hash",
    "verify_password",
]

PREFIX_LENGTH = 12
_HASHER = PasswordHasher()


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def same_hash(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def prefix_of(secret: str) -> str:
    return secret[:PREFIX_LENGTH]


def new_agent_key(environment: str) -> str:
    """`aaf_live_...` or `aaf_test_...` with 32 random letters and digits."""
    kind = "test" if environment == "test" else "live"
    return new_token(f"aaf_{kind}_", 32)


def new_session_token() -> str:
    return secrets.token_urlsafe(32)


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def verify_password(stored: str, password: str) -> bool:
    try:
        return _HASHER.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def dummy_verify(password: str) -> None:
    """Spend the same time as a real check when the user does not exist."""
    verify_password(_DUMMY, password)


#: what an unknown user's password is checked against: a hash with `_HASHER`'s parameters of a
#: password no one knows (written here: hashing one at import cost every start 0.2-0.5 s;
#: tests/server/test_identity_dummy.py holds it to the parameters `_HASHER` uses)
_DUMMY = (
    "$argon2id$v=19$m=65536,t=3,p=4$x6fRCrcyt7A5mqSc25sKRQ$"
    "LSYrvyiJRvddnPxdJ2P6mqt/QVrlHjIyqc/lm3BFAzo"
)
