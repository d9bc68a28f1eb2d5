"""Pre-filled databases for `server.py`: N actions in ours, N rows in the bare app's table.

Built once per size and kept in a cache directory (default /tmp/af-bench-fill); every run
copies the cached files into its own temporary directory, so runs start from the same state.

Ours is filled as the server writes it: a real server records one action, then its
``action_requests`` row and its two audit events are repeated N times with new sortable ids
(older than any id the run will create), timestamps one millisecond apart and a valid hash
chain, all with ``executemany`` in one transaction.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from agentfirewall_server.audit import content_digest, link_hash
from agentfirewall_server.clock import _PAIRS, random_bytes

_CHUNK = 50_000
_SHIFTS = tuple(range(120, -1, -10))  # 130 bits (50 of milliseconds, 80 random), 26 chars


def _old_id(prefix: str, ms: int) -> str:
    value = ms << 80 | int.from_bytes(random_bytes(10), "big")
    return prefix + "".join([_PAIRS[value >> shift & 1023] for shift in _SHIFTS])


def _fill_ours(db: Path, n: int) -> None:
    conn = sqlite3.connect(db, isolation_level=None)
    conn.row_factory = sqlite3.Row
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        action = dict(conn.execute("SELECT * FROM action_requests LIMIT 1").fetchone())
        events = [
            dict(r)
            for r in conn.execute(
                "SELECT * FROM audit_events WHERE subject = ? ORDER BY id", (action["id"],)
            )
        ]
        last_id, last_hash = conn.execute(
            "SELECT id, hash FROM audit_events ORDER BY id DESC LIMIT 1"
        ).fetchone()
        a_cols = list(action)
        e_cols = list(events[0])
        a_sql = f"INSERT INTO action_requests ({', '.join(a_cols)}) VALUES ({', '.join('?' * len(a_cols))})"  # noqa: S608,E501
        e_sql = f"INSERT INTO audit_events ({', '.join(e_cols)}) VALUES ({', '.join('?' * len(e_cols))})"  # noqa: S608,E501
        start_ms = int(time.time() * 1000) - n - 3_600_000  # older than anything the run adds
        conn.execute("BEGIN")
        for lo in range(0, n, _CHUNK):
            a_rows: list[tuple[Any, ...]] = []
            e_rows: list[tuple[Any, ...]] = []
            for i in range(lo, min(n, lo + _CHUNK)):
                ms = start_ms + i
                action_id = _old_id("act_", ms)
                stamp = ms / 1000
                action.update(id=action_id, created_at=stamp, updated_at=stamp)
                a_rows.append(tuple(action.values()))
                for event in events:
                    last_id += 1
                    event.update(subject=action_id, created_at=round(stamp, 6))
                    event.update(id=last_id, prev_hash=last_hash)
                    event["hash"] = last_hash = link_hash(last_id, last_hash, content_digest(event))
                    e_rows.append(tuple(event.values()))
            conn.executemany(a_sql, a_rows)
            conn.executemany(e_sql, e_rows)
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


def _fill_bare(db: Path, n: int, body: str) -> None:
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE IF NOT EXISTS audit (id INTEGER PRIMARY KEY, body TEXT)")
        conn.execute("BEGIN")
        rows: Iterator[tuple[str]] = ((body,) for _ in range(n))
        conn.executemany("INSERT INTO audit (body) VALUES (?)", rows)
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


def prepared(
    cache: Path,
    n: int,
    start_ours: Callable[[Path], tuple[Any, str, str, Path]],
    post_one: Callable[[str, str], None],
    spec: dict[str, Any],
) -> Path:
    """The cached directory holding ``tf/`` (ours, with ``bench.key``) and ``bare.db``."""
    where = cache / f"fill-{n}"
    if (where / "complete").exists():
        return where
    shutil.rmtree(where, ignore_errors=True)
    where.mkdir(parents=True)
    started = time.perf_counter()
    proc, url, key, db = start_ours(where)
    try:
        post_one(url, key)
    finally:
        proc.terminate()
        proc.wait(30)
    _fill_ours(db, n)
    _fill_bare(where / "bare.db", n, json.dumps(spec["action_spec"]))
    (where / "complete").write_text(f"{time.perf_counter() - started:.1f} s\n")
    print(f"built the {n:,}-action databases in {time.perf_counter() - started:.0f} s")
    return where


def copy_ours(source: Path, where: Path) -> None:
    """The cached control-plane data directory, copied (the run writes to its copy only)."""
    shutil.copytree(source / "tf", where / "tf")


def copy_bare(source: Path, where: Path) -> None:
    shutil.copyfile(source / "bare.db", where / "bare.db")
