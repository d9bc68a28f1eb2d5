"""Who holds the data: a running server (shared) or an offline tool (exclusive).

A server holds a shared ``flock`` on ``<data dir>/server.lock`` for its lifetime and, on
PostgreSQL, a shared session advisory lock on a connection of its own. The offline tools
(``rotate-key``, ``tf restore``) take both exclusively and without waiting, so they refuse
while any server runs on the same data directory or database. The kernel and PostgreSQL
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
from agentfirewall_server.store.db import normalize_url, unreachable

__all__ = ["LOCK_FILE", "DataBusy", "ServerLock", "exclusive"]

LOCK_FILE = "server.lock"
_PG_KEY = 0x7AF2


class DataBusy(AgentFirewallError):
    """A server is using the data directory or the database."""


def _open(data_dir: Path) -> int:
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    return os.open(data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)


class ServerLock:
    """The shared locks a running server holds (`acquire` at start, `release` at stop)."""

    def __init__(self, data_dir: Path, database_url: str) -> None:
        self._data_dir = data_dir
        self._url = normalize_url(database_url)
        self._fd: int | None = None
        self._engine: Any = None
        self._conn: Any = None

    def acquire(self) -> None:
        fd = _open(self._data_dir)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise DataBusy(
                f"data directory `{self._data_dir}` is held by an offline tool "
                "(rotate-key or restore): wait for it to finish"
            ) from None
        self._fd = fd
        if not self._url.startswith("sqlite"):
            self._engine = create_engine(self._url, poolclass=_null_pool())
            self._conn = self._engine.connect()
            self._conn.execute(text("SELECT pg_advisory_lock_shared(:k)"), {"k": _PG_KEY})
            self._conn.commit()

    def release(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._engine.dispose()
            self._conn = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _null_pool() -> Any:
    from sqlalchemy.pool import NullPool

    return NullPool


@contextlib.contextmanager
def exclusive(data_dir: Path, database_url: str, *, instead: str = "") -> Iterator[None]:
    """Hold the data directory and the database alone, or raise `DataBusy` at once
    (`StoreError` when the database cannot be reached). `instead`: what to do rather than
    stop the server, added to the refusal (rotation: `tf vault rotate` runs online)."""
    also = f" (or {instead})" if instead else ""
    fd = _open(data_dir)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DataBusy(
                f"a server is running on data directory `{data_dir}`: stop it first{also}"
            ) from None
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
        os.close(fd)
