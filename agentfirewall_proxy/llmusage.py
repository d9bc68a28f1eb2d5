"""The LLM ``usage`` of a response, read as it streams past (for token and cost budgets).

A JSON answer (OpenAI chat completions and responses, Anthropic messages) carries
``usage`` and ``model`` at its top level; a streamed one (server-sent events) carries them
in its events: OpenAI's last chat chunk (``stream_options.include_usage``), the
``response.completed`` event's ``response``, Anthropic's ``message_start`` (input) and
``message_delta`` (output, cumulative). Numbers seen more than once keep their largest
value. Nothing large is kept: a JSON document (the body, or one event's ``data``) of up
to 64 KiB is parsed whole; a larger one is walked as it arrives (:class:`_Walk`: strings,
escapes and nesting followed), keeping only the values at those places (a ``usage`` of at
most 64 KiB, a ``model`` of at most 1 KiB), so an answer of any size is read in bounded
memory.

When the usage cannot be read (:meth:`UsageReader.unread`: the body did not come whole, a
JSON answer is not JSON, its ``usage`` is too large), the call does not count as free:
:func:`estimate` gives the most it may have used, from the request (``metering.py``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

__all__ = ["OUTPUT_CAP", "UsageReader", "estimate"]

#: The output tokens an estimate counts when the request names no limit (``max_tokens``,
#: ``max_completion_tokens``, ``max_output_tokens``): more than any model answers with.
OUTPUT_CAP = 128_000
_LIMITS = ("max_tokens", "max_completion_tokens", "max_output_tokens")
#: Where the values are, from a document's top (``message``: Anthropic's
#: ``message_start``; ``response``: OpenAI's ``response.*`` events); of the models a
#: document names, the first of these paths wins.
_USAGE_AT = (("usage",), ("message", "usage"), ("response", "usage"))
_MODEL_AT = (("model",), ("message", "model"), ("response", "model"))
_KIND: dict[tuple[str | None, ...], str] = {
    **dict.fromkeys(_USAGE_AT, "usage"),
    **dict.fromkeys(_MODEL_AT, "model"),
}
_KEEP = {"usage": 64 * 1024, "model": 1024}
_DEPTH = 2  # (the longest path)
#: A document up to this size is parsed whole (``json.loads``), a larger one walked.
_WHOLE = 64 * 1024
#: Outside strings: the bytes that change the walk's state.
_TOKEN = re.compile(rb'["{}\[\]:,]')
#: Outside strings, between those: whitespace and the letters of numbers and literals.
_SCALAR = re.compile(rb"[\s0-9A-Za-z.+-]*")
#: The rest of a string's content, up to its closing quote (or a backslash cut at the end).
_STRING = re.compile(rb'[^"\\]*(?:\\.[^"\\]*)*', re.DOTALL)
#: Deeper than any path: all but brackets, whole strings included.
_DEEP = re.compile(rb'(?:[^"\[\]{}]+|"[^"\\]*(?:\\.[^"\\]*)*")*', re.DOTALL)


def _merge(into: dict[str, Any], usage: object) -> None:
    if not isinstance(usage, dict):
        return
    for key, value in usage.items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            into[key] = max(value, into.get(key, 0))


class _Walk:
    """One JSON document as it arrives: the values at the paths read (``found``: each
    path's last value, as ``json.loads`` keeps duplicate keys), the rest only followed.
    ``done``: its top-level object or array closed; ``bad``: it is no JSON (a stray byte, a
    bracket that closes nothing, more after the end); ``over``: a ``usage`` too large."""

    def __init__(self) -> None:
        self.found: dict[tuple[str | None, ...], object] = {}
        self.done = self.bad = self.over = False
        self._whole: bytearray | None = bytearray()  # the document while it is small
        self._open = bytearray()  # `{` or `[` per open container
        self._keys: list[str | None] = []  # the current key of each near the top
        self._want_key = False
        self._string = self._escape = False
        self._key: bytearray | None = None  # a key being read (near the top only)
        self._value: bytearray | None = None  # a value being kept
        self._path: tuple[str | None, ...] = ()
        self._level = 0  # the depth of the object holding that value

    def feed(self, data: bytes) -> None:
        if self._whole is not None:
            if len(self._whole) + len(data) <= _WHOLE:
                self._whole += data
                return
            data, self._whole = bytes(self._whole) + data, None
        self._walk(data)

    def close(self) -> None:
        """The document ended: one still small is parsed now."""
        if self._whole is None:
            return
        try:
            document = json.loads(self._whole.decode())
        except ValueError:
            self.bad = True
            return
        self.done = isinstance(document, (dict, list))
        if not isinstance(document, dict):
            return
        for above in ((), ("message",), ("response",)):
            holder = document.get(above[0]) if above else document
            if isinstance(holder, dict):
                for key in ("usage", "model"):
                    if key in holder:
                        self.found[(*above, key)] = holder[key]

    def _walk(self, data: bytes) -> None:
        i, n = 0, len(data)
        start = 0  # where the kept value's bytes in `data` begin
        while i < n and not self.bad:
            if self._string:
                i = self._in_string(data, i)
                continue
            if len(self._open) > _DEPTH:
                i = self._deep(data, i)  # (then at a token near the top, or a string)
                if i == n or self.bad:
                    break
            found = _TOKEN.search(data, i)
            j = found.start() if found else n
            if j > i and (self.done or not _SCALAR.fullmatch(data, i, j)):
                self.bad = not data[i:j].isspace()
            if found is None or self.bad:
                break
            if self._value is not None and len(self._open) == self._level and data[j] in b",}]":
                self._keep(data[start:j])
            i = j + 1
            if self._token(data[j]):
                start = i
        if self._value is not None:
            self._value += data[start:n]
            if len(self._value) > _KEEP[_KIND[self._path]]:
                self.over = self.over or _KIND[self._path] == "usage"
                self._value = None

    def _deep(self, data: bytes, i: int) -> int:
        """Past the brackets deeper than any path from `i`: where the walk is back near the
        top, a string begins, or `data` ends."""
        opened, n = self._open, len(data)
        while len(opened) > _DEPTH:
            i = _DEEP.match(data, i).end()  # type: ignore[union-attr]
            if i == n or (byte := data[i]) == 0x22:
                return i
            if byte in b"{[":
                opened.append(byte)
            elif opened[-1] == byte - 2:  # (`{` is `}` - 2, `[` is `]` - 2)
                opened.pop()
            else:
                self.bad = True
                return i
            i += 1
        return i

    def _in_string(self, data: bytes, i: int) -> int:
        """Past the string's content in `data` from `i` (and its closing quote, if there)."""
        begin = i
        if self._escape:  # (the byte after a backslash that ended the last piece)
            self._escape, i = False, i + 1
        i = end = _STRING.match(data, i).end()  # type: ignore[union-attr]
        if i < len(data) and data[i] == 0x5C:  # a backslash, the last byte: escapes the next
            self._escape, i, end = True, i + 1, i + 1
        elif i < len(data):  # its closing quote
            self._string, i = False, i + 1
        if self._key is not None:
            if len(self._key) <= 64:  # (a longer key is none of those read)
                self._key += data[begin : min(end, begin + 65)]
            if not self._string:
                self._keys[-1] = _key(bytes(self._key))
                self._key = None
        return i

    def _token(self, byte: int) -> bool:
        """The walk past the structural `byte`; True when a value to keep starts after it."""
        opened = self._open
        if self.done:  # (anything but whitespace after the document)
            self.bad = True
        elif byte == 0x22:  # "
            self._string = True
            if self._want_key and len(opened) <= _DEPTH:
                self._key = bytearray()
        elif byte in b"{[":
            opened.append(byte)
            if len(opened) <= _DEPTH:
                self._keys.append(None)
            self._want_key = byte == 0x7B
        elif byte in b"}]":
            if not opened or opened[-1] != byte - 2:
                self.bad = True
                return False
            if len(opened) <= _DEPTH:
                self._keys.pop()
            opened.pop()
            self.done = not opened
        elif byte == 0x2C:  # ,
            self.bad = not opened
            self._want_key = bool(opened) and opened[-1] == 0x7B
        else:  # :
            self._want_key = False
            self.bad = not opened or opened[-1] != 0x7B
            path = tuple(self._keys)
            if not self.bad and self._value is None and path in _KIND:
                self._value, self._path, self._level = bytearray(), path, len(opened)
                return True
        return False

    def _keep(self, tail: bytes) -> None:
        assert self._value is not None
        raw, self._value = bytes(self._value + tail), None
        kind = _KIND[self._path]
        try:
            if len(raw) > _KEEP[kind]:
                raise ValueError
            self.found[self._path] = json.loads(raw.decode())
        except ValueError:
            self.over = self.over or kind == "usage"


def _key(raw: bytes) -> str | None:
    """A key as JSON reads it (escapes decoded); None when longer than any path's."""
    if len(raw) > 64:
        return None
    try:
        found = json.loads((b'"%s"' % raw).decode())
    except ValueError:
        return None
    return found if isinstance(found, str) else None


class UsageReader:
    """The usage of one response body, JSON (`stream` False) or server-sent events.

    Feed it the body's decoded bytes as they pass, and call :meth:`end` once the body came
    whole; then :meth:`finish` says what was read, :meth:`unread` why it could not be."""

    def __init__(self, *, stream: bool, json_body: bool = True) -> None:
        self.stream = stream
        #: The response says it is JSON: one that is not cannot say it used nothing.
        self.json_body = json_body
        self.usage: dict[str, Any] = {}
        self.model: str | None = None
        self.ended = False
        self._over = False
        self._bad = False
        self._walk: _Walk | None = None if stream else _Walk()
        self._line: bytearray | None = bytearray()  # an event line's start, until it is known

    def feed(self, data: bytes) -> None:
        if not self.stream:
            if self._walk is not None:
                self._walk.feed(data)
            return
        start = 0
        while start < len(data):
            end = data.find(b"\n", start)
            piece = data[start:] if end < 0 else data[start:end]
            if self._walk is not None:
                self._walk.feed(piece)
            elif self._line is not None:  # (None: a line that is no `data:` one)
                line = self._line + piece if self._line else piece
                head = line.lstrip()
                if head.startswith(b"data:"):
                    self._walk, self._line = _Walk(), None
                    self._walk.feed(bytes(head[5:]))
                elif len(head) >= 5 or len(line) > 64:
                    self._line = None  # another field (`event:`, `id:`), a comment
                else:
                    self._line = bytearray(line)
            if end < 0:
                break
            self._close()
            start = end + 1

    def _close(self) -> None:
        """A document ended: what it holds is counted."""
        walk, self._walk, self._line = self._walk, None, bytearray()
        if walk is None:
            return
        walk.close()
        self._over = self._over or walk.over
        self._bad = walk.bad or not walk.done
        for path in _USAGE_AT:
            _merge(self.usage, walk.found.get(path))
        if self.model is None:
            for path in _MODEL_AT:
                if isinstance(model := walk.found.get(path), str):
                    self.model = model[:200]
                    break

    def end(self) -> None:
        """The body ended (all of it was fed)."""
        self.ended = True

    def finish(self) -> tuple[dict[str, Any] | None, str | None]:
        """(usage, model) of the whole response; (None, model) when it named no usage."""
        self._close()  # (the body's one document, or a last event with no newline)
        return (dict(self.usage) or None), self.model

    def unread(self) -> str:
        """Why the usage could not be read, once finished ("": it was, or the answer, whole
        and readable, named none)."""
        self.finish()
        if not self.ended:
            return "the response was not read to its end"
        if self._over:
            return "its usage was too large to read"
        if not self.stream and self.json_body and self._bad and not self.usage:
            return "the response was not JSON"
        return ""


def estimate(
    sent: int, parameters: Mapping[str, object], read: dict[str, Any] | None
) -> dict[str, Any]:
    """The most a call may have used when its usage could not be read, in `read`'s words
    (Anthropic's and OpenAI responses' ``input_tokens``, else ``prompt_tokens``): the
    request's `sent` body bytes as input (a byte is at most one token), its largest of
    ``max_tokens``, ``max_completion_tokens`` and ``max_output_tokens`` (none:
    :data:`OUTPUT_CAP`) times ``n`` as output; never less than what was `read`."""
    most = max(_positive(parameters.get(name)) for name in _LIMITS) or OUTPUT_CAP
    out = most * (_positive(parameters.get("n")) or 1)
    usage = dict(read or {})
    if "input_tokens" in usage or "output_tokens" in usage:
        _merge(usage, {"input_tokens": sent, "output_tokens": out})
    else:
        _merge(usage, {"prompt_tokens": sent, "completion_tokens": out})
    return usage


def _positive(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0
