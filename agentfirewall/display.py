"""Text a person reads: data shown as what it is, never as commands to the display.

Agent-chosen strings (an action's target, a request path, a parameter) reach people in
`tf`'s tables and live log, in Slack approval messages and on the dashboard. Printed raw,
a terminal obeys the escape sequences in them (clear the screen, move the cursor, rewrite
the line an approver is reading, set the window title), a newline starts what looks like
another row, and bidirectional controls reorder what is shown (``acme/\\u202eipa`` reads
as ``acme/api``). Invisible characters (zero-width, Unicode tags) hide text altogether.

`visible` writes each character of those kinds — control characters (Cc), format
characters (Cf: bidirectional controls, zero-width, tags), line and paragraph separators
(Zl, Zp) and lone surrogates (Cs, which no terminal can even be sent) — as its escape
(``\\x1b``, ``\\u202e``, ``\\U000e0041``), so what is shown is what was sent and nothing in
it acts on the display. `json_visible` does the same to a JSON text with JSON's own
escapes (``\\u001b``), which leaves the document's value unchanged.

Pure, no I/O.
"""

from __future__ import annotations

import unicodedata

__all__ = ["json_visible", "visible"]

_HIDDEN = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def _hidden(char: str) -> bool:
    return unicodedata.category(char) in _HIDDEN


def _escape(char: str) -> str:
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def _json_escape(char: str) -> str:
    code = ord(char)
    if code < 0x10000:
        return f"\\u{code:04x}"
    code -= 0x10000  # a UTF-16 surrogate pair, as JSON writes characters beyond the BMP
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def visible(text: str, *, keep: str = "") -> str:
    """`text` with every hidden or display-controlling character written as its escape;
    the characters in `keep` (e.g. ``"\\n"`` for a message of several lines) are kept."""
    if text.isprintable():  # the common case: nothing to look at (ASCII space included)
        return text
    return "".join(_escape(char) if char not in keep and _hidden(char) else char for char in text)


def json_visible(document: str) -> str:
    """A JSON text with every hidden or display-controlling character in its strings
    written as a JSON escape: the same value when parsed, nothing that acts on a display.
    (JSON's own syntax is ASCII: such a character can only be inside a string.)"""
    if document.isprintable():
        return document
    return "".join(
        _json_escape(char) if char not in "\n" and _hidden(char) else char for char in document
    )
