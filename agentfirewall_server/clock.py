"""Time and ids: RFC 3339 UTC strings on the wire, float seconds in the store."""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime

__all__ = ["new_id", "now", "parse_time", "rfc3339"]

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def now() -> float:
    return time.time()


def rfc3339(ts: float | None) -> str | None:
    """`2026-11-25T09:00:00.123Z` (milliseconds, UTC) or None."""
    if ts is None:
        return None
    moment = datetime.fromtimestamp(ts, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_time(text: str) -> float:
    """Unix seconds from an RFC 3339 string (or a number); ValueError when unparsable."""
    try:
        return float(text)
    except ValueError:
        pass
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def new_id(prefix: str) -> str:
    """A sortable id: `prefix` + 10 chars of milliseconds + 16 random chars (ULID-like)."""
    ms = int(time.time() * 1000)
    stamp = ""
    for _ in range(10):
        stamp = _CROCKFORD[ms & 31] + stamp
        ms >>= 5
    bits = int.from_bytes(secrets.token_bytes(10), "big")  # 80 random bits, 16 chars
    rand = "".join(_CROCKFORD[(bits >> (5 * i)) & 31] for i in range(16))
    return f"{prefix}{stamp}{rand}"
