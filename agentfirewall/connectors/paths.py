"""Path normalisation: one raw request path into segments a route table can match.

The rule is: resolve exactly as an upstream would, or refuse. A segment may only ever be
read as *more* dangerous than the upstream reads it, never less. So:

- unreserved characters (``A-Z a-z 0-9 - . _ ~``) that are percent-encoded are decoded
  (``merg%65`` is ``merge``); every other escape stays encoded, upper-cased;
- ``%2F``, ``%5C`` (a slash or backslash hidden in a segment), encoded controls, malformed
  escapes, raw backslashes, NUL, ``;`` parameters, ``#``, spaces and non-ASCII characters
  are refused: upstreams disagree on what they mean;
- ``.`` and ``..`` segments (raw or encoded) and empty segments (``//``) are refused;
- one trailing slash is dropped (``/pulls/1/merge/`` is ``/pulls/1/merge``).

Literals are matched case-insensitively by the matcher, and a last segment with a format
suffix (``merge.json``, ``merge.``) is retried without it when nothing else matches.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

from agentfirewall.errors import ConnectorError

__all__ = ["decode_segment", "split_path"]

# pchar (RFC 3986) without ";" (path parameters), plus "/" as the separator.
_SAFE_RE = re.compile(r"/[A-Za-z0-9\-._~!$&'()*+,=:@%/]*")
_UNSAFE_RE = re.compile(r"[^A-Za-z0-9\-._~!$&'()*+,=:@%/]")
_ESCAPE_RE = re.compile(r"%(..)?")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_REFUSED_ESCAPES = frozenset({0x2F, 0x5C, 0x7F, *range(0x20)})
_SEPARATORS = frozenset({0x2F, 0x5C})
_HEX = frozenset("0123456789abcdefABCDEF")


def split_path(
    raw: str, *, connector: str = "", encoded_separators: bool = False
) -> tuple[str, ...]:
    """Split a raw absolute path into normalised segments or raise ConnectorError.

    `encoded_separators`: ``%2F`` and ``%5C`` stay encoded inside their segment rather than
    being refused, for an upstream known to route on the path as sent and to decode a
    segment's value only afterwards (AWS's REST services: ``awsroutes``).
    """
    if not _SAFE_RE.fullmatch(raw):
        at = _UNSAFE_RE.search(raw, 1) if raw.startswith("/") else None
        where = f"`{_show(at[0])}` at offset {at.start()}" if at else "a path not starting with `/`"
        raise ConnectorError(f"refused path: unexpected character {where}", connector=connector)
    if "%" in raw:
        raw = _ESCAPE_RE.sub(lambda m: _decode_escape(m, connector, encoded_separators), raw)
    body = raw[1:-1] if len(raw) > 1 and raw[-1] == "/" else raw[1:]
    segments = body.split("/")
    if "//" in raw or "." in segments or ".." in segments:
        index = next((i for i, s in enumerate(segments) if s in ("", ".", "..")), 0)
        raise ConnectorError(
            f"refused path: empty or dot segment (segment {index + 1})", connector=connector
        )
    return tuple(segments) if body else ()


def _decode_escape(match: re.Match[str], connector: str, separators: bool) -> str:
    hexpair = match.group(1)
    if hexpair is None or not (hexpair[0] in _HEX and hexpair[1] in _HEX):
        raise ConnectorError(
            f"refused path: malformed escape at offset {match.start()}", connector=connector
        )
    code = int(hexpair, 16)
    if separators and code in _SEPARATORS:
        return f"%{hexpair.upper()}"
    if code in _REFUSED_ESCAPES:
        raise ConnectorError(
            f"refused path: encoded `/`, `\\` or control character (`%{hexpair}` at offset "
            f"{match.start()})",
            connector=connector,
        )
    char = chr(code)
    return char if char in _UNRESERVED else f"%{hexpair.upper()}"


def decode_segment(segment: str, *, connector: str = "") -> str:
    """Fully percent-decode a segment value (strict UTF-8) for use as a parameter."""
    if "%" not in segment:
        return segment
    try:
        return unquote(segment, errors="strict")
    except UnicodeDecodeError:
        raise ConnectorError(
            "refused path segment: its escapes are not UTF-8", connector=connector
        ) from None


def _show(text: str) -> str:
    """A printable rendering of one untrusted character for error messages."""
    shown = text.encode("ascii", "backslashreplace").decode("ascii")
    return "".join(c if c.isprintable() else "?" for c in shown)
