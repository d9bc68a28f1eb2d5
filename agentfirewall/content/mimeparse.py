"""A MIME message's structure as Python's parser reads it, and where readers may read another.

:func:`message_parts` parses a message with the ``email`` package's ``compat32`` policy
(header values are not parsed into objects, which costs twelve times more per part) within
bounds read from the bytes first (``mime``'s docstring); :func:`as_read` is a message as a
mail reader reads one a byte order mark starts. :func:`hidden` says a part's structure hides
encoded text from the parser; :func:`ambiguous` that readers may cut or name the message
otherwise than the parser: either way it is read unstructured too (``mimeflat``).
"""

from __future__ import annotations

import codecs
import email
import re
from email import errors
from email.message import Message
from email.policy import compat32
from itertools import islice

from agentfirewall.content.mimeheaders import PARAMETERED, unquoted

__all__ = [
    "DECODED",
    "MAX_HEADER",
    "MAX_NESTED",
    "MAX_PARAMETERS",
    "MAX_PARTS",
    "MAX_WORDS",
    "MAX_WORK",
    "ambiguous",
    "as_read",
    "attached",
    "encoding",
    "hidden",
    "message_parts",
    "written",
]

#: Delimiter lines (``--`` and a boundary a ``Content-Type`` declares, ``--`` after it or not,
#: then only spaces and tabs, as RFC 2046 and the parser read one), read structurally at most.
MAX_PARTS = 1024
#: Multiparts and messages (``boundary``, ``message/`` in a ``Content-Type`` or
#: ``Content-Disposition`` header, wherever it is) at most.
MAX_NESTED = 16
#: Lines (broken at ``\\r``, ``\\n`` or both, as the parser breaks them) times the multiparts
#: and messages plus one, at most: the parser checks each line against each open boundary.
MAX_WORK = 1 << 20
#: Encoded words (``=?``) in the parts' headers at most.
MAX_WORDS = 4096
#: Characters of a ``Content-Type`` or ``Content-Disposition`` header (continuation lines
#: joined), and ``;`` in one, at most: the parser reads its parameters in a time that grows
#: with their product.
MAX_HEADER = 8192
MAX_PARAMETERS = 64

_UUENCODE = frozenset({"x-uuencode", "uuencode", "uue", "x-uue"})
#: Transfer encodings that change a part's content (lower-case).
DECODED = frozenset({"base64", "quoted-printable"}) | _UUENCODE
_KNOWN = DECODED | {"", "7bit", "8bit", "binary"}  # (any other: read unstructured too)
_TOKEN_END = re.compile(r"[\s;(]")  # (what ends a transfer encoding's name)
_CONTAINERS = frozenset({"multipart", "message"})
_UNCUT = (
    errors.NoBoundaryInMultipartDefect,
    errors.StartBoundaryNotFoundDefect,
    errors.MultipartInvariantViolationDefect,
    errors.FirstHeaderLineIsContinuationDefect,
)
# (readers differ on: where the last part of a multipart never closed ends, and a line that is
# no header where headers are, which the parser reads as the start of the content)
_UNSURE = (errors.CloseBoundaryNotFoundDefect, errors.MissingHeaderBodySeparatorDefect)
_MESSAGE = re.compile(rb"(?im)^content-transfer-encoding[ \t]*:")  # (a MIME message inside)
# (the header block content starts with, an mbox `From ` line first or not: each line a
# field, or the continuation of one)
_HEADERS = re.compile(
    rb"(?:From [^\r\n]*+(?:\r\n?|\n))?"
    rb"(?:[!-9;-~]++[ \t]*+:[^\r\n]*+(?:\r\n?|\n|\Z)(?:[ \t][^\r\n]*+(?:\r\n?|\n|\Z))*+)++"
)
# (a field of a message, or an encoded word, in such a block)
_MAIL_FIELD = re.compile(
    rb"(?im)^(?:content-[a-z-]*+|mime-version|subject|from|to|cc|bcc|date|received|message-id"
    rb"|reply-to|sender|return-path)[ \t]*:|=\?"
)
#: Byte order marks of the encodings a message may be written in, longest first.
_MARKS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"),
)  # fmt: skip
# (each `boundary` parameter of a Content-Type, RFC 2231's `boundary*…` too: its value)
_BOUNDARY = re.compile(
    r'(?i)(?<![^\s;])boundary(\*[^\s;=]*+)?\s*=\s*("(?:[^"\\]++|\\.)*+"?|[^;\s"]*+)'
)
# (what ends a line the parser reads as a delimiter: `--` to close, transport padding)
_DELIMITER_END = re.compile(rb"(?:--)?[ \t]*+(?:[\r\n]|\Z)")


def as_read(data: bytes) -> tuple[bytes, bool]:
    """The message `data` as a mail reader reads it when a byte order mark starts it: a UTF-8
    mark skipped, UTF-16 or UTF-32 decoded (what does not decode replaced) and written in
    UTF-8; (bytes, whether they were written again). Any other as it is."""
    if data[:1] not in (b"\xef", b"\xff", b"\xfe", b"\0"):  # (the common case, at once)
        return data, False
    if data.startswith(codecs.BOM_UTF8):
        return data[len(codecs.BOM_UTF8) :], False
    for mark, name in _MARKS:
        if data.startswith(mark):
            text = data[len(mark) :].decode(name, "replace")
            return text.encode("utf-8"), True
    return data, False


def attached(decoded: bytes) -> bool:
    """True when a part's decoded content is a MIME message (an e-mail attached encoded): it
    holds a ``Content-Transfer-Encoding`` header, or starts with a header block that holds a
    message's field (``Subject``, ``From``, ``Content-Type``…) or an encoded word."""
    data = as_read(decoded)[0]
    headers = _HEADERS.match(data)
    if headers is not None and _MAIL_FIELD.search(data, 0, headers.end()) is not None:
        return True
    return _MESSAGE.search(data) is not None


def message_parts(data: bytes) -> list[Message] | None:
    """Every part of the MIME message `data`, the message first; None when it is beyond the
    bounds (``mime``'s docstring). What a part holds counts against none of them but its
    lines: a text whose lines start with ``--`` (SQL, Lua comments), or that says
    ``boundary`` or ``=?`` (``WHERE id=?``), is no more parts, multiparts or words."""
    lowered = data.lower()
    nested = 0
    declaring: list[str] = []  # (each header that may declare a boundary, as written)
    for header in PARAMETERED.finditer(lowered):
        start, end = header.span()
        if end - start > MAX_HEADER or lowered.count(b";", start, end) > MAX_PARAMETERS:
            return None
        words = lowered.count(b"boundary", start, end)
        nested += words + lowered.count(b"message/", start, end)
        if words and nested <= MAX_NESTED:
            declaring.append(data[start:end].decode("ascii", "surrogateescape"))
    lines = data.count(b"\n") + data.count(b"\r") - data.count(b"\r\n")
    if nested > MAX_NESTED or lines * (nested + 1) > MAX_WORK:
        return None
    if _delimiter_lines(data, declaring) > MAX_PARTS:
        return None
    parts = list(islice(email.message_from_bytes(data, policy=compat32).walk(), MAX_PARTS + 1))
    if len(parts) > MAX_PARTS or _words(parts) > MAX_WORDS:
        return None
    return parts


def _words(parts: list[Message]) -> int:
    """The encoded words (``=?``) the parts' headers may hold."""
    return sum(str(value).count("=?") for part in parts for _, value in part.raw_items())


def _delimiter_lines(data: bytes, declaring: list[str]) -> int:
    """The lines of `data` the parser may read as a delimiter of a boundary one of the
    headers `declaring` declares, up to ``MAX_PARTS + 1``."""
    boundaries = _boundaries(declaring)
    if not boundaries:
        return 0
    # (`--` first, which the search looks for; then that it starts a line)
    declared = b"|".join(map(re.escape, sorted(boundaries)))
    delimiter = re.compile(rb"--(?<![^\r\n]--)(?:" + declared + rb")" + _DELIMITER_END.pattern)
    return sum(1 for _ in islice(delimiter.finditer(data), MAX_PARTS + 1))


def _boundaries(declaring: list[str]) -> set[bytes]:
    """The boundary each header declares, read as the parser reads a ``Content-Type`` (RFC
    2231's form joined, quotes dropped, trailing spaces too), as bytes; none that no line
    of the message may hold."""
    boundaries: set[bytes] = set()
    for header in declaring:
        alone = Message()
        alone["content-type"] = header.partition(":")[2].lstrip(" \t")  # (as the parser does)
        boundary = alone.get_boundary()
        if boundary is None:
            continue
        try:
            boundaries.add(boundary.encode("ascii", "surrogateescape"))
        except UnicodeEncodeError:  # (a character no line of the bytes holds: never met)
            continue
    return boundaries


def encoding(part: Message) -> str:
    """The part's transfer encoding, lower-case: its first word, as RFC readers read a value
    with a comment or a parameter after it (``base64 (file)``, ``Base64;``); a value that
    starts with neither, whole (``""``: none, or named twice)."""
    named = part.get_all("content-transfer-encoding") or []
    value = str(named[0]).strip().lower() if len(named) == 1 else ""
    return _TOKEN_END.split(value, 1)[0] or value


def hidden(part: Message) -> bool:
    """True when the part's structure may hide encoded text from the parser: its transfer
    encoding named twice, or one not known (``"base64"``, ``base-64``: some reader may decode
    it), or one given to a multipart or a message (not decoded by the parser), or a multipart
    the parser could not cut (no boundary, or none found)."""
    if len(part.get_all("content-transfer-encoding") or []) > 1:
        return True
    if any(isinstance(defect, _UNCUT) for defect in part.defects):
        return True
    named = encoding(part)
    if named not in _KNOWN:
        return True
    return named in DECODED and part.get_content_maintype() in _CONTAINERS


def written(part: Message) -> str | None:
    """The part's content as it is in the message (None: a multipart's or a message's).
    (``get_payload()`` would decode one holding non-ASCII bytes in its charset.)"""
    payload = vars(part).get("_payload")
    return payload if isinstance(payload, str) else None


def ambiguous(data: bytes, parts: list[Message]) -> bool:
    """True when the message `data` (its `parts`) may be read otherwise by another reader:
    a part :func:`hidden`, or one whose type is named twice (readers take the first or the
    last), a multipart whose boundary is not read alike (given twice, in RFC 2231's form,
    quoted so that RFC 5322 reads it otherwise than Python's ``compat32``, with trailing
    spaces the parser drops), or never closed, a part whose headers hold a line that is no
    header, or a line that starts with a delimiter and goes on (``--b`` then ``x``, a nested
    multipart's ``--bx``: a reader that matches delimiters by their start cuts there)."""
    for part in parts:
        if hidden(part) or len(part.get_all("content-type") or []) > 1:
            return True
        if any(isinstance(defect, _UNSURE) for defect in part.defects):
            return True
        boundary = part.get_boundary() if part.is_multipart() else None
        if boundary is not None and not _delimited(data, part, boundary):
            return True
    return False


def _delimited(data: bytes, part: Message, boundary: str) -> bool:
    """True when the multipart `part`'s `boundary` is read alike and each line of `data` that
    starts with its delimiter is one as the parser reads it."""
    found = _BOUNDARY.findall(str(part.get("content-type", "")))
    if len(found) != 1 or found[0][0] or unquoted(found[0][1]) != boundary:
        return False
    # (a line that starts with it at the very start is no header: ambiguous already)
    mark = re.compile(rb"[\r\n]--" + re.escape(boundary.encode("ascii", "surrogateescape")))
    return all(_DELIMITER_END.match(data, line.end()) for line in mark.finditer(data))
