"""``FeedReader.read_some(n)`` reads exactly as ``asyncio.StreamReader.read(n)`` does.

Both readers go through the same random feeds, EOFs, errors and reads (a read that must
wait is left waiting while the next steps run), over a transport that records when it
is paused and resumed; what each read gave or raised, the pauses and what is left must
be the same. This is also the test that fails on a Python whose StreamReader keeps its
state in other attributes than the ones ``feedreader.py`` relies on.
"""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from agentfirewall_proxy.feedreader import FeedReader
from tests.fuzzscale import examples

_STEP = st.one_of(
    st.tuples(st.just("feed"), st.binary(min_size=0, max_size=40)),
    st.tuples(st.just("read"), st.integers(1, 50)),
    st.tuples(st.just("eof"), st.none()),
    st.tuples(st.just("error"), st.none()),
)


class _Transport:
    """Records the reader's flow control (a transport that can pause)."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def pause_reading(self) -> None:
        self.calls.append("pause")

    def resume_reading(self) -> None:
        self.calls.append("resume")


async def _outcome(read: asyncio.Future[bytes]) -> object:
    try:
        return await read
    except Exception as exc:
        return type(exc).__name__


async def _drive(fast: bool, steps: list[tuple[str, object]], limit: int) -> list[object]:
    reader = FeedReader(limit=limit) if fast else asyncio.StreamReader(limit=limit)
    transport = _Transport()
    reader.set_transport(transport)  # type: ignore[arg-type]
    seen: list[object] = []
    waiting: asyncio.Future[bytes] | None = None
    ended = False
    for kind, arg in steps:
        if kind == "feed" and not ended:
            assert isinstance(arg, bytes)
            reader.feed_data(arg)
        elif kind == "eof":
            reader.feed_eof()
            ended = True
        elif kind == "error":
            reader.set_exception(ConnectionResetError("reset"))
        elif kind == "read" and waiting is None:
            assert isinstance(arg, int)
            read = reader.read_some(arg) if isinstance(reader, FeedReader) else reader.read(arg)
            waiting = asyncio.ensure_future(read)
        for _ in range(3):
            await asyncio.sleep(0)
        if waiting is not None and waiting.done():
            seen.append(await _outcome(waiting))
            waiting = None
    if waiting is not None:
        reader.feed_eof()
        seen.append(await _outcome(waiting))
    seen += [transport.calls, reader.at_eof(), reader.exception() is not None]
    return seen


@settings(max_examples=examples(300), deadline=None)
@given(st.lists(_STEP, max_size=30), st.integers(1, 64))
def test_read_some_reads_as_read(steps: list[tuple[str, object]], limit: int) -> None:
    plain = asyncio.run(_drive(False, steps, limit))
    fast = asyncio.run(_drive(True, steps, limit))
    assert fast == plain
