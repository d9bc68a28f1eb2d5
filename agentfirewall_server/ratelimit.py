"""Per-agent rate limit: a token bucket of `limit` requests per minute.

One process (SQLite) keeps the buckets in memory (:class:`RateLimiter`). Replicas sharing
a PostgreSQL share the buckets (:class:`SharedRateLimiter`): each check is one statement,
an upsert on the agent's row of ``rate_limits`` that refills the bucket by the time passed
(on the database's clock, so replicas' clocks do not matter), takes a token if there is
one and returns the outcome. The row lock the upsert takes makes concurrent checks on any
replica queue for the bucket, so the agent's budget is spent exactly once. A statement's
clock reading is taken before it waits for the row, so the bucket's stamp only moves
forward (a late writer with an earlier reading refills nothing and does not turn the
stamp back, which would count the same seconds twice). The table is
UNLOGGED (a database crash refills the buckets). A check the database cannot answer, or
does not answer within :data:`CHECK_TIMEOUT`, fails closed: ``503``.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import socket
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import delete

from agentfirewall_server.store.schema import rate_limits
from agentfirewall_server.web import ApiError

if TYPE_CHECKING:
    import psycopg

    from agentfirewall_server.store.db import Database

__all__ = ["CHECK_SQL", "CHECK_TIMEOUT", "Limiter", "RateLimiter", "SharedRateLimiter"]

#: Seconds a shared check may take (a free connection, connecting and the statement):
#: beyond them it fails closed (``503``).
CHECK_TIMEOUT = 5.0


@dataclass(slots=True)
class _Bucket:
    tokens: float
    stamp: float


class RateLimiter:
    """`check` returns None when allowed, else the seconds to wait (at least 1)."""

    def __init__(self) -> None:
        self._buckets: dict[str, _Bucket] = {}

    def check(self, key: str, per_minute: int, now: float) -> int | None:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(float(per_minute), now)
        rate = per_minute / 60.0
        bucket.tokens = min(float(per_minute), bucket.tokens + (now - bucket.stamp) * rate)
        bucket.stamp = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return None
        return _wait(bucket.tokens, rate)

    def forget(self, key: str) -> None:
        self._buckets.pop(key, None)


def _wait(tokens: float, rate: float) -> int:
    return max(1, math.ceil((1.0 - tokens) / rate))


#: The whole check: refill by the time passed, take a token when there is one, say so.
CHECK_SQL = """
INSERT INTO rate_limits AS b (key, tokens, stamp, allowed)
VALUES (%(key)s, %(limit)s - 1, EXTRACT(EPOCH FROM clock_timestamp()), true)
ON CONFLICT (key) DO UPDATE SET
  allowed = LEAST(%(limit)s, b.tokens + GREATEST(EXCLUDED.stamp - b.stamp, 0) * %(rate)s) >= 1,
  tokens = LEAST(%(limit)s, b.tokens + GREATEST(EXCLUDED.stamp - b.stamp, 0) * %(rate)s)
    - CASE WHEN LEAST(%(limit)s, b.tokens + GREATEST(EXCLUDED.stamp - b.stamp, 0) * %(rate)s)
      >= 1 THEN 1 ELSE 0 END,
  stamp = GREATEST(b.stamp, EXCLUDED.stamp)
RETURNING allowed, tokens
"""


class SharedRateLimiter:
    """The buckets in PostgreSQL: one statement per check, awaited on the event loop.

    A few autocommit connections of its own (psycopg's async API: no worker thread per
    check, and the statement is prepared on each connection after a few uses). A check
    takes `timeout` seconds at most, waiting for a connection included: a database that
    stops answering fails it closed (``503``) rather than holding the request. A
    connection that fails, is cut at the timeout or is interrupted (the request cancelled)
    is closed and its place freed; the next check opens another.
    """

    def __init__(self, db: Database, connections: int = 4, timeout: float = CHECK_TIMEOUT) -> None:
        from agentfirewall_server.store.conninfo import libpq_conninfo

        self._db = db
        # the server gives up too: a statement queued behind a row lock does not outlive
        # the check that gave up on it
        self._conninfo = libpq_conninfo(
            db.writer_engine, "tameflare-ratelimit", statement_timeout=timeout
        )
        self.timeout = timeout
        self._idle: list[psycopg.AsyncConnection[Any]] = []
        self._slots = asyncio.Semaphore(connections)

    async def _row(self, params: dict[str, Any]) -> Any:
        """The check's row, by the deadline (else `TimeoutError` or a psycopg error)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        async with asyncio.timeout_at(deadline):
            await self._slots.acquire()
        try:
            async with asyncio.timeout_at(deadline):
                conn = self._idle.pop() if self._idle else await self._connect()
            # cut rather than cancelled at the deadline: psycopg answers a cancelled query
            # by asking the server to cancel it, waiting up to 10 s more for a server that
            # does not answer; a cut socket fails the query at once
            cut = loop.call_at(deadline, _cut, conn)
            try:
                row = await (await conn.execute(CHECK_SQL, params)).fetchone()
            except BaseException:  # failed, cut or cancelled: never used again
                await conn.close()
                raise
            finally:
                cut.cancel()
            self._idle.append(conn)
            return row
        finally:
            self._slots.release()

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        import psycopg

        return await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)

    async def check(self, key: str, per_minute: int) -> int | None:
        import psycopg  # (loaded with the shared limiter only: PostgreSQL)

        rate = per_minute / 60.0
        params = {"key": key, "limit": float(per_minute), "rate": rate}
        try:
            row = await self._row(params)
        except (psycopg.Error, OSError, TimeoutError):
            raise ApiError(
                503, "the rate limit could not be checked: database unavailable"
            ) from None
        assert row is not None
        allowed, tokens = bool(row[0]), float(row[1])
        return None if allowed else _wait(tokens, rate)

    async def forget(self, key: str) -> None:
        await self._db.write(
            lambda c: c.execute(delete(rate_limits).where(rate_limits.c.key == key))
        )

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            await conn.close()


def _cut(conn: psycopg.AsyncConnection[Any]) -> None:
    """Shut `conn`'s socket down: the query waiting on it fails with a psycopg error."""
    import psycopg

    with (
        contextlib.suppress(OSError, psycopg.Error),
        socket.socket(fileno=os.dup(conn.pgconn.socket)) as sock,
    ):
        sock.shutdown(socket.SHUT_RDWR)


class Limiter:
    """The limiter the routes use: in memory on SQLite, shared on PostgreSQL."""

    def __init__(self, db: Database) -> None:
        self.memory = RateLimiter()
        self.shared = None if db.is_sqlite else SharedRateLimiter(db)

    async def check(self, key: str, per_minute: int) -> int | None:
        """None when allowed, else the seconds to wait (at least 1)."""
        if self.shared is None:
            return self.memory.check(key, per_minute, time.monotonic())
        return await self.shared.check(key, per_minute)

    def check_local(self, key: str, per_minute: int) -> int | Literal[False] | None:
        """`check` without a coroutine when the buckets are in memory (the hot path);
        False when they are shared: `check` answers then."""
        if self.shared is None:
            return self.memory.check(key, per_minute, time.monotonic())
        return False

    async def forget(self, key: str) -> None:
        """A fresh bucket for `key` (an agent suspended or re-activated)."""
        self.memory.forget(key)
        if self.shared is not None:
            await self.shared.forget(key)

    async def aclose(self) -> None:
        if self.shared is not None:
            await self.shared.aclose()
