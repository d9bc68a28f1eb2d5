"""The rules Slack messages are sent by (`notify/delivery.py`, `notify/outbox.py`), for every
answer Slack could give and every order failures could come in."""

from __future__ import annotations

import asyncio
import json
import math
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentfirewall_server.notify.delivery import (
    RATELIMITED,
    REFUSED,
    SHUTDOWN,
    UNAVAILABLE,
    Failure,
    RetryPolicy,
    next_wait,
    read_answer,
)
from agentfirewall_server.notify.outbox import Message, Outbox, Outcome

TOKEN = "xoxb-1234-5678-secretsecret"
#: What a failure may say: Slack's error code, the HTTP status or one of two fixed words.
SAFE_DETAIL = re.compile(r"[a-z][a-z0-9_]{0,63}|HTTP \d{3}")

# Slack's answers as its documentation shows them, and what each means.
TABLE = [
    (200, None, {"ok": True, "ts": "1.2", "channel": "C1"}, None, None),
    (429, "30", {"ok": False, "error": "ratelimited"}, RATELIMITED, 30.0),
    (429, None, b"", RATELIMITED, None),
    (200, None, {"ok": False, "error": "ratelimited", "retry_after": 2}, RATELIMITED, 2.0),
    (503, "5", b"<html>down</html>", UNAVAILABLE, 5.0),
    (500, None, {"ok": False, "error": "internal_error"}, UNAVAILABLE, None),
    (200, None, {"ok": False, "error": "fatal_error"}, UNAVAILABLE, None),
    (200, None, {"ok": False, "error": "service_unavailable"}, UNAVAILABLE, None),
    (200, None, b"not json", UNAVAILABLE, None),
    (200, None, {"ok": False, "error": "invalid_auth"}, REFUSED, None),
    (200, None, {"ok": False, "error": "channel_not_found"}, REFUSED, None),
    (200, None, {"ok": False, "error": "not_in_channel"}, REFUSED, None),
    (404, None, b"<html>no such method</html>", REFUSED, None),
    (302, None, b"", REFUSED, None),
    (200, "-1", {"ok": False}, REFUSED, None),
]


@pytest.mark.parametrize(("status", "retry_after", "body", "reason", "wait"), TABLE)
def test_slack_answers_as_documented(
    status: int, retry_after: str | None, body: Any, reason: str | None, wait: float | None
) -> None:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    answer = read_answer(status, retry_after, raw)
    if reason is None:
        assert answer == body
        return
    assert isinstance(answer, Failure)
    assert (answer.reason, answer.retry_after) == (reason, wait)


_CODES = st.sampled_from(["ratelimited", "invalid_auth", "internal_error", "msg_too_long"])
_VALUES = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
_BODIES = st.binary(max_size=64) | st.fixed_dictionaries(
    {},
    optional={
        "ok": _VALUES,
        "error": _CODES | st.text(max_size=80) | st.just(f"invalid_auth: {TOKEN}") | _VALUES,
        "retry_after": _VALUES,
    },
).map(lambda d: json.dumps(d).encode())
_HEADERS = st.none() | st.text(max_size=12) | st.integers(-5, 10**9).map(str) | st.floats().map(str)


@given(status=st.integers(100, 599), retry_after=_HEADERS, body=_BODIES)
def test_any_answer_is_data_or_a_failure_that_quotes_nothing_it_chose(
    status: int, retry_after: str | None, body: bytes
) -> None:
    answer = read_answer(status, retry_after, body)
    if not isinstance(answer, Failure):
        assert 200 <= status < 300
        assert answer["ok"] is True
        return
    assert answer.reason in (RATELIMITED, UNAVAILABLE, REFUSED)
    assert SAFE_DETAIL.fullmatch(answer.detail), answer.detail
    assert "xoxb" not in answer.detail
    if answer.retry_after is not None:
        assert math.isfinite(answer.retry_after)
        assert answer.retry_after >= 0
    if status == 429:
        assert answer.reason == RATELIMITED
    elif status >= 500:
        assert answer.reason in (RATELIMITED, UNAVAILABLE)


_POLICIES = st.builds(
    RetryPolicy,
    attempts=st.integers(1, 8),
    first_backoff=st.floats(0, 10),
    max_wait=st.floats(0, 60),
)
_FAILURES = st.builds(
    Failure,
    reason=st.sampled_from([RATELIMITED, UNAVAILABLE, REFUSED, SHUTDOWN]),
    detail=st.just("HTTP 503"),
    retry_after=st.none() | st.floats(0, 10**6),
)


@given(policy=_POLICIES, failures=st.lists(_FAILURES, min_size=1, max_size=12))
def test_a_message_is_tried_at_most_attempts_times_waiting_within_bounds(
    policy: RetryPolicy, failures: list[Failure]
) -> None:
    tries = 0
    for failure in failures:
        tries += 1
        wait = next_wait(policy, failure, tries)
        if wait is None:
            assert failure.reason in (REFUSED, SHUTDOWN) or tries == policy.attempts
            break
        assert failure.reason in (RATELIMITED, UNAVAILABLE)
        assert 0 <= wait <= policy.max_wait
        if failure.retry_after is not None:  # Retry-After honoured, up to the bound
            assert wait == min(failure.retry_after, policy.max_wait)
    assert tries <= policy.attempts


def test_the_backoff_doubles_up_to_its_bound() -> None:
    policy = RetryPolicy(attempts=7, first_backoff=1.0, max_wait=10.0)
    down = Failure(UNAVAILABLE, "HTTP 503")
    assert [next_wait(policy, down, n) for n in range(1, 8)] == [1, 2, 4, 8, 10, 10, None]


def test_a_policy_that_could_not_end_is_refused() -> None:
    for bad in ({"attempts": 0}, {"max_queued": 0}, {"max_wait": math.inf},
                {"first_backoff": -1.0}, {"shutdown_grace": math.nan}):  # fmt: skip
        with pytest.raises(ValueError, match="must be"):
            RetryPolicy(**bad)  # type: ignore[arg-type]


# The outbox: each message's tries answered from a script, no waits.
_SCRIPTS = st.lists(st.lists(st.sampled_from(["ok", "retry", "refused"]), max_size=6),
                    min_size=1, max_size=8)  # fmt: skip


@given(scripts=_SCRIPTS, channels=st.integers(1, 3), attempts=st.integers(1, 4))
def test_messages_leave_in_order_each_delivered_or_given_up_once(
    scripts: list[list[str]], channels: int, attempts: int
) -> None:
    """Whatever fails when: a channel's messages are tried in the order they came (a
    message's retries before the next one), each at most `attempts` times, and ends
    delivered or given up, exactly once."""
    policy = RetryPolicy(attempts=attempts, first_backoff=0.0, max_wait=0.0)
    tried: list[int] = []
    delivered: list[int] = []
    given_up: list[int] = []

    async def send(message: Message) -> Outcome:
        number = message.approval["n"]
        tried.append(number)
        script = scripts[number]
        step = script[message.tries - 1] if message.tries <= len(script) else "ok"
        if step == "ok":
            delivered.append(number)
            return None
        return Failure(UNAVAILABLE if step == "retry" else REFUSED, "HTTP 503")

    async def run() -> None:
        outbox = Outbox(send, lambda m, f: given_up.append(m.approval["n"]), lambda: policy)
        for number in range(len(scripts)):
            outbox.put(Message("post", f"C{number % channels}", {"id": str(number), "n": number}))
        while outbox.waiting:
            await asyncio.sleep(0)
        assert outbox.running == 0
        await outbox.close()

    asyncio.run(run())
    assert sorted(delivered + given_up) == list(range(len(scripts)))
    for channel in range(channels):
        mine = [n for n in tried if n % channels == channel]
        assert mine == sorted(mine)  # in order, retries of one before the next
    for number, script in enumerate(scripts):
        assert 1 <= tried.count(number) <= attempts
        if number in given_up:
            first_refusal = script.index("refused") + 1 if "refused" in script else None
            assert tried.count(number) in (attempts, first_refusal)


def test_a_message_past_the_queue_bound_is_given_up_at_once() -> None:
    policy = RetryPolicy(max_queued=2, shutdown_grace=0.1)
    given_up: list[tuple[str, str]] = []

    async def never(message: Message) -> Outcome:
        await asyncio.sleep(3600)
        return None

    async def run() -> None:
        outbox = Outbox(never, lambda m, f: given_up.append((m.approval["id"], f.reason)),
                        lambda: policy)  # fmt: skip
        for n in range(4):
            outbox.put(Message("post", "C1", {"id": str(n)}))
        assert given_up == [("2", "queue_full"), ("3", "queue_full")]
        await outbox.close()  # the sleeper is cancelled after the grace: given up too
        assert outbox.running == 0

    asyncio.run(run())
    assert sorted(given_up)[:2] == [("0", "shutdown"), ("1", "shutdown")]
