"""The dotted glob matcher: Hypothesis against fnmatch, specificity, prefixes."""

from __future__ import annotations

import fnmatch

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentfirewall.policy import AccessRule
from agentfirewall.policy.globs import compile_glob, dot_prefixes
from agentfirewall.policy.permissions import AccessIndex

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


_RANK = {"allow": 0, "require_approval": 1, "deny": 2}
access_rules = st.lists(
    st.builds(
        AccessRule,
        agent=st.sampled_from(["Bot", "*", "Other"]),
        connector=st.sampled_from(["github", "*"]),
        action_pattern=st.sampled_from(
            [
                "*",
                "github.*",
                "github.pr.*",
                "github.pr.merge",
                "github.*.get",
                "*.get",
                "github.pr*",
                "github.unknown.*",
                "github.unknown.get",
                "github.unknown.g*",
                "github.u*",
            ]
        ),
        decision=st.sampled_from(["allow", "deny", "require_approval"]),
    ),
    max_size=12,
)
actions = st.sampled_from(
    ["github.pr.merge", "github.pr.get", "github.repo.get", "slack.chat.get", "github.unknown.get"]
)


@given(rules=access_rules, action=actions)
def test_access_index_picks_the_most_specific_rule(rules: list[AccessRule], action: str) -> None:
    def key(rule: AccessRule) -> tuple[object, ...]:
        return (
            compile_glob(rule.action_pattern).specificity,
            rule.agent != "*",
            rule.connector != "*",
            _RANK[rule.decision],
        )

    matching = [
        r
        for r in rules
        if r.agent in ("Bot", "*")
        and r.connector in ("github", "*")
        and compile_glob(r.action_pattern).matches(action)
        # the reserved segment: an allow wildcard grants `github.unknown.*` names only
        # when its literal prefix reaches past `unknown.`
        and not (
            ".unknown." in action
            and r.decision == "allow"
            and "*" in r.action_pattern
            and not r.action_pattern.startswith("github.unknown.")
        )
    ]
    found = AccessIndex(rules).lookup("Bot", "github", action, dot_prefixes(action))
    if not matching:
        assert found is None
    else:
        assert found is not None
        assert key(found) == max(key(r) for r in matching)
