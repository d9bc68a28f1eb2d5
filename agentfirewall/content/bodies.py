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
  (``mimeflat.unstructured``: ``multipart.parts.1``…), and is ``unreadable_encoding`` if a
  part's header may name a charset that reading does not read: a ``Content-Type`` or
  ``Content-Disposition`` header anywhere in it, however readers cut it, that says
  ``charset`` otherwise than naming UTF-8 (``charset=utf-16``, the ``_charset_`` field).
  What the parts hold is no header: a SQL dump's ``DEFAULT CHARSET=utf8mb4``, its
  thousands of ``--`` comment lines (which are no delimiter: ``mimeparse``) leave an
  upload readable.

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
from urllib.parse import parse_qsl, unquote_to_bytes

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
from agentfirewall.content.mimeflat import read_parameters, unstructured
from agentfirewall.content.mimeheaders import header_pieces, words_decoded
from agentfirewall.content.mimeparse import ambiguous, hidden, message_parts, written
from agentfirewall.content.reading import charset_known, charset_readings, decode_body

__all__ = ["MULTIPART", "body_pieces", "charsets", "readable"]

#: Where a multipart body's parts are read.
MULTIPART = "multipart"
# (each `charset` parameter of a Content-Type: readers differ on which of two counts)
_CHARSET = re.compile(r'(?i)(?:^|;)\s*charset\s*=\s*"?([^";\s]*)')
# (a Content-Type or Content-Disposition header wherever it is in a body, lower-case, to where
# the readers that break its lines least end it: a bare `\r` ends none, a line break followed
# by a space or a tab goes on)
_HEADER = re.compile(
    rb"content-(?:type|disposition)[ \t]*:"  # (its name, then its lines)
    rb"(?:[^\r\n]++|\r(?!\n)|\r?\n(?=[ \t]))*+"
)
_CRLF_END = re.compile(rb"\r\n(?![ \t])")  # (where one ends for a reader of CRLF lines only)
_CHARSET_WORD = b"charset"
# (a `charset` parameter naming UTF-8 or US-ASCII, which the UTF-8 reading reads, lower-case)
_UTF8_CHARSET = re.compile(
    rb"(?<![\w-])charset[ \t]*+=[ \t]*+"  # (a parameter's name, then its value)
    rb"(?:utf-?8|us-ascii|ascii)(?![^;\s])"
)
_MARK_STARTS = (b"\xff", b"\xfe", b"\0")  # (a UTF-16 or UTF-32 byte order mark's first byte)
_DEFAULT_CHARSET = b"_charset_"  # (RFC 7578's field naming every other part's charset)
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
        if _names_charset(body):  # (a charset unstructured does not read)
            pieces.append((MULTIPART, UNREADABLE_TEXT))
    return pieces


def _names_charset(body: bytes) -> bool:
    """Whether a part's header may name a charset the unstructured reading does not read,
    however a reader cuts the body: a ``Content-Type`` or ``Content-Disposition`` header
    anywhere in it says ``charset``, as some reader reads it (:func:`_readings`), otherwise
    than as a ``charset`` parameter naming UTF-8 or US-ASCII (the ``_charset_`` field's
    name, ``charset=utf-16``). What parts hold otherwise names none (a SQL dump's ``DEFAULT
    CHARSET=utf8mb4``, a comment's ``charset``)."""
    spans = _header_spans(body.lower())
    headers = b"\n".join([body[start:end] for start, end in spans])  # (read at once)
    return any(
        reading.count(_CHARSET_WORD) != len(_UTF8_CHARSET.findall(reading))
        for reading in _readings(headers)
    )


def _header_spans(lowered: bytes) -> list[tuple[int, int]]:
    """Where the ``Content-Type`` and ``Content-Disposition`` headers of a body are
    (:data:`_HEADER`), each to where a reader that breaks lines only at CRLF ends it too
    (past a bare ``\\n``) where one does, overlapping ones joined: in linear time."""
    spans: list[tuple[int, int]] = []
    crlf: int | None = 0  # (the last CRLF end found; None: there is none further on)
    for header in _HEADER.finditer(lowered):
        start, end = header.span()
        if crlf is not None and crlf < end:
            found = _CRLF_END.search(lowered, end)
            crlf = found.start() if found is not None else None
        end = end if crlf is None else max(end, crlf)
        if spans and start <= spans[-1][1]:
            spans[-1] = (spans[-1][0], max(spans[-1][1], end))
        else:
            spans.append((start, end))
    return spans


def _readings(header: bytes) -> list[bytes]:
    """A header's text (or several, a line each) as readers may read it, lower-case: as
    written, its encoded words decoded, its RFC 2231 parameters joined (``name*0=_char;
    name*1=set_``); each with its quoted-pairs and quotes dropped (``"_\\charset_"``), and
    then its ``%XX`` escapes decoded too."""
    text = header.decode("ascii", "surrogateescape")
    read = [header]
    if "=?" in text:
        read.append(words_decoded(text).encode("utf-8", "surrogatepass"))
    if b"*" in header:
        read.append(read_parameters(text))
    plain = [reading.replace(b"\\", b"").replace(b'"', b"") for reading in read]
    return [reading.lower() for one in plain for reading in (one, unquote_to_bytes(one))]


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
    """Whether a part may be read as the ``_charset_`` field: a disposition of it names it
    anywhere, as any reader reads it (:func:`_readings`: readers parse a disposition
    differently; aiohttp drops quoted-pairs, ``name="_\\charset_"``)."""
    for value in part.get_all("content-disposition") or []:
        readings = _readings(str(value).encode("utf-8", "surrogateescape"))
        if any(_DEFAULT_CHARSET in reading for reading in readings):
            return True
    return False
