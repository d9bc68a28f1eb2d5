"""Key rotation: install a new vault key, then re-seal every credential in batches.

The same steps run offline (``python -m agentfirewall_server rotate-key``, refused while a
server holds the data directory) and online in the server (``POST /api/v1/vault/rotate``,
``tf vault rotate``):

1. with a key file: the new key is written durably to the keyring beside the old one,
   then ``encryption.key`` is replaced (`keystore.install_current`); with
   ``SETTINGS_ENCRYPTION_KEY`` the operator has already set the new key there and the old
   one in ``AGENTFIREWALL_ENCRYPTION_KEYS_PREVIOUS``;
2. the database records the new key as the one its servers seal with (a server holding
   none of the keys it records refuses to start: `vaultcheck.claim_keys`); rows not sealed
   with the current key are re-sealed, a batch per committed transaction (compare-and-set
   on the old ciphertext);
3. keys no row names any more are dropped from the keyring file. The server forgets them
   from memory only after it reloaded its configuration (`forget_retired`): until then
   its snapshot still holds ciphertexts they sealed.

A credential that does not decrypt (altered, moved onto another connector) is skipped and
reported by its owner, never its content; it keeps its key, which stays in the keyring
while a row names it; the others are re-sealed.

A crash anywhere leaves every row sealed with a key that is on disk; running the rotation
again finishes it (re-sealing only what is left). ``AGENTFIREWALL_FAULT_KILL_AT=N`` makes the
process kill itself (SIGKILL) at the N-th step boundary (`faults.py`): the crash tests loop
over every N.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Protocol, TypeVar

from sqlalchemy import Connection, select, update
from sqlalchemy.exc import SQLAlchemyError

from agentfirewall.errors import VaultError
from agentfirewall_server.datalock import DataBusy, exclusive
from agentfirewall_server.faults import FAULT_ENV, fault_point
from agentfirewall_server.keystore import install_current, prune_keyring_file
from agentfirewall_server.settings import Settings
from agentfirewall_server.store.db import Database, StoreError, unreachable
from agentfirewall_server.store.schema import credentials
from agentfirewall_server.vault import Keyring, generate_key_text, key_id, kid_of, parse_key
from agentfirewall_server.vaultcheck import (
    VaultStartError,
    keys_in_use,
    open_keyring,
    problem_fix,
    record_keys,
)

__all__ = [
    "FAULT_ENV",
    "Progress",
    "forget_retired",
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
    #: owners whose credential does not decrypt: not re-sealed, their key kept
    unreadable: list[str] = field(default_factory=list)


def _unsealed(
    conn: Connection, keyring: Keyring, after: str = "", limit: int | None = None
) -> list[tuple[str, str]]:
    """(owner, ciphertext) of the rows not sealed with the current key, by owner, from the
    first owner after `after`."""
    prefix = f"v1:{keyring.key_id}:"
    rows = conn.execute(
        select(credentials.c.owner, credentials.c.ciphertext)
        .where(
            ~credentials.c.ciphertext.startswith(prefix, autoescape=True),
            credentials.c.owner > after,
        )
        .order_by(credentials.c.owner)
        .limit(limit)
    ).all()
    return [(str(owner), str(stored)) for owner, stored in rows]


def _opens(keyring: Keyring, owner: str, stored: str) -> bool:
    try:
        keyring.decrypt(stored, owner=owner)
    except VaultError:
        return False
    return True


def _pending(conn: Connection, keyring: Keyring) -> int:
    """The rows a re-seal with the current key is left to do (an unreadable one never is)."""
    return sum(_opens(keyring, owner, stored) for owner, stored in _unsealed(conn, keyring))


def reseal_batch(
    conn: Connection, keyring: Keyring, limit: int, after: str = ""
) -> tuple[list[str], list[str]]:
    """Re-seal up to `limit` rows not sealed with the current key whose owner sorts after
    `after`: (the owners looked at, those whose credential does not decrypt: left as is)."""
    rows = _unsealed(conn, keyring, after, limit)
    unreadable = []
    for i, (owner, stored) in enumerate(rows):
        try:
            sealed = keyring.reseal(stored, owner=owner)
        except VaultError:
            unreadable.append(owner)
        else:
            conn.execute(
                update(credentials)
                .where(credentials.c.owner == owner, credentials.c.ciphertext == stored)
                .values(ciphertext=sealed)
            )
        if i == 0:
            fault_point("mid-batch")
    return [owner for owner, _ in rows], unreadable


def _prune(conn: Connection, settings: Settings, keyring: Keyring) -> list[str]:
    """Drop from the keyring file the keys no row names (an unreadable row keeps its key)."""
    return prune_keyring_file(settings, set(keys_in_use(conn)), keyring.key_id)


def forget_retired(keyring: Keyring, retired: Iterable[str], serving: Iterable[str]) -> None:
    """Forget from memory the keys a rotation retired that none of the ciphertexts still
    served (`serving`: the configuration snapshot's, reloaded after the re-seal) names."""
    named = {kid_of(stored) for stored in serving}
    for kid in retired:
        if kid not in named:
            keyring.forget(kid)


def run_rotation(
    settings: Settings,
    keyring: Keyring,
    write: Writer,
    *,
    new_key: str | None,
    progress: Progress | None = None,
    on_current: Callable[[], None] | None = None,
) -> Progress:
    """Install a new key (unless a rotation is to be finished), re-seal, prune the keyring
    file. The keys it retires stay in `keyring` (`forget_retired`).

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
    write(partial(record_keys, keyring=keyring))  # the key the servers start with from now
    progress = progress or Progress(keyring.key_id)
    progress.key_id = keyring.key_id
    progress.total = write(lambda c: _pending(c, keyring))
    batch, after = settings.vault_rotate_batch, ""
    while True:  # by owner: an unreadable row, left as is, is not looked at again
        seen, unreadable = write(partial(reseal_batch, keyring=keyring, limit=batch, after=after))
        if not seen:
            break
        fault_point("after-commit")
        after = seen[-1]
        progress.resealed += len(seen) - len(unreadable)
        progress.unreadable += unreadable
        progress.batches += 1
    fault_point("before-prune")
    progress.pruned = write(lambda c: _prune(c, settings, keyring))
    fault_point("after-prune")
    return progress


def rotate_key(settings: Settings, new_key: str | None) -> int:
    """The offline command: exit 0 done, 1 refused or failed (or a credential that does not
    decrypt was left as is), 2 bad key."""
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
            keyring = open_keyring(settings, db.read_sync, recorded=False)  # (it records)
            before = keyring.key_id
            progress = run_rotation(settings, keyring, db.write_sync, new_key=new_key)
    except (DataBusy, StoreError, VaultError, VaultStartError, OSError) as exc:
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
    for owner in progress.unreadable:
        print(
            f"error: the credential of `{owner}` does not decrypt: not re-sealed, its key is "
            f"kept: {problem_fix(owner)}",
            file=sys.stderr,
        )
    return 1 if progress.unreadable else 0
