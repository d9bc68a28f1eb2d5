"""Backup and restore of a data directory and its database (``tf backup``, ``tf restore``).

A backup is a directory (0700) of files (0600): the key material and tokens of the data
directory, the audit checkpoint file (copied before the database, so no checkpoint in it
is newer than the copy), every vault key seen before or after the copy, the database
(SQLite's online backup API: a consistent copy while the server writes;
``pg_dump --format=custom`` of one snapshot for PostgreSQL) and ``manifest.json`` (SHA-256
and size of every file). A copy with no TameFlare schema, or whose credentials name a key
the backup lacks (a rotation ran meanwhile), fails the backup.

A restore checks the manifest, takes the target data directory and database exclusively
(refused while a server runs there), restores into a staging directory (PostgreSQL: the
database's schema is set aside first and put back on failure), verifies the audit chain
against its checkpoints and that every sealed credential decrypts, holds the restored log
against the target's own checkpoints (a restore that would roll the audit log back is
refused unless asked for: the target's checkpoints are kept, so verify goes on reporting
it, and a signed restore record of the restored head follows them in the checkpoint files),
records an ``audit.restored`` event and only then moves the files into place.
PostgreSQL's client tools and the schema set aside are :mod:`agentfirewall_server.pgbackup`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, create_engine, inspect, select
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from agentfirewall.errors import AgentFirewallError, VaultError
from agentfirewall.tokens import SigningKey, load_signing_key
from agentfirewall_server.audit import VerifyResult, append_event
from agentfirewall_server.bootstrap import (
    ADMIN_TOKEN_FILE,
    ENCRYPTION_KEY_FILE,
    GATEWAY_TOKEN_FILE,
    SIGNING_KEY_FILE,
    fsync_dir,
    read_secret_file,
    write_secret_file,
)
from agentfirewall_server.checkpointer import append_line, verify_log
from agentfirewall_server.checkpoints import CHECKPOINT_FILE, restore_line
from agentfirewall_server.clock import now, rfc3339
from agentfirewall_server.datalock import exclusive
from agentfirewall_server.keystore import KEYRING_FILE, load_keyring, read_key_files
from agentfirewall_server.pgbackup import (
    BackupError,
    drop_aside,
    dump_snapshot,
    put_back,
    restore_dump,
    set_aside,
)
from agentfirewall_server.settings import Settings
from agentfirewall_server.snapshot import put_setting, read_version
from agentfirewall_server.store.db import (
    Database,
    StoreError,
    make_private_dir,
    normalize_url,
    sqlite_path,
    unreachable,
)
from agentfirewall_server.store.schema import credentials
from agentfirewall_server.vault import key_id, parse_key
from agentfirewall_server.vaultcheck import VaultStartError, keys_in_use, open_keyring

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
ENGINES = {"sqlite": SQLITE_FILE, "postgresql": PG_FILE}
_WRONG_SOURCE = "check --data-dir / --database-url (the server's)"


def _digest(path: Path) -> dict[str, Any]:
    h = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            h.update(block)
    return {"sha256": h.hexdigest(), "bytes": path.stat().st_size}


def _new_file(path: Path) -> None:
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def _schema_keys(conn: Connection, where: str, fix: str) -> set[str]:
    """The key ids the database's credentials name; `BackupError` (`where` holds no
    TameFlare schema: `fix`) for an empty database, which must not pass for data."""
    found = inspect(conn)
    if not (found.has_table("alembic_version") and found.has_table("credentials")):
        raise BackupError(f"{where} holds no TameFlare schema: {fix}")
    return {kid for kid in keys_in_use(conn) if kid != "?"}


def _copy_sqlite(source: Path, target: Path) -> set[str]:
    if not source.is_file():
        raise BackupError(
            f"no SQLite database at `{source}`: give the data directory of a server on "
            "SQLite, or its --database-url (PostgreSQL, or a SQLite file elsewhere)"
        )
    _new_file(target)
    try:  # a file URI: `?`, `#` and `%` in the path are escaped, not read as URI syntax
        src = sqlite3.connect(f"{source.absolute().as_uri()}?mode=ro", uri=True)
        dst = sqlite3.connect(target)
        try:
            src.backup(dst)  # the online backup API: consistent while the server writes
        finally:
            dst.close()
            src.close()
    except sqlite3.Error as exc:
        raise BackupError(f"cannot copy the SQLite database `{source}`: {exc}") from None
    engine = create_engine(URL.create("sqlite", database=str(target)), poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return _schema_keys(conn, f"the SQLite database `{source}`", _WRONG_SOURCE)
    finally:
        engine.dispose()


def _pg_keys(conn: Connection) -> set[str]:
    """The key ids of the rows a `pg_dump` copies, read in its snapshot."""
    return _schema_keys(conn, "the PostgreSQL database", _WRONG_SOURCE)


def _copy_database(url: str, out: Path) -> tuple[str, set[str]]:
    """Copy the database into `out`: its file name, and the key ids its credentials name."""
    source = sqlite_path(url)
    if source is not None:
        return SQLITE_FILE, _copy_sqlite(source, out / SQLITE_FILE)
    _new_file(out / PG_FILE)  # (private before pg_dump writes into it)
    return PG_FILE, dump_snapshot(url, out / PG_FILE, _pg_keys)


def backup(settings: Settings, out: Path) -> dict[str, Any]:
    """Write a backup of the running (or stopped) server's data to `out`; the manifest.
    `VaultError` naming a vault key file that cannot be read as keys (nothing written)."""
    if out.exists() and any(out.iterdir()):
        raise BackupError(f"`{out}` is not empty: back up into a new directory")
    made = not out.exists()
    make_private_dir(out)
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
    keys_before = read_key_files(settings.data_dir)  # a damaged key file: `VaultError` first
    for name in KEY_FILES:  # before the database: no checkpoint here is newer than the copy
        if (settings.data_dir / name).exists():
            write_secret_file(out / name, (settings.data_dir / name).read_bytes())
    database, needed = _copy_database(settings.resolved_database_url, out)
    _write_vault_keys(out, keys_before, read_key_files(settings.data_dir))
    _check_keys(settings, out, needed)
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


def _check_keys(settings: Settings, out: Path, needed: set[str]) -> None:
    """Every key id the copy's credentials name opens from the backup (or the environment)."""
    try:
        keyring = load_keyring(settings.model_copy(update={"data_dir": out}))
    except VaultError as exc:
        raise BackupError(str(exc)) from None
    missing = sorted(needed - set(keyring.keys if keyring is not None else ()))
    if missing:
        raise BackupError(
            f"the copied credentials need key id(s) {', '.join(missing)}, which the backup "
            "does not hold (a key rotation ran during the backup): run it again once `tf "
            "vault status` shows no rotation running"
        )


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
        manifest = json.loads((source / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BackupError(f"`{source}` is not a backup: {exc}") from None
    files = manifest.get("files") if isinstance(manifest, dict) else None
    engine = manifest.get("engine") if isinstance(manifest, dict) else None
    database = ENGINES.get(engine) if isinstance(engine, str) else None
    if not isinstance(files, dict) or database not in files:
        raise BackupError(
            f"`{source / MANIFEST}` is not a manifest `tf backup` wrote (it names the engine "
            "and the files, the database among them): restore an unaltered backup"
        )
    if manifest.get("format") != 1:
        raise BackupError(
            f"`{source}` is a backup of format {manifest.get('format')!r}, which this version "
            "does not read: restore it with the version that made it"
        )
    known = {*KEY_FILES, SQLITE_FILE, PG_FILE}
    for name, expected in files.items():
        path = source / name
        if name not in known or not path.is_file() or _digest(path) != expected:
            raise BackupError(f"backup file `{name}` is missing or altered (manifest mismatch)")
    return dict(manifest)


def _holds_data(settings: Settings) -> bool:
    if any((settings.data_dir / n).exists() for n in [*KEY_FILES, SQLITE_FILE]):
        return True
    db_path = sqlite_path(settings.resolved_database_url)
    if db_path is not None:
        return db_path.exists()
    db = Database(settings.resolved_database_url)
    try:
        return bool(db.read_sync(lambda c: inspect(c).get_table_names()))
    finally:
        db.close()


def restore(
    source: Path, settings: Settings, *, force: bool = False, discard_newer_audit: bool = False
) -> dict[str, Any]:
    """Restore the backup in `source` into `settings`' data directory (and database).

    `discard_newer_audit`: restore even when the target's audit checkpoints cover events
    the backup lacks (the restore rolls the audit log back; verify goes on reporting it).
    """
    manifest = _check_manifest(source)
    target = settings.data_dir
    pg = manifest["engine"] == "postgresql"
    if pg == (sqlite_path(settings.resolved_database_url) is not None):
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
            report = _staged_restore(source, manifest, settings, discard_newer_audit)
    except StoreError as exc:  # the database cannot be reached (or does not exist)
        raise BackupError(str(exc)) from None
    return {"manifest": manifest, **report}


def _staged_restore(
    source: Path, manifest: dict[str, Any], settings: Settings, discard_newer_audit: bool
) -> dict[str, Any]:
    """Restore into `<data dir>.restoring` (and the database), verify, switch; on any
    failure the staging is removed (and the PostgreSQL schema put back)."""
    target = settings.data_dir
    url = settings.resolved_database_url
    pg = manifest["engine"] == "postgresql"
    stage = target.with_name(target.name + ".restoring")
    shutil.rmtree(stage, ignore_errors=True)
    make_private_dir(stage)
    aside = False
    try:
        for name in manifest["files"]:
            if name != PG_FILE:
                write_secret_file(stage / name, (source / name).read_bytes())
        # the backup alone first: its chain against its own checkpoints, its credentials
        staged = settings.model_copy(update={"data_dir": stage, "audit_anchor_file": None})
        if pg:
            set_aside(url)
            aside = True
            restore_dump(source / PG_FILE, url)
        else:
            staged = staged.model_copy(update={"database_url": None})
        _require_schema(staged)
        report = verify_data(staged)
        report["discarded"] = _keep_target_audit(settings, staged, discard_newer_audit)
        _record_restore(staged, manifest, report, settings.audit_anchor_file)
        if aside:
            drop_aside(url)
            aside = False
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        if aside:
            with contextlib.suppress(Exception):
                put_back(url)
        raise
    _switch(stage, target, settings)
    return report


def _require_schema(staged: Settings) -> None:
    """The restored database holds a TameFlare schema (the migrations would make an empty
    one: an empty copy must not restore as a success)."""
    url = staged.resolved_database_url
    engine = create_engine(normalize_url(url), poolclass=NullPool)
    try:
        with engine.connect() as conn:
            _schema_keys(conn, "the backup's database", "restore a backup of a server's data")
    except DBAPIError as exc:
        raise BackupError(str(unreachable(url, exc))) from None
    finally:
        engine.dispose()


def _keep_target_audit(
    settings: Settings, staged: Settings, discard_newer_audit: bool
) -> dict[str, Any] | None:
    """Add the target's checkpoints to the staged file and hold the restored log against
    them (and the anchor file): a log they show newer is not rolled back unless
    `discard_newer_audit`. Returns what is discarded (None: nothing)."""
    mine = _checkpoint_lines(staged.data_dir / CHECKPOINT_FILE)
    theirs = _checkpoint_lines(settings.data_dir / CHECKPOINT_FILE)
    added = [line for line in theirs if line not in set(mine)]
    if added:
        content = "".join(line + "\n" for line in [*mine, *added])
        write_secret_file(staged.data_dir / CHECKPOINT_FILE, content.encode())
    if not added and settings.audit_anchor_file is None:
        return None
    evidence = staged.model_copy(update={"audit_anchor_file": settings.audit_anchor_file})
    result = _verify_log(evidence)
    if result.ok:
        return None
    if not discard_newer_audit:
        raise BackupError(
            f"the audit checkpoints of `{settings.data_dir}` do not hold for the backup's log "
            f"({result.problem}): the restore would roll the audit log back. Restore into a "
            "new data directory, or pass --discard-newer-audit (verify then goes on "
            "reporting the rollback; an `audit.restored` event names the discarded head)"
        )
    return {"problem": result.problem, "checkpoint": result.checkpoint}


def _checkpoint_lines(path: Path) -> list[str]:
    try:
        text_ = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    return [line.strip() for line in text_.splitlines() if line.strip()]


def _verify_log(settings: Settings) -> VerifyResult:
    key = _signing_key(settings)
    db = Database(settings.resolved_database_url)
    try:
        return db.read_sync(lambda c: verify_log(settings, key, c))
    finally:
        db.close()


def _record_restore(
    staged: Settings, manifest: dict[str, Any], report: dict[str, Any], anchor: Path | None
) -> None:
    """The restored log's next event: `audit.restored`, naming the backup and, when the
    target's newer log is discarded, its newest checkpoint. A discard is also signed into
    the checkpoint files (the staged one and the `anchor` file): the restore record of that
    event, which the server's log extends from then on instead of the checkpoints before
    it. Signed, it is the one word of a discard that someone holding the database cannot
    write (an `audit.restored` row they can)."""
    discarded = report["discarded"]
    data = {
        "backup_created_at": manifest.get("created_at"),
        "events_restored": report["audit"]["events_checked"],
        "discarded_head": discarded["checkpoint"] if discarded else None,
        "discarded_because": discarded["problem"] if discarded else None,
    }

    def record(conn: Connection) -> dict[str, Any]:
        _version_past_restore(conn)
        return append_event(
            conn, "audit.restored", actor="restore", now=now(), subject="audit", data=data
        )

    db = Database(staged.resolved_database_url)
    try:
        event = db.write_sync(record)
    finally:
        db.close()
    if discarded:
        line = restore_line(_signing_key(staged), event["id"], event["hash"], now())
        for path in [staged.data_dir / CHECKPOINT_FILE, *([anchor] if anchor else [])]:
            append_line(path, line)


def _version_past_restore(conn: Connection) -> None:
    """Set the configuration version above every one served before the restore: gateways
    refuse a config older than the one they hold (a replica behind the others), so the
    restored one must be newer. Versions count up by one per change from 1, or from an
    earlier restore's time: its time in milliseconds is past them (`restore` into a new
    database, which knows none of them, included)."""
    put_setting(conn, "config_version", max(read_version(conn), int(now() * 1000)) + 1)


def _switch(stage: Path, target: Path, settings: Settings) -> None:
    """Move the verified files into the data directory (the database file last)."""
    make_private_dir(target)
    db_path = sqlite_path(settings.resolved_database_url)
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
