"""Injected credentials never reach the agent: scrubbed from response heads and bodies.

Pure byte logic, no sockets. The secrets' forms, the :class:`Scrubber` and its
:class:`ScrubStream` are the core's (``agentfirewall.scrubbing``, shared with the control
plane's executor); here, what the gateway adds around them: decoding a compressed body
before it is searched.

A compressed response cannot be searched: the gateway asks for ``identity`` whenever it
injects a credential, and an upstream that compresses anyway is decoded (gzip, deflate)
or refused (:class:`ScrubError`, any other coding): fail closed.
"""

from __future__ import annotations

import zlib

from agentfirewall.scrubbing import MARKER, Scrubber, ScrubStream, scrubber_for, secret_forms

__all__ = [
    "MARKER",
    "Decoder",
    "ScrubError",
    "ScrubStream",
    "ScrubbedBody",
    "Scrubber",
    "body_decoder",
    "scrubber_for",
    "secret_forms",
]

_DECODED_PIECE = 1 << 20


class ScrubError(Exception):
    """A response the gateway cannot check for secrets (so it is not relayed)."""


class Decoder:
    """A gzip/deflate body decoded as it streams (bounded pieces; errors fail closed)."""

    __slots__ = ("_fed", "_zlib")

    def __init__(self) -> None:
        self._zlib = zlib.decompressobj(wbits=47)  # gzip or zlib header, auto-detected
        self._fed = False

    def feed(self, data: bytes) -> list[bytes]:
        self._fed = self._fed or bool(data)
        pieces: list[bytes] = []
        try:
            while data:
                pieces.append(self._zlib.decompress(data, _DECODED_PIECE))
                data = self._zlib.unconsumed_tail
            return pieces
        except zlib.error as exc:
            raise ScrubError(f"undecodable compressed response: {exc}") from None

    def finish(self) -> bytes:
        try:
            rest = self._zlib.flush()
        except zlib.error as exc:
            raise ScrubError(f"undecodable compressed response: {exc}") from None
        if self._fed and (self._zlib.unused_data or not self._zlib.eof):
            raise ScrubError("undecodable compressed response: truncated or concatenated")
        return rest


_DECODABLE = frozenset({b"gzip", b"x-gzip", b"deflate"})


def body_decoder(
    headers: list[tuple[bytes, bytes]],
) -> tuple[list[tuple[bytes, bytes]], Decoder | None]:
    """Headers without ``Content-Encoding`` and a decoder, when the body is compressed.

    The gateway asked for ``identity``; an upstream that compresses anyway is decoded
    when it used gzip or deflate, else refused (:class:`ScrubError`).
    """
    codings = [
        c.strip().lower()
        for k, v in headers
        if k.lower() == b"content-encoding"
        for c in v.split(b",")
        if c.strip()
    ]
    codings = [c for c in codings if c != b"identity"]
    if not codings:
        return headers, None
    if len(codings) > 1 or codings[0] not in _DECODABLE:
        named = b", ".join(codings).decode("latin-1")[:80]
        raise ScrubError(
            f"the upstream answered with content-encoding `{named}`: "
            "the response cannot be checked for the injected credential"
        )
    kept = [(k, v) for k, v in headers if k.lower() != b"content-encoding"]
    return kept, Decoder()


class ScrubbedBody:
    """A response body on its way to the agent: decoded if need be, then scrubbed."""

    __slots__ = ("decoder", "stream")

    def __init__(self, stream: ScrubStream, decoder: Decoder | None) -> None:
        self.stream = stream
        self.decoder = decoder

    @property
    def count(self) -> int:
        return self.stream.count

    def feed(self, data: bytes) -> bytes:
        if self.decoder is None:
            return self.stream.feed(data)
        return b"".join([self.stream.feed(piece) for piece in self.decoder.feed(data)])

    def finish(self) -> bytes:
        last = self.stream.feed(self.decoder.finish()) if self.decoder is not None else b""
        return last + self.stream.finish()
