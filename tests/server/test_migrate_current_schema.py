"""A start on a database already at the newest revision skips Alembic (SQLite and
PostgreSQL); every other database is still migrated, or refused, by Alembic.

`Database.migrate` first asks `schema_current` (the stored revision against
`migrate.head_revision`, read from the scripts' text): loading Alembic and its scripts cost
every `tf up` about a third of a second (benchmarks/startup.py).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import text

from agentfirewall_server.store import migrate as migrate_module
from agentfirewall_server.store.db import Database, StoreError
from agentfirewall_server.store.migrate import alembic_config, head_revision, upgrade
from tests.server.conftest import ENGINES

ROOT = Path(__file__).resolve().parents[2]


def _stored(database_url: str) -> list[str]:
    db = Database(database_url)
    try:
        return list(
            db.read_sync(lambda c: c.execute(text("SELECT version_num FROM alembic_version")))
            .scalars()
            .all()
        )
    finally:
        db.close()


def test_the_head_read_from_the_scripts_is_alembics() -> None:
    assert head_revision() == ScriptDirectory.from_config(alembic_config()).get_current_head()


@pytest.mark.parametrize(
    ("script", "why"),
    [
        ('revision = "0002"\ndown_revision = ("0001", "0003")\n', "a merge"),
        ('revision = "0002"\ndown_revision = "0001"\n', "two heads"),
        ('revision = "0002"\ndown_revision = "0009"\n', "a revision no script has"),
        ('revision = make_id()\ndown_revision = "0001"\n', "a computed id"),
        ('revision = "0002"\n', "no down_revision"),
        ('revision = "0002"\nrevision = "0003"\ndown_revision = "0001"\n', "said twice"),
    ],
)
def test_scripts_that_do_not_say_their_head_plainly_leave_it_to_alembic(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, script: str, why: str
) -> None:
    versions = tmp_path / "versions"
    versions.mkdir()
    (versions / "0001_first.py").write_text('revision = "0001"\ndown_revision = None\n')
    (versions / "0003_third.py").write_text('revision = "0003"\ndown_revision = "0001"\n')
    (versions / "0002_odd.py").write_text(script)
    (versions / "_skipped.py").write_text('revision = "x"\ndown_revision = "0003"\n')
    monkeypatch.setattr(migrate_module, "_HERE", tmp_path)
    head_revision.cache_clear()
    try:
        assert head_revision() is None, why
        (versions / "0002_odd.py").unlink()
        head_revision.cache_clear()
        assert head_revision() == "0003"  # (`_skipped.py` skipped, as Alembic skips it)
    finally:
        head_revision.cache_clear()


@pytest.mark.parametrize("database_url", ENGINES, indirect=True)
def test_a_database_at_an_older_revision_is_still_migrated(database_url: str) -> None:
    db = Database(database_url)
    try:
        with db.writer_engine.connect() as conn:
            upgrade(conn, "0020")
            conn.commit()
        assert not db.schema_current()
        db.migrate()
        assert db.schema_current()
    finally:
        db.close()
    assert _stored(database_url) == [head_revision()]


@pytest.mark.parametrize("database_url", ENGINES, indirect=True)
def test_a_new_database_is_migrated(database_url: str) -> None:
    db = Database(database_url)
    try:
        assert not db.schema_current()
        db.migrate()
        assert db.schema_current()
    finally:
        db.close()


@pytest.mark.parametrize("database_url", ENGINES, indirect=True)
def test_a_revision_a_newer_version_wrote_is_still_refused(database_url: str) -> None:
    db = Database(database_url)
    try:
        db.migrate()
        db.submit(
            lambda c: c.execute(text("UPDATE alembic_version SET version_num = '9999_future'"))
        ).result(timeout=30)
        assert not db.schema_current()
        with pytest.raises(StoreError, match="a newer version wrote it"):
            db.migrate()
    finally:
        db.close()


@pytest.mark.parametrize("database_url", ENGINES, indirect=True)
def test_a_current_database_starts_without_loading_alembic(database_url: str) -> None:
    db = Database(database_url)
    try:
        db.migrate()
    finally:
        db.close()
    probe = (
        "import sys\n"
        "from agentfirewall_server.store.db import Database\n"
        f"db = Database({database_url!r})\n"
        "db.migrate()\n"
        "db.close()\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'alembic'))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
