"""Text a field carries base64-encoded: decoded to be scanned, re-encoded after a redaction.

A connector names the fields of a request that carry a file or a message base64-encoded
(GitHub's contents API ``content``, a git blob, ``createCommitOnBranch``'s additions, a
SendGrid attachment) by their *locations*, the names ``locate.py`` gives the pieces of a
message: ``body.content``, ``body.attachments.*.content``, ``form.RawMessage.Data``,
``parameters.file_changes.additions.*.contents`` (``*``: any one key or index; names are
compared case-insensitively, as some upstreams match keys), and those of an answer the
same way (``Connector.response_encoded``: a file read through the contents API, a git
blob, an AWS binary secret; the response side reads them, ``agentfirewall_proxy.guarded``).
:func:`decoded_pieces` adds, for each piece at such a location, the text it decodes to, at
``<location>(base64)`` (its JSON escapes decoded too at ``<location>(base64).unescaped``):
the scanner reads it with the same detectors, in the same call, so a detection there counts
as one in plain text and is reported by its field, never its value.

Decoding is lenient, as the upstreams' decoders are (Ruby's ``unpack1("m")``, a MIME
decoder): both alphabets (``+/`` and ``-_``), padding optional, every other character
skipped (line breaks, spaces, ``\\``, non-ASCII), and a ``=`` ends a run that the next one
continues after (concatenated base64). So a field is never "not base64" to the guard
where an upstream would still decode it; a field that is no base64 at all is scanned as
it is anyway (its decoding is noise). The decoded bytes are read as a text body is
(``reading.decode_body``: UTF-8, undecodable bytes kept), and, when they start with a UTF-16
or UTF-32 byte order mark (a text file saved as Windows' "Unicode"), in that encoding too at
``<location>(base64).utf-16-le`` (``mime.text_pieces``). What is decoded is bounded by
what is scanned: the body up to the gateway's inspection limit (decoding shrinks it by a
quarter), an SDK action's parameters.

A location declared with the kind ``mime`` (``form.RawMessage.Data:mime``) carries a whole
e-mail, a MIME message whose parts are encoded once more: what they carry is decoded too,
at ``<location>(base64).part2``, ``…(base64).part0.header.subject`` (``mime.py``).

:func:`redact_encoded` redacts inside the fields where a finding says a redacted detector
fired (``body.content(base64)+12``): each is decoded, redacted as a text body is, and
re-encoded in its alphabet (with padding if it had any, or in the standard alphabet), so
the upstream (or the agent, in an answer) still gets valid base64; on one line (GitHub's
lines of 60 are not kept: every decoder reads one line, strict ones only that); a MIME
message's parts first, each re-encoded as it was (``mime.redact_mime``).
:func:`redact_encoded_value` does the same for the strings of a JSON value (an action spec
an approver is shown).
"""

from __future__ import annotations

import binascii
import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import quote_plus, unquote_plus

from agentfirewall.content.locate import Finding, Piece, body_kind, kind_pieces, redact_body
from agentfirewall.content.mime import mime_pieces, read_base64, redact_mime, text_pieces
from agentfirewall.content.reading import decode_body, json_strings, load_json
from agentfirewall.content.scanner import Scanner

__all__ = [
    "ENCODED",
    "MIME",
    "Decoded",
    "decode_base64",
    "decoded_pieces",
    "encoded_body_pieces",
    "redact_encoded",
    "redact_encoded_value",
]

#: What a decoded piece's location adds to its field's.
ENCODED = "(base64)"
#: A declared location's kind: the field carries a MIME message (``RawMessage.Data:mime``).
MIME = ":mime"
_PART = ".part"  # (after ENCODED: where a MIME message's parts are read)
_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/-_="
_STANDARD = bytes.maketrans(b"-_", b"+/")
_OTHER = bytes(sorted(set(range(256)) - set(_ALPHABET)))  # skipped, as lenient decoders do
_STRUCTURE = re.compile(r"[{}\[\],]")


@dataclass(frozen=True, slots=True)
class Decoded:
    """A field's bytes, and how to write bytes back as it was written."""

    data: bytes
    url: bool  # the URL-safe alphabet (``-_``)
    padded: bool

    def encode(self, data: bytes) -> str:
        text = binascii.b2a_base64(data, newline=False)
        if self.url:
            text = text.translate(bytes.maketrans(b"+/", b"-_"))
        if not self.padded:
            text = text.rstrip(b"=")
        return text.decode("ascii")


def decode_base64(text: str) -> Decoded | None:
    """`text` decoded leniently (module docstring); None when it holds no whole byte."""
    raw = text.encode("ascii", "ignore")
    data = raw.translate(_STANDARD, _OTHER)
    out = read_base64(data)  # (the URL-safe alphabet read as the standard one)
    if not out:
        return None
    url = (b"-" in raw or b"_" in raw) and not (b"+" in raw or b"/" in raw)
    return Decoded(out, url, b"=" in data or not url)


@functools.lru_cache(maxsize=256)
def _matchers(locations: tuple[str, ...]) -> tuple[re.Pattern[str], re.Pattern[str] | None]:
    """One expression for `locations` (lower-case, ``*`` any one key or index), and one for
    those of the kind ``mime`` (None: none is)."""

    def compiled(found: list[str]) -> re.Pattern[str]:
        return re.compile("|".join(
            ".".join("[^.]*" if part == "*" else re.escape(part) for part in loc.split("."))
            for loc in found))  # fmt: skip

    lowered = [loc.lower() for loc in locations]
    mime = [loc.removesuffix(MIME) for loc in lowered if loc.endswith(MIME)]
    return compiled([loc.removesuffix(MIME) for loc in lowered]), compiled(mime) if mime else None


def decoded_pieces(pieces: Iterable[Piece], locations: Sequence[str]) -> list[Piece]:
    """The decoded text of each piece at one of `locations` (module docstring)."""
    if not locations:
        return []
    match, mime = _matchers(tuple(locations))
    out: list[Piece] = []
    for location, text in pieces:
        lowered = location.lower()
        if len(text) > 1 and match.fullmatch(lowered) is not None:
            decoded = decode_base64(text)
            if decoded is not None:  # read as a text body is: its text, its escapes decoded
                at = location + ENCODED
                out += text_pieces(decoded.data, at)
                if mime is not None and mime.fullmatch(lowered) is not None:
                    out += mime_pieces(decoded.data, at)
    return out


def encoded_body_pieces(
    body: bytes, content_type: str, locations: Sequence[str], pieces: list[Piece] | None = None
) -> list[Piece]:
    """The decoded text of the body fields `locations` name (``body.…``, ``form.…``).

    `pieces`: the body's (``body_pieces``), reused when it was read as JSON or a form. A
    body of another type is read as JSON for them (and as a form for ``form.…``), as the
    connectors read it: GitHub reads a JSON body, AWS a query-protocol form, whatever the
    ``Content-Type`` says."""
    wanted = [loc for loc in locations if loc.startswith(("body.", "form."))]
    if not wanted or not body:
        return []
    if body_kind(content_type) == "text":
        pieces = kind_pieces(body, "application/json")
        if any(loc.startswith("form.") for loc in wanted):
            pieces += kind_pieces(body, "application/x-www-form-urlencoded")
    elif pieces is None:
        pieces = kind_pieces(body, content_type)
    return decoded_pieces(pieces, wanted)


# -- redaction --------------------------------------------------------------------------


def encoded_fields(findings: Iterable[Finding]) -> frozenset[str]:
    """The fields (lower-case locations) whose decoded text holds one of `findings`: with
    the kind ``mime`` (``form.rawmessage.data:mime``) where one is in a MIME message's part
    (``…(base64).part2``), so that a rescan reads the parts again."""
    found: dict[str, bool] = {}
    for finding in findings:
        field, encoded, rest = finding.location.partition(ENCODED)
        if encoded:
            field = field.lower()
            found[field] = found.get(field, False) or rest.startswith(_PART)
    return frozenset(field + MIME if mime else field for field, mime in found.items())


def _redacted(
    scanner: Scanner, text: str, names: frozenset[str], mime: bool
) -> tuple[str | None, int]:
    """`text` decoded, redacted as a text body (a MIME message's parts first: `mime`) and
    re-encoded; (None, 0) when unchanged."""
    decoded = decode_base64(text)
    if decoded is None:
        return None, 0
    data, count = redact_mime(scanner, decoded.data, names) if mime else (decoded.data, 0)
    data, more = redact_body(scanner, data, "text/plain", names)
    count += more
    return (decoded.encode(data), count) if count else (None, 0)


def redact_encoded(
    scanner: Scanner, body: bytes, names: frozenset[str], findings: Iterable[Finding]
) -> tuple[bytes, int]:
    """The body with the detectors `names`' findings replaced inside each encoded field
    `findings` name (a JSON body's ``body.…``, a form's ``form.…``: read as the findings
    read it, whatever its ``Content-Type``), re-encoded; (body, replacements). Everything
    else stays byte for byte (redact the plain text after, with ``redact_body``)."""
    fields = {f.removesuffix(MIME): f.endswith(MIME) for f in encoded_fields(findings)}
    if not fields or not body:
        return body, 0
    read = decode_body(body)
    text, count = read.text, 0
    if any(field.startswith("form.") for field in fields):  # (as the findings read it)
        text, count = _redact_form(scanner, text, names, fields)
    if any(field.startswith("body.") for field in fields):
        try:
            load_json(text)
        except (ValueError, RecursionError):
            return body, 0
        text, more = _redact_json(scanner, text, names, fields)
        count += more
    return (read.encode(text), count) if count else (body, 0)


def _redact_json(
    scanner: Scanner, raw: str, names: frozenset[str], fields: dict[str, bool]
) -> tuple[str, int]:
    """Each string token of the JSON text `raw` at one of `fields` (location: is of the
    kind ``mime``), redacted inside."""
    out: list[str] = []
    count = at = 0
    frames: list[tuple[bool, str]] = []  # per open object or array: (is an array, key or index)
    gap = 0  # where the text between string tokens (the JSON structure) starts
    for token in json_strings(raw):
        for sign in _STRUCTURE.finditer(raw, gap, token.start - 1):
            char = sign.group()
            if char in "{[":
                frames.append((char == "[", "0"))
            elif char in "}]":
                frames.pop()
            elif frames and frames[-1][0]:  # the next element of an array
                frames[-1] = (True, str(int(frames[-1][1]) + 1))
        gap = token.end + 1
        if token.key:
            frames[-1] = (False, token.text.lower())
            continue
        mime = fields.get("body" + "".join(f".{label}" for _, label in frames))
        if mime is None:
            continue
        new, replaced = _redacted(scanner, token.text, names, mime)
        if new is not None:
            out += [raw[at : token.start], new]
            at = token.end
            count += replaced
    out.append(raw[at:])
    return "".join(out), count


def _redact_form(
    scanner: Scanner, text: str, names: frozenset[str], fields: dict[str, bool]
) -> tuple[str, int]:
    """Each form field at one of `fields`, redacted inside and re-encoded."""
    count = 0
    parts = text.split("&")
    for index, raw in enumerate(parts):
        name, equals, value = raw.partition("=")
        mime = fields.get(f"form.{unquote_plus(name)}".lower()) if equals else None
        if mime is not None:
            new, replaced = _redacted(scanner, unquote_plus(value), names, mime)
            if new is not None:
                parts[index] = f"{name}={quote_plus(new)}"
                count += replaced
    return "&".join(parts), count


def redact_encoded_value(
    scanner: Scanner, value: object, names: frozenset[str], locations: Sequence[str]
) -> object:
    """A JSON-like value (an action spec, its root unnamed: ``parameters.…``) with each
    string at one of `locations` redacted inside and re-encoded."""
    if not locations:
        return value
    match, mime = _matchers(tuple(locations))

    def walk(item: object, path: str) -> object:
        if isinstance(item, str):
            if match.fullmatch(path.lower()) is None:
                return item
            parts = mime is not None and mime.fullmatch(path.lower()) is not None
            new = _redacted(scanner, item, names, parts)[0]
            return item if new is None else new
        if isinstance(item, dict):
            return {k: walk(v, f"{path}.{k}" if path else str(k)) for k, v in item.items()}
        if isinstance(item, list):
            return [walk(v, f"{path}.{i}") for i, v in enumerate(item)]
        return item

    return walk(value, "")
