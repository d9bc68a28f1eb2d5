"""Text shown to people (`agentfirewall.display`): every hidden or display-controlling
character is written as its escape, everything else is left as it was."""

from __future__ import annotations

import json
import re
import unicodedata

from hypothesis import example, given, settings
from hypothesis import strategies as st

from agentfirewall.display import json_visible, visible
from tests.fuzzscale import examples

_HIDDEN = {"Cc", "Cf", "Cs", "Zl", "Zp"}
_ESCAPE = re.compile(r"\\x([0-9a-f]{2})|\\u([0-9a-f]{4})|\\U([0-9a-f]{8})")
#: What an agent could send to act on a terminal or on what is read.
HOSTILE = [
    "\x1b[2J\x1b[H",  # clear the screen, cursor home
    "\x1b[1A\x1b[2K",  # up one line and erase it: rewrite the row above
    "\x1b]0;approved\x07",  # set the window title
    "\x1b]8;;https://evil.example\x1b\\click\x1b]8;;\x1b\\",  # a hyperlink
    "\x9b31m",  # the one-character CSI
    "ok\rapproved",  # back to the line's start
    "a\nb",  # a row of its own
    "acme/\u202eipa",  # right-to-left override: reads `acme/api`
    "\u2066x\u2069\u200f\u061c",  # isolates and marks
    "ac\u200bme",  # zero-width space
    "\U000e0041\U000e0042",  # Unicode tags: invisible ASCII
    "\u2028\u2029",  # line and paragraph separators
    "\ud800",  # a lone surrogate (no terminal can even be sent it)
    "\x7f\x00",
]


def hidden(text: str, keep: str = "") -> list[str]:
    """The characters of `text` that `visible` writes as escapes (those in `keep` aside)."""
    return [c for c in text if c not in keep and unicodedata.category(c) in _HIDDEN]


def _unescape(text: str) -> str:
    return _ESCAPE.sub(lambda m: chr(int(next(g for g in m.groups() if g), 16)), text)


@given(st.text())
@settings(max_examples=examples(400))
@example("".join(HOSTILE))
def test_visible_text_hides_nothing_and_reads_back_as_sent(text: str) -> None:
    shown = visible(text)
    assert not hidden(shown)
    shown.encode("utf-8")  # printable anywhere: no lone surrogate left
    if "\\" not in text:  # (a backslash the agent sent is shown as sent: no way to tell)
        assert _unescape(shown) == text
    if not hidden(text):
        assert shown == text


@given(st.text())
@settings(max_examples=examples(200))
@example("line one\n\x1b[2Jline two\n")
def test_kept_characters_stay_and_only_they(text: str) -> None:
    shown = visible(text, keep="\n")
    assert shown.count("\n") == text.count("\n")
    assert not hidden(shown, keep="\n")


def test_every_hostile_string_is_shown_as_its_escapes() -> None:
    for text in HOSTILE:
        shown = visible(text)
        assert shown.isascii() or not hidden(shown), text
    assert visible("acme/\u202eipa") == "acme/\\u202eipa"
    assert visible("\x1b[2J") == "\\x1b[2J"
    assert visible("\U000e0041") == "\\U000e0041"
    assert visible("Zürich — 東京 🚀 a b") == "Zürich — 東京 🚀 a b"  # nothing to hide


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@given(_JSON)
@settings(max_examples=examples(300))
@example({"target": "".join(HOSTILE), "".join(HOSTILE): ["\x1b", "\ud800", "🚀"]})
def test_json_visible_is_the_same_document_with_nothinghidden(value: object) -> None:
    for indent in (None, 2):
        document = json.dumps(value, ensure_ascii=False, indent=indent)
        shown = json_visible(document)
        assert json.loads(shown) == value
        assert not hidden(shown, keep="\n")
        shown.encode("utf-8")
