"""A message's body as its reader reads it: by its type, in its charset, part by part.

:func:`body_pieces` is what the gateway scans of a request's or a response's body, and what a
redaction's rescan reads again: the body as its kind reads it (``locate.kind_pieces``: each
string and number of a JSON body, each field of a form, the text of any other), and

* the body read in the charset its ``Content-Type`` names where that reads otherwise than
  UTF-8 (``text/plain; charset=utf-16``, ``utf-7``, ``iso-2022-jp``: a client's ``.text``
  decodes by it, a server's form reader too), or in the encoding a byte order mark
  announces: ``body.utf-16-le`` (``reading.charset_readings``); a form's escapes decoded in
  it too, of that text (as aiohttp's ``request.post()`` reads it) and of the text as it is
  (as a servlet container reads ``%00A%00K…``). A charset no reader
  here knows (``x-unknown``, ``base64``) is a finding of ``unreadable_encoding`` at
  ``body`` (``locate.UNREADABLE``, of each kind the scanner reads: a rule reading any
  content field refuses it; the gateway cuts such a response: fail closed);
* a ``multipart/*`` body's parts as a server's multipart reader reads them (aiohttp's
  ``request.post()``), parsed as ``mime`` parses a message: each part's value at
  ``multipart.<name>`` (its ``Content-Disposition`` name; ``multipart.part2``, numbered in
  order, without one), the name itself at ``multipart.<name>#name``, the value's transfer
  encoding decoded (base64, quoted-printable, uuencode) and read in its charset, or in the
  one a ``_charset_`` field names for every part (RFC 7578), its headers' encoded words and
  RFC 2231 parameters decoded (``multipart.<name>.header.content-disposition``). A part in
  a transfer encoding or a charset no reader here knows, or with a ``Content-Encoding``
  (which some readers inflate), is ``unreadable_encoding`` at it, as are parts that name
  ``_charset_`` differently. A body whose structure the parser's reading cannot be trusted
  for (``mimeparse``: beyond its bounds, a parser failure, one other readers may cut
  otherwise) is read whole with every transfer encoding applied anywhere
  (``mimeflat.unstructured``: ``multipart.parts.1``…), and is ``unreadable_encoding`` if it
  names a charset anywhere too.

What the body's own text holds (a part as written, its headers) is in the ``body`` piece;
a part's value is read again on its own where decoding or its charset reads it otherwise,
or its name says secret (``api_key``: its value is a ``generic_secret`` as a form field's
is). Nothing here is rewritten: a redaction rewrites
the body's text (``locate.redact_body``), and a rescan finds what it could not (a decoded
part, a charset's reading, a number), which the caller refuses.
"""

from __future__ import annotations

import re
from email.message import Message
from email.utils import collapse_rfc2231_value
from urllib.parse import parse_qsl

from agentfirewall.content.locate import (
    NAME,
    UNREADABLE_TEXT,
    Piece,
    body_kind,
    kind_pieces,
    secret_name,
    shown,
)
from agentfirewall.content.mime import part_content, text_pieces
from agentfirewall.content.mimeflat import unstructured
from agentfirewall.content.mimeheaders import header_pieces
from agentfirewall.content.mimeparse import ambiguous, hidden, message_parts, written
from agentfirewall.content.reading import charset_known, charset_readings, decode_body

__all__ = ["MULTIPART", "body_pieces", "charsets", "readable"]

#: Where a multipart body's parts are read.
MULTIPART = "multipart"
# (each `charset` parameter of a Content-Type: readers differ on which of two counts)
_CHARSET = re.compile(r'(?i)(?:^|;)\s*charset\s*=\s*"?([^";\s]*)')
_NAMES_CHARSET = re.compile(rb"(?i)charset")
_MARK_STARTS = (b"\xff", b"\xfe", b"\0")  # (a UTF-16 or UTF-32 byte order mark's first byte)
_DEFAULT_CHARSET = "_charset_"  # (RFC 7578's field naming every other part's charset)
_CODING = "content-encoding"


def body_pieces(body: bytes, content_type: str) -> list[Piece]:
    """The body's pieces (module docstring)."""
    if not body:
        return []
    pieces = kind_pieces(body, content_type)
    named = charsets(content_type)
    if named or body[:1] in _MARK_STARTS:
        pieces += _charset_pieces(body, named, body_kind(content_type) == "form")
    if content_type.lstrip()[:10].lower() == "multipart/":
        pieces += _multipart_pieces(body, content_type)
    return pieces


def charsets(content_type: str) -> list[str]:
    """The charsets a ``Content-Type`` names (lower-case, each once)."""
    if "charset" not in content_type.lower():  # (the common case, at once)
        return []
    return list(dict.fromkeys(c.lower() for c in _CHARSET.findall(content_type) if c))


def readable(content_type: str) -> bool:
    """Whether each charset a ``Content-Type`` names can be read here."""
    return all(charset_known(charset) for charset in charsets(content_type))


def _charset_pieces(body: bytes, named: list[str], form: bool) -> list[Piece]:
    """The body read in each charset `named` (or the encoding its byte order mark says)
    where that reads otherwise than UTF-8: ``body.<codec>``; a form's text percent-decoded in
    it too. A charset not known: :data:`~locate.UNREADABLE` at ``body``."""
    pieces: list[Piece] = []
    read = decode_body(body).text
    for charset in named or [""]:
        if not charset_known(charset):
            pieces.append(("body", UNREADABLE_TEXT))
            continue
        for codec, text in charset_readings(body, charset):
            texts = [text]
            if form:  # (its fields' escapes in the charset: of its text read in it, as
                # aiohttp reads it, and of its text as it is, as a servlet container does)
                texts = [_fields(text, codec), _fields(read, codec)]
            pieces += [(f"body.{codec}", t) for t in texts if t != read]
    return pieces


def _fields(text: str, codec: str) -> str:
    """A form's fields, `name=value` a line, their escapes decoded in `codec`."""
    fields = parse_qsl(text, keep_blank_values=True, encoding=codec, errors="replace")
    return "\n".join(f"{name}={value}" for name, value in fields)


def _multipart_pieces(body: bytes, content_type: str) -> list[Piece]:
    """What a multipart body's parts carry as a server reads them (module docstring)."""
    head = content_type.replace("\r", " ").replace("\n", " ").encode("latin-1", "replace")
    data = b"Content-Type: " + head + b"\r\n\r\n" + body
    try:
        parts = message_parts(data)
        unsure = parts is None or ambiguous(data, parts)
    except Exception:  # (the parser failed on it: read whole, fail closed)
        parts, unsure = None, True
    pieces: list[Piece] = []
    if parts is not None:
        pieces = _parts_pieces(parts[1:])  # (the first: the body itself)
    if unsure:
        pieces += unstructured(data, MULTIPART)
        if _NAMES_CHARSET.search(body) is not None:  # (a charset unstructured does not read)
            pieces.append((MULTIPART, UNREADABLE_TEXT))
    return pieces


def _parts_pieces(parts: list[Message]) -> list[Piece]:
    """Each part's value and its name, read in its charset, or the ``_charset_`` field's."""
    defaults = {(written(part) or "").strip().lower() for part in parts if _sets_charset(part)}
    if len(defaults) > 1:  # (readers take the first, or the last)
        return [(MULTIPART, UNREADABLE_TEXT)]
    default = defaults.pop() if defaults else ""
    pieces: list[Piece] = []
    names: set[str] = set()
    for index, part in enumerate(parts, 1):
        raw = written(part)
        name = _name(part)
        where = f"{MULTIPART}.{shown(name)}" if name else f"{MULTIPART}.part{index}"
        if name and name not in names:
            names.add(name)
            pieces.append((where + NAME, name))
        pieces += header_pieces(part, where)
        if raw is None:  # (a multipart inside: its parts follow)
            continue
        charset = part.get_content_charset() or default
        coded = any(str(v).strip().lower() != "identity" for v in part.get_all(_CODING, []))
        if hidden(part) or coded or not charset_known(charset):
            pieces.append((where, UNREADABLE_TEXT))
            continue
        content = part_content(part)
        value = raw.encode("ascii", "surrogateescape") if content is None else content[1]
        # (a part as written is in the body's text: read again only decoded, in its charset,
        # or under a secret name, where its value is a generic secret as a form field's is)
        again = content is not None or secret_name(name)
        pieces += text_pieces(value, where, charset, again)
    return pieces


def _name(part: Message) -> str:
    """The part's name (its ``Content-Disposition``'s ``name``, RFC 2231 decoded)."""
    value = part.get_param("name", header="content-disposition")
    return collapse_rfc2231_value(value) if value else ""  # type: ignore[arg-type]


def _sets_charset(part: Message) -> bool:
    """Whether a part may be read as the ``_charset_`` field (its disposition names it
    anywhere: readers parse a disposition differently)."""
    return _DEFAULT_CHARSET in str(part.get("content-disposition", "")).lower()
