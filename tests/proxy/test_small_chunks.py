"""An answer in tiny chunks is scrubbed a read at a time, not a chunk at a time.

The attack (security review): an upstream answers in 1-byte chunks (512 KiB of body, 3 MiB
on the wire). The gateway fed each chunk to the scrubber on its own, and added each to what
it was about to write by copying all of it (``pending += chunk``): 17 s for the body, while
every other request on the gateway waited up to 5.7 s. Now the body pieces parsed from one
read are joined and scrubbed in one feed (``guarded.body_run``), written in one join, and
other connections run between two reads.

Counted here, not timed: a body of thousands of 1-byte chunks costs the scrubber a feed
per read, on the scrubbing path (``respond.py``) and, under a content rule
(``guarded.py``), on a body read whole and on an event stream; and the secret spread over
those chunks is still scrubbed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agentfirewall.scrubbing import ScrubStream, filler
from tests.proxy.rawupstream import RawUpstream, ask, dechunked, start_raw_gateway, status_of
from tests.proxy.support import RunningGateway, connector, rule
from tests.proxy.test_guarded_streams import POLICY  # (content rules: every answer read)

CREDENTIAL = "tfsecret_small_chunks_0123456789"
HOST = "chunks.example.org"
#: The body: the header injected echoed amid text, each byte of it a chunk of its own.
ECHO = b"Bearer " + CREDENTIAL.encode()
BODY = b"data: " + b"lorem ipsum " * 200 + ECHO + b" dolor" * 200 + b"\n\n"


def _one_byte_chunks(content_type: bytes) -> list[bytes]:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: %b\r\nTransfer-Encoding: chunked\r\n\r\n"
    wire = head % content_type + b"".join(b"1\r\n%c\r\n" % byte for byte in BODY)
    return [wire + b"0\r\n\r\n"]  # (in one write: the gateway reads it in a few)


def _gateway(tmp: Path, policy: dict[str, object] | None) -> tuple[RunningGateway, RawUpstream]:
    upstream = RawUpstream()
    conn = connector("generic", id="c_chunks", name="chunks", domains=[HOST],
                     credential=CREDENTIAL, base_url=f"http://{HOST}")  # fmt: skip
    running, _ = start_raw_gateway(tmp, upstream, [conn], [rule("http.*", "allow")], policy)
    return running, upstream


@pytest.fixture(scope="module", params=["scrubbed", "guarded"])
def gateway(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RunningGateway, RawUpstream]]:
    policy = POLICY if request.param == "guarded" else None
    running, upstream = _gateway(tmp_path_factory.mktemp(request.param), policy)
    yield running, upstream
    running.stop()
    upstream.stop()


@pytest.fixture
def feeds(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The length of each piece the gateway feeds a scrubber."""
    fed: list[int] = []
    feed = ScrubStream.feed

    def counted(self: ScrubStream, data: bytes) -> bytes:
        fed.append(len(data))
        return feed(self, data)

    monkeypatch.setattr(ScrubStream, "feed", counted)
    return fed


@pytest.mark.parametrize("content_type", [b"text/plain", b"text/event-stream"])
def test_an_answer_in_one_byte_chunks_is_scrubbed_a_read_at_a_time(
    gateway: tuple[RunningGateway, RawUpstream], feeds: list[int], content_type: bytes
) -> None:
    running, upstream = gateway
    path = "/chunks/" + content_type.decode().replace("/", "-")
    upstream.answers[path] = _one_byte_chunks(content_type)
    answer = ask(running, HOST, path)
    assert status_of(answer) == 200
    head, _, body = answer.partition(b"\r\n\r\n")
    if b"Transfer-Encoding: chunked" in head:  # (a body read whole has a Content-Length)
        body, whole = dechunked(answer)
        assert whole
    assert body == BODY.replace(ECHO, filler(len(ECHO)))
    # a feed per read (one per chunk before: 3,647)
    assert sum(feeds) >= len(BODY)
    assert len(feeds) <= 50
