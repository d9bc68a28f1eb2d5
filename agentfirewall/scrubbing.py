"""Injected credentials never reach the agent: every form of a secret, found and replaced.

Pure byte logic, no I/O. Whoever injects a credential (the gateway into a forwarded
request, the control plane into an action it executes) builds a :class:`Scrubber` once
from the header values it adds (:func:`scrubber_for`). Every form of the secret is searched
for: the header value, the token after its scheme, for ``Basic`` the decoded ``user:pass``
and its password, and of each of these the base64 (standard and URL-safe, padded or not),
hex (either case), percent-encoded and JSON-escaped forms; and the token's (or password's;
the value's where its token is too short) base64 inside a longer encoded stream, at each of
the three offsets modulo 3 (``base64(b"id=x" + value)``: the characters that carry only its
bits). In a body holding a backslash, any character of any form may be written as a JSON
escape (``\\u005f``, any case of hex; ``\\/``), as an upstream's JSON encoder may write it,
and is found as well (a JSON reader would hand the agent the secret itself); and every
form is searched for as a JSON encoder writes it in a string (a backslash ``\\\\``, a
quote ``\\"``, a ``/`` as is or, as PHP does, ``\\/``). Likewise, in a body holding a
``%``, any character of any form may be percent-encoded (``%2F`` or ``%2f``; a space also
as ``+``; a ``/`` left as is also as ``\\/``, a URL in PHP's JSON), as ``quote()`` writes it
with its default ``safe="/"`` or another encoder with lower-case hex: a URL decoder would
hand over the secret. And in a body holding a ``&``, a form holding a character an HTML or
XML escaper writes as a character reference (``&"'<>``: a password, rarely a token) is
found with any of those written as one (``&amp;``, ``&quot;``, ``&#34;``, ``&#x27;``,
``&#039;``, ``&lt;``…), also in a JSON string (``\\&quot;``), as an error page echoes it: a
browser or an HTML parser would hand over the secret. In a response head, a header *name*
holding a form in any case of its letters is dropped (a hop may lower or capitalise a name;
a filler is no valid name). A secret's base64 inside a longer stream (each offset's core) is
also found wrapped in lines, as MIME, PEM and GitHub's contents API write base64: a break
(CR, LF, CRLF, in a JSON string ``\\n`` or ``\\t``; with any blanks around it, as XML, YAML
or a folded header indent a line, or blanks alone: a base64 reader skips them all) anywhere
in it once, or more often where each line within it is at least 59 long (GitHub writes 60);
searched for by two parts of each core, one of which such a body holds whole (a stream
holds a core's beginning back past up to ``BLANKS_READ`` bytes of blanks). And in a text
sent in UTF-16 or UTF-32 (either byte order, at any offset; each byte of a form a character,
as a server that reads a header as latin-1 writes it), every search above is made in the
text read one byte of each character, each byte found replaced (each character then a
filler's, encoded alike): only where a body holds a run of such characters.

A match is replaced by a filler of **the same length** (:data:`MARKER`, cut or padded
with ``*``), so a ``Content-Length`` stays true and no body is re-framed for scrubbing.
A body can be scrubbed as a stream (:class:`ScrubStream`): the only bytes held back between
chunks are a suffix that could begin a secret (at most its length minus one), so a secret
split across two chunks is still found, and a stream of events (SSE) is not delayed.
How a form may be spelled (JSON-escaped, percent-encoded, HTML-escaped) and the regexes that
find each spelling are :mod:`agentfirewall.spellings`. Those regexes (each byte of a form an
alternation) are compiled only for the forms a text may hold, found by a part every spelling
holds once the text is read (:class:`_Spelled`): a long secret's scrubber (a JWT) is built in
milliseconds, and finds the same spans as one regex of every form would.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Iterable
from itertools import chain, product
from urllib.parse import quote, quote_plus

from agentfirewall.spellings import (
    BLANKS_READ,
    BYTE_OF,
    ESCAPE,
    HTML_WIDEST,
    PERCENT,
    PLUS_AS_SPACE,
    REFERENCE,
    SPELLING,
    WIDEST,
    any_case,
    beginnings,
    begins_spelled,
    broken_spans,
    broken_tail,
    escapable,
    hex_of,
    html_beginnings,
    html_escapable,
    html_unescaped,
    json_unescaped,
    json_written,
    line_broken,
    percent_core,
    percentable,
    tiles,
    unbroken,
    unescaped_byte,
    wide_widths,
)

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
#: The bytes a character reference is written with (``&#x27;``, ``&quot;``). (A backslash
#: JSON writes before a byte is in that form as JSON writes it: ``\"``, ``\/``, ``\\``.)
_REFERENCE_BYTES = frozenset(b"".join(REFERENCE))
#: The bytes an HTML-escaped form may write otherwise: ``&"'<>``, and in JSON ``\`` and ``/``.
_HTML_SPLIT = re.compile(rb"[&\"'<>\\/]")
_PRINTABLE = re.compile(rb"[ -~]+")
#: A wrapped form is at most this many bytes per byte of it (a byte and a JSON ``\r\n``),
#: besides blanks (`BLANKS_READ`).
_WRAPPED_WIDEST = 5
#: Searches for spelled forms a scrubber keeps compiled (for the sets of forms found).
_COMPILED = 16


def filler(length: int) -> bytes:
    """The same-length replacement of a secret of `length` bytes."""
    return (MARKER + b"*" * max(0, length - len(MARKER)))[:length]


def _encodings(secret: bytes) -> list[bytes]:
    text = secret.decode("latin-1")
    b64 = base64.b64encode(secret)
    url64 = base64.urlsafe_b64encode(secret)
    forms = [secret, b64, b64.rstrip(b"="), url64, url64.rstrip(b"=")]
    forms += [secret.hex().encode(), secret.hex().upper().encode()]
    forms += [quote(text, safe="").encode("latin-1"), quote_plus(text).encode("latin-1")]
    return forms


_URL_SAFE = bytes.maketrans(b"+/", b"-_")


def _within_base64(secret: bytes) -> list[bytes]:
    """The base64 characters that encode only `secret`'s bits, wherever it sits in a longer
    encoded stream (``base64(b"id=x" + secret)``): one core for each of the three offsets
    modulo 3, standard and URL-safe. (An encoding of the secret alone is in `_encodings`.)"""
    cores = []
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + secret)
        # character i carries bits [6i, 6i + 6); the secret bits [8 shift, 8 (shift + n))
        core = encoded[-(-8 * shift // 6) : 8 * (shift + len(secret)) // 6]
        cores += [core, core.translate(_URL_SAFE)]
    return cores


def _carriers(values: list[bytes]) -> tuple[list[bytes], list[bytes]]:
    """What of header `values` an echo may hold (searched for in every encoding), and what
    carries a secret (searched for inside any base64 too)."""
    bases: list[bytes] = []
    secrets: list[bytes] = []  # what carries a secret: searched inside any base64 too
    for value in values:
        bases.append(value)
        scheme, _, token = value.partition(b" ")
        token = token.strip()
        if not token:
            secrets.append(value)
            continue
        bases.append(token)
        # (a value's base64 at any offset holds its token's core at some offset, unless the
        # token is too short to have one at every offset)
        short = any(len(core) < _MIN_FORM for core in _within_base64(token))
        secrets.append(value if short else token)
        if scheme.lower() == b"basic":
            try:
                decoded = base64.b64decode(token, validate=True)
            except (binascii.Error, ValueError):
                continue
            bases.append(decoded)
            bases.append(decoded.partition(b":")[2])
            secrets.append(decoded.partition(b":")[2])
    return bases, secrets


def _cores(secrets: list[bytes]) -> set[bytes]:
    """The base64 of `secrets` inside a longer stream (`_within_base64`)."""
    return {f for s in secrets if s for f in _within_base64(s) if len(f) >= _MIN_FORM}


def secret_forms(values: Iterable[bytes]) -> tuple[bytes, ...]:
    """Every searched form of the credential header `values`, longest first."""
    values = list(values)
    bases, secrets = _carriers(values)
    forms = {f for base in bases if base for f in _encodings(base) if len(f) >= _MIN_FORM}
    forms.update(_cores(secrets))
    forms.update(v for v in values if v)  # a whole header value, however short
    forms.update(w for f in list(forms) for w in json_written(f))
    return _longest_first(forms)


def _longest_first(forms: Iterable[bytes]) -> tuple[bytes, ...]:
    return tuple(sorted(forms, key=lambda f: (-len(f), f)))


def _windows(triggers: re.Pattern[bytes], data: bytes, reach: int) -> list[tuple[int, int]]:
    """The stretches of `data` within `reach` bytes of a trigger, overlapping ones merged:
    a written form holding a trigger lies wholly inside one (searched once)."""
    windows: list[tuple[int, int]] = []
    for found in triggers.finditer(data):
        start, end = max(0, found.start() - reach), found.end() + reach
        if windows and start <= windows[-1][1]:
            windows[-1] = (windows[-1][0], end)
        else:
            windows.append((start, end))
    return windows


def _alternation(patterns: Iterable[bytes]) -> re.Pattern[bytes]:
    """One regex matching any of `patterns` (none: a regex that never matches)."""
    return re.compile(b"|".join(patterns) or b"(?!)")


#: A JSON escape of a printable byte (``\\u005f``, ``\\/``, ``\\"``, ``\\\\``), and that byte.
_JSON_ESCAPE = re.compile(rb'\\(?:u00[2-7][0-9a-fA-F]|[/"\\])')
_JSON_BYTE = {
    **{b"\\u00" + bytes(h): bytes((v,)) for v in range(0x20, 0x80)
       for h in product(*({c, ord(chr(c).upper())} for c in b"%02x" % v))},
    **{b"\\" + bytes((v,)): bytes((v,)) for v in b'/"\\'},
}  # fmt: skip


def _json_read(text: bytes) -> bytes:
    """`text` with its JSON escapes of printable bytes read, left to right as a decoder does."""
    return _JSON_ESCAPE.sub(lambda escape: _JSON_BYTE[escape[0]], text)


def _json_core(form: bytes) -> bytes:
    """The longest part of `form` that a text holding it with any of its bytes JSON-escaped
    holds once read (`_json_read`): not its first six bytes (an escape the text begins
    before it may read them), nor a backslash of its own and the five bytes after it (it
    may begin an escape that reads them); past those, each byte is read as it is written."""
    pieces, at = [], 6
    for slash in re.finditer(rb"\\", form):
        pieces.append(form[at : slash.start()])
        at = max(at, slash.start() + 6)
    pieces.append(form[at:])
    return max(pieces, key=len)


class _Spelled:
    """A search for any of `forms` with any of their bytes spelled otherwise (`spell`: the
    regex of a form, one alternation per byte), compiled only for the forms a text may hold:
    those whose core (a part each of its spellings holds as the text is read) it holds.
    The same forms in the same order as one regex of them all, so it finds the same spans;
    but a long secret (a JWT: thousands of bytes, each an alternation, in a dozen forms)
    costs no compile until an upstream echoes it spelled so (seconds, per token refresh)."""

    __slots__ = ("_compiled", "_cores", "_forms", "_spell")

    def __init__(
        self, forms: Iterable[bytes], cores: Iterable[bytes], spell: Callable[[bytes], bytes]
    ) -> None:
        self._forms = tuple(forms)
        self._cores = tuple(cores)
        self._spell = spell
        self._compiled: dict[tuple[int, ...], re.Pattern[bytes]] = {}

    def within(self, read: bytes) -> re.Pattern[bytes] | None:
        """The search for the forms a text may hold, from the text as read (None: none)."""
        present = tuple(i for i, core in enumerate(self._cores) if core in read)
        if not present:
            return None
        found = self._compiled.get(present)
        if found is None:
            if len(self._compiled) >= _COMPILED:
                self._compiled.clear()
            found = _alternation(self._spell(self._forms[i]) for i in present)
            self._compiled[present] = found
        return found


def _json_spelled(form: bytes) -> bytes:
    return b"".join(escapable(b) for b in form)


def _percent_spelled(form: bytes) -> bytes:
    return b"".join(percentable(b) for b in form)


class Scrubber:
    """The secrets of one connector's credential, and how to find them in bytes."""

    __slots__ = (
        "_bytes", "_escaped", "_escaped_firsts", "_firsts", "_folded", "_heads",
        "_html", "_html_firsts", "_html_near", "_html_trigger", "_needles", "_openings",
        "_pattern", "_percent", "_percent_escape", "_percent_trigger", "_plain", "_reach",
        "_spaced", "_spelled_firsts", "_starting", "_tile_pattern", "_tiles", "_trigger",
        "_wide_chars", "_wrapped_openings", "_wrapped_reach", "forms", "longest",
        "replacements", "wrapped",
    )  # fmt: skip

    def __init__(self, forms: tuple[bytes, ...], wrapped: tuple[bytes, ...] = ()) -> None:
        self.forms = forms
        self.wrapped = wrapped
        self.replacements = tuple((f, filler(len(f))) for f in forms)
        self.longest = max((len(f) for f in forms), default=0)
        self._firsts = tuple(sorted({f[:1] for f in forms}))
        self._openings = _Openings(forms)  # (for `held`)
        self._bytes = frozenset(b"".join(forms))  # bytes that occur in a secret
        # to tell whether any form is there, the forms that hold no other suffice (a base64
        # form holds its core: where the core is not, neither is the form)
        self._needles = tuple(f for f in forms if not any(o != f and o in f for o in forms))
        # (one regex of them for a short text, but not of a long secret's: its compile costs
        # more than the searches it saves)
        short = sum(map(len, self._needles)) <= _SMALL
        self._pattern = _alternation(map(re.escape, self._needles)) if short else None
        self._folded = tuple(dict.fromkeys(f.lower() for f in self._needles))  # (names)
        # Every form with any of its bytes JSON-escaped, searched only near an escape of a
        # byte some form holds (`\u005f`): rare in real bodies, so a body full of `\"` or
        # Go's `\u003c` costs nothing more. (The forms as a JSON encoder writes them are
        # searched as they are; their escapes are among those of the form they write.)
        written = {w for f in forms for w in json_written(f) if w != f}
        plain = [f for f in forms if f not in written]
        self._escaped = _Spelled(plain, map(_json_core, plain), _json_spelled)
        escapes = sorted(b"%02x" % b for b in set(b"".join(plain)) if 0x20 <= b < 0x7F)
        # (`\/`, `\\`, `\"` alone are no trigger: a body escaping each one has the written form)
        self._trigger = re.compile(rb"\\u00(?:" + b"|".join(any_case(e) for e in escapes) + b")")
        # where a form so written may begin (for `held`): a first byte, as is or escaped, or
        # an escape the end cuts short
        cut = rb"\\(?:u[0-9a-fA-F]{0,3})?\Z"
        firsts = [escapable(first[0]) for first in self._firsts]
        self._escaped_firsts = re.compile(b"(?=" + b"|".join([*firsts, cut]) + b")")
        self._heads = frozenset(f[:4] for f in forms)
        # Every form with any of its bytes percent-encoded, searched the same way: only near
        # a `%XX` of a byte some form holds. The forms that hold no other suffice: where one
        # holds another, the other's bytes are the secret's (replaced, they are not there).
        needles = [f for f in self._needles if f not in written]
        escape = b"%" + hex_of(set(b"".join(needles)))
        self._percent_escape = re.compile(escape)
        self._spaced = any(b" " in f for f in needles)  # (then a `+` may be a space too)
        self._percent_trigger = re.compile(escape + rb"|\+" if self._spaced else escape)
        # the quick test: a part of each needle that the body decoded holds wherever the
        # needle is written (a space written `+` or ` `: both read as a space)
        translate = PLUS_AS_SPACE if self._spaced else None
        cores = [percent_core(f).translate(translate) for f in needles]
        self._percent = _Spelled(needles, cores, _percent_spelled)
        # where a form written with escapes may begin (for `held`), and the forms by first byte
        self._spelled_firsts = beginnings(forms)
        self._starting: dict[bytes, tuple[bytes, ...]] = {}
        for form in forms:
            self._starting[form[:1]] = (*self._starting.get(form[:1], ()), form)
        self._starting[b"+"] = self._starting.get(b"+", ()) + self._starting.get(b" ", ())
        self._starting[b"\\"] = self._starting.get(b"\\", ()) + self._starting.get(b"/", ())
        # Every form holding a byte an HTML escaper writes as a character reference, with any
        # of those written as one; also as a JSON string holds it (a page in JSON, JSON in a
        # page: the forms as JSON writes them are among these spellings of the forms they
        # write). A scrubber whose forms hold none (a usual token) has no such search.
        referenced = self._bytes.intersection(REFERENCE.values())
        html = [form for form in plain if referenced.intersection(form)]
        spellings = (False, True)
        spelled = {b"".join(html_escapable(b, j) for b in f): f for f in html for j in spellings}
        parts = (max(_HTML_SPLIT.split(form), key=len) for form in spelled.values())
        self._html = _Spelled(spelled, parts, lambda pattern: pattern) if html else None
        references = (re.escape(r[1:]) for r, byte in REFERENCE.items() if byte in referenced)
        self._html_trigger = re.compile(b"&(?:" + b"|".join(references) + b")")
        # searched near the longest part of a form that each of its spellings holds as is, of
        # each form holding no other (one holding another holds its spellings): rarer in a
        # page than a reference; near a reference where a form is all such bytes
        least = [f for f in html if not any(o != f and o in f for o in html)]
        cores = [max(_HTML_SPLIT.split(form), key=len) for form in least]
        self._html_near = _alternation(map(re.escape, cores)) if all(cores) else self._html_trigger
        self._html_firsts = html_beginnings(forms if html else ())  # (for `held`)
        # The forms `wrapped` in lines (base64 cores), searched by two parts of each, one of
        # which a body holds whole however a form is wrapped (in place of the form: a body
        # holding it holds both); then in the body read without its breaks.
        self._tiles = tuple(dict.fromkeys(t for form in wrapped for t in tiles(form)))
        self._tile_pattern = _alternation(map(re.escape, self._tiles))
        self._plain = tuple(f for f in self._needles if f not in wrapped)
        self._wrapped_openings = _Openings(wrapped)
        self._wrapped_reach = self._wrapped_openings.longest * _WRAPPED_WIDEST
        # Every search in a UTF-16 or UTF-32 text too, read one byte of each character: where
        # a body holds a run of the printable characters each form holds in a row
        runs = [max(map(len, _PRINTABLE.findall(f)), default=0) for f in self._needles]
        self._wide_chars = max(0, min(4, min(runs, default=0) - 1))
        # (how far back a stream's tail may begin a form spelled or wrapped: in a wide text,
        # four times as far)
        escaped = self.longest * max(WIDEST, PERCENT, HTML_WIDEST)
        self._reach = max(escaped, self._wrapped_reach + BLANKS_READ)

    def _escaped_spans(self, data: bytes) -> list[tuple[int, int]]:
        """Where an escaped form is (start, end): searched around each escape of a byte a
        form holds, as far as the widest escaped form reaches."""
        spans = []
        for start, end in _windows(self._trigger, data, self.longest * WIDEST):
            search = self._escaped.within(_json_read(data[start:end]))
            if search is not None:
                spans += [m.span() for m in search.finditer(data, start, end)]
        return spans

    def _percent_spans(self, data: bytes) -> list[tuple[int, int]]:
        """Where a percent-encoded form is (start, end), as :meth:`_escaped_spans`: searched
        only when `data` with the escapes of the forms' bytes decoded holds a form's core (a
        quick test that every spelling passes; the search for every spelling is not quick)."""
        decoded, escapes = self._percent_escape.subn(unescaped_byte, data)
        if not escapes and not (self._spaced and b"+" in data):
            return []  # (no trigger: nothing to search around)
        if self._spaced:
            decoded = decoded.translate(PLUS_AS_SPACE)
        if b"\\" in decoded:  # (one byte: a quicker search than for two)
            decoded = decoded.replace(b"\\/", b"/")
        search = self._percent.within(decoded)
        if search is None:
            return []
        windows = _windows(self._percent_trigger, data, self.longest * PERCENT)
        return [m.span() for start, end in windows for m in search.finditer(data, start, end)]

    def _html_spans(self, data: bytes) -> list[tuple[int, int]]:
        """Where an HTML-escaped form is (start, end), as :meth:`_escaped_spans`: searched
        around each part of a form that all its spellings hold as is."""
        search = self._html.within(data) if self._html is not None else None
        if search is None:
            return []
        windows = _windows(self._html_near, data, self.longest * HTML_WIDEST)
        return [m.span() for start, end in windows for m in search.finditer(data, start, end)]

    def _wrapped_in(self, data: bytes) -> bool:
        """Whether a `wrapped` form is in `data` read without its line breaks: read so only
        where `data` holds a tile of one (the quick test)."""
        if not line_broken(data):  # (then whole, if there: a quicker search than its tiles)
            return any(form in data for form in self.wrapped)
        if len(data) < _SMALL:  # (as in `found`)
            if self._tile_pattern.search(data) is None:
                return False
        elif not any(tile in data for tile in self._tiles):
            return False
        view = unbroken(data)
        return any(form in view for form in self.wrapped)

    def _wrapped_spans(self, data: bytes) -> list[tuple[int, int]]:
        """Where a `wrapped` form broken by line breaks is (start, end)."""
        return broken_spans(data, self.wrapped) if self._wrapped_in(data) else []

    def _readings(self, data: bytes) -> list[tuple[int, int]]:
        """How `data` is read as a UTF-16 or UTF-32 text, if it may be one: one byte of each
        character, ``data[start::width]``, for each (width, start)."""
        widths = wide_widths(data, self._wide_chars)
        return [(width, start) for width in widths for start in range(width)]

    def found(self, data: bytes) -> bool:
        """True when `data` holds a whole secret (also in a UTF-16 or UTF-32 text)."""
        if self._found(data):
            return True
        return any(self._found(data[start::width]) for width, start in self._readings(data))

    def scrub(self, data: bytes) -> tuple[bytes, int]:
        """`data` with every whole secret replaced, and how many were: in a UTF-16 or UTF-32
        text, each byte read replaced (each character then a filler's, encoded alike)."""
        data, count = self._scrub(data)
        for width, start in self._readings(data):
            read, found = self._scrub(data[start::width])
            if found:
                written = bytearray(data)
                written[start::width] = read
                data, count = bytes(written), count + found
        return data, count

    def held(self, data: bytes) -> int:
        """Length of the longest suffix of `data` that may begin a secret (0: none), also in
        a UTF-16 or UTF-32 text (read every way: a stream may be cut inside a character)."""
        held = self._held(data)
        begin = max(0, len(data) - self._reach * 4)
        if data.find(b"\0", begin) < 0:
            return held
        window = data[begin:]
        # (UTF-32 where two zero bytes are, a character's last ones: UTF-16's reading holds
        # back the beginning of one cut after its first zero)
        for width in (2, 4) if b"\0\0" in window else (2,):
            for start in range(width):
                last = len(window) - 1 - (len(window) - 1 - start) % width
                if last < 0 or not window[last]:
                    continue  # (a reading ending in a zero byte ends in no beginning)
                read = window[start::width]
                if begun := self._held(read):
                    held = max(held, len(window) - start - (len(read) - begun) * width)
        return held

    def _found(self, data: bytes) -> bool:
        """`found`, in `data` as it is."""
        if len(data) < _SMALL and self._pattern is not None:  # one regex call beats a
            if self._pattern.search(data) is not None:  # search per form on short input
                return True
        elif any(form in data for form in self._plain):  # (the wrapped, by their tiles)
            return True
        if self._wrapped_in(data):
            return True
        if b"\\" in data and self._escaped_spans(data):
            return True
        if b"%" in data and self._percent_spans(data):
            return True
        return self._html is not None and b"&" in data and bool(self._html_spans(data))

    def _scrub(self, data: bytes) -> tuple[bytes, int]:
        """`scrub`, in `data` as it is."""
        if not self._found(data):
            return data, 0
        count = 0
        for form, fill in self.replacements:
            if form in data:
                count += data.count(form)
                data = data.replace(form, fill)
        searches = (
            (b"\\", self._escaped_spans),
            (b"%", self._percent_spans),
            (b"&", self._html_spans),
            (b"", self._wrapped_spans),  # (a quick test of its own)
        )
        for mark, spans_of in searches:
            if mark in data:  # escaped forms: each replaced by a filler of its own length
                spans = spans_of(data)
                for start, end in reversed(spans):
                    data = data[:start] + filler(end - start) + data[end:]
                count += len(spans)
        return data, count

    def _held(self, data: bytes) -> int:
        """`held`, in `data` as it is (the longest of each reading: one may miss what another
        holds, as a backslash that begins no JSON escape)."""
        held = self._held_plain(data)
        if self.wrapped:  # (a break near, or a backslash that may begin one)
            wrapped = self._wrapped_openings
            held = max(held, broken_tail(data, self._wrapped_reach, wrapped.longest, wrapped.held))
        reach = max(0, len(data) - self.longest * WIDEST)
        if b"\\" in data[-8:] or self._trigger.search(data, reach):
            held = max(held, self._held_escaped(data))  # (an escape near the end)
        start = max(0, len(data) - self.longest * PERCENT + 1)
        if b"%" in data[-2:] or self._percent_trigger.search(data, start):
            held = max(held, self._held_percent(data))  # (an escape of a form's byte near)
        start = max(0, len(data) - self.longest * HTML_WIDEST)
        if self._html is not None and (
            b"&" in data[-HTML_WIDEST:] or self._html_trigger.search(data, start)
        ):  # (a reference near the end: it may begin an HTML-escaped form)
            held = max(held, self._held_html(data))
        return held

    def _held_plain(self, data: bytes) -> int:
        """`held` for the forms as they are."""
        if not data or data[-1] not in self._bytes:
            return 0  # (a body or an event ending in a newline: at once)
        return self._openings.held(data)

    def _held_escaped(self, data: bytes) -> int:
        """`held` for a tail with an escape: a suffix whose JSON-unescaped bytes begin a
        form (or end inside an escape that may continue one)."""
        window = data[-(self.longest * WIDEST - 1) :]
        for start in self._escaped_firsts.finditer(window):  # earliest first
            index = start.start()
            head = json_unescaped(window[index : index + 4 * WIDEST], 4)
            if head is None or (len(head[0]) == 4 and head[0] not in self._heads):
                continue  # (most starts begin no form: told from 4 bytes)
            decoded = json_unescaped(window[index:], self.longest)
            if decoded is None:
                continue
            if self._begins_form(*decoded):
                return len(window) - index
        return 0

    def _held_percent(self, data: bytes) -> int:
        """`held` for a tail near a ``%``: the longest suffix that begins a form with any of
        its bytes percent-encoded (or a space ``+``), possibly ending inside an escape."""
        window = data[-(self.longest * PERCENT - 1) :]
        if not window or (window[-1] not in self._bytes and window[-1] not in SPELLING):
            return 0  # (a body or an event ending in a newline: at once)
        for first in self._spelled_firsts.finditer(window):  # earliest first
            at = first.start()
            if window[at] == 0x25 and len(window) - at < 3:  # `%`, `%2`: any form's escape
                forms = self.forms
            else:  # the forms that begin with the byte as written, or with the escaped byte
                forms = self._starting.get(window[at : at + 1], ())
                forms += self._starting.get(BYTE_OF.get(window[at : at + 3], b""), ())
            if any(begins_spelled(window, at, form) for form in forms):
                return len(window) - at
        return 0

    def _held_html(self, data: bytes) -> int:
        """`held` for a tail near a character reference: the longest suffix that, read as
        :func:`html_unescaped` reads it, begins a form (or ends inside an escape: ``&#3``)."""
        window = data[-(self.longest * HTML_WIDEST - 1) :]
        if not window or (window[-1] not in self._bytes and window[-1] not in _REFERENCE_BYTES):
            return 0  # (a body or an event ending in a newline: at once)
        for first in self._html_firsts.finditer(window):  # earliest first
            tail = window[first.start() :]
            for json in (False, True):  # references decoded, and JSON's escapes too
                head = html_unescaped(tail, 4, json)[0]
                if len(head) == 4 and head not in self._heads:
                    continue  # (most starts begin no form: told from 4 bytes)
                if self._begins_form(*html_unescaped(tail, self.longest, json)):
                    return len(tail)
        return 0

    def _begins_form(self, text: bytes, open_escape: bool) -> bool:
        """Whether `text` (a tail read, ending inside an escape if `open_escape`) begins a
        form and is not the whole of it."""
        return any(form.startswith(text) and (open_escape or len(form) > len(text))
                   for form in self.forms)  # fmt: skip

    def _folded_in(self, names: bytes) -> bool:
        """Whether header `names` hold a secret in another case: a name is case-insensitive
        and a hop may change its case (HTTP/2 lowers it, Go capitalises its words). Read
        lowered, and lowered with its ``%XX`` decoded (``%4B`` stays ``K``)."""
        views = (names.lower(), ESCAPE.sub(unescaped_byte, names).lower())
        return any(n in view for view in views for n in self._folded)

    def _in_head(self, reason: bytes, headers: list[tuple[bytes, bytes]]) -> bool:
        """Whether a head holds a secret: one search of it all (a newline is in no secret:
        nothing spans two fields), and of its names in any case."""
        if self.found(b"\n".join(chain((reason,), *headers))):
            return True
        return self._folded_in(b"\n".join(name for name, _ in headers))

    def headers(self, headers: list[tuple[bytes, bytes]]) -> tuple[list[tuple[bytes, bytes]], int]:
        """Header values scrubbed; a header whose *name* holds a secret, in any case, is
        dropped (a filler is no valid name) and its secrets counted."""
        if not self._in_head(b"", headers):
            return headers, 0
        out: list[tuple[bytes, bytes]] = []
        total = 0
        for name, value in headers:
            found = self.scrub(name)[1] or int(self._folded_in(name))
            if found:
                total += found
                continue
            value, found = self.scrub(value)
            total += found
            out.append((name, value))
        return out, total

    def response_head(
        self, reason: bytes, headers: list[tuple[bytes, bytes]]
    ) -> tuple[bytes, list[tuple[bytes, bytes]], int]:
        """The reason phrase scrubbed and :meth:`headers`, and how many secrets were found:
        one search when there is none."""
        if not self._in_head(reason, headers):
            return reason, headers, 0
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


class _Openings:
    """Forms, and where the end of a text may begin one (:meth:`held`)."""

    __slots__ = ("_firsts", "_heads", "_starts", "forms", "longest")

    def __init__(self, forms: tuple[bytes, ...]) -> None:
        self.forms = forms
        self.longest = max(map(len, forms), default=0)
        self._firsts = frozenset(form[0] for form in forms)
        pairs = sorted({form[:2] for form in forms})  # (where one may begin: a regex search)
        self._starts = re.compile(b"(?=" + _alternation(map(re.escape, pairs)).pattern + b")")
        self._heads = frozenset(form[:4] for form in forms)

    def held(self, data: bytes) -> int:
        """Length of the longest suffix of `data` that begins one of the forms (0: none)."""
        window = data[max(0, len(data) - self.longest + 1) :]
        for start in self._starts.finditer(window):  # earliest first
            at = start.start()
            head = window[at : at + 4]  # (most places begin no form: told from 4 bytes)
            if (len(head) < 4 or head in self._heads) and any(
                form.startswith(window[at:]) for form in self.forms
            ):
                return len(window) - at
        return 1 if window and window[-1] in self._firsts else 0


def scrubber_for(values: Iterable[bytes], also: Scrubber | None = None) -> Scrubber | None:
    """The scrubber for a connector injecting header `values`, which finds the secrets of
    `also` too (None: nothing injected, nothing else to find)."""
    values = list(values)
    forms = set(secret_forms(values))
    wrapped = _cores(_carriers(values)[1])
    if also is not None:
        forms.update(also.forms)
        wrapped.update(also.wrapped)
    return Scrubber(_longest_first(forms), _longest_first(wrapped)) if forms else None
