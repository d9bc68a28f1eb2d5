"""Server-sent events redacted as their consumer reads them, for the response content
rules' ``redact`` action.

Pure (no I/O). ``guarded.py`` relays an event stream's events with what the detectors find
replaced (:func:`redact_events`): in each event's data as its consumer reads it (each
string of JSON data; other data as text), then in the text as sent. A detection that
spans events is cut, never redacted (``eventscan.EventReader.findings``).
"""

from __future__ import annotations

import re

from agentfirewall.content import Scanner, redact_body
from agentfirewall_proxy.eventwire import data_value

__all__ = ["redact_events"]

_LINE_KEPT = re.compile(r"(\r\n|\r|\n)")


def redact_events(scanner: Scanner, piece: bytes, names: frozenset[str]) -> bytes:
    """`piece` with what the detectors `names` find replaced: in each event's data as its
    consumer reads it (each string of JSON data, re-serialized compact on one ``data``
    line; other data as text across its lines), then in the text as sent."""
    text = piece.decode("utf-8", "surrogateescape")
    bom = "\ufeff" if text.startswith("\ufeff") else ""  # (an EventSource skips it)
    parts = _LINE_KEPT.split(text[len(bom) :])
    lines: list[str | None] = list(parts[0::2])
    ends = [*parts[1::2], ""]
    event: list[int] = []  # the indexes of the current event's data lines

    def fix() -> None:
        if not event:
            return
        data = "\n".join([data_value(lines[i] or "") or "" for i in event])
        # (data that is not JSON is redacted as text)
        fixed, count = redact_body(scanner, data.encode("utf-8", "surrogateescape"),
                                   "application/json", names)  # fmt: skip
        if count:
            new = fixed.decode("utf-8", "surrogateescape").split("\n")
            lines[event[0]] = "\n".join(["data: " + part for part in new])
            for i in event[1:]:
                lines[i] = None

    for index, line in enumerate(lines):
        if not line:
            fix()
            event = []
        elif data_value(line) is not None:
            event.append(index)
    fix()
    rebuilt = bom + "".join([line + end for line, end in zip(lines, ends, strict=True)
                       if line is not None])  # fmt: skip
    out = rebuilt.encode("utf-8", "surrogateescape")
    return redact_body(scanner, out, "text/plain", names)[0]
