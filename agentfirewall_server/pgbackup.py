"""PostgreSQL's part of a backup and restore: its client tools and the schema set aside.

`pg_dump` (:func:`dump_snapshot`) and `pg_restore` (:func:`restore_dump`) must be on PATH
(the client tools of the server's version). They get the database URL without its
password and the password as ``PGPASSWORD``: every local user reads a command line in
/proc, only the owner reads the environment. A restore sets the database's schema aside
as :data:`ASIDE` first (:func:`set_aside`) and drops it once the restored data verifies
(:func:`drop_aside`), or puts it back (:func:`put_back`). Every failure is a
:class:`BackupError`; `agentfirewall_server.backup`, the only user, re-exports it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, create_engine, make_url, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from agentfirewall.errors import AgentFirewallError
from agentfirewall_server.store.db import normalize_url, unreachable

__all__ = [
    "ASIDE",
    "BackupError",
    "drop_aside",
    "dump_snapshot",
    "put_back",
    "restore_dump",
    "set_aside",
]

T = TypeVar("T")

#: Where a restore keeps the database's schema until the restored one verifies.
ASIDE = "tameflare_before_restore"


class BackupError(AgentFirewallError):
    """A backup or restore that cannot be made or trusted."""


def _libpq(url: str) -> tuple[str, dict[str, str]]:
    """`url` for the PostgreSQL client tools, without its password, and their environment,
    giving it as ``PGPASSWORD`` (every local user reads a command line in /proc; only the
    owner reads the environment)."""
    given = make_url(normalize_url(url))
    password = given.password or given.query.get("password")
    query = {k: v for k, v in given.query.items() if k != "password"}
    bare = URL.create(
        "postgresql", given.username, None, given.host, given.port, given.database, query
    )
    env = dict(os.environ)
    if password:
        env["PGPASSWORD"] = str(password)
    return bare.render_as_string(hide_password=False), env


def _tool(name: str) -> str:
    """The PostgreSQL client tool `name` (pg_dump, pg_restore), which must be on PATH."""
    found = shutil.which(name)
    if found is None:
        raise BackupError(
            f"`{name}` is not on PATH: install the PostgreSQL client tools of your server's "
            "version (Debian: `apt-get install postgresql-client`)"
        )
    return found


def _run(cmd: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)


def dump_snapshot(url: str, target: Path, read: Callable[[Connection], T]) -> T:
    """`pg_dump --format=custom` into `target` (a file already made, private) of one
    snapshot, exported by a transaction that runs `read` first: what `read` sees (its
    answer is returned) is what the dump holds."""
    dump = _tool("pg_dump")
    libpq, env = _libpq(url)
    try:
        engine = create_engine(
            normalize_url(url), poolclass=NullPool, isolation_level="REPEATABLE READ"
        )
    except (SQLAlchemyError, ImportError) as exc:
        raise BackupError(str(unreachable(url, exc))) from None
    try:
        with engine.connect() as conn:
            snapshot = str(conn.execute(text("SELECT pg_export_snapshot()")).scalar_one())
            seen = read(conn)
            cmd = [dump, "--format=custom", "--no-owner", "--no-acl", "--snapshot", snapshot]
            done = _run([*cmd, "--file", str(target), libpq], env)
    except DBAPIError as exc:
        raise BackupError(str(unreachable(url, exc))) from None
    finally:
        engine.dispose()
    if done.returncode != 0:
        raise BackupError(f"pg_dump failed: {done.stderr.strip()[:500]}")
    os.chmod(target, 0o600)
    return seen


def restore_dump(dump: Path, url: str) -> None:
    """`pg_restore` of the file `dump` into the database at `url`."""
    libpq, env = _libpq(url)
    cmd = [_tool("pg_restore"), "--no-owner", "--no-acl", "--exit-on-error", "--dbname", libpq]
    done = _run([*cmd, str(dump)], env)
    if done.returncode != 0:
        raise BackupError(f"pg_restore failed: {done.stderr.strip()[:500]}")


def _execute(url: str, *statements: str) -> list[Any]:
    """Run `statements` in one transaction; the first column of each one's first row."""
    engine = create_engine(normalize_url(url), poolclass=NullPool)
    try:
        with engine.begin() as conn:
            found = []
            for sql in statements:
                result = conn.execute(text(sql))
                found.append(result.scalar() if result.returns_rows else None)
            return found
    except DBAPIError as exc:
        raise BackupError(str(unreachable(url, exc))) from None
    finally:
        engine.dispose()


def set_aside(url: str) -> None:
    """Rename the schema to `ASIDE` and start an empty one (one transaction)."""
    left = f"SELECT 1 FROM pg_namespace WHERE nspname = '{ASIDE}'"  # noqa: S608 (a constant)
    if _execute(url, left)[0]:
        raise BackupError(
            f"a restore into this database was interrupted: its earlier data is in schema "
            f"`{ASIDE}`. Get it back: `DROP SCHEMA public CASCADE; ALTER SCHEMA {ASIDE} "
            f"RENAME TO public`, or discard it: `DROP SCHEMA {ASIDE} CASCADE`; then restore"
        )
    _execute(url, f"ALTER SCHEMA public RENAME TO {ASIDE}", "CREATE SCHEMA public")


def put_back(url: str) -> None:
    """Drop the restored schema and rename `ASIDE` back (a restore that failed)."""
    _execute(url, "DROP SCHEMA IF EXISTS public CASCADE", f"ALTER SCHEMA {ASIDE} RENAME TO public")


def drop_aside(url: str) -> None:
    """Drop the schema set aside (a restore that verified)."""
    _execute(url, f"DROP SCHEMA {ASIDE} CASCADE")
