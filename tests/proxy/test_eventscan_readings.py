"""How an event's data is read (``agentfirewall_proxy/eventreadings.py``), in one parse.

Each event's JSON is parsed once and read three ways: every member (the event's own scan),
what a JSON reader keeps (``JSON.parse``: of a key given twice the last member) and what
Go's ``encoding/json`` keeps (keys matched case-insensitively). The first two are what two
parses read before (``body_pieces``, then ``json.loads``): kept here as the oracle, and
compared over generated events (keys given twice, in several cases, nesting, unicode
escapes, numbers, text that is no JSON). Go's folding: its own table of what folds alike.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentfirewall.content import body_pieces, value_pieces
from agentfirewall_proxy.eventreadings import data_pieces as _data_pieces
from agentfirewall_proxy.eventreadings import folded
from tests.fuzzscale import examples

LOCATION = "body.event3.data"


def _two_parses(data: str, location: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """The reading before one parse did it (the oracle): a body's pieces, then ``json.loads``
    for what a JSON reader keeps."""
    pieces = body_pieces(data.encode("utf-8", "surrogateescape"), "application/json")
    if not pieces and data.strip():
        return [(location, data)], [(location, data)]
    named = [(location + name[len("body") :], text) for name, text in pieces]
    try:
        kept = value_pieces(json.loads(data.removeprefix("\ufeff")), location)
    except (ValueError, RecursionError):
        kept = named
    return named, [(name, text) for name, text in kept if not name.endswith("#name")]


LONG_S = "\u017f"  # (Go folds it to ``s``)
KELVIN = "\u212a"  # (to ``k``)
#: Keys that repeat, in several cases and spellings
KEYS = st.sampled_from(["a", "A", "content", "Content", "CONTENT", "s", LONG_S, "a.b", "x#name",
                        "index", "Index", "output_index"])  # fmt: skip
TEXT = st.text(st.characters(codec="utf-8"), max_size=8)


def _string(text: str, ascii_only: bool, slash: bool) -> str:
    written = json.dumps(text, ensure_ascii=ascii_only)  # (ASCII only: unicode escapes)
    return written.replace("/", "\\/") if slash else written


_STRINGS = st.builds(_string, TEXT, st.booleans(), st.booleans())
_SCALARS = st.one_of(
    _STRINGS,
    st.integers(-(10**20), 10**20).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from(["true", "false", "null", "1e5", "-0.0", "2E-3", "0", "1", "1.0"]),
)


def _object(members: list[tuple[str, str]], space: bool) -> str:
    gap = " " if space else ""
    return "{" + f",{gap}".join(f"{json.dumps(key)}:{gap}{value}" for key, value in members) + "}"


_JSON = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(
        st.builds(_object, st.lists(st.tuples(KEYS, inner), max_size=5), st.booleans()),
        st.lists(inner, max_size=4).map(lambda items: "[" + ",".join(items) + "]"),
    ),
    max_leaves=12,
)
_DATA = st.one_of(
    _JSON,
    _JSON.map(lambda data: "\ufeff" + data),  # (a byte order mark, skipped)
    TEXT,  # (mostly no JSON: text)
    # (and the NULs a body's reading takes for UTF-16: JSON there, not to json.loads)
    st.sampled_from(
        [
            "",
            " ",
            "[DONE]",
            "{}",
            "[]",
            '{"a":1}',
            '{"a":',
            "[" * 3000,
            "\x00[\x00]",
            '\x00[\x00"\x00a\x00"\x00]',
        ]
    ),
)


@settings(max_examples=examples(200), deadline=None)
@given(data=_DATA)
def test_one_parse_reads_an_event_as_the_two_parses_did(data: str) -> None:
    named, (kept, *_) = _data_pieces(data, LOCATION)
    assert (named, kept) == _two_parses(data, LOCATION)


@settings(max_examples=examples(200), deadline=None)
@given(data=_DATA)
def test_by_position_each_reader_keeps_the_same_strings_in_the_same_order(data: str) -> None:
    """Read by position (an object that says where it stands named by it), a JSON reader and
    Go's keep what they keep by path, only named otherwise: string for string (a detection
    in an event is matched to its name by position so)."""
    _, (kept, go, kept_at, go_at) = _data_pieces(data, LOCATION)
    assert [text for _, text in kept_at] == [text for _, text in kept]
    assert [text for _, text in go_at] == [text for _, text in go]


def test_what_go_keeps_of_a_key_given_twice_in_two_cases_is_the_last() -> None:
    data = json.dumps({"delta": {"content": "a", "Content": "b"}, "x": 1,
                       "DELTA": {"CONTENT": "c", LONG_S: "d"}})  # fmt: skip
    named, (kept, go, *_) = _data_pieces(data, LOCATION)
    at = LOCATION + "."
    assert [text for _, text in named if text in "abcd"] == ["d", "c", "b", "a"]
    assert kept == [(at + "DELTA." + LONG_S, "d"), (at + "DELTA.CONTENT", "c"),
                    (at + "delta.Content", "b"), (at + "delta.content", "a")]  # fmt: skip
    assert go == [(at + "delta.s", "d"), (at + "delta.content", "c")]


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("Content", "content"), ("CONTENT", "content"), ("choice" + LONG_S, "choices"),
        (KELVIN + "ey", "key"), (LONG_S + KELVIN, "sk"),
        # orbits of three (sigma, micro sign and mu), title case, capital sharp s
        ("\u03a3\u03b1\u03c2", "\u03c3\u03b1\u03c3"), ("\u01c5", "\u01c6"),
        ("\u00b5", "\u03bc"), ("\u1e9e", "\u00df"),
        # Go folds the Turkish dotted and dotless i to nothing else
        ("\u0130d", "\u0130d"), ("\u0131d", "\u0131d"),
        ("a.B_0", "a.b_0"),
    ],
)  # fmt: skip
def test_keys_fold_as_go_matches_them(key: str, expected: str) -> None:
    assert folded(key) == expected
