"""A raw e-mail a field carries base64-encoded: what its parts carry encoded, decoded.

An e-mail sent whole (SES's ``SendRawEmail``, SES v2's ``Content.Raw.Data``, Pinpoint's
``RawEmail.Data``) is a MIME message, base64-encoded, and its parts are usually encoded once
more: an attachment in base64, a text in quoted-printable, a header in RFC 2047 encoded
words (``=?utf-8?b?…?=``). A connector declares such a field with the kind ``mime``
(``RawMessage.Data:mime``: ``agentfirewall.content.encoded``); the message is scanned as
text, and :func:`mime_pieces` adds what decoding finds inside it, wherever decoding
changes the text (a 7bit part is in the message as it is):

* each part's content, its transfer encoding decoded (base64 as MIME readers decode it:
  every character outside its alphabet skipped, ``-`` and ``_`` too; quoted-printable;
  uuencode): ``<field>(base64).part2``, the parts numbered in order, the message itself
  ``part0``. Whatever the part's type, its bytes are read as a text body is (UTF-8,
  undecodable bytes kept), so the ASCII a key or a token is written in is found in any
  attachment that stores it as it is; a charset that does not keep ASCII (UTF-16) is not
  applied, and what a container compresses (a zip, a PDF stream) is not inflated;
* each header holding encoded words (decoded as lenient readers do: either encoding,
  adjacent words joined) or RFC 2231 parameters (``filename*=utf-8''…``, continuations
  joined): ``<field>(base64).part0.header.subject``;
* an e-mail attached encoded (an ``.eml`` file in base64: a decoded part that holds a
  ``Content-Transfer-Encoding`` header), read the same way, :data:`MAX_DEPTH` deep:
  ``<field>(base64).part2.part2``. (What is encoded in a way no reader decodes, base64 of
  base64 in a text, is not.)

The message is parsed with Python's ``email`` package, with its ``compat32`` policy (header
values are not parsed into objects, which costs twelve times more per part; encoded words
are decoded here), within bounds read from the bytes first: at most :data:`MAX_PARTS`
lines that may start a part, :data:`MAX_NESTED` multiparts and messages, :data:`MAX_WORK`
lines times the nesting (the parser's work per line grows with it) and :data:`MAX_WORDS`
encoded words. A message beyond them, one the parser fails on, or one whose structure hides
encoded text from the parser (a part whose transfer encoding is named twice; a multipart
or message part given one, which RFC 2046 forbids and some readers decode anyway; a
multipart it could not cut, its boundary missing or not found) is read
unstructured as well (fail closed): the whole text quoted-printable decoded at
``<field>(base64).parts``, and base64 decoded at each of its four alignments (every other
character skipped) at ``.parts.1`` to ``.parts.4``, which finds what base64,
quoted-printable and encoded words carry anywhere in it, whatever its structure.

:func:`redact_mime` redacts inside: a part's content as a text body is, re-encoded in its
transfer encoding (base64 in lines as long as its first, or quoted-printable) with its line
breaks; a run of encoded words holding a detection as one base64 word in the first word's
charset. The rest of the message stays byte for byte. What cannot be re-encoded as it was
(a uuencoded part, an RFC 2231 parameter, a secret across an encoded word and plain text,
a part or header whose encoded text occurs twice in the message, the unstructured reading)
is left as it is: the caller's rescan of the field finds it, and refuses.
"""

from __future__ import annotations

import binascii
import email
import re
from collections.abc import Iterator
from email import errors
from email.message import Message
from email.policy import compat32
from email.utils import collapse_rfc2231_value
from itertools import islice

from agentfirewall.content.locate import Piece, body_pieces, redact_body, shown
from agentfirewall.content.reading import decode_body
from agentfirewall.content.scanner import Scanner

__all__ = [
    "MAX_DEPTH",
    "MAX_NESTED",
    "MAX_PARTS",
    "MAX_WORDS",
    "MAX_WORK",
    "mime_pieces",
    "read_base64",
    "redact_mime",
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

_BASE64 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_NOT_BASE64 = bytes(sorted(set(range(256)) - set(_BASE64 + b"=")))  # skipped
_NOT_DIGITS = _NOT_BASE64 + b"="  # (the unstructured reading skips padding too)
_UUENCODE = frozenset({"x-uuencode", "uuencode", "uue", "x-uue"})
_DECODED = frozenset({"base64", "quoted-printable"}) | _UUENCODE
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
    parts = list(islice(email.message_from_bytes(data, policy=compat32).walk(), MAX_PARTS + 1))
    return parts if len(parts) <= MAX_PARTS else None


def _encoding(part: Message) -> str:
    """The part's transfer encoding, lower-case (``""``: none, or named twice)."""
    named = part.get_all("content-transfer-encoding") or []
    return str(named[0]).strip().lower() if len(named) == 1 else ""


def _hidden(part: Message) -> bool:
    """True when the part's structure may hide encoded text from the parser: its transfer
    encoding named twice, or given to a multipart or a message (not decoded by the parser),
    or a multipart the parser could not cut (no boundary, or none found)."""
    if len(part.get_all("content-transfer-encoding") or []) > 1:
        return True
    if any(isinstance(defect, _UNCUT) for defect in part.defects):
        return True
    return _encoding(part) in _DECODED and part.get_content_maintype() in _CONTAINERS


def _content(part: Message) -> tuple[str, bytes] | None:
    """The content of a part whose transfer encoding changes it: as written, and decoded;
    else None."""
    encoding, raw = _encoding(part), part.get_payload()
    if encoding not in _DECODED or _hidden(part) or not isinstance(raw, str):
        return None
    if encoding == "base64":
        return raw, read_base64(raw.encode("ascii", "surrogateescape"))
    decoded = part.get_payload(decode=True)
    return (raw, decoded) if isinstance(decoded, bytes) else None


def _word_bytes(word: re.Match[str]) -> bytes:
    _, kind, text = word.groups()
    raw = text.encode("ascii", "surrogateescape")
    return read_base64(raw) if kind in "bB" else binascii.a2b_qp(raw, header=True)


def _runs(value: str) -> Iterator[tuple[int, int, bytes, str]]:
    """Each run of adjacent encoded words in a header's value: (start, end, its bytes, the
    first word's charset)."""
    for run in _RUN_RE.finditer(value):
        words = list(_WORD_RE.finditer(run.group()))
        data = b"".join([_word_bytes(word) for word in words])
        yield run.start(), run.end(), data, words[0].group(1)


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
        for start, end, data, _ in _runs(value):
            out += [value[at:start], decode_body(data).text]
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
    return pieces


def mime_pieces(data: bytes, at: str, depth: int = 0) -> list[Piece]:
    """What the MIME message `data` carries encoded, decoded, each piece named from `at`
    (the field's decoded text: ``body.Content.Raw.Data(base64)``): module docstring."""
    pieces: list[Piece] = []
    try:
        parts = _parts(data)
        for index, part in enumerate(parts or ()):
            where = f"{at}.part{index}"
            pieces += _header_pieces(part, where)
            content = _content(part)
            if content is not None:
                pieces += [(where + name[4:], text) for name, text in
                           body_pieces(content[1], "text/plain")]  # fmt: skip
                if depth < MAX_DEPTH and _MESSAGE.search(content[1]):  # (an attached e-mail)
                    pieces += mime_pieces(content[1], where, depth + 1)
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
    for start, end, data, charset in _runs(value):
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
