"""Who holds the data: a running server, or an offline tool alone.

A server holds a ``flock`` on ``<data dir>/server.lock`` for its lifetime. On SQLite it
holds it exclusively, with a second one on ``<database file>.lock`` (wherever the file
lives): one server per data directory and per SQLite file, since a second one would seal
with a key the first one's rotation retires. On PostgreSQL it holds it shared (replicas
may share one) and a shared session advisory lock on a connection of its own. The offline
tools (``rotate-key``, ``tf restore``) take them all exclusively and without waiting, so
they refuse while any server runs on the same data directory or database. An exclusive
holder writes its pid into the file, for the refusal to name. The kernel and PostgreSQL
release the locks when the holder dies, even by SIGKILL.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from agentfirewall.errors import AgentFirewallError
from agentfirewall_server.store.db import (
    make_private_dir,
    normalize_url,
    sqlite_path,
    unreachable,
)

__all__ = ["LOCK_FILE", "DataBusy", "ServerLock", "exclusive"]

LOCK_FILE = "server.lock"
_PG_KEY = 0x7AF2


class DataBusy(AgentFirewallError):
    """A server is using the data directory or the database."""


def _lock_files(data_dir: Path, database_url: str) -> list[tuple[Path, str]]:
    """The files whose lock holds the data, each with what it stands for (in messages)."""
    found = [(data_dir / LOCK_FILE, f"data directory `{data_dir}`")]
    db = sqlite_path(database_url)
    if db is not None:
        found.append((db.with_name(db.name + ".lock"), f"SQLite database `{db}`"))
    return found


def _lock(path: Path, *, alone: bool) -> int | None:
    """`path` opened and locked (created 0600 in 0700 directories), or None when another
    process holds it (exclusively; or at all, for `alone`)."""
    make_private_dir(path.parent)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, (fcntl.LOCK_EX if alone else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    if alone:  # who holds it, for the refusal of the next one
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _unlock(fd: int, *, alone: bool) -> None:
    if alone:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
    os.close(fd)


def _holder(path: Path) -> str:
    """`` (pid N)``: the process holding `path` exclusively, when it wrote its pid."""
    try:
        pid = path.read_text(encoding="utf-8").strip()
    except (OSError, ValueError):
        return ""
    return f" (pid {pid})" if pid.isdigit() else ""


class ServerLock:
    """The locks a running server holds (`acquire` at start, `release` at stop; `hold`
    takes the files earlier, before the start binds)."""

    def __init__(self, data_dir: Path, database_url: str) -> None:
        self._data_dir = data_dir
        self._url = normalize_url(database_url)
        self._alone = self._url.startswith("sqlite")
        self._fds: list[int] = []
        self._engine: Any = None
        self._conn: Any = None

    def hold(self) -> None:
        """Take the files now, or `DataBusy` naming the other holder (nothing held): a
        start holds them from before it binds or touches the data, so that of two started
        at once the loser says so in one line; it hands the lock to its app, whose
        `acquire` keeps them and `release` at stop lets them go."""
        if not self._fds:
            self._take_files()

    def acquire(self) -> None:
        self.hold()
        if not self._alone:
            self._engine = create_engine(self._url, poolclass=_null_pool())
            self._conn = self._engine.connect()
            self._conn.execute(text("SELECT pg_advisory_lock_shared(:k)"), {"k": _PG_KEY})
            self._conn.commit()

    def _take_files(self) -> None:
        for path, what in _lock_files(self._data_dir, self._url):
            fd = _lock(path, alone=self._alone)
            if fd is None:
                self.release()
                raise DataBusy(self._refusal(what, _holder(path)))
            self._fds.append(fd)

    def _refusal(self, what: str, holder: str) -> str:
        if self._alone:
            return (
                f"another TameFlare server (or rotate-key, tf restore) runs on {what}{holder}: "
                "stop it first; one SQLite database serves one server (several need "
                "PostgreSQL, each with its own data directory)"
            )
        return (
            f"{what} is held by an offline tool (rotate-key, tf restore) or a server on "
            f"SQLite{holder}: wait for it to finish, or stop it"
        )

    def release(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._engine.dispose()
            self._conn = None
        while self._fds:
            _unlock(self._fds.pop(), alone=self._alone)


def _null_pool() -> Any:
    from sqlalchemy.pool import NullPool

    return NullPool


@contextlib.contextmanager
def exclusive(data_dir: Path, database_url: str, *, instead: str = "") -> Iterator[None]:
    """Hold the data directory and the database alone, or raise `DataBusy` at once
    (`StoreError` when the database cannot be reached). `instead`: what to do rather than
    stop the server, added to the refusal (rotation: `tf vault rotate` runs online)."""
    also = f" (or {instead})" if instead else ""
    held: list[int] = []
    try:
        for path, what in _lock_files(data_dir, database_url):
            fd = _lock(path, alone=True)
            if fd is None:
                raise DataBusy(f"a server is running on {what}{_holder(path)}: stop it first{also}")
            held.append(fd)
        url = normalize_url(database_url)
        if url.startswith("sqlite"):
            yield
            return
        try:
            engine = create_engine(url, poolclass=_null_pool())
        except (SQLAlchemyError, ImportError) as exc:
            raise unreachable(database_url, exc) from None
        try:
            try:
                conn = engine.connect()
            except DBAPIError as exc:
                raise unreachable(database_url, exc) from None
            with conn:
                got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": _PG_KEY})
                if not got.scalar():
                    raise DataBusy(
                        f"a server is running on this PostgreSQL database: stop it first{also}"
                    )
                conn.commit()
                try:
                    yield
                finally:
                    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _PG_KEY})
                    conn.commit()
        finally:
            engine.dispose()
    finally:
        for fd in held:
            _unlock(fd, alone=True)
