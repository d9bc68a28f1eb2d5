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
  uuencode: ``mimecodings``): ``<field>(base64).part2``, the parts numbered in order, the
  message itself ``part0``. Whatever the part's type, its bytes are read as a text body is
  (UTF-8, undecodable bytes kept), so the ASCII a key or a token is written in is found in
  any attachment that stores it as it is; what a container compresses (a zip, a PDF
  stream) is not inflated;
* a part's bytes (decoded, or as written) in the encoding a byte order mark (UTF-16, UTF-32)
  or the part's charset names where that is not UTF-8 or US-ASCII (those, UTF-7, and any
  other Python's ``email`` decodes: ISO-2022-JP, whose escapes may cut a key in its bytes,
  EBCDIC, HZ), read in it too: ``<field>(base64).part2.utf-16-le``, ``….part0.iso2022_jp``
  (``reading.charset_readings``); and a file uuencoded in a part's text (a
  ``begin 644 name`` line to ``end``: mail readers show it attached), decoded:
  ``<field>(base64).part1.uuencoded``;
* a multipart's text outside its parts, before its first delimiter and after its last
  (its preamble and epilogue: some readers show it, anyone can decode it), read with the
  unstructured reading's decodings below: ``<field>(base64).part0.preamble`` (quoted-
  printable, where that changes it), ``.part0.epilogue.1`` (base64 at its first alignment);
* each header holding encoded words, RFC 2231 parameters or quoted-pairs, decoded as a
  mail reader shows it (``mimeheaders``): ``<field>(base64).part0.header.subject``;
* an e-mail attached encoded (an ``.eml`` file in base64: a decoded part that holds a
  ``Content-Transfer-Encoding`` header, or starts with a header block holding a message's
  field or an encoded word: ``mimeparse.attached``), read the same way, by either reading
  (one the unstructured reading below decodes too: ``<field>(base64).parts.2.part2``),
  :data:`MAX_DEPTH` deep and :data:`MAX_ATTACHED` times the message's size in all:
  ``<field>(base64).part2.part2``. One deeper, or beyond that, is not read: it is a finding
  of ``mime_too_deep`` at its part (``locate.UNREAD``, of each kind the scanner reads),
  which a rule reading any content field decides as a detection, and a redact rule on
  ``content.secrets`` refuses (fail closed). (What is encoded in a way no reader decodes,
  base64 of base64 in a text, is not.)

A message a byte order mark starts is read as mail readers read it: a UTF-8 mark skipped,
UTF-16 or UTF-32 decoded first. It is parsed with Python's ``email`` package within bounds
read from the bytes first (``mimeparse``): at most ``MAX_PARTS`` delimiter lines of the
boundaries declared (a line ``--`` and one, ``--`` after it or not, then only spaces: what
a part holds, a SQL dump's ``-- comment`` lines, is none), ``MAX_NESTED`` multiparts and
messages (their ``Content-Type`` headers), ``MAX_WORK`` lines times the nesting (the
parser's work per line grows with it), and in each ``Content-Type`` or
``Content-Disposition`` header (wherever it is, its continuation lines joined)
``MAX_HEADER`` characters and ``MAX_PARAMETERS`` ``;`` (the parser reads its parameters in
a time that grows with their product: 780 KiB of ``;"`` took seconds); and, parsed,
``MAX_WORDS`` encoded words in its parts' headers (a part's ``WHERE id=?`` is none). A
message beyond them, one the parser fails on, one whose structure hides encoded text from
the parser (a part whose transfer encoding is named twice, or named as no reader names it
as written, ``"base64"``, ``base-64``; a multipart or message part given one, which RFC
2046 forbids and some readers decode anyway; a multipart it could not cut, its boundary
missing or not found), and one other readers may cut or name otherwise (a part's type named
twice; a boundary given twice, in RFC 2231's form, or quoted so that readers read it
otherwise; a multipart never closed; a line that is no header among a part's headers; a
line that starts with a delimiter and goes on, as a nested boundary the outer one is a
prefix of) is read unstructured as well (fail closed: ``mimeflat``): the whole text
quoted-printable decoded at ``<field>(base64).parts`` (where that changes it), base64
decoded at each of its four alignments at ``.parts.1`` to ``.parts.4``, and the parameters
of its ``Content-Type`` and ``Content-Disposition`` headers at ``.parts.parameters``, in
linear time, which finds what base64, quoted-printable, encoded words and RFC 2231
parameters carry anywhere in it, whatever its structure: what any reader shows of it has
been read.

:func:`redact_mime` redacts inside: a part's content as a text body is, re-encoded in its
transfer encoding (base64 in lines as long as its first, or quoted-printable) with its line
breaks; a run of encoded words holding a detection as one base64 word in the first word's
charset. The rest of the message stays byte for byte (the message's own text, a preamble's
too, is redacted by the caller as text). What cannot be re-encoded as it was (a uuencoded
part or file, an RFC 2231 parameter or a quoted-pair, a secret across an encoded word and
plain text, what is read in a charset other than UTF-8 (UTF-16, ISO-2022-JP, EBCDIC…), a
whole message in UTF-16 or UTF-32, a part or header
whose encoded text occurs twice in the message, a preamble or epilogue decoded, the
unstructured reading) is left as it is: the caller's rescan of the field finds it, and
refuses.
"""

from __future__ import annotations

import binascii
from dataclasses import dataclass
from email.message import Message
from functools import partial

from agentfirewall.content.locate import UNREAD_TEXT, Piece, kind_pieces, redact_body
from agentfirewall.content.mimecodings import read_base64, read_uuencode, written_as
from agentfirewall.content.mimeflat import flat_pieces, unstructured
from agentfirewall.content.mimeheaders import header_pieces, redact_words
from agentfirewall.content.mimeparse import (
    DECODED,
    ambiguous,
    as_read,
    attached,
    encoding,
    hidden,
    message_parts,
    written,
)
from agentfirewall.content.reading import charset_readings, decode_body
from agentfirewall.content.scanner import Scanner

__all__ = [
    "MAX_ATTACHED",
    "MAX_DEPTH",
    "mime_pieces",
    "part_content",
    "read_base64",
    "read_uuencode",
    "redact_mime",
    "text_pieces",
]

#: Messages read inside a part's decoded content (an e-mail attached in base64), at most.
MAX_DEPTH = 3
#: The attached e-mails one message's reading reads (at every depth, by either reading), in
#: all, at most this many times its size, in bytes.
MAX_ATTACHED = 4
_OUTSIDE = ("preamble", "epilogue")  # (a multipart's text outside its parts)


def text_pieces(data: bytes, at: str, charset: str = "", utf8: bool = True) -> list[Piece]:
    """Decoded bytes read as a text body is (UTF-8 at `at`, its JSON escapes decoded at
    ``at.unescaped``; not when `utf8` is false), and in the encoding a byte order mark or
    `charset` names where that reads otherwise (``at.utf-16-le``, ``at.iso2022_jp``:
    ``reading.charset_readings``)."""
    pieces = (
        [(at + name[4:], text) for name, text in kind_pieces(data, "text/plain")] if utf8 else []
    )
    readings = charset_readings(data, charset)
    if not readings:
        return pieces
    read = pieces[0][1] if pieces else decode_body(data).text  # (UTF-16 JSON is read so)
    return pieces + [(f"{at}.{name}", text) for name, text in readings if text != read]


def part_content(part: Message) -> tuple[str, bytes] | None:
    """The content of a part whose transfer encoding changes it: as written, and decoded;
    else None."""
    named, raw = encoding(part), written(part)
    if named not in DECODED or hidden(part) or raw is None:
        return None
    data = raw.encode("ascii", "surrogateescape")
    if named == "base64":
        return raw, read_base64(data)
    if named == "quoted-printable":
        return raw, binascii.a2b_qp(data)
    return raw, read_uuencode(data)


@dataclass(slots=True)
class _Budget:
    """The bytes of attached e-mails one message's reading may still read."""

    left: int


def mime_pieces(data: bytes, at: str) -> list[Piece]:
    """What the MIME message `data` carries encoded, decoded, each piece named from `at`
    (the field's decoded text: ``body.Content.Raw.Data(base64)``): module docstring."""
    return _message_pieces(data, at, 0, _Budget(MAX_ATTACHED * len(data)))


def _message_pieces(data: bytes, at: str, depth: int, budget: _Budget) -> list[Piece]:
    """:func:`mime_pieces` of a message `depth` e-mails deep."""
    data = as_read(data)[0]
    pieces: list[Piece] = []
    try:
        parts = message_parts(data)
        for index, part in enumerate(parts or ()):
            pieces += _part_pieces(part, f"{at}.part{index}", depth, budget)
        unread = parts is None or ambiguous(data, parts)
    except Exception:  # (the parser failed on it: read unstructured, fail closed)
        unread = True
    if not unread:
        return pieces
    return pieces + unstructured(data, at, partial(_attached, depth=depth, budget=budget))


def _part_pieces(part: Message, where: str, depth: int, budget: _Budget) -> list[Piece]:
    """What one part carries encoded, decoded (its parts are read on their own)."""
    pieces = header_pieces(part, where)
    raw = written(part)
    if raw is None:  # (a multipart or a message: its parts follow; its text outside them)
        for side in _OUTSIDE:
            text = getattr(part, side, None)
            if text and not text.isspace():  # (as it is: in the message's text)
                pieces += flat_pieces(text.encode("ascii", "surrogateescape"), f"{where}.{side}")
        return pieces
    content = part_content(part)
    decoded = raw.encode("ascii", "surrogateescape") if content is None else content[1]
    # (a part as written is in the message's text: read only otherwise)
    pieces += text_pieces(decoded, where, part.get_content_charset() or "", content is not None)
    uuencoded = read_uuencode(decoded) if b"begin " in decoded else b""
    if uuencoded:  # (a file uuencoded in its text: mail readers show it attached)
        pieces.append((f"{where}.uuencoded", decode_body(uuencoded).text))
    return pieces + (_attached(decoded, where, depth, budget) if content is not None else [])


def _attached(data: bytes, where: str, depth: int, budget: _Budget) -> list[Piece]:
    """Decoded content that is an e-mail (``mimeparse.attached``) read as a message at
    `where`; past MAX_DEPTH or the budget, not read: a piece that refuses it
    (``locate.UNREAD``, fail closed). Nothing for other content."""
    if not attached(data):
        return []
    if depth >= MAX_DEPTH or len(data) > budget.left:
        return [(where, UNREAD_TEXT)]
    budget.left -= len(data)
    return _message_pieces(data, where, depth + 1, budget)


# -- redaction --------------------------------------------------------------------------


def redact_mime(
    scanner: Scanner, data: bytes, names: frozenset[str], depth: int = 0
) -> tuple[bytes, int]:
    """The MIME message `data` with what the detectors `names` find in its encoded parts and
    headers replaced, each re-encoded as it was; (data, replacements). What cannot be
    re-encoded is left (module docstring): the caller's rescan finds it."""
    read, rewritten = as_read(data)
    if rewritten:  # (read in UTF-16 or UTF-32: not rewritten, the rescan refuses)
        return data, 0
    text = data.decode("ascii", "surrogateescape")  # (as the parser reads it)
    count = 0
    try:
        for part in message_parts(read) or ():
            for _, value in part.raw_items():
                if isinstance(value, str) and "=?" in value:
                    new, replaced = redact_words(scanner, value, names)
                    text, done = _replaced(text, value, new if replaced else None)
                    count += replaced if done else 0
            content = part_content(part)
            if content is not None:
                raw, decoded = content
                inner = 0
                if depth < MAX_DEPTH and attached(decoded):  # (an attached e-mail)
                    decoded, inner = redact_mime(scanner, decoded, names, depth + 1)
                redacted, replaced = redact_body(scanner, decoded, "text/plain", names)
                replaced += inner
                encoded = written_as(encoding(part), raw, redacted) if replaced else None
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
