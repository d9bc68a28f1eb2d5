"""HTTP/1.1 as data: pull parsers over httptools and head serialisation (no sockets here).

httptools (llhttp) is strict and we keep it strict: conflicting ``Content-Length`` /
``Transfer-Encoding``, duplicate lengths, obs-fold, bare LF and bad characters are parse
errors, and the connection ends with 400. On top of that we refuse any
``Transfer-Encoding`` other than exactly ``chunked``: a request gets 501, a response 502
(a ``gzip, chunked`` body relayed undecoded would reach the agent unsearched for the
injected credential; bodiless or not, an upstream that sends one is refused). We re-frame
every body we forward ourselves (``Content-Length`` or fresh chunks): the bytes the
upstream sees are never the client's framing, so nothing can be smuggled past the decision.

A parser is fed by its owner (``client.py``) and yields events: ``Head``, body ``bytes``,
``END``, ``Upgrade(tail)`` (``CONNECT`` and WebSocket handshakes: no other protocol is
switched to, :class:`RequestParser`) or ``ParseError``.

A head, once made, never changes: each message gets lists of its own, and the trailer
fields after a chunked body (llhttp reports them as more headers, after the head) are
dropped, as RFC 9110 section 6.5.1 allows a recipient that removes the chunked coding to.
The head is what was decided on and what is forwarded, and a request may be decided on its
head before its body is read: a trailer ``X-HTTP-Method-Override: DELETE`` would otherwise
reach the upstream as a header of a request approved as a PUT. No trailer is forwarded
as a trailer either: the gateway re-frames every body.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import httptools

__all__ = [
    "END",
    "Head",
    "ParseError",
    "RequestParser",
    "ResponseHead",
    "ResponseParser",
    "Upgrade",
    "chunk",
    "reason_phrase",
    "serialize_request_head",
    "serialize_response_head",
]

Headers = list[tuple[bytes, bytes]]


@dataclass(slots=True)
class Head:
    """A request head as received."""

    method: str
    target: bytes
    headers: Headers
    version: str
    keep_alive: bool
    chunked: bool
    content_length: int | None
    #: The header names in lowercase, in the order of `headers` (lowered once, when parsed).
    names: list[bytes]

    def get(self, name: bytes) -> bytes | None:
        """First value of header `name` (give it lowercase)."""
        names = self.names
        return self.headers[names.index(name)][1] if name in names else None

    def get_list(self, name: bytes) -> list[bytes]:
        """Every value of header `name` (give it lowercase), one per line, in order."""
        headers = self.headers
        return [headers[index][1] for index, low in enumerate(self.names) if low == name]

    @property
    def has_body(self) -> bool:
        return self.chunked or bool(self.content_length)

    @property
    def asks_websocket(self) -> bool:
        """Whether its ``Upgrade`` headers name WebSocket and nothing else (any case): the
        only protocol a request may switch to (:class:`RequestParser`)."""
        values = self.get_list(b"upgrade")
        tokens = b",".join(values).split(b",")
        return bool(values) and all(token.strip().lower() == b"websocket" for token in tokens)


@dataclass(slots=True)
class ResponseHead:
    status: int
    reason: bytes
    headers: Headers
    version: str
    keep_alive: bool
    chunked: bool
    content_length: int | None
    #: The header names in lowercase, in the order of `headers`.
    names: list[bytes]

    def get(self, name: bytes) -> bytes | None:
        """First value of header `name` (give it lowercase)."""
        names = self.names
        return self.headers[names.index(name)][1] if name in names else None


@dataclass(frozen=True, slots=True)
class Upgrade:
    """The head before was a CONNECT or an Upgrade request; `tail` is what followed it."""

    tail: bytes


@dataclass(frozen=True, slots=True)
class ParseError:
    status: int
    message: str


class _End:
    __slots__ = ()

    def __repr__(self) -> str:
        return "END"


END = _End()
Event = Head | ResponseHead | bytes | _End | Upgrade | ParseError


def _framing(headers: Headers, names: list[bytes]) -> tuple[bool, int | None, str | None]:
    """(chunked, content_length, problem) from already llhttp-validated headers (`names`:
    theirs in lowercase). Chunked is what llhttp reads as chunked, and only that: the
    value (its leading blanks skipped by llhttp) ``chunked`` in any case, then spaces; a
    tab after it makes llhttp read a response to its close, not in chunks."""
    chunked, length, problem = False, None, None
    for lowered, (_, value) in zip(names, headers, strict=True):
        if lowered == b"transfer-encoding":
            if value.rstrip(b" ").lower() != b"chunked" or chunked:
                problem = "unsupported transfer-encoding"
            chunked = True
        elif lowered == b"content-length":
            length = int(value)
    return chunked, length, problem


#: What :func:`_framing` says of headers without either of its names.
_UNFRAMED: tuple[bool, int | None, str | None] = (False, None, None)


class _Base:
    def __init__(self, max_head: int) -> None:
        self.events: deque[Event] = deque()
        self.max_head = max_head
        self._headers: Headers = []
        self._names: list[bytes] = []
        #: The request's target or the response's reason phrase, as it comes.
        self._first_line = b""
        self._head_size = 0
        #: True between the first byte of a message and the end of its head.
        self.in_head = False
        self.failed = False

    def on_message_begin(self) -> None:
        self._headers = []
        self._names = []
        self._first_line = b""
        self._head_size = 0
        self.in_head = True

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.in_head:  # a trailer field, after a chunked body: dropped (module doc)
            return
        self._headers.append((name, value))
        self._names.append(name.lower())
        self._head_size += len(name) + len(value) + 4

    def head_size(self) -> int:
        """The head's size so far, as counted against `max_head`: a request's target, and
        each whole header's name and value plus 4 (``: `` and CRLF). Added up as the parts
        come, so a head fed a byte at a time costs no more than one fed whole."""
        return self._head_size

    def on_body(self, body: bytes) -> None:
        self.events.append(body)

    def on_message_complete(self) -> None:
        self.events.append(END)


class RequestParser(_Base):
    """Request parser; call :meth:`feed` with bytes, then pop :attr:`events`.

    Only a CONNECT or a WebSocket handshake (:attr:`Head.asks_websocket`) switches: an
    :class:`Upgrade` event, and the parser reads no more. llhttp also stops at the head of
    any other request with ``Connection: upgrade`` (``Upgrade: h2c``, ``TLS/1.2``); such a
    request is not switched, parsing goes on (:meth:`_resume`): it is a plain request, and
    the upstream never hears of the upgrade (``Upgrade`` is not forwarded).
    """

    def __init__(self, max_head: int = 65536) -> None:
        super().__init__(max_head)
        self._parser = httptools.HttpRequestParser(self)
        #: True while a head fed by :meth:`_resume` is parsed.
        self._resuming = False

    def on_url(self, url: bytes) -> None:
        self._first_line += url
        self._head_size += len(url)

    def on_headers_complete(self) -> None:
        self.in_head = False
        if self._resuming:  # (the framing of a body that goes on: no request of its own)
            self._resuming = False
            return
        if self.head_size() > self.max_head:
            raise _Refused(431, "request header fields too large")
        parser = self._parser
        names = self._names
        chunked, length, problem = (
            _framing(self._headers, names)
            if b"content-length" in names or b"transfer-encoding" in names
            else _UNFRAMED  # (a bodiless request, most often: no call)
        )
        if problem:
            raise _Refused(501, problem)
        self.events.append(
            Head(
                method=parser.get_method().decode("ascii"),
                target=self._first_line,
                headers=self._headers,
                version=parser.get_http_version(),
                keep_alive=parser.should_keep_alive(),
                chunked=chunked,
                content_length=length,
                names=self._names,
            )
        )

    def feed(self, data: bytes) -> None:
        """Parse `data`; an oversized head or a parse error becomes a ParseError event."""
        if self.failed:
            return
        try:
            while True:
                try:
                    self._parser.feed_data(data)
                    break
                except httptools.HttpParserUpgrade as exc:  # (its head is the last one)
                    head = next(e for e in reversed(self.events) if isinstance(e, Head))
                    if head.method == "CONNECT" or head.asks_websocket:
                        self.events.append(Upgrade(data[exc.args[0] :]))
                        self.failed = True
                        break
                    data = self._resume(head, data[exc.args[0] :])
        except _Refused as exc:
            self._fail(exc.status, exc.message)
        except httptools.HttpParserError as exc:
            cause = exc.__context__
            if isinstance(cause, _Refused):
                self._fail(cause.status, cause.message)
            else:
                self._fail(400, f"malformed request: {exc}")
        if self.in_head and self.head_size() > self.max_head:
            self._fail(431, "request header fields too large")

    def _fail(self, status: int, message: str) -> None:
        self.events.append(ParseError(status, message))
        self.failed = True

    def _resume(self, head: Head, tail: bytes) -> bytes:
        """Go on after an upgrade that is not made: what to feed a fresh parser next.

        llhttp stopped at the end of `head` and ended the request there (an END), body or
        not. A bodiless one is over: the fresh parser reads `tail` as what comes next. One
        with a body takes back that END, and the fresh parser is first fed a head of the
        same framing, which makes no event (``_resuming``): `tail` is read as that body,
        then as the requests after it, exactly as without the ``Upgrade``."""
        self._parser = httptools.HttpRequestParser(self)
        if not head.has_body:
            return tail
        if self.events and self.events[-1] is END:
            self.events.pop()
        self._resuming = True
        framing = (b"Transfer-Encoding: chunked" if head.chunked
                   else b"Content-Length: %d" % (head.content_length or 0))  # fmt: skip
        return b"POST / HTTP/1.1\r\n%b\r\n\r\n%b" % (framing, tail)


class ResponseParser(_Base):
    """Response parser for one upstream connection."""

    def __init__(self, max_head: int = 65536) -> None:
        super().__init__(max_head)
        self._parser = httptools.HttpResponseParser(self)

    def on_status(self, reason: bytes) -> None:
        self._first_line += reason

    def on_headers_complete(self) -> None:
        self.in_head = False
        parser = self._parser
        chunked, length, problem = _framing(self._headers, self._names)
        if problem:  # (a transfer coding the gateway does not decode: module docstring)
            raise _Refused(502, f"the upstream answered with an {problem}: only chunked is read")
        self.events.append(
            ResponseHead(
                status=parser.get_status_code(),
                reason=self._first_line,
                headers=self._headers,
                version=parser.get_http_version(),
                keep_alive=parser.should_keep_alive(),
                chunked=chunked,
                content_length=length,
                names=self._names,
            )
        )

    def feed(self, data: bytes) -> None:
        """Parse `data`; a parse error (or a refused head) becomes a ParseError event."""
        if self.failed:
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            self.events.append(Upgrade(data[exc.args[0] :]))
        except httptools.HttpParserError as exc:
            cause = exc.__context__
            message = (cause.message if isinstance(cause, _Refused)
                       else f"malformed upstream response: {exc}")  # fmt: skip
            self.events.append(ParseError(502, message))
            self.failed = True
        if self.in_head and self.head_size() > self.max_head:
            self.events.append(ParseError(502, "upstream response head too large"))
            self.failed = True


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


_REASONS = {
    200: b"OK",
    400: b"Bad Request",
    403: b"Forbidden",
    404: b"Not Found",
    407: b"Proxy Authentication Required",
    408: b"Request Timeout",
    413: b"Payload Too Large",
    421: b"Misdirected Request",
    431: b"Request Header Fields Too Large",
    501: b"Not Implemented",
    502: b"Bad Gateway",
    503: b"Service Unavailable",
    504: b"Gateway Timeout",
}


def reason_phrase(status: int) -> bytes:
    return _REASONS.get(status, b"Status")


# The header lines are joined in C (``map`` of ``b": ".join``): no Python frame per head
# (a list comprehension is one) nor per header; no headers, no line before the empty one.


def serialize_request_head(method: str, target: bytes, headers: Headers) -> bytes:
    lines = b"\r\n".join(map(b": ".join, headers)) + b"\r\n" if headers else b""
    return b"%b %b HTTP/1.1\r\n%b\r\n" % (method.encode("ascii"), target, lines)


def serialize_response_head(status: int, reason: bytes, headers: Headers) -> bytes:
    lines = b"\r\n".join(map(b": ".join, headers)) + b"\r\n" if headers else b""
    reason = reason or reason_phrase(status)
    return b"HTTP/1.1 %d %b\r\n%b\r\n" % (status, reason, lines)


def chunk(data: bytes) -> bytes:
    """`data` as one chunk of a chunked body (nothing for no data: an empty chunk ends it)."""
    return b"%x\r\n%b\r\n" % (len(data), data) if data else b""
