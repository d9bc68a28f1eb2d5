"""A JSON scanner for large bodies: every byte checked, only the wanted members built.

The gateway must find a field anywhere in a body of up to 16 MiB (``"model"`` after
megabytes of ``messages``). Building the whole document with :mod:`json` would hold
several times the body in Python objects; :func:`scan_json_object` instead walks the
bytes with a few compiled regular expressions and an explicit stack (no recursion):
it validates the whole body as strict JSON (UTF-8, no BOM, no ``NaN``, every number a
finite float or an int :mod:`json` can read), and builds only the top-level members a
connector names (`keep`) plus small scalar members (any top-level string, number,
boolean or null of up to 4 KiB, so checks such as method overrides still see them).
Other values are skipped without being decoded: runs of scalars and of small flat
containers in one regular-expression call each, a run of larger containers (chat
messages) one C decode per element, each dropped at once.

With ``complete=False`` the body is a prefix: members wholly inside it are returned,
and a value cut by the end of the prefix is left out (a number at the very end too,
since it may go on). :func:`read_json_object` picks :mod:`json` for small bodies (faster
there) and the scanner for large ones; both give the same members (tested).
"""

from __future__ import annotations

import codecs
import contextlib
import re
from collections.abc import Collection

from agentfirewall.connectors.bodies import (
    _DECODER,
    _SURROGATE_ESCAPE_RE,
    _no_lone_surrogates,
    parse_json,
    parse_json_prefix,
)
from agentfirewall.errors import ConnectorError

__all__ = ["SCAN_THRESHOLD", "read_json_object", "scan_json_object"]

#: Bodies up to this size are parsed whole with :mod:`json` (C speed, small objects).
SCAN_THRESHOLD = 256 * 1024
#: Top-level scalars up to this many bytes are kept even when no one named them.
_SMALL_SCALAR = 4096

_WS = r"[ \t\n\r]*+"
_STRING = r'"[^"\\\x00-\x1f]*+(?:\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4})[^"\\\x00-\x1f]*+)*+"'
_NUMBER = r"-?(?:0|[1-9][0-9]*+)(?:\.[0-9]++)?+(?:[eE][+-]?[0-9]++)?+(?![0-9])"
_SCALAR = r"(?>" + _STRING + r"|" + _NUMBER + r"|true|false|null)"
#: A number skipped without being decoded: at most 200 integer digits and a two-digit
#: exponent, so always a finite float or a short int (below 1e299). Any other number is
#: decoded (`_checked_number`): ``1e999`` or an int of 5,000 digits is refused, as
#: :mod:`json` refuses it, wherever it sits.
_SAFE_NUMBER = r"-?(?:0|[1-9][0-9]{0,199}+)(?:\.[0-9]++)?+(?:[eE][+-]?[0-9]{1,2}+)?+(?![0-9])"
_SAFE_SCALAR = r"(?>" + _STRING + r"|" + _SAFE_NUMBER + r"|true|false|null)"


def _string_of_at_most(count: int) -> str:
    """A JSON string of at most `count` characters or escapes (what `_STRING` matches)."""
    return r'"(?:[^"\\\x00-\x1f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4})){0,' + str(count) + '}+"'


#: A small flat container (strings of up to 64 characters): ``{}``, ``{"role":"user"}``, ``[1,2]``.
_SHORT_STRING = _string_of_at_most(64)
_SHORT_SCALAR = r"(?>" + _SHORT_STRING + r"|" + _SAFE_NUMBER + r"|true|false|null)"
_SHORT_MEMBER = _SHORT_STRING + _WS + r":" + _WS + _SHORT_SCALAR + _WS
_SHORT_ELEMENT = _SHORT_SCALAR + _WS
_FLAT_OBJECT = r"\{" + _WS + r"(?:" + _SHORT_MEMBER + r"(?:," + _WS + _SHORT_MEMBER + r")*+)?+\}"
_FLAT_ARRAY = r"\[" + _WS + r"(?:" + _SHORT_ELEMENT + r"(?:," + _WS + _SHORT_ELEMENT + r")*+)?+\]"
#: What a run skips without decoding: a plainly finite scalar or a small flat container.
_SKIPPED = r"(?>" + _SAFE_SCALAR + r"|" + _FLAT_OBJECT + r"|" + _FLAT_ARRAY + r")"
_TOKEN = re.compile(
    _WS + r"(?:(" + _STRING + r")|(" + _NUMBER + r")|(true|false|null)|([\[\]{},:]))"
)
_SCALAR_RE = re.compile(_SCALAR)
_SAFE_NUMBER_RE = re.compile(_SAFE_NUMBER)
_SKIP_WS = re.compile(_WS)
_ITEM = re.compile(_WS + _SAFE_SCALAR)
#: Runs of scalar or small flat elements / members, consumed in one call (long arrays of
#: numbers, of ``{}``).
_ARRAY_RUN = re.compile(r"(?:" + _WS + _SKIPPED + _WS + r",)++")
_OBJECT_RUN = re.compile(r"(?:" + _WS + _STRING + _WS + r":" + _WS + _SKIPPED + _WS + r",)++")
#: A run of top-level members whose values are small scalars, each kept (`_SMALL_SCALAR`):
#: strings of at most 682 characters or escapes (at most 4,094 characters of text), numbers
#: of at most 200 integer and 3,000 fraction digits. Decoded together, in one C call.
_SMALL_STRING = _string_of_at_most(682)
_SMALL_NUMBER = (
    r"-?(?:0|[1-9][0-9]{0,199}+)(?:\.[0-9]{1,3000}+)?+(?:[eE][+-]?[0-9]{1,2}+)?+(?![0-9])"
)
_SMALL_MEMBERS = re.compile(
    r"(?:" + _WS + _STRING + _WS + r":" + _WS
    + r"(?>" + _SMALL_STRING + r"|" + _SMALL_NUMBER + r"|true|false|null)" + _WS + r",)++"
)  # fmt: skip
#: After an array's container element: a comma and another container element.
_NEXT_CONTAINER = re.compile(_WS + r"," + _WS + r"(?=[\[{])")
#: What a prefix may end with when it cuts a token short.
_PARTIAL = re.compile(
    _WS
    + r'(?:"[^"\\\x00-\x1f]*(?:\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4})[^"\\\x00-\x1f]*)*'
    + r"(?:\\(?:u[0-9a-fA-F]{0,3})?)?"
    + r"|-?[0-9]*(?:\.[0-9]*)?(?:[eE][+-]?[0-9]*)?|t(?:r(?:u)?)?|f(?:a(?:l(?:s)?)?)?|n(?:u(?:l)?)?)"
)

#: one escape, consumed whole (so the `u` of an escaped backslash's `\\u` is not one); groups:
#: a high surrogate, a low surrogate
_ESCAPE = re.compile(
    r"\\(?:u(?:([dD][89abAB][0-9a-fA-F]{2})|([dD][c-fC-F][0-9a-fA-F]{2})|[0-9a-fA-F]{4})|.)",
    re.DOTALL,
)

_NUMBER_START = frozenset("-0123456789")

# parser states of the value skipper
_VALUE, _FIRST_VALUE, _FIRST_KEY, _KEY, _COLON, _AFTER = range(6)


class _Truncated(Exception):
    """The prefix ended inside a value."""


def _bad(connector: str, what: str) -> ConnectorError:
    return ConnectorError(f"invalid JSON body: {what}", connector=connector)


def _token(buf: str, pos: int, complete: bool, connector: str) -> re.Match[str]:
    match = _TOKEN.match(buf, pos)
    if match is not None:
        if match.lastindex == 2 and match.end() == len(buf) and not complete:
            raise _Truncated  # a number at the very end may go on past the prefix
        return match
    if not complete and _PARTIAL.fullmatch(buf, pos):
        raise _Truncated
    where = _SKIP_WS.match(buf, pos).end()  # type: ignore[union-attr]
    raise _bad(connector, "unexpected end" if where >= len(buf) else "unexpected character")


def _nested(buf: str, at: int, complete: bool, connector: str, *, run: bool = False) -> int:
    """Skip the nested container at `at` with the C decoder (its objects are dropped at
    once); with `run` (an array's element), the container elements that follow it too, one
    C call each and no state steps (chat messages)."""
    decode = _DECODER.raw_decode
    try:
        while True:
            pos: int = decode(buf, at)[1]
            following = _NEXT_CONTAINER.match(buf, pos) if run else None
            if following is None:
                return pos
            at = following.end()
    except RecursionError:
        raise _bad(connector, "nested too deeply") from None
    except ValueError:
        if not complete:
            raise _Truncated from None  # cut by the prefix, or broken: nothing kept from it
        raise _bad(connector, "unexpected character") from None


def _checked_number(buf: str, match: re.Match[str], connector: str) -> None:
    """Decode a number token that is not plainly finite (`_SAFE_NUMBER`), as json would."""
    start, end = match.span(2)
    found = _SAFE_NUMBER_RE.match(buf, start)
    if found is None or found.end() != end:
        _decode(buf, start, end, connector)  # refused as out of range, as json refuses it


def _skip_value(buf: str, pos: int, complete: bool, connector: str) -> int:
    """The index just after the JSON value at `pos` (whitespace first allowed).

    The value's own elements or members are walked here, runs of scalars and small flat
    containers in one regular-expression call; an element that is itself a container (a
    chat message) goes to the C decoder and is dropped at once, so no input costs a Python
    step per byte and at most one element is ever built.
    """
    stack: list[str] = []
    state = _VALUE
    while True:
        if state in (_VALUE, _FIRST_VALUE):
            if stack and stack[-1] == "[":
                run = _ARRAY_RUN.match(buf, pos)
                if run is not None and (complete or run.end() < len(buf)):
                    pos, state = run.end(), _VALUE
            at = _SKIP_WS.match(buf, pos).end()  # type: ignore[union-attr]
            if stack and at < len(buf) and buf[at] in "[{":
                pos = _nested(buf, at, complete, connector, run=stack[-1] == "[")
                state = _AFTER
            else:
                flat = _ITEM.match(buf, at)
                if flat is not None and (complete or flat.end() < len(buf)):
                    pos = flat.end()
                    if not stack:
                        return pos
                    state = _AFTER
        elif state in (_KEY, _FIRST_KEY):
            run = _OBJECT_RUN.match(buf, pos)
            if run is not None and (complete or run.end() < len(buf)):
                pos, state = run.end(), _KEY
        match = _token(buf, pos, complete, connector)
        pos = match.end()
        kind = match.lastindex
        char = buf[pos - 1] if kind == 4 else ""
        if kind == 2:
            _checked_number(buf, match, connector)
        if state in (_VALUE, _FIRST_VALUE):
            if kind != 4:
                state = _AFTER
            elif char in "[{":
                stack.append(char)
                state = _FIRST_VALUE if char == "[" else _FIRST_KEY
                continue
            elif char == "]" and state == _FIRST_VALUE:
                stack.pop()
                state = _AFTER
            else:
                raise _bad(connector, "unexpected character")
        elif state in (_KEY, _FIRST_KEY):
            if kind == 1:
                state = _COLON
                continue
            if char == "}" and state == _FIRST_KEY:
                stack.pop()
                state = _AFTER
            else:
                raise _bad(connector, "expected a member name")
        elif state == _COLON:
            if char != ":":
                raise _bad(connector, "expected `:`")
            state = _VALUE
            continue
        else:  # _AFTER: a value ended
            if char == ",":
                state = _VALUE if stack[-1] == "[" else _KEY
                continue
            if (char == "]" and stack[-1] == "[") or (char == "}" and stack[-1] == "{"):
                stack.pop()
            else:
                raise _bad(connector, "unexpected character")
        if not stack:
            return pos


def _decode(buf: str, start: int, end: int, connector: str) -> object:
    text = buf[start:end]
    try:
        value = _DECODER.decode(text)
    except (ValueError, RecursionError):
        number = text[:1] in _NUMBER_START  # (a number token: it matched `_NUMBER`)
        raise _bad(connector, "number out of range" if number else "unexpected character") from None
    _no_lone_surrogates(text, value, connector)
    return value


def _text(body: bytes, complete: bool, connector: str) -> str:
    if body.startswith(codecs.BOM_UTF8):
        raise _bad(connector, "byte order mark")
    try:
        if complete:
            return body.decode("utf-8")
        return codecs.getincrementaldecoder("utf-8")("strict").decode(body, final=False)
    except UnicodeDecodeError:
        raise _bad(connector, "not UTF-8") from None


def _no_lone_surrogate_escapes(buf: str, complete: bool, connector: str) -> None:
    """Refuse a surrogate escape that is not half of a pair, skipped values included (they
    are never decoded, and strict JSON refuses the body: ``bodies._no_lone_surrogates``)."""
    if not _SURROGATE_ESCAPE_RE.search(buf):
        return
    if not complete:  # a prefix may end inside an escape (the low half of a pair, say)
        tail = buf.rfind("\\", max(len(buf) - 11, 0))
        if tail >= 0:
            buf = buf[:tail]
    waiting = -1  # where a high surrogate's escape ended, while its low one is due
    for escape in _ESCAPE.finditer(buf):
        if waiting >= 0:
            if escape.start() != waiting or escape.group(2) is None:
                raise _bad(connector, "lone surrogate")
            waiting = -1
        elif escape.group(1) is not None:
            waiting = escape.end()
        elif escape.group(2) is not None:
            raise _bad(connector, "lone surrogate")
    if waiting >= 0 and (complete or waiting != len(buf)):  # a prefix may cut a pair
        raise _bad(connector, "lone surrogate")


def scan_json_object(
    body: bytes, *, keep: Collection[str] = (), complete: bool = True, connector: str = ""
) -> dict[str, object] | list[object] | None:
    """The kept top-level members of a JSON object body (see the module docstring).

    None for an empty body; an empty list when the whole body is valid JSON but not an
    object (its value is not built: callers only need to know it is not one). Raises
    ConnectorError on invalid JSON, or on a prefix that already shows it is not an object.
    A name seen twice keeps its last value, as :mod:`json` does.
    """
    buf = _text(body, complete, connector)
    _no_lone_surrogate_escapes(buf, complete, connector)
    pos = _SKIP_WS.match(buf, 0).end()  # type: ignore[union-attr]
    if pos == len(buf):
        return None if complete else {}
    if buf[pos] != "{":
        if not complete:
            raise _bad(connector, "not an object")
        end = _skip_value(buf, pos, True, connector)
        if _SKIP_WS.match(buf, end).end() != len(buf):  # type: ignore[union-attr]
            raise _bad(connector, "extra data")
        return []
    members: dict[str, object] = {}
    with contextlib.suppress(_Truncated):
        _members(buf, pos + 1, members, keep, complete, connector)
    return members


def _members(
    buf: str,
    pos: int,
    members: dict[str, object],
    keep: Collection[str],
    complete: bool,
    connector: str,
) -> None:
    first = True
    while True:
        run = _SMALL_MEMBERS.match(buf, pos)
        if run is not None and (complete or run.end() < len(buf)):
            pos, first = _small_members(buf, pos, run.end(), members, connector), False
        match = _token(buf, pos, complete, connector)
        pos = match.end()
        if first and match.lastindex == 4 and buf[pos - 1] == "}":
            break
        if match.lastindex != 1:
            raise _bad(connector, "expected a member name")
        first = False
        name = _decode(buf, match.start(1), pos, connector)
        assert isinstance(name, str)
        colon = _token(buf, pos, complete, connector)
        if colon.lastindex != 4 or buf[colon.end() - 1] != ":":
            raise _bad(connector, "expected `:`")
        start = _SKIP_WS.match(buf, colon.end()).end()  # type: ignore[union-attr]
        scalar = _SCALAR_RE.match(buf, start)
        if scalar is not None:
            end = scalar.end()
            if end == len(buf) and not complete:
                raise _Truncated
        else:
            end = _skip_value(buf, start, complete, connector)
        # what follows first: a prefix may end inside the value (`1.5e`, `12.`)
        after = _token(buf, end, complete, connector)
        if name in keep or (scalar is not None and end - start <= _SMALL_SCALAR):
            members[name] = _decode(buf, start, end, connector)
        elif scalar is not None and buf[start] not in '"tfn':  # a long number: json's limits
            _decode(buf, start, end, connector)
        pos = after.end()
        char = buf[pos - 1] if after.lastindex == 4 else ""
        if char == "}":
            break
        if char != ",":
            raise _bad(connector, "unexpected character")
    if complete and _SKIP_WS.match(buf, pos).end() != len(buf):  # type: ignore[union-attr]
        raise _bad(connector, "extra data")


def _small_members(
    buf: str, start: int, end: int, members: dict[str, object], connector: str
) -> int:
    """Keep the run of small-scalar members in ``buf[start:end]`` (each followed by a comma),
    decoded as one object: the same names, values and order as one at a time (a name given
    twice keeps its first place and its last value)."""
    text = "{" + buf[start : buf.rindex(",", start, end)] + "}"
    try:
        decoded = _DECODER.decode(text)
    except (ValueError, RecursionError):  # (names are any strings: still strictly read)
        raise _bad(connector, "unexpected character") from None
    _no_lone_surrogates(text, decoded, connector)
    members.update(decoded)  # (a name seen before keeps its place, as in json)
    return end


def read_json_object(
    body: bytes,
    *,
    keep: Collection[str] | None,
    complete: bool = True,
    connector: str = "",
) -> object:
    """The body as JSON for a connector: all of it when small or when `keep` is None
    (the connector needs everything), else the scanned members (a dict, or None)."""
    if keep is None or len(body) <= SCAN_THRESHOLD:
        if complete:
            return parse_json(body, connector=connector)
        return parse_json_prefix(body, connector=connector)
    return scan_json_object(body, keep=keep, complete=complete, connector=connector)
