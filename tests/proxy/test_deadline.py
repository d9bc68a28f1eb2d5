"""Reads under the per-connection deadline time out as under ``asyncio.timeout``.

The loop runs its timers in the order of their times, so each case orders "data arrives"
and "the deadline passes" by scheduling, not by measuring time.
"""

from __future__ import annotations

import asyncio

import pytest

from agentfirewall_proxy.client import ClientConnection
from agentfirewall_proxy.deadline import ReadDeadline
from agentfirewall_proxy.http1 import ParseError
from agentfirewall_proxy.options import Options
from agentfirewall_proxy.respond import response_head
from agentfirewall_proxy.upstream import UpstreamConnection, UpstreamError

pytestmark = pytest.mark.anyio


def _feed_later(reader: asyncio.StreamReader, delay: float, data: bytes) -> None:
    asyncio.get_running_loop().call_later(delay, reader.feed_data, data)


async def test_a_read_gets_its_data_or_times_out() -> None:
    deadline, reader = ReadDeadline(), asyncio.StreamReader()
    _feed_later(reader, 0.01, b"early")
    assert await deadline.read(reader, 0.5) == b"early"
    _feed_later(reader, 0.5, b"late")
    with pytest.raises(TimeoutError):
        await deadline.read(reader, 0.05)
    deadline.cancel()


async def test_a_later_read_keeps_its_own_later_deadline() -> None:
    deadline, reader = ReadDeadline(), asyncio.StreamReader()
    _feed_later(reader, 0.01, b"first")
    assert await deadline.read(reader, 0.1) == b"first"  # the timer is set for ~0.1 s
    _feed_later(reader, 0.3, b"second")  # after the first read's deadline, before its own
    assert await deadline.read(reader, 1.0) == b"second"
    deadline.cancel()


async def test_a_shorter_deadline_after_a_longer_one_fires_first() -> None:
    deadline, reader = ReadDeadline(), asyncio.StreamReader()
    _feed_later(reader, 0.01, b"first")
    assert await deadline.read(reader, 30.0) == b"first"  # the timer is set for ~30 s
    _feed_later(reader, 1.0, b"too late")
    with pytest.raises(TimeoutError):
        await deadline.read(reader, 0.05)
    deadline.cancel()


async def test_a_cancellation_from_elsewhere_stays_a_cancellation() -> None:
    deadline, reader = ReadDeadline(), asyncio.StreamReader()
    task = asyncio.ensure_future(deadline.read(reader, 30.0))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # expiring and cancelled from elsewhere in the same turn: cancelled, as asyncio.timeout
    task = asyncio.ensure_future(deadline.read(reader, 0.05))
    asyncio.get_running_loop().call_later(0.05, task.cancel)
    with pytest.raises(asyncio.CancelledError):
        await task
    deadline.cancel()


async def test_an_expired_read_leaves_the_task_uncancelled() -> None:
    deadline, reader = ReadDeadline(), asyncio.StreamReader()
    with pytest.raises(TimeoutError):
        await deadline.read(reader, 0.01)
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0
    await asyncio.sleep(0)  # no cancellation pending either
    deadline.cancel()


class _Writer:
    def __init__(self) -> None:
        self.transport = self

    def abort(self) -> None:
        pass

    def is_closing(self) -> bool:
        return False


async def test_an_idle_client_connection_gets_408() -> None:
    conn = ClientConnection(
        asyncio.StreamReader(),
        _Writer(),
        Options(idle_timeout=0.05),  # type: ignore[arg-type]
    )
    event = await conn.next_event(head=True)
    assert event == ParseError(408, "timed out reading the request")
    conn.abort()


async def test_a_slow_request_body_times_out() -> None:
    reader = asyncio.StreamReader()
    conn = ClientConnection(reader, _Writer(), Options(io_timeout=0.05))  # type: ignore[arg-type]
    reader.feed_data(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n12345")
    await conn.next_event(head=True)
    assert await conn.next_event(head=False) == b"12345"
    assert await conn.next_event(head=False) == ParseError(408, "timed out reading the request")
    conn.abort()


class _Gateway:
    options = Options(upstream_timeout=0.05)


async def test_an_upstream_that_does_not_answer_gets_504() -> None:
    reader = asyncio.StreamReader()
    up = UpstreamConnection(("http", "a", 80), reader, _Writer())  # type: ignore[arg-type]
    with pytest.raises(UpstreamError) as raised:
        await response_head(_Gateway(), up)  # type: ignore[arg-type]
    assert (raised.value.status, str(raised.value)) == (504, "the upstream did not answer in time")
    reader.feed_data(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    assert (await response_head(_Gateway(), up)).status == 200  # type: ignore[arg-type]
    up.abort()
