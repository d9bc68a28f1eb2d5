"""What an answer of Slack's Web API means, and when to try a message again (no I/O).

An answer is the call's data (HTTP 2xx, ``"ok": true``) or a :class:`Failure`:

- ``ratelimited``: HTTP 429 or Slack's ``ratelimited`` error (Slack posts about one message
  a second per channel); tried again after its ``Retry-After`` header, else the body's
  ``retry_after``, else the backoff;
- ``unavailable``: a 5xx, a timeout, a lost connection, a 2xx that is not Slack's JSON, or
  one of Slack's transient errors (``internal_error``, ``service_unavailable``...): tried
  again after a backoff that doubles from `RetryPolicy.first_backoff`;
- ``refused``: any other error (a wrong token, the bot not in the channel): not tried again.

A message is tried at most `RetryPolicy.attempts` times and never waits longer than
`RetryPolicy.max_wait` between two tries. A message given up is counted under its reason,
or ``queue_full`` (its channel's queue was full) or ``shutdown`` (the server stopped first).
A failure's `detail` is Slack's error code, the HTTP status or a fixed phrase, never text an
answer chose: it is safe in a log line, a metric's label or an audit event.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

__all__ = [
    "QUEUE_FULL",
    "RATELIMITED",
    "REASONS",
    "REFUSED",
    "SHUTDOWN",
    "UNAVAILABLE",
    "Failure",
    "RetryPolicy",
    "next_wait",
    "read_answer",
]

RATELIMITED, UNAVAILABLE, REFUSED = "ratelimited", "unavailable", "refused"
QUEUE_FULL, SHUTDOWN = "queue_full", "shutdown"
#: Every reason a message is given up for (the metric's label values).
REASONS = (RATELIMITED, UNAVAILABLE, REFUSED, QUEUE_FULL, SHUTDOWN)
#: Slack's errors that say "try again later" rather than "this will never work".
_TRANSIENT = frozenset({"internal_error", "fatal_error", "service_unavailable", "request_timeout"})
_CODE = re.compile(r"[a-z][a-z0-9_]{0,63}")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard the server tries to reach Slack, and how much it holds meanwhile."""

    attempts: int = 5  # tries per message, the first included
    first_backoff: float = 1.0  # seconds before the second try; doubles for each further one
    max_wait: float = 30.0  # the longest wait between two tries, a Retry-After included
    max_queued: int = 1000  # messages waiting per channel (a gateway batch holds up to 1000)
    call_timeout: float = 10.0  # seconds one call to Slack may take
    shutdown_grace: float = 5.0  # seconds the server's stop gives the queues to empty

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.max_queued < 1:
            raise ValueError("`attempts` and `max_queued` must be at least 1")
        times = (self.first_backoff, self.max_wait, self.call_timeout, self.shutdown_grace)
        if not all(math.isfinite(t) and t >= 0 for t in times):
            raise ValueError("waits and timeouts must be finite numbers of seconds, at least 0")


@dataclass(frozen=True, slots=True)
class Failure:
    """A try that did not deliver: why (one of `REASONS`), what was said, how long to wait."""

    reason: str
    detail: str
    retry_after: float | None = None


def read_answer(status: int, retry_after: str | None, body: bytes) -> dict[str, Any] | Failure:
    """The data of Slack's answer (HTTP `status`, its ``Retry-After`` header, `body`), or why
    it failed."""
    data = _json_object(body)
    code = _code(data.get("error")) if data is not None else None
    detail = code or f"HTTP {status}"
    wait = _seconds(retry_after)
    if wait is None and data is not None:
        wait = _seconds(data.get("retry_after"))
    if status == 429 or code == "ratelimited":
        return Failure(RATELIMITED, detail, wait)
    if status >= 500 or code in _TRANSIENT or (data is None and 200 <= status < 300):
        return Failure(UNAVAILABLE, detail, wait)
    if data is not None and data.get("ok") is True and 200 <= status < 300:
        return data
    return Failure(REFUSED, detail)


def next_wait(policy: RetryPolicy, failure: Failure, tries: int) -> float | None:
    """Seconds to wait before the next try of a message that failed its `tries`-th try;
    None when it is given up."""
    if failure.reason not in (RATELIMITED, UNAVAILABLE) or tries >= policy.attempts:
        return None
    if failure.retry_after is not None:
        return min(failure.retry_after, policy.max_wait)
    return min(policy.first_backoff * 2.0 ** min(tries - 1, 32), policy.max_wait)


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def _code(value: object) -> str | None:
    """Slack's error code when it looks like one (``channel_not_found``); else a fixed word."""
    if value is None:
        return None
    if isinstance(value, str) and _CODE.fullmatch(value):
        return value
    return "unrecognised_error"


def _seconds(value: object) -> float | None:
    """A ``Retry-After`` in seconds (a number of at least 0), else None."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    try:
        seconds = float(value)
    except (ValueError, OverflowError):
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None
