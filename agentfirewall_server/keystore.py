"""Where the vault's keys live, and how a new one is installed without losing the old.

The current key (it seals) comes from ``SETTINGS_ENCRYPTION_KEY`` or the data directory's
``encryption.key``; previous keys (they open what they sealed) from
``AGENTFIREWALL_ENCRYPTION_KEYS_PREVIOUS`` (comma-separated) and ``encryption.keyring``
(one key a line). Every file is written to a temporary name, fsynced, renamed and the
directory fsynced, so after a crash a file holds either its old or its new content.

Installing a new key (`install_current`) first writes the keyring with the old and the new
key, then replaces ``encryption.key``: at every instant both keys are on disk.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from agentfirewall.errors import VaultError
from agentfirewall_server.bootstrap import ENCRYPTION_KEY_FILE, read_secret_file, write_secret_file
from agentfirewall_server.faults import fault_point
from agentfirewall_server.settings import Settings
from agentfirewall_server.vault import Keyring, Vault, generate_key_text, key_id, parse_key

__all__ = [
    "KEYRING_FILE",
    "create_current",
    "install_current",
    "load_keyring",
    "prune_keyring_file",
    "read_key_files",
    "where_looked",
]

KEYRING_FILE = "encryption.keyring"


def where_looked(settings: Settings) -> str:
    """The places keys are read from, for error messages."""
    places = []
    if settings.encryption_key is not None:
        places.append("SETTINGS_ENCRYPTION_KEY")
    else:
        places.append(str(settings.data_dir / ENCRYPTION_KEY_FILE))
    if settings.encryption_keys_previous is not None:
        places.append("AGENTFIREWALL_ENCRYPTION_KEYS_PREVIOUS")
    places.append(str(settings.data_dir / KEYRING_FILE))
    return ", ".join(places)


def _read_key_file(path: Path) -> str | None:
    """The text of the key file `path` (None: there is none); `VaultError` naming it when it
    cannot be read as one (binary content, a directory, no permission). It is left as it is:
    a key is made only for an empty vault, never in place of a damaged file."""
    try:
        return read_secret_file(path)
    except UnicodeDecodeError:
        why = "not a key file (binary content)"
    except OSError as exc:
        why = f"cannot be read ({(exc.strerror or str(exc)).lower()})"
    raise VaultError(
        f"{path}: {why}: restore it from a backup (`tf restore`), or put the key back; "
        "nothing was changed"
    )


def _keyring_lines(data_dir: Path) -> list[str]:
    text = _read_key_file(data_dir / KEYRING_FILE) or ""
    return [line.strip() for line in text.splitlines() if line.strip()]


def _vaults(texts: Iterable[str], where: str) -> list[Vault]:
    out = []
    for text in texts:
        try:
            out.append(Vault.from_text(text))
        except VaultError as exc:
            raise VaultError(f"{where}: {exc}") from None
    return out


def read_key_files(data_dir: Path) -> tuple[str | None, list[str]]:
    """The data directory's current key file (None: there is none) and its keyring file's
    keys, as they are now; `VaultError` naming the file that cannot be read as keys (as
    `load_keyring` names it), which is left as it is."""
    ring = _keyring_lines(data_dir)
    _vaults(ring, str(data_dir / KEYRING_FILE))
    current = _read_key_file(data_dir / ENCRYPTION_KEY_FILE)
    if current:
        _vaults([current], str(data_dir / ENCRYPTION_KEY_FILE))
    return current, ring


def load_keyring(settings: Settings) -> Keyring | None:
    """Every key the settings name; None when there is no current key (file missing)."""
    previous = _vaults(_keyring_lines(settings.data_dir), str(settings.data_dir / KEYRING_FILE))
    if settings.encryption_keys_previous is not None:
        raw = settings.encryption_keys_previous.get_secret_value()
        texts = [t.strip() for t in raw.split(",") if t.strip()]
        previous += _vaults(texts, "AGENTFIREWALL_ENCRYPTION_KEYS_PREVIOUS")
    if settings.encryption_key is not None:
        current_text: str | None = settings.encryption_key.get_secret_value()
        where = "SETTINGS_ENCRYPTION_KEY"
    else:
        current_text = _read_key_file(settings.data_dir / ENCRYPTION_KEY_FILE)
        where = str(settings.data_dir / ENCRYPTION_KEY_FILE)
    if not current_text:
        return None
    (current,) = _vaults([current_text], where)
    return Keyring(current, previous)


def create_current(settings: Settings) -> Keyring:
    """A fresh current key in the data directory (only for an empty vault)."""
    text = generate_key_text()
    write_secret_file(settings.data_dir / ENCRYPTION_KEY_FILE, text.encode())
    keyring = load_keyring(settings)
    assert keyring is not None
    return keyring


def _write_keyring(data_dir: Path, lines: list[str]) -> None:
    write_secret_file(data_dir / KEYRING_FILE, ("\n".join(lines) + "\n").encode())


def install_current(settings: Settings, new_text: str) -> Vault:
    """Make `new_text` the current key of the data directory, keeping the old one.

    1. the keyring file gets the old current key and the new one (durable);
    2. ``encryption.key`` is replaced by the new key (atomic, durable).
    A crash between the two leaves the old key current and the new one unused.
    """
    new = Vault.from_text(new_text)
    data_dir = settings.data_dir
    lines = _keyring_lines(data_dir)
    known = {key_id(parse_key(line)) for line in lines}
    old_text = _read_key_file(data_dir / ENCRYPTION_KEY_FILE)
    for text in (old_text, new_text):
        if text and key_id(parse_key(text)) not in known:
            lines.append(text.strip())
            known.add(key_id(parse_key(text)))
    fault_point("before-key-write")
    _write_keyring(data_dir, lines)
    fault_point("after-key-write")
    fault_point("before-rename")
    write_secret_file(data_dir / ENCRYPTION_KEY_FILE, new_text.strip().encode())
    fault_point("after-rename")
    return new


def prune_keyring_file(settings: Settings, named: set[str], current: str) -> list[str]:
    """Drop from the keyring file the keys no stored row names; returns their ids."""
    lines = _keyring_lines(settings.data_dir)
    keep, dropped = [], []
    for line in lines:
        kid = key_id(parse_key(line))
        if kid in named or kid == current:
            keep.append(line)
        else:
            dropped.append(kid)
    if dropped:
        _write_keyring(settings.data_dir, keep)
    return dropped
