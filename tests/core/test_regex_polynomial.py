"""No `matches` pattern can hold a core for seconds: the polynomial class of regexes.

Python's ``re`` backtracks. Beyond the exponential shapes (``(a+)+``), two parts of a pattern
that can take the same characters in turn (``(.*)(.*)(.*)(.*)z``) make a failing search cost
a power of the value's length: seconds on 100 characters, hours on the 4,096 the operator
reads. A policy author or a viewer's ``policy replay`` candidate could hold a CPU with one.

A hang here is a failure by the subprocess's hard timeout, never a timing assertion: every
pattern the guard accepts is searched on hostile values in a child process that must finish.
"""

from __future__ import annotations

import functools
import itertools
import json
import re
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentfirewall.errors import PolicyError
from agentfirewall.policy import load_policy
from agentfirewall.policy.operators import compile_operator
from agentfirewall.policy.regexguard import MAX_INPUT, compile_safe_regex
from tests.fuzzscale import examples

#: A hard bound for one child process: a quadratic search of a few values takes well under
#: a second; a cubic one takes minutes, so the child is killed and the test fails
CHILD_TIMEOUT = 60

#: Patterns an attacker writes: polynomial (or worse) on a value that does not match
POLYNOMIAL = [
    "(.*)(.*)(.*)(.*)z",
    ".*.*z",
    "(.*)(.*)z",
    r"\w*\w*\w*x",
    r"\w+\w+!",
    r"\d*\d*\d*\d*-",
    r"[a-z]+[a-z]*!",
    r"\s*\s*x",
    "a*a*a*b",
    "a*.*b",
    ".*a.*z",
    ".*prod.*z",
    ".*prod.*$",  # a trailing `.*` that must still reach `$`: not free
    "(?s)(.*)(.*)z",
    "[^x]*[^y]*z",
    r"\S*\w*!",
    ".{0,10}.{0,10}.{0,10}.{0,10}z",  # bounded repeats, as costly as unbounded ones
    "(?:.{0,100})(?:.{0,100})z",
    r"(\w+\s?){1,5}x",  # a nested repeat under a bounded one
    "(?:a+){2,5}b",
    "(?:a|b)*a*c",
    "a?" * 25 + "a" * 25,  # finitely ambiguous, exponentially many ways
    "(?:a?){20}a{20}",
    "x(.*.*z)?",  # after a point the match cannot fail, an optional part still runs
    "(?=.*.*z)",  # inside a lookahead
    "(?<=a)(?=(.*)(.*)z)",
    "(?i)k*\u212a*x",  # Kelvin sign is `k` ignoring case
    "(?i)\u0131+I+!",  # dotless i is `I` ignoring case
    "(?i)\u017f*s*!",  # long s is `s`
    "(?a)[^x]*\\w*!",
    "(?:a?)*b",
    "(?i)[a-z]*[A-Z]*!",
    r"(?a:\w*)\w*!",
    r"(?:[\w.]+)(?:\.\w+)+@",
    "(?:(?:.*),)*z",
    "(.*)(.*)(.*)(.*)(.*)(.*)(.*)z",
]

#: Patterns a policy author writes that must keep loading
ORDINARY = [
    ".*prod.*",
    "^foo.*bar$",
    r"^ghp_[A-Za-z0-9]{36}$",
    ".*z",
    ".",
    r"(?i)^drop\s+table",
    r"(?i)refund|payout|transfer|outbound",
    r"(?i)<!(channel|everyone|here)|@(channel|everyone|here)",
    r"(?i)^/v1/(fine_tuning|batches)(/|$)",
    r"(?i)^(refs/)?(heads/)?(main|master)$",
    r"^[a-z]+(\.[a-z]+){1,7}$",
    r"^(\w+)\s(\d+)$",
    r"(?i)^(\w+)\s(\d+)$",
    r"\d+-\d+",
    r"\d+\.?\d*",
    r"(?:\d{1,3}\.){3}\d{1,3}$",
    "(foo|bar)+",
    "a{2,5}b",
    r"[^@\s]+@[^@\s]+\.[a-z]{2,}$",
    r"^https?://[^/]+/",
    r"\bpassword\s*[:=]",
    "k*\u212a*x",  # distinct characters when case counts
    r"(?i)^(rm|del)\s+-rf?\s+/.*",  # a letter ignoring case is no space past ASCII
    r"(?i)\s+f\s+x",
    r"(?i)[a-f]+\s+x",
]

#: Values that make each pattern above fail after the most work: runs of the characters
#: its repeats take, and none of the characters it needs last
HOSTILE = [c * MAX_INPUT for c in "a1 _.,x\u212a"] + [
    "prod" * (MAX_INPUT // 4),
    "a " * (MAX_INPUT // 2),
    "a." * (MAX_INPUT // 2),
    "prod\n" * (MAX_INPUT // 5) + "!",
]

_CHILD = """
import json, sys
from agentfirewall.policy.operators import compile_operator
patterns, values = json.loads(sys.stdin.read())
for pattern in patterns:
    test = compile_operator("matches", pattern)
    for value in values:
        test(value)
print("done")
"""


def _search_in_a_child(patterns: list[str], values: list[str]) -> None:
    """Search every value with every pattern in a child process, which must finish."""
    try:
        done = subprocess.run(
            [sys.executable, "-c", _CHILD],
            input=json.dumps([patterns, values]),
            capture_output=True,
            text=True,
            timeout=CHILD_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"a search did not finish, one of {patterns}")
    assert done.stdout.strip() == "done", done.stderr


def _refusal(pattern: str, flags: int = 0) -> str | None:
    try:
        compile_safe_regex(pattern, flags)
    except ValueError as exc:
        return str(exc)
    return None


@pytest.mark.parametrize("pattern", POLYNOMIAL, ids=ascii)
def test_a_polynomial_regex_is_refused_at_load(pattern: str) -> None:
    refusal = _refusal(pattern)
    assert refusal is not None, f"`{pattern}` loads"
    assert refusal.startswith(f"unsafe regular expression `{pattern}`: ")


def test_the_refusal_says_what_to_write_instead() -> None:
    refusal = _refusal("(.*)(.*)(.*)(.*)z") or ""
    assert "can match the same text" in refusal
    assert "make the parts exclusive" in refusal
    assert "drop a leading `.*`" in refusal


def test_a_policy_or_replay_candidate_with_one_does_not_load() -> None:
    """`policy replay` compiles a viewer's candidate with load_policy: refused before it runs."""
    policy = {
        "version": 1,
        "name": "candidate",
        "rules": [
            {
                "name": "slow",
                "decision": "deny",
                "conditions": [
                    {"field": "parameters.q", "operator": "matches", "value": "(.*)(.*)(.*)z"}
                ],
            }
        ],
    }
    with pytest.raises(PolicyError, match="can match the same text"):
        load_policy(policy)


@pytest.mark.parametrize("pattern", ORDINARY, ids=ascii)
def test_an_ordinary_regex_still_loads(pattern: str) -> None:
    assert compile_safe_regex(pattern).pattern == pattern


def test_every_pattern_that_loads_finishes_on_hostile_values() -> None:
    """The attacker's list and the ordinary one, on 4,096-character values built to fail:
    whatever loads is searched to the end in a child with a hard timeout."""
    loaded = [p for p in POLYNOMIAL + ORDINARY if _refusal(p) is None]
    assert set(ORDINARY) <= set(loaded)
    _search_in_a_child(loaded, HOSTILE)


def test_a_guarded_regex_stays_fast_on_hostile_input() -> None:
    assert compile_operator("matches", r"^(\w+)\s(\d+)$")("a" * (MAX_INPUT - 1) + "!") is False
    _search_in_a_child([r"^(\w+)\s(\d+)$"], ["a" * (MAX_INPUT - 1) + "!"])


#: Pieces of small patterns: every sequence of three of them, then a character no value has
_PIECES = ["a*", "a+", "a?", ".*", "[ab]*", "b", "(?:a|b)", "(?:ab)*", r"\w*", "[^b]+", "a{2,}"]


def test_every_small_sequence_that_loads_finishes() -> None:
    """A sweep of the pattern shapes, not a list of examples: each sequence of three pieces
    the guard accepts is searched on failing values in one child."""
    loaded = []
    for pieces in itertools.product(_PIECES, repeat=3):
        pattern = "".join(pieces) + "z"
        if _refusal(pattern) is None:
            loaded.append(pattern)
    assert "a*b(?:ab)*z" in loaded
    assert "a*.*bz" not in loaded
    values = [c * 1024 for c in "ab"] + ["ab" * 512, "ba" * 512]
    _search_in_a_child(loaded, values)


_ATOMS = st.sampled_from(["a", "b", ".", "[ab]", "[^a]", r"\w", r"\s", "x", "(?:ab)", "(?:a|b)"])
_QUANTIFIERS = st.sampled_from(["", "", "*", "+", "?", "{2}", "{1,3}", "*?", "+?"])


@st.composite
def _patterns(draw: st.DrawFn) -> str:
    parts = draw(st.lists(st.tuples(_ATOMS, _QUANTIFIERS), min_size=1, max_size=5))
    body = "".join(atom + quantifier for atom, quantifier in parts)
    if draw(st.booleans()):
        body = "|".join([body, draw(_ATOMS)])
    return draw(st.sampled_from(["", "^", "(?i)"])) + body + draw(st.sampled_from(["", "$"]))


@given(_patterns(), st.text("abxAB \n", max_size=12), st.booleans())
@settings(max_examples=examples(300))
def test_the_guard_never_changes_an_answer(pattern: str, value: str, lowered: bool) -> None:
    """Whatever the guard accepts, `matches` answers as `re.search` does (ignoring case on
    a caseless field); what it refuses, it refuses with a reason, never an other error."""
    flags = re.IGNORECASE if lowered else 0
    refusal = _refusal(pattern, flags)
    if refusal is not None:
        assert refusal.startswith("unsafe regular expression")
        return
    test = compile_operator("matches", pattern, lowered=lowered)
    expected = re.search(pattern, value, flags) is not None
    assert test(value) is expected


#: Classes of one character each: `A+B+` is ambiguous exactly when some character is both
CLASSES = ["a", "F", "k", "s", "i", "-", "/", r"\d", r"\s", r"\w", r"\D", r"\S", r"\W",
           "[a-f]", "[G-Z]", "[^a]", "[^\\s]", "[0-9_]", ".", "\u212a", "\u017f", "\u0131",
           "\u00e9"]  # fmt: skip
#: every character up to U+2FFF (Latin, Greek, Cyrillic, spaces, the Kelvin sign...): where
#: the characters these classes share live, and quick enough to test one by one
_CODE_POINTS = [chr(c) for c in range(0x3000)]


@functools.cache
def _matched(item: str, flags: str) -> frozenset[str]:
    full = re.compile(f"(?{flags}:{item})" if flags else item).fullmatch
    return frozenset(c for c in _CODE_POINTS if full(c))


def test_two_classes_in_turn_are_refused_exactly_when_they_share_a_character() -> None:
    """The guard's sets of characters are exact for what it judges: `A+B+x` loads when no
    character is matched by both (a letter ignoring case is no space past ASCII, `(?i)[^a]`
    takes no `A`, `(?ai)k` no Kelvin sign) and is refused when one is; every pair, with and
    without `(?i)` and `(?a)`."""
    wrong = []
    for one, two, flags in itertools.product(CLASSES, CLASSES, ["", "i", "a", "ai"]):
        pattern = f"(?{flags}){one}+{two}+\\x00" if flags else f"{one}+{two}+\\x00"
        shared = _matched(one, flags) & _matched(two, flags)
        try:
            compile_safe_regex(pattern)
            refused = False
        except ValueError:
            refused = True
        # `é` ignoring case may be any cased letter past ASCII to the guard (`caseless`; the
        # partners of `i`, `k` and `s` are exact): it may be refused, never wrongly loaded
        approximate = "i" in flags and "a" not in flags and "\u00e9" in (one, two)
        if refused != bool(shared) and not (approximate and refused):
            wrong.append((pattern, sorted(shared)[:3]))
    assert wrong == []
