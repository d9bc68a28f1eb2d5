"""Key rotation: install a new vault key, then re-seal every credential in batches.

The same steps run offline (``python -m agentfirewall_server rotate-key``, refused while a
server holds the data directory) and online in the server (``POST /api/v1/vault/rotate``,
``tf vault rotate``):

1. with a key file: the new key is written durably to the keyring beside the old one,
   then ``encryption.key`` is replaced (`keystore.install_current`); with
   ``SETTINGS_ENCRYPTION_KEY`` the operator has already set the new key there and the old
   one in ``AGENTFIREWALL_ENCRYPTION_KEYS_PREVIOUS``;
2. rows not sealed with the current key are re-sealed, a batch per committed transaction
   (compare-and-set on the old ciphertext);
3. keys no row names any more are dropped from the keyring file.

A crash anywhere leaves every row sealed with a key that is on disk; running the rotation
again finishes it (re-sealing only what is left). ``AGENTFIREWALL_FAULT_KILL_AT=N`` makes the
process kill itself (SIGKILL) at the N-th step boundary (`faults.py`): the crash tests loop
over every N.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from sqlalchemy import Connection, func, select, update
from sqlalchemy.exc import SQLAlchemyError

from agentfirewall.errors import VaultError
from agentfirewall_server.datalock import DataBusy, exclusive
from agentfirewall_server.faults import FAULT_ENV, fault_point
from agentfirewall_server.keystore import install_current, prune_keyring_file
from agentfirewall_server.settings import Settings
from agentfirewall_server.store.db import Database, StoreError, unreachable
from agentfirewall_server.store.schema import credentials
from agentfirewall_server.vault import Keyring, generate_key_text, key_id, parse_key
from agentfirewall_server.vaultcheck import VaultStartError, keys_in_use, open_keyring

__all__ = [
    "FAULT_ENV",
    "Progress",
    "reseal_batch",
    "rotate_key",
    "run_rotation",
]

T = TypeVar("T")


class Writer(Protocol):
    """Runs a function in a committed write transaction (`Database.write_sync`)."""

    def __call__(self, fn: Callable[[Connection], T], /) -> T: ...


@dataclass(slots=True)
class Progress:
    """How far a rotation got (the online one reports it while it runs)."""

    key_id: str
    total: int = 0
    resealed: int = 0
    batches: int = 0
    pruned: list[str] = field(default_factory=list)


def reseal_batch(conn: Connection, keyring: Keyring, limit: int) -> int:
    """Re-seal up to `limit` rows not sealed with the current key; returns how many."""
    prefix = f"v1:{keyring.key_id}:"
    rows = conn.execute(
        select(credentials.c.owner, credentials.c.ciphertext)
        .where(~credentials.c.ciphertext.startswith(prefix, autoescape=True))
        .order_by(credentials.c.owner)
        .limit(limit)
    ).all()
    for i, (owner, stored) in enumerate(rows):
        conn.execute(
            update(credentials)
            .where(credentials.c.owner == owner, credentials.c.ciphertext == stored)
            .values(ciphertext=keyring.reseal(stored, owner=owner))
        )
        if i == 0:
            fault_point("mid-batch")
    return len(rows)


def _prune(conn: Connection, settings: Settings, keyring: Keyring) -> list[str]:
    named = set(keys_in_use(conn))
    dropped = prune_keyring_file(settings, named, keyring.key_id)
    for kid in list(keyring.keys):
        if kid not in named and kid != keyring.key_id and kid in dropped:
            keyring.forget(kid)
    return dropped


def run_rotation(
    settings: Settings,
    keyring: Keyring,
    write: Writer,
    *,
    new_key: str | None,
    progress: Progress | None = None,
    on_current: Callable[[], None] | None = None,
) -> Progress:
    """Install a new key (unless a rotation is to be finished), re-seal, prune.

    `write` runs a function in a committed write transaction (the store's writer).
    """
    pending = write(lambda c: _pending(c, keyring))
    env_key = settings.encryption_key is not None
    chosen_is_current = new_key is not None and key_id(parse_key(new_key)) == keyring.key_id
    if chosen_is_current:  # a re-run after a crash: finish that rotation, make no other key
        new_key = None
    if env_key and new_key is not None:
        raise VaultError(
            "the current key comes from SETTINGS_ENCRYPTION_KEY: set it to the new key and "
            "AGENTFIREWALL_ENCRYPTION_KEYS_PREVIOUS to the old one, restart, then rotate again "
            "to re-seal"
        )
    if not env_key and not chosen_is_current and (new_key is not None or pending == 0):
        keyring.set_current(install_current(settings, new_key or generate_key_text()))
    if on_current is not None:
        on_current()
    progress = progress or Progress(keyring.key_id)
    progress.key_id = keyring.key_id
    progress.total = write(lambda c: _pending(c, keyring))
    batch = settings.vault_rotate_batch
    while True:
        done = write(lambda c: reseal_batch(c, keyring, batch))
        if done == 0:
            break
        fault_point("after-commit")
        progress.resealed += done
        progress.batches += 1
    fault_point("before-prune")
    progress.pruned = write(lambda c: _prune(c, settings, keyring))
    fault_point("after-prune")
    return progress


def _pending(conn: Connection, keyring: Keyring) -> int:
    prefix = f"v1:{keyring.key_id}:"
    return int(
        conn.execute(
            select(func.count())
            .select_from(credentials)
            .where(~credentials.c.ciphertext.startswith(prefix, autoescape=True))
        ).scalar_one()
    )


def rotate_key(settings: Settings, new_key: str | None) -> int:
    """The offline command: exit 0 done, 1 refused or failed, 2 bad key."""
    if new_key is not None:
        try:
            parse_key(new_key)
        except VaultError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    url = settings.resolved_database_url
    try:
        db = Database(url, synchronous=settings.sqlite_synchronous)
    except (SQLAlchemyError, ImportError, OSError) as exc:
        print(f"error: {unreachable(url, exc)}", file=sys.stderr)
        return 1
    try:
        with exclusive(settings.data_dir, url, instead="rotate online with `tf vault rotate`"):
            db.migrate()
            keyring = open_keyring(settings, db.read_sync)
            before = keyring.key_id
            progress = run_rotation(settings, keyring, db.write_sync, new_key=new_key)
    except (DataBusy, StoreError, VaultError, VaultStartError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        db.close()
    print(
        f"re-sealed {progress.resealed} credential(s) in {progress.batches} batch(es): "
        f"key {before} -> {progress.key_id}"
    )
    if progress.pruned:
        print(f"retired key(s) no credential names: {', '.join(progress.pruned)}")
    if settings.encryption_key is None:
        print(f"current key in {settings.data_dir / 'encryption.key'} (back it up)")
    return 0
