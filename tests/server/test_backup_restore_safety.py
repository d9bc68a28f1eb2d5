"""`tf backup` copies the data it names, or fails; `tf restore` loses nothing it refuses.

- a data directory path holding URI syntax (``#``, ``?``, ``%41``) is the path: the
  database is made inside it (0600) and backed up whole, never an empty stray file;
- a copy with no TameFlare schema, or whose credentials name a key the backup lacks (a
  rotation ran during the copy), fails the backup; a restore of a schema-less copy fails;
- a refused restore over PostgreSQL keeps the database's data (nothing is switched);
- a restore that would roll the audit log back is refused unless asked for, keeps the
  target's checkpoints (verify goes on reporting the rollback) and records
  ``audit.restored``;
- a database password never reaches a command line; a broken manifest, a newer
  version's database and a missing database file give one clear error; directories
  made on the way are 0700 whatever the umask.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import stat
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select, text
from starlette.testclient import TestClient

from agentfirewall_server import backup as backup_module
from agentfirewall_server import pgbackup
from agentfirewall_server.app import create_app
from agentfirewall_server.backup import BackupError, backup, restore, verify_data
from agentfirewall_server.bootstrap import ensure_data_dir
from agentfirewall_server.datalock import ServerLock
from agentfirewall_server.pgbackup import ASIDE
from agentfirewall_server.rotate import rotate_key
from agentfirewall_server.settings import Settings
from agentfirewall_server.store.db import Database, StoreError
from agentfirewall_server.store.schema import audit_events, credentials
from agentfirewall_server.vault import Vault, generate_key_text

_KEY_ENV = ("SETTINGS_ENCRYPTION_KEY", "AGENTFIREWALL_ENCRYPTION_KEY", "AGENTFIREWALL_DATABASE_URL")


@pytest.fixture(autouse=True)
def _file_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _KEY_ENV:
        monkeypatch.delenv(name, raising=False)


def _seed(settings: Settings, owner: str = "conn_x_1") -> None:
    """The data directory's files and one credential sealed with its key."""
    ensure_data_dir(settings)
    key = generate_key_text()
    (settings.data_dir / "encryption.key").write_text(key)
    db = Database(settings.resolved_database_url)
    db.migrate()
    stored = Vault.from_text(key).encrypt("s3cret", owner=owner)
    db.write_sync(
        lambda c: c.execute(
            insert(credentials).values(owner=owner, ciphertext=stored, created_at=1.0)
        )
    )
    db.close()


def _reseal_manifest(out: Path, name: str) -> None:
    """The manifest made to match an edited file (as a newer version's backup would)."""
    manifest = json.loads((out / "manifest.json").read_text())
    data = (out / name).read_bytes()
    digest = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    manifest["files"][name] = digest
    (out / "manifest.json").write_text(json.dumps(manifest))


def _events(settings: Settings, event_type: str) -> list[Any]:
    db = Database(settings.resolved_database_url)
    try:
        query = select(audit_events).where(audit_events.c.event_type == event_type)
        return db.read_sync(lambda c: c.execute(query).mappings().all())
    finally:
        db.close()


@pytest.mark.parametrize("mark", ["#", "?", "%41"])
def test_a_data_dir_path_with_uri_syntax_is_backed_up_and_restored_whole(
    tmp_path: Path, mark: str
) -> None:
    data = tmp_path / f"team{mark}1" / "tf"
    settings = Settings(data_dir=data)
    _seed(settings)
    db_file = data / "agentfirewall.db"
    assert db_file.stat().st_size > 0  # the database is the data directory's, not a stray
    assert stat.S_IMODE(db_file.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"team{mark}1"]
    out = tmp_path / "backup"
    backup(settings, out)
    copy = sqlite3.connect(out / "agentfirewall.db")
    assert copy.execute("SELECT count(*) FROM credentials").fetchone() == (1,)
    copy.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["backup", f"team{mark}1"]
    restored = Settings(data_dir=tmp_path / f"new{mark}2" / "tf")
    assert restore(out, restored)["credentials"] == 1
    assert verify_data(restored)["credentials"] == 1


def test_a_backup_of_a_database_without_schema_or_file_fails_and_leaves_nothing(
    tmp_path: Path,
) -> None:
    data = tmp_path / "tf"
    ensure_data_dir(Settings(data_dir=data))
    out = tmp_path / "backup"
    with pytest.raises(BackupError, match="no SQLite database at"):
        backup(Settings(data_dir=data), out)
    (data / "agentfirewall.db").write_bytes(b"")  # an empty database: no schema
    with pytest.raises(BackupError, match="holds no TameFlare schema"):
        backup(Settings(data_dir=data), out)
    assert not out.exists()


def test_restore_refuses_a_backup_whose_database_holds_no_schema(tmp_path: Path) -> None:
    data = tmp_path / "tf"
    _seed(Settings(data_dir=data))
    out = tmp_path / "backup"
    backup(Settings(data_dir=data), out)
    os.chmod(out / "agentfirewall.db", 0o600)
    (out / "agentfirewall.db").write_bytes(b"")  # what an unescaped `#` used to back up
    _reseal_manifest(out, "agentfirewall.db")
    target = tmp_path / "restored"
    with pytest.raises(BackupError, match="holds no TameFlare schema"):
        restore(out, Settings(data_dir=target))
    assert not (target / "agentfirewall.db").exists()
    assert not (tmp_path / "restored.restoring").exists()


@pytest.mark.parametrize(
    "manifest",
    [{"format": 1, "files": {}}, [], {"format": 2, "engine": "sqlite", "files": {}}],
    ids=["no-engine", "a-list", "newer-format"],
)
def test_a_broken_manifest_is_named_not_a_traceback(tmp_path: Path, manifest: Any) -> None:
    source = tmp_path / "backup"
    source.mkdir()
    if isinstance(manifest, dict) and manifest.get("engine"):
        (source / "agentfirewall.db").write_bytes(b"")
        manifest["files"]["agentfirewall.db"] = {"sha256": hashlib.sha256().hexdigest(), "bytes": 0}
    (source / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BackupError, match=r"manifest|format"):
        restore(source, Settings(data_dir=tmp_path / "new"))


def test_a_newer_versions_database_is_refused_with_what_to_do(tmp_path: Path) -> None:
    data = tmp_path / "tf"
    settings = Settings(data_dir=data)
    _seed(settings)
    out = tmp_path / "backup"
    backup(settings, out)
    os.chmod(out / "agentfirewall.db", 0o600)
    conn = sqlite3.connect(out / "agentfirewall.db")
    conn.execute("UPDATE alembic_version SET version_num = '9999_future'")
    conn.commit()
    conn.close()  # the WAL into the file
    _reseal_manifest(out, "agentfirewall.db")
    with pytest.raises(BackupError, match="newer version"):
        restore(out, Settings(data_dir=tmp_path / "restored"))
    assert not (tmp_path / "restored.restoring").exists()
    db = Database(f"sqlite:///{out / 'agentfirewall.db'}")
    try:
        with pytest.raises(StoreError, match="newer version"):  # the server's start too
            db.migrate()
    finally:
        db.close()


def test_directories_made_under_a_permissive_umask_are_private(tmp_path: Path) -> None:
    data = tmp_path / "srv" / "tf"
    before = os.umask(0)
    try:
        _seed(Settings(data_dir=data))
        backup(Settings(data_dir=data), tmp_path / "backups" / "nested" / "bk")
        restore(tmp_path / "backups" / "nested" / "bk", Settings(data_dir=tmp_path / "new" / "tf"))
        lock = ServerLock(tmp_path / "locks" / "tf", f"sqlite:///{tmp_path}/dbs/x/tf.db")
        lock.acquire()
        lock.release()
    finally:
        os.umask(before)
    made = ["srv", "backups", "backups/nested", "new", "locks", "dbs", "dbs/x"]
    for name in made:
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o700, name


def test_a_backup_whose_copy_names_a_key_it_lacks_fails(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two rotations around the copy: its rows are sealed with a key installed after the
    keys were first read and retired before they were read again."""
    settings = Settings(data_dir=tmp_path / "tf", database_url=database_url)
    _seed(settings)
    copy = backup_module._copy_database

    def racing(url: str, out: Path) -> tuple[str, set[str]]:
        assert rotate_key(settings, None) == 0
        found = copy(url, out)
        assert rotate_key(settings, None) == 0
        return found

    monkeypatch.setattr(backup_module, "_copy_database", racing)
    out = tmp_path / "backup"
    with pytest.raises(BackupError, match="rotation ran during the backup"):
        backup(settings, out)
    assert not out.exists()


def _with_audit(settings: Settings, agents: list[str]) -> None:
    """Agents made through the app, then a signed checkpoint."""
    with TestClient(create_app(settings), base_url="http://127.0.0.1:3000") as client:
        token = (settings.data_dir / "admin.token").read_text().strip()
        auth = {"Authorization": f"Bearer {token}"}
        for name in agents:
            made = client.post("/api/v1/agents", json={"name": name}, headers=auth)
            assert made.status_code == 201, made.text
        assert client.post("/api/v1/audit/checkpoints", headers=auth).status_code < 300


def test_a_restore_that_rolls_the_audit_log_back_is_refused_unless_asked(
    tmp_path: Path,
) -> None:
    settings = Settings(data_dir=tmp_path / "tf")
    _with_audit(settings, ["before-backup"])
    out = tmp_path / "backup"
    backup(settings, out)
    _with_audit(settings, ["evidence-1", "evidence-2"])
    checkpoints = settings.data_dir / "audit-checkpoints.jsonl"
    lines = checkpoints.read_text().splitlines()
    newest = max(json.loads(line)["seq"] for line in lines)

    # a new data directory: restored, recorded, verified
    elsewhere = Settings(data_dir=tmp_path / "restored")
    assert restore(out, elsewhere)["discarded"] is None
    (event,) = _events(elsewhere, "audit.restored")
    assert json.loads(event["data"])["discarded_head"] is None
    verify_data(elsewhere)

    # the same data directory: its checkpoints cover events the backup lacks
    with pytest.raises(BackupError, match="roll the audit log back"):
        restore(out, settings, force=True)
    assert checkpoints.read_text().splitlines() == lines  # nothing switched
    assert len(_events(settings, "agent.registered")) == 3

    report = restore(out, settings, force=True, discard_newer_audit=True)
    assert report["discarded"]["checkpoint"]["seq"] == newest
    assert set(lines) <= set(checkpoints.read_text().splitlines())  # kept
    (event,) = _events(settings, "audit.restored")
    assert json.loads(event["data"])["discarded_head"]["seq"] == newest
    assert len(_events(settings, "agent.registered")) == 1
    with pytest.raises(BackupError, match="does not verify"):  # verify goes on saying so
        verify_data(settings)


def test_the_client_tools_get_the_password_from_the_environment() -> None:
    url = "postgresql://tf:p%40ss@db.internal:5433/tameflare?sslmode=require&password=other"
    shown, env = pgbackup._libpq(url)
    assert shown == "postgresql://tf@db.internal:5433/tameflare?sslmode=require"
    assert env["PGPASSWORD"] == "p@ss"


@pytest.fixture
def pg_pair(two_pg_databases: tuple[str, str]) -> tuple[str, str]:
    """Two fresh PostgreSQL databases, named with a password (the test server trusts)."""
    return (
        two_pg_databases[0].replace("@", ":Pw-on-no-cmdline@", 1),
        two_pg_databases[1].replace("@", ":Pw-on-no-cmdline@", 1),
    )


def _owners(url: str) -> list[str]:
    db = Database(url)
    try:
        return db.read_sync(lambda c: [str(o) for (o,) in c.execute(select(credentials.c.owner))])
    finally:
        db.close()


@pytest.mark.postgres
def test_a_refused_postgresql_restore_keeps_the_databases_data(
    tmp_path: Path, pg_pair: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    source_url, target_url = pg_pair
    source = Settings(data_dir=tmp_path / "src", database_url=source_url)
    _seed(source, owner="conn_backup_1")
    target = Settings(data_dir=tmp_path / "prod", database_url=target_url)
    _seed(target, owner="conn_prod_1")
    run = pgbackup._run
    commands: list[tuple[list[str], dict[str, str]]] = []

    def recorded(cmd: list[str], env: dict[str, str]) -> Any:
        commands.append((cmd, env))
        return run(cmd, env)

    monkeypatch.setattr(pgbackup, "_run", recorded)
    out = tmp_path / "backup"
    backup(source, out)
    wrong_key = Settings(
        data_dir=target.data_dir, database_url=target_url, encryption_key=generate_key_text()
    )
    with pytest.raises(BackupError, match="need key id"):  # verification fails
        restore(out, wrong_key, force=True)
    assert _owners(target_url) == ["conn_prod_1"]  # nothing switched, nothing lost
    db = Database(target_url)  # an interrupted restore's schema is named, not overwritten
    db.write_sync(lambda c: c.execute(text(f"CREATE SCHEMA {ASIDE}")))
    db.close()
    with pytest.raises(BackupError, match="interrupted"):
        restore(out, target, force=True)
    db = Database(target_url)
    db.write_sync(lambda c: c.execute(text(f"DROP SCHEMA {ASIDE}")))
    db.close()
    assert restore(out, target, force=True)["credentials"] == 1
    assert _owners(target_url) == ["conn_backup_1"]
    assert [Path(cmd[0]).name for cmd, _ in commands] == ["pg_dump", "pg_restore", "pg_restore"]
    for cmd, env in commands:
        assert not any("Pw-on-no-cmdline" in arg for arg in cmd), cmd
        assert env["PGPASSWORD"] == "Pw-on-no-cmdline"
