"""A decided head never changes: the trailer fields after a chunked body are dropped
(``http1``, RFC 9110 section 6.5.1), never merged into the head that was decided on and
is forwarded.

The review's attack: on generic the decision is taken on the head alone; a chunked PUT is
held, then its body ends with ``0\\r\\nX-HTTP-Method-Override: DELETE\\r\\n\\r\\n``; the
gateway used to forward that trailer upstream as a header of the request approved as
``http.put``. Here the bytes are cut at every place, as a client may send them, and the
head must be the same whatever the cut and whatever was read after it.
"""

from __future__ import annotations

from agentfirewall_proxy.http1 import END, Head, RequestParser, ResponseHead, ResponseParser

HEAD = (
    b"PUT http://example.org/items/42 HTTP/1.1\r\nHost: example.org\r\n"
    b"Content-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
)
TRAILERS = b"0\r\nX-HTTP-Method-Override: DELETE\r\nContent-Type: application/json\r\n\r\n"
REQUEST = HEAD + b"5\r\nhello\r\n" + TRAILERS
NEXT = b"GET http://example.org/items HTTP/1.1\r\nHost: example.org\r\nX-Next: 1\r\n\r\n"
SENT = [(b"Host", b"example.org"), (b"Content-Type", b"text/plain"),
        (b"Transfer-Encoding", b"chunked")]  # fmt: skip


def _events(parser: RequestParser | ResponseParser, data: bytes, cut: int) -> list[object]:
    """What `parser` makes of `data` fed in two pieces, cut at `cut`; each head copied as it
    comes, before the rest is fed (what a decision on the head alone saw)."""
    events: list[object] = []
    for piece in (data[:cut], data[cut:]):
        parser.feed(piece)
        while parser.events:
            event = parser.events.popleft()
            if isinstance(event, Head | ResponseHead):
                events.append((event, list(event.headers), list(event.names)))
            else:
                events.append(event)
    return events


def test_a_trailer_never_becomes_a_header_of_the_decided_request() -> None:
    for cut in range(len(REQUEST + NEXT) + 1):
        events = _events(RequestParser(), REQUEST + NEXT, cut)
        heads = [e for e in events if isinstance(e, tuple)]
        assert len(heads) == 2, cut
        (head, as_decided, names), (after, _, _) = heads
        assert (head.headers, head.names) == (as_decided, names), cut  # as it came
        assert head.headers == SENT, cut  # nor the trailer fields, the body read first
        assert after.headers == [(b"Host", b"example.org"), (b"X-Next", b"1")]
        assert b"".join(e for e in events if isinstance(e, bytes)) == b"hello"
        assert events.count(END) == 2


def test_a_response_trailer_is_not_merged_into_the_response_head() -> None:
    response = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n"
    events = _events(ResponseParser(), response + b"0\r\nX-Extra: 1\r\n\r\n", len(response))
    (head, _, _), *_ = events
    assert isinstance(head, ResponseHead)
    assert head.headers == [(b"Transfer-Encoding", b"chunked")]
