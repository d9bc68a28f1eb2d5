"""Retry arithmetic: which failures are retried, and how long to wait before the next try.

Pure functions; the clients hand them to tenacity. The rules:

* ``429`` is always retried (the server refused before doing anything), after the
  ``Retry-After`` it asked for; a wait longer than ``max_wait`` is not worth a retry and
  raises :class:`~agentfirewall.errors.RateLimitError` at once.
* A connection that never opened (connect error or timeout, pool timeout) is always
  retried: the request never reached the server.
* ``502``/``503``/``504``, read timeouts and dropped connections may have reached the
  server, so they are retried only for calls that are safe to replay: reads, and writes
  that carry an ``Idempotency-Key`` the server de-duplicates on (every ``request_action``).
  ``execute`` carries none and is never replayed once it may have been sent.
* An answer that says not to retry (``retryable`` False: an execute that may have reached
  the upstream, an answer larger than the client reads) is not retried.
* At most ``max_retries`` retries; backoff doubles from ``backoff`` up to ``max_backoff``.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from agentfirewall.errors import RateLimitError, ServerError, TransportError

__all__ = ["RetryPolicy", "is_unsent", "transport_error"]

_RETRY_STATUSES = frozenset({502, 503, 504})
_UNSENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def is_unsent(exc: BaseException) -> bool:
    """True when a TransportError's cause shows the request never left this process."""
    return isinstance(exc, TransportError) and isinstance(exc.__cause__, _UNSENT)


def transport_error(exc: httpx.TransportError, url: str) -> TransportError:
    """Our TransportError for an httpx one, naming the server but never a header."""
    kind = type(exc).__name__
    hint = _HINT if isinstance(exc, httpx.ConnectError) else ""
    return TransportError(f"cannot reach the TameFlare server at `{url}`: {kind}: {exc}{hint}")


_HINT = " (is it running — `tf up` — and is `AAF_BASE_URL` its address, ending in `/api`?)"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How many times and how long to retry; see the module docstring."""

    max_retries: int = 3
    backoff: float = 0.5
    max_backoff: float = 8.0
    max_wait: float = 60.0

    def should_retry(self, exc: BaseException, *, replay_safe: bool) -> bool:
        if isinstance(exc, RateLimitError):
            return exc.retry_after is None or exc.retry_after <= self.max_wait
        if isinstance(exc, TransportError):
            return replay_safe or is_unsent(exc)
        if isinstance(exc, ServerError):
            return replay_safe and exc.status_code in _RETRY_STATUSES and exc.retryable is not False
        return False

    def delay(self, exc: BaseException | None, attempt: int) -> float:
        """Seconds to sleep after failed attempt number `attempt` (1-based)."""
        if isinstance(exc, RateLimitError) and exc.retry_after is not None:
            return float(min(exc.retry_after, self.max_wait))
        return float(min(self.backoff * (2 ** (attempt - 1)), self.max_backoff))
