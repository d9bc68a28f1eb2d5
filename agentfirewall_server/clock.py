"""Time and ids: RFC 3339 UTC strings on the wire, float seconds in the store."""

from __future__ import annotations

import hashlib
import itertools
import os
import threading
import time
from datetime import UTC, datetime
from typing import Any

__all__ = ["new_id", "now", "parse_time", "random_bytes", "rfc3339"]

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_PAIRS = tuple(a + b for a in _CROCKFORD for b in _CROCKFORD)  # 10 bits -> 2 characters
_STAMP_SHIFTS = tuple(range(40, -1, -10))  # 50 bits of milliseconds: 10 characters
#: a byte -> the Crockford character of its low 5 bits (256 is a multiple of 32: a random
#: byte gives a uniformly random character)
_FIVE_BITS = bytes.maketrans(bytes(range(256)), bytes(ord(_CROCKFORD[b & 31]) for b in range(256)))
_stamp: tuple[int, str] = (-1, "")  # the last millisecond written, and its 10 characters


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


#: The keyed BLAKE2b state before any data, per digest size: each call copies it (a key
#: costs a compression of its own when the state is made afresh)
_KEYED: dict[int, Any] = {}


def random_bytes(size: int) -> bytes:
    """`size` (at most 64) unpredictable bytes, unique per call in this process."""
    keyed = _KEYED.get(size)
    if keyed is None:
        keyed = _KEYED[size] = hashlib.blake2b(key=_PRF_KEY, digest_size=size)
    with _LOCK:
        n = next(_COUNTER)
    prf = keyed.copy()  # = hashlib.blake2b(n.to_bytes(16, "big"), key=_PRF_KEY, ...)
    prf.update(n.to_bytes(16, "big"))
    digest: bytes = prf.digest()
    return digest


def new_id(prefix: str) -> str:
    """A sortable id: `prefix` + 10 chars of milliseconds + 16 random chars (ULID-like),
    in Crockford's base 32: 50 bits of the time, then 80 random bits (5 per character)."""
    global _stamp
    ms = int(time.time() * 1000) & (1 << 50) - 1
    stamp = _stamp  # (one read: another thread may replace it meanwhile)
    if stamp[0] != ms:  # a new millisecond: written once for every id made in it
        stamp = _stamp = (ms, "".join([_PAIRS[ms >> shift & 1023] for shift in _STAMP_SHIFTS]))
    return prefix + stamp[1] + random_bytes(16).translate(_FIVE_BITS).decode("ascii")
