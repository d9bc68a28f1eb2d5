"""The store on both engines: migrations, the group-commit writer, the audit chain, vault."""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, delete, func, insert, select, update

from agentfirewall.errors import VaultError
from agentfirewall_server.audit import append_event, verify_chain
from agentfirewall_server.main import main
from agentfirewall_server.settings import Settings
from agentfirewall_server.store import db as db_module
from agentfirewall_server.store.db import Database
from agentfirewall_server.store.schema import audit_events, credentials, settings_table
from agentfirewall_server.vault import Vault, generate_key_text


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    database.migrate()
    database.start()
    yield database
    database.close()


def _put(key: str) -> Callable[[Connection], str]:
    def job(conn: Connection) -> str:
        conn.execute(insert(settings_table).values(key=key, value="1"))
        return key

    return job


def test_migrations_are_idempotent(db: Database) -> None:
    db.migrate()
    assert (
        db.read_sync(lambda c: c.execute(select(func.count()).select_from(audit_events)).scalar())
        == 0
    )


def _event(conn: Connection, *, now: float, data: dict[str, Any] | None = None) -> Any:
    return append_event(conn, "test.event", actor="t", now=now, data=data)


def test_a_failing_job_rolls_back_alone_inside_a_batch(db: Database) -> None:
    futures = [db.submit(_put(f"k{i}")) for i in range(50)]
    futures.append(db.submit(_put("k3")))  # duplicate key
    futures += [db.submit(_put(f"m{i}")) for i in range(50)]
    done, _ = concurrent.futures.wait(futures, timeout=60)
    assert len(done) == 101
    failed = [f for f in futures if f.exception() is not None]
    assert len(failed) == 1
    count = db.read_sync(
        lambda c: c.execute(select(func.count()).select_from(settings_table)).scalar()
    )
    assert count == 100


def test_audit_chain_detects_edits_deletions_and_insertions(db: Database) -> None:
    for i in range(5):
        db.write_sync(partial(_event, now=1000.0 + i, data={"i": i}))
    assert db.read_sync(verify_chain).ok
    db.write_sync(
        lambda c: c.execute(
            update(audit_events).where(audit_events.c.id == 3).values(data='{"i": 99}')
        )
    )
    bad = db.read_sync(verify_chain)
    assert (bad.ok, bad.first_bad_event) == (False, 3)
    assert "edited" in (bad.problem or "")


def test_audit_chain_detects_a_deleted_row(db: Database) -> None:
    for i in range(4):
        db.write_sync(partial(_event, now=1.0 + i))
    db.write_sync(lambda c: c.execute(delete(audit_events).where(audit_events.c.id == 2)))
    bad = db.read_sync(verify_chain)
    assert bad.ok is False
    assert bad.first_bad_event == 3
    assert "missing" in (bad.problem or "")


def test_vault_round_trip_binds_the_owner_and_refuses_a_wrong_key() -> None:
    vault = Vault.from_text(generate_key_text())
    stored = vault.encrypt("ghp_secret", owner="conn_github_1")
    assert "ghp_secret" not in stored
    assert vault.decrypt(stored, owner="conn_github_1") == "ghp_secret"
    with pytest.raises(VaultError, match="another connector"):
        vault.decrypt(stored, owner="conn_github_2")
    other = Vault.from_text(generate_key_text())
    with pytest.raises(VaultError, match="another key"):
        other.decrypt(stored, owner="conn_github_1")
    with pytest.raises(VaultError, match="32 bytes"):
        Vault.from_text("too short")


def test_rotate_key_reencrypts_everything(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "tf"
    old = generate_key_text()
    (data).mkdir()
    (data / "encryption.key").write_text(old)
    settings = Settings(data_dir=data, database_url=database_url)
    database = Database(settings.resolved_database_url)
    database.migrate()
    vault = Vault.from_text(old)
    database.write_sync(
        lambda c: c.execute(
            insert(credentials).values(
                owner="conn_x_1",
                ciphertext=vault.encrypt("s3cret", owner="conn_x_1"),
                created_at=1.0,
            )
        )
    )
    database.close()
    monkeypatch.delenv("SETTINGS_ENCRYPTION_KEY", raising=False)
    new = generate_key_text()
    argv = ["rotate-key", "--data-dir", str(data), "--new-key", new]
    if database_url:
        argv += ["--database-url", database_url]
    assert main(argv) == 0
    assert (data / "encryption.key").read_text() == new
    database = Database(settings.resolved_database_url)
    stored = database.read_sync(lambda c: c.execute(select(credentials.c.ciphertext)).scalar())
    database.close()
    assert Vault.from_text(new).decrypt(str(stored), owner="conn_x_1") == "s3cret"
    with pytest.raises(VaultError):
        vault.decrypt(str(stored), owner="conn_x_1")


def test_prune_forgets_only_long_expired_nonces_and_sessions(db: Database) -> None:
    from agentfirewall_server.approvals import prune
    from agentfirewall_server.store.schema import used_nonces

    db.write_sync(
        lambda c: c.execute(
            insert(used_nonces),
            [
                {"jti": "old", "action_request_id": "a", "used_at": 1.0, "expires_at": 100.0},
                {"jti": "new", "action_request_id": "b", "used_at": 1.0, "expires_at": 9_000.0},
            ],
        )
    )
    db.write_sync(lambda c: prune(c, 5_000.0))
    left = db.read_sync(lambda c: [r.jti for r in c.execute(select(used_nonces))])
    assert left == ["new"]


# -- WAL checkpoints (SQLite): run by the writer between batches, not inside a commit ---------


def _wal_resets(path: Path) -> int:
    """The WAL header's checkpoint sequence: SQLite adds one each time it restarts the log
    after a complete checkpoint."""
    with open(f"{path}-wal", "rb") as wal:
        return int.from_bytes(wal.read(16)[12:16], "big")


@pytest.fixture
def sqlite_file(tmp_path: Path) -> Path:
    return tmp_path / "wal.db"


@pytest.fixture
def sqlite_db(sqlite_file: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{sqlite_file}")
    database.migrate()
    database.start()
    yield database
    database.close()


def test_the_writer_checkpoints_the_wal_between_batches(
    sqlite_db: Database, sqlite_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db_module, "CHECKPOINT_EVERY", 0.0)  # after every batch
    sqlite_db.write_sync(_put("first"))
    before = _wal_resets(sqlite_file)
    for i in range(5):  # each write finds the WAL copied and starts it afresh
        sqlite_db.write_sync(_put(f"k{i}"))
    assert _wal_resets(sqlite_file) >= before + 4
    keys = sqlite_db.read_sync(lambda c: c.execute(select(settings_table.c.key)).scalars())
    assert {"first", *(f"k{i}" for i in range(5))} <= set(keys)


def test_between_scheduled_checkpoints_sqlite_does_not_checkpoint_on_its_own(
    sqlite_db: Database, sqlite_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db_module, "CHECKPOINT_EVERY", 3600.0)
    sqlite_db.write_sync(_put("first"))
    before = _wal_resets(sqlite_file)
    for i in range(20):
        sqlite_db.write_sync(_put(f"k{i}"))
    assert _wal_resets(sqlite_file) == before  # no commit carried a checkpoint
    with sqlite_db.writer_engine.connect() as conn:  # SQLite's own, kept as a far bound
        assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 16_000


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)  # (SQLite: one owner)
def test_replicas_migrating_one_empty_database_at_once_all_start(database_url: str) -> None:
    """Replicas started together (compose, a Kubernetes rollout) migrate one empty
    PostgreSQL database at the same moment: they take turns, none stops on a duplicate key."""
    databases = [Database(database_url) for _ in range(4)]
    barrier = threading.Barrier(len(databases))
    failed: list[BaseException] = []

    def start(db: Database) -> None:
        barrier.wait()
        try:
            db.migrate()
        except BaseException as exc:  # the test says which
            failed.append(exc)

    # daemon threads, joined with a bound: a migration stuck on another's lock fails the
    # test (the fixture's DROP DATABASE ... FORCE then ends its connection), never hangs it
    threads = [threading.Thread(target=start, args=(db,), daemon=True) for db in databases]
    try:
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 60
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        assert not any(t.is_alive() for t in threads), "a migration waited for ever"
        assert failed == []
        count = databases[0].read_sync(
            lambda c: c.execute(select(func.count()).select_from(audit_events)).scalar()
        )
        assert count == 0
    finally:
        for db in databases:
            db.close()
