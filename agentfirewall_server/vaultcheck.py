"""The vault at start and while serving: the right keys, or a clear stop; per-row health.

At start (`open_keyring`): every key id a stored credential names must be in the keyring,
else the server refuses to start, naming the key id and where it looked. The database
records the id of the key its servers seal with (the setting `vault_key_ids`: written by
the first start, `claim_keys`, and by each rotation, `record_keys`): a server whose
keyring holds none of them refuses to start too, even over an empty vault, where it would
seal credentials no other replica opens. A fresh key is made only for an empty vault
whose database records none. While serving (`credential_problems`): a credential that does
not decrypt is reported for its own connector; the others keep working.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeVar

from sqlalchemy import Connection, select

from agentfirewall.errors import AgentFirewallError, VaultError
from agentfirewall_server.keystore import create_current, load_keyring, where_looked
from agentfirewall_server.settings import Settings
from agentfirewall_server.snapshot import get_setting, put_setting
from agentfirewall_server.store.schema import credentials
from agentfirewall_server.vault import Keyring, kid_of

__all__ = [
    "VaultStartError",
    "claim_keys",
    "credential_problems",
    "keys_in_use",
    "open_keyring",
    "preflight",
    "problem_fix",
    "record_keys",
    "recorded_keys",
]

T = TypeVar("T")

#: The setting that names the key ids the database's servers seal with (a JSON list).
KEY_IDS = "vault_key_ids"


class Reader(Protocol):
    """Runs a function on a connection (`Database.read_sync`)."""

    def __call__(self, fn: Callable[[Connection], T], /) -> T: ...


def keys_in_use(conn: Connection) -> dict[str, int]:
    """Key id -> number of credentials it sealed (`?` for rows not in the vault format)."""
    out: dict[str, int] = {}
    for (stored,) in conn.execute(select(credentials.c.ciphertext)):
        kid = kid_of(str(stored)) or "?"
        out[kid] = out.get(kid, 0) + 1
    return out


class VaultStartError(AgentFirewallError):
    """The stored credentials need a key the server does not have, or the database records
    keys it holds none of."""


def recorded_keys(conn: Connection) -> list[str]:
    """The key ids the database records its servers seal with (none before a first start)."""
    found = get_setting(conn, KEY_IDS)
    return [str(k) for k in found] if isinstance(found, list) else []


def record_keys(conn: Connection, keyring: Keyring) -> None:
    """Record `keyring`'s current key as the one the database's servers seal with (a
    rotation installed it)."""
    put_setting(conn, KEY_IDS, [keyring.key_id])


def claim_keys(conn: Connection, keyring: Keyring, settings: Settings) -> None:
    """At start, in a write: record `keyring`'s current key when the database records none
    (its first start), else refuse a keyring holding none of those it records."""
    recorded = recorded_keys(conn)
    if not recorded:
        record_keys(conn, keyring)
    else:
        _check_recorded(recorded, keyring, settings)


def _check_recorded(recorded: list[str], keyring: Keyring | None, settings: Settings) -> None:
    held = sorted(keyring.keys) if keyring is not None else []
    if not recorded or set(recorded) & set(held):
        return
    kids = ", ".join(f"`{k}`" for k in recorded)
    has = f"key ids found: {', '.join(held)}" if held else "no encryption key"
    raise VaultStartError(
        f"vault: this database's servers seal credentials with key id {kids}, which is not "
        f"in the keyring (looked in {where_looked(settings)}; {has}): give every replica the "
        "same SETTINGS_ENCRYPTION_KEY (or restore that key file); a server with another key "
        "would seal credentials the others cannot open. If that key is lost and no "
        "credential is stored, the offline `rotate-key` records a new one"
    )


def open_keyring(settings: Settings, read: Reader, *, recorded: bool = True) -> Keyring:
    """The keyring for this database, or `VaultStartError` naming what is missing.

    `recorded`: held to the key ids the database records too; the offline rotation is not
    (it records its own key: the way to a new key when the recorded one is lost)."""
    try:
        keyring = load_keyring(settings)
    except VaultError as exc:
        raise VaultStartError(f"vault: {exc}") from None
    in_use = read(keys_in_use)
    held_to = read(recorded_keys) if recorded else []
    if keyring is None:
        if in_use:
            kids = ", ".join(f"`{k}`" for k in sorted(in_use))
            raise VaultStartError(
                f"vault: {sum(in_use.values())} sealed credential(s) need key id {kids}, but "
                f"there is no encryption key (looked in {where_looked(settings)}): restore "
                "the key file or set SETTINGS_ENCRYPTION_KEY; a new key is made only for an "
                "empty vault"
            )
        _check_recorded(held_to, None, settings)  # (before a key is made)
        return create_current(settings)
    missing = {k: n for k, n in in_use.items() if k not in keyring.keys}
    if missing:
        kids = ", ".join(f"`{k}` ({n} credential(s))" for k, n in sorted(missing.items()))
        raise VaultStartError(
            f"vault: stored credentials need key id {kids}, which is not in the keyring "
            f"(looked in {where_looked(settings)}; key ids found: "
            f"{', '.join(sorted(keyring.keys))}): restore that key as encryption.key or "
            "SETTINGS_ENCRYPTION_KEY (or add it to encryption.keyring)"
        )
    _check_recorded(held_to, keyring, settings)
    return keyring


def check_opens(url: str) -> None:
    """A server database (not SQLite: opening one makes its file) opens and answers; no
    schema or key is touched. `StoreError` (naming it, never its password) otherwise."""
    from sqlalchemy import text
    from sqlalchemy.exc import SQLAlchemyError

    from agentfirewall_server.store.db import Database, unreachable

    try:
        db = Database(url)
    except (SQLAlchemyError, ImportError, OSError) as exc:  # bad URL, no driver
        raise unreachable(url, exc) from None
    try:
        db.read_sync(lambda c: c.execute(text("SELECT 1")))
    except (SQLAlchemyError, OSError) as exc:  # refused, no such database, no permission
        raise unreachable(url, exc) from None
    finally:
        db.close()


def preflight(settings: Settings) -> None:
    """Before serving: the database opens, the schema is current and the keyring opens every
    stored credential. `StoreError` (naming the database, never its password) or
    `VaultStartError` otherwise."""
    from sqlalchemy.exc import DBAPIError, SQLAlchemyError

    from agentfirewall_server.store.db import Database, unreachable

    url = settings.resolved_database_url
    try:
        db = Database(url, synchronous=settings.sqlite_synchronous)
    except (SQLAlchemyError, ImportError, OSError) as exc:  # bad URL, no driver, no access
        raise unreachable(url, exc) from None
    try:
        try:
            db.migrate()
        except DBAPIError as exc:  # refused, no such database, no permission
            raise unreachable(url, exc) from None
        open_keyring(settings, db.read_sync)
    finally:
        db.close()


def problem_fix(owner: str) -> str:
    if owner.startswith("settings:"):
        return f"set `{owner.split(':', 1)[1]}` again in the settings"
    return (
        "restore the key it was sealed with (see `tf vault status`), or set the credential "
        f"again: `tf connector add <type> --token ... --replace` (replaces {owner})"
    )


def credential_problems(creds: dict[str, str], keyring: Keyring) -> dict[str, dict[str, str]]:
    """Owner -> what is wrong and how to fix it, for each credential that does not decrypt."""
    out: dict[str, dict[str, str]] = {}
    for owner, stored in creds.items():
        try:
            keyring.decrypt(stored, owner=owner)
        except (VaultError, ValueError) as exc:
            out[owner] = {
                "key_id": kid_of(stored) or "?",
                "error": str(exc),
                "fix": problem_fix(owner),
            }
    return out
