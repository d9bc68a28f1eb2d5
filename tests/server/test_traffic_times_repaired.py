"""Traffic rows that 0.1.0 stored with an impossible time (inf, NaN, the year 10⁵) no longer
break every listing: migration 0012 gives each the time of its nearest sound neighbour."""

from __future__ import annotations

import math
from typing import Any

from sqlalchemy import select

from agentfirewall_server.clock import parse_time
from agentfirewall_server.store.db import Database
from agentfirewall_server.store.migrate import upgrade
from agentfirewall_server.store.schema import traffic


def _rows(database_url: str, times: list[float]) -> None:
    db = Database(database_url)
    try:
        with db.writer_engine.connect() as conn:
            upgrade(conn, "0011")
            conn.execute(
                traffic.insert(),
                [
                    {"request_id": f"r{i}", "agent": "Bot", "created_at": t}
                    for i, t in enumerate(times)
                ],
            )
            conn.commit()
    finally:
        db.close()


def test_impossible_times_take_their_neighbours(database_url: str, harness_factory: Any) -> None:
    postgres = database_url.startswith("postgres")
    stored = [math.inf, 1000.5, -math.inf, 1e300, 2000.25, -1e300]
    if postgres:  # SQLite cannot store a NaN (it becomes NULL); PostgreSQL keeps it
        stored.insert(3, math.nan)
    _rows(database_url, stored)
    h = harness_factory()  # the app migrates to the newest revision on start
    answer = h.admin("GET", "/v1/traffic", params={"limit": 100})
    assert answer.status_code == 200, answer.text
    listed = {row["request_id"]: parse_time(row["created_at"]) for row in answer.json()["traffic"]}
    assert len(listed) == len(stored)
    got = h.state.db.read_sync(
        lambda c: c.execute(select(traffic.c.created_at).order_by(traffic.c.id)).scalars().all()
    )
    expected = [1000.5, 1000.5, 1000.5, 1000.5, 2000.25, 2000.25]
    if postgres:
        expected.insert(3, 1000.5)
    assert got == expected  # the first row had none before it: the next sound one
    assert listed["r0"] == 1000.5
