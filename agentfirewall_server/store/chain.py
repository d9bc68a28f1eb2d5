"""The audit log's hash chain: how an event is linked after the one before it.

Each event's ``hash`` is ``SHA-256("<id>:<previous hash>:<content digest>")``; the first
event follows `GENESIS`. Pure functions: the writer (`store.db`) links a batch of prepared
events in its transaction, `audit` prepares, appends and verifies them.
"""

from __future__ import annotations

import hashlib
from typing import Any

__all__ = ["GENESIS", "link_events", "link_hash"]

GENESIS = "0" * 64


def link_hash(event_id: int, prev_hash: str, digest: str) -> str:
    """An event's hash: its id, the previous event's hash and its content digest."""
    return hashlib.sha256(f"{event_id}:{prev_hash}:{digest}".encode()).hexdigest()


def link_events(
    head: tuple[int, str] | None, prepared: list[dict[str, Any]], *, in_place: bool = False
) -> list[dict[str, Any]]:
    """Chain prepared events after `head` (the last event's id and hash; None: empty log).

    `in_place` sets the chain fields on the prepared dicts themselves (they keep their
    ``_digest`` key, which a column-wise insert ignores) instead of copying them.
    """
    last_id, last_hash = head if head else (0, GENESIS)
    rows = []
    for event in prepared:
        row = event if in_place else {k: v for k, v in event.items() if k != "_digest"}
        row["id"], row["prev_hash"] = last_id + 1, last_hash
        row["hash"] = link_hash(row["id"], last_hash, event["_digest"])
        rows.append(row)
        last_id, last_hash = row["id"], row["hash"]
    return rows
