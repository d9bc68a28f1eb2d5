"""json_problem: the first value no store or encoder can take, found without recursion."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentfirewall.jsonlimits import MAX_DEPTH, _walk, json_problem, printable

CASES = [
    ({"a": [1, "x", None, True, 1.5]}, None),
    ({"a": "\ud800"}, ("a", "invalid unicode")),
    ({"a": [0, {"\udfff": 1}]}, ("a.1.\\udfff", "invalid unicode")),
    ({"n": 2**63}, ("n", "out of range")),
    ({"n": -(2**63) - 1}, ("n", "out of range")),
    ({"n": 2**63 - 1}, None),
    ({"f": float("inf")}, ("f", "finite")),
    ({"f": float("nan")}, ("f", "finite")),
    ("\ud800", ("", "invalid unicode")),
]


@pytest.mark.parametrize(("value", "expected"), CASES)
def test_problems_are_named_by_their_path(value: object, expected: tuple[str, str] | None) -> None:
    found = json_problem(value)
    if expected is None:
        assert found is None
    else:
        assert found is not None
        assert found[0] == expected[0]
        assert expected[1] in found[1]


def test_large_integers_pass_when_only_free_json_is_checked() -> None:
    assert json_problem({"amount": 10**40}, check_ints=False) is None


def test_depth_is_bounded_without_recursion() -> None:
    deep: object = 1
    for _ in range(100_000):  # far past the interpreter's recursion limit
        deep = [deep]
    found = json_problem(deep)
    assert found is not None
    assert "nests deeper" in found[1]
    assert found[0].count(".") == MAX_DEPTH - 1
    ok: object = 1
    for _ in range(MAX_DEPTH):
        ok = {"k": ok}
    assert json_problem(ok) is None
    assert json_problem({"k": ok}) is not None


@given(st.text())
def test_printable_text_always_encodes(text: str) -> None:
    shown = printable(text)
    shown.encode("utf-8")
    assert len(shown) <= 203


_TEXT = st.text(st.characters() | st.characters(categories=["Cs"]), max_size=6)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | _TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
)


@given(_JSON)
def test_json_data_without_surrogates_or_nan_is_fine_when_encodable(value: object) -> None:
    found = json_problem(value, check_ints=False)
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        assert found is not None
        return
    assert found is None


FLAT_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats()
    | st.text()
    | st.sampled_from(["\ud800", "ok \udfff", "é", 2**63, -(2**63) - 1, float("nan")])
)
FLAT_KEYS = st.text() | st.integers() | st.sampled_from(["\udc80", "é"])


@given(
    st.dictionaries(FLAT_KEYS, FLAT_SCALARS | st.lists(FLAT_SCALARS, max_size=2), max_size=5),
    st.booleans(),
    st.integers(0, 3),
)
def test_the_flat_shortcut_answers_what_the_walk_answers(
    value: dict[object, object], check_ints: bool, max_depth: int
) -> None:
    """A flat dict of scalars is answered without the walk; the answer is the walk's."""
    assert json_problem(value, max_depth=max_depth, check_ints=check_ints) == _walk(
        value, max_depth, check_ints
    )
