"""`tf up --database-url` on a fresh project: a database that opens is used, one that does
not is one line before `.tf/` is made (tests/cli/test_bad_inputs.py).

The check made for the second broke the first: it opened the vault's keys in a `.tf/` that
did not exist yet (a traceback for every PostgreSQL URL), and a SQLite file inside `.tf/`
made `.tf/` hold no project.
"""

from __future__ import annotations

import pytest

from tests.cli.conftest import Project
from tests.server.conftest import fresh_pg_databases


@pytest.mark.postgres
def test_a_fresh_project_starts_on_a_postgresql_database(bare_project: Project) -> None:
    with fresh_pg_databases(1) as (url,):
        try:
            bare_project.up("--database-url", url)
            assert bare_project.tf("status").returncode == 0
        finally:
            assert bare_project.stop_up() == 0


@pytest.mark.parametrize("where", ["elsewhere.db", ".tf/custom.db"])
def test_a_fresh_project_starts_on_a_sqlite_file_it_names(
    bare_project: Project, where: str
) -> None:
    try:
        bare_project.up("--database-url", f"sqlite:///{bare_project.root / where}")
        assert bare_project.tf("status").returncode == 0
    finally:
        assert bare_project.stop_up() == 0
    assert (bare_project.root / where).is_file()
