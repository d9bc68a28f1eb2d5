"""The credential vault: AES-256-GCM, each ciphertext bound to its owner.

The associated data is the owner id (a connector id such as ``conn_github_1``, or
``settings:slack_bot_token``), so a ciphertext copied onto another connector does not
decrypt. Stored form: ``v1:<key id>:<base64(nonce || ciphertext+tag)>``; the key id (8 hex
digits of the key's SHA-256) makes a wrong key a clear error instead of garbage.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from agentfirewall.errors import VaultError

__all__ = ["Vault", "generate_key_text", "parse_key"]

_VERSION = "v1"


def parse_key(text: str) -> bytes:
    """A 32-byte key from 64 hex digits or base64 (standard or URL-safe)."""
    value = text.strip()
    if len(value) == 64:
        try:
            return bytes.fromhex(value)
        except ValueError:
            pass
    try:
        raw = base64.b64decode(value + "=" * (-len(value) % 4), altchars=b"-_", validate=False)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) == 32:
        return raw
    try:
        raw = base64.b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) == 32:
        return raw
    raise VaultError(
        "encryption key must be 32 bytes written as 64 hex digits or base64 "
        "(generate one with `python -c 'import secrets; print(secrets.token_hex(32))'`)"
    )


def generate_key_text() -> str:
    return os.urandom(32).hex()


def key_id(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:8]


class Vault:
    """Encrypt and decrypt secrets with one AES-256-GCM key."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise VaultError("encryption key must be exactly 32 bytes (AES-256)")
        self._aead = AESGCM(key)
        self.key_id = key_id(key)

    @classmethod
    def from_text(cls, text: str) -> Vault:
        return cls(parse_key(text))

    @classmethod
    def from_file(cls, path: Path) -> Vault:
        try:
            return cls.from_text(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise VaultError(f"encryption key file `{path}` does not exist") from None

    def encrypt(self, plaintext: str, *, owner: str) -> str:
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, plaintext.encode("utf-8"), owner.encode("utf-8"))
        blob = base64.b64encode(nonce + sealed).decode("ascii")
        return f"{_VERSION}:{self.key_id}:{blob}"

    def decrypt(self, stored: str, *, owner: str) -> str:
        try:
            version, kid, blob = stored.split(":", 2)
        except ValueError:
            raise VaultError(f"credential of `{owner}` is not in the vault format") from None
        if version != _VERSION:
            raise VaultError(f"credential of `{owner}` uses unknown vault format `{version}`")
        if kid != self.key_id:
            raise VaultError(
                f"credential of `{owner}` was encrypted with another key (id `{kid}`, "
                f"current key id `{self.key_id}`): set SETTINGS_ENCRYPTION_KEY to the key "
                "it was stored with"
            )
        raw = base64.b64decode(blob)
        try:
            plain = self._aead.decrypt(raw[:12], raw[12:], owner.encode("utf-8"))
        except InvalidTag:
            raise VaultError(
                f"credential of `{owner}` does not decrypt: it was altered or belongs to "
                "another connector"
            ) from None
        return plain.decode("utf-8")

    def reencrypt(self, stored: str, *, owner: str, new: Vault) -> str:
        return new.encrypt(self.decrypt(stored, owner=owner), owner=owner)
