"""``python -m agentfirewall_server rotate-key``: re-encrypt the vault under a new key.

Run it with the server stopped. Every ciphertext is decrypted with the current key and
encrypted with the new one in one transaction. With a key file, the new key is first
written beside it (``encryption.key.new``), the transaction commits, then the file is
renamed over the old one; with ``SETTINGS_ENCRYPTION_KEY`` the new key is printed once.
"""

from __future__ import annotations

import os
import sys

from sqlalchemy import Connection, select, update

from agentfirewall.errors import VaultError
from agentfirewall_server.bootstrap import ENCRYPTION_KEY_FILE, write_secret_file
from agentfirewall_server.settings import Settings
from agentfirewall_server.store.db import Database
from agentfirewall_server.store.schema import credentials
from agentfirewall_server.vault import Vault, generate_key_text

__all__ = ["reencrypt_all", "rotate_key"]


def reencrypt_all(conn: Connection, old: Vault, new: Vault) -> int:
    rows = conn.execute(select(credentials.c.owner, credentials.c.ciphertext)).all()
    for owner, stored in rows:
        conn.execute(
            update(credentials)
            .where(credentials.c.owner == owner)
            .values(ciphertext=old.reencrypt(stored, owner=owner, new=new))
        )
    return len(rows)


def rotate_key(settings: Settings, new_key: str | None) -> int:
    key_file = settings.data_dir / ENCRYPTION_KEY_FILE
    try:
        if settings.encryption_key is not None:
            old = Vault.from_text(settings.encryption_key.get_secret_value())
        else:
            old = Vault.from_file(key_file)
        new_text = new_key or generate_key_text()
        new = Vault.from_text(new_text)
    except VaultError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    pending = key_file.with_name(ENCRYPTION_KEY_FILE + ".new")
    if settings.encryption_key is None:
        write_secret_file(pending, new_text.encode())
    db = Database(settings.resolved_database_url)
    try:
        db.migrate()
        count = db.write_sync(lambda c: reencrypt_all(c, old, new))
    except VaultError as exc:
        pending.unlink(missing_ok=True)
        print(f"error: nothing changed: {exc}", file=sys.stderr)
        return 1
    finally:
        db.close()
    print(f"re-encrypted {count} secret(s): key {old.key_id} -> {new.key_id}")
    if settings.encryption_key is None:
        os.replace(pending, key_file)
        print(f"new key written to {key_file}")
    elif new_key is None:
        print("set SETTINGS_ENCRYPTION_KEY to the new key before restarting (shown once):")
        print(new_text)
    return 0
