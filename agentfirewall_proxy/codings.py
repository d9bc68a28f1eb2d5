"""A request body as its upstream reads it: its ``Content-Encoding`` decoded, or refused.

Pure (no I/O). When the gateway reads a body to decide (``pipeline.http_request``), the
connector and the content rules must read the bytes the upstream will: a body is decoded
when it reads one way only, whatever decoder the upstream uses, and refused (415)
otherwise. See docs/proxy.md, "Compressed request bodies".
"""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING

from agentfirewall_proxy.flow import Refusal

if TYPE_CHECKING:
    from agentfirewall_proxy.http1 import Head

__all__ = ["content_codings", "decoded_body", "read_as_sent"]


def content_codings(head: Head) -> list[bytes]:
    """The codings of every ``Content-Encoding`` header, in order (lowercase, without
    ``identity``, which changes nothing): ``[b"gzip", b"gzip"]`` for ``gzip, gzip``."""
    return [
        coding
        for value in head.get_list(b"content-encoding")
        for part in value.split(b",")
        if (coding := part.strip().lower()) and coding != b"identity"
    ]


_WBITS = {b"gzip": 31, b"x-gzip": 31, b"deflate": 15}
#: AWS's signed-chunk framing (``credentials/awschunked.py``), not a compression: AWS
#: removes it and stores what is under it as sent (a ``gzip`` beside it is the object's own
#: encoding, never decoded), so the body is read as sent and the AWS connector reads the
#: framing itself.
_AWS_CHUNKED = b"aws-chunked"


def read_as_sent(codings: list[bytes]) -> bool:
    """Whether a body with these codings is read as sent, ``Content-Encoding`` kept (an
    ``aws-chunked`` one: `_AWS_CHUNKED`)."""
    return _AWS_CHUNKED in codings


_SEND_PLAIN = "send it uncompressed, or compressed once with gzip (one member) or zlib deflate"


def decoded_body(
    codings: list[bytes], body: bytes, complete: bool, limit: int
) -> tuple[bytes, bool]:
    """(the body as the upstream reads it, whether whole), at most `limit` bytes of it.

    Read only when it can be read one way: one ``gzip`` member or one zlib ``deflate``
    stream and nothing after it. Anything else is refused (415): another coding, codings
    stacked, a stream that does not decode or is cut short, several gzip members or bytes
    after the end (decoders differ on those: some read on, some stop), raw deflate
    without its zlib header, or a stream that reads as raw deflate too.
    """
    if not codings:
        return body, complete
    named = b", ".join(codings).decode("latin-1")[:80]
    wbits = _WBITS.get(codings[0]) if len(codings) == 1 else None
    if wbits is None:
        raise _unreadable(f"content-encoding `{named}`")
    inflater = zlib.decompressobj(wbits)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error:
        raise _unreadable(f"a `{named}` body that does not decode") from None
    if inflater.unused_data:
        raise _unreadable(f"a `{named}` body with more than one member or bytes after its end")
    if len(out) > limit:
        return out[:limit], False  # (a bomb stops here: `limit` bytes decoded at most)
    if not complete:
        return out, False
    if not inflater.eof:
        raise _unreadable(f"a `{named}` body cut short")
    if wbits == 15 and _raw_deflate(body, limit):
        raise _unreadable("a `deflate` body that also reads as raw deflate")
    return out, True


def _raw_deflate(body: bytes, limit: int) -> bool:
    """Whether `body` is a whole raw deflate stream too (read so by some servers)."""
    inflater = zlib.decompressobj(-15)
    try:
        inflater.decompress(body, limit + 1)
    except zlib.error:
        return False
    return inflater.eof and not inflater.unused_data


def _unreadable(what: str) -> Refusal:
    return Refusal(415, "unsupported_encoding", f"cannot read {what}: {_SEND_PLAIN}")
