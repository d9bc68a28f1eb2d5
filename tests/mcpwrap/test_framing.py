"""Newline-delimited framing: any mix of message sizes, fed in any chunking, comes out as the
same messages in order, each oversized one as a single TooLarge marker holding its first
bytes (never a crash, never a message split or merged)."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from agentfirewall_proxy.mcpwrap.framing import HEAD, TooLarge, read_message
from tests.fuzzscale import examples

LIMIT = 64


async def _read_all(chunks: list[bytes]) -> list[bytes | TooLarge]:
    reader = asyncio.StreamReader(limit=LIMIT)
    for chunk in chunks:
        reader.feed_data(chunk)
    reader.feed_eof()
    out: list[bytes | TooLarge] = []
    while (message := await read_message(reader)) is not None:
        out.append(message)
    return out


@settings(max_examples=examples(100), deadline=None)
@given(
    st.lists(st.binary(max_size=3 * LIMIT).map(lambda b: b.replace(b"\n", b"x")), max_size=8),
    st.lists(st.integers(min_value=1, max_value=2 * LIMIT), min_size=1, max_size=6),
)
def test_messages_survive_any_chunking(messages: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(m + b"\n" for m in messages)
    chunks, at, i = [], 0, 0
    while at < len(stream):
        size = cuts[i % len(cuts)]
        chunks.append(stream[at : at + size])
        at, i = at + size, i + 1
    got = asyncio.run(_read_all(chunks))
    expected: list[bytes | int] = [m if len(m) <= LIMIT else len(m) for m in messages]
    assert [g if isinstance(g, bytes) else "big" for g in got] == [
        e if isinstance(e, bytes) else "big" for e in expected
    ]
    for g, m in zip(got, messages, strict=True):
        if isinstance(g, TooLarge):
            assert g.size >= LIMIT  # the marker reports at least the limit it overran
            assert m.startswith(g.head)  # its first bytes (where its id is read)
            assert len(g.head) >= min(LIMIT, HEAD)
