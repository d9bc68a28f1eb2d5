"""docs/server.md, "Key management" and "Backup and restore", followed literally.

`rotate-key --new-key K` run again (the doc: "re-run it after a crash") keeps K, the key the
operator chose, rather than making a random one. `tf restore` and `tf backup` fail with one
message saying what to do (a database to create, a client tool to install, a server to
stop), and a failed one leaves no staging directory or half backup holding the keys.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from sqlalchemy import insert, select

from agentfirewall_server.backup import BackupError, backup, restore
from agentfirewall_server.bootstrap import ensure_data_dir
from agentfirewall_server.datalock import DataBusy, ServerLock
from agentfirewall_server.main import main
from agentfirewall_server.settings import Settings
from agentfirewall_server.store.db import Database
from agentfirewall_server.store.schema import credentials
from agentfirewall_server.vault import Vault, generate_key_text

_KEY_ENV = ("SETTINGS_ENCRYPTION_KEY", "AGENTFIREWALL_ENCRYPTION_KEY", "AGENTFIREWALL_DATABASE_URL")
NOWHERE = "postgresql://tf@127.0.0.1:1/tameflare"  # nothing listens on port 1


@pytest.fixture(autouse=True)
def _file_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _KEY_ENV:
        monkeypatch.delenv(name, raising=False)


def _sealed(data: Path, url: str, key: str) -> None:
    """A data directory whose vault holds one credential sealed with `key`."""
    data.mkdir()
    (data / "encryption.key").write_text(key)
    db = Database(Settings(data_dir=data, database_url=url).resolved_database_url)
    db.migrate()
    stored = Vault.from_text(key).encrypt("s3cret", owner="conn_x_1")
    db.write_sync(
        lambda c: c.execute(
            insert(credentials).values(owner="conn_x_1", ciphertext=stored, created_at=1.0)
        )
    )
    db.close()


def test_rotate_key_run_again_with_the_chosen_key_keeps_that_key(
    tmp_path: Path, database_url: str
) -> None:
    data = tmp_path / "tf"
    _sealed(data, database_url, generate_key_text())
    chosen = generate_key_text()
    argv = ["rotate-key", "--data-dir", str(data), "--new-key", chosen]
    argv += ["--database-url", database_url]
    assert main(argv) == 0
    assert main(argv) == 0  # the same command again (after a crash, or by mistake)
    assert (data / "encryption.key").read_text() == chosen
    db = Database(database_url)
    stored = db.read_sync(lambda c: c.execute(select(credentials.c.ciphertext)).scalar())
    db.close()
    assert Vault.from_text(chosen).decrypt(str(stored), owner="conn_x_1") == "s3cret"


def _fake_backup(root: Path, engine: str) -> Path:
    """A manifest naming an (empty) database file: enough to reach the lock and database."""
    root.mkdir()
    database = "database.dump" if engine == "postgresql" else "agentfirewall.db"
    (root / database).write_bytes(b"")
    files = {database: {"sha256": hashlib.sha256().hexdigest(), "bytes": 0}}
    manifest = {"format": 1, "engine": engine, "database": database, "files": files}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def test_restore_into_a_database_that_cannot_be_reached_says_so(tmp_path: Path) -> None:
    source = _fake_backup(tmp_path / "backup", "postgresql")
    settings = Settings(data_dir=tmp_path / "new", database_url=NOWHERE)
    with pytest.raises(BackupError, match="cannot be opened") as err:
        restore(source, settings)
    assert "createdb" in str(err.value)


def test_restore_refused_on_a_running_server_names_only_what_to_do(tmp_path: Path) -> None:
    data = tmp_path / "tf"
    source = _fake_backup(tmp_path / "backup", "sqlite")
    settings = Settings(data_dir=data)
    lock = ServerLock(data, settings.resolved_database_url)
    lock.acquire()  # as a running server holds it
    try:
        with pytest.raises(DataBusy, match="stop it first") as err:
            restore(source, settings)
    finally:
        lock.release()
    assert "rotate" not in str(err.value)


def _without(tool: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """PATH with nothing on it: `tool` (pg_dump, pg_restore) is not found."""
    empty = tmp_path / "empty-path"
    empty.mkdir(exist_ok=True)
    monkeypatch.setenv("PATH", str(empty))


def test_a_backup_without_pg_dump_says_so_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "tf"
    ensure_data_dir(Settings(data_dir=data))
    (data / "encryption.key").write_text(generate_key_text())
    _without("pg_dump", monkeypatch, tmp_path)
    out = tmp_path / "backup"
    with pytest.raises(BackupError, match="`pg_dump` is not on PATH"):
        backup(Settings(data_dir=data, database_url=NOWHERE), out)
    assert not out.exists()  # no half backup holding the keys


@pytest.mark.postgres
def test_a_restore_whose_pg_restore_fails_leaves_no_staging(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, two_pg_databases: tuple[str, str]
) -> None:
    source_url, target_url = two_pg_databases
    data = tmp_path / "tf"
    _sealed(data, source_url, generate_key_text())
    ensure_data_dir(Settings(data_dir=data))
    out = tmp_path / "backup"
    backup(Settings(data_dir=data, database_url=source_url), out)
    _without("pg_restore", monkeypatch, tmp_path)
    target = tmp_path / "new"
    with pytest.raises(BackupError, match="`pg_restore` is not on PATH"):
        restore(out, Settings(data_dir=target, database_url=target_url))
    assert not (tmp_path / "new.restoring").exists()  # the keys are not left behind
    assert not (target / "encryption.key").exists()
