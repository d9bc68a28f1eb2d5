"""The credential vault: AES-256-GCM, each ciphertext bound to its owner.

The associated data is the owner id (a connector id such as ``conn_github_1``, or
``settings:slack_bot_token``), so a ciphertext copied onto another connector does not
decrypt. Stored form: ``v1:<key id>:<base64(nonce || ciphertext+tag)>``; the key id (8 hex
digits of the key's SHA-256) makes a wrong key a clear error instead of garbage.

A `Keyring` holds the current key (which seals) and previous keys; it opens a ciphertext
with whichever key the ciphertext names, so a rotation can proceed row by row.
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

__all__ = ["Keyring", "Vault", "generate_key_text", "key_id", "kid_of", "parse_key"]

_VERSION = "v1"
_NONCE, _TAG = 12, 16  # bytes: AES-GCM's nonce before the ciphertext, its tag after


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


def kid_of(stored: str) -> str | None:
    """The key id a stored ciphertext names, or None when it is not in the vault format."""
    parts = stored.split(":", 2)
    return parts[1] if len(parts) == 3 and parts[0] == _VERSION else None


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
        nonce = os.urandom(_NONCE)
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
        try:
            raw = base64.b64decode(blob, validate=True)
        except ValueError:  # binascii.Error (not base64) is one, as is a non-ASCII character
            raw = b""
        if len(raw) < _NONCE + _TAG:
            raise VaultError(f"credential of `{owner}` is damaged: it is not a sealed value")
        try:
            return self._aead.decrypt(raw[:_NONCE], raw[_NONCE:], owner.encode()).decode()
        except (InvalidTag, UnicodeDecodeError):
            raise VaultError(
                f"credential of `{owner}` does not decrypt: it was altered or belongs to "
                "another connector"
            ) from None

    def reencrypt(self, stored: str, *, owner: str, new: Vault) -> str:
        return new.encrypt(self.decrypt(stored, owner=owner), owner=owner)


class Keyring:
    """The current key (seals) and previous keys (open what they sealed), by key id."""

    def __init__(self, current: Vault, previous: list[Vault] | tuple[Vault, ...] = ()) -> None:
        self.current = current
        self.keys: dict[str, Vault] = {v.key_id: v for v in previous}
        self.keys[current.key_id] = current

    @property
    def key_id(self) -> str:
        return self.current.key_id

    def set_current(self, vault: Vault) -> None:
        """Seal with `vault` from now on (the others still open what they sealed)."""
        self.keys[vault.key_id] = vault
        self.current = vault

    def forget(self, kid: str) -> None:
        if kid != self.current.key_id:
            self.keys.pop(kid, None)

    def encrypt(self, plaintext: str, *, owner: str) -> str:
        return self.current.encrypt(plaintext, owner=owner)

    def decrypt(self, stored: str, *, owner: str) -> str:
        kid = kid_of(stored)
        vault = self.keys.get(kid) if kid else None
        if vault is None:
            if kid is None:
                raise VaultError(f"credential of `{owner}` is not in the vault format")
            raise VaultError(
                f"credential of `{owner}` was sealed with key id `{kid}`, which is not in "
                f"the keyring (current key id `{self.current.key_id}`): restore that key "
                "(encryption.key / encryption.keyring or SETTINGS_ENCRYPTION_KEY)"
            )
        return vault.decrypt(stored, owner=owner)

    def reseal(self, stored: str, *, owner: str) -> str:
        """`stored` sealed with the current key (unchanged when it already is)."""
        if kid_of(stored) == self.current.key_id:
            return stored
        return self.current.encrypt(self.decrypt(stored, owner=owner), owner=owner)
