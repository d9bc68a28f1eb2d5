"""Sign-in throttling: failed sign-ins slow down further tries, per account and per address.

Failures are audit events (``user.login_failed``, subject the email tried, ``data.address``
the client address), so every replica sharing a database sees the same count and the
record is the evidence. After ``login_free_failures`` failures within
:data:`WINDOW_SECONDS` — for the account since its last successful sign-in, for the
address whatever account it tried — each further try must wait ``2 ** (n - free)``
seconds after the last failure (1, 2, 4, ... up to ``login_max_delay_seconds``); a try
made earlier is answered 429 with ``Retry-After`` and its password is not checked.
In one process, only one sign-in per account and per address is checked at a time, so
parallel guesses cannot all start before the first failure is recorded.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, func, select

from agentfirewall_server.audit import append_event
from agentfirewall_server.store.schema import audit_events
from agentfirewall_server.web import ApiError

__all__ = ["WINDOW_SECONDS", "SigninThrottle", "record_failure", "retry_after"]

WINDOW_SECONDS = 3600.0
FAILED = "user.login_failed"


def _delay(failures: list[float], free: int, cap: int, now: float) -> float:
    if len(failures) < free:
        return 0.0
    wait = min(2.0 ** (len(failures) - free), float(cap))
    return max(0.0, failures[-1] + wait - now)


def retry_after(
    email: str, address: str, now: float, free: int, cap: int
) -> Callable[[Connection], int | None]:
    """A read job: the seconds to wait before `email` may try again from `address`."""

    def run(conn: Connection) -> int | None:
        since = now - WINDOW_SECONDS
        last_ok = conn.execute(
            select(func.max(audit_events.c.created_at)).where(
                audit_events.c.event_type == "user.login",
                audit_events.c.created_at >= since,
                audit_events.c.actor == email,
            )
        ).scalar()
        rows = conn.execute(
            select(audit_events.c.subject, audit_events.c.data, audit_events.c.created_at)
            .where(audit_events.c.event_type == FAILED, audit_events.c.created_at >= since)
            .order_by(audit_events.c.created_at)
        ).all()
        by_account: list[float] = []
        by_address: list[float] = []
        for subject, data, stamp in rows:
            if subject == email and (last_ok is None or stamp > last_ok):
                by_account.append(stamp)
            if json.loads(data).get("address") == address:
                by_address.append(stamp)
        wait = max(_delay(by_account, free, cap, now), _delay(by_address, free, cap, now))
        return math.ceil(wait) if wait > 0 else None

    return run


def record_failure(email: str, address: str, now: float) -> Callable[[Connection], None]:
    """A write job: the failed sign-in, in the audit log."""

    def run(conn: Connection) -> None:
        append_event(
            conn,
            FAILED,
            actor=f"address:{address}"[:320],
            now=now,
            subject=email[:200],
            data={"address": address},
        )

    return run


def throttled(seconds: int) -> ApiError:
    return ApiError(
        429,
        f"too many failed sign-ins: try again in {seconds} s",
        headers={"Retry-After": str(seconds)},
        retry_after=seconds,
    )


class SigninThrottle:
    """The sign-ins being checked in this process, by account and by address."""

    def __init__(self) -> None:
        self._busy: set[str] = set()

    @contextmanager
    def one_at_a_time(self, email: str, address: str) -> Iterator[None]:
        keys = (f"account:{email}", f"address:{address}")
        if any(k in self._busy for k in keys):
            raise throttled(1)
        self._busy.update(keys)
        try:
            yield
        finally:
            self._busy.difference_update(keys)
