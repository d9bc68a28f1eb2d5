"""Time and ids: RFC 3339 UTC strings on the wire, float seconds in the store."""

from __future__ import annotations

import hashlib
import itertools
import os
import threading
import time
from datetime import UTC, datetime

__all__ = ["new_id", "now", "parse_time", "random_bytes", "rfc3339"]

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_PAIRS = tuple(a + b for a in _CROCKFORD for b in _CROCKFORD)  # 10 bits -> 2 characters
_SHIFTS = tuple(range(120, -1, -10))  # 130 bits (50 of milliseconds, 80 random), 26 chars


def now() -> float:
    return time.time()


def rfc3339(ts: float | None) -> str | None:
    """`2026-11-25T09:00:00.123Z` (milliseconds, UTC) or None."""
    if ts is None:
        return None
    m = datetime.fromtimestamp(ts, tz=UTC)  # (strftime writes the year 1 as `1`, unpadded)
    return (
        f"{m.year:04d}-{m.month:02d}-{m.day:02d}T{m.hour:02d}:{m.minute:02d}:{m.second:02d}."
        f"{m.microsecond // 1000:03d}Z"
    )


#: The instants `rfc3339` can write: years 1 to 9999, UTC.
_FIRST = datetime(1, 1, 1, tzinfo=UTC).timestamp()
_LAST = datetime(9999, 12, 31, 23, 59, 59, 999_000, tzinfo=UTC).timestamp()


def parse_time(text: str) -> float:
    """Unix seconds from an RFC 3339 string (or a number); ValueError when unparsable, not
    finite or outside the years 1 to 9999 in UTC (a time `rfc3339` could not write back)."""
    try:
        stamp = float(text)
    except ValueError:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        stamp = moment.timestamp()
    if not _FIRST <= stamp <= _LAST:  # NaN too
        raise ValueError(f"time out of range: `{text[:40]}`")
    return stamp


# os.urandom costs about 100 µs per call in some sandboxes (a syscall each time). Ids and
# token nonces need uniqueness and unpredictability, not a syscall each: a keyed BLAKE2b
# over a counter (a PRF with a 256-bit key from the OS) gives both at about 1 µs.
_PRF_KEY = os.urandom(32)
_COUNTER = itertools.count()
_LOCK = threading.Lock()


def random_bytes(size: int) -> bytes:
    """`size` (at most 64) unpredictable bytes, unique per call in this process."""
    with _LOCK:
        n = next(_COUNTER)
    return hashlib.blake2b(n.to_bytes(16, "big"), key=_PRF_KEY, digest_size=size).digest()


def new_id(prefix: str) -> str:
    """A sortable id: `prefix` + 10 chars of milliseconds + 16 random chars (ULID-like)."""
    value = int(time.time() * 1000) << 80 | int.from_bytes(random_bytes(10), "big")
    return prefix + "".join([_PAIRS[value >> shift & 1023] for shift in _SHIFTS])
