"""What an event stream costs the gateway is bounded (``agentfirewall_proxy/guarded.py``,
``eventwire.EventBuffer``).

Attack: an upstream ``text/event-stream`` that never ends an event (``data: x`` lines, no
blank line) in 4 KiB chunks. Searched again from its start at each chunk, the pending
event cost the gateway's one event loop the square of its length (4 MiB: 36 s, other
requests waiting 16 s). Each byte is now searched once, counted here at two sizes; an
event cut into feeds at any point is cut where a whole read cuts it; and an event (or
the events held back before it) larger than the inspection limit ends the stream, its
reason recorded, as other streams the content rules cannot check do.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest

from agentfirewall_proxy import eventwire
from agentfirewall_proxy.eventwire import EventBuffer, event_end
from tests.proxy.rawupstream import (
    RawUpstream,
    dechunked,
    record_at,
    sse_answer,
    start_raw_gateway,
    status_of,
)
from tests.proxy.support import connector, rule
from tests.proxy.test_guarded_streams import POLICY, World, _delta

#: 4 KiB of data lines, no blank line: an event that does not end
LINES = b"data: x\n" * 512


class _Counted:
    """The blank-line search, counting the bytes each search may read."""

    def __init__(self, pattern: re.Pattern[bytes]) -> None:
        self.pattern, self.read = pattern, 0

    def search(self, data: bytes, start: int = 0) -> re.Match[bytes] | None:
        self.read += len(data) - start
        return self.pattern.search(data, start)


def test_an_event_that_never_ends_is_searched_once_per_byte(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    counted = _Counted(eventwire._BLANK)
    monkeypatch.setattr(eventwire, "_BLANK", counted)
    for chunks in (64, 256):  # (searched from the start each time: 16 times more, not 4)
        counted.read = 0
        events = EventBuffer()
        assert all(events.feed(LINES) == [] for _ in range(chunks))
        assert len(events) == chunks * len(LINES)
        assert counted.read <= chunks * (len(LINES) + 2), chunks
        assert events.finish() == [LINES * chunks]


STREAM = (b"data: a\r\n\r\n: c\rdata: b\r\rdata: c\n\r\ndata: d\n\n"
          b"data: e\r\n\r\ndata: \r\n\rdata: f")  # fmt: skip


def _whole(stream: bytes) -> list[bytes]:
    """The events of `stream` read whole (:func:`event_end` from each start)."""
    found = []
    while (end := event_end(stream)) >= 0:
        found.append(stream[:end])
        stream = stream[end:]
    return [*found, stream] if stream else found


def test_an_event_stream_cut_into_feeds_anywhere_is_cut_into_the_same_events() -> None:
    """Mixed line ends (a blank line is two or three bytes): every split point, and a byte
    at a time, so a blank line begun in one feed and ended in the next is found."""
    whole = _whole(STREAM)
    assert len(whole) == 6
    splits = [[STREAM[:cut], STREAM[cut:]] for cut in range(1, len(STREAM))]
    for feeds in [*splits, [STREAM[i : i + 1] for i in range(len(STREAM))]]:
        events = EventBuffer()
        found = [event for feed in feeds for event in events.feed(feed)]
        assert [*found, *events.finish()] == whole, feeds


LIMIT = 64 * 1024
HOST = "cut.example.org"


@pytest.fixture(scope="module")
def bounded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """A gateway cutting secrets in answers, its inspection limit 64 KiB."""
    upstream = RawUpstream()
    connectors = [connector("generic", id="c_cut", name="cut", domains=[HOST], credential=None)]
    running, control = start_raw_gateway(tmp_path_factory.mktemp("bounded"), upstream,
                                         connectors, [rule("http.*", "allow")], POLICY,
                                         body_inspect_limit=LIMIT)  # fmt: skip
    yield World(running, control, upstream)
    running.stop()
    upstream.stop()


def _opening(text: str) -> bytes:
    """An event whose field ends in a secret's beginning: held back with those after it."""
    return b"data: " + json.dumps({"note": text}).encode() + b"\n\n"


#: (the first event, relayed or held back, then 128 KiB, twice the limit)
PAST_THE_LIMIT = {
    "an event that never ends": (_delta("hello"), True, [LINES] * 32),
    "events held back": (_opening("the id: AKIA"), False, [_delta("x" * 4000)] * 32),
}


@pytest.mark.parametrize("name", list(PAST_THE_LIMIT))
def test_past_the_inspection_limit_the_stream_is_cut_and_says_why(
    bounded: World, name: str
) -> None:
    first, relayed, rest = PAST_THE_LIMIT[name]
    path = "/sse/" + name.replace(" ", "-")
    answer = bounded.get(HOST, path, sse_answer([first, *rest]))
    body, whole = dechunked(answer)
    assert status_of(answer) == 200  # (the head went before the first event)
    assert not whole  # cut: no last chunk
    assert body == (first if relayed else b"")  # (what was held back never went out)
    reason = record_at(bounded.control, path)["reason"]
    assert f"larger than the {LIMIT}-byte inspection limit" in reason
