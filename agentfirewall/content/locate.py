"""Where in a request or response a detector fired, and redaction of what it found.

A message is cut into named pieces of text — ``url.path``, ``query.<name>``,
``header.<name>``, and the body (:func:`kind_pieces`): ``body.<json.path>`` for each string
and number of a JSON body, ``form.<name>`` for a form, ``body`` for anything else (text,
multipart, binary; ``bodies.body_pieces`` adds a multipart's parts and the body read in
its charset) — and the pieces are scanned together (joined by a NUL, one scanner call). A
:class:`Finding` names the detector and the piece, with the offset and length inside it:
never the text itself. A header that carries only a protocol's random nonce (WebSocket's
``Sec-WebSocket-Key``) is not scanned: it is no secret, but looks like one.

A JSON number is scanned as the whole number its reader reads, in digits
(``{"card": 4242424242424242}``, ``4.242424242424242e15`` and ``4242424242424242.0`` are a
card number): an integer exactly, a number with a fraction or an exponent as the float
JSON readers read it (exact below 2**53, every 16-digit card number); an SDK action's
numbers alike. A fraction is not scanned, nor a number of fewer than 13 digits (no
detector reads one). A number is never rewritten: a redaction leaves it, and the caller's
rescan refuses it.

The injection markers also read each piece normalised (``injection.normalized``: tags
stripped, entities decoded, format characters dropped, NFKC); a marker found only so is at
``<location>.normalized``, its offset in that reading.

Names are read too: each JSON key, form field name, query parameter name and header name
is a piece of its own, ``<where it names>#name`` (``body.messages.0.role#name``). A name
shown in a location that holds a detection itself (``{"AKIA…": 1}``) is shown as its
marker (``body.[REDACTED:aws_access_key]#name``): a location never carries what a
detector finds, whichever detectors the policy reads.

The body is read as its upstream reads it (``reading.py``): a JSON object's members all
(a key given twice is scanned twice), a UTF-16 or UTF-32 JSON body in its encoding, and a
body read as text also with its JSON escapes decoded (``body.unescaped``: ``AKIA\\u0051…``
in a ``text/plain`` or ``text/json`` body, which a JSON reader decodes).

A string whose own name says it is secret (``"api_key": "..."``, ``X-Api-Key``,
``password=...``) and that looks random is a ``generic_secret`` even without a
``name = value`` pattern in the text.

:func:`redact_body` replaces what the named detectors found by ``[REDACTED:<name>]``, in
place: in a JSON body only the string tokens that hold a detection are rewritten (keys
too, every duplicate member; numbers, spacing and order stay byte for byte), in a form
only the fields that do, in any other body the text (its escaped forms too). A private key
without its END line is redacted through the base64 that follows it, in a JSON body
through the array elements that carry its lines. The caller re-frames the body (its
length changes).
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from urllib.parse import quote_plus, unquote, unquote_plus

from agentfirewall.content.detectors import DETECTORS
from agentfirewall.content.injection import normalized
from agentfirewall.content.reading import Pairs, Unescaped, decode_body, json_strings, load_json
from agentfirewall.content.scanner import Hit, Scanner, default_scanner, unglued

__all__ = [
    "NORMALIZED",
    "UNREAD",
    "UNREADABLE",
    "UNREADABLE_TEXT",
    "UNREAD_NAMES",
    "UNREAD_TEXT",
    "Finding",
    "Piece",
    "body_kind",
    "content_attributes",
    "describe",
    "found_names",
    "kind_pieces",
    "marker",
    "redact_body",
    "redact_text",
    "redact_value",
    "redaction_spans",
    "request_pieces",
    "scan_pieces",
    "secret_name",
    "unglued",
    "value_pieces",
]

Piece = tuple[str, str]  # (location, text)
NAME = "#name"  # a name's own piece: the location of what it names, and this
#: A piece of one of these texts stands for what could not be read: an e-mail attached
#: deeper than ``mime`` reads (:data:`UNREAD`), a body or a part in a charset or an encoding
#: no reader here knows (:data:`UNREADABLE`, ``bodies``); a finding of that name there, of
#: each kind the scanner reads (:func:`scan_pieces`), so that a rule reading any content
#: field the scan fills (``content.secrets``, ``content.pii``, ``response.injection``)
#: refuses it as it would a detection (fail closed: what it holds is not known).
UNREAD = "mime_too_deep"
UNREADABLE = "unreadable_encoding"
UNREAD_NAMES = frozenset({UNREAD, UNREADABLE})
UNREAD_TEXT = f"\ufdd0{UNREAD}\ufdd0"
UNREADABLE_TEXT = f"\ufdd0{UNREADABLE}\ufdd0"
_UNREAD_TEXTS = frozenset({UNREAD_TEXT, UNREADABLE_TEXT})
#: The bounds of a whole number a detector may find (13 to 20 digits: a card number has 13
#: to 19).
_LEAST, _MOST = 10**12, 10**20
#: What a location found in a piece's normalised reading adds to the piece's.
NORMALIZED = ".normalized"
#: Headers that carry a protocol's nonce (RFC 6455: 16 random bytes in base64, and the
#: answer's SHA-1 of it), and the shape of one: not scanned when that is all they carry.
_NONCES = frozenset({"sec-websocket-key", "sec-websocket-accept"})
_NONCE = re.compile(r"[A-Za-z0-9+/]{22}==|[A-Za-z0-9+/]{27}=")
_SEPARATOR = "\x00"
_GENERIC = DETECTORS["generic_secret"][0]
_CONTEXT_RE = re.compile("key|secret|token|passw|credential|auth|private|session|cookie", re.I)
#: A private key's lines after its header (array elements, or the rest of a text).
_PEM_LINE = re.compile(r"[ \t\r\n]*(?:[A-Za-z][A-Za-z0-9-]{0,40}:[^\r\n]{0,128}|[A-Za-z0-9+/=]+)"
                       r"(?:[ \t\r\n]+[A-Za-z0-9+/=]+)*[ \t\r\n]*")  # fmt: skip
_PEM_END = re.compile(r"[A-Za-z0-9+/= \t\r\n]*-----END [A-Z0-9 ]{0,100}PRIVATE KEY(?: BLOCK)?-----")


@dataclass(frozen=True, slots=True)
class Finding:
    """A detector fired at `location`, `offset` characters in, over `length` characters."""

    detector: str
    kind: str
    confidence: float
    location: str
    offset: int
    length: int

    def describe(self) -> str:
        return f"{self.detector} at {self.location}+{self.offset}"


def marker(detector: str) -> str:
    """What redacted text reads as."""
    return f"[REDACTED:{detector}]"


def secret_name(name: str) -> bool:
    """Whether a name says its value is secret (``api_key``, ``X-Auth-Token``)."""
    return _CONTEXT_RE.search(name) is not None


def _generic(text: str) -> bool:
    return _GENERIC.check is not None and _GENERIC.check(text.strip())


_SHOWN: dict[str, str] = {}


def shown(name: str) -> str:
    """`name` as a location shows it: its marker when it holds a detection (any detector:
    what the policy's scanner does not read must not reach a log either; a token glued to a
    word, ``X-AKIA…``, is one). What it masks as a secret, the scan of the name finds."""
    found = _SHOWN.get(name)
    if found is not None:
        return found
    found = name
    # (nothing shorter than 13 characters, without `@` and with fewer than 8 digits, is a
    # detection: the shortest are 20-character key ids, 13-digit cards, 8-digit phones)
    if len(name) > 12 or "@" in name or sum(c.isdigit() for c in name) >= 8:
        hits = default_scanner().scan(name, joined=True)
        if hits:
            found = marker(hits[0].detector)
    if len(name) <= 64:
        if len(_SHOWN) >= 4096:
            _SHOWN.clear()
        _SHOWN[name] = found
    return found


def scan_pieces(scanner: Scanner, pieces: Iterable[Piece]) -> list[Finding]:
    """Scan every piece (one scanner call) and say where each hit is."""
    items = [p for p in pieces if p[1]]
    if not items:
        return []
    joined = _SEPARATOR.join([text for _, text in items])
    findings = _located(scanner, items, joined)
    if "generic_secret" in scanner.names:
        named = {f.location for f in findings if f.kind == "secret"}
        for location, text in items:
            if len(text) < 16 or location in named or location.endswith(NAME):
                continue
            if secret_name(location.rsplit(".", 1)[-1]) and _generic(text):
                findings.append(Finding("generic_secret", "secret", 0.6, location, 0, len(text)))
    unread = [(location, text[1:-1]) for location, text in items if text in _UNREAD_TEXTS]
    if unread:  # (a finding of each kind read: whatever field a rule reads, it is refused)
        findings += [Finding(name, kind, 1.0, location, 0, 0)
                     for location, name in unread for kind in scanner.kinds]  # fmt: skip
    markers = scanner.markers
    if markers is not None and (not joined.isascii() or "<" in joined or "&" in joined):
        findings += _normalized_findings(markers, items, findings)
    return findings


def _located(scanner: Scanner, items: list[Piece], text: str) -> list[Finding]:
    """Each hit of `scanner` in `text` (`items` joined by a NUL), in its piece (a secret
    joined to a word too: ``Scanner.scan``)."""
    hits = scanner.scan(text, joined=True)
    if not hits:
        return []
    starts: list[int] = []
    at = 0
    for _, text in items:
        starts.append(at)
        at += len(text) + 1
    return [_finding(hit, items, starts) for hit in hits]


def _normalized_findings(
    markers: Scanner, items: list[Piece], found: list[Finding]
) -> list[Finding]:
    """The injection markers found in the pieces' normalised readings and not in the pieces
    themselves, at ``<location>.normalized`` (offsets in that reading)."""
    seen = {(f.location, f.detector) for f in found}
    readings = [
        (location + NORMALIZED, read)
        for location, text in items
        if (read := normalized(text)) != text
    ]
    if not readings:
        return []
    joined = _SEPARATOR.join([text for _, text in readings])
    return [f for f in _located(markers, readings, joined)
            if (f.location.removesuffix(NORMALIZED), f.detector) not in seen]  # fmt: skip


def found_names(scanner: Scanner) -> frozenset[str]:
    """What the findings of `scanner` may name: its detectors, and :data:`UNREAD_NAMES`
    (of each kind it reads) where it has any."""
    return scanner.names | UNREAD_NAMES if scanner.detectors else scanner.names


def _finding(hit: Hit, items: list[Piece], starts: list[int]) -> Finding:
    index = bisect.bisect_right(starts, hit.start) - 1
    offset = hit.start - starts[index]
    end = min(hit.end - starts[index], len(items[index][1]))
    return Finding(hit.detector, hit.kind, hit.confidence, items[index][0], offset, end - offset)


def number_text(number: int | float) -> str:
    """The whole number a JSON number is to its reader, in digits: ``4242424242424242``,
    ``4.242424242424242e15`` and ``4242424242424242.0`` are ``4242424242424242``; ``""``
    for a fraction and for a number of fewer than 13 digits or more than 20 (no detection:
    the shortest that is digits only, a card number, has 13; the longest, 19)."""
    if -_LEAST < number < _LEAST or (isinstance(number, int) and not -_MOST < number < _MOST):
        return ""  # (most numbers, at once; a huge integer's digits are never written out)
    if isinstance(number, int):
        return str(number)
    value = Decimal(number)  # (the float's exact value: the digits its reader reads)
    if value.is_finite() and value.adjusted() < 20 and value == value.to_integral():
        return str(int(value))
    return ""


def _json_strings(value: object, path: str) -> Iterator[Piece]:
    """Each string and whole number (:func:`number_text`) of a JSON value, and each distinct
    key once (``<member>#name``)."""
    stack: list[tuple[object, str]] = [(value, path)]
    names: set[str] = set()
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            yield where, item
            continue
        if type(item) is int or type(item) is float:  # (not a bool; most are small: at once)
            if not -_LEAST < item < _LEAST and (text := number_text(item)):
                yield where, text
            continue
        if isinstance(item, Pairs):
            members: Iterable[tuple[object, object]] = item
        elif isinstance(item, dict):
            members = item.items()
        elif isinstance(item, list):
            stack.extend((v, f"{where}.{i}") for i, v in enumerate(item))
            continue
        else:
            continue
        for key, member in members:
            name = str(key)
            at = f"{where}.{shown(name)}"
            if name not in names:
                names.add(name)
                yield at + NAME, name
            stack.append((member, at))


def value_pieces(value: object, path: str) -> list[Piece]:
    """Each string and number inside a JSON value, named by its path
    (``parameters.body.text``), and each of its keys (``parameters.body.text#name``)."""
    return list(_json_strings(value, path))


def content_attributes(findings: Iterable[Finding], side: str = "content") -> dict[str, object]:
    """``{"content.secrets": [...], "content.pii": [...]}``: names, sorted; absent if none.

    On the response side (`side` ``response``): ``response.secrets``, ``response.injection``.
    """
    fields = {"secret": f"{side}.secrets", "pii": f"{side}.pii", "injection": f"{side}.injection"}
    found: dict[str, set[str]] = {}
    for finding in findings:
        found.setdefault(fields[finding.kind], set()).add(finding.detector)
    return {name: sorted(names) for name, names in found.items()}


def body_kind(content_type: str) -> str:
    """How a body of `content_type` is read: ``json``, ``form`` or ``text``."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media == "application/json" or media.endswith("+json"):
        return "json"
    if media == "application/x-www-form-urlencoded":
        return "form"
    return "text"


def _pairs(text: str) -> list[tuple[str, str, str]]:
    """A form's or query's fields as ``parse_qsl`` reads them: (raw, name, value)."""
    fields = []
    for raw in text.split("&"):
        if raw:
            name, _, value = raw.partition("=")
            fields.append((raw, unquote_plus(name), unquote_plus(value)))
    return fields


def _named(root: str, fields: list[tuple[str, str]], lower: bool = False) -> list[Piece]:
    """Values as ``<root>.<name>``, and each distinct name once as ``<root>.<name>#name``
    (`lower`: names shown lower-case, header names, unless a marker)."""
    pieces: list[Piece] = []
    names: set[str] = set()
    for name, value in fields:
        show = shown(name)
        at = f"{root}.{show.lower() if lower and show == name else show}"
        pieces.append((at, value))
        if name not in names:
            names.add(name)
            pieces.append((at + NAME, name))
    return pieces


def kind_pieces(body: bytes, content_type: str) -> list[Piece]:
    """The body's pieces as its kind reads it (module docstring): a JSON body's strings and
    numbers, a form's fields, any other's text (undecodable bytes as they are)."""
    if not body:
        return []
    kind = body_kind(content_type)
    text = decode_body(body).text
    if kind == "json":
        try:
            return list(_json_strings(load_json(text), "body"))
        except (ValueError, RecursionError):
            pass
    elif kind == "form":
        return _named("form", [(name, value) for _, name, value in _pairs(text)])
    pieces = [("body", text)]
    if "\\" in text:  # a JSON reader decodes escapes: scanned as it reads them too
        unescaped = Unescaped(text).text
        if unescaped != text:
            pieces.append(("body.unescaped", unescaped))
    return pieces


def request_pieces(
    path: str,
    query: str,
    headers: Iterable[tuple[str, str]],
    skip_headers: Iterable[str] = (),
) -> list[Piece]:
    """URL path, query parameters and headers (but `skip_headers`, lower-case names, and a
    protocol's nonce), and the names of the parameters and headers."""
    skip = frozenset(skip_headers)
    pieces: list[Piece] = [("url.path", unquote(path))]
    pieces += _named("query", [(name, value) for _, name, value in _pairs(query)])
    sent = [(k, v) for k, v in headers if k.lower() not in skip and not _nonce(k, v)]
    return pieces + _named("header", sent, True)


def _nonce(name: str, value: str) -> bool:
    """A header that carries only a protocol's nonce (``_NONCES``)."""
    return name.lower() in _NONCES and _NONCE.fullmatch(value.strip()) is not None


def describe(findings: Iterable[Finding], limit: int = 8) -> str:
    """``aws_access_key at body.text+12; ...`` (names and places, never the text; each
    once: what could not be read is a finding of each kind the scanner reads)."""
    items = list({f.describe(): f for f in findings}.values())
    text = "; ".join(f.describe() for f in items[:limit])
    return text + (f"; and {len(items) - limit} more" if len(items) > limit else "")


# -- redaction --------------------------------------------------------------------------


def redaction_spans(
    scanner: Scanner, text: str, names: frozenset[str], *, joined: bool = False
) -> list[tuple[int, int, str]]:
    """Where the detectors `names` fire in `text`, and in it with its escapes decoded
    (mapped back): (start, end, detector), sorted, overlaps merged. `joined`: and in their
    :func:`unglued` readings (a secret joined to a word: what policy detection finds, and
    what a person is shown masks)."""

    def hits(text: str) -> list[Hit]:
        return [hit for hit in scanner.scan(text, joined=joined) if hit.detector in names]

    found = [(h.start, h.end, h.detector) for h in hits(text)]
    if "\\" in text:
        unescaped = Unescaped(text)
        if unescaped.text != text:
            found += [(unescaped.to_raw(h.start), unescaped.to_raw(h.end), h.detector)
                      for h in hits(unescaped.text)]  # fmt: skip
    found.sort()
    merged: list[tuple[int, int, str]] = []
    for start, end, name in found:
        if merged and start < merged[-1][1]:
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end, merged[-1][2])
            continue
        merged.append((start, end, name))
    return merged


def _replace(text: str, spans: list[tuple[int, int, str]]) -> str:
    out: list[str] = []
    at = 0
    for start, end, name in spans:
        out += [text[at:start], marker(name)]
        at = end
    out.append(text[at:])
    return "".join(out)


def redact_text(scanner: Scanner, text: str, names: frozenset[str]) -> tuple[str, int]:
    """`text` with every hit of the detectors `names` replaced (its JSON-escaped forms
    too, and a secret joined to a word: what policy detection finds); (text, replacements)."""
    spans = redaction_spans(scanner, text, names, joined=True)
    return (_replace(text, spans), len(spans)) if spans else (text, 0)


def redact_value(scanner: Scanner, value: object, names: frozenset[str]) -> object:
    """A JSON-like value (an action spec) with every hit of `names` replaced in each of its
    strings and keys (what an approver is shown), a number holding one by its text
    redacted."""
    if isinstance(value, str):
        return redact_text(scanner, value, names)[0]
    if isinstance(value, int | float) and not isinstance(value, bool):
        text, count = redact_text(scanner, number_text(value), names)
        return text if count else value
    if isinstance(value, dict):
        return {redact_text(scanner, str(k), names)[0]: redact_value(scanner, v, names)
                for k, v in value.items()}  # fmt: skip
    if isinstance(value, list):
        return [redact_value(scanner, v, names) for v in value]
    return value


def _fixed(
    text: str, name: str | None, names: frozenset[str], spans: list[tuple[int, int, str]]
) -> tuple[list[tuple[int, int, str]], int, bool]:
    """What to replace in a string: (`spans`, how many replacements, whether it goes
    whole). A secret-named value that still looks like a secret (none found in it, or what
    is left around the markers, e.g. `AKIA…:0` whose key id alone was replaced) goes
    whole: a rescan must find nothing."""
    named = name is not None and "generic_secret" in names and secret_name(name)
    if named and _generic(_replace(text, spans) if spans else text):
        return spans, len(spans) + 1, True
    return spans, len(spans), False


def _redact_json(scanner: Scanner, raw: str, names: frozenset[str]) -> tuple[str, int]:
    """The JSON text `raw` with its string tokens redacted in place (one scanner call)."""
    tokens = list(json_strings(raw))
    starts: list[int] = []
    at = 0
    for token in tokens:
        starts.append(at)
        at += len(token.text) + 1
    found: dict[int, list[tuple[int, int, str]]] = {}
    for hit in scanner.scan(_SEPARATOR.join([t.text for t in tokens]), joined=True):
        if hit.detector in names:
            index = bisect.bisect_right(starts, hit.start) - 1
            spans = found.setdefault(index, [])
            start, end = hit.start - starts[index], hit.end - starts[index]
            end = min(end, len(tokens[index].text))
            if not spans or start >= spans[-1][1]:
                spans.append((start, end, hit.detector))
    out: list[str] = []
    count = at = 0
    open_key = False  # a private key whose lines go on in the next array elements
    for index, token in enumerate(tokens):
        spans = found.get(index, [])
        if open_key and not token.key and token.after_value:
            spans = _pem_lines(token.text) or spans
        open_key = _open_key(token.text, spans)
        spans, replaced, whole = _fixed(token.text, token.name, names, spans)
        if not replaced:
            continue
        count += replaced
        inner = raw[token.start : token.end]
        if whole:
            inner = marker("generic_secret")
        elif "\\" in inner:  # (escapes outside what is replaced are kept as they were)
            unescaped = Unescaped(inner)
            inner = _replace(inner, [(unescaped.to_raw(a), unescaped.to_raw(b), n)
                                     for a, b, n in spans])  # fmt: skip
        else:
            inner = _replace(inner, spans)
        out += [raw[at : token.start], inner]
        at = token.end
    out.append(raw[at:])
    return "".join(out), count


def _open_key(text: str, spans: list[tuple[int, int, str]]) -> bool:
    """A private key found at the end of `text`, without its END line: its lines follow."""
    if not spans or spans[-1][2] != "private_key" or spans[-1][1] < len(text.rstrip()):
        return False
    return "-----END " not in text[spans[-1][0] :]


def _pem_lines(text: str) -> list[tuple[int, int, str]]:
    """A JSON array element after an open private key: its lines, through an END line."""
    end = _PEM_END.match(text)
    if end is not None:
        return [(0, end.end(), "private_key")]
    line = _PEM_LINE.fullmatch(text)
    return [(0, len(text), "private_key")] if line is not None and text.strip() else []


def redact_body(
    scanner: Scanner, body: bytes, content_type: str, names: frozenset[str]
) -> tuple[bytes, int]:
    """The body with the detectors `names`' findings replaced; (body, replacements)."""
    read = decode_body(body)
    text = read.text
    kind = body_kind(content_type)
    if kind == "json":
        try:
            load_json(text)
        except (ValueError, RecursionError):
            pass
        else:
            new, count = _redact_json(scanner, text, names)
            return (read.encode(new), count) if count else (body, 0)
    elif kind == "form":
        new, count = _redact_form(scanner, text, names)
        return (read.encode(new), count) if count else (body, 0)
    new, count = redact_text(scanner, text, names)
    return (read.encode(new), count) if count else (body, 0)


def _redact_form(scanner: Scanner, text: str, names: frozenset[str]) -> tuple[str, int]:
    """A form with each field holding a detection re-encoded, redacted; the others as
    they were."""
    count = 0
    parts = []
    for raw in text.split("&"):
        name, equals, value = raw.partition("=")
        if raw:
            plain_name, plain_value = unquote_plus(name), unquote_plus(value)
            fixes = []
            for plain, named in ((plain_name, None), (plain_value, plain_name)):
                spans, replaced, whole = _fixed(
                    plain, named, names, redaction_spans(scanner, plain, names, joined=True)
                )
                fixes.append(marker("generic_secret") if whole else _replace(plain, spans))
                count += replaced
            if fixes != [plain_name, plain_value]:
                raw = quote_plus(fixes[0]) + equals + quote_plus(fixes[1])
        parts.append(raw)
    return "&".join(parts), count
