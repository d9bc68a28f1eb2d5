"""What an approver is shown of a held request: its path, its query, the headers its approval
binds and the start of its body, with every credential in them masked.

The gateway makes it when it holds a request (``agentfirewall_proxy.pipeline.bind_request``,
``tf mcp wrap``); the control plane masks what a gateway sends once more before it stores it
(an older gateway sent them as they were): masking what is masked changes nothing.

Masked (:func:`masked`): what a secret detector finds (its JSON-escaped forms too, and where
it is joined to a word: ``x-amz-meta-sk-proj-…``, ``meta%2Dghp_…``, ``ghp_…_v1``), the value
after a name that says it is secret whatever it looks like (``"password": "..."``,
``access_token=...``, ``Authorization: Bearer ...``) and the password of a URL, each replaced
by a marker. A path and a query are masked as their upstream reads them too, decoded
(``ghp%5F…``); a path is shown as it was written but for its markers. When content
detectors fired on the request, its path and query are shown decoded, as they were
scanned, with every detection (any detector) replaced, and its body only as which detector
fired where (never the text). An action spec on which detectors fired is shown with every
detection in it replaced (:func:`shown_action`: its approval, ``GET /actions/{id}``).
A bound header whose name says credential (``Mcp-Session-Id``, ``X-Api-Key``, an S3
``...-customer-key``) is shown only by name; of a request to an API no connector names,
only headers HTTP defines as plain are shown, any other by name and length
(:func:`shown_headers`).
"""

from __future__ import annotations

import bisect
import functools
import itertools
import re
from collections.abc import Iterable, Sequence
from re import _parser as sre_parse  # type: ignore[attr-defined]
from typing import Any
from urllib.parse import unquote, unquote_plus

from agentfirewall.content.detectors import SECRETS, Detector
from agentfirewall.content.encoded import redact_encoded_value
from agentfirewall.content.locate import (
    Finding,
    describe,
    marker,
    redact_text,
    redact_value,
    redaction_spans,
)
from agentfirewall.content.scanner import default_scanner

__all__ = [
    "body_preview",
    "credential_name",
    "masked",
    "masked_field",
    "masked_query",
    "shown_action",
    "shown_headers",
    "shown_path",
    "shown_target",
    "shown_text",
]

#: How much of a body its approver is shown.
PREVIEW = 512
#: How many bound headers an approver may be shown (a gateway binds no more), and how much
#: of a header's name and value (``…`` last when cut).
HEADERS_SHOWN, HEADER_NAME, HEADER_VALUE = 100, 100, 512
#: How far into a body its preview may reach (long secrets before it shrink to markers).
_READ = 8 * PREVIEW
#: A stretch of a text masked: (start, end, what is shown instead).
_Mask = tuple[int, int, str]


def _longest(detectors: Iterable[Detector]) -> int:
    """The longest a match of `detectors` can be, of those with a bound (one without, a
    private key with its base64 run, matches as much of it as a cut text holds)."""
    widths: list[int] = [sre_parse.parse(d.pattern.pattern, d.pattern.flags).getwidth()[1]
                         for d in detectors]  # fmt: skip
    return max(w for w in widths if w < sre_parse.MAXWIDTH)


#: How much of a body is masked before its preview is cut from it: the preview's first
#: `_READ` characters and the longest a credential is (a JWT's, 24,584 characters), so
#: that a credential that begins in the preview lies whole in what is masked.
_MASKED = _READ + _longest(SECRETS)
_CREDENTIALS = frozenset(d.name for d in SECRETS)
_MASK = marker("generic_secret")
#: A name whose value is a credential whatever it looks like: one of these words in it
#: (`access_token`, `X-Auth`, `sessionId`), or one of `_SECRET_PARTS` (`dbPassword`, `apikey`).
_SECRET_WORDS = frozenset({"auth", "authorization", "cookie", "credential", "credentials",
                           "pass", "pwd", "session", "signature", "token"})  # fmt: skip
_SECRET_PARTS = ("accesskey", "apikey", "passphrase", "passwd", "password", "privatekey",
                 "secret", "accesstoken", "authtoken", "refreshtoken")  # fmt: skip
_WORDS = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")
_PLAIN = ("true", "false", "null")  # a value no credential is (`"private": true`)
#: A name and what assigns its value: `name = `, `name: `, `"name": `, `name=` (`Bearer `...)
_NAMED = re.compile(
    r"(?<![A-Za-z0-9_-])([A-Za-z][A-Za-z0-9_-]*)[\"']?[ \t]{0,3}(?:=>|[:=])[ \t]{0,3}"
    r"(?:(?:[Bb]earer|[Bb]asic|[Tt]oken)[ \t]+)?"
)
#: The value after it: quoted (a quote never closed, as in a text cut short, runs to the end
#: of the line) or bare.
_VALUE = re.compile(r"\"((?:[^\"\\\n]|\\.)*)\"?|'([^'\n]*)'?|([^\s\"'&#;,<>{}\[\]]+)")
_URL_PASSWORD = re.compile(r"(?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]*://[^\s/?#@:\"']*:"
                           r"([^\s/?#@\"']+)@")  # fmt: skip


_MARKER = re.compile(r"\[REDACTED:[a-z0-9_]*\]")
_ESCAPES = re.compile(r"(?:%[0-9A-Fa-f]{2})+")


@functools.lru_cache(maxsize=1024)
def credential_name(name: str) -> bool:
    """Whether `name` says its value is a credential whatever the value looks like: one of
    `_SECRET_WORDS` is a word of it (`access_token`, `X-Auth`, `sessionId`) or one of
    `_SECRET_PARTS` is in it (`dbPassword`, `apikey`). The rule :func:`masked` masks the
    value after a name by, and a decision record withholds a value by
    (``agentfirewall.policy.record``)."""
    name = _MARKER.sub(" ", name)  # (a marker's name, `github_token`, says nothing of a value)
    compact = re.sub(r"[^a-z0-9]", "", name.lower())
    words = {w.lower() for w in _WORDS.findall(name)}
    return not words.isdisjoint(_SECRET_WORDS) or any(p in compact for p in _SECRET_PARTS)


_secret_name = credential_name  # (the name the dashboard's tests compare its rule with)


def _kept(value: str, *, bare: bool) -> bool:
    """A value shown even after a secret name: empty, redacted already, a bare ``true``,
    ``false`` or ``null``."""
    return not value or value.startswith("[REDACTED:") or (bare and value in _PLAIN)


def _named_secrets(text: str) -> list[tuple[int, int]]:
    """Where in `text` the value after each name that says secret is. Linear: another
    name's value is not read, only looked into for names of its own (`?next=/x?token=..`)."""
    found: list[tuple[int, int]] = []
    search = 0
    while (named := _NAMED.search(text, search)) is not None:
        search = named.end()
        value = _VALUE.match(text, search) if credential_name(named[1]) else None
        group = value.lastindex if value is not None else None
        if value is None or group is None or _kept(value[group], bare=group == 3):
            continue
        found.append(value.span(group))
        search = found[-1][1]
    return found


def _url_passwords(text: str) -> list[tuple[int, int]]:
    return [match.span(1) for match in _URL_PASSWORD.finditer(text)]


def masked(text: str) -> str:
    """`text` as an approver may see it: what a secret detector finds (its JSON-escaped
    forms too, joined to a word too: ``scanner.unglued``), the value after a name that says
    it is secret whatever it looks like
    (`"password": "..."`, `access_token=...`, `Authorization: Bearer ...`) and the password
    of a URL, each replaced by a marker."""
    return _applied(text, _masks(text))


@functools.lru_cache(maxsize=1024)
def masked_field(text: str) -> str:
    """:func:`masked`, remembered: for the short texts of a record or a log line that repeat
    (a host, a refusal's reason)."""
    return masked(text)


def _masks(text: str) -> list[_Mask]:
    """What :func:`masked` replaces in `text`, in order: detections, then the passwords of
    URLs and the values of secret names, each pass over the text as the one before left it
    (mapped back to `text` by :func:`_merged`)."""
    masks = [
        (a, b, marker(name))
        for a, b, name in redaction_spans(default_scanner(), text, _CREDENTIALS, joined=True)
    ]
    for find in (_url_passwords, _named_secrets):
        shown = _applied(text, masks)
        masks = _merged(masks, shown, find(shown))
    return masks


def _applied(text: str, masks: Iterable[_Mask]) -> str:
    """`text` with what each of `masks` covers replaced by what it shows."""
    out: list[str] = []
    at = 0
    for start, end, shown in masks:
        out += [text[at:start], shown]
        at = end
    out.append(text[at:])
    return "".join(out)


def _merged(masks: list[_Mask], shown: str, found: list[tuple[int, int]]) -> list[_Mask]:
    """`masks` of a text and `found` (spans of `shown`, the text as `masks` leave it) as masks
    of the text: a span found reaching into a marker takes it in (what of the marker it does
    not cover is shown as it was, as a pass over `shown` leaves it)."""
    if not found:
        return masks
    places = [(a, b, True) for a, b in found]  # (start, end, found) in `shown`
    ends: list[int] = []  # where each marker ends in `shown`
    shifts = [0]  # and how far what follows it moved
    for start, end, mark in masks:
        at = start + shifts[-1]
        places.append((at, at + len(mark), False))
        ends.append(at + len(mark))
        shifts.append(shifts[-1] + len(mark) - (end - start))
    groups: list[tuple[int, int, list[_Mask]]] = []  # places that overlap, joined
    for start, end, is_found in sorted(places):
        if groups and start < groups[-1][1]:
            groups[-1] = (groups[-1][0], max(end, groups[-1][1]), groups[-1][2])
        else:
            groups.append((start, end, []))
        if is_found:
            groups[-1][2].append((start - groups[-1][0], end - groups[-1][0], _MASK))

    def source(at: int) -> int:  # (`at` is never inside a marker)
        return at - shifts[bisect.bisect_right(ends, at)]

    return [(source(at), source(to), _applied(shown[at:to], spans)) for at, to, spans in groups]


def masked_query(query: str) -> str:
    """`query` with each parameter whose name says secret, or whose name or value holds a
    credential once decoded, masked (shown decoded); the others as they were."""
    parts = []
    for part in query.split("&"):
        name, equals, value = part.partition("=")
        plain_name, plain = unquote_plus(name), unquote_plus(value)
        shown_name, shown = masked(plain_name), masked(plain)
        secret = plain not in ("", *_PLAIN) and _MARKER.fullmatch(plain) is None
        if equals and secret and credential_name(plain_name):
            part = f"{shown_name}={_MASK}"
        elif (shown_name, shown) != (plain_name, plain):
            part = shown_name + equals + shown
        parts.append(part)
    return "&".join(parts)


def shown_target(path: str, query: str, *, detected: bool = False) -> tuple[str, str]:
    """(path, query) of a request as its approver sees them: every credential masked;
    `detected` (content detectors fired on the request): shown decoded, as they were
    scanned, with every detection of any detector replaced too."""
    if not detected:
        return _masked_path(path), masked_query(query)
    scanner = default_scanner()
    path = masked(redact_text(scanner, unquote(path), scanner.names)[0])
    return path, masked(redact_text(scanner, unquote_plus(query), scanner.names)[0])


@functools.lru_cache(maxsize=1024)
def shown_path(target: str) -> str:
    """A request target (``path?query``, as a traffic record or a log line writes it) as its
    approver is shown it (:func:`shown_target`): every credential masked where it is written,
    the path's shape and the query's other fields kept. Remembered (targets repeat)."""
    path, mark, query = target.partition("?")
    path, query = shown_target(path, query)
    return path + mark + query


def _masked_path(path: str) -> str:
    """`path` :func:`masked`, and masked as its upstream reads it, decoded: what is found in
    it decoded is replaced where it is written (``ghp%5F…``), the rest shown as written."""
    path = masked(path)
    if "%" not in path:
        return path
    pieces: list[tuple[str, str]] = []  # (as written, as read), in turn: text, escapes
    at = 0
    for run in _ESCAPES.finditer(path):
        pieces += [(path[at : run.start()],) * 2, (run[0], unquote(run[0]))]
        at = run.end()
    pieces = [piece for piece in [*pieces, (path[at:],) * 2] if piece[0]]
    starts = list(itertools.accumulate((len(read) for _, read in pieces), initial=0))
    out: list[str] = []
    at = 0
    for start, end, shown in _masks("".join(read for _, read in pieces)):
        out += [_written(pieces, starts, at, start), shown]
        at = end
    out.append(_written(pieces, starts, at, starts[-1]))
    return "".join(out)


def _written(pieces: list[tuple[str, str]], starts: list[int], start: int, end: int) -> str:
    """What `pieces` read from `start` to `end` (`starts`: where each begins), as they write
    it; of a run of escapes a mask cuts, the rest escaped anew (the same once decoded)."""
    out: list[str] = []
    index = bisect.bisect_right(starts, start) - 1
    while index < len(pieces) and starts[index] < end:
        written, read = pieces[index]
        first, last = max(start - starts[index], 0), min(end - starts[index], len(read))
        if (first, last) == (0, len(read)):
            out.append(written)
        elif written == read:
            out.append(read[first:last])
        else:
            out.append("".join(f"%{byte:02X}" for byte in read[first:last].encode()))
        index += 1
    return "".join(out)


def shown_text(text: str) -> str:
    """`text` :func:`masked`, each character that is neither printable nor a newline or a
    tab shown as ``?``."""
    return _printable(masked(text))


def body_preview(body: bytes, findings: Sequence[Finding] = ()) -> str:
    """The start of a held request's body as its approver sees it: which detector fired
    where when any did (`findings`; never the text), else its first :data:`PREVIEW`
    characters with every credential masked (one that begins in them masked whole)."""
    if findings:
        return _printable(f"[content detections: {describe(findings)}]")
    text = body[: 4 * _MASKED].decode("utf-8", "replace")  # (a character: at most 4 bytes)
    # a text cut short: what of it a credential cut with it may begin in is not shown
    end = len(text) if len(text) < _MASKED else _READ
    masks = [(a, min(b, end), shown) for a, b, shown in _masks(text[:_MASKED]) if a < end]
    return _printable(_applied(text[:end], masks)[:PREVIEW])


#: Headers HTTP defines whose values carry no credential (conditions, ranges, caching,
#: content metadata, preferences, WebDAV's target): of a request to an API no connector
#: names, the only headers whose values its approver is shown (:func:`shown_headers`).
_PLAIN_HEADERS = frozenset({
    "cache-control", "content-disposition", "content-language", "content-location", "depth",
    "destination", "expires", "if-match", "if-modified-since", "if-none-match", "if-range",
    "if-unmodified-since", "origin", "overwrite", "pragma", "prefer", "range",
})  # fmt: skip
#: A header value shown as it is: a mask (what showing it again leaves).
_SHOWN_MASK = re.compile(r"\[REDACTED:[a-z0-9_]*\](?: \(length \d+\))?")
#: A run of the characters a random-looking credential is made of, and the generic secret
#: detector's test of whether it is one (long, letters and digits mixed, high entropy).
_RUN = re.compile(r"[A-Za-z0-9+/_.=~-]{16,}")
_RANDOM = next(d.check for d in SECRETS if d.name == "generic_secret" and d.check is not None)


def shown_headers(
    headers: Iterable[tuple[str, str]], *, declared: bool = False
) -> list[tuple[str, str]]:
    """Request headers (name, value) as their approver sees them, the name and the value cut
    to :data:`HEADER_NAME` and :data:`HEADER_VALUE` characters. Showing what is shown
    changes nothing.

    `declared`: these are headers their connector declares it binds (``x-amz-acl``,
    ``Stripe-Account``: what its approver must see), each :func:`shown_text` but one whose
    name says credential (or ends in ``key``): a marker. Else (a connector that binds every
    header, of an API no connector names: a header's name says nothing of what it carries,
    ``X-Honeycomb-Team``) only the value of one of `_PLAIN_HEADERS` that does not look
    random is shown; any other is a marker and its length (``[REDACTED:generic_secret]
    (length 56)``): its approver sees it is there, never what it is."""
    shown = []
    for name, value in headers:
        if not value or _SHOWN_MASK.fullmatch(value):
            text = value
        elif declared:
            secret = credential_name(name) or name.lower().endswith("key")
            text = _MASK if secret else shown_text(value)
        elif name.lower() in _PLAIN_HEADERS and not any(map(_RANDOM, _RUN.findall(value))):
            text = shown_text(value)
        else:
            text = f"{_MASK} (length {len(value)})"
        shown.append((_cut(_printable(name), HEADER_NAME), _cut(text, HEADER_VALUE)))
    return shown


def _cut(text: str, size: int) -> str:
    return text if len(text) <= size else text[: size - 1] + "…"


def shown_action(spec: dict[str, Any], encoded: Sequence[str]) -> dict[str, Any]:
    """An action spec (as a dict) as approvers and viewers see it when content detectors
    fired on its action: every detection (any detector) in its strings and keys replaced by
    its marker, inside the parameters its connector says carry base64 too (`encoded`:
    ``agentfirewall.connectors.encoded_parameters``), re-encoded."""
    scanner = default_scanner()
    inside = redact_encoded_value(scanner, spec, scanner.names, encoded)
    shown = redact_value(scanner, inside, scanner.names)
    assert isinstance(shown, dict)
    return shown


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() or c in "\n\t" else "?" for c in text)
