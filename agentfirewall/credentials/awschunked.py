"""Signed aws-chunked uploads (``STREAMING-AWS4-HMAC-SHA256-PAYLOAD``, and its ``-TRAILER``
form), re-signed in flight.

Some S3 clients (the AWS SDK for Java, and any SDK over plain http) send a body framed as
``aws-chunked``, each chunk carrying a signature chained from the request's own::

    <hex size>;chunk-signature=<64 hex>\\r\\n<data>\\r\\n ... 0;chunk-signature=<64 hex>\\r\\n\\r\\n

The ``-TRAILER`` form (a checksum sent after the data) ends instead with trailing headers
and their own signature, which signs the final chunk's and the headers' SHA-256 (the S3 API
reference, "Signature calculations for trailing headers")::

    0;chunk-signature=<64 hex>\\r\\nx-amz-checksum-crc32:<base64>\\r\\n
    x-amz-trailer-signature:<64 hex>\\r\\n\\r\\n

The agent's chunk signatures are made with its placeholder key. The gateway signs the
request head with the real key (the payload hash stays the streaming literal) and
:class:`ChunkResigner` replaces each chunk's signature with the one the real key gives:
the chain starts at the head's signature (the *seed*) and each link signs the previous
signature and the chunk's SHA-256 (the AWS S3 API reference, "Signature Calculations for
the Authorization Header: Transferring Payload in Multiple Chunks"). Only the 64 hex digits
change, so the body keeps its length and the request its ``Content-Length``.

The transformer is fed the body as it arrives and returns what may be sent: a chunk goes
out whole once its data is in (its signature needs its hash), so at most one chunk is held
(``MAX_CHUNK``). Anything but the exact framing (a size in hex, the signature extension
alone, CRLFs where they belong, nothing after the final chunk or its trailer; trailing
headers only in the ``-TRAILER`` form, there at least one and the signature last, held
whole up to ``MAX_TRAILER``) raises :class:`CredentialError`. Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import hmac
import re

from agentfirewall.errors import CredentialError

__all__ = [
    "MAX_CHUNK",
    "MAX_TRAILER",
    "SIGNED_FORMS",
    "SIGNED_STREAMING",
    "SIGNED_STREAMING_TRAILER",
    "ChunkResigner",
    "seed_signature",
]

SIGNED_STREAMING = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
SIGNED_STREAMING_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
#: the payload literals whose chunks the gateway re-signs
SIGNED_FORMS = frozenset({SIGNED_STREAMING, SIGNED_STREAMING_TRAILER})
#: the largest chunk held while its signature is computed (SDKs send 64-128 KiB)
MAX_CHUNK = 16 * 1024 * 1024
#: the largest trailer held while its signature is computed (a checksum or two)
MAX_TRAILER = 8192
_TRAILER_SIGNATURE = b"x-amz-trailer-signature:"
_HEX_SIGNATURE = re.compile(rb"[0-9a-f]{64}")
#: a trailing header: a token, a colon, a printable value (spaces around it not part of it)
_TRAILER_LINE = re.compile(
    rb"([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*([\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?)[ \t]*"
)
_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_HEAD = re.compile(rb"([0-9a-fA-F]{1,8});chunk-signature=[0-9a-f]{64}")
_HEAD_MAX = 8 + len(b";chunk-signature=") + 64
_SIGNATURE = re.compile(r"Signature=([0-9a-f]{64})\b")


def seed_signature(authorization: str) -> str:
    """The signature of a SigV4 ``Authorization`` header value: the chain's seed."""
    found = _SIGNATURE.search(authorization)
    if found is None:
        raise CredentialError("no signature in the signed request head")
    return found.group(1)


class ChunkResigner:
    """Re-signs an aws-chunked body chunk by chunk (see the module docstring)."""

    def __init__(
        self, signing_key: bytes, stamp: str, scope: str, seed: str, *, trailer: bool = False
    ) -> None:
        self._key = signing_key
        self._prefix = f"AWS4-HMAC-SHA256-PAYLOAD\n{stamp}\n{scope}\n"
        self._trailer_prefix = f"AWS4-HMAC-SHA256-TRAILER\n{stamp}\n{scope}\n"
        self._previous = seed
        self._pending = bytearray()  # bytes not yet sent: a head, or a chunk being read
        self._size: int | None = None  # the current chunk's data size, once its head is in
        self._size_text = b""
        #: the ``-TRAILER`` form: trailing headers follow the final chunk
        self.trailer = trailer
        self._in_trailer = False
        self.done = False

    def _sign(self, data: bytes | memoryview) -> str:
        digest = hashlib.sha256(data).hexdigest()
        text = f"{self._prefix}{self._previous}\n{_EMPTY_SHA256}\n{digest}"
        self._previous = hmac.new(self._key, text.encode(), hashlib.sha256).hexdigest()
        return self._previous

    def feed(self, data: bytes) -> bytes:
        """What of the body so far can be sent, re-signed."""
        if self.done:
            if data:
                raise CredentialError("data after the final aws-chunked chunk")
            return b""
        self._pending += data
        if self._in_trailer:
            return self._trailer()
        out = bytearray()
        while not self.done:
            if self._size is None:
                end = self._pending.find(b"\r\n")
                if end < 0:
                    if len(self._pending) > _HEAD_MAX:
                        raise CredentialError("an aws-chunked chunk header is malformed")
                    break
                head = _HEAD.fullmatch(bytes(self._pending[:end]))
                if head is None:
                    raise CredentialError("an aws-chunked chunk header is malformed")
                self._size_text = head.group(1)
                self._size = int(self._size_text, 16)
                if self._size > MAX_CHUNK:
                    raise CredentialError(f"an aws-chunked chunk is larger than {MAX_CHUNK} bytes")
                del self._pending[: end + 2]
                if self._size == 0 and self.trailer:  # trailing headers follow, no CRLF
                    out += self._size_text + b";chunk-signature=" + self._sign(b"").encode()
                    out += b"\r\n"
                    self._size, self._in_trailer = None, True
                    out += self._trailer()
                    break
            whole = self._size + 2  # the data and its CRLF (the final chunk: the empty line)
            if len(self._pending) < whole:
                break
            if self._pending[self._size : whole] != b"\r\n":
                raise CredentialError("an aws-chunked chunk does not end where its size says")
            chunk = memoryview(self._pending)[: self._size]
            signature = self._sign(chunk)
            out += self._size_text + b";chunk-signature=" + signature.encode() + b"\r\n"
            out += chunk
            out += b"\r\n"
            chunk.release()
            del self._pending[:whole]
            self.done = self._size == 0
            self._size = None
        if self.done and self._pending:
            raise CredentialError("data after the final aws-chunked chunk")
        return bytes(out)

    def _trailer(self) -> bytes:
        """The trailing headers, re-signed, once they are all in (b"" until then)."""
        end = self._pending.find(b"\r\n\r\n")
        if end < 0:
            if len(self._pending) > MAX_TRAILER:
                raise CredentialError(f"the aws-chunked trailer is larger than {MAX_TRAILER} bytes")
            if self._pending.startswith(b"\r\n"):
                raise CredentialError("the aws-chunked trailer has no headers")
            return b""
        lines = bytes(self._pending[:end]).split(b"\r\n")
        if len(self._pending) != end + 4:
            raise CredentialError("data after the aws-chunked trailer")
        *headers, last = lines
        if not headers or not last.startswith(_TRAILER_SIGNATURE):
            raise CredentialError("the aws-chunked trailer must end with its signature")
        canonical = bytearray()
        for line in headers:
            found = _TRAILER_LINE.fullmatch(line)
            if found is None or found.group(1).lower() + b":" == _TRAILER_SIGNATURE:
                raise CredentialError("an aws-chunked trailing header is malformed")
            canonical += found.group(1).lower() + b":" + found.group(2) + b"\n"
        if _HEX_SIGNATURE.fullmatch(last[len(_TRAILER_SIGNATURE) :]) is None:
            raise CredentialError("the aws-chunked trailer signature is malformed")
        text = f"{self._trailer_prefix}{self._previous}\n{hashlib.sha256(canonical).hexdigest()}"
        signature = hmac.new(self._key, text.encode(), hashlib.sha256).hexdigest()
        self._pending.clear()
        self._in_trailer, self.done = False, True
        head = b"\r\n".join(headers)
        return head + b"\r\n" + _TRAILER_SIGNATURE + signature.encode() + b"\r\n\r\n"

    def finish(self) -> None:
        """The body ended: raise unless it ended with the final chunk."""
        if not self.done:
            raise CredentialError("the aws-chunked body ended before its final chunk")
