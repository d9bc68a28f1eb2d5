"""The database: one writer thread with group commit, readers on a thread pool.

SQLite allows one writer at a time, and its busy handler sleeps in whatever thread
waits. So every write of this process goes through one dedicated thread and one
connection: jobs queue up, the thread runs as many as are waiting in one transaction
(each in its own SAVEPOINT, so one failing job rolls back alone), commits once, and
only then resolves the callers' futures. An acknowledged write is therefore committed.
PostgreSQL uses the same path; an advisory lock keeps the audit chain linear when
several server instances share one database.

A database that cannot be reached, or whose connections, readers or locks stay taken,
fails the call with a :class:`StoreError` within a bound, which the app answers 503:
connecting gives up after ``connect_timeout`` (``conninfo.CONNECTION_DEFAULTS``), waiting
for a pooled connection, a free reader or (PostgreSQL) a lock after :data:`WAIT_SECONDS`.
The writer thread outlives a database it cannot reach: the batch fails, the next one
connects again. (A statement under way when the database froze waits for it; the health
check says 503 meanwhile.)

The hot path (`record`) carries rows rather than code: the records an event loop hands
over in one iteration reach the writer together, and a batch of records is written with
one multi-row INSERT per table (on SQLite straight on the driver connection, without
SQLAlchemy), so the writer holds the GIL as little as possible. On SQLite the writer also
checkpoints the WAL between batches, after their callers are answered.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import itertools
import logging
import operator
import os
import queue
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import anyio.to_thread
from anyio import CapacityLimiter
from sqlalchemy import Connection, Engine, Table, create_engine, event, make_url, text
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    IntegrityError,
    InterfaceError,
    OperationalError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.pool import QueuePool

from agentfirewall.errors import AgentFirewallError
from agentfirewall_server.store.chain import link_events
from agentfirewall_server.store.schema import audit_events

log = logging.getLogger("agentfirewall_server")

__all__ = [
    "Database",
    "Record",
    "StoreError",
    "make_private_dir",
    "normalize_url",
    "shown_url",
    "sqlite_path",
    "unreachable",
]

T = TypeVar("T")
_MAX_BATCH = 512
# SQLite: the writer checkpoints the WAL itself, between batches, at most this often (s),
# instead of inside the commit that crosses 1,000 pages (which made that batch's requests
# wait for the copy: the p99 of sustained load, benchmarks/README.md "Round 7");
# `_WAL_SAFETY_PAGES` keeps SQLite's own checkpoint as a bound should batches never end
CHECKPOINT_EVERY = 0.1
_WAL_SAFETY_PAGES = 16_000
_MAX_VARIABLES = 30_000  # below SQLite's 32766 bound parameters per statement
_PG_LOCK = 0x7AF1
_SYNCHRONOUS = ("FULL", "EXTRA", "NORMAL")  # OFF would acknowledge writes not yet on disk
_HEAD = "SELECT id, hash FROM audit_events ORDER BY id DESC LIMIT 1"
#: The longest the store waits for the database (s) beyond connecting: for a pooled
#: connection, a free reader, and on PostgreSQL a lock (another replica's write batch, a
#: table a migration alters); as long as connecting may take (``connect_timeout``). A
#: URL's `options` win over the lock's (``?options=-c%20lock_timeout%3D30000``).
WAIT_SECONDS = 10.0
# benchmarks/server_trace.py sets this to see each record batch: a tuple
# ("batch", started, commit started, ended, records) per batch and ("checkpoint", started,
# ended) per WAL checkpoint (perf_counter times)
TRACE: Callable[[tuple[Any, ...]], None] | None = None


#: The PostgreSQL advisory lock migrations hold (one transaction-wide key, any constant).
_MIGRATE_LOCK = 0x7466_6D69_6772  # "tfmigr"


class StoreError(AgentFirewallError):
    """The database failed (unreachable, closed, or a statement failed)."""


def normalize_url(url: str) -> str:
    """Use psycopg 3 for PostgreSQL URLs that name no driver."""
    for plain in ("postgres://", "postgresql://"):
        if url.startswith(plain):
            return "postgresql+psycopg://" + url[len(plain) :]
    return url


def sqlite_path(url: str) -> Path | None:
    """The file a SQLite URL names, as SQLAlchemy reads it (``%XX`` decoded, the query
    string apart); None for PostgreSQL and an in-memory database."""
    if not url.startswith("sqlite"):
        return None
    try:
        database = make_url(url).database
    except ArgumentError:
        return None
    return Path(database) if database and database != ":memory:" else None


def _in_memory(url: str) -> bool:
    try:
        database = make_url(url).database
    except ArgumentError:
        return False  # (refused as a URL where it is opened)
    return database in (None, "", ":memory:")


def make_private_dir(path: Path) -> None:
    """Create `path` and each missing parent with mode 0700, whatever the umask (a
    directory that exists keeps its mode)."""
    path = path.absolute()
    missing = []
    for parent in [path, *path.parents]:
        if parent.exists():
            break
        missing.append(parent)
    for parent in reversed(missing):
        with contextlib.suppress(FileExistsError):
            parent.mkdir(mode=0o700)


#: A URL's scheme and user, then its password: everything up to the authority's last `@`
#: (a password may hold `/`, `:` or an unencoded `@`).
_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://[^/@:?#]*:)(.*)@", re.DOTALL)


def _password_of(url: str) -> str:
    found = _USERINFO.match(url.partition("?")[0])
    return found[2] if found else ""


def shown_url(url: str) -> str:
    """`url` with its password masked, for messages and logs."""
    head, mark, query = url.partition("?")
    found = _USERINFO.match(head)
    if found:
        head = found[1] + "***@" + head[found.end() :]
    return head + mark + re.sub(r"(?i)(password=)[^&]*", r"\1***", query)


def _without_password(text: str, url: str) -> str:
    """`text` (a driver's message) with the URL's password, and each piece of it a parser
    may have taken for a host or a path (split at `@`, `/`, `:`), masked."""
    password = _password_of(url)
    pieces = {password, *re.split(r"[@/:]", password)} if password else set()
    for piece in sorted(pieces, key=len, reverse=True):
        if len(piece) >= 3:
            text = text.replace(piece, "***")
    return text


def _reason(url: str, exc: BaseException) -> str:
    """What the driver said of `exc`, in one line, without the URL's password."""
    cause = getattr(exc, "orig", None) or exc
    if isinstance(exc, ImportError):
        cause = f"no driver for it ({exc}): TameFlare runs on sqlite:/// and postgresql://"
    reason = "; ".join(line.strip() for line in str(cause).splitlines() if line.strip())
    return _without_password(reason, url)


def unreachable(url: str, exc: BaseException) -> StoreError:
    """The error of a database that cannot be opened, with what to check next.

    `exc`: what SQLAlchemy or the driver raised (a refused connection, a database that does
    not exist, a URL it cannot parse, a driver that is not installed).
    """
    reason = _reason(url, exc)
    hint = " (the database must exist: `createdb NAME`)" if url.startswith("postgres") else ""
    return StoreError(
        f"database `{shown_url(url)}` cannot be opened: {reason}: check --database-url / "
        f"AGENTFIREWALL_DATABASE_URL{hint}"
    )


@dataclass(slots=True)
class _Job:
    fn: Callable[[Connection], Any]
    future: concurrent.futures.Future[Any] = field(default_factory=concurrent.futures.Future)


@dataclass(slots=True)
class Record:
    """A write with no logic: rows to insert and audit events to append (the hot path).

    Consecutive records in one batch are written with one multi-row INSERT per table.
    """

    inserts: list[tuple[Table, dict[str, Any]]]
    audit: list[dict[str, Any]]
    waiter: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop
    then: Callable[[], Any] | None = None


class Database:
    """Engines for reads and the single writer; `write`/`read` run callables on them."""

    def __init__(self, url: str, *, synchronous: str = "FULL", readers: int = 8) -> None:
        self.url = normalize_url(url)
        self.is_sqlite = self.url.startswith("sqlite")
        if self.is_sqlite and _in_memory(self.url):
            raise StoreError(
                f"database `{shown_url(url)}` names no file: an in-memory SQLite database is "
                "lost when the server stops (and each connection would get its own): give a "
                "file, e.g. sqlite:///tameflare.db"
            )
        self._synchronous = synchronous.upper()
        if self._synchronous not in _SYNCHRONOUS:
            raise StoreError(
                f"invalid SQLite synchronous mode `{synchronous}`: use FULL (default, "
                "survives power loss), EXTRA or NORMAL (survives a crash of the process)"
            )
        self.writer_engine = self._engine(pool_size=1, writer=True)
        self.reader_engine = self._engine(pool_size=readers, writer=False)
        self._queue: queue.SimpleQueue[_Job | list[Record] | None] = queue.SimpleQueue()
        self._pending: dict[asyncio.AbstractEventLoop, list[Record]] = {}  # per loop tick
        self._thread: threading.Thread | None = None
        # a reader is waited for at most WAIT_SECONDS (each may be stuck on a database that
        # stopped answering); anyio's thread limiter then never waits
        self._readers = anyio.Semaphore(readers)
        self._limiter = CapacityLimiter(readers)
        self._closed = False

    def _engine(self, *, pool_size: int, writer: bool) -> Engine:
        if not self.is_sqlite:
            return create_engine(
                self.url,
                pool_size=pool_size,
                pool_pre_ping=True,
                pool_timeout=WAIT_SECONDS,
                connect_args=_pg_connect_args(self.url, writer=writer),
            )
        path = sqlite_path(self.url)
        if path is not None:
            make_private_dir(path.parent)
            os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))  # never world-readable
        engine = create_engine(
            self.url,
            poolclass=QueuePool,
            pool_size=pool_size,
            connect_args={"check_same_thread": False, "timeout": 30},
        )
        sync = self._synchronous

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (savepoints work)
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA synchronous={sync}")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            if writer:
                cur.execute(f"PRAGMA wal_autocheckpoint={_WAL_SAFETY_PAGES}")
            cur.close()

        if writer:

            @event.listens_for(engine, "begin")
            def _on_begin(conn: Connection) -> None:
                conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine

    # lifecycle -------------------------------------------------------------------------

    def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision; `StoreError` for a schema at a
        revision this version does not know (a newer TameFlare wrote it)."""
        if self.schema_current():  # the usual start: nothing to run, Alembic not loaded
            return
        from alembic.util.exc import CommandError

        try:
            self._migrate()
        except CommandError as exc:
            raise StoreError(
                f"the database's schema is not one this version of TameFlare knows ({exc}): "
                "a newer version wrote it; run that version (or a newer one), or use a "
                "backup this version made"
            ) from None

    def schema_current(self) -> bool:
        """The stored schema is at the newest revision this version ships
        (`migrate.head_revision`), read without Alembic; False when it is not, when the
        database has no schema yet or when the scripts do not say their head plainly. A
        database that cannot be reached raises, as a migration would."""
        from agentfirewall_server.store.migrate import head_revision

        head = head_revision()
        if head is None:
            return False
        exists = (  # asked first: a failed statement would abort a PostgreSQL transaction
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'alembic_version'"
            if self.is_sqlite
            else "SELECT count(*) FROM (SELECT to_regclass('alembic_version') AS t) AS r "
            "WHERE t IS NOT NULL"
        )
        with self.reader_engine.connect() as conn:
            if not conn.execute(text(exists)).scalar():
                return False
            stored = conn.execute(text("SELECT version_num FROM alembic_version")).scalars()
            return list(stored) == [head]

    def _migrate(self) -> None:
        from agentfirewall_server.store.migrate import upgrade

        with self.writer_engine.connect() as conn:
            if not self.is_sqlite:
                # replicas started together take turns: the first migrates, the next finds
                # the schema done (both migrating one empty database: a duplicate key); a
                # migration takes as long as it takes, and so does the wait for it
                conn.execute(text("SET LOCAL lock_timeout = 0"))
                conn.execute(text("SET LOCAL statement_timeout = 0"))
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATE_LOCK})
                upgrade(conn)
                conn.commit()
                return
            # A migration that rebuilds a table (SQLite's batch mode) drops the old one, which
            # foreign keys refuse; the pragma is a no-op inside a transaction, so it is turned
            # off before, the references checked before the commit, and turned on again.
            raw = conn.connection.driver_connection
            assert raw is not None
            raw.execute("PRAGMA foreign_keys=OFF")
            try:
                upgrade(conn)
                broken = conn.exec_driver_sql("PRAGMA foreign_key_check").all()
                if broken:
                    conn.rollback()
                    raise StoreError(f"a migration broke {len(broken)} foreign key references")
                conn.commit()
            finally:
                raw.execute("PRAGMA foreign_keys=ON")

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="af-writer", daemon=True)
            self._thread.start()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=30)
        self.writer_engine.dispose()
        self.reader_engine.dispose()

    # writes ----------------------------------------------------------------------------

    def submit(self, fn: Callable[[Connection], T]) -> concurrent.futures.Future[T]:
        if self._closed:
            raise StoreError("the database is closed")
        self.start()
        job = _Job(fn)
        self._queue.put(job)
        return job.future

    async def record(
        self,
        inserts: list[tuple[Table, dict[str, Any]]],
        audit: list[dict[str, Any]],
        *,
        then: Callable[[], T] | None = None,
    ) -> T | None:
        """Insert rows and append audit events; returns once committed.

        `then` runs on the event loop right after the commit, one committed batch's
        callbacks back to back (CPU caches stay warm: ES256 signing costs half as much);
        its result is returned.
        """
        if self._closed:
            raise StoreError("the database is closed")
        self.start()
        loop = asyncio.get_running_loop()
        job = Record(inserts, audit, loop.create_future(), loop, then)
        pending = self._pending.get(loop)
        if pending is None:  # one hand-over (and writer wake-up) per loop iteration
            pending = self._pending[loop] = []
            loop.call_soon(self._hand_over, loop)
        pending.append(job)
        result: T | None = await job.waiter
        return result

    def _hand_over(self, loop: asyncio.AbstractEventLoop) -> None:
        records = self._pending.pop(loop, None)
        if not records:
            return
        if self._closed:
            _wake([(r, False, StoreError("the database is closed")) for r in records])
            return
        self._queue.put(records)

    async def write(self, fn: Callable[[Connection], T]) -> T:
        """Run `fn` in the writer's transaction; returns once it is committed."""
        return await asyncio.wrap_future(self.submit(fn))

    def write_sync(self, fn: Callable[[Connection], T]) -> T:
        return self.submit(fn).result()

    def _run(self) -> None:
        conn: Connection | None = None
        checkpointed = time.perf_counter()
        try:
            while True:
                first = self._queue.get()
                if first is None:
                    return
                batch, stop = self._drain(first)
                if conn is None:
                    conn = self._connect(batch)
                if conn is not None:
                    self._run_batch(conn, batch)
                if stop:
                    return
                if (
                    self.is_sqlite
                    and conn is not None
                    and time.perf_counter() - checkpointed >= CHECKPOINT_EVERY
                ):
                    _checkpoint(conn)  # the batch's callers are already woken
                    checkpointed = time.perf_counter()
        finally:
            if conn is not None:
                conn.close()

    def _connect(self, batch: list[_Job | Record]) -> Connection | None:
        """The writer's connection; None when the database cannot be reached: `batch` fails
        with the reason, the next batch tries again."""
        try:
            return self.writer_engine.connect()
        except Exception as exc:
            self._deliver(batch, [(False, exc)] * len(batch))
            return None

    def _failure(self, exc: BaseException) -> BaseException:
        """`exc` as the caller gets it: a StoreError when the database failed to answer
        (unreachable, cut off, a connection or a lock not had in time), naming why without
        its password; a statement's own error (a duplicate key, a bug) as it is."""
        if isinstance(exc, StoreError):
            return exc
        dbapi = self.writer_engine.dialect.loaded_dbapi
        cut = isinstance(exc, DBAPIError) and exc.connection_invalidated
        failed = (OperationalError, InterfaceError, PoolTimeout, dbapi.OperationalError,
                  dbapi.InterfaceError)  # fmt: skip
        if not cut and not isinstance(exc, failed):
            return exc
        return StoreError(f"database `{shown_url(self.url)}` unavailable: {_reason(self.url, exc)}")

    def _drain(self, first: _Job | list[Record]) -> tuple[list[_Job | Record], bool]:
        batch: list[_Job | Record] = []
        nxt: _Job | list[Record] | None = first
        while nxt is not None:
            if isinstance(nxt, list):
                batch.extend(nxt)
            else:
                batch.append(nxt)
            if len(batch) >= _MAX_BATCH:
                break
            try:
                nxt = self._queue.get_nowait()
            except queue.Empty:
                return batch, False
        return batch, nxt is None

    def _run_batch(self, conn: Connection, batch: list[_Job | Record]) -> None:
        if self.is_sqlite and all(isinstance(item, Record) for item in batch):
            self._run_records(conn, batch)  # type: ignore[arg-type]
            return
        outcomes: list[tuple[bool, Any]] = []
        try:
            with conn.begin():
                if not self.is_sqlite:
                    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK})
                if len(batch) == 1 and isinstance(batch[0], _Job):
                    outcomes.append((True, batch[0].fn(conn)))
                elif all(isinstance(item, Record) for item in batch):
                    _bulk(conn, batch)  # type: ignore[arg-type]
                    outcomes.extend([(True, None)] * len(batch))
                else:
                    outcomes.extend(_run_grouped(conn, batch))
        except BaseException as exc:  # the transaction (or the only job) failed
            if conn.invalidated:
                conn.rollback()
            records = len(batch) > 1 and all(isinstance(item, Record) for item in batch)
            if records and self._failure(exc) is exc:  # not the database: a bad record
                for item in batch:  # find it: each alone, in its own transaction
                    self._run_batch(conn, [item])
                return
            self._deliver(batch, [(False, exc)] * len(batch))
            return
        self._deliver(batch, outcomes)

    def _run_records(self, conn: Connection, batch: list[Record]) -> None:
        """SQLite, records only: one transaction on the driver connection, no SQLAlchemy.

        Less Python in this thread leaves more of the GIL to the event loop. The
        SQLAlchemy connection is idle meanwhile (no transaction of its own is open).
        """
        driver = conn.connection.driver_connection
        cursor = driver.cursor()  # type: ignore[union-attr]
        started = time.perf_counter()
        try:
            cursor.execute("BEGIN IMMEDIATE")
            try:
                head = cursor.execute(_HEAD).fetchone()
                _insert(cursor, "?", _rows_by_table(batch, head))
                committing = time.perf_counter()
                cursor.execute("COMMIT")
                if TRACE is not None:
                    TRACE(("batch", started, committing, time.perf_counter(), len(batch)))
            except BaseException:
                if driver.in_transaction:  # type: ignore[union-attr]
                    cursor.execute("ROLLBACK")
                raise
        except BaseException as exc:
            failure = _wrapped(conn, exc)
            if len(batch) > 1 and self._failure(failure) is failure:  # not the database:
                for item in batch:  # find the bad record: each alone, in its own transaction
                    self._run_records(conn, [item])
                return
            self._deliver(batch, [(False, failure)] * len(batch))  # type: ignore[arg-type]
            return
        finally:
            cursor.close()
        _deliver_committed(batch)

    def _deliver(self, batch: list[_Job | Record], outcomes: list[tuple[bool, Any]]) -> None:
        waking: dict[asyncio.AbstractEventLoop, list[tuple[Record, bool, Any]]] = {}
        for job, (ok, found) in zip(batch, outcomes, strict=True):
            value = found if ok else self._failure(found)  # a job's own, in its savepoint too
            if isinstance(job, Record):  # one wake-up per event loop for the whole batch
                waking.setdefault(job.loop, []).append((job, ok, value))
            elif job.future.set_running_or_notify_cancel():
                if ok:
                    job.future.set_result(value)
                else:
                    job.future.set_exception(value)
        for loop, items in waking.items():
            with contextlib.suppress(RuntimeError):  # a closed loop has nobody waiting
                loop.call_soon_threadsafe(_wake, items)

    # reads -----------------------------------------------------------------------------

    def read_sync(self, fn: Callable[[Connection], T]) -> T:
        """Run `fn` on a reader connection (the start and the offline commands: their own
        messages name what to check in the driver's errors)."""
        with self.reader_engine.connect() as conn:
            return fn(conn)

    async def read(self, fn: Callable[[Connection], T]) -> T:
        """Run `fn` on a reader connection in a worker thread. StoreError when the database
        fails to answer, or no reader comes free within WAIT_SECONDS (each one stuck on a
        database that stopped answering)."""
        try:
            with anyio.fail_after(WAIT_SECONDS):
                await self._readers.acquire()
        except TimeoutError:
            raise StoreError(
                f"database `{shown_url(self.url)}` unavailable: no reader came free in "
                f"{WAIT_SECONDS:g} s (the database does not answer them)"
            ) from None
        try:
            return await anyio.to_thread.run_sync(self.read_sync, fn, limiter=self._limiter)
        except Exception as exc:
            failure = self._failure(exc)
            if failure is exc:
                raise
            raise failure from None  # (the driver's message may quote the URL)
        finally:
            self._readers.release()


def _pg_connect_args(url: str, *, writer: bool) -> dict[str, str]:
    """libpq parameters for the store's connections: give up connecting, and find a peer
    that went away, as the store's other connections do (`CONNECTION_DEFAULTS`), and wait
    for a lock WAIT_SECONDS at most; what the URL sets wins."""
    from agentfirewall_server.store.conninfo import CONNECTION_DEFAULTS

    name = "tameflare-store-writer" if writer else "tameflare-store"
    given = make_url(url).query
    chosen = {**CONNECTION_DEFAULTS, "application_name": name}
    args = {k: v for k, v in chosen.items() if k not in given}
    own = given.get("options") or ()  # the URL's options after: a lock_timeout there wins
    own = (own,) if isinstance(own, str) else own
    args["options"] = " ".join((f"-c lock_timeout={round(WAIT_SECONDS * 1000)}", *own))
    return args


def _checkpoint(conn: Connection) -> None:
    """Copy the WAL's committed pages into the database (PASSIVE: readers are not waited
    for); the next write transaction then starts the WAL afresh. A failure is left to
    SQLite's own checkpoint: the data is safe in the WAL either way."""
    started = time.perf_counter()
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
    except sqlite3.Error:
        log.warning("WAL checkpoint failed; SQLite's own checkpoint will take over", exc_info=True)
    finally:
        cursor.close()
    if TRACE is not None:
        TRACE(("checkpoint", started, time.perf_counter()))


def _deliver_committed(records: list[Record]) -> None:
    """`Database._deliver` of a committed batch of records (every outcome a success): one
    wake-up per event loop, the records in their order."""
    loop = records[0].loop
    if all(record.loop is loop for record in records):  # one loop (the server's): as is
        by_loop = {loop: records}
    else:
        by_loop = {}
        for record in records:
            by_loop.setdefault(record.loop, []).append(record)
    for each, waiting in by_loop.items():
        with contextlib.suppress(RuntimeError):  # a closed loop has nobody waiting
            each.call_soon_threadsafe(_wake_committed, waiting)


def _wake_committed(records: list[Record]) -> None:
    """`_wake` for committed records: each caller gets what its `then` gives."""
    _wake([(record, True, None) for record in records])


def _wake(items: list[tuple[Record, bool, Any]]) -> None:
    for record, ok, value in items:
        waiter = record.waiter
        if waiter.done():
            continue
        if not ok:
            waiter.set_exception(value)
        elif record.then is None:
            waiter.set_result(None)
        else:
            try:
                waiter.set_result(record.then())
            except Exception as exc:  # the write is committed; the caller sees the failure
                waiter.set_exception(exc)


def _in_savepoint(conn: Connection, fn: Callable[[Connection], Any]) -> tuple[bool, Any]:
    savepoint = conn.begin_nested()
    try:
        result = fn(conn)
    except Exception as exc:
        savepoint.rollback()
        return False, exc
    savepoint.commit()
    return True, result


def _run_grouped(conn: Connection, batch: list[_Job | Record]) -> list[tuple[bool, Any]]:
    """Jobs one by one (each in a savepoint); runs of records in bulk."""
    out: list[tuple[bool, Any]] = []
    i = 0
    while i < len(batch):
        item = batch[i]
        if isinstance(item, _Job):
            out.append(_in_savepoint(conn, item.fn))
            i += 1
            continue
        j = i
        while j < len(batch) and isinstance(batch[j], Record):
            j += 1
        records = [r for r in batch[i:j] if isinstance(r, Record)]
        ok, _ = _in_savepoint(conn, lambda c, rs=records: _bulk(c, rs))  # type: ignore[misc]
        if ok:
            out.extend([(True, None)] * len(records))
        else:  # one bad row (e.g. a duplicate idempotency key): find it
            out.extend(_in_savepoint(conn, lambda c, r=r: _bulk(c, [r])) for r in records)  # type: ignore[misc]
        i = j
    return out


def _rows_by_table(
    records: list[Record], head: tuple[int, str] | None
) -> dict[Table, list[dict[str, Any]]]:
    by_table: dict[Table, list[dict[str, Any]]] = {}
    for record in records:
        for table, row in record.inserts:
            by_table.setdefault(table, []).append(row)
    events = [event for record in records for event in record.audit]
    if events:
        by_table.setdefault(audit_events, []).extend(link_events(head, events, in_place=True))
    return by_table


def _wrapped(conn: Connection, exc: BaseException) -> BaseException:
    """A driver's integrity error as SQLAlchemy's, which the routes catch."""
    if isinstance(exc, conn.dialect.loaded_dbapi.IntegrityError):
        return IntegrityError("INSERT", None, exc)  # type: ignore[arg-type]
    return exc


def _bulk(conn: Connection, records: list[Record]) -> None:
    """One multi-row INSERT per table on the driver's cursor (SQLAlchemy's per-row work skipped)."""
    head = conn.execute(text(_HEAD)).first()
    by_table = _rows_by_table(records, (head[0], head[1]) if head else None)
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        _insert(cursor, "?" if conn.dialect.paramstyle == "qmark" else "%s", by_table)
    except Exception as exc:
        wrapped = _wrapped(conn, exc)
        if wrapped is exc:
            raise
        raise wrapped from exc
    finally:
        cursor.close()


def _insert(cursor: Any, marker: str, by_table: dict[Table, list[dict[str, Any]]]) -> None:
    for table, rows_of in by_table.items():
        columns = _columns(table)
        per_statement = max(1, _MAX_VARIABLES // len(columns))
        for start in range(0, len(rows_of), per_statement):
            chunk = rows_of[start : start + per_statement]
            # one multi-row INSERT: one statement step, so the writer thread releases
            # and re-takes the GIL once per table, not once per row
            cursor.execute(_insert_sql(table, marker, len(chunk)), _values(chunk, columns))


@functools.cache
def _columns(table: Table) -> tuple[str, ...]:
    """The table's column names, in order (a table's columns are fixed once defined)."""
    return tuple(c.name for c in table.columns)


@functools.lru_cache(maxsize=1024)
def _insert_sql(table: Table, marker: str, rows: int) -> str:
    """The multi-row INSERT of `rows` rows into `table` (a batch's size repeats)."""
    columns = _columns(table)
    group = "(" + ", ".join([marker] * len(columns)) + ")"
    return (
        f"INSERT INTO {table.name} ({', '.join(columns)}) "  # noqa: S608
        f"VALUES {', '.join([group] * rows)}"
    )


def _values(rows: list[dict[str, Any]], columns: Sequence[str]) -> list[Any]:
    """The rows' values, column by column, flattened (a missing key is NULL)."""
    if len(columns) == 1:  # itemgetter of one key gives the value, not a tuple
        return [r.get(columns[0]) for r in rows]
    try:
        return list(itertools.chain.from_iterable(map(operator.itemgetter(*columns), rows)))
    except KeyError:
        return [r.get(c) for r in rows for c in columns]
