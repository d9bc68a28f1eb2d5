"""The dotted glob matcher: Hypothesis against fnmatch, specificity, prefixes."""

from __future__ import annotations

import fnmatch

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentfirewall.policy.globs import compile_glob, dot_prefixes

_NAME_CHARS = st.sampled_from("ab.-_1")
names = st.text(_NAME_CHARS, min_size=1, max_size=20)
patterns = st.text(st.sampled_from("ab.-_1*"), min_size=1, max_size=12)


@given(pattern=patterns, name=names)
def test_glob_agrees_with_fnmatch(pattern: str, name: str) -> None:
    assert compile_glob(pattern).matches(name) == fnmatch.fnmatchcase(name, pattern)


@given(pattern=patterns, name=names)
def test_prefix_kind_is_a_startswith(pattern: str, name: str) -> None:
    glob = compile_glob(pattern)
    if glob.kind == "prefix":
        assert glob.matches(name) == name.startswith(glob.literal)
        assert glob.literal in dot_prefixes(name) or not glob.matches(name)


@given(name=st.text(st.sampled_from("abc."), min_size=1, max_size=30))
def test_dot_prefixes_are_longest_first_and_end_in_dots(name: str) -> None:
    prefixes = dot_prefixes(name)
    assert prefixes[-1] == ""
    assert all(p.endswith(".") and name.startswith(p) for p in prefixes[:-1])
    assert [len(p) for p in prefixes] == sorted((len(p) for p in prefixes), reverse=True)
    assert len(prefixes) == name.count(".") + 1


def test_match_is_linear_on_adversarial_input() -> None:
    glob = compile_glob("*a*a*a*a*a*a*a*a*b")
    assert not glob.matches("a" * 500)  # find-based matching: no backtracking blow-up
    assert glob.matches("a" * 500 + "b")


@pytest.mark.parametrize(
    ("pattern", "kind"),
    [
        ("github.pr.merge", "exact"),
        ("github.pr.*", "prefix"),
        ("*", "prefix"),
        ("github.*.get", "complex"),
        ("github.pr*", "complex"),
        ("*.get", "complex"),
    ],
)
def test_kinds(pattern: str, kind: str) -> None:
    assert compile_glob(pattern).kind == kind


def test_specificity_order() -> None:
    ordered = ["github.pr.merge", "github.pr.*", "github.*.get", "github.*", "*.get", "*"]
    keys = [compile_glob(p).specificity for p in ordered]
    assert keys == sorted(keys, reverse=True)
    assert len(set(keys)) == len(keys)


@pytest.mark.parametrize("pattern", ["", "GitHub.*", "github pr", "github.pr.[ab]", "a" * 600])
def test_invalid_action_patterns(pattern: str) -> None:
    with pytest.raises(ValueError, match="pattern"):
        compile_glob(pattern)


def test_agent_globs_allow_free_form_names() -> None:
    glob = compile_glob("Finance *", action=False)
    assert glob.matches("Finance Bot")
    assert not glob.matches("finance bot")
