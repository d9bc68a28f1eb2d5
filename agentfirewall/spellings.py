"""How a form of a secret may be spelled in a body: JSON-, percent- or HTML-escaped.

Pure byte logic, no I/O; the scrubber (:mod:`agentfirewall.scrubbing`) builds its searches
from these. A JSON encoder writes a form in a string with a backslash and a quote escaped
and a ``/`` as is or (PHP) ``\\/`` (:func:`json_written`); in a body holding a backslash,
any byte of a form may be a JSON escape (:func:`escapable`: ``\\u005f`` in any case of hex,
or ``\\/``, ``\\"``, ``\\\\``), which :func:`json_unescaped` decodes. In a body holding a
``%``, any byte may be percent-encoded (:func:`percentable`: ``%2F`` or ``%2f``, a space
also ``+``, a ``/`` also ``\\/``); :data:`BYTE_OF` decodes an escape, :func:`percent_core`
is the part of a form every such spelling holds once decoded (the scrubber's quick test),
and :func:`beginnings` and :func:`begins_spelled` tell where a spelled form may begin at
the end of a chunk (what a stream holds back). In an HTML or XML page, a byte an escaper
writes as a character reference (``&"'<>``) may be one (:func:`html_escapable`: ``&amp;``,
``&#38;``, ``&#x26;``; :data:`REFERENCE` lists them all), which :func:`html_unescaped`
decodes, and :func:`html_beginnings` tells where such a form may begin.

Base64 as MIME, PEM or GitHub's contents API write it is wrapped, and a base64 reader
skips blanks and line breaks (CR, LF; in a JSON string ``\\n``, ``\\t``...) wherever they
are: a break, with any indentation or trailing blanks, may fall anywhere in a form.
:func:`tiles` are two parts of a form, one of which a text holds whole however it is
wrapped (the quick test); :func:`line_broken` tells whether a text may have a break,
:func:`unbroken` reads it without them, :func:`broken_spans` finds where a form is,
:func:`broken_tail` what a stream holds back. A text sent in UTF-16 or UTF-32 is read one
byte of each character (its low byte: ``data[start::width]``) where :func:`wide_widths`
tells it may hold one.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Callable, Iterable
from itertools import product

__all__ = [
    "BLANKS_READ",
    "BYTE_OF",
    "ESCAPE",
    "HTML_WIDEST",
    "PERCENT",
    "PLUS_AS_SPACE",
    "REFERENCE",
    "SPELLING",
    "WIDEST",
    "any_case",
    "beginnings",
    "begins_spelled",
    "broken_spans",
    "broken_tail",
    "escapable",
    "hex_of",
    "html_beginnings",
    "html_escapable",
    "html_unescaped",
    "json_unescaped",
    "json_written",
    "line_broken",
    "percent_core",
    "percentable",
    "tiles",
    "unbroken",
    "unescaped_byte",
    "wide_widths",
]

_HEX = frozenset(b"0123456789abcdefABCDEF")
#: A JSON escape is at most this many bytes per byte of a form (``\u005f``).
WIDEST = 6
#: A percent-encoding is at most this many bytes per byte of a form (``%2F``).
PERCENT = 3
ESCAPE = re.compile(rb"%[0-9a-fA-F]{2}")
_ESCAPE_OR_SLASH = re.compile(rb"%[0-9a-fA-F]{2}|\\/")
#: What a byte of a percent-encoded form may be written with: ``%``, hex, ``+`` (a space),
#: ``\`` (a ``/`` written ``\/``).
SPELLING = _HEX | frozenset(b"%+\\")
PLUS_AS_SPACE = bytes.maketrans(b"+", b" ")


def json_written(form: bytes) -> list[bytes]:
    """`form` as JSON encoders write it in a string: a backslash and a quote escaped, a ``/``
    as is or (PHP's default) ``\\/``."""
    written = form.replace(b"\\", b"\\\\").replace(b'"', b'\\"')
    return [written, written.replace(b"/", b"\\/")]


def escapable(byte: int) -> bytes:
    """A regex of one byte of a form: itself, or (printable ASCII) its JSON escapes."""
    plain = re.escape(bytes([byte]))
    if not 0x20 <= byte < 0x7F:
        return plain
    digits = b"".join(
        b"[" + d.lower() + d.upper() + b"]" if d.isalpha() else d
        for d in (bytes([c]) for c in b"%02x" % byte)
    )
    alternatives = [plain, rb"\\u00" + digits]
    if byte in b'/"\\':  # JSON's two-character escapes
        alternatives.append(rb"\\" + re.escape(bytes([byte])))
    return b"(?:" + b"|".join(alternatives) + b")"


def json_unescaped(tail: bytes, limit: int) -> tuple[bytes, bool] | None:
    """`tail` with its JSON escapes decoded (up to `limit` bytes: a longer text begins no
    form), and whether it ends inside one (None: it holds an escape no form of ASCII bytes
    can have)."""
    out = bytearray()
    index = 0
    while index < len(tail) and len(out) < limit:
        byte = tail[index]
        if byte != 0x5C:  # a backslash
            out.append(byte)
            index += 1
            continue
        kind = tail[index + 1 : index + 2]
        if not kind:
            return bytes(out), True
        if kind in (b"/", b"\\", b'"'):  # (JSON's two-character escapes of a form's bytes)
            out += kind
            index += 2
            continue
        if kind != b"u":
            return None
        digits = tail[index + 2 : index + 6]
        if len(digits) < 4:
            return (bytes(out), True) if all(d in _HEX for d in digits) else None
        if not all(d in _HEX for d in digits) or int(digits, 16) >= 0x80:
            return None
        out.append(int(digits, 16))
        index += 6
    return bytes(out), False


def percentable(byte: int) -> bytes:
    """A regex of one byte of a form: itself, or its percent-encoding (either case of hex;
    a space also ``+``, as forms encode it; a ``/`` also ``\\/``, as PHP writes a URL in
    JSON)."""
    alternatives = [re.escape(bytes([byte])), b"%" + any_case(b"%02x" % byte)]
    if byte == 0x20:
        alternatives.append(rb"\+")
    elif byte == 0x2F:
        alternatives.append(rb"\\/")
    return b"(?:" + b"|".join(alternatives) + b")"


#: The byte each ``%XX`` stands for, in every case of its hex: looked up, not parsed (a body
#: may hold a million escapes).
BYTE_OF = {
    b"%" + bytes(hexes): bytes((value,))
    for value in range(256)
    for hexes in product(*({c, ord(chr(c).upper())} for c in b"%02x" % value))
}


def unescaped_byte(escape: re.Match[bytes]) -> bytes:
    """The byte a ``%XX`` stands for."""
    return BYTE_OF[escape[0]]


def hex_of(values: set[int]) -> bytes:
    """A regex of the two hex digits (either case) of any of the byte `values`."""
    lows: dict[int, set[int]] = {}
    for value in values:
        lows.setdefault(value >> 4, set()).add(value & 15)
    branches = [
        any_case(b"%x" % high) + b"[" + b"".join(b"%x%X" % (low, low) for low in sorted(los)) + b"]"
        for high, los in sorted(lows.items())
    ]
    return b"(?:" + (b"|".join(branches) or b"(?!)") + b")"


def any_case(hexes: bytes) -> bytes:
    """A regex of the hex digits `hexes`, each letter in either case."""
    return b"".join(b"[" + bytes([c]).lower() + bytes([c]).upper() + b"]"
                    if chr(c).isalpha() else bytes([c]) for c in hexes)  # fmt: skip


def percent_core(form: bytes) -> bytes:
    """The longest part of `form` that the body holds, once its ``%XX`` and then its ``\\/``
    are decoded, wherever `form` is written with any of its bytes percent-encoded, whatever
    stands beside it: not its first two bytes when hex digits (a ``%`` before them makes an
    escape: ``x%6768…`` decodes to ``xg68…``), not a ``%XX`` or ``\\/`` of its own written
    as is (decoded), not a ``%``, ``%X`` or ``\\`` at its end (the bytes after it may complete
    an escape)."""
    lead = 0
    while lead < min(2, len(form)) and form[lead] in _HEX:
        lead += 1
    end = len(form)
    if form.endswith((b"%", b"\\")):
        end -= 1
    elif form[-2:-1] == b"%" and form[-1] in _HEX:
        end -= 2
    pieces: list[bytes] = []
    at = lead
    for escape in _ESCAPE_OR_SLASH.finditer(form):
        pieces.append(form[at : escape.start()])
        at = max(at, escape.end())
    pieces.append(form[at:end])
    return max(pieces, key=len)


def beginnings(forms: Iterable[bytes]) -> re.Pattern[bytes]:
    """A regex matching (empty) where one of `forms` written with any of its bytes
    percent-encoded may begin: its first two bytes written, or the first and the end of the
    data, or the end inside an escape (``%``, ``%2``, ``\\``)."""
    seconds: dict[int, set[int]] = {}
    for form in forms:
        seconds.setdefault(form[0], set()).update(form[1:2])
    open_escape = rb"(?:%[0-9a-fA-F]?|\\)\Z"
    branches = [
        percentable(first)
        + b"(?:"
        + b"|".join([*map(percentable, sorted(then)), rb"\Z", open_escape])
        + b")"
        for first, then in sorted(seconds.items())
    ]
    return re.compile(b"(?=" + b"|".join([*branches, open_escape]) + b")")


def begins_spelled(window: bytes, at: int, form: bytes) -> bool:
    """Whether `window` from `at` on is the beginning (not the whole) of `form` with any of
    its bytes percent-encoded (a space also ``+``, a ``/`` also ``\\/``), read from `at`
    itself: an escape the body holds before it or a ``%XX`` the form holds as is is no
    escape of its bytes here. It may end inside an escape (``%``, ``%2`` or ``\\``)."""
    for index, byte in enumerate(form):
        if at == len(window):
            return True
        written = window[at : at + 3]
        if len(written) < 3 and (b"%%%02X" % byte).startswith(written.upper()):
            return True  # (it ends inside an escape of the byte)
        if BYTE_OF.get(written) == form[index : index + 1]:
            # (`%25`: the escape of a `%`, or a `%` as is that the form's `25` follows)
            if byte == 0x25 and begins_spelled(window, at + 1, form[index + 1 :]):
                return True
            at += 3
        elif window[at] == byte or (byte == 0x20 and window[at] == 0x2B):
            at += 1
        elif byte == 0x2F and window[at : at + 2] in (b"\\/", b"\\"):
            if at + 1 == len(window):
                return True  # (it ends inside the `\\/`)
            at += 2
        else:
            return False
    return False


#: The bytes an HTML or XML escaper writes as a character reference, and their names.
_NAMED = {0x26: b"amp", 0x22: b"quot", 0x27: b"apos", 0x3C: b"lt", 0x3E: b"gt"}
_REFERENCE_WIDEST = 8  # (`&#x0027;`)


def _references(byte: int) -> list[bytes]:
    """How an escaper may write `byte` (one of ``&"'<>``): by name, or by number, decimal or
    hex (``x`` and hex in either case), with up to two leading zeros (PHP's ``&#039;``)."""
    zeros = (b"", b"0", b"00")
    hexes = sorted({b"%x" % byte, b"%X" % byte})
    return [
        b"&%b;" % _NAMED[byte],
        *(b"&#%b%d;" % (zero, byte) for zero in zeros),
        *(b"&#%b%b%b;" % (x, zero, h) for x in (b"x", b"X") for zero in zeros for h in hexes),
    ]


#: Every character reference a byte of a form may be written with, and that byte.
REFERENCE = {reference: byte for byte in _NAMED for reference in _references(byte)}
#: An HTML-escaped byte of a form is at most this many bytes (``\&#x0022;``: JSON, then HTML).
HTML_WIDEST = 1 + _REFERENCE_WIDEST


def html_escapable(byte: int, json: bool) -> bytes:
    """A regex of one byte of a form: itself, or (one of ``&"'<>``) a character reference to
    it, as an HTML or XML escaper writes it (``&amp;``, ``&#34;``, ``&#x27;``). With `json`,
    as a JSON string holds it too, written before or after the page is (an HTML page in a JSON
    string, JSON in a page): a backslash ``\\\\``, a ``"`` ``\\"``, a reference or both
    (``\\&quot;``), a ``/`` as is or ``\\/``."""
    if json and byte in b"\\/":
        return rb"\\\\" if byte == 0x5C else rb"\\?/"
    plain = re.escape(bytes([byte]))
    if byte not in _NAMED:
        return plain
    references = b"(?:" + b"|".join(map(re.escape, _references(byte))) + b")"
    if json and byte == 0x22:
        return rb'(?:\\"|\\?' + references + b")"
    return b"(?:" + plain + b"|" + references + b")"


def _read(tail: bytes, at: int) -> tuple[int, int] | None:
    """The byte at `at` in `tail` (a character reference decoded) and where it ends (None:
    `tail` ends inside a reference)."""
    if tail[at] == 0x26:  # `&`
        end = tail.find(b";", at, at + _REFERENCE_WIDEST) + 1
        byte = REFERENCE.get(tail[at:end]) if end else None
        if byte is not None:
            return byte, end
        rest = tail[at:]
        if len(rest) < _REFERENCE_WIDEST and any(r.startswith(rest) for r in REFERENCE):
            return None
    return tail[at], at + 1


def html_unescaped(tail: bytes, limit: int, json: bool) -> tuple[bytes, bool]:
    """`tail` as :func:`html_escapable` reads it (character references decoded; with `json`,
    a backslash before a ``"``, ``\\`` or ``/`` dropped), up to `limit` bytes (a longer text
    begins no form), and whether it ends inside an escape (``&``, ``&#3``, ``\\``)."""
    out = bytearray()
    index = 0
    while index < len(tail) and len(out) < limit:
        read = _read(tail, index)
        if json and read is not None and read[0] == 0x5C:  # `\`: a JSON string's escape
            after = _read(tail, read[1]) if read[1] < len(tail) else None
            if after is None or after[0] in b'"\\/':
                read = after
        if read is None:
            return bytes(out), True
        out.append(read[0])
        index = read[1]
    return bytes(out), False


def html_beginnings(forms: Iterable[bytes]) -> re.Pattern[bytes]:
    """A regex matching (empty) where one of `forms` HTML-escaped (:func:`html_escapable`,
    with or without `json`) may begin: its first two bytes written, or the first and the end
    of the data, or the end inside an escape (``&``, ``&#3``, ``\\``)."""
    seconds: dict[int, set[int]] = {}
    for form in forms:
        seconds.setdefault(form[0], set()).update(form[1:2])
    cut = rb"(?:\\|\\?&[#0-9a-zA-Z]{0,6})\Z"

    def spelled(byte: int) -> bytes:
        return b"(?:" + html_escapable(byte, False) + b"|" + html_escapable(byte, True) + b")"

    branches = [
        spelled(first) + b"(?:" + b"|".join([*map(spelled, sorted(then)), rb"\Z", cut]) + b")"
        for first, then in sorted(seconds.items())
    ]
    return re.compile(b"(?=" + b"|".join([*branches, cut]) + b")")


#: A wrapped form is found wherever one break cuts it, or where every line within it is at
#: least twice this long, less one (GitHub writes 60, PEM 64, MIME 76).
_TILE = 30
#: What a base64 reader skips between characters (``decodebytes``, XML's base64Binary, a YAML
#: block): blanks and line breaks, anywhere (indentation, trailing spaces, a folded header);
#: in a JSON string also as escapes (``\\n``, ``\\r``, ``\\t``, ``\\u000a``).
_SKIPPED = b" \t\r\n"
_SKIPPED_RUN = re.compile(rb"[ \t\r\n]+")
_ESCAPED_BREAK = re.compile(rb"(?:\\(?:[rnt]|u000[9aAdD]))+")
#: The end of a text inside an escaped break (more to come: ``\\``, ``\\u00``).
_OPEN_BREAK = re.compile(rb"\\(?:u0{0,3})?")
#: Blanks (indentation) read past in a stream's tail, in all, beyond a wrapped form's reach:
#: as far back as a stream holds a wrapped form's beginning.
BLANKS_READ = 1024
#: At most this many bytes of an escaped break read as bytes when cut before them (``u000a``).
_OPENED = 5
#: A text ending in an empty line (an event of a stream) continues no wrapped form.
_BLANK_LINE = (b"\n\n", b"\n\r\n", b"\\n\\n", b"\\n\\r\\n")


def tiles(form: bytes) -> tuple[bytes, bytes]:
    """Two parts of `form` (its halves, or its first two pieces of 30), one of which a text
    holds whole wherever it holds `form` cut by breaks: one break cuts at most one; where a
    break cuts the first, the next is a line further on (59 at least), past the second."""
    size = min(-(-len(form) // 2), _TILE)
    return form[:size], form[size : 2 * size]


def line_broken(data: bytes) -> bool:
    """Whether `data` may hold a break: a blank, a CR, a LF, or a backslash (a JSON string's
    escape of one; a quicker search than for those)."""
    return b"\n" in data or b" " in data or b"\\" in data or b"\r" in data or b"\t" in data


def unbroken(data: bytes) -> bytes:
    """`data` as a base64 reader reads it: without its blanks and line breaks (`_SKIPPED`)."""
    view = data.translate(None, _SKIPPED)
    return _ESCAPED_BREAK.sub(b"", view) if b"\\" in view else view


def _removed(data: bytes, pattern: re.Pattern[bytes]) -> tuple[bytes, Callable[[int], int]]:
    """`data` without what `pattern` matches, and where each of its bytes is in `data`."""
    pieces: list[bytes] = []
    views, origins = [0], [0]  # where each kept run begins: in the result, in `data`
    for found in pattern.finditer(data):
        pieces.append(data[origins[-1] : found.start()])
        views.append(views[-1] + len(pieces[-1]))
        origins.append(found.end())
    pieces.append(data[origins[-1] :])

    def origin(index: int) -> int:
        run = bisect_right(views, index) - 1
        return origins[run] + index - views[run]

    return b"".join(pieces), origin


def _unbroken_at(data: bytes) -> tuple[bytes, Callable[[int], int]]:
    """:func:`unbroken`, and where each of its bytes is in `data`."""
    first, outer = _removed(data, _SKIPPED_RUN)
    if b"\\" not in first:
        return first, outer
    view, inner = _removed(first, _ESCAPED_BREAK)
    return view, lambda index: outer(inner(index))


def broken_spans(data: bytes, forms: Iterable[bytes]) -> list[tuple[int, int]]:
    """Where `data` read without its breaks holds one of `forms` (start, end in `data`, the
    breaks within included; overlapping ones merged)."""
    view, origin = _unbroken_at(data)
    spans = []
    for form in forms:
        at = view.find(form)
        while at >= 0:
            spans.append((origin(at), origin(at + len(form) - 1) + 1))
            at = view.find(form, at + 1)
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start < merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def broken_tail(data: bytes, reach: int, longest: int, begun: Callable[[bytes], int]) -> int:
    """Length of the longest suffix of `data` that, read without its breaks, begins a form,
    as `begun` tells of a text read so (`longest`: the longest form): in its last `reach`
    bytes, or :data:`BLANKS_READ` more where blanks fill them. It may end inside an escaped
    break; a text ending in an empty line begins none (an event of a stream is sent at once),
    nor one without a break (a form is then as it is)."""
    window = data[-reach:]
    if window.endswith(_BLANK_LINE) or not line_broken(window):
        return 0
    if len(window) < len(data) and len(unbroken(window)) < longest:
        window = data[-(reach + BLANKS_READ) :]
    body = window
    cut = window.rfind(b"\\", max(0, len(window) - _OPENED))
    if cut >= 0 and _OPEN_BREAK.fullmatch(window, cut):  # (a `\n` to come)
        body = window[:cut]
    held = begun(unbroken(body))
    if not held:
        return 0
    # where the last `held` bytes read begin in `body`: read from a part of its end holding
    # more (a part may begin inside an escaped break: its first bytes are no bytes read)
    step = held + _OPENED
    while True:
        start = max(0, len(body) - step)
        part, origin = _unbroken_at(body[start:])
        if len(part) >= held + _OPENED or not start:
            return len(window) - start - origin(len(part) - held)
        step *= 2


#: A text's bytes as :func:`wide_widths` sees them: a zero ``0``, printable ASCII, a blank or
#: a line break ``P``, any other ``x`` (rare in a text: a binary body rarely has a run of such
#: characters).
_ZEROS = bytes(
    0x30 if b == 0 else 0x50 if 0x20 <= b < 0x7F or b in _SKIPPED else 0x78 for b in range(256)
)


def wide_widths(data: bytes, chars: int) -> tuple[int, ...]:
    """The widths of the characters of the UTF-16 (2) or UTF-32 (4) text `data` may hold:
    where it holds `chars` printable ASCII characters in a row, each then with one or three
    zero bytes (a quick test that a form holding more such characters in a row may be there;
    either byte order)."""
    if b"\0" not in data:
        return ()
    zeros = data.translate(_ZEROS)
    return tuple(width for width, unit in ((2, b"P0"), (4, b"P000")) if unit * chars in zeros)
