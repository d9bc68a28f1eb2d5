"""Reading request bodies and query strings, strictly and without surprises.

JSON is decoded as strict UTF-8 (no BOM, no UTF-16 guessing) and refuses ``NaN`` and
``Infinity``; depth and number-size blow-ups become :class:`ConnectorError`. A body
prefix (``body_complete=False``) yields only the top-level object members that are wholly
inside it. Forms and query strings are ``&``-separated ``key=value`` pairs, decoded with
``+`` as space and strict UTF-8; a truncated form loses its last, partial pair.
``multipart/form-data`` bodies give their text fields the same way (RFC 7578, strict).
"""

from __future__ import annotations

import codecs
import json
import math
import re
from collections.abc import Callable
from urllib.parse import unquote_plus

from agentfirewall.errors import ConnectorError

__all__ = [
    "FormData",
    "multipart_boundary",
    "parse_form",
    "parse_json",
    "parse_json_prefix",
    "parse_multipart",
]

FormData = dict[str, tuple[str, ...]]

_WHITESPACE = " \t\n\r"


def _refuse_constant(name: str) -> object:
    raise ValueError(f"`{name}` is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (math.inf, -math.inf):
        raise ValueError("number out of range")
    return value


def _unique_pairs(pairs: list[tuple[str, object]]) -> dict[str, object]:
    found: dict[str, object] = {}
    for key, value in pairs:
        if key in found:
            raise ValueError(f"duplicate key `{key[:80]}`")
        found[key] = value
    return found


_DECODER = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_finite_float)
#: The same, refusing a key given twice in one object (parsers disagree on which counts).
_UNIQUE_DECODER = json.JSONDecoder(
    parse_constant=_refuse_constant, parse_float=_finite_float, object_pairs_hook=_unique_pairs
)


def _text(body: bytes, *, complete: bool, connector: str) -> str:
    if body.startswith(codecs.BOM_UTF8):
        raise ConnectorError("invalid JSON body: byte order mark", connector=connector)
    try:
        if complete:
            return body.decode("utf-8")
        return codecs.getincrementaldecoder("utf-8")("strict").decode(body, final=False)
    except UnicodeDecodeError:
        raise ConnectorError("invalid JSON body: not UTF-8", connector=connector) from None


_SURROGATE_ESCAPE_RE = re.compile(r"\\u[dD][89a-fA-F]")


def _no_lone_surrogates(text: str, data: object, connector: str) -> None:
    """``"\\ud800"`` decodes to a string no UTF-8 can carry (the action hash would fail):
    refuse it. Only checked when the text has such an escape; valid pairs are fine."""
    if "\\u" in text and _SURROGATE_ESCAPE_RE.search(text):
        try:
            json.dumps(data, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise ConnectorError("invalid JSON body: lone surrogate", connector=connector) from None


def parse_json(body: bytes, *, connector: str = "", unique: bool = False) -> object:
    """The whole body as JSON; None for an empty body; ConnectorError when invalid
    (`unique`: also when an object has a key twice)."""
    text = _text(body, complete=True, connector=connector)
    try:
        data = (_UNIQUE_DECODER if unique else _DECODER).decode(text)
        _no_lone_surrogates(text, data, connector)
        return data
    except (ValueError, RecursionError) as exc:
        if not text.strip(_WHITESPACE):
            return None
        reason = str(exc).split(":", 1)[0][:80]
        raise ConnectorError(f"invalid JSON body: {reason}", connector=connector) from None


def parse_json_prefix(body: bytes, *, connector: str = "") -> dict[str, object]:
    """Top-level members of a JSON object that lie wholly inside a body prefix.

    Raises ConnectorError when the prefix already shows the body is not a JSON object.
    A key seen twice keeps its last value (as most JSON parsers do).
    """
    text = _text(body, complete=False, connector=connector)
    members: dict[str, object] = {}
    index = _skip(text, 0)
    if index == len(text):
        return members
    if text[index] != "{":
        raise ConnectorError("invalid JSON body: not an object", connector=connector)
    index += 1
    try:
        while True:
            index = _skip(text, index)
            if index >= len(text) or text[index] == "}":
                return members
            key, index = _DECODER.raw_decode(text, index)
            index = _skip(text, index)
            if not isinstance(key, str) or index >= len(text) or text[index] != ":":
                return _ended(members, index, len(text), connector)
            value, index = _DECODER.raw_decode(text, _skip(text, index + 1))
            if _NUMBER_TAIL.fullmatch(text, index) and _is_number(value):
                return members  # `1.` or `1e+` at the very end: the number goes on past the prefix
            index = _skip(text, index)
            if index >= len(text):
                return members  # a number at the very end may go on past the prefix
            members[key] = value
            if text[index] == "}":
                return members
            if text[index] != ",":
                return _ended(members, index, len(text), connector)
            index += 1
    except (ValueError, RecursionError):
        # the value runs past the prefix (or is broken): keep what was whole
        pass
    finally:
        _no_lone_surrogates(text, members, connector)
    return members


#: What may follow a decoded number when the prefix cut it short (`1.`, `1e`, `1E+`).
_NUMBER_TAIL = re.compile(r"\.|[eE][+-]?|\.[0-9]*[eE][+-]?")


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _ended(members: dict[str, object], index: int, size: int, connector: str) -> dict[str, object]:
    if index < size:
        raise ConnectorError("invalid JSON body: unexpected character", connector=connector)
    return members


def _skip(text: str, index: int) -> int:
    while index < len(text) and text[index] in _WHITESPACE:
        index += 1
    return index


def parse_form(data: bytes | str, *, complete: bool = True, connector: str = "") -> FormData:
    """``a=1&b=2&a=3`` into ``{"a": ("1", "3"), "b": ("2",)}`` (strict UTF-8)."""
    if isinstance(data, bytes):
        try:
            data = data.decode("ascii")
        except UnicodeDecodeError:
            raise ConnectorError(
                "invalid form body: raw non-ASCII bytes", connector=connector
            ) from None
    pairs = data.split("&")
    if not complete:
        pairs.pop()
    form: dict[str, list[str]] = {}
    for pair in pairs:
        if not pair:
            continue
        key, _, value = pair.partition("=")
        try:
            name = unquote_plus(key, errors="strict")
            text = unquote_plus(value, errors="strict")
        except UnicodeDecodeError:
            raise ConnectorError("invalid form encoding: not UTF-8", connector=connector) from None
        form.setdefault(name, []).append(text)
    return {name: tuple(values) for name, values in form.items()}


_MEDIA_TYPE_RE = re.compile(r"[A-Za-z0-9!#$&^_.+-]+/[A-Za-z0-9!#$&^_.+-]+")
#: One ``; name=value`` (a token, or a quoted string without escapes), spaces around.
_PARAM_RE = re.compile(r"""\s*;\s*([!#$%&'*+.^_`|~0-9A-Za-z-]+)=("[^"\\]*"|[^;\s"]*)\s*""")
#: RFC 2046's boundary characters (1-70; a space only inside, never last).
_BOUNDARY_VALUE_RE = re.compile(r"[0-9A-Za-z'()+_,./:=? -]{0,69}[0-9A-Za-z'()+_,./:=?-]")
_CHARSET_RE = re.compile(r"""charset\s*=\s*"?([^";,\s]*)""", re.I)
_UTF8_NAMES = frozenset({"utf-8", "utf8", "us-ascii"})
#: One ``; key=value`` of a Content-Disposition (quoted values without escapes).
_DISPOSITION_RE = re.compile(
    rb'[ \t]*;[ \t]*([a-z*]+)=(?:"([^"\\\r\n]*)"|([^;\s"\\]+))[ \t]*', re.I
)


def refuse_foreign_charset(content_type: str | bytes | None, connector: str = "") -> None:
    """Refuse a body declared in another charset than UTF-8 (``charset=utf-7``): it is read
    as UTF-8 here, and an upstream that honours the charset (the MCP TypeScript SDK decodes
    any ``utf-*``) would read other fields, another tool name, from the same bytes."""
    if not content_type:
        return
    text = content_type.decode("latin-1") if isinstance(content_type, bytes) else content_type
    foreign = _foreign_charset(text)
    if foreign is not None:
        raise ConnectorError(
            f"body in charset `{foreign[:40]}`: only UTF-8 bodies are read "
            "(send it as UTF-8, or without a charset)",
            connector=connector,
        )


def _foreign_charset(content_type: str) -> str | None:
    """The first ``charset`` of a content type that is not UTF-8 (or US-ASCII), else None."""
    if "charset" not in content_type.lower():
        return None
    for found in _CHARSET_RE.finditer(content_type):
        if found.group(1).lower() not in _UTF8_NAMES:
            return found.group(1)
    return None


def multipart_boundary(content_type: str, *, connector: str = "") -> bytes:
    """The ``boundary`` parameter of a ``multipart/form-data`` content type: exactly one,
    read as a parameter. Two (``BOUNDARY=a; boundary=b``: parsers disagree on which one
    counts), one inside another parameter's name (``xboundary=a``), or a malformed
    parameter list is refused."""
    params = _media_params(content_type)
    if params is None:
        raise ConnectorError("invalid multipart content type", connector=connector)
    named = [value for name, value in params if "boundary" in name]
    if len(named) != 1 or not any(name == "boundary" for name, _ in params):
        what = "no boundary" if not named else "the boundary given twice or ambiguously"
        raise ConnectorError(f"invalid multipart body: {what}", connector=connector)
    value = named[0]
    if not _BOUNDARY_VALUE_RE.fullmatch(value):
        raise ConnectorError("invalid multipart body: malformed boundary", connector=connector)
    return value.encode("ascii")


def _media_params(content_type: str) -> list[tuple[str, str]] | None:
    """The ``; name=value`` parameters of a media type (names lower-cased, quotes
    removed), or None when the text is not ``type/subtype`` and such parameters."""
    head, _, rest = content_type.partition(";")
    if not _MEDIA_TYPE_RE.fullmatch(head.strip()):
        return None
    params: list[tuple[str, str]] = []
    at = 0
    rest = ";" + rest if rest else ""
    while at < len(rest):
        found = _PARAM_RE.match(rest, at)
        if found is None:
            return None
        value = found.group(2)
        if value.startswith('"'):
            value = value[1:-1]
        params.append((found.group(1).lower(), value))
        at = found.end()
    return params


def parse_multipart(
    body: bytes, boundary: bytes, *, complete: bool = True, connector: str = ""
) -> FormData:
    """The text fields of a ``multipart/form-data`` body (RFC 7578), like a form.

    Strict: the body starts with its first delimiter (no preamble), every part has a
    ``Content-Disposition: form-data; name=...`` header, text values are UTF-8. File parts
    (with a ``filename``) are not values; a file and a text field of the same name are
    refused (upstreams disagree on which one they read). A prefix keeps whole parts only.
    """

    def bad(what: str) -> ConnectorError:
        return ConnectorError(f"invalid multipart body: {what}", connector=connector)

    first = b"--" + boundary
    if not body.startswith(first + b"\r\n"):
        if not complete and first.startswith(body[: len(first)]):
            return {}
        raise bad("does not start with its boundary")
    delimiter = b"\r\n" + first
    fields: dict[str, list[str]] = {}
    files: set[str] = set()
    at = len(first) + 2
    while True:
        end = body.find(delimiter, at)
        if end < 0:
            if complete:
                raise bad("no closing boundary")
            break
        part = body[at:end]
        if first in part:  # a delimiter ended by a bare LF or CR: parsers disagree on it
            raise bad("the boundary inside a part (a delimiter line must end with CRLF)")
        name, value = _part(part, bad)
        if value is None:
            files.add(name)
        else:
            fields.setdefault(name, []).append(value)
        after = body[end + len(delimiter) : end + len(delimiter) + 2]
        if after == b"--":
            if complete and body[end + len(delimiter) + 2 :].strip(b"\r\n"):
                raise bad("data after the closing boundary")
            break
        if after != b"\r\n":
            if not complete and len(after) < 2:
                break
            raise bad("malformed boundary line")
        at = end + len(delimiter) + 2
    if files & set(fields):
        raise bad(f"`{sorted(files & set(fields))[0][:60]}` is both a file and a field")
    return {name: tuple(values) for name, values in fields.items()}


def _part(part: bytes, bad: Callable[[str], ConnectorError]) -> tuple[str, str | None]:
    head, sep, content = part.partition(b"\r\n\r\n")
    if not sep:
        head, content = (part[2:], b"") if part.startswith(b"\r\n") else (part, b"")
        if head:
            raise bad("part without a blank line after its headers")
    disposition = None
    for line in head.split(b"\r\n"):
        key, colon, value = line.partition(b":")
        if not colon:
            raise bad("malformed part header")
        if key.strip().lower() == b"content-disposition":
            if disposition is not None:
                raise bad("two content-disposition headers in one part")
            disposition = value.strip()
        elif key.strip().lower() == b"content-transfer-encoding":
            raise bad("content-transfer-encoding is not supported")
        elif (
            key.strip().lower() == b"content-type"
            and _foreign_charset(value.decode("latin-1")) is not None
        ):
            raise bad("a part in another charset than UTF-8")
    if disposition is None or not disposition.lower().startswith(b"form-data"):
        raise bad("part without content-disposition: form-data")
    params: dict[bytes, bytes] = {}
    rest, at = disposition[len(b"form-data") :], 0
    while at < len(rest):
        match = _DISPOSITION_RE.match(rest, at)
        if match is None:
            raise bad("malformed content-disposition")
        at = match.end()
        key = match.group(1).lower()
        if key in params:
            raise bad(f"duplicate `{key.decode()}` in content-disposition")
        params[key] = match.group(2) if match.group(2) is not None else match.group(3)
    if b"name" not in params or b"filename*" in params:
        raise bad("part without a plain name")
    try:
        name = params[b"name"].decode("utf-8")
        if b"filename" in params:
            return name, None
        return name, content.decode("utf-8")
    except UnicodeDecodeError:
        raise bad("not UTF-8") from None
