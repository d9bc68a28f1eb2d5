"""A database that stops answering fails requests closed (503) instead of holding them.

A frozen PostgreSQL (or a partition that drops packets) accepts bytes and answers none:
the shared rate limiter and ``/api/health`` must give up on it, and a check interrupted
for any reason must give its connection back (the limiter has four).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
from sqlalchemy import create_engine, event, text
from sqlalchemy.exc import OperationalError

from agentfirewall_server.ratelimit import SharedRateLimiter
from agentfirewall_server.routes import system
from agentfirewall_server.store.conninfo import libpq_conninfo
from agentfirewall_server.store.db import Database
from agentfirewall_server.web import ApiError
from tests.server.conftest import Harness

# -- the health check -------------------------------------------------------------------


@contextlib.contextmanager
def _frozen_reads(harness: Harness) -> Iterator[list[int]]:
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


def test_the_store_gives_up_connecting_to_a_silent_server(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The store's own engines had none of the defaults the other connections have: a
    PostgreSQL that accepts TCP and never answers held the first read (and the writer
    thread) for good."""
    from agentfirewall_server.store import conninfo

    monkeypatch.setitem(conninfo.CONNECTION_DEFAULTS, "connect_timeout", "1")
    outcome: list[BaseException] = []
    with _silent_listener() as port:
        store = Database(f"postgresql://tf@127.0.0.1:{port}/tf")

        def read() -> None:
            try:
                store.read_sync(lambda c: c.execute(text("SELECT 1")).scalar())
            except BaseException as exc:
                outcome.append(exc)

        worker = threading.Thread(target=read, daemon=True)
        worker.start()
        worker.join(15)
        assert not worker.is_alive(), "the read still waits on a server that never answers"
        store.reader_engine.dispose()
    assert isinstance(outcome[0], OperationalError), outcome
    assert "timeout" in str(outcome[0]).lower()


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
