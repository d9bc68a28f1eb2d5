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
UNLOGGED (a database crash refills the buckets). A check the database cannot answer fails
closed: ``503``.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psycopg
from sqlalchemy import delete

from agentfirewall_server.store.schema import rate_limits
from agentfirewall_server.web import ApiError

if TYPE_CHECKING:
    from agentfirewall_server.store.db import Database

__all__ = ["CHECK_SQL", "Limiter", "RateLimiter", "SharedRateLimiter"]


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
    check, and the statement is prepared on each connection after a few uses); one that
    fails is closed and replaced by the next check.
    """

    def __init__(self, db: Database, connections: int = 4) -> None:
        from agentfirewall_server.store.conninfo import libpq_conninfo

        self._db = db
        self._conninfo = libpq_conninfo(db.writer_engine, "tameflare-ratelimit")
        self._size = connections
        self._idle: list[psycopg.AsyncConnection[Any]] = []
        self._open = 0
        self._freed: asyncio.Condition | None = None

    async def _acquire(self) -> psycopg.AsyncConnection[Any]:
        if self._freed is None:
            self._freed = asyncio.Condition()
        async with self._freed:
            while not self._idle and self._open >= self._size:
                await self._freed.wait()
            if self._idle:
                return self._idle.pop()
            self._open += 1
        try:
            return await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
        except BaseException:
            await self._release(None)
            raise

    async def _release(self, conn: psycopg.AsyncConnection[Any] | None) -> None:
        assert self._freed is not None
        async with self._freed:
            if conn is None:
                self._open -= 1
            else:
                self._idle.append(conn)
            self._freed.notify()

    async def check(self, key: str, per_minute: int) -> int | None:
        rate = per_minute / 60.0
        params = {"key": key, "limit": float(per_minute), "rate": rate}
        conn: psycopg.AsyncConnection[Any] | None = None
        try:
            conn = await self._acquire()
            row = await (await conn.execute(CHECK_SQL, params)).fetchone()
        except (psycopg.Error, OSError):
            if conn is not None:
                await conn.close()
                await self._release(None)
            raise ApiError(
                503, "the rate limit could not be checked: database unavailable"
            ) from None
        await self._release(conn)
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

    async def forget(self, key: str) -> None:
        """A fresh bucket for `key` (an agent suspended or re-activated)."""
        self.memory.forget(key)
        if self.shared is not None:
            await self.shared.forget(key)

    async def aclose(self) -> None:
        if self.shared is not None:
            await self.shared.aclose()
