"""Events shared by every replica on one PostgreSQL: ``LISTEN/NOTIFY`` under the hub.

A replica that publishes an event (an approval created or decided, traffic, the kill
switch, a configuration change) also sends ``NOTIFY tameflare_events`` with only the kind
and the ids: ``{"o": origin, "k": kind, "i": [ids]}`` (``config`` carries the version).
Every other replica listens on a connection of its own, fetches the rows the ids name
(or reloads its configuration snapshot) and publishes them to its own hub, so its
long-polls and SSE streams wake as if the change had been made there. Payloads never hold
row data: what a reader sees is what the store holds after the commit.

No event is lost to a dropped connection. The sender keeps what it could not send and
sends it once reconnected. The listener, after reconnecting (and once at the start),
re-reads what it may have missed: the configuration version, and every approval created
or decided since a margin before the last moment the old connection was known alive
(``_MARGIN`` also covers clock skew between replicas, whose clocks stamp the rows), and the
traffic records stored since the watermark: the highest traffic row id the store held one
check (``_ALIVE``) before the connection was last known alive, so a record whose
notification was still on its way is not skipped (row ids, not timestamps: a gateway
stamps its records and may ship them late). Approval events re-read that way may repeat
one already seen; every consumer re-reads state on an event, so a repeat costs a refresh,
not a wrong answer. A traffic event is published once: the request ids this replica
published (live or re-read) are remembered (the last ``_SEEN``) and skipped; at most the
newest ``_TRAFFIC_RESYNC`` records missed are published (a subscriber's queue holds as
many; the traffic log in the store stays complete). Long-polls also re-check the store once a
second and the configuration version is polled every 2 s (``state.py``), as before: the
notifications make changes arrive in milliseconds, those checks bound the worst case.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections import deque
from typing import TYPE_CHECKING, Any

import psycopg
from sqlalchemy import Connection, or_, select

from agentfirewall_server.approvals import approval_json, get_approvals, refresh_pending_gauge
from agentfirewall_server.snapshot import kill_json
from agentfirewall_server.store.conninfo import libpq_conninfo
from agentfirewall_server.store.schema import approvals, traffic

if TYPE_CHECKING:
    from agentfirewall_server.protocols import Services

__all__ = ["CHANNEL", "SharedEvents"]

log = logging.getLogger("agentfirewall_server")

CHANNEL = "tameflare_events"
_MAX_PAYLOAD = 7000  # PostgreSQL refuses a payload of 8000 bytes or more
_MARGIN = 10.0
_ALIVE = 5.0  # seconds without a notification before the listen connection is checked
_OUTBOX = 100_000
_RESYNC_ROWS = 10_000  # beyond: long-polls still see the rest (they re-check the store)
_TRAFFIC_RESYNC = 1000  # the newest traffic records missed (an SSE subscriber's queue size)
_SEEN = 50_000  # traffic request ids remembered as published here
_KINDS = ("approval.created", "approval.decided", "traffic", "kill_switch", "config")


#: what the traffic event leaves out of the row (the ingest route publishes it alike)
_NOT_PUBLISHED = ("id", "created_at", "decision_input")


async def _traffic_top(conn: psycopg.AsyncConnection[Any]) -> int:
    """The highest traffic row id the store holds now (0 for none)."""
    cursor = await conn.execute("SELECT coalesce(max(id), 0) FROM traffic")
    row = await cursor.fetchone()
    return int(row[0]) if row else 0


def _traffic_after(mark: int) -> Any:
    """The newest ``_TRAFFIC_RESYNC`` traffic rows after `mark`, oldest first."""

    def fetch(conn: Connection) -> list[dict[str, Any]]:
        found = conn.execute(
            select(traffic)
            .where(traffic.c.id > mark)
            .order_by(traffic.c.id.desc())
            .limit(_TRAFFIC_RESYNC)
        )
        return [dict(r._mapping) for r in reversed(found.all())]

    return fetch


def _ident(kind: str, data: Any) -> str | None:
    """What a reader needs to fetch the event's rows: an id, a version, or nothing."""
    if kind.startswith("approval."):
        return str(data["id"])
    if kind == "traffic":
        return str(data["request_id"])
    if kind == "config":
        return str(data.get("version", ""))
    return ""


def _messages(origin: str, items: list[tuple[str, str]]) -> list[tuple[str, int]]:
    """Consecutive items of one kind as payloads under the size limit, with how many each
    carries (so the outbox is emptied only of what was sent)."""
    out: list[tuple[str, int]] = []
    i = 0
    while i < len(items):
        kind, ids, size = items[i][0], [items[i][1]], len(items[i][1])
        j = i + 1
        while j < len(items) and items[j][0] == kind and size + len(items[j][1]) < _MAX_PAYLOAD:
            ids.append(items[j][1])
            size += len(items[j][1]) + 3
            j += 1
        out.append((json.dumps({"o": origin, "k": kind, "i": ids}), j - i))
        i = j
    return out


class SharedEvents:
    """The relay of one replica: `relay` (the hub's hook), `send` and `listen` tasks."""

    def __init__(self, state: Services) -> None:
        self.state = state
        self.origin = secrets.token_hex(8)
        engine = state.db.writer_engine
        #: Where the listener connects (``application_name`` names the replica).
        self.listen_conninfo = libpq_conninfo(engine, f"tameflare-events-{self.origin}")
        self._send_conninfo = libpq_conninfo(engine, f"tameflare-notify-{self.origin}")
        self._outbox: deque[tuple[str, str]] = deque(maxlen=_OUTBOX)
        self._pending = asyncio.Event()
        #: Set while the listen connection is up (tests wait on it).
        self.listening = asyncio.Event()
        #: How many times the listener re-read what it may have missed.
        self.resyncs = 0
        #: Traffic rows up to this id were published here (or predate the listener).
        self.traffic_mark: int | None = None
        self._seen_traffic: dict[str, None] = {}  # insertion-ordered: the oldest go first

    def _seen(self, request_id: str) -> bool:
        """Whether `request_id` was published here already; remembers it if not."""
        if request_id in self._seen_traffic:
            return True
        self._seen_traffic[request_id] = None
        if len(self._seen_traffic) > _SEEN:
            del self._seen_traffic[next(iter(self._seen_traffic))]
        return False

    def relay(self, kind: str, data: Any) -> None:
        ident = _ident(kind, data) if kind in _KINDS else None
        if ident is not None:
            if kind == "traffic":
                self._seen(ident)
            self._outbox.append((kind, ident))
            self._pending.set()

    def tasks(self) -> list[asyncio.Task[None]]:
        return [asyncio.create_task(self.send()), asyncio.create_task(self.listen())]

    # sending ---------------------------------------------------------------------------

    async def send(self) -> None:
        conn: psycopg.AsyncConnection[Any] | None = None
        backoff = 0.1
        try:
            while True:
                await self._pending.wait()
                self._pending.clear()
                while self._outbox:
                    try:
                        if conn is None or conn.closed:
                            conn = await psycopg.AsyncConnection.connect(
                                self._send_conninfo, autocommit=True
                            )
                        await self._flush(conn)
                        backoff = 0.1
                    except (psycopg.Error, OSError):
                        log.warning("could not notify the other replicas: retrying")
                        if conn is not None:
                            await conn.close()
                        conn = None
                        await asyncio.sleep(backoff)
                        backoff = min(backoff * 2, 5.0)
        finally:
            if conn is not None:
                await conn.close()

    async def _flush(self, conn: psycopg.AsyncConnection[Any]) -> None:
        for payload, count in _messages(self.origin, list(self._outbox)):
            await conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, payload))
            for _ in range(count):
                self._outbox.popleft()

    # listening -------------------------------------------------------------------------

    async def listen(self) -> None:
        since: float | None = None  # the first connect re-reads only the configuration
        alive = time.time()
        backoff = 0.1
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self.listen_conninfo, autocommit=True
                ) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    top = await _traffic_top(conn)  # rows after it arrive notified
                    await self._resync(since)
                    self.traffic_mark = checked = top
                    alive = time.time()
                    self.listening.set()
                    backoff = 0.1
                    while True:
                        async for notify in conn.notifies(timeout=_ALIVE):
                            alive = time.time()
                            await self._handle(notify.payload)
                        # one check behind: a notification may still be on its way
                        self.traffic_mark, checked = checked, await _traffic_top(conn)
                        alive = time.time()
            except (psycopg.Error, OSError):
                log.warning("the event listen connection dropped: reconnecting")
            except Exception:  # a failed read while handling: re-read after reconnecting
                log.warning("could not handle a shared event", exc_info=True)
            self.listening.clear()
            since = alive - _MARGIN
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    async def _handle(self, payload: str) -> None:
        try:
            message = json.loads(payload)
            origin, kind, ids = message["o"], message["k"], list(message["i"])
        except (ValueError, KeyError, TypeError):
            log.warning("ignored a malformed event notification")
            return
        if origin == self.origin or kind not in _KINDS:
            return
        if kind in ("config", "kill_switch"):
            await self._follow_config(kind == "kill_switch")
        elif kind == "traffic":
            await self._traffic(ids)
        else:
            await self._approvals(kind, ids)

    async def _follow_config(self, kill_switch: bool) -> None:
        state = self.state
        await state.follow_version()
        if kill_switch:
            active = [kill_json(k) for k in state.snapshot.kill_switches]
            state.hub.publish("kill_switch", {"active": active}, relay=False)

    async def _approvals(self, kind: str, ids: list[str]) -> None:
        rows = await self.state.db.read(lambda c: get_approvals(c, ids))
        for aid in ids:
            if aid in rows:
                self.state.hub.publish(kind, approval_json(rows[aid]), relay=False)
        await refresh_pending_gauge(self.state)

    async def _traffic(self, request_ids: list[str]) -> None:
        def fetch(conn: Connection) -> list[dict[str, Any]]:
            found = conn.execute(select(traffic).where(traffic.c.request_id.in_(request_ids)))
            return [dict(r._mapping) for r in found]

        self._publish_traffic(await self.state.db.read(fetch))

    def _publish_traffic(self, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            if not self._seen(row["request_id"]):
                data = {k: v for k, v in row.items() if k not in _NOT_PUBLISHED}
                self.state.hub.publish("traffic", data, relay=False)

    async def _resync(self, since: float | None) -> None:
        """After (re)connecting: what changed while nobody listened is published here."""
        await self._follow_config(kill_switch=True)
        if since is None:
            return
        self.resyncs += 1

        def changed(conn: Connection) -> list[dict[str, Any]]:
            found = conn.execute(
                select(approvals)
                .where(or_(approvals.c.created_at >= since, approvals.c.decided_at >= since))
                .order_by(approvals.c.created_at)
                .limit(_RESYNC_ROWS)
            )
            return [dict(r._mapping) for r in found]

        for row in await self.state.db.read(changed):
            if row["created_at"] >= since:
                self.state.hub.publish("approval.created", approval_json(row), relay=False)
            if row["decided_at"] is not None and row["decided_at"] >= since:
                self.state.hub.publish("approval.decided", approval_json(row), relay=False)
        with contextlib.suppress(Exception):
            await refresh_pending_gauge(self.state)
        if self.traffic_mark is not None:
            self._publish_traffic(await self.state.db.read(_traffic_after(self.traffic_mark)))
