"""Signed aws-chunked uploads (``STREAMING-AWS4-HMAC-SHA256-PAYLOAD``), re-signed in flight.

Some S3 clients (the AWS SDK for Java, and any SDK over plain http) send a body framed as
``aws-chunked``, each chunk carrying a signature chained from the request's own::

    <hex size>;chunk-signature=<64 hex>\\r\\n<data>\\r\\n ... 0;chunk-signature=<64 hex>\\r\\n\\r\\n

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
alone, CRLFs where they belong, nothing after the final chunk; trailers are the
``-TRAILER`` variant, which is refused) raises :class:`CredentialError`. Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import hmac
import re

from agentfirewall.errors import CredentialError

__all__ = ["MAX_CHUNK", "SIGNED_STREAMING", "ChunkResigner", "seed_signature"]

SIGNED_STREAMING = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
#: the largest chunk held while its signature is computed (SDKs send 64-128 KiB)
MAX_CHUNK = 16 * 1024 * 1024
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

    def __init__(self, signing_key: bytes, stamp: str, scope: str, seed: str) -> None:
        self._key = signing_key
        self._prefix = f"AWS4-HMAC-SHA256-PAYLOAD\n{stamp}\n{scope}\n"
        self._previous = seed
        self._pending = bytearray()  # bytes not yet sent: a head, or a chunk being read
        self._size: int | None = None  # the current chunk's data size, once its head is in
        self._size_text = b""
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

    def finish(self) -> None:
        """The body ended: raise unless it ended with the final chunk."""
        if not self.done:
            raise CredentialError("the aws-chunked body ended before its final chunk")
