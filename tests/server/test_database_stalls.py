"""A database that stops answering fails requests closed (503) instead of holding them.

A frozen PostgreSQL (or a partition that drops packets) accepts bytes and answers none:
the shared rate limiter and ``/api/health`` must give up on it, and a check interrupted
for any reason must give its connection back (the limiter has four). The store gives up
too (``store/db.py``): connecting, waiting for a reader, and for a lock another replica
holds, each within a bound, with a StoreError the app answers 503; its writer thread lives
on and connects again.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
from sqlalchemy import create_engine, event, text

from agentfirewall_server.ratelimit import SharedRateLimiter
from agentfirewall_server.routes import system
from agentfirewall_server.store import db as store_db
from agentfirewall_server.store.conninfo import libpq_conninfo
from agentfirewall_server.store.db import Database, StoreError
from agentfirewall_server.web import ApiError
from tests.server.conftest import SPEC, Harness

# -- the health check -------------------------------------------------------------------


@contextlib.contextmanager
def _frozen_reads(harness: Harness) -> Iterator[list[str]]:
    """Every store read blocks in its worker thread until the block ends (as a query to
    a frozen database does); yields the list the health check's reads are counted in."""
    db = harness.state.db
    thawed = threading.Event()
    calls: list[str] = []
    original = db.read_sync

    def frozen(fn: Any) -> Any:
        if fn.__qualname__.startswith(system._database_answers.__name__):
            calls.append(fn.__qualname__)
        thawed.wait(30)
        return original(fn)

    db.read_sync = frozen
    try:
        yield calls
    finally:
        thawed.set()
        db.read_sync = original


def test_health_answers_503_when_the_database_stops_answering(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(system, "HEALTH_DB_TIMEOUT", 0.2)
    with _frozen_reads(harness) as reads:
        for _ in range(3):
            r = harness.call("GET", "/health")
            assert r.status_code == 503
            assert r.json()["database"] == "unavailable"
        assert len(reads) == 1  # the checks wait for the one probe stuck, not one more each
    for _ in range(50):  # the stuck probe ends when the database answers again
        if harness.call("GET", "/health").status_code == 200:
            break
    assert harness.call("GET", "/health").json()["database"] == "ok"


# -- the shared rate limiter ------------------------------------------------------------


def _limiter(url: str, **kw: Any) -> SharedRateLimiter:
    return SharedRateLimiter(Database(url), **kw)


class _Conn:
    """A psycopg connection whose statements wait until `answer` is set."""

    def __init__(self, answer: asyncio.Event) -> None:
        self.answer = answer
        self.closed = False

    async def execute(self, _sql: str, _params: Any) -> Any:
        await self.answer.wait()
        return self

    async def fetchone(self) -> tuple[bool, float]:
        return True, 1.0

    async def close(self) -> None:
        self.closed = True


@pytest.mark.anyio
async def test_a_cancelled_check_closes_and_frees_its_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A request cancelled mid-check (its client left, a server timeout) must not keep one
    of the limiter's four connections: eight of them would otherwise stop every check."""
    answer = asyncio.Event()
    opened: list[_Conn] = []

    async def connect(*_args: Any, **_kw: Any) -> _Conn:
        opened.append(_Conn(answer))
        return opened[-1]

    monkeypatch.setattr(psycopg.AsyncConnection, "connect", connect)
    limiter = _limiter("postgresql://tf@127.0.0.1:1/tf", timeout=30.0)
    for _ in range(2):
        checks = [asyncio.create_task(limiter.check(f"agent{i}", 60)) for i in range(4)]
        await asyncio.sleep(0.01)
        for task in checks:
            task.cancel()
        await asyncio.gather(*checks, return_exceptions=True)
    assert len(opened) == 8
    assert all(c.closed for c in opened)  # never handed out again
    answer.set()
    assert await asyncio.wait_for(limiter.check("agent0", 60), 10) is None


@pytest.mark.anyio
async def test_a_check_fails_closed_when_the_database_never_answers_the_connection() -> None:
    """The server accepts the TCP connection (its kernel does) but never answers it."""
    with _silent_listener() as port:
        limiter = _limiter(f"postgresql://tf@127.0.0.1:{port}/tf", timeout=0.3)
        with pytest.raises(ApiError) as caught:
            await asyncio.wait_for(limiter.check("agent", 60), 10)
    assert caught.value.status == 503


@contextlib.contextmanager
def _silent_listener() -> Iterator[int]:
    import socket

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener.getsockname()[1]


class _Freezer:
    """A TCP relay to PostgreSQL that, frozen, stops passing bytes either way."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.frozen = False
        self.thawed = asyncio.Event()
        self.tasks: set[asyncio.Task[None]] = set()
        self.writers: list[asyncio.StreamWriter] = []  # closed at the end, both ways

    async def pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                if self.frozen:
                    await self.thawed.wait()
                writer.write(data)
                await writer.drain()
        writer.close()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self.writers += [writer, up_writer]
        for task in (self.pipe(reader, up_writer), self.pipe(up_reader, writer)):
            self.tasks.add(asyncio.ensure_future(task))

    def thaw(self) -> None:
        self.frozen = False
        self.thawed.set()


@contextlib.asynccontextmanager
async def _relay(url: str) -> AsyncIterator[tuple[_Freezer, str]]:
    parts = urlsplit(url)
    freezer = _Freezer(parts.hostname or "127.0.0.1", parts.port or 5432)
    server = await asyncio.start_server(freezer.serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield freezer, url.replace(parts.netloc.rpartition("@")[2], f"127.0.0.1:{port}")
    finally:
        freezer.thaw()
        server.close()
        for task in freezer.tasks:
            task.cancel()
        await asyncio.gather(*freezer.tasks, return_exceptions=True)
        for writer in freezer.writers:  # (left open, they were collected in a later test)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        await server.wait_closed()


@pytest.mark.postgres
@pytest.mark.anyio
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_a_check_fails_closed_when_the_database_stops_answering(
    database_url: str,
) -> None:
    store = Database(database_url)
    store.migrate()
    store.close()
    async with _relay(database_url) as (freezer, url):
        limiter = _limiter(url, timeout=0.5)
        try:
            assert await limiter.check("agent", 60) is None
            freezer.frozen = True
            with pytest.raises(ApiError) as caught:
                await asyncio.wait_for(limiter.check("agent", 60), 10)
            assert caught.value.status == 503
            freezer.thaw()  # the cut connection is not reused: the next check opens one
            assert await limiter.check("agent", 60) is None
        finally:
            await limiter.aclose()


def test_plain_connections_give_up_on_a_silent_server() -> None:
    engine = create_engine("postgresql+psycopg://tf@db.internal/tf")
    info = psycopg.conninfo.conninfo_to_dict(
        libpq_conninfo(engine, "tameflare-test", statement_timeout=2.5)
    )
    assert info["connect_timeout"] == "10"
    assert info["keepalives"] == "1"
    assert int(str(info["keepalives_idle"])) > 0
    assert info["options"] == "-c statement_timeout=2500"
    engine = create_engine("postgresql+psycopg://tf@db.internal/tf?connect_timeout=3")
    assert psycopg.conninfo.conninfo_to_dict(libpq_conninfo(engine, "t"))["connect_timeout"] == "3"


def _one(conn: Any) -> Any:
    return conn.execute(text("SELECT 1")).scalar()


@pytest.mark.anyio
async def test_the_store_gives_up_connecting_to_a_silent_server(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A PostgreSQL that accepts TCP and never answers: a read and a write each fail with
    the store's error (503) once connecting gives up, naming the database, never its
    password. The writer thread died of it: that write, and every one after, waited for
    good (even once the database was back: below)."""
    from agentfirewall_server.store import conninfo

    monkeypatch.setitem(conninfo.CONNECTION_DEFAULTS, "connect_timeout", "1")
    with _silent_listener() as port:
        store = Database(f"postgresql://tf:hunter2@127.0.0.1:{port}/tf")
        try:
            outcome = await asyncio.wait_for(
                asyncio.gather(store.read(_one), store.write(_one), return_exceptions=True), 30
            )
        finally:
            store.close()
    for failure in outcome:
        assert isinstance(failure, StoreError), outcome
        assert f"127.0.0.1:{port}" in str(failure)
        assert "timeout" in str(failure).lower()
        assert "hunter2" not in str(failure)


@pytest.mark.anyio
async def test_the_writer_connects_again_once_the_database_answers(tmp_path: Any) -> None:
    """A write the database could not take fails alone: the writer lives on."""
    store = Database(f"sqlite:///{tmp_path / 'store.db'}")
    attempts: list[int] = []

    @event.listens_for(store.writer_engine, "do_connect")
    def first_refused(*_args: Any) -> None:
        attempts.append(1)
        if len(attempts) == 1:
            raise sqlite3.OperationalError("unable to open database file")

    try:
        with pytest.raises(StoreError, match="unable to open"):
            await asyncio.wait_for(store.write(_one), 30)
        assert await asyncio.wait_for(store.write(_one), 30) == 1
    finally:
        store.close()
    assert len(attempts) == 2


@pytest.mark.anyio
async def test_a_read_waits_for_a_free_reader_within_a_bound(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Readers stuck on a database that stopped answering hold every slot: the next read
    fails (503) after WAIT_SECONDS instead of queueing for good."""
    monkeypatch.setattr(store_db, "WAIT_SECONDS", 0.2)
    store = Database(f"sqlite:///{tmp_path / 'store.db'}", readers=1)
    started, thawed = threading.Event(), threading.Event()

    def frozen(_conn: Any) -> bool:
        started.set()
        return thawed.wait(30)

    stuck = asyncio.ensure_future(store.read(frozen))
    try:
        while not started.is_set():
            await asyncio.sleep(0.01)
        with pytest.raises(StoreError, match="no reader came free"):
            await asyncio.wait_for(store.read(_one), 10)
        thawed.set()
        assert await stuck is True
        assert await store.read(_one) == 1  # its slot is free again
    finally:
        thawed.set()
        store.close()


def test_a_request_the_database_cannot_answer_is_503(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not a 500 with a traceback: the documented JSON error, on the hot path too."""
    key = harness.create_agent("Bot")
    db = harness.state.db

    def timed_out(*_args: Any) -> None:
        raise db.reader_engine.dialect.loaded_dbapi.OperationalError("connection timeout")

    event.listen(db.reader_engine, "do_connect", timed_out)
    db.reader_engine.dispose()  # the pooled connections are gone: reads connect
    try:
        r = harness.admin("GET", "/v1/audit")
        assert (r.status_code, r.json()["error"]) == (503, "unavailable"), r.text
        assert "timeout" not in r.text  # which database and why: in the log

        async def unavailable(*_args: Any, **_kw: Any) -> None:
            raise StoreError("database `x` unavailable: connection timeout expired")

        monkeypatch.setattr(db, "record", unavailable)
        monkeypatch.setattr(db, "write", unavailable)
        r = harness.agent(key, "POST", "/v1/actions", json={"action_spec": SPEC})
        assert (r.status_code, r.json()["error"]) == (503, "unavailable"), r.text
    finally:
        event.remove(db.reader_engine, "do_connect", timed_out)


# -- PostgreSQL: locks another replica holds, and what is unchanged ----------------------


def _plain(url: str, **kw: Any) -> psycopg.Connection[Any]:
    return psycopg.connect(store_db.normalize_url(url).replace("+psycopg", ""), **kw)


def _holding(url: str, lock: int) -> psycopg.Connection[Any]:
    """A connection in a transaction holding the advisory lock `lock` (as a replica frozen
    in its write batch holds the writers' lock)."""
    conn = _plain(url)
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock,))
    return conn


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_a_write_gives_up_on_a_lock_another_replica_holds(database_url: str) -> None:
    store = Database(database_url)
    quick = Database(database_url + "?options=-c%20lock_timeout%3D300")  # the URL's wins
    try:
        store.migrate()
        assert store.read_sync(lambda c: c.execute(text("SHOW lock_timeout")).scalar()) == "10s"
        assert store.submit(_one).result(timeout=30) == 1  # as before
        holder = _holding(database_url, store_db._PG_LOCK)
        try:
            with pytest.raises(StoreError, match="lock timeout"):
                quick.submit(_one).result(timeout=30)
        finally:
            holder.close()
        assert quick.submit(_one).result(timeout=30) == 1  # the lock free: as before
    finally:
        quick.close()
        store.close()


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_a_replica_waits_for_another_ones_migration_however_long(database_url: str) -> None:
    """Migrations (and the wait for another replica's) are not bound by the lock timeout."""
    store = Database(database_url + "?options=-c%20lock_timeout%3D100")
    holder = _holding(database_url, store_db._MIGRATE_LOCK)
    failed: list[BaseException] = []

    def migrate() -> None:
        try:
            store.migrate()
        except BaseException as exc:
            failed.append(exc)

    worker = threading.Thread(target=migrate, daemon=True)
    waiting = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
    try:
        worker.start()
        with _plain(database_url, autocommit=True) as watcher:
            while not watcher.execute(waiting).fetchone()[0]:  # type: ignore[index]
                time.sleep(0.02)
        time.sleep(0.3)  # three times its lock timeout
    finally:
        holder.close()
    worker.join(60)
    try:
        assert not failed, failed
        assert store.submit(_one).result(timeout=30) == 1
    finally:
        store.close()


def test_the_url_wins_over_the_store_connection_defaults() -> None:
    url = "postgresql://tf@db.internal/tf?connect_timeout=3&application_name=mine"
    store = Database(url)
    seen: list[dict[str, Any]] = []

    @event.listens_for(store.reader_engine, "do_connect")
    def capture(_dialect: Any, _record: Any, _args: Any, params: dict[str, Any]) -> None:
        seen.append(dict(params))
        raise ConnectionAbortedError("captured")

    with pytest.raises(Exception, match="captured"):
        store.read_sync(lambda c: None)
    assert seen[0]["connect_timeout"] == "3"
    assert seen[0]["application_name"] == "mine"
    assert seen[0]["keepalives"] == "1"  # the defaults the URL leaves alone still apply
