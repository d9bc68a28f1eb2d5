"""Where in a request or response a detector fired, and redaction of what it found.

A message is cut into named pieces of text — ``url.path``, ``query.<name>``,
``header.<name>``, and the body: ``body.<json.path>`` for each string of a JSON body,
``form.<name>`` for a form, ``body`` for anything else (text, multipart, binary) — and
the pieces are scanned together (joined by a NUL, one scanner call). A
:class:`Finding` names the detector and the piece, with the offset and length inside it:
never the text itself.

A string whose own name says it is secret (``"api_key": "..."``, ``X-Api-Key``,
``password=...``) and that looks random is a ``generic_secret`` even without a
``name = value`` pattern in the text.

:func:`redact_body` replaces what the named detectors found by ``[REDACTED:<name>]``: in
each string of a JSON body (re-serialized compactly), in each form value (re-encoded), or
in the text of any other body. The caller re-frames the body (its length changes).
"""

from __future__ import annotations

import bisect
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlencode

from agentfirewall.content.detectors import DETECTORS
from agentfirewall.content.scanner import Hit, Scanner

__all__ = [
    "Finding",
    "Piece",
    "body_pieces",
    "content_attributes",
    "describe",
    "marker",
    "redact_body",
    "redact_text",
    "request_pieces",
    "scan_pieces",
    "value_pieces",
]

Piece = tuple[str, str]  # (location, text)
_SEPARATOR = "\x00"
_GENERIC = DETECTORS["generic_secret"][0]
_CONTEXT_RE = re.compile("key|secret|token|passw|credential|auth|private|session|cookie", re.I)


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


def _secret_name(name: str) -> bool:
    return _CONTEXT_RE.search(name) is not None


def _generic(text: str) -> bool:
    return _GENERIC.check is not None and _GENERIC.check(text.strip())


def scan_pieces(scanner: Scanner, pieces: Iterable[Piece]) -> list[Finding]:
    """Scan every piece (one scanner call) and say where each hit is."""
    items = [p for p in pieces if p[1]]
    if not items:
        return []
    joined = _SEPARATOR.join([text for _, text in items])
    hits = scanner.scan(joined)
    findings: list[Finding] = []
    if hits:
        starts: list[int] = []
        at = 0
        for _, text in items:
            starts.append(at)
            at += len(text) + 1
        findings = [_finding(hit, items, starts) for hit in hits]
    if "generic_secret" in scanner.names:
        named = {f.location for f in findings if f.kind == "secret"}
        for location, text in items:
            if len(text) < 16 or location in named:
                continue
            if _secret_name(location.rsplit(".", 1)[-1]) and _generic(text):
                findings.append(Finding("generic_secret", "secret", 0.6, location, 0, len(text)))
    return findings


def _finding(hit: Hit, items: list[Piece], starts: list[int]) -> Finding:
    index = bisect.bisect_right(starts, hit.start) - 1
    offset = hit.start - starts[index]
    end = min(hit.end - starts[index], len(items[index][1]))
    return Finding(hit.detector, hit.kind, hit.confidence, items[index][0], offset, end - offset)


def _json_strings(value: object, path: str) -> Iterator[Piece]:
    stack: list[tuple[object, str]] = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            yield where, item
        elif isinstance(item, dict):
            stack.extend((v, f"{where}.{k}") for k, v in item.items())
        elif isinstance(item, list):
            stack.extend((v, f"{where}.{i}") for i, v in enumerate(item))


def value_pieces(value: object, path: str) -> list[Piece]:
    """Each string inside a JSON value, named by its path (``parameters.body.text``)."""
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


def _kind(content_type: str) -> str:
    media = content_type.split(";", 1)[0].strip().lower()
    if media == "application/json" or media.endswith("+json"):
        return "json"
    if media == "application/x-www-form-urlencoded":
        return "form"
    return "text"


def body_pieces(body: bytes, content_type: str) -> list[Piece]:
    """The body's pieces (see the module docstring); text of undecodable bytes as is."""
    if not body:
        return []
    kind = _kind(content_type)
    text = body.decode("utf-8", "surrogateescape")
    if kind == "json":
        try:
            return list(_json_strings(json.loads(text), "body"))
        except (ValueError, RecursionError):
            pass
    elif kind == "form":
        return [(f"form.{k}", v) for k, v in parse_qsl(text, keep_blank_values=True)]
    return [("body", text)]


def request_pieces(
    path: str,
    query: str,
    headers: Iterable[tuple[str, str]],
    skip_headers: Iterable[str] = (),
) -> list[Piece]:
    """URL path, query parameters and headers (but `skip_headers`, lower-case names)."""
    skip = frozenset(skip_headers)
    pieces: list[Piece] = [("url.path", unquote(path))]
    pieces += [(f"query.{k}", v) for k, v in parse_qsl(query, keep_blank_values=True)]
    pieces += [(f"header.{k.lower()}", v) for k, v in headers if k.lower() not in skip]
    return pieces


def describe(findings: Iterable[Finding], limit: int = 8) -> str:
    """``aws_access_key at body.text+12; ...`` (names and places, never the text)."""
    items = list(findings)
    text = "; ".join(f.describe() for f in items[:limit])
    return text + (f"; and {len(items) - limit} more" if len(items) > limit else "")


def redact_text(scanner: Scanner, text: str, names: frozenset[str]) -> tuple[str, int]:
    """`text` with every hit of the detectors `names` replaced; (text, replacements)."""
    hits = [h for h in scanner.scan(text) if h.detector in names]
    if not hits:
        return text, 0
    out: list[str] = []
    at = 0
    for hit in hits:
        if hit.start < at:  # overlaps the previous one: already covered
            continue
        out += [text[at : hit.start], marker(hit.detector)]
        at = hit.end
    out.append(text[at:])
    return "".join(out), len(hits)


def _redact_json(value: object, fix: Callable[[str, str], str], path: str) -> object:
    if isinstance(value, str):
        return fix(path, value)
    if isinstance(value, dict):
        return {k: _redact_json(v, fix, f"{path}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_redact_json(v, fix, f"{path}.{i}") for i, v in enumerate(value)]
    return value


def redact_body(
    scanner: Scanner, body: bytes, content_type: str, names: frozenset[str]
) -> tuple[bytes, int]:
    """The body with the detectors `names`' findings replaced; (body, replacements)."""
    count = 0

    def fix(location: str, text: str) -> str:
        nonlocal count
        new, found = redact_text(scanner, text, names)
        leaf = location.rsplit(".", 1)[-1]
        # a secret-named value that still looks like a secret (none found in it, or what
        # is left around the markers, e.g. `AKIA…:0` whose key id alone was replaced) goes
        # whole: a rescan must find nothing
        if "generic_secret" in names and _secret_name(leaf) and _generic(new):
            new, found = marker("generic_secret"), found + 1
        count += found
        return new

    kind = _kind(content_type)
    text = body.decode("utf-8", "surrogateescape")
    if kind == "json":
        try:
            data = json.loads(text)
        except (ValueError, RecursionError):
            pass
        else:
            fixed = _redact_json(data, fix, "body")
            if not count:
                return body, 0
            return json.dumps(fixed, ensure_ascii=False, separators=(",", ":")).encode(), count
    elif kind == "form":
        pairs = [(k, fix(f"form.{k}", v)) for k, v in parse_qsl(text, keep_blank_values=True)]
        return (urlencode(pairs).encode("ascii"), count) if count else (body, 0)
    new = fix("body", text)
    return (new.encode("utf-8", "surrogateescape"), count) if count else (body, 0)
