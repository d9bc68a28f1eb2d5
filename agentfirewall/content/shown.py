"""What an approver is shown of a held request: its path, its query and the start of its
body, with every credential in them masked.

The gateway makes it when it holds a request (``agentfirewall_proxy.pipeline.bind_request``,
``tf mcp wrap``); the control plane masks what a gateway sends once more before it stores it
(an older gateway sent them as they were): masking what is masked changes nothing.

Masked (:func:`masked`): what a secret detector finds (its JSON-escaped forms too), the value
after a name that says it is secret whatever it looks like (``"password": "..."``,
``access_token=...``, ``Authorization: Bearer ...``) and the password of a URL, each replaced
by a marker. When content detectors fired on the request, its path and query are shown
decoded, as they were scanned, with every detection (any detector) replaced, and its body
only as which detector fired where (never the text).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from urllib.parse import unquote, unquote_plus

from agentfirewall.content.detectors import SECRETS
from agentfirewall.content.locate import Finding, describe, marker, redact_text
from agentfirewall.content.scanner import default_scanner

__all__ = ["body_preview", "masked", "masked_query", "shown_target", "shown_text"]

#: How much of a body its approver is shown.
PREVIEW = 512
#: How much of a body is masked before its preview is cut from it: a credential that begins
#: in the preview is masked whole.
_MASKED = 8 * PREVIEW
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


@functools.lru_cache(maxsize=1024)
def _secret_name(name: str) -> bool:
    name = _MARKER.sub(" ", name)  # (a marker's name, `github_token`, says nothing of a value)
    compact = re.sub(r"[^a-z0-9]", "", name.lower())
    words = {w.lower() for w in _WORDS.findall(name)}
    return not words.isdisjoint(_SECRET_WORDS) or any(p in compact for p in _SECRET_PARTS)


def _kept(value: str, *, bare: bool) -> bool:
    """A value shown even after a secret name: empty, redacted already, a bare ``true``,
    ``false`` or ``null``."""
    return not value or value.startswith("[REDACTED:") or (bare and value in _PLAIN)


def _named_secrets(text: str) -> str:
    """`text` with the value after each name that says secret replaced. Linear: another
    name's value is not read, only looked into for names of its own (`?next=/x?token=..`)."""
    out: list[str] = []
    at = search = 0
    while (named := _NAMED.search(text, search)) is not None:
        search = named.end()
        value = _VALUE.match(text, search) if _secret_name(named[1]) else None
        group = value.lastindex if value is not None else None
        if value is None or group is None or _kept(value[group], bare=group == 3):
            continue
        start, search = value.span(group)
        out += [text[at:start], _MASK]
        at = search
    out.append(text[at:])
    return "".join(out)


def masked(text: str) -> str:
    """`text` as an approver may see it: what a secret detector finds (its JSON-escaped
    forms too), the value after a name that says it is secret whatever it looks like
    (`"password": "..."`, `access_token=...`, `Authorization: Bearer ...`) and the password
    of a URL, each replaced by a marker."""
    text = redact_text(default_scanner(), text, _CREDENTIALS)[0]
    text = _URL_PASSWORD.sub(lambda m: m[0][: m.start(1) - m.start()] + _MASK + "@", text)
    return _named_secrets(text)


def masked_query(query: str) -> str:
    """`query` with each parameter whose name says secret, or whose name or value holds a
    credential once decoded, masked (shown decoded); the others as they were."""
    parts = []
    for part in query.split("&"):
        name, equals, value = part.partition("=")
        plain_name, plain = unquote_plus(name), unquote_plus(value)
        shown_name, shown = masked(plain_name), masked(plain)
        secret = plain not in ("", *_PLAIN) and _MARKER.fullmatch(plain) is None
        if equals and secret and _secret_name(plain_name):
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
        return masked(path), masked_query(query)
    scanner = default_scanner()
    path = masked(redact_text(scanner, unquote(path), scanner.names)[0])
    return path, masked(redact_text(scanner, unquote_plus(query), scanner.names)[0])


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
    return _printable(masked(body[:_MASKED].decode("utf-8", "replace"))[:PREVIEW])


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() or c in "\n\t" else "?" for c in text)
