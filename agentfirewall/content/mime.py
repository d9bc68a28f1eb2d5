"""A raw e-mail a field carries base64-encoded: what its parts carry encoded, decoded.

An e-mail sent whole (SES's ``SendRawEmail``, SES v2's ``Content.Raw.Data``, Pinpoint's
``RawEmail.Data``) is a MIME message, base64-encoded, and its parts are usually encoded once
more: an attachment in base64, a text in quoted-printable, a header in RFC 2047 encoded
words (``=?utf-8?b?…?=``). A connector declares such a field with the kind ``mime``
(``RawMessage.Data:mime``: ``agentfirewall.content.encoded``); the message is scanned as
text, and :func:`mime_pieces` adds what decoding finds inside it, wherever decoding
changes the text (a 7bit part is in the message as it is):

* each part's content, its transfer encoding decoded (named by its first word, as RFC
  readers read ``base64 (file)`` or ``Base64;``; base64 as MIME readers decode it: every
  character outside its alphabet skipped, ``-`` and ``_`` too; quoted-printable;
  uuencode): ``<field>(base64).part2``, the parts numbered in order, the message itself
  ``part0``. Whatever the part's type, its bytes are read as a text body is (UTF-8,
  undecodable bytes kept), so the ASCII a key or a token is written in is found in any
  attachment that stores it as it is; what a container compresses (a zip, a PDF stream)
  is not inflated;
* a part's bytes (decoded, or as written) in an encoding that writes ASCII otherwise, as a
  byte order mark (UTF-16, UTF-32) or the part's charset (those and UTF-7) says, read in it
  too: ``<field>(base64).part2.utf-16-le``; and a file uuencoded in a part's text (a
  ``begin 644 name`` line to ``end``: mail readers show it attached), decoded:
  ``<field>(base64).part1.uuencoded``;
* each header holding encoded words (decoded as lenient readers do: either encoding,
  adjacent words of one charset joined, in UTF-16, UTF-32 or UTF-7 too where the charset
  says) or RFC 2231 parameters (``filename*=utf-8''…``, continuations joined):
  ``<field>(base64).part0.header.subject``;
* an e-mail attached encoded (an ``.eml`` file in base64: a decoded part that holds a
  ``Content-Transfer-Encoding`` header), read the same way, :data:`MAX_DEPTH` deep:
  ``<field>(base64).part2.part2``. (What is encoded in a way no reader decodes, base64 of
  base64 in a text, is not.)

The message is parsed with Python's ``email`` package, with its ``compat32`` policy (header
values are not parsed into objects, which costs twelve times more per part; encoded words
are decoded here), within bounds read from the bytes first: at most :data:`MAX_PARTS`
lines that may start a part, :data:`MAX_NESTED` multiparts and messages, :data:`MAX_WORK`
lines times the nesting (the parser's work per line grows with it), :data:`MAX_WORDS`
encoded words, and in each ``Content-Type`` or ``Content-Disposition`` header (wherever it
is, its continuation lines joined) :data:`MAX_HEADER` characters and :data:`MAX_PARAMETERS`
``;`` (the parser reads its parameters in a time that grows with their product: 780 KiB
of ``;"`` took seconds). A message beyond them, one the parser fails on, or one whose
structure hides encoded text from the parser (a part whose transfer encoding is named
twice, or named as no reader names it as written, ``"base64"``, ``base-64``; a multipart
or message part given one, which RFC 2046 forbids and some readers decode anyway; a
multipart it could not cut, its boundary missing or not found) is read
unstructured as well (fail closed): the whole text quoted-printable decoded at
``<field>(base64).parts``, base64 decoded at each of its four alignments (every other
character skipped) at ``.parts.1`` to ``.parts.4``, and each ``Content-Type`` and
``Content-Disposition`` header's RFC 2231 parameters (each name's pieces in the order of
their numbers, joined, ``%XX`` decoded) at ``.parts.parameters``, in linear time, which
finds what base64, quoted-printable, encoded words and RFC 2231 parameters carry anywhere
in it, whatever its structure.

:func:`redact_mime` redacts inside: a part's content as a text body is, re-encoded in its
transfer encoding (base64 in lines as long as its first, or quoted-printable) with its line
breaks; a run of encoded words holding a detection as one base64 word in the first word's
charset. The rest of the message stays byte for byte. What cannot be re-encoded as it was
(a uuencoded part or file, an RFC 2231 parameter, a secret across an encoded word and
plain text, what is read in UTF-16, UTF-32 or UTF-7, a part or header whose encoded text
occurs twice in the message, the unstructured reading) is left as it is: the caller's
rescan of the field finds it, and refuses.
"""

from __future__ import annotations

import binascii
import contextlib
import email
import re
from collections.abc import Iterator
from email import errors
from email.message import Message
from email.policy import compat32
from email.utils import collapse_rfc2231_value
from itertools import groupby, islice

from agentfirewall.content.locate import Piece, body_pieces, redact_body, shown
from agentfirewall.content.reading import decode_body, wide_readings
from agentfirewall.content.scanner import Scanner

__all__ = [
    "MAX_DEPTH",
    "MAX_HEADER",
    "MAX_NESTED",
    "MAX_PARAMETERS",
    "MAX_PARTS",
    "MAX_WORDS",
    "MAX_WORK",
    "mime_pieces",
    "read_base64",
    "read_uuencode",
    "redact_mime",
    "text_pieces",
]

#: Lines that may start a part (``--`` first), read structurally at most.
MAX_PARTS = 1024
#: Multiparts and messages (``boundary``, ``message/`` in the bytes) at most.
MAX_NESTED = 16
#: Lines (broken at ``\\r``, ``\\n`` or both, as the parser breaks them) times the multiparts
#: and messages plus one, at most: the parser checks each line against each open boundary.
MAX_WORK = 1 << 20
#: Encoded words (``=?``) at most.
MAX_WORDS = 4096
#: Messages read inside a part's decoded content (an e-mail attached in base64), at most.
MAX_DEPTH = 3
#: Characters of a ``Content-Type`` or ``Content-Disposition`` header (continuation lines
#: joined), and ``;`` in one, at most: the parser reads its parameters in a time that grows
#: with their product.
MAX_HEADER = 8192
MAX_PARAMETERS = 64

_BASE64 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_NOT_BASE64 = bytes(sorted(set(range(256)) - set(_BASE64 + b"=")))  # skipped
_NOT_DIGITS = _NOT_BASE64 + b"="  # (the unstructured reading skips padding too)
_UUENCODE = frozenset({"x-uuencode", "uuencode", "uue", "x-uue"})
_DECODED = frozenset({"base64", "quoted-printable"}) | _UUENCODE
_KNOWN = _DECODED | {"", "7bit", "8bit", "binary"}  # (any other: read unstructured too)
_TOKEN_END = re.compile(r"[\s;(]")  # (what ends a transfer encoding's name)
_UU_BEGIN = re.compile(rb"begin [0-7]")  # (a line that starts a uuencoded file)
_WORD = r"=\?([^?]*)\?([bBqQ])\?([^?]*)\?="
_WORD_RE = re.compile(_WORD)
_RUN_RE = re.compile(rf"{_WORD}(?:\s*{_WORD})*")  # adjacent words: the space between dropped
_PARAMETERS = frozenset({"content-type", "content-disposition"})
_CONTAINERS = frozenset({"multipart", "message"})
_UNCUT = (
    errors.NoBoundaryInMultipartDefect,
    errors.StartBoundaryNotFoundDefect,
    errors.MultipartInvariantViolationDefect,
    errors.FirstHeaderLineIsContinuationDefect,
)
_MESSAGE = re.compile(rb"(?im)^content-transfer-encoding[ \t]*:")  # (a MIME message inside)
# (a header whose parameters the parser reads, found in lower-case bytes wherever it is, its
# continuation lines too)
_PARAMETERED = re.compile(
    rb"content-(?:type|disposition)[ \t]*:(?:[^\r\n]*+(?:\r\n|\r|\n)[ \t])*+[^\r\n]*+"
)
# (an RFC 2231 parameter, `name*2*=value`: its name, its number without leading zeros, its
# value; a name starts after a `;` or a space, so that no run is read from each character)
_CONTINUED = re.compile(
    rb'(?<![^\s;])([^\s;=*"]++)\*0*+(\d*+)\*?[ \t]*=[ \t]*+("(?:[^"\\]++|\\.)*+"?|[^;\s"]*+)'
)


def read_base64(raw: bytes) -> bytes:
    """`raw` decoded as MIME readers decode base64 (RFC 2045): every character outside its
    alphabet skipped, padding optional, and a ``=`` ends a run the next one continues after
    (concatenated base64); a dangling character (not a whole byte) dropped."""
    data = raw.translate(None, _NOT_BASE64).rstrip(b"=")
    out = bytearray()
    for run in data.split(b"=") if b"=" in data else (data,):
        run = run[: len(run) - (len(run) % 4 == 1)]
        if run:
            out += binascii.a2b_base64(run + b"=" * (-len(run) % 4))
    return bytes(out)


def read_uuencode(data: bytes) -> bytes:
    """Each uuencoded file in `data` (a ``begin 644 name`` line, to an ``end`` line) decoded
    and joined, as Python's reader decodes one (a line longer than its length says cut to
    it); empty lines, and lines that are no uuencode, skipped."""
    out = bytearray()
    inside = False
    for line in data.splitlines():
        if not inside:
            inside = _UU_BEGIN.match(line) is not None
        elif line.strip() == b"end":
            inside = False
        elif line.strip():
            with contextlib.suppress(binascii.Error):
                out += _uu_line(line)
    return bytes(out)


def _uu_line(line: bytes) -> bytes:
    try:
        return binascii.a2b_uu(line)
    except binascii.Error:  # (longer than its length says: cut, as Python's reader does)
        return binascii.a2b_uu(line[: (((line[0] - 32) & 63) * 4 + 5) // 3])


def text_pieces(data: bytes, at: str, charset: str = "", utf8: bool = True) -> list[Piece]:
    """Decoded bytes read as a text body is (UTF-8 at `at`, its JSON escapes decoded at
    ``at.unescaped``; not when `utf8` is false), and in UTF-16 or UTF-32 where a byte order
    mark or `charset` says so (``at.utf-16-le``: ``reading.wide_readings``)."""
    pieces = (
        [(at + name[4:], text) for name, text in body_pieces(data, "text/plain")] if utf8 else []
    )
    read = pieces[0][1] if pieces else ""  # (a UTF-16 JSON text is read so already)
    return pieces + [(f"{at}.{name}", text) for name, text in wide_readings(data, charset)
                     if text != read]  # fmt: skip


def _parts(data: bytes) -> list[Message] | None:
    """Every part of the MIME message `data`, the message first; None when it is beyond the
    bounds (module docstring)."""
    starts = data.count(b"\n--") + data.count(b"\r--")
    if starts > MAX_PARTS or data.count(b"=?") > MAX_WORDS:
        return None
    lowered = data.lower()
    nested = lowered.count(b"boundary") + lowered.count(b"message/")
    lines = data.count(b"\n") + data.count(b"\r") - data.count(b"\r\n")
    if nested > MAX_NESTED or lines * (nested + 1) > MAX_WORK:
        return None
    for header in _PARAMETERED.finditer(lowered):
        start, end = header.span()
        if end - start > MAX_HEADER or lowered.count(b";", start, end) > MAX_PARAMETERS:
            return None
    parts = list(islice(email.message_from_bytes(data, policy=compat32).walk(), MAX_PARTS + 1))
    return parts if len(parts) <= MAX_PARTS else None


def _encoding(part: Message) -> str:
    """The part's transfer encoding, lower-case: its first word, as RFC readers read a value
    with a comment or a parameter after it (``base64 (file)``, ``Base64;``); a value that
    starts with neither, whole (``""``: none, or named twice)."""
    named = part.get_all("content-transfer-encoding") or []
    value = str(named[0]).strip().lower() if len(named) == 1 else ""
    return _TOKEN_END.split(value, 1)[0] or value


def _hidden(part: Message) -> bool:
    """True when the part's structure may hide encoded text from the parser: its transfer
    encoding named twice, or one not known (``"base64"``, ``base-64``: some reader may decode
    it), or one given to a multipart or a message (not decoded by the parser), or a multipart
    the parser could not cut (no boundary, or none found)."""
    if len(part.get_all("content-transfer-encoding") or []) > 1:
        return True
    if any(isinstance(defect, _UNCUT) for defect in part.defects):
        return True
    encoding = _encoding(part)
    if encoding not in _KNOWN:
        return True
    return encoding in _DECODED and part.get_content_maintype() in _CONTAINERS


def _written(part: Message) -> str | None:
    """The part's content as it is in the message (None: a multipart's or a message's).
    (``get_payload()`` would decode one holding non-ASCII bytes in its charset.)"""
    payload = vars(part).get("_payload")
    return payload if isinstance(payload, str) else None


def _content(part: Message) -> tuple[str, bytes] | None:
    """The content of a part whose transfer encoding changes it: as written, and decoded;
    else None."""
    encoding, raw = _encoding(part), _written(part)
    if encoding not in _DECODED or _hidden(part) or raw is None:
        return None
    data = raw.encode("ascii", "surrogateescape")
    if encoding == "base64":
        return raw, read_base64(data)
    if encoding == "quoted-printable":
        return raw, binascii.a2b_qp(data)
    return raw, read_uuencode(data)


def _word_bytes(word: re.Match[str]) -> bytes:
    _, kind, text = word.groups()
    raw = text.encode("ascii", "surrogateescape")
    return read_base64(raw) if kind in "bB" else binascii.a2b_qp(raw, header=True)


def _runs(value: str) -> Iterator[tuple[int, int, bytes, str, str]]:
    """Each run of adjacent encoded words in a header's value: (start, end, its bytes, the
    first word's charset, its text: adjacent words of one charset joined and read as a text
    body is, and first in UTF-16 or UTF-32 where their charset or a byte order mark says)."""
    for run in _RUN_RE.finditer(value):
        words = [(word.group(1), _word_bytes(word)) for word in _WORD_RE.finditer(run.group())]
        texts: list[str] = []
        for charset, same in groupby(words, lambda word: word[0].lower()):
            data = b"".join([found for _, found in same])
            read = [text for _, text in wide_readings(data, charset)]
            texts.append("\n".join([*read, decode_body(data).text]))
        yield (run.start(), run.end(), b"".join([found for _, found in words]), words[0][0],
               "".join(texts))  # fmt: skip


def _header_pieces(part: Message, where: str) -> list[Piece]:
    """The part's headers whose encoded words or RFC 2231 parameters decode to another text."""
    pieces: list[Piece] = []
    for name, value in part.raw_items():
        if not isinstance(value, str):
            continue
        params = "*" in value and name.strip().lower() in _PARAMETERS
        if "=?" not in value and not params:
            continue
        out: list[str] = []
        at = 0
        for start, end, _, _, decoded in _runs(value):
            out += [value[at:start], decoded]
            at = end
        out.append(value[at:])
        if params:  # (continuations joined, each value in its charset; this header's own)
            alone = Message()
            alone[name] = value
            found = alone.get_params(header=name, failobj=[])[1:]
            out += ["\n", "; ".join(f"{k}={collapse_rfc2231_value(v)}" for k, v in found)]
        text = "".join(out)
        if text != value:
            pieces.append((f"{where}.header.{shown(name.strip().lower())}", text))
    return pieces


def _unstructured(data: bytes, at: str) -> list[Piece]:
    """The message read whatever its structure (module docstring)."""
    pieces = [(f"{at}.parts", decode_body(binascii.a2b_qp(data)).text)]
    digits = data.translate(None, _NOT_DIGITS)
    for shift in range(4):
        run = digits[shift : shift + (len(digits) - shift) // 4 * 4]
        pieces.append((f"{at}.parts.{shift + 1}", decode_body(binascii.a2b_base64(run)).text))
    lowered = data.lower()
    found = [_continued(data, *header.span()) for header in _PARAMETERED.finditer(lowered)
             if lowered.find(b"*", *header.span()) >= 0]  # fmt: skip
    if found:
        pieces.append((f"{at}.parts.parameters", decode_body(b"\n".join(found)).text))
    return pieces


def _continued(data: bytes, start: int, end: int) -> bytes:
    """The RFC 2231 parameters of the header ``data[start:end]`` read leniently, in linear
    time: each name's pieces in the order of their numbers, joined (the names one after the
    other), quotes and backslashes dropped, ``%XX`` decoded."""
    found = _CONTINUED.findall(data, start, end)
    ordered = sorted((name.lower(), len(number), number, value) for name, number, value in found)
    joined = b"".join([value for *_, value in ordered]).translate(None, b'"\\')
    return binascii.a2b_qp(joined.replace(b"=", b"=3D").replace(b"%", b"="))


def mime_pieces(data: bytes, at: str, depth: int = 0) -> list[Piece]:
    """What the MIME message `data` carries encoded, decoded, each piece named from `at`
    (the field's decoded text: ``body.Content.Raw.Data(base64)``): module docstring."""
    pieces: list[Piece] = []
    try:
        parts = _parts(data)
        for index, part in enumerate(parts or ()):
            where = f"{at}.part{index}"
            pieces += _header_pieces(part, where)
            raw = _written(part)
            if raw is None:  # (a multipart or a message: its parts follow)
                continue
            content = _content(part)
            decoded = raw.encode("ascii", "surrogateescape") if content is None else content[1]
            # (a part as written is in the message's text: read only otherwise)
            pieces += text_pieces(decoded, where, part.get_content_charset() or "",
                                  content is not None)  # fmt: skip
            uuencoded = read_uuencode(decoded) if b"begin " in decoded else b""
            if uuencoded:  # (a file uuencoded in its text: mail readers show it attached)
                pieces.append((f"{where}.uuencoded", decode_body(uuencoded).text))
            if content is not None and depth < MAX_DEPTH and _MESSAGE.search(decoded):
                pieces += mime_pieces(decoded, where, depth + 1)  # (an attached e-mail)
        unread = parts is None or any(_hidden(part) for part in parts)
    except Exception:  # (the parser failed on it: read unstructured, fail closed)
        unread = True
    return pieces + _unstructured(data, at) if unread else pieces


# -- redaction --------------------------------------------------------------------------


def redact_mime(
    scanner: Scanner, data: bytes, names: frozenset[str], depth: int = 0
) -> tuple[bytes, int]:
    """The MIME message `data` with what the detectors `names` find in its encoded parts and
    headers replaced, each re-encoded as it was; (data, replacements). What cannot be
    re-encoded is left (module docstring): the caller's rescan finds it."""
    text = data.decode("ascii", "surrogateescape")  # (as the parser reads it)
    count = 0
    try:
        for part in _parts(data) or ():
            for _, value in part.raw_items():
                if isinstance(value, str) and "=?" in value:
                    new, replaced = _redact_words(scanner, value, names)
                    text, done = _replaced(text, value, new if replaced else None)
                    count += replaced if done else 0
            content = _content(part)
            if content is not None:
                raw, decoded = content
                inner = 0
                if depth < MAX_DEPTH and _MESSAGE.search(decoded):  # (an attached e-mail)
                    decoded, inner = redact_mime(scanner, decoded, names, depth + 1)
                redacted, replaced = redact_body(scanner, decoded, "text/plain", names)
                replaced += inner
                encoded = _encoded(_encoding(part), raw, redacted) if replaced else None
                text, done = _replaced(text, raw, encoded)
                count += replaced if done else 0
    except Exception:  # (the parser failed on it: nothing rewritten, the rescan refuses)
        return data, 0
    return (text.encode("ascii", "surrogateescape"), count) if count else (data, 0)


def _replaced(text: str, old: str, new: str | None) -> tuple[str, bool]:
    """`text` with `old`, found once, replaced by `new`; (text, whether it was)."""
    if new is None or text.count(old) != 1:
        return text, False
    return text.replace(old, new), True


def _redact_words(scanner: Scanner, value: str, names: frozenset[str]) -> tuple[str, int]:
    """A header's value with each run of encoded words holding a detection redacted and
    written as one base64 word in its first word's charset; (value, replacements)."""
    out: list[str] = []
    at = count = 0
    for start, end, data, charset, _ in _runs(value):
        new, replaced = redact_body(scanner, data, "text/plain", names)
        if replaced:
            word = binascii.b2a_base64(new, newline=False).decode("ascii")
            out += [value[at:start], f"=?{charset}?b?{word}?="]
            at = end
            count += replaced
    out.append(value[at:])
    return "".join(out), count


def _encoded(encoding: str, raw: str, data: bytes) -> str | None:
    """`data` written as the part's content `raw` was (its transfer encoding, its line
    breaks, base64 in lines as long as its first); None for another encoding."""
    eol = "\r\n" if "\r\n" in raw else "\n"
    if encoding == "base64":
        width = len(raw.lstrip().split("\n", 1)[0].rstrip()) // 4 * 4 or 76
        line = binascii.b2a_base64(data, newline=False).decode("ascii")
        out = eol.join([line[i : i + width] for i in range(0, len(line), width)])
    elif encoding == "quoted-printable":
        out = binascii.b2a_qp(data, istext=True).decode("ascii")
        out = out.replace("\r\n", "\n").replace("\n", eol)
    else:
        return None
    return out + eol if raw.endswith("\n") and not out.endswith("\n") else out
