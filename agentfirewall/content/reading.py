"""Text as its reader reads it: body decoding, JSON escapes and JSON string tokens.

The guard must see what the upstream's parser sees, and rewrite a body without changing
anything it did not redact. Three pieces:

* :func:`decode_body`: a body as text. A body that reads as UTF-16 or UTF-32 JSON (RFC
  4627's detection from a byte order mark or the NULs among the first four bytes, which
  Python's ``json.loads(bytes)`` and Jackson apply whatever the ``Content-Type`` says) is
  read in that encoding, and written back in it; any other as UTF-8, undecodable bytes
  kept as surrogate escapes (so they survive a rewrite byte for byte).
* :class:`Unescaped`: text with its JSON escapes decoded (``\\u0051`` is ``Q``, a
  surrogate pair one character, ``\\/`` is ``/``), and where each decoded character came
  from, so what is found in the decoded text is replaced in the original.
* :func:`json_strings`: every string token of a JSON text (keys and values, every member of
  an object that names a key twice), with its span, whether it is a key, and the key of a
  member's value: a redaction rewrites these tokens in place and nothing else (numbers,
  spacing, key order and duplicate members stay as they were).
"""

from __future__ import annotations

import bisect
import codecs
import encodings.aliases
import functools
import json
import pkgutil
import re
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = [
    "Body",
    "Pairs",
    "StringToken",
    "Unescaped",
    "charset_known",
    "charset_readings",
    "decode_body",
    "json_strings",
    "load_json",
]

_ESCAPE = re.compile(
    r"\\(?:u([dD][89abAB][0-9a-fA-F]{2})\\u([dD][c-fC-F][0-9a-fA-F]{2})|u([0-9a-fA-F]{4})"
    r"|([\"\\/bfnrt]))"
)
_SIMPLE = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_SPACE = " \t\r\n"
_MARK_STARTS = (b"\xef", b"\xfe", b"\xff")  # the first byte of a byte order mark
#: Byte order marks, longest first: the encoding they announce.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)  # fmt: skip
_BOTH = ("utf-16-le", "utf-16-be")
#: MIME charsets that write ASCII otherwise (lower-case, letters and digits only): the
#: encodings they name (both byte orders where the name says none: readers differ).
_WIDE = {
    "utf16": _BOTH, "u16": _BOTH, "ucs2": _BOTH, "unicode": _BOTH, "csunicode": _BOTH,
    "iso10646ucs2": _BOTH, "unicodefeff": ("utf-16-le",), "unicodefffe": ("utf-16-be",),
    "utf16le": ("utf-16-le",), "utf16be": ("utf-16-be",),
    "utf32": ("utf-32-le", "utf-32-be"), "utf32le": ("utf-32-le",), "utf32be": ("utf-32-be",),
    "utf7": ("utf-7",), "unicode11utf7": ("utf-7",), "csunicode11utf7": ("utf-7",),
}  # fmt: skip
_NOT_NAME = re.compile(r"[^a-z0-9]")
#: Codecs whose reading is the UTF-8 reading's (a text body's own), and one that decodes in
#: quadratic time (no mail reader knows it).
_SAME = frozenset({"utf-8", "utf-8-sig", "ascii", "punycode"})


@dataclass(frozen=True, slots=True)
class Body:
    """A body's text, the encoding it was read in and the byte order mark before it."""

    text: str
    encoding: str = "utf-8"
    bom: bytes = b""

    def encode(self, text: str) -> bytes:
        """`text` written as this body was (its mark, its encoding, undecodable bytes back)."""
        return self.bom + text.encode(self.encoding, "surrogateescape")


def decode_body(body: bytes) -> Body:
    """The body as text (see the module docstring)."""
    if b"\0" not in body[:4] and body[:1] not in _MARK_STARTS:  # (the common case, at once)
        return Body(body.decode("utf-8", "surrogateescape"))
    encoding: str = json.detect_encoding(body)  # (NULs in the first bytes, or a mark)
    if encoding.startswith(("utf-16", "utf-32")):  # (ASCII in UTF-16 may be valid UTF-8 too)
        bom = b""
        for mark, name in _BOMS:
            if body.startswith(mark) and name.startswith(encoding[:6]):
                bom, encoding = mark, name
                break
        if encoding in ("utf-16", "utf-32"):
            encoding += "-le"
        try:
            text = body[len(bom) :].decode(encoding)
        except UnicodeDecodeError:
            pass
        else:
            if text.lstrip(_SPACE)[:1] in ("{", "[", '"'):
                return Body(text, encoding, bom)
    return Body(body.decode("utf-8", "surrogateescape"))


def charset_readings(data: bytes, charset: str = "") -> list[tuple[str, str]]:
    """`data` read in each encoding other than UTF-8 it may be written in: each UTF-16 or
    UTF-32 encoding its byte order mark announces (a UTF-32 little-endian mark starts as
    UTF-16's: both), else the one the MIME `charset` names: in a Unicode encoding that
    writes ASCII otherwise (``utf-16``, ``UTF-32BE``, ``utf-7``: both byte orders where the
    name says none, as readers differ), or in any other Python knows, as Python's ``email``
    reads it (``iso-2022-jp``, whose escapes may cut a key in its bytes; EBCDIC's
    ``cp500``; ``hz-gb-2312``, whose ``~`` line breaks are dropped); (encoding, text) pairs,
    undecodable bytes replaced. Nothing for UTF-8 or US-ASCII, a charset Python does not
    know (its UTF-8 reading shows every ASCII byte as it is) and any other text (at once:
    no mark, no charset). Each byte is decoded once per reading: linear."""
    if data[:1] in (b"\xff", b"\xfe", b"\0"):
        marked = [
            (name, len(mark)) for mark, name in _BOMS if name != "utf-8" and data.startswith(mark)
        ]
        if marked:
            return [(name, data[size:].decode(name, "replace")) for name, size in marked]
    if not charset:
        return []
    name = _NOT_NAME.sub("", charset.lower())
    wide = _WIDE.get(name)
    if wide is not None:
        return [(codec, data.decode(codec, "replace")) for codec in wide]
    codec = _codec(name)
    if codec is None:
        return []
    try:
        return [(codec, data.decode(codec, "replace"))]
    # (no text encoding, or one that takes no `replace`: no charset; `unicode-escape` warns
    # of an unknown escape, raised where warnings are errors)
    except (LookupError, UnicodeError, DeprecationWarning):
        return []


def charset_known(charset: str) -> bool:
    """Whether text in the MIME `charset` can be read here: none named, UTF-8 or US-ASCII,
    or one :func:`charset_readings` reads (a Unicode encoding, or a text encoding Python
    knows); not a name Python does not know, nor a codec that is no text encoding
    (``base64``, ``rot13``) or decodes nothing (``undefined``)."""
    name = _NOT_NAME.sub("", charset.lower())
    if not name or name in _WIDE:
        return True
    known = _codecs().get(name)
    return known is not None and _readable(known)


@functools.cache
def _readable(known: str) -> bool:
    try:
        codec = codecs.lookup(known).name
        if codec not in _SAME:
            b"A".decode(codec, "replace")
    except (LookupError, UnicodeError, DeprecationWarning):
        return False
    return True


def _codec(name: str) -> str | None:
    """The codec a charset `name` (lower-case letters and digits) names: None for one whose
    reading is the UTF-8 reading, or one Python does not know (never looked up: that would
    try an import for each new name)."""
    known = _codecs().get(name)
    return None if known is None else _lookup(known)


@functools.cache
def _lookup(known: str) -> str | None:
    try:
        codec = codecs.lookup(known).name
    except LookupError:
        return None
    return None if codec in _SAME else codec


@functools.cache
def _codecs() -> dict[str, str]:
    """Each codec Python knows (its module, or an alias), by its name in lower-case letters
    and digits (``iso2022jp``, ``hzgb2312``)."""
    names = {module.name: module.name for module in pkgutil.iter_modules(encodings.__path__)}
    names.update(encodings.aliases.aliases)
    return {_NOT_NAME.sub("", alias.lower()): codec for alias, codec in names.items()}


class Pairs(list[tuple[str, object]]):
    """A JSON object's members in order, a key given twice kept twice."""


def load_json(text: str) -> object:
    """`text` as JSON (a leading byte order mark skipped, as ``json.loads(bytes)`` does),
    objects as :class:`Pairs`. Raises ValueError or RecursionError."""
    return json.loads(text.removeprefix("\ufeff"), object_pairs_hook=Pairs)


class Unescaped:
    """`raw` with its JSON escapes decoded, and the way back to `raw`'s offsets."""

    __slots__ = ("_decoded", "_raw", "raw", "text")

    def __init__(self, raw: str) -> None:
        self.raw = raw
        parts: list[str] = []
        self._decoded: list[int] = []  # where each escape's character is in `text`
        self._raw: list[tuple[int, int]] = []  # and the escape's span in `raw`
        at = size = 0
        for match in _ESCAPE.finditer(raw):
            parts.append(raw[at : match.start()])
            size += match.start() - at
            high, low, code, simple = match.groups()
            if high is not None:
                char = chr(0x10000 + ((int(high, 16) - 0xD800) << 10) + int(low, 16) - 0xDC00)
            else:
                char = chr(int(code, 16)) if code is not None else _SIMPLE[simple]
            parts.append(char)
            self._decoded.append(size)
            self._raw.append(match.span())
            size += 1
            at = match.end()
        parts.append(raw[at:])
        self.text = "".join(parts)

    def to_raw(self, offset: int) -> int:
        """Where decoded character `offset` begins in `raw` (`len(text)`: `len(raw)`)."""
        index = bisect.bisect_right(self._decoded, offset) - 1
        if index < 0:
            return offset
        escape_at = self._decoded[index]
        start, end = self._raw[index]
        return start if offset == escape_at else end + (offset - escape_at - 1)


@dataclass(frozen=True, slots=True)
class StringToken:
    """A string of a JSON text: ``raw[start:end]`` holds its characters (no quotes)."""

    start: int
    end: int
    text: str  # decoded
    key: bool  # a member's name
    name: str | None  # a member's value: its member's name
    after_value: bool  # follows the previous string token with only `,` and spaces between


def json_strings(raw: str) -> Iterator[StringToken]:
    """Every string token of the JSON text `raw` (valid JSON: check first), in order."""
    at = 0
    name: str | None = None
    previous_end = -1
    previous_key = False
    while True:
        quote = raw.find('"', at)
        if quote < 0:
            return
        match = _STRING.match(raw, quote)
        if match is None:  # (not valid JSON after all)
            return
        end = match.end()
        inner = raw[quote + 1 : end - 1]
        text = Unescaped(inner).text if "\\" in inner else inner
        follow = end
        while follow < len(raw) and raw[follow] in _SPACE:
            follow += 1
        key = raw.startswith(":", follow)
        lead = raw[previous_end:quote].strip(_SPACE) if previous_end >= 0 else ""
        member = previous_key and lead == ":"
        yield StringToken(quote + 1, end - 1, text, key, name if member else None,
                          previous_end >= 0 and not previous_key and lead == ",")  # fmt: skip
        if key:
            name = text
        previous_end, previous_key = end, key
        at = end
