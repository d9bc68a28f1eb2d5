"""Server-sent events on the wire: a ``text/event-stream``'s bytes cut into events, and an
event's lines read as an ``EventSource`` reads them.

Pure (no I/O). ``guarded.py`` cuts a stream into events with an :class:`EventBuffer` (each
byte searched once for the blank line that ends an event); ``eventscan.py`` reads each
event's data (:func:`read_events`: the ``data`` fields joined by newlines) apart from its
other lines (event names, ids, comments); ``eventredact.py`` rewrites its ``data`` lines.
"""

from __future__ import annotations

import re

__all__ = ["EventBuffer", "data_value", "event_data", "event_end", "read_events"]

_LINE = re.compile(r"\r\n|\r|\n")
#: A blank line (CRLF, LF or CR line ends, mixed): an event ends there.
_BLANK = re.compile(rb"\n\r?\n|\r\r")


def event_end(data: bytes | bytearray, start: int = 0) -> int:
    """The index just past the first complete event (a blank line) whose blank line begins
    at `start` or after it, or -1."""
    match = _BLANK.search(data, start)
    return match.end() if match is not None else -1


class EventBuffer:
    """An event stream's bytes as they come, cut into events (each with its blank line).
    Each byte is searched for a blank line once (but the last two of each feed, which one
    may begin: a blank line is at most three bytes), so a stream that never ends an event
    costs what its length does, not its square; the caller bounds :func:`len`."""

    def __init__(self) -> None:
        self._data = bytearray()
        self._searched = 0  # (no blank line begins before it)

    def __len__(self) -> int:
        """The bytes of the event not complete yet."""
        return len(self._data)

    def feed(self, data: bytes) -> list[bytes]:
        """The events `data` completes."""
        self._data += data
        events = []
        while (end := event_end(self._data, self._searched)) >= 0:
            events.append(bytes(self._data[:end]))
            del self._data[:end]  # (bytearray: from its front, without a copy)
            self._searched = 0
        self._searched = max(0, len(self._data) - 2)
        return events

    def finish(self) -> list[bytes]:
        """The stream ended: its last event, if it did not end it (it counts too)."""
        rest, self._data = bytes(self._data), bytearray()
        return [rest] if rest else []


def data_value(line: str) -> str | None:
    """The value of a ``data`` field line (one leading space dropped); None for another."""
    name, _, value = line.partition(":")
    if name != "data":
        return None
    return value[1:] if value.startswith(" ") else value


def read_events(text: str) -> tuple[list[str], str]:
    """(the data of each event in `text` as an ``EventSource`` reads it, its other lines)."""
    found: list[str] = []
    others: list[str] = []
    lines: list[str] = []
    carries = False
    for line in _LINE.split(text.removeprefix("\ufeff")):
        if not line:
            if carries:
                found.append("\n".join(lines))
            lines, carries = [], False
        elif (value := data_value(line)) is not None:
            lines.append(value)
            carries = True
        else:
            others.append(line)
    if carries:  # (an unfinished last event counts too)
        found.append("\n".join(lines))
    return found, "\n".join(others)


def event_data(text: str) -> list[str]:
    """The data of each event in `text` as an ``EventSource`` reads it (its ``data``
    fields joined by newlines); an unfinished last event counts too."""
    return read_events(text)[0]
