"""Backup and restore of a data directory and its database (``tf backup``, ``tf restore``).

A backup is a directory (0700) of files (0600): the key material and tokens of the data
directory, the audit checkpoint file (copied before the database, so no checkpoint in it
is newer than the copy), every vault key seen before or after the copy (so a rotation
running meanwhile cannot leave a row naming a key the backup lacks), the database
(SQLite's online backup API: a consistent copy while the server writes;
``pg_dump --format=custom`` for PostgreSQL) and ``manifest.json`` (SHA-256 and size of
every file).

A restore checks the manifest, takes the target data directory and database exclusively
(refused while a server runs there), restores into a staging directory, verifies the
audit chain against its checkpoints and that every sealed credential decrypts, and only
then moves the files into place.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

from sqlalchemy import inspect, select, text

from agentfirewall.errors import AgentFirewallError
from agentfirewall.tokens import SigningKey, load_signing_key
from agentfirewall_server.bootstrap import (
    ADMIN_TOKEN_FILE,
    ENCRYPTION_KEY_FILE,
    GATEWAY_TOKEN_FILE,
    SIGNING_KEY_FILE,
    fsync_dir,
    read_secret_file,
    write_secret_file,
)
from agentfirewall_server.checkpointer import verify_log
from agentfirewall_server.checkpoints import CHECKPOINT_FILE
from agentfirewall_server.clock import now, rfc3339
from agentfirewall_server.datalock import exclusive
from agentfirewall_server.keystore import KEYRING_FILE
from agentfirewall_server.settings import Settings
from agentfirewall_server.store.db import Database, StoreError, normalize_url
from agentfirewall_server.store.schema import credentials
from agentfirewall_server.vault import key_id, parse_key
from agentfirewall_server.vaultcheck import VaultStartError, open_keyring

__all__ = ["MANIFEST", "BackupError", "backup", "restore", "verify_data"]

MANIFEST = "manifest.json"
SQLITE_FILE = "agentfirewall.db"
PG_FILE = "database.dump"
KEY_FILES = (
    ENCRYPTION_KEY_FILE,
    KEYRING_FILE,
    SIGNING_KEY_FILE,
    ADMIN_TOKEN_FILE,
    GATEWAY_TOKEN_FILE,
    CHECKPOINT_FILE,
)


class BackupError(AgentFirewallError):
    """A backup or restore that cannot be made or trusted."""


def _libpq(url: str) -> str:
    return normalize_url(url).replace("postgresql+psycopg://", "postgresql://", 1)


def _sqlite_path(url: str) -> Path | None:
    url = normalize_url(url)
    return Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:///") else None


def _digest(path: Path) -> dict[str, Any]:
    h = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            h.update(block)
    return {"sha256": h.hexdigest(), "bytes": path.stat().st_size}


def _new_file(path: Path) -> None:
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def _run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    """Run a PostgreSQL client tool (pg_dump, pg_restore), which must be on PATH."""
    try:
        return subprocess.run(cmd, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise BackupError(
            f"`{cmd[0]}` is not on PATH: install the PostgreSQL client tools of your server's "
            "version (Debian: `apt-get install postgresql-client`)"
        ) from None


def _copy_database(url: str, out: Path) -> str:
    source = _sqlite_path(url)
    if source is not None:
        target = out / SQLITE_FILE
        _new_file(target)
        src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
        dst = sqlite3.connect(target)
        try:
            src.backup(dst)  # the online backup API: consistent while the server writes
        finally:
            dst.close()
            src.close()
        return SQLITE_FILE
    target = out / PG_FILE
    _new_file(target)
    cmd = ["pg_dump", "--format=custom", "--no-owner", "--no-acl", "--file", str(target)]
    done = _run([*cmd, _libpq(url)])
    if done.returncode != 0:
        raise BackupError(f"pg_dump failed: {done.stderr.strip()[:500]}")
    os.chmod(target, 0o600)
    return PG_FILE


def backup(settings: Settings, out: Path) -> dict[str, Any]:
    """Write a backup of the running (or stopped) server's data to `out`; the manifest."""
    if out.exists() and any(out.iterdir()):
        raise BackupError(f"`{out}` is not empty: back up into a new directory")
    made = not out.exists()
    out.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        return _write_backup(settings, out)
    except BaseException:  # no half backup (it would hold the keys) is left behind
        if made:
            shutil.rmtree(out, ignore_errors=True)
        else:
            for path in out.iterdir():
                path.unlink(missing_ok=True)
        raise


def _write_backup(settings: Settings, out: Path) -> dict[str, Any]:
    os.chmod(out, 0o700)
    for name in KEY_FILES:  # before the database: no checkpoint here is newer than the copy
        if (settings.data_dir / name).exists():
            write_secret_file(out / name, (settings.data_dir / name).read_bytes())
    keys_before = _vault_keys(settings.data_dir)
    database = _copy_database(settings.resolved_database_url, out)
    _write_vault_keys(out, keys_before, _vault_keys(settings.data_dir))
    files = {p.name: _digest(p) for p in sorted(out.iterdir()) if p.name != MANIFEST}
    manifest = {
        "format": 1,
        "created_at": rfc3339(now()),
        "engine": "sqlite" if database == SQLITE_FILE else "postgresql",
        "database": database,
        "files": files,
        "encryption_key": "environment" if settings.encryption_key else "file",
        "signing_key": "environment" if settings.signing_key else "file",
    }
    write_secret_file(out / MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode())
    fsync_dir(out)
    return manifest


def _vault_keys(data_dir: Path) -> tuple[str | None, list[str]]:
    """The current key and the keyring's lines, as they are now."""
    current = read_secret_file(data_dir / ENCRYPTION_KEY_FILE)
    ring = read_secret_file(data_dir / KEYRING_FILE) or ""
    return current, [line.strip() for line in ring.splitlines() if line.strip()]


def _write_vault_keys(
    out: Path, before: tuple[str | None, list[str]], after: tuple[str | None, list[str]]
) -> None:
    """Every vault key seen before or after the database copy (a rotation may run meanwhile:
    the copy's rows name keys of either moment); the current key is the later one."""
    current = after[0] or before[0]
    if current is None:
        return
    seen = {key_id(parse_key(current))}
    ring = []
    for line in [*before[1], *after[1], *([before[0]] if before[0] else [])]:
        kid = key_id(parse_key(line))
        if kid not in seen:
            seen.add(kid)
            ring.append(line)
    write_secret_file(out / ENCRYPTION_KEY_FILE, current.encode())
    if ring or (out / KEYRING_FILE).exists():
        write_secret_file(out / KEYRING_FILE, ("\n".join(ring) + "\n").encode())


def _signing_key(settings: Settings) -> SigningKey:
    if settings.signing_key is not None:
        return load_signing_key(settings.signing_key.get_secret_value())
    pem = read_secret_file(settings.data_dir / SIGNING_KEY_FILE)
    if not pem:
        raise BackupError(f"no signing key in {settings.data_dir}: cannot check the audit log")
    return load_signing_key(pem)


def verify_data(settings: Settings) -> dict[str, Any]:
    """The audit chain holds against its checkpoints and every credential decrypts."""
    db = Database(settings.resolved_database_url)
    try:
        db.migrate()
        try:
            keyring = open_keyring(settings, db.read_sync)
        except VaultStartError as exc:
            raise BackupError(str(exc)) from None
        rows = db.read_sync(lambda c: c.execute(select(credentials)).all())
        bad = []
        for row in rows:
            try:
                keyring.decrypt(row.ciphertext, owner=row.owner)
            except (ValueError, AgentFirewallError):
                bad.append(str(row.owner))
        if bad:
            raise BackupError(f"credential(s) that do not decrypt: {', '.join(sorted(bad))}")
        key = _signing_key(settings)
        result = db.read_sync(lambda c: verify_log(settings, key, c))
    finally:
        db.close()
    if not result.ok:
        raise BackupError(f"the audit log does not verify: {result.problem}")
    return {"credentials": len(rows), "audit": result.to_dict()}


def _check_manifest(source: Path) -> dict[str, Any]:
    try:
        manifest: dict[str, Any] = json.loads((source / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BackupError(f"`{source}` is not a backup: {exc}") from None
    for name, expected in manifest.get("files", {}).items():
        path = source / name
        if "/" in name or not path.is_file() or _digest(path) != expected:
            raise BackupError(f"backup file `{name}` is missing or altered (manifest mismatch)")
    return manifest


def _holds_data(settings: Settings) -> bool:
    names = [*KEY_FILES, SQLITE_FILE]
    if any((settings.data_dir / n).exists() for n in names):
        return True
    if _sqlite_path(settings.resolved_database_url) is not None:
        return False
    db = Database(settings.resolved_database_url)
    try:
        return bool(db.read_sync(lambda c: inspect(c).get_table_names()))
    finally:
        db.close()


def _pg_restore(source: Path, url: str) -> None:
    cmd = ["pg_restore", "--no-owner", "--no-acl", "--exit-on-error", "--dbname", _libpq(url)]
    done = _run([*cmd, str(source / PG_FILE)])
    if done.returncode != 0:
        raise BackupError(f"pg_restore failed: {done.stderr.strip()[:500]}")


def _pg_wipe(url: str) -> None:
    db = Database(url)
    try:
        db.write_sync(lambda c: c.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public")))
    finally:
        db.close()


def restore(source: Path, settings: Settings, *, force: bool = False) -> dict[str, Any]:
    """Restore the backup in `source` into `settings`' data directory (and database)."""
    manifest = _check_manifest(source)
    target = settings.data_dir
    pg = manifest["engine"] == "postgresql"
    if pg == (_sqlite_path(settings.resolved_database_url) is not None):
        raise BackupError(
            f"the backup is of a {manifest['engine']} database: give a matching --database-url"
        )
    try:
        with exclusive(target, settings.resolved_database_url):
            if _holds_data(settings) and not force:
                raise BackupError(
                    f"`{target}` (or its database) already holds data: restore into a new "
                    "one, or pass --force"
                )
            report = _staged_restore(source, manifest, settings)
    except StoreError as exc:  # the database cannot be reached (or does not exist)
        raise BackupError(str(exc)) from None
    return {"manifest": manifest, **report}


def _staged_restore(source: Path, manifest: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """Restore into `<data dir>.restoring` (and the database), verify, switch; on any
    failure the staging is removed (and the PostgreSQL database emptied again)."""
    target = settings.data_dir
    pg = manifest["engine"] == "postgresql"
    stage = target.with_name(target.name + ".restoring")
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(mode=0o700)
    try:
        for name in manifest["files"]:
            if name != PG_FILE:
                write_secret_file(stage / name, (source / name).read_bytes())
        staged = settings.model_copy(update={"data_dir": stage})
        if pg:
            _pg_wipe(settings.resolved_database_url)
            _pg_restore(source, settings.resolved_database_url)
        else:
            staged = staged.model_copy(update={"database_url": None})
        report = verify_data(staged)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        if pg:
            with contextlib.suppress(Exception):
                _pg_wipe(settings.resolved_database_url)
        raise
    _switch(stage, target, settings)
    return report


def _switch(stage: Path, target: Path, settings: Settings) -> None:
    """Move the verified files into the data directory (the database file last)."""
    target.mkdir(parents=True, exist_ok=True, mode=0o700)
    db_path = _sqlite_path(settings.resolved_database_url)
    if db_path is not None:
        for suffix in ("-wal", "-shm"):  # a stale log must not replay onto the restored file
            Path(str(db_path) + suffix).unlink(missing_ok=True)
    names = sorted(
        p.name for p in stage.iterdir() if not p.name.startswith(SQLITE_FILE) and p.name != MANIFEST
    )
    for name in names:
        os.replace(stage / name, target / name)
    if (stage / SQLITE_FILE).exists():
        assert db_path is not None
        os.replace(stage / SQLITE_FILE, db_path)
    fsync_dir(target)
    shutil.rmtree(stage, ignore_errors=True)
