"""One server per SQLite database and data directory; offline tools refuse while one runs.

A second server on the same SQLite data directory would seal with a key the first one's
online rotation retires (a credential lost for good); a restore or an offline rotation
naming a running server's SQLite file (`--database-url`, from another data directory)
would replace or re-seal it under the server. The locks follow the resolved database
file, not only `<data dir>/agentfirewall.db`. PostgreSQL replicas may share a data
directory (each holds the lock shared).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agentfirewall_server.backup import BackupError, restore
from agentfirewall_server.datalock import DataBusy, ServerLock, exclusive
from agentfirewall_server.main import main
from agentfirewall_server.settings import Settings

_KEY_ENV = ("SETTINGS_ENCRYPTION_KEY", "AGENTFIREWALL_ENCRYPTION_KEY", "AGENTFIREWALL_DATABASE_URL")


@pytest.fixture(autouse=True)
def _file_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _KEY_ENV:
        monkeypatch.delenv(name, raising=False)


def _held(data: Path, url: str) -> ServerLock:
    lock = ServerLock(data, url)
    lock.acquire()
    return lock


def test_a_second_server_on_one_sqlite_data_dir_is_refused_naming_the_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "tf"
    url = Settings(data_dir=data).resolved_database_url
    first = _held(data, url)
    try:
        with pytest.raises(DataBusy, match="another TameFlare server") as err:
            _held(data, url)
        assert "(pid " in str(err.value)
        # another data directory, the same SQLite file: refused too
        with pytest.raises(DataBusy, match="SQLite database"):
            _held(tmp_path / "other", url)
        # the server's start says so in one line, before it touches the data
        capsys.readouterr()
        assert main(["--data-dir", str(data), "--port", "0"]) == 1
        assert capsys.readouterr().err.startswith("error: another TameFlare server")
    finally:
        first.release()
    second = _held(data, url)  # free again once the first stops
    second.release()


def _backup_dir(root: Path) -> Path:
    """A manifest naming a SQLite database: enough to reach the lock."""
    root.mkdir()
    (root / "agentfirewall.db").write_bytes(b"")
    digest = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"  # empty
    files = {"agentfirewall.db": {"sha256": digest, "bytes": 0}}
    manifest = {"format": 1, "engine": "sqlite", "database": "agentfirewall.db", "files": files}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def test_restore_and_offline_rotation_refuse_a_running_servers_sqlite_file(
    tmp_path: Path,
) -> None:
    """The server runs on data dir A with its SQLite file elsewhere; the tools name another
    data directory but that file."""
    db = tmp_path / "dbs" / "prod.db"
    url = f"sqlite:///{db}"
    server = _held(tmp_path / "a", url)
    source = _backup_dir(tmp_path / "backup")
    other = Settings(data_dir=tmp_path / "b", database_url=url)
    try:
        with pytest.raises(DataBusy, match="stop it first"):
            restore(source, other, force=True)
        rotate = ["rotate-key", "--data-dir", str(other.data_dir), "--database-url", url]
        assert main(rotate) == 1
        with pytest.raises(DataBusy, match="SQLite database"):
            with exclusive(other.data_dir, url):
                pass
    finally:
        server.release()


def test_restore_without_force_refuses_a_sqlite_file_that_holds_data(tmp_path: Path) -> None:
    db = tmp_path / "dbs" / "prod.db"
    db.parent.mkdir()
    db.write_bytes(b"SQLite format 3\x00")
    source = _backup_dir(tmp_path / "backup")
    settings = Settings(data_dir=tmp_path / "new", database_url=f"sqlite:///{db}")
    with pytest.raises(BackupError, match="already holds data"):
        restore(source, settings)
    assert db.read_bytes() == b"SQLite format 3\x00"


def test_postgresql_replicas_may_share_a_data_directory(tmp_path: Path, database_url: str) -> None:
    if database_url.startswith("sqlite"):
        pytest.skip("replicas run on PostgreSQL")
    data = tmp_path / "tf"
    first = _held(data, database_url)
    second = _held(data, database_url)
    try:
        with pytest.raises(DataBusy, match="stop it first"):
            with exclusive(data, database_url):
                pass
    finally:
        second.release()
        first.release()
