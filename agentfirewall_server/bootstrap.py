"""First start: the data directory and its secret files, all mode 0600.

``ensure_data_dir`` is idempotent: it creates what is missing and reads what exists.
The encryption key is not among them: the server makes one only when the vault is empty
(a missing key with sealed rows stops the start instead, see ``vaultcheck``).
``tf init`` calls it too, so the CLI and the server agree on the admin and gateway tokens.
``AGENTFIREWALL_ADMIN_TOKEN`` / ``AGENTFIREWALL_GATEWAY_TOKEN`` (at least 32 characters)
replace the two token files: replicas behind a load balancer share them from a secret store.
"""

from __future__ import annotations

import errno
import os
import secrets
import string
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from agentfirewall.tokens import generate_signing_key
from agentfirewall_server.settings import Settings
from agentfirewall_server.store.db import make_private_dir

__all__ = [
    "ADMIN_TOKEN_FILE",
    "ENCRYPTION_KEY_FILE",
    "GATEWAY_TOKEN_FILE",
    "SETUP_TOKEN_FILE",
    "SIGNING_KEY_FILE",
    "Bootstrap",
    "bootstrap_tokens",
    "ensure_data_dir",
    "fsync_dir",
    "new_token",
    "read_secret_file",
    "write_all",
    "write_secret_file",
]

SIGNING_KEY_FILE = "signing-key.pem"
ENCRYPTION_KEY_FILE = "encryption.key"
ADMIN_TOKEN_FILE = "admin.token"  # noqa: S105 (a file name)
GATEWAY_TOKEN_FILE = "gateway.token"  # noqa: S105
SETUP_TOKEN_FILE = "setup.token"  # noqa: S105
#: The stored names of the bootstrap tokens' rows; a minted token may not take them.
BOOTSTRAP_TOKEN_NAMES = {"admin": "bootstrap admin token", "gateway": "bootstrap gateway token"}

_ALPHABET = string.ascii_letters + string.digits


@dataclass(frozen=True, slots=True)
class Bootstrap:
    """What the data directory holds for a client of this server."""

    admin_token: str
    gateway_token: str
    setup_url: str | None
    created: bool
    data_dir: Path
    #: the files this call made (`created` is true when any was)
    made: tuple[str, ...] = ()


def new_token(prefix: str, length: int = 40) -> str:
    """`prefix` followed by `length` random letters and digits."""
    return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(length))


def write_all(fd: int, data: bytes) -> None:
    """Write every byte of `data` to `fd`: `os.write` may write fewer (a full disk, a
    signal); one that writes nothing raises rather than loop."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:
            raise OSError(errno.ENOSPC, "no byte written")
        view = view[written:]


def write_secret_file(path: Path, content: bytes) -> None:
    """Write `content` to `path` created with mode 0600 (never world-readable, even briefly)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        write_all(fd, content)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    """Make a rename in `path` durable (the directory entry itself)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_secret_file(path: Path) -> str | None:
    """The stripped text of `path`, or None when it does not exist."""
    try:
        return path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None


def _ensure(path: Path, make: Callable[[], bytes]) -> bool:
    if path.exists():
        os.chmod(path, 0o600)
        return False
    write_secret_file(path, make())
    return True


def bootstrap_tokens(settings: Settings) -> tuple[str, str]:
    """(admin token, gateway token): from the settings when set, else the data dir's files."""
    found = []
    for value, name in (
        (settings.admin_token, ADMIN_TOKEN_FILE),
        (settings.gateway_token, GATEWAY_TOKEN_FILE),
    ):
        text = value.get_secret_value() if value is not None else None
        found.append(text or read_secret_file(settings.data_dir / name) or "")
    return found[0], found[1]


def ensure_data_dir(settings: Settings) -> Bootstrap:
    """Create the data directory and every missing secret file; report the tokens."""
    root = settings.data_dir
    make_private_dir(root)
    made: list[str] = []
    wanted = [
        (settings.signing_key, SIGNING_KEY_FILE, lambda: generate_signing_key().to_pem()),
        (settings.admin_token, ADMIN_TOKEN_FILE, lambda: new_token("tfa_").encode()),
        (settings.gateway_token, GATEWAY_TOKEN_FILE, lambda: new_token("tfg_").encode()),
    ]  # the encryption key is made by the server, and only for an empty vault (keystore.py)
    for from_env, name, make in wanted:
        if from_env is None and _ensure(root / name, make):
            made.append(name)
    if made and not (root / SETUP_TOKEN_FILE).exists():
        write_secret_file(root / SETUP_TOKEN_FILE, secrets.token_urlsafe(24).encode())
        made.append(SETUP_TOKEN_FILE)
    admin, gateway = bootstrap_tokens(settings)
    setup = read_secret_file(root / SETUP_TOKEN_FILE)
    url = f"{settings.base_url}/dashboard/setup?token={setup}" if setup else None
    return Bootstrap(admin, gateway, url, bool(made), root, tuple(made))
