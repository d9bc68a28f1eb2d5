"""Injected credentials never reach the agent: every form of a secret, found and replaced.

Pure byte logic, no I/O. Whoever injects a credential (the gateway into a forwarded
request, the control plane into an action it executes) builds a :class:`Scrubber` once
from the header values it adds (:func:`scrubber_for`). Every form of the secret is searched
for: the header value, the token after its scheme, for ``Basic`` the decoded ``user:pass``
and its password, and of each of these the base64 (standard and URL-safe, padded or not),
percent-encoded and JSON-escaped (``\\/``) forms.

A match is replaced by a filler of **the same length** (:data:`MARKER`, cut or padded
with ``*``), so a ``Content-Length`` stays true and no body is re-framed for scrubbing.
A body can be scrubbed as a stream (:class:`ScrubStream`): the only bytes held back between
chunks are a suffix that could begin a secret (at most its length minus one), so a secret
split across two chunks is still found, and a stream of events (SSE) is not delayed.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable
from itertools import chain
from urllib.parse import quote, quote_plus

__all__ = [
    "MARKER",
    "ScrubStream",
    "Scrubber",
    "filler",
    "scrubber_for",
    "secret_forms",
]

#: What a scrubbed secret reads as (cut or ``*``-padded to the secret's length).
MARKER = b"[REDACTED by TameFlare]"
#: Derived forms shorter than this are not searched for (they would match anywhere).
_MIN_FORM = 6
_SMALL = 4096


def filler(length: int) -> bytes:
    """The same-length replacement of a secret of `length` bytes."""
    return (MARKER + b"*" * max(0, length - len(MARKER)))[:length]


def _encodings(secret: bytes) -> list[bytes]:
    text = secret.decode("latin-1")
    b64 = base64.b64encode(secret)
    url64 = base64.urlsafe_b64encode(secret)
    forms = [secret, b64, b64.rstrip(b"="), url64, url64.rstrip(b"=")]
    forms += [quote(text, safe="").encode("latin-1"), quote_plus(text).encode("latin-1")]
    forms.append(secret.replace(b"/", b"\\/"))
    return forms


def secret_forms(values: Iterable[bytes]) -> tuple[bytes, ...]:
    """Every searched form of the credential header `values`, longest first."""
    bases: list[bytes] = []
    for value in values:
        bases.append(value)
        scheme, space, token = value.partition(b" ")
        if not space:
            continue
        bases.append(token.strip())
        if scheme.lower() == b"basic":
            try:
                decoded = base64.b64decode(token.strip(), validate=True)
            except (binascii.Error, ValueError):
                continue
            bases.append(decoded)
            bases.append(decoded.partition(b":")[2])
    forms = {f for base in bases if base for f in _encodings(base) if len(f) >= _MIN_FORM}
    forms.update(v for v in values if v)  # a whole header value, however short
    return tuple(sorted(forms, key=lambda f: (-len(f), f)))


class Scrubber:
    """The secrets of one connector's credential, and how to find them in bytes."""

    __slots__ = ("_bytes", "_firsts", "_pattern", "forms", "longest", "replacements")

    def __init__(self, forms: tuple[bytes, ...]) -> None:
        self.forms = forms
        self.replacements = tuple((f, filler(len(f))) for f in forms)
        self.longest = max((len(f) for f in forms), default=0)
        self._firsts = tuple(sorted({f[:1] for f in forms}))
        self._bytes = frozenset(b for f in forms for b in f)  # bytes that occur in a secret
        self._pattern = re.compile(b"|".join(re.escape(f) for f in forms))

    def found(self, data: bytes) -> bool:
        """True when `data` holds a whole secret."""
        if len(data) < _SMALL:  # one regex call beats a search per form on short input
            return self._pattern.search(data) is not None
        return any(form in data for form in self.forms)

    def scrub(self, data: bytes) -> tuple[bytes, int]:
        """`data` with every whole secret replaced, and how many were."""
        if not self.found(data):
            return data, 0
        count = 0
        for form, fill in self.replacements:
            if form in data:
                count += data.count(form)
                data = data.replace(form, fill)
        return data, count

    def held(self, data: bytes) -> int:
        """Length of the longest suffix of `data` that may begin a secret (0: none)."""
        if not data or data[-1] not in self._bytes:
            return 0  # (a body or an event ending in a newline: at once)
        start = max(0, len(data) - self.longest + 1)
        window = data[start:]
        earliest = len(window)
        for first in self._firsts:  # bytes.find, not a loop over every position
            index = window.find(first)
            while 0 <= index < earliest:
                tail = window[index:]
                if any(form.startswith(tail) for form in self.forms):
                    earliest = index
                    break
                index = window.find(first, index + 1)
        return len(window) - earliest

    def headers(self, headers: list[tuple[bytes, bytes]]) -> tuple[list[tuple[bytes, bytes]], int]:
        """Header values scrubbed; a header whose *name* holds a secret is dropped."""
        if not self.found(b"\n".join(chain.from_iterable(headers))):
            return headers, 0  # (a newline is in no secret: nothing spans two fields)
        out: list[tuple[bytes, bytes]] = []
        total = 0
        for name, value in headers:
            name_clean, found = self.scrub(name)
            if found:
                total += found
                continue
            value, found = self.scrub(value)
            total += found
            out.append((name_clean, value))
        return out, total

    def response_head(
        self, reason: bytes, headers: list[tuple[bytes, bytes]]
    ) -> tuple[bytes, list[tuple[bytes, bytes]], int]:
        """The reason phrase scrubbed and :meth:`headers`, and how many secrets were found:
        one search when there is none."""
        if not self.found(b"\n".join(chain((reason,), *headers))):
            return reason, headers, 0  # (a newline is in no secret: nothing spans two fields)
        headers, found = self.headers(headers)
        reason, more = self.scrub(reason)
        return reason, headers, found + more

    def stream(self) -> ScrubStream:
        return ScrubStream(self)


class ScrubStream:
    """One body scrubbed chunk by chunk; :meth:`finish` releases what was held back."""

    __slots__ = ("count", "scrubber", "tail")

    def __init__(self, scrubber: Scrubber) -> None:
        self.scrubber = scrubber
        self.tail = b""
        self.count = 0

    def feed(self, data: bytes) -> bytes:
        data, found = self.scrubber.scrub(self.tail + data if self.tail else data)
        self.count += found
        keep = self.scrubber.held(data)
        if keep:
            self.tail = data[-keep:]
            return data[:-keep]
        self.tail = b""
        return data

    def finish(self) -> bytes:
        """The held-back bytes (a partial secret cannot complete any more: sent as is)."""
        tail, self.tail = self.tail, b""
        return tail


def scrubber_for(values: Iterable[bytes]) -> Scrubber | None:
    """The scrubber for a connector injecting header `values` (None: nothing injected)."""
    forms = secret_forms(list(values))
    return Scrubber(forms) if forms else None
